// What the driver returns for each stream-capture rule and graph check the
// emulator reproduces, printed as error names, so a GPU run can confirm the
// emulator's codes. One program, two builds: with the emulator (compared with
// graph_crosscheck_expected.txt in CI) and with cudart and the kernels built
// by nvcc (gpu/CMakeLists.txt; compared with the same file where a GPU is
// present). The expected file was printed by the emulator: where the GPU
// disagrees, the GPU is right and the emulator (capture.cpp) must change.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "tests/emulation/capture_helpers.h"
#include "tests/emulation/device_buffer.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {
namespace {

constexpr int kN = 64;

const char* name(cudaError_t e) {
  return cudaGetErrorName(e);
}

// Begins a capture with one kernel recorded, makes the call, ends the
// capture, and prints both codes and whether a graph came back.
void print_rule(const char* what, unsigned stream_flags, cudaStreamCaptureMode mode,
                const std::function<cudaError_t(cudaStream_t)>& call) {
  Stream stream(stream_flags);
  DeviceBuffer<float> x(kN);
  cudaGetLastError();
  cudaError_t begin = cudaStreamBeginCapture(stream, mode);
  add_scalar_unchecked(x.get(), kN, 1.0f, stream);
  const cudaError_t result = call(stream);
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  std::printf("%s: %s, then cudaStreamEndCapture %s, %s\n", what,
              name(begin == cudaSuccess ? result : begin), name(end),
              graph ? "a graph" : "no graph");
  if (graph) cudaGraphDestroy(graph);
  cudaGetLastError();
}

void print_capture_rules() {
  constexpr unsigned kNonBlocking = cudaStreamNonBlocking, kBlocking = cudaStreamDefault;
  constexpr cudaStreamCaptureMode kGlobal = cudaStreamCaptureModeGlobal;
  DeviceBuffer<float> y(kN);
  std::vector<float> host(kN);
  cudaEvent_t outside, captured;
  DDPM_CUDA_CHECK(cudaEventCreate(&outside));
  DDPM_CUDA_CHECK(cudaEventCreate(&captured));
  DDPM_CUDA_CHECK(cudaEventRecord(outside, nullptr));
  DDPM_CUDA_CHECK(cudaDeviceSynchronize());
  Stream other;

  print_rule("cudaMalloc, global capture", kNonBlocking, kGlobal, [](cudaStream_t) {
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, 16);
    if (e == cudaSuccess) cudaFree(p);
    return e;
  });
  print_rule("cudaMalloc, relaxed capture", kNonBlocking, cudaStreamCaptureModeRelaxed,
             [](cudaStream_t) {
               void* p = nullptr;
               const cudaError_t e = cudaMalloc(&p, 16);
               if (e == cudaSuccess) cudaFree(p);
               return e;
             });
  print_rule("cudaMemcpy, global capture, non-blocking stream", kNonBlocking, kGlobal,
             [&](cudaStream_t) {
               return cudaMemcpy(y.get(), host.data(), kN * sizeof(float), cudaMemcpyHostToDevice);
             });
  print_rule("cudaMemcpy, global capture, blocking stream", kBlocking, kGlobal, [&](cudaStream_t) {
    return cudaMemcpy(y.get(), host.data(), kN * sizeof(float), cudaMemcpyHostToDevice);
  });
  print_rule("cudaMemset, global capture, non-blocking stream", kNonBlocking, kGlobal,
             [&](cudaStream_t) { return cudaMemset(y.get(), 0, kN * sizeof(float)); });
  print_rule("cudaStreamSynchronize of the capturing stream", kNonBlocking, kGlobal,
             [](cudaStream_t s) { return cudaStreamSynchronize(s); });
  print_rule("cudaStreamSynchronize of the capturing stream, relaxed", kNonBlocking,
             cudaStreamCaptureModeRelaxed, [](cudaStream_t s) { return cudaStreamSynchronize(s); });
  print_rule("cudaStreamSynchronize of another stream, global capture", kNonBlocking, kGlobal,
             [&](cudaStream_t) { return cudaStreamSynchronize(other); });
  print_rule("cudaDeviceSynchronize, global capture", kNonBlocking, kGlobal,
             [](cudaStream_t) { return cudaDeviceSynchronize(); });
  print_rule("cudaEventSynchronize of an uncaptured event, global capture", kNonBlocking, kGlobal,
             [&](cudaStream_t) { return cudaEventSynchronize(outside); });
  print_rule("cudaStreamQuery of the capturing stream", kNonBlocking, kGlobal,
             [](cudaStream_t s) { return cudaStreamQuery(s); });
  print_rule("cudaEventQuery of a captured event", kNonBlocking, kGlobal, [&](cudaStream_t s) {
    cudaEventRecord(captured, s);
    return cudaEventQuery(captured);
  });
  print_rule("cudaStreamWaitEvent on an uncaptured event", kNonBlocking, kGlobal,
             [&](cudaStream_t s) { return cudaStreamWaitEvent(s, outside, 0); });
  print_rule("kernel on stream 0, blocking stream captures", kBlocking, kGlobal, [&](cudaStream_t) {
    add_scalar_unchecked(y.get(), kN, 1.0f, nullptr);
    return cudaGetLastError();
  });
  print_rule("kernel on stream 0, non-blocking stream captures", kNonBlocking, kGlobal,
             [&](cudaStream_t) {
               add_scalar_unchecked(y.get(), kN, 1.0f, nullptr);
               return cudaGetLastError();
             });
  cudaEventDestroy(outside);
  cudaEventDestroy(captured);
}

void print_begin_end_errors() {
  Stream stream, side;
  DeviceBuffer<float> x(kN);
  cudaGraph_t graph = nullptr;
  cudaGetLastError();
  std::printf("cudaStreamEndCapture never begun: %s\n", name(cudaStreamEndCapture(stream, &graph)));
  std::printf("cudaStreamBeginCapture of stream 0: %s\n",
              name(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal)));
  cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal);
  std::printf("cudaStreamBeginCapture twice: %s\n",
              name(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal)));
  cudaEvent_t fork;
  cudaEventCreate(&fork);
  cudaEventRecord(fork, stream);
  cudaStreamWaitEvent(side, fork, 0);
  add_scalar_unchecked(x.get(), kN, 1.0f, side);
  std::printf("cudaStreamEndCapture on the forked stream: %s\n",
              name(cudaStreamEndCapture(side, &graph)));
  std::printf("  then on the origin stream: %s\n", name(cudaStreamEndCapture(stream, &graph)));
  cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal);
  cudaEventRecord(fork, stream);
  cudaStreamWaitEvent(side, fork, 0);
  add_scalar_unchecked(x.get(), kN, 1.0f, side);
  std::printf("cudaStreamEndCapture with an unjoined fork: %s\n",
              name(cudaStreamEndCapture(stream, &graph)));
  cudaEventDestroy(fork);
  cudaGraphExec_t exec = nullptr;
  std::printf("cudaGraphInstantiate of a null graph: %s\n",
              name(cudaGraphInstantiate(&exec, nullptr, 0)));
  cudaGetLastError();
}

// A graph holding one WHILE node whose body counts *counter down to zero.
cudaGraph_t countdown_graph(int* counter, int* iterations, bool host_node_in_body) {
  Stream body_stream;
  cudaGraph_t graph = nullptr;
  DDPM_CUDA_CHECK(cudaGraphCreate(&graph, 0));
  cudaGraphConditionalHandle handle;
  DDPM_CUDA_CHECK(cudaGraphConditionalHandleCreate(&handle, graph, 1, cudaGraphCondAssignDefault));
  cudaGraphNodeParams params{};
  params.type = cudaGraphNodeTypeConditional;
  params.conditional.handle = handle;
  params.conditional.type = cudaGraphCondTypeWhile;
  params.conditional.size = 1;
  cudaGraphNode_t node;
  DDPM_CUDA_CHECK(cudaGraphAddNode(&node, graph, nullptr, nullptr, 0, &params));
  cudaGraph_t body = params.conditional.phGraph_out[0];
  DDPM_CUDA_CHECK(cudaStreamBeginCaptureToGraph(body_stream, body, nullptr, nullptr, 0,
                                                cudaStreamCaptureModeGlobal));
  count_down(counter, iterations, handle, body_stream);
  if (host_node_in_body) {
    const cudaHostFn_t nothing = [](void*) {};
    DDPM_CUDA_CHECK(cudaLaunchHostFunc(body_stream, nothing, nullptr));
  }
  DDPM_CUDA_CHECK(cudaStreamEndCapture(body_stream, &body));
  return graph;
}

void print_conditionals() {
  Stream stream;
  DeviceBuffer<int> counter(1), iterations(std::vector<int>{0});
  cudaGraph_t graph = countdown_graph(counter.get(), iterations.get(), false);
  cudaGraphExec_t exec = nullptr, second = nullptr;
  DDPM_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  std::printf("second cudaGraphInstantiate of a graph with a WHILE node: %s\n",
              name(cudaGraphInstantiate(&second, graph, 0)));
  cudaGetLastError();
  for (int launch = 0; launch < 2; ++launch) {
    const int five = 5;
    DDPM_CUDA_CHECK(cudaMemcpy(counter.get(), &five, sizeof five, cudaMemcpyHostToDevice));
    DDPM_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    DDPM_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  std::printf("WHILE loop counting down from 5, launched twice: %d iterations\n",
              iterations.download()[0]);
  DDPM_CUDA_CHECK(cudaGraphExecDestroy(exec));
  DDPM_CUDA_CHECK(cudaGraphDestroy(graph));

  graph = countdown_graph(counter.get(), iterations.get(), true);
  std::printf("cudaGraphInstantiate with a host node in a WHILE body: %s\n",
              name(cudaGraphInstantiate(&exec, graph, 0)));
  cudaGetLastError();
  DDPM_CUDA_CHECK(cudaGraphDestroy(graph));
}

}  // namespace
}  // namespace ddpm::emu_test

int main() {
  using namespace ddpm::emu_test;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: the GPU cross-check is skipped\n");
    return 0;
  }
  print_capture_rules();
  print_begin_end_errors();
  print_conditionals();
  return 0;
}
