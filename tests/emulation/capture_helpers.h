// Small RAII helpers for the graph and stream-capture tests: a created stream,
// a graph and an executable graph destroyed at scope exit, and capture of a
// piece of work into a new graph.
#pragma once

#include <cuda_runtime_api.h>

#include <functional>

#include "kernels/check.cuh"

namespace ddpm::emu_test {

class Stream {
 public:
  explicit Stream(unsigned flags = cudaStreamNonBlocking) {
    DDPM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, flags));
  }
  // Ends a capture a failed test left going (it would refuse the next test's
  // cudaMalloc), then destroys the stream.
  ~Stream() {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream_, &status) == cudaSuccess &&
        status != cudaStreamCaptureStatusNone) {
      cudaGraph_t graph = nullptr;
      if (cudaStreamEndCapture(stream_, &graph) == cudaSuccess) cudaGraphDestroy(graph);
    }
    cudaStreamDestroy(stream_);
    cudaGetLastError();
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  operator cudaStream_t() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

class Graph {
 public:
  Graph() = default;
  explicit Graph(cudaGraph_t graph) : graph_(graph) {}
  ~Graph() {
    if (graph_) cudaGraphDestroy(graph_);
  }
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  cudaGraph_t get() const { return graph_; }
  cudaGraph_t* out() { return &graph_; }

 private:
  cudaGraph_t graph_ = nullptr;
};

class GraphExec {
 public:
  explicit GraphExec(cudaGraph_t graph) { DDPM_CUDA_CHECK(cudaGraphInstantiate(&exec_, graph, 0)); }
  ~GraphExec() { cudaGraphExecDestroy(exec_); }
  GraphExec(const GraphExec&) = delete;
  GraphExec& operator=(const GraphExec&) = delete;
  cudaGraphExec_t get() const { return exec_; }
  void launch(cudaStream_t stream) const { DDPM_CUDA_CHECK(cudaGraphLaunch(exec_, stream)); }

 private:
  cudaGraphExec_t exec_ = nullptr;
};

// Captures what `work` enqueues on `stream` into a new graph.
inline cudaGraph_t capture(cudaStream_t stream, const std::function<void()>& work,
                           cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal) {
  DDPM_CUDA_CHECK(cudaStreamBeginCapture(stream, mode));
  work();
  cudaGraph_t graph = nullptr;
  DDPM_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  return graph;
}

}  // namespace ddpm::emu_test
