// Kernel tests of diffusion.cuh against the CPU backend (see kernel_test_util.h):
// q_sample and diffusion_mse against engine/cpu/diffusion.h (and the MSE op),
// noise_update and advance_sampling_step against engine/scheduler.h's plans
// and noise_update<double>; initial_noise and the step noise against
// engine/noise.h's float draw. (The WHILE-loop form of advance_sampling_step
// is tested with CUDA graphs in tests/cuda_backend/test_cuda_sampling.cpp.)
//
// Tolerances, with u = 2^-24 (float's unit roundoff):
//   noise: the kernels draw float Box-Muller, the references double:
//     |z_f - z| <= kNormalFloatAbsError = 100u ~ 6.0e-6 (derived in engine/noise.h
//     from CUDA's documented logf / sinf / cosf errors); |z| <= kMaxNormal.
//   a float sum of k rounded products: <= k u sum |terms| (each term goes
//     through at most k roundings); FMA contraction only removes roundings.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "engine/cpu/diffusion.h"
#include "engine/noise.h"
#include "engine/ops/mse_loss.h"
#include "engine/scheduler.h"
#include "kernels/diffusion.cuh"
#include "tests/kernels/kernel_test_util.h"
#include "tests/op_harness.h"

namespace ddpm::testing {
namespace {

namespace k = ddpm::kernels;

constexpr double kU = 0x1p-24;
constexpr double kNoise = kNormalFloatAbsError;
// The largest |z| Box-Muller can give here: sqrt(2 ln(2^24 + 1)).
const double kMaxNormal = std::sqrt(2 * std::log(16777217.0));

#if DDPM_KERNEL_TESTS_EMULATED
constexpr int64_t kNoiseImages = 3, kNoisePerImage = 4096;
#else
constexpr int64_t kNoiseImages = 16, kNoisePerImage = 65536;
#endif

template <typename T>
using Slice = GuardedSlice<T>;

template <typename T>
DeviceArray<T> device_copy(const std::vector<T>& v) {
  return DeviceArray<T>(v);
}

template <typename T>
T download_one(const T* p) {
  T v;
  cudaDeviceSynchronize();
  EXPECT_EQ(cudaMemcpy(&v, p, sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return v;
}

template <typename T>
void upload_one(T* p, T v) {
  ASSERT_EQ(cudaMemcpy(p, &v, sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
}

// The default linear-beta schedule's tables, in float as the kernels take them.
struct Tables {
  std::vector<float> sqrt_abar, sqrt_one_minus_abar;
};
Tables training_tables() {
  const Scheduler s{SchedulerConfig{}};
  Tables t;
  for (int64_t i = 0; i < s.config().num_train_timesteps; ++i) {
    t.sqrt_abar.push_back(float(s.sqrt_alpha_cumprod(i)));
    t.sqrt_one_minus_abar.push_back(float(s.sqrt_one_minus_alpha_cumprod(i)));
  }
  return t;
}

// Timesteps of a batch: the trainer's draw for image 0, then the extremes.
std::vector<int32_t> batch_timesteps(uint64_t seed, uint32_t step, int64_t batch, int64_t T) {
  std::vector<int32_t> t;
  for (int64_t b = 0; b < batch; ++b)
    t.push_back(b == 1   ? 0
                : b == 2 ? int32_t(T - 1)
                         : cpu::training_timestep(seed, step, uint32_t(b), T));
  return t;
}

std::vector<double> widen(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

std::string sci(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

// The largest error / tolerance seen, recorded in the test's XML output: how
// much of each derived bound a device actually uses.
struct Margin {
  double worst = 0;
  void add(double got, double want, double tol) {
    worst = std::max(worst, std::abs(got - want) / tol);
  }
  ~Margin() { ::testing::Test::RecordProperty("worst_error_over_tolerance", sci(worst)); }
};

struct Case {
  int64_t batch, per_image;
  size_t offset;  // elements: 1 makes every pointer misaligned (the scalar path)
  std::string name() const {
    return std::to_string(batch) + "x" + std::to_string(per_image) + (offset ? " misaligned" : "");
  }
};

// Odd per-image sizes (5x7x3, 5x7x5: scalar path), float4 sizes (4x4x40, 6x6x8),
// batch 1 and 3, a misaligned pointer on a float4 size, and images of more
// than 256 quads (23x23x3), which take several passes of the grid-stride loop
// under emulation's small grid (and, on the GPU, a batch of 8 large odd images
// whose quads outnumber the grid's threads).
const std::vector<Case> kCases = {
    {1, 5 * 7 * 3, 0},      {3, 5 * 7 * 5, 0},  {3, 4 * 4 * 40, 0},
    {2, 6 * 6 * 8, 0},      {3, 4 * 4 * 40, 1}, {3, 23 * 23 * 3, 0},
#if !DDPM_KERNEL_TESTS_EMULATED
    {8, 140 * 1024 + 3, 0},
#endif
};

// ---- the float noise itself -------------------------------------------------------

TEST(DiffusionNoise, FloatBoxMullerWithinItsDerivedBoundOnTheHost) {
  double worst = 0;
  for (uint32_t image = 0; image < 4; ++image)
    for (uint32_t e = 0; e < 16384; ++e) {
      const double z = noise_normal(99, NoisePurpose::step_noise, 3, image, e);
      const float zf = noise_normal_f(99, NoisePurpose::step_noise, 3, image, e);
      const NormalPairF pair = noise_normal_pair_f(99, NoisePurpose::step_noise, 3, image, e >> 1);
      ASSERT_EQ(zf, (e & 1) ? pair.odd : pair.even);
      worst = std::max(worst, std::abs(double(zf) - z));
    }
  EXPECT_LE(worst, kNoise);
  RecordProperty("max_abs_error", sci(worst));
}

// With sqrt_abar 0 and sqrt_one_minus_abar 1, x_t is the device's eps exactly
// (0 x + 1 eps has no rounding): the device's logf / sinf / cosf against double.
TEST(DiffusionNoise, DeviceFloatBoxMullerWithinItsDerivedBound) {
  DDPM_REQUIRE_DEVICE();
  const int64_t n = kNoiseImages * kNoisePerImage;
  const auto x0 = device_copy(random_floats(size_t(n), 5));
  const auto t = device_copy(std::vector<int32_t>(size_t(kNoiseImages), 0));
  const auto zero = device_copy(std::vector<float>{0.0f});
  const auto one = device_copy(std::vector<float>{1.0f});
  const auto step = device_copy(std::vector<uint32_t>{12345});
  DeviceArray<float> x_t{size_t(n)};
  const k::DiffusionBatch b{kNoiseImages, kNoisePerImage, 0xDEADBEEFCAFEull};
  k::q_sample(x0.get(), t.get(), zero.get(), one.get(), step.get(), x_t.get(), b, nullptr);
  const std::vector<float> got = x_t.download();
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double z = noise_normal(b.seed, NoisePurpose::training_noise, 12345,
                                  uint32_t(i / kNoisePerImage), uint32_t(i % kNoisePerImage));
    ASSERT_TRUE(std::isfinite(got[size_t(i)])) << "element " << i;
    worst = std::max(worst, std::abs(double(got[size_t(i)]) - z));
  }
  EXPECT_LE(worst, kNoise);
  RecordProperty("max_abs_error", sci(worst));
}

// ---- the CPU reference against the trainer's formulas ------------------------------

TEST(DiffusionReference, MatchesTheTrainersFormulas) {
  const Scheduler s{SchedulerConfig{}};
  const int64_t batch = 2, per_image = 7;
  std::vector<double> x0 = widen(random_floats(size_t(batch * per_image), 3));
  const std::vector<int32_t> t = {cpu::training_timestep(7, 4, 0, 1000),
                                  cpu::training_timestep(7, 4, 1, 1000)};
  std::vector<double> sa, sb;
  for (int64_t i = 0; i < 1000; ++i) {
    sa.push_back(s.sqrt_alpha_cumprod(i));
    sb.push_back(s.sqrt_one_minus_alpha_cumprod(i));
  }
  for (PredictionType p :
       {PredictionType::epsilon, PredictionType::sample, PredictionType::v_prediction}) {
    const cpu::DiffusionBatch d{batch, per_image, 7, 4, p};
    std::vector<double> x_t(x0.size()), target(x0.size());
    cpu::q_sample(x0.data(), t.data(), sa.data(), sb.data(), d, x_t.data());
    cpu::diffusion_target(x0.data(), t.data(), sa.data(), sb.data(), d, target.data());
    for (int64_t i = 0; i < batch * per_image; ++i) {
      const auto img = uint32_t(i / per_image), e = uint32_t(i % per_image);
      const double u = noise_uniform(7, NoisePurpose::training_timestep, 4, img, 0);
      ASSERT_EQ(t[img], int32_t(u * 1000));
      const double eps = noise_normal(7, NoisePurpose::training_noise, 4, img, e);
      const double a = sa[size_t(t[img])], c = sb[size_t(t[img])];
      EXPECT_EQ(x_t[size_t(i)], a * x0[size_t(i)] + c * eps);
      EXPECT_EQ(target[size_t(i)], p == PredictionType::epsilon  ? eps
                                   : p == PredictionType::sample ? x0[size_t(i)]
                                                                 : a * eps - c * x0[size_t(i)]);
    }
  }
  EXPECT_EQ(parse_prediction_type("v_prediction"), PredictionType::v_prediction);
  EXPECT_THROW(parse_prediction_type("noise"), std::invalid_argument);
}

// ---- q_sample ---------------------------------------------------------------------

// x_t = sa x0 + sb eps_f in float: three roundings, <= 2u (|sa x0| + |sb eps|)
// (3u with margin), plus sb times the noise error.
TEST(QSample, MatchesTheCpuReferenceAndReadsTheStepFromDeviceMemory) {
  DDPM_REQUIRE_DEVICE();
  const Tables tables = training_tables();
  const auto sa = device_copy(tables.sqrt_abar);
  const auto sb = device_copy(tables.sqrt_one_minus_abar);
  const std::vector<double> sa_d = widen(tables.sqrt_abar),
                            sb_d = widen(tables.sqrt_one_minus_abar);
  Margin margin;
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name());
    const int64_t n = c.batch * c.per_image;
    const uint64_t seed = 0x1234567890ull + uint64_t(n);
    const std::vector<float> x0 = random_floats(size_t(n), seed);
    Slice<float> x0_dev(size_t(n), c.offset), x_t(size_t(n), c.offset);
    x0_dev.upload(x0);
    DeviceArray<uint32_t> step(1);
    for (uint32_t s : {17u, 18u}) {  // the same launch with a new step in device memory
      SCOPED_TRACE("step " + std::to_string(s));
      const std::vector<int32_t> t = batch_timesteps(seed, s, c.batch, 1000);
      const auto t_dev = device_copy(t);
      upload_one(step.get(), s);
      k::q_sample(x0_dev.get(), t_dev.get(), sa.get(), sb.get(), step.get(), x_t.get(),
                  k::DiffusionBatch{c.batch, c.per_image, seed}, nullptr);
      const std::vector<float> got = x_t.download();
      std::vector<double> want(static_cast<size_t>(n));
      const std::vector<double> x0_d = widen(x0);
      cpu::q_sample(x0_d.data(), t.data(), sa_d.data(), sb_d.data(),
                    cpu::DiffusionBatch{c.batch, c.per_image, seed, s}, want.data());
      for (int64_t i = 0; i < n; ++i) {
        const size_t tb = size_t(t[size_t(i / c.per_image)]);
        const double a = sa_d[tb], bb = sb_d[tb];
        const double tol = bb * kNoise + 3 * kU * (a * std::abs(x0_d[size_t(i)]) + bb * kMaxNormal);
        ASSERT_TRUE(std::isfinite(got[size_t(i)])) << "element " << i << " not written";
        ASSERT_NEAR(got[size_t(i)], want[size_t(i)], tol) << "element " << i;
        margin.add(got[size_t(i)], want[size_t(i)], tol);
      }
    }
  }
}

// ---- diffusion_mse ----------------------------------------------------------------

const char* prediction_name(k::PredictionType p) {
  return p == k::PredictionType::epsilon  ? "epsilon"
         : p == k::PredictionType::sample ? "sample"
                                          : "v";
}

// Target error dt: epsilon kNoise; sample 0 (x0 itself); v = sa eps - sb x0 in
// float: sa kNoise + 2u (sa |eps| + sb |x0|) (3u with margin).
// d = pred - target: dd <= dt + u |d|. dpred = fl(2/n) d: (2/n)(dd + 2u |d|).
// loss: sum d^2 in double (exact squares; summation error ~n 2^-53, negligible):
// |sum d_f^2 - sum d^2| <= sum (2 |d| dd + dd^2), / n, then rounded to float (u).
TEST(DiffusionMse, MatchesTheCpuTargetAndTheMseOpDeterministically) {
  DDPM_REQUIRE_DEVICE();
  const Tables tables = training_tables();
  const auto sa = device_copy(tables.sqrt_abar);
  const auto sb = device_copy(tables.sqrt_one_minus_abar);
  const std::vector<double> sa_d = widen(tables.sqrt_abar),
                            sb_d = widen(tables.sqrt_one_minus_abar);
  Margin margin;
  for (k::PredictionType p :
       {k::PredictionType::epsilon, k::PredictionType::sample, k::PredictionType::v_prediction}) {
    for (const Case& c : kCases) {
      SCOPED_TRACE(std::string(prediction_name(p)) + " " + c.name());
      const int64_t n = c.batch * c.per_image;
      const uint64_t seed = 0xABCDEFull + uint64_t(n) * 3 + uint64_t(p);
      const uint32_t s = 5 + uint32_t(p);
      const std::vector<float> x0 = random_floats(size_t(n), seed),
                               pred = random_floats(size_t(n), seed + 1);
      const std::vector<int32_t> t = batch_timesteps(seed, s, c.batch, 1000);
      Slice<float> x0_dev(size_t(n), c.offset), pred_dev(size_t(n), c.offset),
          dpred(size_t(n), c.offset);
      x0_dev.upload(x0);
      pred_dev.upload(pred);
      const auto t_dev = device_copy(t);
      const auto step = device_copy(std::vector<uint32_t>{s});
      const k::DiffusionBatch b{c.batch, c.per_image, seed, p};
      const size_t ws_bytes = k::diffusion_mse_workspace_bytes(b);
      ASSERT_GE(ws_bytes, sizeof(double));
      ASSERT_EQ(ws_bytes % sizeof(double), 0u);
      DeviceArray<double> workspace(ws_bytes / sizeof(double));
      DeviceArray<float> loss(1);

      auto run = [&] {
        k::diffusion_mse(pred_dev.get(), x0_dev.get(), t_dev.get(), sa.get(), sb.get(), step.get(),
                         loss.get(), dpred.get(), b, workspace.get(), nullptr);
      };
      run();
      const std::vector<float> got_dpred = dpred.download();
      const float got_loss = loss.download()[0];

      // The reference target, and the loss of the CPU MSE op on it.
      const std::vector<double> x0_d = widen(x0);
      std::vector<double> target(static_cast<size_t>(n));
      cpu::diffusion_target(
          x0_d.data(), t.data(), sa_d.data(), sb_d.data(),
          cpu::DiffusionBatch{c.batch, c.per_image, seed, s, PredictionType(int(p))},
          target.data());
      OpRun op(MseLossParams{}, {Shape{c.batch, c.per_image}, Shape{c.batch, c.per_image}});
      for (int64_t i = 0; i < n; ++i) {
        op.inputs[0].set(i, pred[size_t(i)]);
        op.inputs[1].set(i, target[size_t(i)]);
      }
      const double want_loss = op.forward()[0];

      double loss_tol = 0;
      for (int64_t i = 0; i < n; ++i) {
        const size_t tb = size_t(t[size_t(i / c.per_image)]);
        const double a = sa_d[tb], bb = sb_d[tb];
        const double dt =
            p == k::PredictionType::epsilon ? kNoise
            : p == k::PredictionType::sample
                ? 0.0
                : a * kNoise + 3 * kU * (a * kMaxNormal + bb * std::abs(x0_d[size_t(i)]));
        const double d = pred[size_t(i)] - target[size_t(i)];
        const double dd = dt + kU * (std::abs(d) + dt);
        const double want = 2 * d / double(n),
                     tol = 2.0 / double(n) * (dd + 2 * kU * (std::abs(d) + dd));
        ASSERT_TRUE(std::isfinite(got_dpred[size_t(i)])) << "dpred " << i << " not written";
        ASSERT_NEAR(got_dpred[size_t(i)], want, tol) << "dpred " << i;
        margin.add(got_dpred[size_t(i)], want, tol);
        loss_tol += 2 * std::abs(d) * dd + dd * dd;
      }
      loss_tol = loss_tol / double(n) + 2 * kU * want_loss;
      EXPECT_NEAR(got_loss, want_loss, loss_tol);
      margin.add(got_loss, want_loss, loss_tol);

      // Bitwise the same on a second run (fixed partition, no atomics).
      dpred.poison();
      loss.poison();
      workspace.poison();
      run();
      const std::vector<float> again = dpred.download();
      EXPECT_EQ(std::memcmp(again.data(), got_dpred.data(), again.size() * sizeof(float)), 0);
      const float loss_again = loss.download()[0];
      EXPECT_EQ(std::memcmp(&loss_again, &got_loss, sizeof(float)), 0);
    }
  }
}

TEST(DiffusionMse, LaunchersRejectBadShapes) {
  DDPM_REQUIRE_DEVICE();
  const k::DiffusionBatch empty{0, 12, 1};
  EXPECT_EQ(k::diffusion_mse_workspace_bytes(empty), 0u);
  DeviceArray<float> f(16);
  DeviceArray<int32_t> t(1);
  DeviceArray<uint32_t> step(1);
  DeviceArray<double> ws(16);
  EXPECT_THROW(k::diffusion_mse(f.get(), f.get(), t.get(), f.get(), f.get(), step.get(), f.get(),
                                f.get(), empty, ws.get(), nullptr),
               std::invalid_argument);
  EXPECT_THROW(k::q_sample(f.get(), t.get(), f.get(), f.get(), step.get(), f.get(),
                           k::DiffusionBatch{-1, 4, 1}, nullptr),
               std::invalid_argument);
  EXPECT_THROW(k::q_sample(f.get(), t.get(), f.get(), f.get(), nullptr, f.get(),
                           k::DiffusionBatch{1, 4, 1}, nullptr),
               std::invalid_argument);
  // Nothing to do: no launch, nothing touched.
  k::q_sample(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, empty, nullptr);
  k::noise_update(nullptr, nullptr, nullptr, nullptr, 0, 12, nullptr);
  k::initial_noise(nullptr, nullptr, 3, 0, nullptr);
  // More images than noise keys; a null state.
  EXPECT_THROW(
      k::noise_update(nullptr, nullptr, nullptr, f.get(), int64_t(UINT32_MAX) + 2, 4, nullptr),
      std::invalid_argument);
  EXPECT_THROW(k::initial_noise(nullptr, f.get(), 1, 4, nullptr), std::invalid_argument);
  EXPECT_THROW(k::start_sampling(nullptr, nullptr, f.get(), 1, nullptr), std::invalid_argument);
}

// ---- noise_update -----------------------------------------------------------------

k::NoiseUpdateStep to_kernel(const StepCoefficients& c) {
  return k::NoiseUpdateStep{float(c.x0_from_x),       float(c.x0_from_model), float(c.clip_range),
                            int32_t(c.clip),          float(c.prev_from_x0),  float(c.prev_from_x),
                            float(c.prev_from_model), float(c.sigma),         int32_t(c.timestep)};
}

// The coefficients the kernel sees, back in double: the oracle then differs
// from the kernel only by the kernel's float arithmetic and noise.
StepCoefficients as_seen_by_kernel(const StepCoefficients& c) {
  const k::NoiseUpdateStep f = to_kernel(c);
  StepCoefficients d = c;
  d.x0_from_x = f.x0_from_x, d.x0_from_model = f.x0_from_model, d.clip_range = f.clip_range;
  d.prev_from_x0 = f.prev_from_x0, d.prev_from_x = f.prev_from_x,
  d.prev_from_model = f.prev_from_model, d.sigma = f.sigma;
  return d;
}

// Element bound: x0 = ax x + am m in float (3 roundings: 2u (|ax x| + |am m|),
// clamping does not enlarge it), carried by |px0|; prev = px0 x0 + px x + pm m
// + s z in float (each term through <= 5 roundings: 5u sum |terms|); and
// |s| times the noise error.
std::vector<double> noise_update_bounds(const StepCoefficients& k, const std::vector<double>& x,
                                        const std::vector<double>& m) {
  std::vector<double> tol(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    double x0 = k.x0_from_x * x[i] + k.x0_from_model * m[i];
    if (k.clip) x0 = std::clamp(x0, -k.clip_range, k.clip_range);
    const double x0_err =
        3 * kU * (std::abs(k.x0_from_x * x[i]) + std::abs(k.x0_from_model * m[i]));
    tol[i] = std::abs(k.prev_from_x0) * x0_err +
             5 * kU *
                 (std::abs(k.prev_from_x0 * x0) + std::abs(k.prev_from_x * x[i]) +
                  std::abs(k.prev_from_model * m[i]) + std::abs(k.sigma) * kMaxNormal) +
             std::abs(k.sigma) * kNoise;
  }
  return tol;
}

std::vector<double> noise_update_oracle(const StepCoefficients& k, uint32_t index, uint64_t seed,
                                        int64_t batch, int64_t per_image, int64_t first_image,
                                        const std::vector<double>& x,
                                        const std::vector<double>& m) {
  std::vector<double> z(x.size(), 0.0), out(x.size());
  if (k.sigma != 0)
    for (int64_t i = 0; i < batch * per_image; ++i)
      z[size_t(i)] = noise_normal(seed, NoisePurpose::step_noise, index,
                                  uint32_t(first_image + i / per_image), uint32_t(i % per_image));
  noise_update<double>(k, x.data(), m.data(), z.data(), out.data(), int64_t(x.size()));
  return out;
}

struct SchedulerCase {
  std::string name;
  SchedulerConfig config;
};

std::vector<SchedulerCase> scheduler_cases() {
  std::vector<SchedulerCase> cases;
  auto add = [&](std::string name, auto edit) {
    SchedulerConfig c;
    edit(c);
    cases.push_back({std::move(name), c});
  };
  add("ddpm fixed_small clip epsilon", [](SchedulerConfig&) {});
  add("ddpm fixed_large no-clip sample", [](SchedulerConfig& c) {
    c.variance_type = "fixed_large", c.clip_sample = false, c.prediction_type = "sample";
  });
  add("ddpm fixed_small clip v", [](SchedulerConfig& c) { c.prediction_type = "v_prediction"; });
  add("ddim eta 0 clip epsilon", [](SchedulerConfig& c) { c.kind = "ddim"; });
  add("ddim eta 1 no-clip v", [](SchedulerConfig& c) {
    c.kind = "ddim", c.eta = 1, c.clip_sample = false, c.prediction_type = "v_prediction";
  });
  add("ddim eta 1 clip clipped-model-output epsilon",
      [](SchedulerConfig& c) { c.kind = "ddim", c.eta = 1, c.use_clipped_model_output = true; });
  return cases;
}

TEST(NoiseUpdate, MatchesTheSchedulersUpdateForEveryKindOfStep) {
  DDPM_REQUIRE_DEVICE();
  constexpr int64_t kSteps = 10;
  Margin margin;
  for (const SchedulerCase& sc : scheduler_cases()) {
    const std::vector<StepCoefficients> plan = Scheduler(sc.config).plan(kSteps);
    std::vector<k::NoiseUpdateStep> table;
    for (const StepCoefficients& s : plan) table.push_back(to_kernel(s));
    const auto steps = device_copy(table);
    DeviceArray<k::SamplingState> state(1);
    // The first step, one in the middle and the last (sigma 0 for every kind).
    for (uint32_t i : {0u, 4u, uint32_t(kSteps - 1)}) {
      const StepCoefficients kd = as_seen_by_kernel(plan[i]);
      for (const Case& c : kCases) {
        SCOPED_TRACE(sc.name + ", step " + std::to_string(i) + ", " + c.name());
        if (i == kSteps - 1) {
          ASSERT_EQ(plan[i].sigma, 0.0);
        }
        const int64_t n = c.batch * c.per_image, first_image = 5;
        const uint64_t seed = 4242 + uint64_t(n);
        const std::vector<float> x = random_floats(size_t(n), seed, 1.5),
                                 m = random_floats(size_t(n), seed + 1);
        Slice<float> x_dev(size_t(n), c.offset), m_dev(size_t(n), c.offset);
        x_dev.upload(x);
        m_dev.upload(m);
        upload_one(state.get(),
                   k::SamplingState{seed, uint32_t(first_image), uint32_t(kSteps), i, 0});
        k::noise_update(steps.get(), state.get(), m_dev.get(), x_dev.get(), c.batch, c.per_image,
                        nullptr);
        const std::vector<float> got = x_dev.download();
        const std::vector<double> xd = widen(x), md = widen(m);
        const std::vector<double> want =
            noise_update_oracle(kd, i, seed, c.batch, c.per_image, first_image, xd, md);
        const std::vector<double> tol = noise_update_bounds(kd, xd, md);
        for (int64_t e = 0; e < n; ++e) {
          ASSERT_TRUE(std::isfinite(got[size_t(e)])) << "element " << e << " not written";
          ASSERT_NEAR(got[size_t(e)], want[size_t(e)], tol[size_t(e)]) << "element " << e;
          margin.add(got[size_t(e)], want[size_t(e)], tol[size_t(e)]);
        }
      }
    }
  }
}

// The loop a captured graph replays: x_T and the first timestep, then
// noise_update at state->step_index and advance_sampling_step, the host only
// supplying each step's model output.
TEST(NoiseUpdate, SamplingLoopAdvancesTheStepAndTimestepsOnTheDevice) {
  DDPM_REQUIRE_DEVICE();
  SchedulerConfig config;
  config.variance_type = "fixed_large";
  constexpr int64_t kSteps = 10, kBatch = 2, kPerImage = 4 * 4 * 3, kFirst = 7;
  const uint64_t seed = 77;
  const std::vector<StepCoefficients> plan = Scheduler(config).plan(kSteps);
  std::vector<k::NoiseUpdateStep> table;
  for (const StepCoefficients& s : plan) table.push_back(to_kernel(s));
  const auto steps = device_copy(table);
  // step_index starts wrong: start_sampling resets it.
  const auto state =
      device_copy(std::vector<k::SamplingState>{{seed, uint32_t(kFirst), uint32_t(kSteps), 5, 0}});
  DeviceArray<float> timesteps{size_t(kBatch)};
  Slice<float> x(size_t(kBatch * kPerImage)), m(size_t(kBatch * kPerImage));
  x.poison();
  k::initial_noise(state.get(), x.get(), kBatch, kPerImage, nullptr);
  k::start_sampling(steps.get(), state.get(), timesteps.get(), kBatch, nullptr);
  EXPECT_EQ(download_one(state.get()).step_index, 0u);
  for (float ts : timesteps.download()) EXPECT_EQ(ts, float(plan[0].timestep));
  for (int64_t i = 0; i < kSteps; ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    const std::vector<float> before = x.download(),
                             model = random_floats(before.size(), 100 + uint64_t(i));
    m.upload(model);
    k::noise_update(steps.get(), state.get(), m.get(), x.get(), kBatch, kPerImage, nullptr);
    k::advance_sampling_step(steps.get(), state.get(), timesteps.get(), kBatch, std::nullopt,
                             nullptr);
    const StepCoefficients kd = as_seen_by_kernel(plan[size_t(i)]);
    const std::vector<double> xd = widen(before), md = widen(model);
    const std::vector<double> want =
        noise_update_oracle(kd, uint32_t(i), seed, kBatch, kPerImage, kFirst, xd, md);
    const std::vector<double> tol = noise_update_bounds(kd, xd, md);
    const std::vector<float> got = x.download();
    for (size_t e = 0; e < got.size(); ++e) ASSERT_NEAR(got[e], want[e], tol[e]) << "element " << e;
    const k::SamplingState now = download_one(state.get());
    EXPECT_EQ(now.step_index, uint32_t(i + 1));
    EXPECT_EQ(now.seed, seed);  // the per-batch fields are only read
    EXPECT_EQ(now.first_image, uint32_t(kFirst));
    const int64_t shown = i + 1 < kSteps ? i + 1 : kSteps - 1;  // the last advance writes nothing
    for (float ts : timesteps.download()) EXPECT_EQ(ts, float(plan[size_t(shown)].timestep));
  }
}

// The device's noise is engine/noise.h's float draw (the same code), for x_T
// and for a step's z: bitwise where the device rounds logf / sinf / cosf as
// the host's libm does (the emulator: the kernel compiled by g++ against the
// same libm), else within twice kNormalFloatAbsError (each draw is within it
// of the double draw). A step with every coefficient 0 but sigma = 1 gives
// x' = 0 x0 + 0 x + 0 m + 1 z = z exactly. A wrong key (image, step, purpose)
// gives a different normal: O(1) differences.
TEST(NoiseUpdate, DeviceNoiseIsTheHostsFloatDraw) {
  DDPM_REQUIRE_DEVICE();
#if DDPM_KERNEL_TESTS_EMULATED
  const double tol = 0;
#else
  const double tol = 2 * kNoise;
#endif
  constexpr int64_t kBatch = 3, kPerImage = 5 * 7 * 3, kSteps = 4;
  constexpr uint32_t kFirst = 1000, kStep = 2;
  const uint64_t seed = 0x123456789ABCull;
  k::NoiseUpdateStep only_noise{};
  only_noise.sigma = 1.0f;
  const auto steps = device_copy(std::vector<k::NoiseUpdateStep>(size_t(kSteps), only_noise));
  const auto state =
      device_copy(std::vector<k::SamplingState>{{seed, kFirst, uint32_t(kSteps), kStep, 0}});
  for (const Case& c : {Case{kBatch, kPerImage, 0}, Case{kBatch, 4 * 4 * 8, 0}}) {
    SCOPED_TRACE(c.name());
    const int64_t n = c.batch * c.per_image;
    Slice<float> x{size_t(n)}, m{size_t(n)};
    x.poison();
    k::initial_noise(state.get(), x.get(), c.batch, c.per_image, nullptr);
    const std::vector<float> x_t = x.download();
    m.upload(random_floats(size_t(n), 3));
    k::noise_update(steps.get(), state.get(), m.get(), x.get(), c.batch, c.per_image, nullptr);
    const std::vector<float> z = x.download();
    double worst = 0;
    for (int64_t i = 0; i < n; ++i) {
      const auto image = kFirst + uint32_t(i / c.per_image), e = uint32_t(i % c.per_image);
      const float want_x = noise_normal_f(seed, NoisePurpose::initial_sample, 0, image, e);
      const float want_z = noise_normal_f(seed, NoisePurpose::step_noise, kStep, image, e);
      ASSERT_NEAR(x_t[size_t(i)], want_x, tol) << "x_T element " << i;
      ASSERT_NEAR(z[size_t(i)], want_z, tol) << "z element " << i;
      worst = std::max({worst, std::abs(double(x_t[size_t(i)]) - want_x),
                        std::abs(double(z[size_t(i)]) - want_z)});
    }
    RecordProperty("max_abs_difference", sci(worst));
  }
}

TEST(NoiseUpdate, AdvanceSamplingStepCoversLargeAndEmptyBatches) {
  DDPM_REQUIRE_DEVICE();
  const std::vector<StepCoefficients> plan = Scheduler(SchedulerConfig{}).plan(50);
  std::vector<k::NoiseUpdateStep> table;
  for (const StepCoefficients& s : plan) table.push_back(to_kernel(s));
  const auto steps = device_copy(table);
  const auto state = device_copy(std::vector<k::SamplingState>{{1, 0, 50, 3, 0}});
  DeviceArray<float> timesteps(300);  // more images than threads in the block
  k::advance_sampling_step(steps.get(), state.get(), timesteps.get(), 300, std::nullopt, nullptr);
  EXPECT_EQ(download_one(state.get()).step_index, 4u);
  for (float ts : timesteps.download()) ASSERT_EQ(ts, float(plan[4].timestep));
  k::advance_sampling_step(steps.get(), state.get(), nullptr, 0, std::nullopt, nullptr);
  EXPECT_EQ(download_one(state.get()).step_index, 5u);
  k::start_sampling(steps.get(), state.get(), timesteps.get(), 300, nullptr);
  EXPECT_EQ(download_one(state.get()).step_index, 0u);
  for (float ts : timesteps.download()) ASSERT_EQ(ts, float(plan[0].timestep));
  EXPECT_THROW(
      k::advance_sampling_step(steps.get(), nullptr, timesteps.get(), 1, std::nullopt, nullptr),
      std::invalid_argument);
}

}  // namespace
}  // namespace ddpm::testing
