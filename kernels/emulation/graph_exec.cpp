// Executable CUDA graphs under the emulator: cudaGraphInstantiate (with the
// checks the driver makes then), cudaGraphExecUpdate, cudaGraphExecDestroy,
// cudaGraphUpload, cudaGraphLaunch, and cudaGraphSetConditional, the device
// call that sets a conditional node's handle. A launch runs the nodes on the
// calling thread, synchronously like every emulated launch, in an order that
// respects every dependency but runs the newest ready node first: work the
// capture left unordered (a fork never joined where it should be) then runs
// in the opposite of program order, and a missing dependency shows in tests.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <queue>
#include <stdexcept>
#include <string>
#include <vector>

#include "capture.h"
#include "device_runtime.h"
#include "emulator_api.h"
#include "graph.h"
#include "runtime_state.h"

namespace ddpm::emu::detail {

namespace {

std::uint64_t max_while_iterations() {
  static const std::uint64_t limit = [] {
    if (const char* setting = std::getenv("DDPM_EMU_MAX_WHILE_ITERATIONS")) {
      const long long n = std::atoll(setting);
      if (n > 0) return static_cast<std::uint64_t>(n);
    }
    return std::uint64_t{1} << 24;
  }();
  return limit;
}

// The graph's nodes in an order that respects every dependency, choosing the
// most recently added ready node first.
std::vector<const CUgraphNode_st*> execution_order(const CUgraph_st& graph) {
  const std::size_t n = graph.nodes.size();
  std::map<const CUgraphNode_st*, std::size_t> index;
  for (std::size_t i = 0; i < n; ++i) index[graph.nodes[i].get()] = i;
  std::vector<std::size_t> waiting(n, 0);
  std::vector<std::vector<std::size_t>> dependents(n);
  for (std::size_t i = 0; i < n; ++i)
    for (const CUgraphNode_st* d : graph.nodes[i]->dependencies) {
      ++waiting[i];
      dependents[index.at(d)].push_back(i);
    }
  std::priority_queue<std::size_t> ready;
  for (std::size_t i = 0; i < n; ++i)
    if (waiting[i] == 0) ready.push(i);
  std::vector<const CUgraphNode_st*> order;
  while (!ready.empty()) {
    const std::size_t i = ready.top();
    ready.pop();
    order.push_back(graph.nodes[i].get());
    for (std::size_t j : dependents[i])
      if (--waiting[j] == 0) ready.push(j);
  }
  return order;  // nodes only ever depend on earlier ones: no cycles, all of them
}

bool allowed_in_conditional_body(cudaGraphNodeType type) {
  return type == cudaGraphNodeTypeKernel || type == cudaGraphNodeTypeEmpty ||
         type == cudaGraphNodeTypeMemcpy || type == cudaGraphNodeTypeMemset ||
         type == cudaGraphNodeTypeGraph || type == cudaGraphNodeTypeConditional;
}

struct BuildError {
  std::string why;  // empty: none
};

// Caller holds graph_mutex(). Copies `graph` into `out` in execution order,
// checking what instantiation checks; `in_body`: inside a conditional body.
BuildError build(const CUgraph_st& graph, bool in_body, ExecGraph& out, bool& has_conditionals) {
  if (graph.captures > 0)
    return {"a stream is still capturing into " +
            std::string(in_body ? "a conditional body of the graph" : "the graph") +
            "; call cudaStreamEndCapture first"};
  if (!graph.invalidated.empty())
    return {std::string(in_body ? "a conditional body" : "the graph") +
            " was filled by a capture that was invalidated (" + graph.invalidated + ")"};
  for (const auto& handle : graph.handles) {
    handle->value = handle->default_value;
    if (handle->assign_default) out.defaults.push_back(handle);
  }
  for (const CUgraphNode_st* node : execution_order(graph)) {
    if (in_body && !allowed_in_conditional_body(node->op->type))
      return {"the " + node->op->what +
              " is inside the body of a conditional node, which the driver allows to hold only "
              "kernel, empty, memcpy, memset, child graph and conditional nodes"};
    ExecNode e;
    e.op = node->op;
    if (node->op->type == cudaGraphNodeTypeConditional) {
      has_conditionals = true;
      e.handle = node->handle;
      e.conditional_type = node->conditional_type;
      for (const auto& body : node->bodies) {
        e.bodies.emplace_back();
        if (BuildError b = build(*body, true, e.bodies.back(), has_conditionals); !b.why.empty())
          return b;
      }
    }
    out.nodes.push_back(std::move(e));
  }
  return {};
}

// Whether an executable graph made from the new graph can replace `old` in
// cudaGraphExecUpdate: the same nodes, of the same types and kernels.
cudaGraphExecUpdateResult compare_for_update(const ExecGraph& old, const ExecGraph& now) {
  if (old.nodes.size() != now.nodes.size()) return cudaGraphExecUpdateErrorTopologyChanged;
  for (std::size_t i = 0; i < old.nodes.size(); ++i) {
    const ExecNode& a = old.nodes[i];
    const ExecNode& b = now.nodes[i];
    if (a.op->type != b.op->type) return cudaGraphExecUpdateErrorNodeTypeChanged;
    if (a.op->type == cudaGraphNodeTypeKernel && a.op->kernel.kernel != b.op->kernel.kernel)
      return cudaGraphExecUpdateErrorUnsupportedFunctionChange;
    if (a.op->type == cudaGraphNodeTypeConditional) {
      if (a.handle != b.handle || a.conditional_type != b.conditional_type ||
          a.bodies.size() != b.bodies.size())
        return cudaGraphExecUpdateErrorParametersChanged;
      for (std::size_t k = 0; k < a.bodies.size(); ++k)
        if (cudaGraphExecUpdateResult r = compare_for_update(a.bodies[k], b.bodies[k]);
            r != cudaGraphExecUpdateSuccess)
          return r;
    }
  }
  return cudaGraphExecUpdateSuccess;
}

// A copy or set node's device memory may have been freed since capture: a
// GPU would fault; the emulator says which node.
void check_node_memory(const NodeOp& op, const void* p, std::size_t bytes, const char* role) {
  if (bytes == 0 || inside_device_allocation(p, bytes)) return;
  char text[32];
  std::snprintf(text, sizeof text, "%p", p);
  throw KernelError("ddpm emulator: graph " + op.what + ": " + role + " " + text + " + " +
                    std::to_string(bytes) +
                    " bytes is no longer inside one cudaMalloc allocation (freed after capture?)");
}

void fill(const NodeOp& op) {
  auto* row = static_cast<unsigned char*>(op.dst);
  for (std::size_t r = 0; r < op.height; ++r, row += op.pitch) {
    if (op.element_size == 1) {
      std::memset(row, int(op.value & 0xFF), op.width);
      continue;
    }
    for (std::size_t i = 0; i < op.width; ++i)
      std::memcpy(row + i * op.element_size, &op.value, op.element_size);  // little-endian
  }
}

void run_graph(const ExecGraph& graph);

void run_body(const ExecGraph& body) {
  tally(Counter::kConditionalBodies);
  run_graph(body);
}

void run_node(const ExecNode& node) {
  const NodeOp& op = *node.op;
  switch (op.type) {
    case cudaGraphNodeTypeKernel:
      run_grid(op.kernel, op.grid, op.block, op.shmem_bytes, /*in_graph=*/true);
      return;
    case cudaGraphNodeTypeMemcpy: {
      const bool dst_device =
          op.kind == cudaMemcpyHostToDevice || op.kind == cudaMemcpyDeviceToDevice;
      const bool src_device =
          op.kind == cudaMemcpyDeviceToHost || op.kind == cudaMemcpyDeviceToDevice;
      if (dst_device) check_node_memory(op, op.dst, op.bytes, "destination");
      if (src_device) check_node_memory(op, op.src, op.bytes, "source");
      std::memmove(op.dst, op.src, op.bytes);
      tally(Counter::kMemcpys);
      return;
    }
    case cudaGraphNodeTypeMemset:
      check_node_memory(op, op.dst, op.bytes, "destination");
      fill(op);
      tally(Counter::kMemsets);
      return;
    case cudaGraphNodeTypeHost:
      tally(Counter::kHostFunctions);
      op.fn(op.user_data);
      return;
    case cudaGraphNodeTypeConditional: {
      ConditionalHandle& handle = *node.handle;
      if (node.conditional_type == cudaGraphCondTypeWhile) {
        // The condition is read before every iteration, the first included.
        std::uint64_t iterations = 0;
        while (handle.value.load() != 0) {
          if (++iterations > max_while_iterations())
            throw KernelError("ddpm emulator: graph " + op.what + " ran " +
                              std::to_string(max_while_iterations()) +
                              " iterations and its handle is still non-zero: does its body "
                              "call cudaGraphSetConditional(handle, 0)? (limit: "
                              "DDPM_EMU_MAX_WHILE_ITERATIONS)");
          run_body(node.bodies[0]);
        }
        return;
      }
      const unsigned value = handle.value.load();
      if (node.conditional_type == cudaGraphCondTypeIf) {
        if (value != 0)
          run_body(node.bodies[0]);
        else if (node.bodies.size() == 2)
          run_body(node.bodies[1]);
      } else if (value < node.bodies.size()) {  // SWITCH
        run_body(node.bodies[value]);
      }
      return;
    }
    default:  // empty nodes
      return;
  }
}

void run_graph(const ExecGraph& graph) {
  for (const auto& handle : graph.defaults) handle->value = handle->default_value;
  for (const ExecNode& node : graph.nodes) run_node(node);
}

// Caller holds graph_mutex().
bool is_live_exec(const CUgraphExec_st* exec) {
  return exec && graph_registry().execs.count(exec) != 0;
}

cudaError_t instantiate(cudaGraphExec_t* out, cudaGraph_t graph, unsigned long long flags,
                        const char* call) {
  if (!out) return fail(cudaErrorInvalidValue, std::string(call) + ": null output pointer");
  constexpr unsigned long long kKnown =
      cudaGraphInstantiateFlagAutoFreeOnLaunch | cudaGraphInstantiateFlagUpload |
      cudaGraphInstantiateFlagDeviceLaunch | cudaGraphInstantiateFlagUseNodePriority;
  if (flags & ~kKnown) return fail(cudaErrorInvalidValue, std::string(call) + ": unknown flags");
  if (flags & cudaGraphInstantiateFlagDeviceLaunch)
    return fail(cudaErrorNotSupported,
                std::string(call) + ": device-launched graphs are not emulated");
  std::lock_guard lock(graph_mutex());
  if (!is_live_graph(graph))
    return fail(
        cudaErrorInvalidValue,
        std::string(call) + ": not a graph (a failed cudaStreamEndCapture returns a null graph)");
  auto exec = std::make_unique<CUgraphExec_st>();
  if (BuildError b = build(*graph, false, exec->root, exec->has_conditionals); !b.why.empty())
    return fail(cudaErrorInvalidValue, std::string(call) + ": " + b.why);
  if (exec->has_conditionals && graph->execs > 0)
    return fail(cudaErrorInvalidValue,
                std::string(call) +
                    ": the graph has conditional nodes and already has an executable graph; "
                    "the driver allows one at a time (cudaGraphExecDestroy it first)");
  exec->source = graph;
  ++graph->execs;
  *out = exec.get();
  graph_registry().execs.insert(exec.release());
  return cudaSuccess;
}

}  // namespace

}  // namespace ddpm::emu::detail

using ddpm::emu::detail::fail;
using ddpm::emu::detail::graph_mutex;

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* pGraphExec, cudaGraph_t graph,
                                 unsigned long long flags) {
  return ddpm::emu::detail::instantiate(pGraphExec, graph, flags, "cudaGraphInstantiate");
}

cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t* pGraphExec, cudaGraph_t graph,
                                          unsigned long long flags) {
  return ddpm::emu::detail::instantiate(pGraphExec, graph, flags, "cudaGraphInstantiateWithFlags");
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t graphExec) {
  std::lock_guard lock(graph_mutex());
  if (!ddpm::emu::detail::is_live_exec(graphExec))
    return fail(cudaErrorInvalidValue, "cudaGraphExecDestroy: not an executable graph");
  if (graphExec->running)
    return fail(cudaErrorInvalidValue, "cudaGraphExecDestroy: the graph is running");
  if (graphExec->source) --graphExec->source->execs;
  ddpm::emu::detail::graph_registry().execs.erase(graphExec);
  delete graphExec;
  return cudaSuccess;
}

cudaError_t cudaGraphExecUpdate(cudaGraphExec_t hGraphExec, cudaGraph_t hGraph,
                                cudaGraphExecUpdateResultInfo* resultInfo) {
  if (!resultInfo) return fail(cudaErrorInvalidValue, "cudaGraphExecUpdate: null resultInfo");
  *resultInfo = {};
  std::lock_guard lock(graph_mutex());
  if (!ddpm::emu::detail::is_live_exec(hGraphExec) || !ddpm::emu::detail::is_live_graph(hGraph))
    return fail(cudaErrorInvalidValue, "cudaGraphExecUpdate: not an executable graph and a graph");
  ddpm::emu::detail::ExecGraph now;
  bool has_conditionals = false;
  if (auto b = ddpm::emu::detail::build(*hGraph, false, now, has_conditionals); !b.why.empty()) {
    resultInfo->result = cudaGraphExecUpdateError;
    return fail(cudaErrorGraphExecUpdateFailure, "cudaGraphExecUpdate: " + b.why);
  }
  const cudaGraphExecUpdateResult r = ddpm::emu::detail::compare_for_update(hGraphExec->root, now);
  resultInfo->result = r;
  if (r != cudaGraphExecUpdateSuccess)
    return fail(cudaErrorGraphExecUpdateFailure,
                "cudaGraphExecUpdate: the graph differs from the executable graph's (result " +
                    std::to_string(int(r)) + "); instantiate it instead");
  hGraphExec->root = std::move(now);
  return cudaSuccess;
}

cudaError_t cudaGraphUpload(cudaGraphExec_t graphExec, cudaStream_t stream) {
  {
    std::lock_guard lock(graph_mutex());
    if (!ddpm::emu::detail::is_live_exec(graphExec))
      return fail(cudaErrorInvalidValue, "cudaGraphUpload: not an executable graph");
  }
  if (!ddpm::emu::detail::is_known_stream(stream))
    return fail(cudaErrorInvalidResourceHandle, "cudaGraphUpload: unknown stream");
  return ddpm::emu::detail::check_legacy_stream_use(stream, "cudaGraphUpload");
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t graphExec, cudaStream_t stream) {
  {
    std::lock_guard lock(graph_mutex());
    if (!ddpm::emu::detail::is_live_exec(graphExec))
      return fail(cudaErrorInvalidValue,
                  "cudaGraphLaunch: not an executable graph (instantiate a graph first; a failed "
                  "instantiation leaves none)");
  }
  if (!ddpm::emu::detail::is_known_stream(stream))
    return fail(cudaErrorInvalidResourceHandle, "cudaGraphLaunch: unknown stream");
  if (cudaError_t e = ddpm::emu::detail::refuse_if_capturing(
          stream, "cudaGraphLaunch", "launching a graph into a capture (as a child graph)"))
    return e;
  {
    std::lock_guard lock(graph_mutex());
    if (graphExec->running)
      return fail(cudaErrorInvalidValue,
                  "cudaGraphLaunch: the executable graph is already running (launched from one "
                  "of its own host nodes?)");
    graphExec->running = true;
  }
  struct Done {
    cudaGraphExec_t exec;
    ~Done() {
      std::lock_guard lock(graph_mutex());
      exec->running = false;
    }
  } done{graphExec};
  ddpm::emu::detail::tally(ddpm::emu::detail::Counter::kGraphLaunches);
  ddpm::emu::detail::run_graph(graphExec->root);
  return cudaSuccess;
}

extern "C" void cudaGraphSetConditional(cudaGraphConditionalHandle handle, unsigned int value) {
  const std::shared_ptr<ddpm::emu::detail::ConditionalHandle> h =
      ddpm::emu::detail::find_handle(handle);
  if (!h)
    throw std::invalid_argument(
        "cudaGraphSetConditional: handle " + std::to_string(handle) +
        " was not made by cudaGraphConditionalHandleCreate, or its graph is gone");
  h->value = value;
}
