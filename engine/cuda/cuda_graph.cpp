// CapturedGraph (cuda_graph.h): stream capture, instantiation, re-capture and
// launch of one CUDA graph, and the WHILE-loop form with a conditional node.
#include "engine/cuda/cuda_graph.h"

#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>

#include "kernels/check.cuh"

namespace ddpm::cuda {

namespace {

void log_cuda_error(cudaError_t e, const char* call) {
  if (e != cudaSuccess)
    std::fprintf(stderr, "cuda graph: %s failed: %s (%s)\n", call, cudaGetErrorName(e),
                 cudaGetErrorString(e));
}

std::string error_text(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")";
}

// Destroys a graph unless released (the captures' scratch graphs on error paths).
class GraphGuard {
 public:
  GraphGuard() = default;
  ~GraphGuard() {
    if (graph_) log_cuda_error(cudaGraphDestroy(graph_), "cudaGraphDestroy");
  }
  GraphGuard(const GraphGuard&) = delete;
  GraphGuard& operator=(const GraphGuard&) = delete;
  cudaGraph_t* out() { return &graph_; }
  cudaGraph_t get() const { return graph_; }
  cudaGraph_t release() { return std::exchange(graph_, nullptr); }

 private:
  cudaGraph_t graph_ = nullptr;
};

void check_not_capturing(cudaStream_t stream, const char* what) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  DDPM_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
  if (status != cudaStreamCaptureStatusNone)
    throw std::logic_error(std::string("CapturedGraph::") + what +
                           ": the stream is already capturing (captures do not nest)");
}

// Runs `enqueue` inside the capture begun on `stream` and ends it. `target`:
// the graph the capture writes into when the caller made it
// (cudaStreamBeginCaptureToGraph; the caller owns it), else null (the
// capture's own graph, returned to the caller). On any failure the capture
// is ended, the capture's own graph destroyed and the error thrown: a CUDA
// error (a call the driver refuses during capture, checked with
// DDPM_CUDA_CHECK) as std::runtime_error naming the call, anything else as
// it was thrown.
cudaGraph_t run_capture(cudaStream_t stream, cudaGraph_t target, const char* what,
                        const std::function<void()>& enqueue) {
  const auto end_capture = [&] {
    cudaGraph_t g = nullptr;
    const cudaError_t e = cudaStreamEndCapture(stream, &g);
    if (g && g != target) log_cuda_error(cudaGraphDestroy(g), "cudaGraphDestroy");
    cudaGetLastError();  // the invalidated capture's error is reported by the throw
    return e;
  };
  try {
    enqueue();
  } catch (const std::runtime_error& e) {
    end_capture();
    // The StreamCapture* errors (cudaErrorStreamCaptureUnsupported, ...) are
    // the driver refusing a call that cannot be captured.
    const bool refused = std::string(e.what()).find("StreamCapture") != std::string::npos;
    throw std::runtime_error(std::string("CUDA graph capture (") + what + "): " + e.what() +
                             (refused ? " [during stream capture the driver refuses synchronous "
                                        "copies and memsets, cudaMalloc/cudaFree, synchronisation "
                                        "and queries of the capturing stream]"
                                      : ""));
  } catch (...) {
    end_capture();
    throw;
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t e = cudaStreamEndCapture(stream, &graph);
  if (e != cudaSuccess) {
    if (graph && graph != target) log_cuda_error(cudaGraphDestroy(graph), "cudaGraphDestroy");
    cudaGetLastError();
    throw std::runtime_error(
        std::string("CUDA graph capture (") + what +
        "): cudaStreamEndCapture failed: " + error_text(e) +
        (e == cudaErrorStreamCaptureInvalidated
             ? ": a call the driver refuses during capture (a synchronous copy or memset, "
               "cudaMalloc/cudaFree, a synchronisation or a query of the capturing stream) "
               "was made and its error not checked"
             : ""));
  }
  return graph;
}

}  // namespace

CapturedGraph::~CapturedGraph() {
  reset();
}

CapturedGraph::CapturedGraph(CapturedGraph&& other) noexcept {
  *this = std::move(other);
}

CapturedGraph& CapturedGraph::operator=(CapturedGraph&& other) noexcept {
  if (this != &other) {
    reset();
    mode_ = other.mode_;
    exec_ = std::exchange(other.exec_, nullptr);
    conditional_ = std::exchange(other.conditional_, false);
    key_ = std::exchange(other.key_, std::string());
  }
  return *this;
}

void CapturedGraph::reset() noexcept {
  if (exec_) log_cuda_error(cudaGraphExecDestroy(exec_), "cudaGraphExecDestroy");
  exec_ = nullptr;
  conditional_ = false;
  key_.clear();
}

void CapturedGraph::capture(cudaStream_t stream, const std::function<void()>& enqueue,
                            std::string key) {
  check_not_capturing(stream, "capture");
  try {
    DDPM_CUDA_CHECK(cudaStreamBeginCapture(stream, mode_));
    GraphGuard graph;
    *graph.out() = run_capture(stream, nullptr, "capture", enqueue);
    adopt(graph.get(), /*conditional=*/false, std::move(key));
  } catch (...) {
    reset();  // no stale graph survives a failed capture
    throw;
  }
}

void CapturedGraph::capture_while(cudaStream_t stream, const std::function<void()>& prologue,
                                  const std::function<void(cudaGraphConditionalHandle)>& body,
                                  std::string key) {
  check_not_capturing(stream, "capture_while");
  reset();  // a graph with conditional nodes is always instantiated anew
  GraphGuard graph;
  DDPM_CUDA_CHECK(cudaGraphCreate(graph.out(), 0));
  // 1 at every launch: the body runs at least once, until a kernel sets 0.
  cudaGraphConditionalHandle handle{};
  DDPM_CUDA_CHECK(
      cudaGraphConditionalHandleCreate(&handle, graph.get(), 1, cudaGraphCondAssignDefault));

  // The prologue, then the WHILE node after it. One stream throughout (the
  // caller's work may be tied to one, e.g. a backend's): the node is added
  // while the prologue's capture is open, then that capture ends and the
  // body's begins, into the node's body graph.
  cudaGraph_t body_graph = nullptr;
  DDPM_CUDA_CHECK(cudaStreamBeginCaptureToGraph(stream, graph.get(), nullptr, nullptr, 0, mode_));
  run_capture(stream, graph.get(), "prologue of a WHILE loop", [&] {
    prologue();
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    const cudaGraphNode_t* deps = nullptr;
    size_t count = 0;
    DDPM_CUDA_CHECK(
        cudaStreamGetCaptureInfo(stream, &status, nullptr, nullptr, &deps, nullptr, &count));
    if (status != cudaStreamCaptureStatusActive)
      throw std::runtime_error("the capture was invalidated by a call in the prologue");
    cudaGraphNodeParams params{};
    params.type = cudaGraphNodeTypeConditional;
    params.conditional.handle = handle;
    params.conditional.type = cudaGraphCondTypeWhile;
    params.conditional.size = 1;
    cudaGraphNode_t node = nullptr;
    DDPM_CUDA_CHECK(cudaGraphAddNode(&node, graph.get(), deps, nullptr, count, &params));
    DDPM_CUDA_CHECK(cudaStreamUpdateCaptureDependencies(stream, &node, nullptr, 1,
                                                        cudaStreamSetCaptureDependencies));
    body_graph = params.conditional.phGraph_out[0];
  });
  DDPM_CUDA_CHECK(cudaStreamBeginCaptureToGraph(stream, body_graph, nullptr, nullptr, 0, mode_));
  run_capture(stream, body_graph, "body of a WHILE loop", [&] { body(handle); });
  adopt(graph.get(), /*conditional=*/true, std::move(key));
}

// Makes `graph` (still owned by the caller) the executable held: an update of
// the current executable where the driver allows it (same topology, new
// arguments), else a new instantiation. Graphs with conditional nodes are
// always instantiated anew (their handles belong to the graph they were
// created in).
void CapturedGraph::adopt(cudaGraph_t graph, bool conditional, std::string key) {
  if (exec_ && !conditional && !conditional_) {
    cudaGraphExecUpdateResultInfo info{};
    if (cudaGraphExecUpdate(exec_, graph, &info) == cudaSuccess) {
      key_ = std::move(key);
      return;
    }
    cudaGetLastError();  // not an error: the topology changed, instantiate instead
  }
  reset();
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(
        "CapturedGraph: cudaGraphInstantiate failed: " + error_text(e) +
        (conditional ? " (a conditional body may hold kernels, copies, memsets and nested "
                       "conditionals only: no host functions, events or allocations)"
                     : ""));
  }
  exec_ = exec;
  conditional_ = conditional;
  key_ = std::move(key);
}

void CapturedGraph::launch(cudaStream_t stream) {
  if (!exec_) throw std::logic_error("CapturedGraph::launch: nothing was captured");
  DDPM_CUDA_CHECK(cudaGraphLaunch(exec_, stream));
}

bool conditional_nodes_supported(std::string* why) {
  constexpr int kNeeded = 12040;  // CUDA 12.4: conditional WHILE nodes, cudaGraphSetConditional
  const auto version = [](int v) {
    return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
  };
  // The runtime this program was built against (the CUDA runtime is linked
  // statically in release builds, so this is the one that runs).
  if (CUDART_VERSION < kNeeded) {
    if (why)
      *why = "the CUDA runtime is " + version(CUDART_VERSION) +
             "; conditional graph nodes need 12.4 or later";
    return false;
  }
  int driver = 0;
  if (cudaDriverGetVersion(&driver) != cudaSuccess) driver = 0, cudaGetLastError();
  if (driver < kNeeded) {
    if (why)
      *why = "the CUDA driver supports CUDA " + version(driver) +
             "; conditional graph nodes need 12.4 or later";
    return false;
  }
  // And a conditional handle on a scratch graph, which a driver without them
  // refuses (the version check alone trusts the number).
  GraphGuard graph;
  cudaError_t e = cudaGraphCreate(graph.out(), 0);
  cudaGraphConditionalHandle handle{};
  if (e == cudaSuccess) e = cudaGraphConditionalHandleCreate(&handle, graph.get(), 0, 0);
  if (e != cudaSuccess) {
    cudaGetLastError();
    if (why)
      *why = "the CUDA driver refuses conditional graph nodes (" + error_text(e) +
             "); they need a 12.4 or later driver";
    return false;
  }
  return true;
}

}  // namespace ddpm::cuda
