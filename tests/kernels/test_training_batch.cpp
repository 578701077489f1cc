// Kernel tests of training_batch.cuh (see kernel_test_util.h): the step's
// draws against the CPU trainer's (cpu::training_timestep, the flip test),
// the batch against ImageDataset::to_float + cpu::q_sample / diffusion_target
// in double, and the metrics ring.
//
// Tolerances, with u = 2^-24 (float's unit roundoff):
//   t, timesteps, flips and x0 are bitwise the CPU's (the same double draws,
//   the same float expression pixel / 127.5f - 1.0f);
//   eps: the kernel draws float Box-Muller, the CPU double:
//     |eps_f - eps| <= kNormalFloatAbsError (engine/noise.h);
//   x_t = sa x0 + sb eps (and v = sa eps - sb x0) in float from float tables,
//   against the CPU's double formula with double tables rounded once: the
//   tables' rounding (u relative each), two products and a sum (3u; FMA
//   contraction only removes roundings) and the CPU's final rounding (u):
//   5u (|sa x0| + |sb| (|eps| + noise error)) plus the noise error times its
//   coefficient.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "engine/cpu/diffusion.h"
#include "engine/data/image_dataset.h"
#include "engine/noise.h"
#include "engine/scheduler.h"
#include "kernels/diffusion.cuh"
#include "kernels/training_batch.cuh"
#include "tests/kernels/kernel_test_util.h"

namespace ddpm::testing {
namespace {

namespace k = ddpm::kernels;

constexpr double kU = 0x1p-24;
constexpr double kNoise = kNormalFloatAbsError;

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

// The default schedule's tables: double (the CPU trainer's) and float (the device's).
struct Tables {
  std::vector<double> sa, sb;
  std::vector<float> sa_f, sb_f;
};
Tables training_tables() {
  const Scheduler s{SchedulerConfig{}};
  Tables t;
  for (int64_t i = 0; i < s.config().num_train_timesteps; ++i) {
    t.sa.push_back(s.sqrt_alpha_cumprod(i));
    t.sb.push_back(s.sqrt_one_minus_alpha_cumprod(i));
    t.sa_f.push_back(float(t.sa.back()));
    t.sb_f.push_back(float(t.sb.back()));
  }
  return t;
}

// `count` random images of h x w x c bytes, covering 0 and 255.
ImageDataset random_images(int64_t count, int64_t h, int64_t w, int64_t c, uint64_t seed) {
  ImageDataset d;
  d.count = count, d.height = h, d.width = w, d.channels = c;
  Philox rng(seed, 5);
  d.pixels.resize(size_t(count * h * w * c));
  for (uint8_t& p : d.pixels) p = uint8_t(rng.next_u32() & 0xFF);
  d.pixels[0] = 0;
  d.pixels.back() = 255;
  d.source = "random";
  return d;
}

// ---- begin_training_step ----------------------------------------------------------

// Batch 300 is more than the block's 128 threads (the stride loop), and the
// step advances on the device from launch to launch.
TEST(BeginTrainingStep, AdvancesTheDeviceStepAndDrawsTheCpuTrainersTimestepsAndFlips) {
  DDPM_REQUIRE_DEVICE();
  for (bool random_flip : {true, false}) {
    SCOPED_TRACE(random_flip ? "random flips" : "no flips");
    k::TrainingBatchConfig c;
    c.batch = 300;
    c.height = c.width = 4;
    c.channels = 1;
    c.seed = 0xFEEDull << 33 | 7;  // both words of the key in use
    c.num_train_timesteps = 1000;
    c.random_flip = random_flip;
    DeviceArray<uint32_t> step(1);
    DeviceArray<int32_t> t(size_t(c.batch));
    DeviceArray<float> timesteps(size_t(c.batch));
    DeviceArray<uint8_t> flip(size_t(c.batch));
    upload_one(step.get(), 41u);
    int flips = 0;
    for (uint32_t s : {42u, 43u}) {
      SCOPED_TRACE("step " + std::to_string(s));
      k::begin_training_step(step.get(), t.get(), timesteps.get(), flip.get(), c, nullptr);
      EXPECT_EQ(download_one(step.get()), s);
      const std::vector<int32_t> got_t = t.download();
      const std::vector<float> got_ts = timesteps.download();
      const std::vector<uint8_t> got_flip = flip.download();
      for (int64_t b = 0; b < c.batch; ++b) {
        const int32_t want = cpu::training_timestep(c.seed, s, uint32_t(b), c.num_train_timesteps);
        ASSERT_EQ(got_t[size_t(b)], want) << "image " << b;
        ASSERT_EQ(got_ts[size_t(b)], float(want)) << "image " << b;
        const bool want_flip = random_flip && noise_uniform(c.seed, NoisePurpose::training_flip, s,
                                                            uint32_t(b), 0) < 0.5;
        ASSERT_EQ(got_flip[size_t(b)], want_flip ? 1 : 0) << "image " << b;
        flips += want_flip;
      }
    }
    if (random_flip) {
      EXPECT_GT(flips, 200);  // about half of 600 draws: the test sees both
    }
  }
}

// ---- prepare_training_batch -------------------------------------------------------

struct Case {
  int64_t batch, height, width, channels;
  size_t offset;  // floats: 1 misaligns x_t and the target (the scalar path)
  std::string name() const {
    return std::to_string(batch) + "x" + std::to_string(height) + "x" + std::to_string(width) +
           "x" + std::to_string(channels) + (offset ? " misaligned" : "");
  }
};

// RGB (quads straddle pixels and a mirrored quad's source is not contiguous),
// grey, odd sizes (a short last quad: scalar path), a float4 size with and
// without alignment, and images of more than 256 quads (several passes of the
// grid-stride loop under emulation's small grid).
const std::vector<Case> kCases = {
    {3, 5, 7, 3, 0},    {2, 8, 8, 1, 0}, {3, 4, 4, 3, 0},
    {3, 4, 4, 3, 1},    {1, 3, 5, 1, 0}, {3, 23, 23, 3, 0},
#if !DDPM_KERNEL_TESTS_EMULATED
    {16, 64, 64, 3, 0},
#endif
};

const char* prediction_name(PredictionType p) {
  return p == PredictionType::epsilon ? "epsilon" : p == PredictionType::sample ? "sample" : "v";
}

TEST(PrepareTrainingBatch, MatchesTheCpuTrainersBatchAndReadsTheStepFromDeviceMemory) {
  DDPM_REQUIRE_DEVICE();
  const Tables tables = training_tables();
  const DeviceArray<float> sa(tables.sa_f), sb(tables.sb_f);
  const int64_t T = int64_t(tables.sa.size());
  for (PredictionType p :
       {PredictionType::epsilon, PredictionType::sample, PredictionType::v_prediction}) {
    for (const Case& cs : kCases) {
      SCOPED_TRACE(std::string(prediction_name(p)) + " " + cs.name());
      const int64_t per_image = cs.height * cs.width * cs.channels, n = cs.batch * per_image;
      const uint64_t seed = 0x5EEDull + uint64_t(n) * 7 + uint64_t(p);
      const ImageDataset images = random_images(cs.batch, cs.height, cs.width, cs.channels, seed);
      k::TrainingBatchConfig c;
      c.batch = cs.batch, c.height = cs.height, c.width = cs.width, c.channels = cs.channels;
      c.seed = seed;
      c.num_train_timesteps = T;
      c.prediction = k::PredictionType(int(p));
      // Timesteps: the extremes and a draw; flips: every other image.
      std::vector<int32_t> t;
      std::vector<uint8_t> flip;
      for (int64_t b = 0; b < cs.batch; ++b) {
        t.push_back(b == 0 ? int32_t(T - 1) : b == 1 ? 0 : int32_t(97 * b % T));
        flip.push_back(uint8_t(b % 2 == 0));
      }
      const DeviceArray<uint8_t> pixels(images.pixels), flip_dev(flip);
      const DeviceArray<int32_t> t_dev(t);
      DeviceArray<uint32_t> step(1);
      GuardedSlice<float> x_t(size_t(n), cs.offset), target(size_t(n), cs.offset);
      for (uint32_t s : {17u, 18u}) {  // the same launch with a new step in device memory
        SCOPED_TRACE("step " + std::to_string(s));
        upload_one(step.get(), s);
        k::prepare_training_batch(pixels.get(), flip_dev.get(), t_dev.get(), sa.get(), sb.get(),
                                  step.get(), x_t.get(), target.get(), c, nullptr);
        const std::vector<float> got_x = x_t.download(), got_target = target.download();

        // The CPU trainer's batch: to_float (with the flip), then q_sample and
        // the target in double with the double tables.
        std::vector<float> x0(static_cast<size_t>(n));
        for (int64_t b = 0; b < cs.batch; ++b)
          images.to_float(b, x0.data() + b * per_image, flip[size_t(b)] != 0);
        const std::vector<double> x0_d(x0.begin(), x0.end());
        const cpu::DiffusionBatch db{cs.batch, per_image, seed, s, p};
        std::vector<double> want_x(static_cast<size_t>(n)), want_target(static_cast<size_t>(n));
        cpu::q_sample(x0_d.data(), t.data(), tables.sa.data(), tables.sb.data(), db, want_x.data());
        cpu::diffusion_target(x0_d.data(), t.data(), tables.sa.data(), tables.sb.data(), db,
                              want_target.data());
        for (int64_t i = 0; i < n; ++i) {
          const int64_t b = i / per_image;
          const double a = tables.sa[size_t(t[size_t(b)])], bb = tables.sb[size_t(t[size_t(b)])];
          const double eps = std::abs(noise_normal(seed, NoisePurpose::training_noise, s,
                                                   uint32_t(b), uint32_t(i % per_image)));
          const double x = std::abs(x0_d[size_t(i)]);
          const double tol_x = bb * kNoise + 5 * kU * (a * x + bb * (eps + kNoise));
          ASSERT_TRUE(std::isfinite(got_x[size_t(i)])) << "x_t " << i << " not written";
          ASSERT_NEAR(got_x[size_t(i)], want_x[size_t(i)], tol_x) << "x_t " << i;
          if (p == PredictionType::sample) {  // the target is x0 itself: bitwise to_float's
            ASSERT_EQ(got_target[size_t(i)], x0[size_t(i)]) << "x0 " << i;
            continue;
          }
          const double tol_t = p == PredictionType::epsilon
                                   ? kNoise + kU * eps
                                   : a * kNoise + 5 * kU * (a * (eps + kNoise) + bb * x);
          ASSERT_TRUE(std::isfinite(got_target[size_t(i)])) << "target " << i << " not written";
          ASSERT_NEAR(got_target[size_t(i)], want_target[size_t(i)], tol_t) << "target " << i;
        }

        // x_t is kernels::q_sample's on the same x0 and step, bit for bit (the
        // same expression and noise): the two device paths agree exactly.
        const DeviceArray<float> x0_dev(x0);
        DeviceArray<float> q{static_cast<size_t>(n)};
        k::q_sample(x0_dev.get(), t_dev.get(), sa.get(), sb.get(), step.get(), q.get(),
                    k::DiffusionBatch{cs.batch, per_image, seed}, nullptr);
        const std::vector<float> want_q = q.download();
        EXPECT_EQ(std::memcmp(want_q.data(), got_x.data(), size_t(n) * sizeof(float)), 0);
      }
    }
  }
}

// ---- record_training_metrics --------------------------------------------------------

TEST(RecordTrainingMetrics, WritesTheStepsSlotOfTheRingOnly) {
  DDPM_REQUIRE_DEVICE();
  constexpr int64_t kCapacity = 5;
  DeviceArray<k::TrainingMetrics> ring(kCapacity);  // poisoned: unwritten slots stay NaN
  DeviceArray<uint32_t> step(1);
  DeviceArray<float> loss(1), norm(1);
  const std::vector<std::pair<uint32_t, int64_t>> writes = {{1, 0}, {3, 2}, {kCapacity + 2, 1}};
  for (auto [s, slot] : writes) {
    upload_one(step.get(), s);
    upload_one(loss.get(), 0.5f * float(s));
    upload_one(norm.get(), 2.0f * float(s));
    k::record_training_metrics(step.get(), loss.get(), norm.get(), ring.get(), kCapacity, nullptr);
  }
  const std::vector<k::TrainingMetrics> got = ring.download();
  for (auto [s, slot] : writes) {
    EXPECT_EQ(got[size_t(slot)].loss, 0.5f * float(s)) << "slot " << slot;
    EXPECT_EQ(got[size_t(slot)].grad_norm, 2.0f * float(s)) << "slot " << slot;
  }
  for (int64_t slot : {3, 4}) EXPECT_TRUE(std::isnan(got[size_t(slot)].loss)) << "slot " << slot;
}

TEST(TrainingBatchLaunchers, RejectBadArguments) {
  DDPM_REQUIRE_DEVICE();
  DeviceArray<uint32_t> step(1);
  DeviceArray<int32_t> t(4);
  DeviceArray<float> f(64);
  DeviceArray<uint8_t> bytes(64);
  k::TrainingBatchConfig c;
  c.batch = 2, c.height = 2, c.width = 2, c.channels = 1;
  EXPECT_THROW(k::begin_training_step(nullptr, t.get(), f.get(), bytes.get(), c, nullptr),
               std::invalid_argument);
  k::TrainingBatchConfig empty = c;
  empty.batch = 0;
  EXPECT_THROW(k::begin_training_step(step.get(), t.get(), f.get(), bytes.get(), empty, nullptr),
               std::invalid_argument);
  k::TrainingBatchConfig bad_type = c;
  bad_type.prediction = k::PredictionType(7);
  EXPECT_THROW(k::prepare_training_batch(bytes.get(), bytes.get(), t.get(), f.get(), f.get(),
                                         step.get(), f.get(), f.get(), bad_type, nullptr),
               std::invalid_argument);
  EXPECT_THROW(k::prepare_training_batch(bytes.get(), bytes.get(), t.get(), f.get(), f.get(),
                                         step.get(), f.get(), nullptr, c, nullptr),
               std::invalid_argument);
  EXPECT_THROW(k::record_training_metrics(step.get(), f.get(), f.get(), nullptr, 4, nullptr),
               std::invalid_argument);
  EXPECT_THROW(
      k::record_training_metrics(step.get(), f.get(), f.get(),
                                 reinterpret_cast<k::TrainingMetrics*>(f.get()), 0, nullptr),
      std::invalid_argument);
}

}  // namespace
}  // namespace ddpm::testing
