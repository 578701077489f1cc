// CapturedGraph: one CUDA graph captured from a stream, instantiated, and
// launched again and again (the sampling loop, the training step). It owns the
// graph and its executable; a new capture replaces both, so a caller keeps one
// CapturedGraph per thing it replays and re-captures when what the capture
// baked in changes (a batch shape, a buffer address): the `key` says what the
// graph held was captured for.
//
// Capture is in cudaStreamCaptureModeGlobal by default: the driver then
// refuses every call that would break a graph (a synchronous copy or memset,
// cudaMalloc / cudaFree, a stream or device synchronisation, a query of the
// capturing stream) from any thread. Such a call inside `enqueue` makes
// capture() throw std::runtime_error naming it (DDPM_CUDA_CHECK's message),
// or, when its error was not checked, naming the invalidated capture; the
// stream is left out of capture and nothing is kept.
//
// What a replay reads is fixed at capture: kernel arguments are copied by
// value then. Whatever differs between replays (a step index, a seed) must be
// read by the kernels from device memory.
#pragma once

#include <cuda_runtime_api.h>

#include <functional>
#include <string>

namespace ddpm::cuda {

class CapturedGraph {
 public:
  explicit CapturedGraph(cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal) : mode_(mode) {}
  ~CapturedGraph();  // never throws; logs a failing destroy
  CapturedGraph(CapturedGraph&& other) noexcept;
  CapturedGraph& operator=(CapturedGraph&& other) noexcept;
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;

  // Records what `enqueue` puts on `stream` (a non-blocking stream: work on
  // the legacy default stream cannot join a capture) and instantiates it,
  // replacing any graph held. When an executable exists already, it is
  // updated in place (cudaGraphExecUpdate) if the driver allows it, else
  // instantiated anew. After a failure (an exception) nothing is held.
  void capture(cudaStream_t stream, const std::function<void()>& enqueue, std::string key = {});

  // A loop on the device: the graph runs `prologue` once, then a WHILE
  // conditional node whose body (what `body` enqueues on `stream`, given the
  // node's handle) runs again and again while the handle is non-zero. The
  // handle is 1 at every launch (cudaGraphCondAssignDefault); a kernel of the
  // body ends the loop with cudaGraphSetConditional(handle, 0). Needs CUDA
  // 12.4+ (conditional_nodes_supported()).
  void capture_while(cudaStream_t stream, const std::function<void()>& prologue,
                     const std::function<void(cudaGraphConditionalHandle)>& body,
                     std::string key = {});

  // Enqueues one run of the graph on `stream` (asynchronous). Throws
  // std::logic_error when nothing was captured.
  void launch(cudaStream_t stream);

  bool empty() const { return exec_ == nullptr; }
  // The key given to the capture that made the graph held ("" when empty).
  const std::string& key() const { return key_; }
  // Whether a graph is held and was captured for `key`.
  bool matches(const std::string& key) const { return !empty() && key_ == key; }
  // Destroys the graph and its executable.
  void reset() noexcept;

 private:
  void adopt(cudaGraph_t graph, bool conditional, std::string key);

  cudaStreamCaptureMode mode_;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  bool conditional_ = false;  // the held graph has a conditional node
  std::string key_;
};

// Whether this process's CUDA runtime and driver both support conditional
// graph nodes (12.4 and later). When they do not, `why` (if given) says which
// is too old, with its version.
bool conditional_nodes_supported(std::string* why = nullptr);

}  // namespace ddpm::cuda
