// CUDA graphs as the emulated runtime holds them: the graph, node and
// executable-graph objects behind cudaGraph_t, cudaGraphNode_t and
// cudaGraphExec_t, the conditional handles, and the lock that guards them and
// stream capture. A node's operation (a kernel with a copy of its arguments, a
// copy, a set, a host function) is immutable and shared by the graph and the
// executable graphs instantiated from it, so destroying or changing a graph
// after instantiation does not change what its executable graphs run.
// Internal to the runtime.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "emulator.h"

namespace ddpm::emu::detail {

// Guards every graph, node, executable graph and the stream capture state.
// Never held while a grid runs; taken before, never after, the runtime
// registry's own lock.
std::mutex& graph_mutex();

// The value behind a cudaGraphConditionalHandle. cudaGraphSetConditional may
// set it from any thread of a running kernel, hence the atomic.
struct ConditionalHandle {
  unsigned long long id = 0;
  std::atomic<unsigned> value{0};
  unsigned default_value = 0;
  bool assign_default = false;       // cudaGraphCondAssignDefault
  const void* created_on = nullptr;  // the graph given at creation (compared, never followed)
};

// What a node does when it runs. Conditional nodes have no operation of their
// own (type only); their handle and bodies live in the node.
struct NodeOp {
  cudaGraphNodeType type = cudaGraphNodeTypeEmpty;
  std::string what;  // names it in messages: "kernel 'foo'", "cudaMemcpyAsync of 64 bytes", ...

  // cudaGraphNodeTypeKernel: the launch, with the arguments copied when it was captured.
  KernelBody kernel{};
  std::shared_ptr<void> bound;  // owns kernel.bound
  dim3 grid, block;
  std::size_t shmem_bytes = 0;

  // cudaGraphNodeTypeMemcpy (1-D) and cudaGraphNodeTypeMemset (rows of
  // `width` elements of element_size bytes, `height` rows `pitch` bytes apart).
  void* dst = nullptr;
  const void* src = nullptr;
  std::size_t bytes = 0;
  cudaMemcpyKind kind = cudaMemcpyDefault;
  unsigned value = 0;
  unsigned element_size = 1;
  std::size_t width = 0, height = 1, pitch = 0;

  // cudaGraphNodeTypeHost.
  cudaHostFn_t fn = nullptr;
  void* user_data = nullptr;
};

// An executable graph's copy of a graph: nodes in the order they run.
struct ExecNode;
struct ExecGraph {
  std::vector<ExecNode> nodes;
  // Handles created on this graph with cudaGraphCondAssignDefault: set to
  // their default each time this graph starts running.
  std::vector<std::shared_ptr<ConditionalHandle>> defaults;
};
struct ExecNode {
  std::shared_ptr<const NodeOp> op;
  std::shared_ptr<ConditionalHandle> handle;  // conditional nodes
  cudaGraphConditionalNodeType conditional_type = cudaGraphCondTypeWhile;
  std::vector<ExecGraph> bodies;
};

}  // namespace ddpm::emu::detail

// The objects behind CUDA's opaque handle types (driver_types.h declares them;
// the emulator is the runtime, so it defines them).
struct CUgraphNode_st {
  CUgraph_st* graph = nullptr;
  std::vector<CUgraphNode_st*> dependencies;
  std::shared_ptr<const ddpm::emu::detail::NodeOp> op;
  // Conditional nodes: the handle, the kind, and the body graphs the node owns
  // (body_handles is the array cudaGraphNodeParams::conditional.phGraph_out
  // points at).
  std::shared_ptr<ddpm::emu::detail::ConditionalHandle> handle;
  cudaGraphConditionalNodeType conditional_type = cudaGraphCondTypeWhile;
  std::vector<std::unique_ptr<CUgraph_st>> bodies;
  std::vector<cudaGraph_t> body_handles;
};

struct CUgraph_st {
  std::vector<std::unique_ptr<CUgraphNode_st>> nodes;  // in insertion (a topological) order
  std::vector<std::shared_ptr<ddpm::emu::detail::ConditionalHandle>> handles;  // created on it
  CUgraphNode_st* owner = nullptr;  // a conditional body: the node that owns it
  int captures = 0;                 // capture sequences recording into it now
  std::string invalidated;          // why a capture into it was invalidated, if one was
  int execs = 0;                    // live executable graphs instantiated from it
};

struct CUgraphExec_st {
  ddpm::emu::detail::ExecGraph root;
  CUgraph_st* source = nullptr;  // null once that graph is destroyed
  bool has_conditionals = false;
  bool running = false;
};

namespace ddpm::emu::detail {

// The graphs (conditional bodies included), nodes and executable graphs that
// exist: handles are checked against these before they are followed. Caller
// holds graph_mutex().
struct GraphRegistry {
  std::set<const CUgraph_st*> graphs;
  std::set<const CUgraphNode_st*> nodes;
  std::set<const CUgraphExec_st*> execs;
};
GraphRegistry& graph_registry();

inline bool is_live_graph(const CUgraph_st* graph) {
  return graph && graph_registry().graphs.count(graph) != 0;
}
inline bool is_live_node(const CUgraphNode_st* node) {
  return node && graph_registry().nodes.count(node) != 0;
}

// Caller holds graph_mutex(). A new, empty, registered graph.
CUgraph_st* create_graph();

// The handle cudaGraphConditionalHandleCreate returned as `id`, or null if
// there is none or its graph and executable graphs are gone. Takes its own
// lock (kernels call it through cudaGraphSetConditional).
std::shared_ptr<ConditionalHandle> find_handle(unsigned long long id);

// Caller holds graph_mutex(). Appends a node running `op` after `dependencies`
// (nodes of `graph`) and returns it.
CUgraphNode_st* add_node(CUgraph_st* graph, const std::vector<CUgraphNode_st*>& dependencies,
                         std::shared_ptr<const NodeOp> op);

// Caller holds graph_mutex(). Destroys a top-level graph (not a conditional
// body), its nodes and bodies; executable graphs made from it live on.
void destroy_graph(CUgraph_st* graph);

// Caller holds graph_mutex(). Whether a stream captures into the graph or
// into one of its conditional bodies.
bool capture_in_progress(const CUgraph_st* graph);

// Caller holds graph_mutex(). Whether `ancestor` is `node` or one of the nodes
// it depends on, directly or not.
bool depends_on(const CUgraphNode_st* node, const CUgraphNode_st* ancestor);

}  // namespace ddpm::emu::detail
