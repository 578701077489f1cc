// Sampling on the device (engine/cuda/device_sampler.h) and the CUDA graph
// class under it (engine/cuda/cuda_graph.h):
//   - CapturedGraph: replay, re-capture by key, and the calls the driver
//     refuses during capture turned into errors that name them;
//   - the three graph modes (off, step, loop) give bitwise the same images,
//     for every kind of scheduler step, on a toy denoiser (cheap: every
//     scheduler variant) and on a tiny UNet (every op of the real model);
//   - the device loop against the CPU's host loop (engine/sampler.h) within
//     the model's fp32 rounding;
//   - the emulator's counters: no host synchronisation inside a batch but the
//     final read-back, one graph launch per batch in loop mode, and the
//     kernel launches per UNet forward;
//   - --first-image sharding: images [K, K + n) sampled alone equal the same
//     slice of one run.
//
// Tolerance of the CUDA-vs-CPU comparisons (as tests/cuda_backend/
// test_cuda_training.cpp's sampling test): both loops draw the same float
// noise (engine/noise.h's noise_normal_f; bitwise under the emulator, where
// the kernels' logf / sinf / cosf are the host's) and apply the same update
// in float, so the images differ only through the model's predictions; the
// CPU's own f32 error against an f64 run of the same host loop scales the
// bound: max |cuda - f64| <= 16 max(max |cpu32 - f64|, 4 u max |f64|) (16:
// backend_compare.h's factor for different summation orders). On a GPU the
// device's logf / sinf / cosf differ from glibc's: each draw within
// 2 kNormalFloatAbsError of the host's float draw, so x_T and every step's
// sigma z add noise_slack() below.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_graph.h"
#include "engine/cuda/device_sampler.h"
#include "engine/executor.h"
#include "engine/noise.h"
#include "engine/sampler.h"
#include "engine/unet.h"
#include "kernels/check.cuh"
#include "kernels/diffusion.cuh"
#include "tests/kernels/kernel_test_util.h"
#include "tests/tiny_unet.h"

#if DDPM_KERNEL_TESTS_EMULATED
#include "kernels/emulation/emulator_api.h"
#endif

namespace ddpm {
namespace {

namespace k = kernels;
using testing::DeviceArray;

constexpr double kU = 0x1p-24;

// ---- CapturedGraph ----------------------------------------------------------------

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { DDPM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(s); }
};

k::SamplingState download_state(const k::SamplingState* p) {
  k::SamplingState s{};
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(&s, p, sizeof s, cudaMemcpyDeviceToHost), cudaSuccess);
  return s;
}

bool capturing(cudaStream_t s) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  EXPECT_EQ(cudaStreamIsCapturing(s, &status), cudaSuccess);
  return status != cudaStreamCaptureStatusNone;
}

// advance_sampling_step as a counter: each run adds one to step_index.
TEST(CapturedGraph, ReplaysItsCaptureAndRecapturesForANewKey) {
  DDPM_REQUIRE_DEVICE();
  Stream stream;
  const DeviceArray<k::NoiseUpdateStep> steps(std::vector<k::NoiseUpdateStep>(100));
  DeviceArray<k::SamplingState> state(std::vector<k::SamplingState>{{1, 0, 100, 0, 0}});
  DeviceArray<float> timesteps(2);
  cuda::CapturedGraph graph;
  EXPECT_TRUE(graph.empty());
  EXPECT_THROW(graph.launch(stream.s), std::logic_error);
  const auto advance = [&] {
    k::advance_sampling_step(steps.get(), state.get(), timesteps.get(), 2, std::nullopt, stream.s);
  };
  graph.capture(stream.s, advance, "a");
  EXPECT_EQ(download_state(state.get()).step_index, 0u);  // captured, not run
  EXPECT_TRUE(graph.matches("a"));
  EXPECT_FALSE(graph.matches("b"));
  for (int i = 0; i < 5; ++i) graph.launch(stream.s);
  EXPECT_EQ(download_state(state.get()).step_index, 5u);
  // Two advances per launch now (an update of the executable or a new one).
  graph.capture(
      stream.s,
      [&] {
        advance();
        advance();
      },
      "b");
  EXPECT_EQ(graph.key(), "b");
  graph.launch(stream.s);
  EXPECT_EQ(download_state(state.get()).step_index, 7u);
  cuda::CapturedGraph moved = std::move(graph);
  EXPECT_TRUE(graph.empty());
  moved.launch(stream.s);
  EXPECT_EQ(download_state(state.get()).step_index, 9u);
}

// What the driver refuses while a stream captures (a synchronisation, an
// allocation) must fail the capture loudly, naming the call, and leave the
// stream usable and no graph behind; an exception that is not a CUDA error
// (a launcher's argument check) passes through as it was.
TEST(CapturedGraph, CallsRefusedDuringCaptureThrowNamingThem) {
  DDPM_REQUIRE_DEVICE();
  Stream stream;
  const DeviceArray<k::NoiseUpdateStep> steps(std::vector<k::NoiseUpdateStep>(4));
  DeviceArray<k::SamplingState> state(std::vector<k::SamplingState>{{1, 0, 4, 0, 0}});
  const auto advance = [&] {
    k::advance_sampling_step(steps.get(), state.get(), nullptr, 0, std::nullopt, stream.s);
  };
  cuda::CapturedGraph graph;
  graph.capture(stream.s, advance, "good");
  const auto message_of = [&](const std::function<void()>& enqueue) -> std::string {
    try {
      graph.capture(stream.s, enqueue, "bad");
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "(no exception)";
  };
  const std::string sync = message_of([&] {
    advance();
    DDPM_CUDA_CHECK(cudaStreamSynchronize(stream.s));
  });
  EXPECT_NE(sync.find("cudaStreamSynchronize"), std::string::npos) << sync;
  EXPECT_TRUE(graph.empty());
  EXPECT_FALSE(capturing(stream.s));
  // An unchecked refusal invalidates the capture: the end of it reports.
  const std::string malloc_unchecked = message_of([&] {
    advance();
    void* p = nullptr;
    if (cudaMalloc(&p, 64) == cudaSuccess) cudaFree(p);
  });
  EXPECT_NE(malloc_unchecked.find("cudaErrorStreamCaptureInvalidated"), std::string::npos)
      << malloc_unchecked;
  EXPECT_FALSE(capturing(stream.s));
  EXPECT_THROW(graph.capture(stream.s,
                             [&] {
                               k::advance_sampling_step(steps.get(), nullptr, nullptr, 0,
                                                        std::nullopt, stream.s);
                             }),
               std::invalid_argument);
  EXPECT_FALSE(capturing(stream.s));
  // The stream still works, and so does a new capture.
  graph.capture(stream.s, advance);
  graph.launch(stream.s);
  EXPECT_EQ(download_state(state.get()).step_index, 1u);
}

// ---- the device sampling loop --------------------------------------------------

// A stand-in for the UNet with its named values: prediction = silu(x_t) +
// emb(t) (a per-channel add), so the output depends on both inputs (a wrong
// or stale timestep shows), at a cost the emulator runs in microseconds.
UNetGraph toy_denoiser(int64_t batch, DType dtype = DType::f32) {
  GraphBuilder b(dtype);
  UNetGraph u;
  u.sample = b.input("sample", Shape{batch, 3, 5, 4});
  u.timesteps = b.input("timesteps", Shape{batch});
  const ValueId emb = b.timestep_embedding("emb", u.timesteps, TimestepEmbeddingParams{4});
  u.prediction = b.add("prediction", b.silu("act", u.sample), emb);
  b.mark_output(u.prediction);
  u.graph = b.finish();
  return u;
}

// Attention in the mid block only: a sampling step in about a second emulated.
UNetConfig tiny_unet() {
  return testing::tiny_unet(/*attention_in_level_2=*/false, /*head_dim=*/8);
}

// One model on three executors: the CUDA backend, and the CPU's host loop in
// f32 and f64 (the reference of the bound), all from the same f32 parameters.
struct Model {
  UNetGraph g32, g64;
  CpuBackend cpu;
  CudaBackend gpu;
  Executor ex_gpu, ex_cpu, ex_f64;

  Model(UNetGraph f32, UNetGraph f64)
      : g32(std::move(f32)),
        g64(std::move(f64)),
        ex_gpu(g32.graph, gpu, ExecMode::inference),
        ex_cpu(g32.graph, cpu, ExecMode::inference),
        ex_f64(g64.graph, cpu, ExecMode::inference) {
    ex_cpu.init_parameters(3);
    const std::vector<float> params = ex_cpu.read(ex_cpu.parameters());
    if (!params.empty()) {
      gpu.copy_from_host(ex_gpu.parameters().data, params.data(), params.size() * sizeof(float));
      const std::vector<double> p64(params.begin(), params.end());
      cpu.copy_from_host(ex_f64.parameters().data, p64.data(), p64.size() * sizeof(double));
    }
  }
};

std::unique_ptr<Model> toy_model(int64_t batch) {
  return std::make_unique<Model>(toy_denoiser(batch), toy_denoiser(batch, DType::f64));
}

std::unique_ptr<Model> unet_model(int64_t batch) {
  UNetBuildOptions o;
  o.batch = batch;
  UNetGraph g32 = build_unet(tiny_unet(), o);
  o.dtype = DType::f64;
  return std::make_unique<Model>(std::move(g32), build_unet(tiny_unet(), o));
}

std::vector<float> sample(SamplingLoop& loop, const Scheduler& s, SamplerOptions o,
                          SamplingGraph mode) {
  o.graph = mode;
  std::vector<float> out;
  loop.sample(s, o, out);
  return out;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

double max_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, double(std::abs(a[i] - b[i])));
  return d;
}

// On a GPU: the difference the device's own logf / sinf / cosf may make (see
// the top of the file), carried through the steps. A change e of x moves
// x_{t-1} by at most (|cx| + |cm| L) e, with cx, cm the update's combined
// coefficients on x and on the model output and L = 4 a bound on how much
// the model (a randomly initialised tiny UNet, or silu + embedding) moves its
// output per unit change of its input in the max norm. 0 under the emulator.
double noise_slack(const Scheduler& s, int64_t steps) {
#if DDPM_KERNEL_TESTS_EMULATED
  (void)s, (void)steps;
  return 0;
#else
  const double per_draw = 2 * kNormalFloatAbsError, lipschitz = 4;
  double slack = per_draw;  // x_T
  for (const StepCoefficients& c : s.plan(steps)) {
    const double cx = c.prev_from_x + c.prev_from_x0 * c.x0_from_x;
    const double cm = c.prev_from_model + c.prev_from_x0 * c.x0_from_model;
    slack = slack * (std::abs(cx) + std::abs(cm) * lipschitz) + std::abs(c.sigma) * per_draw;
  }
  return slack;
#endif
}

// The device loop in `mode` against the CPU's host loop (bound at the top).
void expect_within_cpu_bound(Model& m, const Scheduler& s, const SamplerOptions& o,
                             const std::vector<float>& on_gpu, const std::string& what) {
  std::vector<float> on_cpu, exact;
  sample_batch(m.ex_cpu, m.g32, s, o, on_cpu);
  sample_batch(m.ex_f64, m.g64, s, o, exact);
  ASSERT_EQ(on_gpu.size(), exact.size());
  double largest = 0;
  for (float v : exact) largest = std::max(largest, double(std::abs(v)));
  const double cpu_error = max_difference(on_cpu, exact), gpu_error = max_difference(on_gpu, exact);
  const double bound = 16 * std::max(cpu_error, 4 * kU * largest) + noise_slack(s, o.steps);
  if (std::getenv("DDPM_COMPARE_VERBOSE"))
    std::printf("%s: cuda error %.3g, cpu error %.3g, bound %.3g, max |x| %.3g\n", what.c_str(),
                gpu_error, cpu_error, bound, largest);
  EXPECT_LE(gpu_error, bound) << what;
  EXPECT_GT(largest, 0.5) << what;  // the images are not trivially zero
}

struct SchedulerCase {
  std::string name;
  SchedulerConfig config;
};

// Every kind of step: DDPM with each variance type, prediction type and
// timestep spacing, clipped and not; DDIM with eta 0 and 1, with and without
// the clipped model output.
std::vector<SchedulerCase> scheduler_cases() {
  std::vector<SchedulerCase> cases;
  const auto add = [&](std::string name, auto edit) {
    SchedulerConfig c;
    edit(c);
    cases.push_back({std::move(name), c});
  };
  add("ddpm fixed_small clip epsilon leading", [](SchedulerConfig&) {});
  add("ddpm fixed_large no-clip sample linspace", [](SchedulerConfig& c) {
    c.variance_type = "fixed_large", c.clip_sample = false, c.prediction_type = "sample",
    c.timestep_spacing = "linspace";
  });
  add("ddpm fixed_small clip v trailing", [](SchedulerConfig& c) {
    c.prediction_type = "v_prediction", c.timestep_spacing = "trailing";
  });
  add("ddim eta 0 clip epsilon", [](SchedulerConfig& c) { c.kind = "ddim"; });
  add("ddim eta 1 no-clip v trailing", [](SchedulerConfig& c) {
    c.kind = "ddim", c.eta = 1, c.clip_sample = false, c.prediction_type = "v_prediction",
    c.timestep_spacing = "trailing";
  });
  add("ddim eta 0.5 clipped-model-output sample", [](SchedulerConfig& c) {
    c.kind = "ddim", c.eta = 0.5, c.use_clipped_model_output = true, c.prediction_type = "sample";
  });
  return cases;
}

TEST(DeviceSampling, ModesAreBitwiseEqualAndMatchTheCpuForEverySchedulerKind) {
  DDPM_REQUIRE_DEVICE();
  const auto m = toy_model(3);
  const auto loop = make_cuda_sampling_loop(m->ex_gpu, m->g32);
  for (const SchedulerCase& sc : scheduler_cases()) {
    SCOPED_TRACE(sc.name);
    const Scheduler s(sc.config);
    SamplerOptions o;
    o.steps = 6;
    o.seed = 31;
    o.first_image = 5;
    const std::vector<float> off = sample(*loop, s, o, SamplingGraph::off),
                             step = sample(*loop, s, o, SamplingGraph::step),
                             whole = sample(*loop, s, o, SamplingGraph::loop);
    EXPECT_TRUE(bitwise_equal(off, step));
    EXPECT_TRUE(bitwise_equal(off, whole));
    expect_within_cpu_bound(*m, s, o, whole, sc.name);
    // Another seed in the same graphs (read from device memory) changes the images.
    SamplerOptions other = o;
    other.seed = 32;
    EXPECT_GT(max_difference(sample(*loop, s, other, SamplingGraph::loop), whole), 0.1);
  }
}

// A graph is captured once per loop (per batch shape) and reused by every
// later batch: seed, first image, step count and table come from device memory.
TEST(DeviceSampling, GraphsAreReusedAcrossBatchesAndStepCounts) {
  DDPM_REQUIRE_DEVICE();
  const auto m = toy_model(2);
  const auto loop = make_cuda_sampling_loop(m->ex_gpu, m->g32);
  SchedulerConfig ddim;
  ddim.kind = "ddim";
  ddim.eta = 1;
  const Scheduler ddpm_s{SchedulerConfig{}}, ddim_s(ddim);
  for (SamplingGraph mode : {SamplingGraph::step, SamplingGraph::loop}) {
    SCOPED_TRACE(sampling_graph_name(mode));
    // Runs in this order through one loop; each equals a fresh eager run.
    struct Run {
      const Scheduler* s;
      int64_t steps, first;
      uint64_t seed;
    };
    const Run runs[] = {
        {&ddpm_s, 8, 0, 1}, {&ddpm_s, 8, 2, 1}, {&ddim_s, 3, 4, 9}, {&ddpm_s, 5, 0, 2}};
    for (size_t i = 0; i < std::size(runs); ++i) {
      const Run& r = runs[i];
      SamplerOptions o;
      o.steps = r.steps, o.first_image = r.first, o.seed = r.seed;
      const auto fresh = make_cuda_sampling_loop(m->ex_gpu, m->g32);
      const std::vector<float> want = sample(*fresh, *r.s, o, SamplingGraph::off);
#if DDPM_KERNEL_TESTS_EMULATED
      emu::reset_stats();
#endif
      EXPECT_TRUE(bitwise_equal(sample(*loop, *r.s, o, mode), want))
          << r.steps << " steps from image " << r.first;
#if DDPM_KERNEL_TESTS_EMULATED
      if (i > 0) {
        EXPECT_EQ(emu::stats().captured_launches, 0u) << "re-captured";
      }
#endif
    }
  }
}

// Images [K, K + n) sampled alone, in other batch sizes, equal the same slice
// of one run (every image's computation is independent of the batch here).
TEST(DeviceSampling, FirstImageShardsEqualTheSlicesOfOneRun) {
  DDPM_REQUIRE_DEVICE();
  const Scheduler s{SchedulerConfig{}};
  SamplerOptions o;
  o.steps = 5;
  o.seed = 77;
  const auto whole = toy_model(5);
  const std::vector<float> all =
      sample(*make_cuda_sampling_loop(whole->ex_gpu, whole->g32), s, o, SamplingGraph::loop);
  const int64_t per_image = 3 * 5 * 4;
  for (int64_t batch : {1, 2}) {
    const auto shard = toy_model(batch);
    const auto loop = make_cuda_sampling_loop(shard->ex_gpu, shard->g32);
    for (int64_t first = 0; first + batch <= 5; first += batch) {
      o.first_image = first;
      const std::vector<float> got = sample(*loop, s, o, SamplingGraph::loop);
      const std::vector<float> want(all.begin() + first * per_image,
                                    all.begin() + (first + batch) * per_image);
      EXPECT_TRUE(bitwise_equal(got, want)) << "images " << first << ".." << first + batch - 1;
    }
  }
}

#if DDPM_KERNEL_TESTS_EMULATED
// With a model that is exact in fp32 (prediction = (x + x) / 2 = x), the
// device loop and the CPU's host loop compute the same float operations on
// the same float noise, in the same order (kernels/diffusion.cu follows
// engine/scheduler.cpp's noise_update<float>): under the emulator, whose
// kernels are compiled by g++ without FMA contraction and call the host's
// libm, the images are bitwise equal. (On a GPU, nvcc's FMA contraction and
// its own logf / sinf / cosf make them differ in the last bits; the
// comparisons above bound that.) The bounds above cannot see the noise's
// last bits; this can (a double Box-Muller on one side is caught).
TEST(DeviceSampling, EmulatedLoopIsBitwiseTheHostLoopForAnExactModel) {
  const auto exact_model = [](int64_t batch, DType dtype) {
    GraphBuilder b(dtype);
    UNetGraph u;
    u.sample = b.input("sample", Shape{batch, 3, 5, 3});
    u.timesteps = b.input("timesteps", Shape{batch});
    u.prediction = b.add("prediction", u.sample, u.sample, 0.5);
    b.mark_output(u.prediction);
    u.graph = b.finish();
    return u;
  };
  Model m(exact_model(2, DType::f32), exact_model(2, DType::f64));
  const auto loop = make_cuda_sampling_loop(m.ex_gpu, m.g32);
  for (const SchedulerCase& sc : scheduler_cases()) {
    SCOPED_TRACE(sc.name);
    const Scheduler s(sc.config);
    SamplerOptions o;
    o.steps = 4;
    o.seed = 5;
    o.first_image = 3;
    std::vector<float> on_cpu;
    sample_batch(m.ex_cpu, m.g32, s, o, on_cpu);
    EXPECT_TRUE(bitwise_equal(sample(*loop, s, o, SamplingGraph::loop), on_cpu))
        << max_difference(sample(*loop, s, o, SamplingGraph::loop), on_cpu);
  }
}
#endif

TEST(DeviceSampling, RejectsWhatItCannotRun) {
  DDPM_REQUIRE_DEVICE();
  const auto m = toy_model(2);
  const auto loop = make_cuda_sampling_loop(m->ex_gpu, m->g32);
  const Scheduler s{SchedulerConfig{}};
  std::vector<float> out;
  SamplerOptions o;
  o.steps = 0;
  EXPECT_THROW(loop->sample(s, o, out), std::invalid_argument);
  o.steps = 2;
  o.first_image = (int64_t(1) << 32) - 1;  // image 2^32 has no noise key
  EXPECT_THROW(loop->sample(s, o, out), std::invalid_argument);
  EXPECT_THROW(make_cuda_sampling_loop(m->ex_cpu, m->g32), std::invalid_argument);
  std::string why;
  EXPECT_EQ(loop->resolve(SamplingGraph::step, &why), SamplingGraph::step);
  EXPECT_NE(why.find("graph step"), std::string::npos) << why;
  const SamplingGraph automatic = loop->resolve(SamplingGraph::automatic, &why);
  std::string reason;
  EXPECT_EQ(automatic,
            cuda::conditional_nodes_supported(&reason) ? SamplingGraph::loop : SamplingGraph::step)
      << why;
  EXPECT_NE(why.find("auto"), std::string::npos) << why;
  EXPECT_EQ(make_host_sampling_loop(m->ex_cpu, m->g32)->resolve(SamplingGraph::loop),
            SamplingGraph::off);
}

// The tiny UNet: every op of the real model through the executor, captured.
// The three modes bitwise equal, within the CPU bound, and (emulated) the
// counters: per batch one host synchronisation (the read-back) whatever the
// mode, one graph launch in loop mode, the kernel launches per step those of
// one UNet forward plus the update and the advance.
TEST(DeviceSamplingUNet, ModesAreBitwiseEqualMatchTheCpuAndNeverWaitBetweenSteps) {
  DDPM_REQUIRE_DEVICE();
  const auto m = unet_model(2);
  const auto loop = make_cuda_sampling_loop(m->ex_gpu, m->g32);
#if DDPM_KERNEL_TESTS_EMULATED
  // Kernel launches of one UNet forward (inference, batch 2).
  emu::reset_stats();
  m->ex_gpu.forward(RunContext{});
  m->gpu.synchronize();
  const uint64_t forward = emu::stats().launches;
  RecordProperty("kernel_launches_per_unet_forward", std::to_string(forward));
  std::printf("kernel launches per UNet forward: %llu\n", (unsigned long long)forward);
#endif
  for (const bool ddim : {false, true}) {
    SchedulerConfig sc;
    // Unclipped: a random model's x0 estimates lie far outside [-1, 1], and
    // clamping them would hide most of the model's output.
    sc.clip_sample = false;
    if (ddim) sc.kind = "ddim", sc.eta = 1;
    const Scheduler s(sc);
    SamplerOptions o;
    o.steps = ddim ? 2 : 3;
    o.seed = 23;
    o.first_image = 4;
    const std::string what = ddim ? "unet ddim eta 1" : "unet ddpm";
    std::vector<float> images[3];
    const SamplingGraph modes[3] = {SamplingGraph::off, SamplingGraph::step, SamplingGraph::loop};
    for (int i = 0; i < 3; ++i) {
#if DDPM_KERNEL_TESTS_EMULATED
      emu::reset_stats();
#endif
      images[i] = sample(*loop, s, o, modes[i]);
#if DDPM_KERNEL_TESTS_EMULATED
      const emu::Stats st = emu::stats();
      EXPECT_EQ(st.host_synchronizations, 1u) << sampling_graph_name(modes[i]);
      EXPECT_EQ(st.graph_launches, modes[i] == SamplingGraph::off    ? 0u
                                   : modes[i] == SamplingGraph::step ? uint64_t(o.steps)
                                                                     : 1u);
      if (modes[i] == SamplingGraph::loop) {
        EXPECT_EQ(st.conditional_bodies, uint64_t(o.steps));
      }
      // The second scheduler reuses the graphs: nothing is captured. Runs
      // without a capture launch x_T and the first timestep, then per step the
      // forward, the update and the advance (a capture's recorded launches
      // are not run).
      if (ddim) {
        EXPECT_EQ(st.captured_launches, 0u) << sampling_graph_name(modes[i]);
        EXPECT_EQ(st.launches, 2 + uint64_t(o.steps) * (forward + 2))
            << sampling_graph_name(modes[i]);
      }
#endif
    }
    EXPECT_TRUE(bitwise_equal(images[0], images[1])) << what;
    EXPECT_TRUE(bitwise_equal(images[0], images[2])) << what;
    expect_within_cpu_bound(*m, s, o, images[2], what);
  }
}

}  // namespace
}  // namespace ddpm
