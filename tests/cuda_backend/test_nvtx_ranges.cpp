// What Nsight Systems would see from the CUDA backend and the device
// sampling loop (engine/cuda/nvtx_ranges.h), through a recording NVTX
// injection linked into this program (nvtx_recorder.h):
//   - every op of a forward and a backward is one range named by its graph
//     node, coloured by direction, in the "ddpm" domain, pushes and pops
//     balanced;
//   - sampling in modes off and step: one range per step, named by its index
//     and timestep, the op ranges nested inside in mode off; in mode step the
//     replays push no op ranges (a graph replays device work only), and the
//     capture is a range of its own, once; mode loop: one range around the
//     batch's launch. The captures succeed with ranges pushed inside them.
//   - SamplerOptions::before_step sees every step in modes off and step and
//     none in mode loop.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/device_sampler.h"
#include "engine/cuda/nvtx_ranges.h"
#include "engine/executor.h"
#include "engine/sampler.h"
#include "engine/unet.h"
#include "tests/cuda_backend/nvtx_recorder.h"
#include "tests/kernels/kernel_test_util.h"
#include "tests/tiny_unet.h"

namespace ddpm {
namespace {

constexpr uint32_t color(nvtx::Phase p) {
  return static_cast<uint32_t>(p);
}

// The tiny UNet of the sampling tests, with attention in its second level.
UNetConfig tiny_unet() {
  return testing::tiny_unet(/*attention_in_level_2=*/true, /*head_dim=*/8);
}

struct Range {
  std::string name;
  uint32_t color = 0;
  int depth = 0;     // 0: outermost
  int children = 0;  // ranges directly inside it
};

// The recorded ranges in push order, with their nesting; checks that every
// event is in the ddpm domain and that pushes and pops balance.
std::vector<Range> recorded_ranges() {
  std::vector<Range> out;
  std::vector<size_t> open;
  for (const testing::NvtxEvent& e : testing::nvtx_events()) {
    EXPECT_EQ(e.domain, "ddpm") << e.name;
    if (e.push) {
      if (!open.empty()) ++out[open.back()].children;
      out.push_back({e.name, e.color, int(open.size()), 0});
      open.push_back(out.size() - 1);
    } else {
      EXPECT_FALSE(open.empty()) << "a pop without a push";
      if (!open.empty()) open.pop_back();
    }
  }
  EXPECT_TRUE(open.empty()) << open.size() << " ranges never popped";
  return out;
}

std::vector<Range> with_color(const std::vector<Range>& ranges, nvtx::Phase phase) {
  std::vector<Range> out;
  for (const Range& r : ranges)
    if (r.color == color(phase)) out.push_back(r);
  return out;
}

template <typename T>
void fill(Executor& ex, ValueId v, T value) {
  ex.write(v, std::vector<float>(size_t(ex.graph().values[size_t(v)].shape.numel()), value));
}

TEST(NvtxRanges, EveryOpIsARangeNamedByItsNodeColouredByDirection) {
  DDPM_REQUIRE_DEVICE();
  UNetBuildOptions o;
  o.batch = 2;
  o.with_loss = true;
  const UNetGraph g = build_unet(tiny_unet(), o);
  CudaBackend backend;
  Executor ex(g.graph, backend, ExecMode::training);
  ex.init_parameters(5);
  fill(ex, g.sample, 0.25f);
  fill(ex, g.timesteps, 17.0f);
  fill(ex, g.target, -0.5f);

  testing::clear_nvtx_events();
  ex.forward(RunContext{5, 1, true});
  backend.synchronize();
  ASSERT_TRUE(testing::nvtx_recorder_attached()) << "NVTX did not load the static injection";
  const std::vector<Range> forward = recorded_ranges();
  ASSERT_EQ(forward.size(), g.graph.nodes.size()) << "one range per node in training";
  for (size_t i = 0; i < forward.size(); ++i) {
    EXPECT_EQ(forward[i].name, g.graph.nodes[i].name);
    EXPECT_EQ(forward[i].color, color(nvtx::Phase::forward)) << forward[i].name;
    EXPECT_EQ(forward[i].depth, 0) << forward[i].name;
  }

  testing::clear_nvtx_events();
  ex.backward(RunContext{5, 1, true});
  backend.synchronize();
  const std::vector<Range> backward = recorded_ranges();
  ASSERT_FALSE(backward.empty());
  // Reverse node order: each range names a node before the previous one's.
  int previous = int(g.graph.nodes.size());
  bool saw_conv1 = false;
  for (const Range& r : backward) {
    int index = -1;
    for (size_t i = 0; i < g.graph.nodes.size(); ++i)
      if (g.graph.nodes[i].name == r.name) index = int(i);
    EXPECT_GE(index, 0) << r.name << " is not a node";
    EXPECT_LT(index, previous) << r.name << " out of reverse order";
    previous = index;
    EXPECT_EQ(r.color, color(nvtx::Phase::backward)) << r.name;
    saw_conv1 |= r.name == "down_blocks.0.resnets.0.conv1";
  }
  EXPECT_EQ(backward.front().name, g.graph.nodes.back().name) << "the loss first";
  EXPECT_TRUE(saw_conv1) << "a convolution's backward";
}

TEST(NvtxRanges, SamplingStepsInModesOffAndStepOneRangeForTheLoop) {
  DDPM_REQUIRE_DEVICE();
  UNetBuildOptions o;
  o.batch = 1;
  const UNetGraph g = build_unet(tiny_unet(), o);
  CudaBackend backend;
  Executor ex(g.graph, backend, ExecMode::inference);
  ex.init_parameters(6);
  const auto loop = make_cuda_sampling_loop(ex, g);
  const Scheduler scheduler{SchedulerConfig{}};
  const int64_t steps = 3;
  const std::vector<int64_t> timesteps = scheduler.timesteps(steps);
  // The ops of one forward, as mode off pushes them inside each step.
  testing::clear_nvtx_events();
  ex.forward(RunContext{});
  backend.synchronize();
  const size_t ops = recorded_ranges().size();
  ASSERT_GT(ops, 0u);

  std::vector<float> images;
  std::vector<int64_t> hooked;
  SamplerOptions so;
  so.steps = steps;
  so.before_step = [&](int64_t i) { hooked.push_back(i); };
  const std::vector<int64_t> every_step{0, 1, 2, 3};
  auto step_name = [&](int64_t i) {
    return "sampling step " + std::to_string(i + 1) + "/" + std::to_string(steps) +
           " (t=" + std::to_string(timesteps[size_t(i)]) + ")";
  };

  // off: each step a range with the forward's op ranges inside.
  so.graph = SamplingGraph::off;
  testing::clear_nvtx_events();
  loop->sample(scheduler, so, images);
  std::vector<Range> top = with_color(recorded_ranges(), nvtx::Phase::sampling);
  ASSERT_EQ(top.size(), size_t(steps));
  for (int64_t i = 0; i < steps; ++i) {
    EXPECT_EQ(top[size_t(i)].name, step_name(i));
    EXPECT_EQ(top[size_t(i)].depth, 0);
    EXPECT_EQ(top[size_t(i)].children, int(ops)) << "mode off: the forward's ops inside";
  }
  EXPECT_EQ(hooked, every_step);

  // step, twice: the first captures (a range holding the captured ops), then
  // the replays push nothing inside their step ranges; the second reuses it.
  so.graph = SamplingGraph::step;
  for (const bool first : {true, false}) {
    hooked.clear();
    testing::clear_nvtx_events();
    loop->sample(scheduler, so, images);
    top = with_color(recorded_ranges(), nvtx::Phase::sampling);
    ASSERT_EQ(top.size(), size_t(steps) + (first ? 1 : 0));
    if (first) {
      EXPECT_EQ(top[0].name, "capture of one sampling step");
      EXPECT_EQ(top[0].children, int(ops));
      top.erase(top.begin());
    }
    for (int64_t i = 0; i < steps; ++i) {
      EXPECT_EQ(top[size_t(i)].name, step_name(i));
      EXPECT_EQ(top[size_t(i)].children, 0) << "a replay runs no host code";
    }
    EXPECT_EQ(hooked, every_step);
  }

  // loop: the capture once, then one range per batch; no step hooks.
  so.graph = SamplingGraph::loop;
  for (const bool first : {true, false}) {
    hooked.clear();
    testing::clear_nvtx_events();
    loop->sample(scheduler, so, images);
    top = with_color(recorded_ranges(), nvtx::Phase::sampling);
    ASSERT_EQ(top.size(), first ? 2u : 1u);
    if (first) {
      EXPECT_EQ(top[0].name, "capture of the sampling loop");
    }
    EXPECT_EQ(top.back().name, "sampling loop: 3 steps, one graph launch");
    EXPECT_EQ(top.back().children, 0);
    EXPECT_TRUE(hooked.empty());
  }
}

}  // namespace
}  // namespace ddpm
