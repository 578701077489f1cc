// A training step's batch on the device and its metrics ring (contracts in
// training_batch.cuh; the references are engine/cpu/diffusion.h and
// ImageDataset::to_float).
//
// begin_training_step: one block. Every thread reads the old step before
// thread 0 writes the new one (a barrier between), then the threads stride
// over the images: two Philox blocks and a double multiply per image.
//
// prepare_training_batch: the layout and grid of kernels/diffusion.cu's
// q_sample. A thread owns a quad, elements 4q..4q+3 of one image in NHWC
// order (the two Philox blocks of their noise); blockIdx.y strides over
// images, blockIdx.x * blockDim.x + threadIdx.x over an image's quads. The
// destination element (y, x, c) reads the pixel (y, W - 1 - x, c) when the
// image is flipped, so the noise stays keyed on the destination element, as
// on the CPU (which flips x0 first). Pixels are read byte by byte (the
// mirrored source of a quad is not contiguous for C = 3); x_t and the target
// are stored as float4 when per_image % 4 == 0 and both are 16-byte aligned.
// The bf16 overload is the same kernel storing x_t as bf16 (each float
// rounded once: bitwise bf16 of the fp32 overload's x_t; quad_io.cuh's
// 8-byte quads). Per element: read 1 B, write 8 B (bf16 x_t: 6 B); x0 is
// never stored (the CPU's separate conversion, q_sample and target passes
// would move 1 + 4 + 8 + 8 + 8 B). Compute: one Philox4x32-10 and a
// Box-Muller pair per 2 elements, as q_sample.
//
// record_training_metrics: one thread, three 4-byte loads and an 8-byte store.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "engine/noise.h"
#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "kernels/quad_io.cuh"
#include "kernels/training_batch.cuh"
#include "kernels/vector_io.cuh"

namespace ddpm::kernels {

namespace {

constexpr int kThreads = 256;
constexpr int kBeginThreads = 128;
#ifdef DDPM_CUDA_EMULATION
// The emulated tests' small images would each take one pass of the grid-stride
// loops with the GPU's grid; a tiny grid makes them take several.
constexpr int64_t kTargetBlocks = 2, kMaxGridY = 2;
#else
// One wave of 256-thread blocks on an H100 / H200 (132 SMs x 4), as diffusion.cu.
constexpr int64_t kTargetBlocks = 132 * 4, kMaxGridY = 65535;
#endif

__global__ void __launch_bounds__(kBeginThreads)
    begin_training_step_kernel(uint32_t* __restrict__ step_ptr, int32_t* __restrict__ t,
                               float* __restrict__ timesteps, uint8_t* __restrict__ flip,
                               int64_t batch, uint64_t seed, int64_t num_t, bool random_flip) {
  const uint32_t step = *step_ptr + 1;
  __syncthreads();  // every thread has read the old value
  if (threadIdx.x == 0) *step_ptr = step;
  for (int64_t b = threadIdx.x; b < batch; b += blockDim.x) {
    // cpu::training_timestep and the CPU trainer's flip, in the same double arithmetic.
    const double u = noise_uniform(seed, NoisePurpose::training_timestep, step, uint32_t(b), 0);
    const auto scaled = int64_t(u * double(num_t));
    const auto tb = int32_t(scaled < num_t - 1 ? scaled : num_t - 1);
    t[b] = tb;
    timesteps[b] = float(tb);
    flip[b] =
        random_flip && noise_uniform(seed, NoisePurpose::training_flip, step, uint32_t(b), 0) < 0.5;
  }
}

// X: x_t's storage (float, or __nv_bfloat16: the same float value rounded once).
template <bool kVector, class X>
__global__ void __launch_bounds__(kThreads)
    prepare_training_batch_kernel(const uint8_t* __restrict__ images,
                                  const uint8_t* __restrict__ flip, const int32_t* __restrict__ t,
                                  const float* __restrict__ sqrt_abar,
                                  const float* __restrict__ sqrt_one_minus_abar,
                                  const uint32_t* __restrict__ step_ptr, X* __restrict__ x_t,
                                  float* __restrict__ target, int64_t batch, int64_t width,
                                  int64_t channels, int64_t per_image, uint64_t seed,
                                  PredictionType prediction) {
  const uint32_t step = *step_ptr;
  const int64_t quads = (per_image + 3) / 4, row_elements = width * channels;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const int32_t tb = t[b];
    const float sa = sqrt_abar[tb], sb = sqrt_one_minus_abar[tb];
    const bool mirrored = flip[b] != 0;
    const uint8_t* image = images + b * per_image;
    const int64_t row = b * per_image;
    for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < quads;
         q += int64_t(gridDim.x) * blockDim.x) {
      const int64_t e = 4 * q;
      const int count = int(per_image - e < 4 ? per_image - e : 4);
      // (y, x, c) of element e, advanced element by element.
      int64_t y = e / row_elements, x = e % row_elements / channels, c = e % channels;
      float x0[4] = {0, 0, 0, 0};
      for (int k = 0; k < 4; ++k) {  // a fixed trip count keeps the arrays in registers
        if (k >= count) break;
        const int64_t from = y * row_elements + (mirrored ? width - 1 - x : x) * channels + c;
        x0[k] = float(image[from]) / 127.5f - 1.0f;  // ImageDataset::to_float's expression
        if (++c == channels) {
          c = 0;
          if (++x == width) x = 0, ++y;
        }
      }
      const NormalPairF z0 = noise_normal_pair_f(seed, NoisePurpose::training_noise, step,
                                                 uint32_t(b), uint32_t(2 * q));
      const NormalPairF z1 = noise_normal_pair_f(seed, NoisePurpose::training_noise, step,
                                                 uint32_t(b), uint32_t(2 * q + 1));
      const float eps[4] = {z0.even, z0.odd, z1.even, z1.odd};
      float xt[4], tg[4];
      for (int k = 0; k < 4; ++k) {
        xt[k] = sa * x0[k] + sb * eps[k];  // kernels::q_sample's expression
        tg[k] = prediction == PredictionType::epsilon  ? eps[k]
                : prediction == PredictionType::sample ? x0[k]
                                                       : sa * eps[k] - sb * x0[k];
      }
      quad_io::store<kVector>(x_t + row + e, count, xt);
      quad_io::store<kVector>(target + row + e, count, tg);
    }
  }
}

__global__ void record_training_metrics_kernel(const uint32_t* __restrict__ step,
                                               const float* __restrict__ loss,
                                               const float* __restrict__ grad_norm,
                                               TrainingMetrics* __restrict__ ring,
                                               int64_t capacity) {
  const int64_t slot = (int64_t(*step) - 1) % capacity;
  ring[slot] = TrainingMetrics{*loss, *grad_norm};
}

// ---- launch geometry and checks ------------------------------------------------------

dim3 image_grid(int64_t batch, int64_t per_image) {
  const int64_t quads = (per_image + 3) / 4;
  const int64_t per_image_blocks = (quads + kThreads - 1) / kThreads;
  const int64_t wanted = (kTargetBlocks + batch - 1) / batch;
  const int64_t x = per_image_blocks < wanted ? per_image_blocks : wanted;
  return dim3(unsigned(x > 0 ? x : 1), unsigned(batch < kMaxGridY ? batch : kMaxGridY));
}

[[noreturn]] void fail(const char* launcher, const std::string& what) {
  throw std::invalid_argument(std::string("kernels::") + launcher + ": " + what);
}

void check_pointer(const char* launcher, const void* p, const char* name) {
  if (p == nullptr) fail(launcher, std::string(name) + " is null");
}

// Noise keys hold image and element indices as uint32.
void check_config(const char* launcher, const TrainingBatchConfig& c) {
  if (c.batch < 1 || c.batch > int64_t(UINT32_MAX))
    fail(launcher, "batch must be in [1, 2^32), got " + std::to_string(c.batch));
  if (c.height < 1 || c.width < 1 || c.channels < 1)
    fail(launcher, "image shape " + std::to_string(c.height) + "x" + std::to_string(c.width) + "x" +
                       std::to_string(c.channels) + " must be positive");
  if (c.height * c.width * c.channels > int64_t(UINT32_MAX))
    fail(launcher, "images of more than 2^32 elements (a noise key)");
  if (c.num_train_timesteps < 1 || c.num_train_timesteps > INT32_MAX)
    fail(launcher,
         "num_train_timesteps must be in [1, 2^31), got " + std::to_string(c.num_train_timesteps));
  const int p = int(c.prediction);
  if (p < 0 || p > 2) fail(launcher, "unknown prediction type " + std::to_string(p));
}

template <class X>
void launch_prepare(const uint8_t* images, const uint8_t* flip, const int32_t* t,
                    const float* sqrt_abar, const float* sqrt_one_minus_abar, const uint32_t* step,
                    X* x_t, float* target, const TrainingBatchConfig& c, cudaStream_t stream) {
  check_config("prepare_training_batch", c);
  for (auto [p, name] : {std::pair<const void*, const char*>{images, "images"},
                         {flip, "flip"},
                         {t, "t"},
                         {sqrt_abar, "sqrt_abar"},
                         {sqrt_one_minus_abar, "sqrt_one_minus_abar"},
                         {step, "step"},
                         {x_t, "x_t"},
                         {target, "target"}})
    check_pointer("prepare_training_batch", p, name);
  const int64_t per_image = c.height * c.width * c.channels;
  const dim3 grid = image_grid(c.batch, per_image);
  if (per_image % 4 == 0 && aligned16(x_t) && aligned16(target))
    DDPM_LAUNCH((prepare_training_batch_kernel<true, X>), grid, kThreads, 0, stream, images, flip,
                t, sqrt_abar, sqrt_one_minus_abar, step, x_t, target, c.batch, c.width, c.channels,
                per_image, c.seed, c.prediction);
  else
    DDPM_LAUNCH((prepare_training_batch_kernel<false, X>), grid, kThreads, 0, stream, images, flip,
                t, sqrt_abar, sqrt_one_minus_abar, step, x_t, target, c.batch, c.width, c.channels,
                per_image, c.seed, c.prediction);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

// ---- launchers --------------------------------------------------------------------

void begin_training_step(uint32_t* step, int32_t* t, float* timesteps, uint8_t* flip,
                         const TrainingBatchConfig& c, cudaStream_t stream) {
  check_config("begin_training_step", c);
  for (auto [p, name] : {std::pair<const void*, const char*>{step, "step"},
                         {t, "t"},
                         {timesteps, "timesteps"},
                         {flip, "flip"}})
    check_pointer("begin_training_step", p, name);
  DDPM_LAUNCH(begin_training_step_kernel, 1, kBeginThreads, 0, stream, step, t, timesteps, flip,
              c.batch, c.seed, c.num_train_timesteps, c.random_flip);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void prepare_training_batch(const uint8_t* images, const uint8_t* flip, const int32_t* t,
                            const float* sqrt_abar, const float* sqrt_one_minus_abar,
                            const uint32_t* step, float* x_t, float* target,
                            const TrainingBatchConfig& c, cudaStream_t stream) {
  launch_prepare(images, flip, t, sqrt_abar, sqrt_one_minus_abar, step, x_t, target, c, stream);
}

void prepare_training_batch(const uint8_t* images, const uint8_t* flip, const int32_t* t,
                            const float* sqrt_abar, const float* sqrt_one_minus_abar,
                            const uint32_t* step, __nv_bfloat16* x_t, float* target,
                            const TrainingBatchConfig& c, cudaStream_t stream) {
  launch_prepare(images, flip, t, sqrt_abar, sqrt_one_minus_abar, step, x_t, target, c, stream);
}

void record_training_metrics(const uint32_t* step, const float* loss, const float* grad_norm,
                             TrainingMetrics* ring, int64_t capacity, cudaStream_t stream) {
  if (capacity < 1) fail("record_training_metrics", "capacity must be >= 1");
  for (auto [p, name] : {std::pair<const void*, const char*>{step, "step"},
                         {loss, "loss"},
                         {grad_norm, "grad_norm"},
                         {ring, "ring"}})
    check_pointer("record_training_metrics", p, name);
  DDPM_LAUNCH(record_training_metrics_kernel, 1, 1, 0, stream, step, loss, grad_norm, ring,
              capacity);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ddpm::kernels
