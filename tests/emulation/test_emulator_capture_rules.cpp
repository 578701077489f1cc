// What the CUDA driver refuses during stream capture, refused the same way by
// the emulator: the error code of each refused call, the capture invalidated
// (cudaStreamEndCapture then returns cudaErrorStreamCaptureInvalidated and no
// graph), the capture modes that allow some of these calls, the errors of
// ending, instantiating and launching wrongly, and the checks made when a
// graph with conditional nodes is instantiated.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "kernels/emulation/emulator_api.h"
#include "tests/emulation/capture_helpers.h"
#include "tests/emulation/device_buffer.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {
namespace {

constexpr int kN = 64;

cudaStreamCaptureStatus capture_status(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  EXPECT_EQ(cudaStreamIsCapturing(stream, &status), cudaSuccess);
  return status;
}

// Begins a capture on `stream` with one kernel recorded, makes the call
// `violation` makes, and checks that it fails with `expected`, that the
// capture is invalidated (later work on the stream fails, EndCapture returns
// cudaErrorStreamCaptureInvalidated and no graph) and that the stream works
// again afterwards.
void expect_refused_and_invalidated(cudaStream_t stream, cudaError_t expected,
                                    const std::function<cudaError_t()>& violation,
                                    cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal) {
  DeviceBuffer<float> x(std::vector<float>(kN, 0.0f));
  ASSERT_EQ(cudaStreamBeginCapture(stream, mode), cudaSuccess);
  add_scalar(x.get(), kN, 1.0f, stream);
  EXPECT_EQ(violation(), expected) << ddpm::emu::last_error_detail();
  EXPECT_FALSE(ddpm::emu::last_error_detail().empty());
  EXPECT_EQ(capture_status(stream), cudaStreamCaptureStatusInvalidated);
  add_scalar_unchecked(x.get(), kN, 1.0f, stream);
  EXPECT_EQ(cudaGetLastError(), cudaErrorStreamCaptureInvalidated);
  cudaGraph_t graph = reinterpret_cast<cudaGraph_t>(&graph);  // must be overwritten
  EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(graph, nullptr);
  EXPECT_EQ(capture_status(stream), cudaStreamCaptureStatusNone);
  cudaGetLastError();
  add_scalar(x.get(), kN, 1.0f, stream);                  // eager again
  EXPECT_EQ(x.download(), std::vector<float>(kN, 1.0f));  // nothing captured ever ran
}

TEST(EmulatedCaptureRules, MallocAndFreeAreRefused) {
  Stream stream;
  expect_refused_and_invalidated(stream, cudaErrorStreamCaptureUnsupported, [] {
    void* p = nullptr;
    return cudaMalloc(&p, 16);
  });
  void* p = nullptr;
  ASSERT_EQ(cudaMalloc(&p, 16), cudaSuccess);
  expect_refused_and_invalidated(stream, cudaErrorStreamCaptureUnsupported,
                                 [p] { return cudaFree(p); });
  ASSERT_EQ(cudaFree(p), cudaSuccess);
  expect_refused_and_invalidated(stream, cudaErrorStreamCaptureUnsupported, [] {
    void* h = nullptr;
    return cudaMallocHost(&h, 16);
  });
}

TEST(EmulatedCaptureRules, SynchronousCopiesAndSetsAreRefused) {
  Stream non_blocking;
  DeviceBuffer<float> y(kN);
  std::vector<float> host(kN);
  expect_refused_and_invalidated(non_blocking, cudaErrorStreamCaptureUnsupported, [&] {
    return cudaMemcpy(y.get(), host.data(), kN * sizeof(float), cudaMemcpyHostToDevice);
  });
  expect_refused_and_invalidated(non_blocking, cudaErrorStreamCaptureUnsupported,
                                 [&] { return cudaMemset(y.get(), 0, kN * sizeof(float)); });
  // A blocking stream makes the legacy stream that synchronous calls use
  // depend on the capture: the driver reports that first.
  Stream blocking(cudaStreamDefault);
  expect_refused_and_invalidated(blocking, cudaErrorStreamCaptureImplicit, [&] {
    return cudaMemcpy(host.data(), y.get(), kN * sizeof(float), cudaMemcpyDeviceToHost);
  });
}

TEST(EmulatedCaptureRules, SynchronisationIsRefused) {
  Stream stream, other;
  cudaEvent_t event;
  ASSERT_EQ(cudaEventCreate(&event), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(event, other), cudaSuccess);
  expect_refused_and_invalidated(stream, cudaErrorStreamCaptureUnsupported,
                                 [&] { return cudaStreamSynchronize(stream); });
  expect_refused_and_invalidated(stream, cudaErrorStreamCaptureUnsupported,
                                 [&] { return cudaStreamSynchronize(other); });
  expect_refused_and_invalidated(stream, cudaErrorStreamCaptureUnsupported,
                                 [] { return cudaDeviceSynchronize(); });
  expect_refused_and_invalidated(stream, cudaErrorStreamCaptureUnsupported,
                                 [&] { return cudaEventSynchronize(event); });
  expect_refused_and_invalidated(stream, cudaErrorStreamCaptureUnsupported,
                                 [&] { return cudaStreamQuery(stream); });
  cudaEventDestroy(event);
}

TEST(EmulatedCaptureRules, CapturedEventsAndOutsideEventsAreRefused) {
  Stream stream, other;
  cudaEvent_t captured, outside;
  ASSERT_EQ(cudaEventCreate(&captured), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&outside), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(outside, other), cudaSuccess);
  expect_refused_and_invalidated(stream, cudaErrorCapturedEvent, [&] {
    EXPECT_EQ(cudaEventRecord(captured, stream), cudaSuccess);
    return cudaEventQuery(captured);
  });
  // Waiting on work recorded outside the capture would cross its boundary.
  expect_refused_and_invalidated(stream, cudaErrorStreamCaptureIsolation,
                                 [&] { return cudaStreamWaitEvent(stream, outside, 0); });
  cudaEventDestroy(captured);
  cudaEventDestroy(outside);
}

TEST(EmulatedCaptureRules, LegacyStreamWorkWhileABlockingStreamCaptures) {
  Stream blocking(cudaStreamDefault);
  DeviceBuffer<float> y(std::vector<float>(kN, 0.0f));
  expect_refused_and_invalidated(blocking, cudaErrorStreamCaptureImplicit, [&] {
    add_scalar_unchecked(y.get(), kN, 1.0f, nullptr);
    return cudaGetLastError();
  });
  EXPECT_EQ(y.download(), std::vector<float>(kN, 0.0f));
  // A non-blocking capture leaves the legacy stream usable.
  Stream non_blocking;
  DeviceBuffer<float> x(kN);
  ASSERT_EQ(cudaStreamBeginCapture(non_blocking, cudaStreamCaptureModeGlobal), cudaSuccess);
  add_scalar(x.get(), kN, 1.0f, non_blocking);
  add_scalar(y.get(), kN, 2.0f, nullptr);  // runs now
  Graph graph;
  EXPECT_EQ(cudaStreamEndCapture(non_blocking, graph.out()), cudaSuccess);
  EXPECT_EQ(y.download(), std::vector<float>(kN, 2.0f));
}

TEST(EmulatedCaptureRules, GraphLaunchIntoACapture) {
  Stream stream;
  DeviceBuffer<float> x(std::vector<float>(kN, 0.0f));
  Graph graph(capture(stream, [&] { add_scalar(x.get(), kN, 1.0f, stream); }));
  GraphExec exec(graph.get());
  expect_refused_and_invalidated(stream, cudaErrorStreamCaptureUnsupported,
                                 [&] { return cudaGraphLaunch(exec.get(), stream); });
}

// Relaxed captures, and threads that switched themselves to relaxed, may
// make the unsafe calls; what conflicts with the capture itself stays refused.
TEST(EmulatedCaptureRules, RelaxedModeAllowsUnsafeCalls) {
  Stream stream;
  DeviceBuffer<float> x(std::vector<float>(kN, 0.0f));
  void* p = nullptr;
  Graph graph(capture(
      stream,
      [&] {
        add_scalar(x.get(), kN, 1.0f, stream);
        EXPECT_EQ(cudaMalloc(&p, 16), cudaSuccess);
        EXPECT_EQ(cudaFree(p), cudaSuccess);
      },
      cudaStreamCaptureModeRelaxed));
  ASSERT_NE(graph.get(), nullptr);
  expect_refused_and_invalidated(
      stream, cudaErrorStreamCaptureUnsupported, [&] { return cudaStreamSynchronize(stream); },
      cudaStreamCaptureModeRelaxed);

  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  Graph second(capture(stream, [&] {
    ASSERT_EQ(cudaThreadExchangeStreamCaptureMode(&mode), cudaSuccess);
    EXPECT_EQ(cudaMalloc(&p, 16), cudaSuccess);
    EXPECT_EQ(cudaFree(p), cudaSuccess);
    ASSERT_EQ(cudaThreadExchangeStreamCaptureMode(&mode), cudaSuccess);  // back to global
    add_scalar(x.get(), kN, 1.0f, stream);
  }));
  EXPECT_EQ(mode, cudaStreamCaptureModeRelaxed);
  ASSERT_NE(second.get(), nullptr);
}

// A global capture forbids unsafe calls in every thread; a thread-local one
// only in its own.
TEST(EmulatedCaptureRules, OtherThreadsAndCaptureModes) {
  Stream stream;
  DeviceBuffer<float> x(std::vector<float>(kN, 0.0f));
  const auto malloc_in_other_thread = [] {
    cudaError_t result = cudaSuccess;
    std::thread([&] {
      void* p = nullptr;
      result = cudaMalloc(&p, 16);
      if (result == cudaSuccess) cudaFree(p);
    }).join();
    return result;
  };
  Graph local(capture(
      stream,
      [&] {
        add_scalar(x.get(), kN, 1.0f, stream);
        EXPECT_EQ(malloc_in_other_thread(), cudaSuccess);
      },
      cudaStreamCaptureModeThreadLocal));
  ASSERT_NE(local.get(), nullptr);
  expect_refused_and_invalidated(stream, cudaErrorStreamCaptureUnsupported, malloc_in_other_thread);
}

TEST(EmulatedCaptureRules, BeginAndEndErrors) {
  Stream stream, other;
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaErrorIllegalState);  // never begun
  EXPECT_EQ(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal),
            cudaErrorStreamCaptureUnsupported);  // the legacy stream cannot capture
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  EXPECT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaErrorIllegalState);
  EXPECT_EQ(capture_status(stream), cudaStreamCaptureStatusActive);  // not invalidated
  cudaError_t from_other_thread = cudaSuccess;
  std::thread([&] { from_other_thread = cudaStreamEndCapture(stream, &graph); }).join();
  EXPECT_EQ(from_other_thread, cudaErrorStreamCaptureWrongThread);
  Graph ok;
  EXPECT_EQ(cudaStreamEndCapture(stream, ok.out()), cudaSuccess);
  EXPECT_EQ(cudaStreamEndCapture(other, &graph), cudaErrorIllegalState);

  // Instantiating what a failed capture returned, launching what was never made.
  cudaGraphExec_t exec = nullptr;
  EXPECT_EQ(cudaGraphInstantiate(&exec, nullptr, 0), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGraphLaunch(nullptr, stream), cudaErrorInvalidValue);
  EXPECT_STREQ(cudaGetErrorName(cudaErrorStreamCaptureInvalidated),
               "cudaErrorStreamCaptureInvalidated");
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);  // failed calls set the last error
}

TEST(EmulatedCaptureRules, ForksMustJoinAndCapturesMustNotMerge) {
  Stream stream, side;
  DeviceBuffer<float> x(std::vector<float>(kN, 0.0f));
  cudaEvent_t fork;
  ASSERT_EQ(cudaEventCreate(&fork), cudaSuccess);
  // Work forked onto `side` and never joined back.
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(fork, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(side, fork, 0), cudaSuccess);
  EXPECT_EQ(capture_status(side), cudaStreamCaptureStatusActive);
  add_scalar(x.get(), kN, 1.0f, side);
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(side, &graph), cudaErrorStreamCaptureUnmatched);
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaErrorIllegalState);
  EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(graph, nullptr);
  cudaGetLastError();

  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(fork, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(side, fork, 0), cudaSuccess);
  add_scalar(x.get(), kN, 1.0f, side);
  EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaErrorStreamCaptureUnjoined);
  EXPECT_EQ(graph, nullptr);
  EXPECT_EQ(capture_status(side), cudaStreamCaptureStatusNone);

  // An event of one capture waited on by a stream of another.
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(side, cudaStreamCaptureModeGlobal), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(fork, stream), cudaSuccess);
  EXPECT_EQ(cudaStreamWaitEvent(side, fork, 0), cudaErrorStreamCaptureMerge);
  EXPECT_EQ(cudaStreamEndCapture(side, &graph), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaErrorStreamCaptureInvalidated);
  cudaGetLastError();
  EXPECT_EQ(x.download(), std::vector<float>(kN, 0.0f));
  cudaEventDestroy(fork);
}

// Builds a graph with a WHILE node whose body holds what `body_work`
// captures (on a second stream).
cudaGraph_t while_graph(const std::function<void(cudaStream_t)>& body_work) {
  Stream body_stream;
  cudaGraph_t graph = nullptr;
  DDPM_CUDA_CHECK(cudaGraphCreate(&graph, 0));
  cudaGraphConditionalHandle handle;
  DDPM_CUDA_CHECK(cudaGraphConditionalHandleCreate(&handle, graph, 0, cudaGraphCondAssignDefault));
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
  body_work(body_stream);
  DDPM_CUDA_CHECK(cudaStreamEndCapture(body_stream, &body));
  return graph;
}

// The driver allows only kernel, empty, memcpy, memset, child graph and
// conditional nodes in a conditional body: a host node fails instantiation.
TEST(EmulatedCaptureRules, HostNodeInAConditionalBodyFailsInstantiation) {
  const cudaHostFn_t nothing = [](void*) {};
  Graph graph(while_graph([&](cudaStream_t s) {
    DDPM_CUDA_CHECK(cudaLaunchHostFunc(s, nothing, nullptr));  // captured without complaint
  }));
  cudaGraphExec_t exec = nullptr;
  EXPECT_EQ(cudaGraphInstantiate(&exec, graph.get(), 0), cudaErrorInvalidValue);
  EXPECT_NE(ddpm::emu::last_error_detail().find("host node"), std::string::npos)
      << ddpm::emu::last_error_detail();
  cudaGetLastError();
}

TEST(EmulatedCaptureRules, GraphWithConditionalsHasOneExecutableGraphAtATime) {
  DeviceBuffer<float> x(kN);
  Graph graph(while_graph([&](cudaStream_t s) { add_scalar(x.get(), kN, 1.0f, s); }));
  cudaGraphExec_t first = nullptr, second = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&first, graph.get(), 0), cudaSuccess);
  EXPECT_EQ(cudaGraphInstantiate(&second, graph.get(), 0), cudaErrorInvalidValue);
  cudaGetLastError();
  ASSERT_EQ(cudaGraphExecDestroy(first), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&second, graph.get(), 0), cudaSuccess);
  ASSERT_EQ(cudaGraphExecDestroy(second), cudaSuccess);
}

// A body capture that is invalidated leaves a body no graph may run.
TEST(EmulatedCaptureRules, InvalidatedBodyCaptureFailsInstantiation) {
  Stream body_stream;
  Graph graph;
  ASSERT_EQ(cudaGraphCreate(graph.out(), 0), cudaSuccess);
  cudaGraphConditionalHandle handle;
  ASSERT_EQ(cudaGraphConditionalHandleCreate(&handle, graph.get(), 1, 0), cudaSuccess);
  cudaGraphNodeParams params{};
  params.type = cudaGraphNodeTypeConditional;
  params.conditional.handle = handle;
  params.conditional.type = cudaGraphCondTypeWhile;
  params.conditional.size = 1;
  cudaGraphNode_t node;
  ASSERT_EQ(cudaGraphAddNode(&node, graph.get(), nullptr, nullptr, 0, &params), cudaSuccess);
  cudaGraph_t body = params.conditional.phGraph_out[0];
  ASSERT_EQ(cudaStreamBeginCaptureToGraph(body_stream, body, nullptr, nullptr, 0,
                                          cudaStreamCaptureModeGlobal),
            cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(body_stream), cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(cudaStreamEndCapture(body_stream, &body), cudaErrorStreamCaptureInvalidated);
  cudaGraphExec_t exec = nullptr;
  EXPECT_EQ(cudaGraphInstantiate(&exec, graph.get(), 0), cudaErrorInvalidValue);
  cudaGetLastError();
}

// The parent capture fails while its WHILE body is still being captured on
// another stream: both captures end without touching freed graphs (ASan).
TEST(EmulatedCaptureRules, ParentCaptureFailsWhileItsBodyIsCaptured) {
  Stream stream, body_stream;
  DeviceBuffer<float> x(std::vector<float>(kN, 0.0f));
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  cudaStreamCaptureStatus status;
  cudaGraph_t capturing;
  ASSERT_EQ(cudaStreamGetCaptureInfo(stream, &status, nullptr, &capturing), cudaSuccess);
  cudaGraphConditionalHandle handle;
  ASSERT_EQ(cudaGraphConditionalHandleCreate(&handle, capturing, 1, 0), cudaSuccess);
  cudaGraphNodeParams params{};
  params.type = cudaGraphNodeTypeConditional;
  params.conditional.handle = handle;
  params.conditional.type = cudaGraphCondTypeWhile;
  params.conditional.size = 1;
  cudaGraphNode_t node;
  ASSERT_EQ(cudaGraphAddNode(&node, capturing, nullptr, nullptr, 0, &params), cudaSuccess);
  cudaGraph_t body = params.conditional.phGraph_out[0];
  ASSERT_EQ(cudaStreamBeginCaptureToGraph(body_stream, body, nullptr, nullptr, 0,
                                          cudaStreamCaptureModeGlobal),
            cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(stream), cudaErrorStreamCaptureUnsupported);
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(graph, nullptr);
  cudaGetLastError();
  add_scalar(x.get(), kN, 1.0f, body_stream);  // the body's own capture is still valid
  EXPECT_EQ(cudaStreamEndCapture(body_stream, &graph), cudaSuccess);
  EXPECT_EQ(graph, body);
  EXPECT_EQ(x.download(), std::vector<float>(kN, 0.0f));
}

}  // namespace
}  // namespace ddpm::emu_test
