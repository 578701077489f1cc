// CUDA graphs under the emulator: what a stream capture records and a replay
// runs (the same as running the work eagerly; kernel arguments copied at
// capture time), copy, set and host nodes, forks and joins across streams,
// the capture queries, conditional WHILE / IF nodes driven by
// cudaGraphSetConditional from a kernel, and the counters tests use to assert
// launches per step and host synchronisations.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <cstring>
#include <vector>

#include "kernels/emulation/device_runtime.h"
#include "kernels/emulation/emulator_api.h"
#include "tests/emulation/capture_helpers.h"
#include "tests/emulation/device_buffer.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {
namespace {

constexpr int kN = 300;  // three blocks of 128 threads, the last one partial

std::vector<float> ramp(int n) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = 0.25f * float(i) - 7.0f;
  return v;
}

// One "step": upload, a few kernels and a set, a download into `host_out`.
void step(float* x, float* y, const std::vector<float>& input, std::vector<float>& host_out,
          cudaStream_t stream) {
  DDPM_CUDA_CHECK(
      cudaMemcpyAsync(x, input.data(), kN * sizeof(float), cudaMemcpyHostToDevice, stream));
  DDPM_CUDA_CHECK(cudaMemsetAsync(y, 0, kN * sizeof(float), stream));
  add_scalar(x, kN, 1.5f, stream);
  affine(x, {3.0f, -0.5f, kN}, stream);
  DDPM_CUDA_CHECK(cudaMemcpyAsync(y, x, kN / 2 * sizeof(float), cudaMemcpyDeviceToDevice, stream));
  add_scalar(y, kN, 2.0f, stream);
  DDPM_CUDA_CHECK(
      cudaMemcpyAsync(host_out.data(), y, kN * sizeof(float), cudaMemcpyDeviceToHost, stream));
}

TEST(EmulatedGraphs, ReplayEqualsEagerAndNothingRunsDuringCapture) {
  Stream stream;
  const std::vector<float> input = ramp(kN);
  DeviceBuffer<float> x(kN), y(kN);
  std::vector<float> eager(kN), replayed(kN, -1.0f);
  step(x.get(), y.get(), input, eager, stream);

  x.set_bytes(0);
  y.set_bytes(0);
  ddpm::emu::reset_stats();
  Graph graph(capture(stream, [&] { step(x.get(), y.get(), input, replayed, stream); }));
  // Recorded, not run: the buffers and the host output are untouched.
  EXPECT_EQ(ddpm::emu::stats().launches, 0u);
  EXPECT_EQ(ddpm::emu::stats().captured_launches, 3u);
  EXPECT_EQ(replayed, std::vector<float>(kN, -1.0f));
  EXPECT_EQ(x.download(), std::vector<float>(kN, 0.0f));
  size_t nodes = 0;
  ASSERT_EQ(cudaGraphGetNodes(graph.get(), nullptr, &nodes), cudaSuccess);
  EXPECT_EQ(nodes, 7u);  // 3 kernels, 3 copies, 1 set

  GraphExec exec(graph.get());
  ddpm::emu::reset_stats();
  for (int replay = 0; replay < 2; ++replay) {  // replays start from the uploaded input
    std::fill(replayed.begin(), replayed.end(), -1.0f);
    exec.launch(stream);
    EXPECT_EQ(replayed, eager) << "replay " << replay;
  }
  const ddpm::emu::Stats s = ddpm::emu::stats();
  EXPECT_EQ(s.graph_launches, 2u);
  EXPECT_EQ(s.launches, 6u);
  EXPECT_EQ(s.graph_kernel_launches, 6u);
  EXPECT_EQ(s.memcpys, 6u);
  EXPECT_EQ(s.memsets, 2u);
}

// Two launches from the same launcher (the same stack frame) with different
// values: each node must keep its own copy of the arguments. A runtime that
// kept a pointer to the launcher's arguments would replay 10 twice.
TEST(EmulatedGraphs, EachCapturedLaunchKeepsItsOwnArguments) {
  Stream stream;
  DeviceBuffer<float> x(std::vector<float>(kN, 0.0f));
  Graph graph(capture(stream, [&] {
    add_scalar(x.get(), kN, 1.0f, stream);
    add_scalar(x.get(), kN, 10.0f, stream);
  }));
  GraphExec exec(graph.get());
  exec.launch(stream);
  exec.launch(stream);
  EXPECT_EQ(x.download(), std::vector<float>(kN, 22.0f));
}

// The commonest graph bug: a host value changed after capture is not seen by
// replays, which keep the value the launch had when it was captured.
TEST(EmulatedGraphs, HostValueChangedAfterCaptureIsNotSeen) {
  Stream stream;
  DeviceBuffer<float> x(std::vector<float>(kN, 1.0f));
  AffineParams params{2.0f, 1.0f, kN};
  float increment = 0.5f;
  Graph graph(capture(stream, [&] {
    affine(x.get(), params, stream);
    add_scalar(x.get(), kN, increment, stream);
  }));
  params.scale = 100.0f;  // what an eager loop would pick up at its next step
  increment = 1000.0f;
  GraphExec exec(graph.get());
  exec.launch(stream);
  EXPECT_EQ(x.download(), std::vector<float>(kN, 1.0f * 2.0f + 1.0f + 0.5f));
}

TEST(EmulatedGraphs, HostFunctionRunsAtReplayNotAtCapture) {
  Stream stream;
  int calls = 0;
  const cudaHostFn_t bump = [](void* data) { ++*static_cast<int*>(data); };
  Graph graph(capture(stream, [&] { DDPM_CUDA_CHECK(cudaLaunchHostFunc(stream, bump, &calls)); }));
  EXPECT_EQ(calls, 0);
  GraphExec exec(graph.get());
  exec.launch(stream);
  exec.launch(stream);
  EXPECT_EQ(calls, 2);
  DDPM_CUDA_CHECK(cudaLaunchHostFunc(stream, bump, &calls));  // eager: runs now
  EXPECT_EQ(calls, 3);
}

TEST(EmulatedGraphs, CaptureQueriesReportTheCapture) {
  Stream stream;
  DeviceBuffer<float> x(kN);
  cudaStreamCaptureStatus status;
  ASSERT_EQ(cudaStreamIsCapturing(stream, &status), cudaSuccess);
  EXPECT_EQ(status, cudaStreamCaptureStatusNone);

  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  ASSERT_EQ(cudaStreamIsCapturing(stream, &status), cudaSuccess);
  EXPECT_EQ(status, cudaStreamCaptureStatusActive);
  unsigned long long id = 0;
  cudaGraph_t capturing = nullptr;
  const cudaGraphNode_t* deps = nullptr;
  size_t count = 99;
  ASSERT_EQ(cudaStreamGetCaptureInfo(stream, &status, &id, &capturing, &deps, nullptr, &count),
            cudaSuccess);
  EXPECT_NE(id, 0u);
  EXPECT_EQ(count, 0u);  // nothing captured yet
  add_scalar(x.get(), kN, 1.0f, stream);
  ASSERT_EQ(cudaStreamGetCaptureInfo(stream, &status, nullptr, nullptr, &deps, nullptr, &count),
            cudaSuccess);
  ASSERT_EQ(count, 1u);
  cudaGraphNodeType type;
  ASSERT_EQ(cudaGraphNodeGetType(deps[0], &type), cudaSuccess);
  EXPECT_EQ(type, cudaGraphNodeTypeKernel);

  // An empty node added by hand becomes the stream's only dependency.
  cudaGraphNode_t empty;
  ASSERT_EQ(cudaGraphAddEmptyNode(&empty, capturing, deps, count), cudaSuccess);
  ASSERT_EQ(cudaStreamUpdateCaptureDependencies(stream, &empty, nullptr, 1,
                                                cudaStreamSetCaptureDependencies),
            cudaSuccess);
  ASSERT_EQ(cudaStreamGetCaptureInfo(stream, &status, nullptr, nullptr, &deps, nullptr, &count),
            cudaSuccess);
  ASSERT_EQ(count, 1u);
  EXPECT_EQ(deps[0], empty);

  Graph graph;
  ASSERT_EQ(cudaStreamEndCapture(stream, graph.out()), cudaSuccess);
  EXPECT_EQ(graph.get(), capturing);
  ASSERT_EQ(cudaStreamIsCapturing(stream, &status), cudaSuccess);
  EXPECT_EQ(status, cudaStreamCaptureStatusNone);
  unsigned long long next_id = 0;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  ASSERT_EQ(cudaStreamGetCaptureInfo(stream, &status, &next_id), cudaSuccess);
  Graph second;
  ASSERT_EQ(cudaStreamEndCapture(stream, second.out()), cudaSuccess);
  EXPECT_NE(next_id, id);
}

// A fork onto a second stream through an event and a join back: the graph
// holds both branches; the origin stream sees the branch's result.
TEST(EmulatedGraphs, ForkAndJoinAcrossStreams) {
  Stream main_stream, side_stream;
  cudaEvent_t fork, join;
  ASSERT_EQ(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming), cudaSuccess);
  ASSERT_EQ(cudaEventCreateWithFlags(&join, cudaEventDisableTiming), cudaSuccess);
  DeviceBuffer<float> a(std::vector<float>(kN, 1.0f)), b(std::vector<float>(kN, 2.0f));
  Graph graph(capture(main_stream, [&] {
    add_scalar(a.get(), kN, 1.0f, main_stream);
    DDPM_CUDA_CHECK(cudaEventRecord(fork, main_stream));
    DDPM_CUDA_CHECK(cudaStreamWaitEvent(side_stream, fork, 0));
    add_scalar(b.get(), kN, 3.0f, side_stream);  // forked work
    DDPM_CUDA_CHECK(cudaEventRecord(join, side_stream));
    add_scalar(a.get(), kN, 10.0f, main_stream);  // concurrent with the fork
    DDPM_CUDA_CHECK(cudaStreamWaitEvent(main_stream, join, 0));
    // b is ready here: a += b through a device-to-device copy.
    DDPM_CUDA_CHECK(
        cudaMemcpyAsync(a.get(), b.get(), sizeof(float), cudaMemcpyDeviceToDevice, main_stream));
  }));
  cudaStreamCaptureStatus status;
  ASSERT_EQ(cudaStreamIsCapturing(side_stream, &status), cudaSuccess);
  EXPECT_EQ(status, cudaStreamCaptureStatusNone);  // the fork left the capture with it
  GraphExec exec(graph.get());
  exec.launch(main_stream);
  std::vector<float> want(kN, 12.0f);
  want[0] = 5.0f;
  EXPECT_EQ(a.download(), want);
  EXPECT_EQ(b.download(), std::vector<float>(kN, 5.0f));
  cudaEventDestroy(fork);
  cudaEventDestroy(join);
}

TEST(EmulatedGraphs, MemsetNodeBuiltByHand) {
  DeviceBuffer<int> x(std::vector<int>(8, 0));
  Graph graph;
  ASSERT_EQ(cudaGraphCreate(graph.out(), 0), cudaSuccess);
  cudaGraphNodeParams params{};
  params.type = cudaGraphNodeTypeMemset;
  params.memset.dst = x.get() + 2;
  params.memset.value = 0x01020304;
  params.memset.elementSize = 4;
  params.memset.width = 4;
  params.memset.height = 1;
  cudaGraphNode_t node;
  ASSERT_EQ(cudaGraphAddNode(&node, graph.get(), nullptr, nullptr, 0, &params), cudaSuccess);
  GraphExec exec(graph.get());
  exec.launch(nullptr);
  EXPECT_EQ(x.download(),
            (std::vector<int>{0, 0, 0x01020304, 0x01020304, 0x01020304, 0x01020304, 0, 0}));
}

// A captured WHILE loop, built as the engine's sampling loop is: a
// conditional node added to the graph being captured, its body captured on
// a second stream with cudaStreamBeginCaptureToGraph.
struct CountdownGraph {
  Graph graph;
  cudaGraphConditionalHandle handle = 0;

  CountdownGraph(cudaStream_t stream, cudaStream_t body_stream, int* counter, int* iterations,
                 int n, unsigned default_value, unsigned flags) {
    DDPM_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    set_int(counter, n, stream);
    cudaStreamCaptureStatus status;
    cudaGraph_t capturing;
    const cudaGraphNode_t* deps;
    size_t count;
    DDPM_CUDA_CHECK(
        cudaStreamGetCaptureInfo(stream, &status, nullptr, &capturing, &deps, nullptr, &count));
    DDPM_CUDA_CHECK(cudaGraphConditionalHandleCreate(&handle, capturing, default_value, flags));
    cudaGraphNodeParams params{};
    params.type = cudaGraphNodeTypeConditional;
    params.conditional.handle = handle;
    params.conditional.type = cudaGraphCondTypeWhile;
    params.conditional.size = 1;
    cudaGraphNode_t loop;
    DDPM_CUDA_CHECK(cudaGraphAddNode(&loop, capturing, deps, nullptr, count, &params));
    DDPM_CUDA_CHECK(cudaStreamUpdateCaptureDependencies(stream, &loop, nullptr, 1,
                                                        cudaStreamSetCaptureDependencies));
    cudaGraph_t body = params.conditional.phGraph_out[0];
    DDPM_CUDA_CHECK(cudaStreamBeginCaptureToGraph(body_stream, body, nullptr, nullptr, 0,
                                                  cudaStreamCaptureModeGlobal));
    count_down(counter, iterations, handle, body_stream);
    cudaGraph_t body_out;
    DDPM_CUDA_CHECK(cudaStreamEndCapture(body_stream, &body_out));
    DDPM_CUDA_CHECK(cudaStreamEndCapture(stream, graph.out()));
  }
};

TEST(EmulatedGraphs, WhileLoopRunsItsBodyNTimesAtEveryLaunch) {
  Stream stream, body_stream;
  DeviceBuffer<int> counter(std::vector<int>{0}), iterations(std::vector<int>{0});
  constexpr int kSteps = 5;
  CountdownGraph loop(stream, body_stream, counter.get(), iterations.get(), kSteps, 1,
                      cudaGraphCondAssignDefault);
  size_t nodes = 0;
  ASSERT_EQ(cudaGraphGetNodes(loop.graph.get(), nullptr, &nodes), cudaSuccess);
  EXPECT_EQ(nodes, 2u);  // set_int, the WHILE node
  GraphExec exec(loop.graph.get());
  ddpm::emu::reset_stats();
  exec.launch(stream);
  const ddpm::emu::Stats s = ddpm::emu::stats();
  EXPECT_EQ(s.graph_launches, 1u);
  EXPECT_EQ(s.conditional_bodies, unsigned(kSteps));
  EXPECT_EQ(s.graph_kernel_launches, kSteps + 1u);  // set_int, then one per iteration
  EXPECT_EQ(s.launches, kSteps + 1u);
  EXPECT_EQ(s.host_synchronizations, 0u);  // the whole loop, no host round trip
  EXPECT_EQ(iterations.download(), std::vector<int>{kSteps});
  exec.launch(stream);  // the default (1) is assigned again at launch
  EXPECT_EQ(iterations.download(), std::vector<int>{2 * kSteps});
}

// Without cudaGraphCondAssignDefault the handle keeps the 0 the last
// iteration set, so a second launch runs no iteration.
TEST(EmulatedGraphs, WhileHandleKeepsItsValueWithoutAssignDefault) {
  Stream stream, body_stream;
  DeviceBuffer<int> counter(std::vector<int>{0}), iterations(std::vector<int>{0});
  CountdownGraph loop(stream, body_stream, counter.get(), iterations.get(), 3, 1, 0);
  GraphExec exec(loop.graph.get());
  exec.launch(stream);
  exec.launch(stream);
  EXPECT_EQ(iterations.download(), std::vector<int>{3});
}

// The condition is checked before the first iteration too.
TEST(EmulatedGraphs, WhileWithZeroDefaultNeverRunsItsBody) {
  Stream stream, body_stream;
  DeviceBuffer<int> counter(std::vector<int>{0}), iterations(std::vector<int>{0});
  CountdownGraph loop(stream, body_stream, counter.get(), iterations.get(), 3, 0,
                      cudaGraphCondAssignDefault);
  GraphExec exec(loop.graph.get());
  exec.launch(stream);
  EXPECT_EQ(iterations.download(), std::vector<int>{0});
}

// An IF node with an ELSE body, its condition set by a kernel from device data.
TEST(EmulatedGraphs, IfElseNodeFollowsTheConditionAKernelSets) {
  Stream stream, body_stream;
  DeviceBuffer<int> flag(std::vector<int>{1});
  DeviceBuffer<float> x(std::vector<float>(kN, 0.0f));
  Graph graph;
  ASSERT_EQ(cudaGraphCreate(graph.out(), 0), cudaSuccess);
  cudaGraphConditionalHandle handle;
  ASSERT_EQ(cudaGraphConditionalHandleCreate(&handle, graph.get(), 0, 0), cudaSuccess);
  // set_condition, then the IF node.
  ASSERT_EQ(cudaStreamBeginCaptureToGraph(stream, graph.get(), nullptr, nullptr, 0,
                                          cudaStreamCaptureModeGlobal),
            cudaSuccess);
  set_condition(flag.get(), handle, stream);
  cudaStreamCaptureStatus status;
  const cudaGraphNode_t* deps;
  size_t count;
  ASSERT_EQ(cudaStreamGetCaptureInfo(stream, &status, nullptr, nullptr, &deps, nullptr, &count),
            cudaSuccess);
  cudaGraphNodeParams params{};
  params.type = cudaGraphNodeTypeConditional;
  params.conditional.handle = handle;
  params.conditional.type = cudaGraphCondTypeIf;
  params.conditional.size = 2;
  cudaGraphNode_t node;
  ASSERT_EQ(cudaGraphAddNode(&node, graph.get(), deps, nullptr, count, &params), cudaSuccess);
  cudaGraph_t out;
  ASSERT_EQ(cudaStreamEndCapture(stream, &out), cudaSuccess);
  ASSERT_EQ(out, graph.get());
  const float branch_value[2] = {1.0f, 100.0f};  // then, else
  for (int b = 0; b < 2; ++b) {
    cudaGraph_t body = params.conditional.phGraph_out[b];
    ASSERT_EQ(cudaStreamBeginCaptureToGraph(body_stream, body, nullptr, nullptr, 0,
                                            cudaStreamCaptureModeGlobal),
              cudaSuccess);
    add_scalar(x.get(), kN, branch_value[b], body_stream);
    ASSERT_EQ(cudaStreamEndCapture(body_stream, &out), cudaSuccess);
  }
  GraphExec exec(graph.get());
  exec.launch(stream);  // flag 1: then
  flag.upload({0});
  exec.launch(stream);  // flag 0: else
  EXPECT_EQ(x.download(), std::vector<float>(kN, 101.0f));
}

TEST(EmulatedGraphs, SetConditionalWithAnUnknownHandleFailsTheKernel) {
  Stream stream;
  DeviceBuffer<int> flag(std::vector<int>{1});
  EXPECT_THROW(set_condition(flag.get(), 123456789, stream), ddpm::emu::KernelError);
}

// What tests of the engine count: syncs by the host, not by graphs.
TEST(EmulatedGraphs, HostSynchronizationsAreCounted) {
  Stream stream;
  DeviceBuffer<float> x(std::vector<float>(4, 1.0f));
  std::vector<float> pageable(4);
  float* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&pinned), 4 * sizeof(float)), cudaSuccess);
  const auto syncs = [] { return ddpm::emu::stats().host_synchronizations; };
  ddpm::emu::reset_stats();
  ASSERT_EQ(cudaMemcpyAsync(pinned, x.get(), 4 * sizeof(float), cudaMemcpyDeviceToHost, stream),
            cudaSuccess);
  EXPECT_EQ(syncs(), 0u);  // into pinned memory: asynchronous
  ASSERT_EQ(
      cudaMemcpyAsync(pageable.data(), x.get(), 4 * sizeof(float), cudaMemcpyDeviceToHost, stream),
      cudaSuccess);
  EXPECT_EQ(syncs(), 1u);  // into pageable memory: returns once done
  ASSERT_EQ(cudaMemcpy(pageable.data(), x.get(), 4 * sizeof(float), cudaMemcpyDeviceToHost),
            cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(syncs(), 4u);
  // The same pageable download as a graph node is no host synchronisation.
  Graph graph(capture(stream, [&] {
    DDPM_CUDA_CHECK(cudaMemcpyAsync(pageable.data(), x.get(), 4 * sizeof(float),
                                    cudaMemcpyDeviceToHost, stream));
  }));
  GraphExec exec(graph.get());
  exec.launch(stream);
  EXPECT_EQ(syncs(), 4u);
  EXPECT_EQ(pageable, std::vector<float>(4, 1.0f));
  cudaFreeHost(pinned);
}

}  // namespace
}  // namespace ddpm::emu_test
