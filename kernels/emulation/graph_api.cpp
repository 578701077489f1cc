// Building CUDA graphs under the emulator: cudaGraphCreate / Destroy,
// GetNodes, NodeGetType, conditional handles, and cudaGraphAddNode for the
// nodes built by hand (conditional WHILE / IF / SWITCH nodes, whose bodies the
// caller fills with cudaStreamBeginCaptureToGraph, and empty, host and memset
// nodes). Kernel and copy nodes are made by stream capture (capture.cpp),
// which records a launch with a copy of its arguments. Errors are the codes
// the runtime documents, with the reason in ddpm::emu::last_error_detail().
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "graph.h"
#include "runtime_state.h"

namespace ddpm::emu::detail {

namespace {

struct HandleRegistry {
  std::mutex mutex;
  std::map<unsigned long long, std::weak_ptr<ConditionalHandle>> handles;
  unsigned long long next_id = 1;
};

HandleRegistry& handle_registry() {
  static auto* r = new HandleRegistry;  // never destroyed: usable from static destructors
  return *r;
}

std::string pointer_text(const void* p) {
  char text[32];
  std::snprintf(text, sizeof text, "%p", p);
  return text;
}

// Caller holds graph_mutex(). Removes the graph's nodes and bodies from the registry.
void unregister_graph(const CUgraph_st* graph) {
  GraphRegistry& r = graph_registry();
  for (const auto& node : graph->nodes) {
    for (const auto& body : node->bodies) unregister_graph(body.get());
    r.nodes.erase(node.get());
  }
  r.graphs.erase(graph);
}

// Caller holds graph_mutex(). Checks the dependencies of a node to add to `graph`.
cudaError_t check_dependencies(const char* call, const CUgraph_st* graph,
                               const cudaGraphNode_t* dependencies, std::size_t count,
                               const cudaGraphEdgeData* edge_data) {
  if (count > 0 && !dependencies)
    return fail(cudaErrorInvalidValue,
                std::string(call) + ": " + std::to_string(count) + " dependencies but no array");
  for (std::size_t i = 0; i < count; ++i) {
    if (!is_live_node(dependencies[i]) || dependencies[i]->graph != graph)
      return fail(cudaErrorInvalidValue, std::string(call) + ": dependency " + std::to_string(i) +
                                             " is not a node of graph " + pointer_text(graph));
    if (edge_data && (edge_data[i].from_port || edge_data[i].to_port || edge_data[i].type))
      return fail(cudaErrorNotSupported,
                  std::string(call) + ": programmatic or port edges are not emulated");
  }
  return cudaSuccess;
}

std::vector<CUgraphNode_st*> dependency_list(const cudaGraphNode_t* dependencies,
                                             std::size_t count) {
  return count ? std::vector<CUgraphNode_st*>(dependencies, dependencies + count)
               : std::vector<CUgraphNode_st*>{};
}

const char* conditional_name(cudaGraphConditionalNodeType type) {
  switch (type) {
    case cudaGraphCondTypeIf:
      return "IF";
    case cudaGraphCondTypeWhile:
      return "WHILE";
    case cudaGraphCondTypeSwitch:
      return "SWITCH";
  }
  return "unknown";
}

// Caller holds graph_mutex(). cudaGraphAddNode of a conditional node.
cudaError_t add_conditional_node(CUgraphNode_st** out, CUgraph_st* graph,
                                 std::vector<CUgraphNode_st*> dependencies,
                                 cudaConditionalNodeParams& params) {
  const std::shared_ptr<ConditionalHandle> handle = find_handle(params.handle);
  if (!handle)
    return fail(cudaErrorInvalidValue, "cudaGraphAddNode: conditional handle " +
                                           std::to_string(params.handle) +
                                           " was not made by cudaGraphConditionalHandleCreate");
  // The handle must belong to this graph or to a graph this one is a body of.
  bool related = false;
  for (const CUgraph_st* g = graph; g && !related; g = g->owner ? g->owner->graph : nullptr)
    related = g == handle->created_on;
  if (!related)
    return fail(cudaErrorInvalidValue,
                "cudaGraphAddNode: conditional handle " + std::to_string(params.handle) +
                    " was created on another graph; create it on this graph or an enclosing one");
  const bool size_ok =
      (params.type == cudaGraphCondTypeWhile && params.size == 1) ||
      (params.type == cudaGraphCondTypeIf && (params.size == 1 || params.size == 2)) ||
      (params.type == cudaGraphCondTypeSwitch && params.size >= 1);
  if (!size_ok)
    return fail(cudaErrorInvalidValue, std::string("cudaGraphAddNode: a conditional ") +
                                           conditional_name(params.type) + " node cannot have " +
                                           std::to_string(params.size) +
                                           " bodies (WHILE: 1, IF: 1 or 2, SWITCH: 1 or more)");

  auto op = std::make_shared<NodeOp>();
  op->type = cudaGraphNodeTypeConditional;
  op->what = std::string("conditional ") + conditional_name(params.type) + " node (handle " +
             std::to_string(params.handle) + ")";
  CUgraphNode_st* node = add_node(graph, dependencies, std::move(op));
  node->handle = handle;
  node->conditional_type = params.type;
  for (unsigned i = 0; i < params.size; ++i) {
    auto body = std::make_unique<CUgraph_st>();
    body->owner = node;
    graph_registry().graphs.insert(body.get());
    node->body_handles.push_back(body.get());
    node->bodies.push_back(std::move(body));
  }
  params.phGraph_out = node->body_handles.data();
  *out = node;
  return cudaSuccess;
}

// Caller holds graph_mutex(). cudaGraphAddNode of a memset node.
cudaError_t add_memset_node(CUgraphNode_st** out, CUgraph_st* graph,
                            std::vector<CUgraphNode_st*> dependencies,
                            const cudaMemsetParamsV2& params) {
  const unsigned size = params.elementSize;
  if (size != 1 && size != 2 && size != 4)
    return fail(cudaErrorInvalidValue, "cudaGraphAddNode: memset element size " +
                                           std::to_string(size) + " (must be 1, 2 or 4)");
  const std::size_t row_bytes = params.width * size;
  const std::size_t height = params.height ? params.height : 1;
  if (height > 1 && params.pitch < row_bytes)
    return fail(cudaErrorInvalidValue, "cudaGraphAddNode: memset pitch below the row width");
  const std::size_t span = (height - 1) * params.pitch + row_bytes;
  if (row_bytes > 0 && !inside_device_allocation(params.dst, span))
    return fail(cudaErrorInvalidValue, "cudaGraphAddNode: memset destination " +
                                           pointer_text(params.dst) + " + " + std::to_string(span) +
                                           " bytes is not inside one cudaMalloc allocation");
  auto op = std::make_shared<NodeOp>();
  op->type = cudaGraphNodeTypeMemset;
  op->what = "memset node of " + std::to_string(span) + " bytes";
  op->dst = params.dst;
  op->value = params.value;
  op->element_size = size;
  op->width = params.width;
  op->height = height;
  op->pitch = height > 1 ? params.pitch : row_bytes;
  op->bytes = span;
  *out = add_node(graph, dependencies, std::move(op));
  return cudaSuccess;
}

}  // namespace

std::mutex& graph_mutex() {
  static auto* m = new std::mutex;
  return *m;
}

GraphRegistry& graph_registry() {
  static auto* r = new GraphRegistry;
  return *r;
}

CUgraph_st* create_graph() {
  auto* graph = new CUgraph_st;
  graph_registry().graphs.insert(graph);
  return graph;
}

CUgraphNode_st* add_node(CUgraph_st* graph, const std::vector<CUgraphNode_st*>& dependencies,
                         std::shared_ptr<const NodeOp> op) {
  auto node = std::make_unique<CUgraphNode_st>();
  node->graph = graph;
  for (CUgraphNode_st* d : dependencies)  // an edge once, however often it was named
    if (std::find(node->dependencies.begin(), node->dependencies.end(), d) ==
        node->dependencies.end())
      node->dependencies.push_back(d);
  node->op = std::move(op);
  CUgraphNode_st* raw = node.get();
  graph_registry().nodes.insert(raw);
  graph->nodes.push_back(std::move(node));
  return raw;
}

void destroy_graph(CUgraph_st* graph) {
  unregister_graph(graph);
  for (const CUgraphExec_st* exec : graph_registry().execs)
    if (exec->source == graph) const_cast<CUgraphExec_st*>(exec)->source = nullptr;
  delete graph;
}

bool capture_in_progress(const CUgraph_st* graph) {
  if (graph->captures > 0) return true;
  for (const auto& node : graph->nodes)
    for (const auto& body : node->bodies)
      if (capture_in_progress(body.get())) return true;
  return false;
}

bool depends_on(const CUgraphNode_st* node, const CUgraphNode_st* ancestor) {
  std::vector<const CUgraphNode_st*> stack{node};
  std::set<const CUgraphNode_st*> seen;
  while (!stack.empty()) {
    const CUgraphNode_st* n = stack.back();
    stack.pop_back();
    if (n == ancestor) return true;
    if (!seen.insert(n).second) continue;
    for (const CUgraphNode_st* d : n->dependencies) stack.push_back(d);
  }
  return false;
}

std::shared_ptr<ConditionalHandle> find_handle(unsigned long long id) {
  HandleRegistry& r = handle_registry();
  std::lock_guard lock(r.mutex);
  auto it = r.handles.find(id);
  if (it == r.handles.end()) return nullptr;
  std::shared_ptr<ConditionalHandle> handle = it->second.lock();
  if (!handle) r.handles.erase(it);
  return handle;
}

}  // namespace ddpm::emu::detail

using ddpm::emu::detail::fail;
using ddpm::emu::detail::graph_mutex;
using ddpm::emu::detail::is_live_graph;
using ddpm::emu::detail::is_live_node;

cudaError_t cudaGraphCreate(cudaGraph_t* pGraph, unsigned int flags) {
  if (!pGraph) return fail(cudaErrorInvalidValue, "cudaGraphCreate: null output pointer");
  if (flags != 0) return fail(cudaErrorInvalidValue, "cudaGraphCreate: flags must be 0");
  std::lock_guard lock(graph_mutex());
  *pGraph = ddpm::emu::detail::create_graph();
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  std::lock_guard lock(graph_mutex());
  if (!is_live_graph(graph))
    return fail(cudaErrorInvalidValue, "cudaGraphDestroy: not a graph, or already destroyed");
  if (graph->owner)
    return fail(cudaErrorInvalidValue,
                "cudaGraphDestroy: a conditional node's body graph; it is destroyed with the "
                "graph that holds the node");
  if (ddpm::emu::detail::capture_in_progress(graph))
    return fail(cudaErrorInvalidValue,
                "cudaGraphDestroy: a stream is capturing into the graph (or one of its "
                "conditional bodies); end the capture first");
  ddpm::emu::detail::destroy_graph(graph);
  return cudaSuccess;
}

cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t* nodes, size_t* numNodes) {
  if (!numNodes) return fail(cudaErrorInvalidValue, "cudaGraphGetNodes: null numNodes");
  std::lock_guard lock(graph_mutex());
  if (!is_live_graph(graph)) return fail(cudaErrorInvalidValue, "cudaGraphGetNodes: not a graph");
  const std::size_t count = graph->nodes.size();
  if (!nodes) {
    *numNodes = count;
    return cudaSuccess;
  }
  const std::size_t given = *numNodes;
  for (std::size_t i = 0; i < given; ++i) nodes[i] = i < count ? graph->nodes[i].get() : nullptr;
  *numNodes = given < count ? given : count;
  return cudaSuccess;
}

cudaError_t cudaGraphNodeGetType(cudaGraphNode_t node, cudaGraphNodeType* pType) {
  if (!pType) return fail(cudaErrorInvalidValue, "cudaGraphNodeGetType: null output pointer");
  std::lock_guard lock(graph_mutex());
  if (!is_live_node(node)) return fail(cudaErrorInvalidValue, "cudaGraphNodeGetType: not a node");
  *pType = node->op->type;
  return cudaSuccess;
}

cudaError_t cudaGraphConditionalHandleCreate(cudaGraphConditionalHandle* pHandle_out,
                                             cudaGraph_t graph, unsigned int defaultLaunchValue,
                                             unsigned int flags) {
  if (!pHandle_out)
    return fail(cudaErrorInvalidValue, "cudaGraphConditionalHandleCreate: null output pointer");
  if (flags & ~unsigned(cudaGraphCondAssignDefault))
    return fail(cudaErrorInvalidValue,
                "cudaGraphConditionalHandleCreate: flags must be 0 or cudaGraphCondAssignDefault");
  std::lock_guard lock(graph_mutex());
  if (!is_live_graph(graph))
    return fail(cudaErrorInvalidValue, "cudaGraphConditionalHandleCreate: not a graph");
  auto handle = std::make_shared<ddpm::emu::detail::ConditionalHandle>();
  handle->default_value = defaultLaunchValue;
  handle->value = defaultLaunchValue;
  handle->assign_default = (flags & cudaGraphCondAssignDefault) != 0;
  handle->created_on = graph;
  {
    auto& r = ddpm::emu::detail::handle_registry();
    std::lock_guard handles_lock(r.mutex);
    handle->id = r.next_id++;
    r.handles.emplace(handle->id, handle);
  }
  graph->handles.push_back(handle);
  *pHandle_out = handle->id;
  return cudaSuccess;
}

cudaError_t cudaGraphAddNode(cudaGraphNode_t* pGraphNode, cudaGraph_t graph,
                             const cudaGraphNode_t* pDependencies,
                             const cudaGraphEdgeData* dependencyData, size_t numDependencies,
                             cudaGraphNodeParams* nodeParams) {
  if (!pGraphNode || !nodeParams)
    return fail(cudaErrorInvalidValue, "cudaGraphAddNode: null node or parameter pointer");
  std::lock_guard lock(graph_mutex());
  if (!is_live_graph(graph)) return fail(cudaErrorInvalidValue, "cudaGraphAddNode: not a graph");
  if (cudaError_t e = ddpm::emu::detail::check_dependencies(
          "cudaGraphAddNode", graph, pDependencies, numDependencies, dependencyData))
    return e;
  std::vector<CUgraphNode_st*> dependencies =
      ddpm::emu::detail::dependency_list(pDependencies, numDependencies);
  switch (nodeParams->type) {
    case cudaGraphNodeTypeConditional:
      return ddpm::emu::detail::add_conditional_node(pGraphNode, graph, std::move(dependencies),
                                                     nodeParams->conditional);
    case cudaGraphNodeTypeMemset:
      return ddpm::emu::detail::add_memset_node(pGraphNode, graph, std::move(dependencies),
                                                nodeParams->memset);
    case cudaGraphNodeTypeEmpty: {
      auto op = std::make_shared<ddpm::emu::detail::NodeOp>();
      op->what = "empty node";
      *pGraphNode = ddpm::emu::detail::add_node(graph, dependencies, std::move(op));
      return cudaSuccess;
    }
    case cudaGraphNodeTypeHost: {
      if (!nodeParams->host.fn)
        return fail(cudaErrorInvalidValue, "cudaGraphAddNode: host node without a function");
      auto op = std::make_shared<ddpm::emu::detail::NodeOp>();
      op->type = cudaGraphNodeTypeHost;
      op->what = "host node";
      op->fn = nodeParams->host.fn;
      op->user_data = nodeParams->host.userData;
      *pGraphNode = ddpm::emu::detail::add_node(graph, dependencies, std::move(op));
      return cudaSuccess;
    }
    default:
      return fail(cudaErrorNotSupported,
                  "cudaGraphAddNode: node type " + std::to_string(int(nodeParams->type)) +
                      " is not emulated; the emulator makes kernel and copy nodes by stream "
                      "capture (cudaStreamBeginCaptureToGraph into the graph)");
  }
}

cudaError_t cudaGraphAddEmptyNode(cudaGraphNode_t* pGraphNode, cudaGraph_t graph,
                                  const cudaGraphNode_t* pDependencies, size_t numDependencies) {
  cudaGraphNodeParams params{};
  params.type = cudaGraphNodeTypeEmpty;
  return cudaGraphAddNode(pGraphNode, graph, pDependencies, nullptr, numDependencies, &params);
}

cudaError_t cudaGraphAddHostNode(cudaGraphNode_t* pGraphNode, cudaGraph_t graph,
                                 const cudaGraphNode_t* pDependencies, size_t numDependencies,
                                 const cudaHostNodeParams* pNodeParams) {
  if (!pNodeParams) return fail(cudaErrorInvalidValue, "cudaGraphAddHostNode: null parameters");
  cudaGraphNodeParams params{};
  params.type = cudaGraphNodeTypeHost;
  params.host.fn = pNodeParams->fn;
  params.host.userData = pNodeParams->userData;
  return cudaGraphAddNode(pGraphNode, graph, pDependencies, nullptr, numDependencies, &params);
}
