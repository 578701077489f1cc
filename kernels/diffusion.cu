// DDPM's per-element kernels: the forward process (q_sample), the loss against
// the target it implies (diffusion_mse), and the reverse process of sampling
// (initial_noise, start_sampling, noise_update, advance_sampling_step).
// Contracts in diffusion.cuh.
//
// Layout: x, x0, pred, model_out are [batch, per_image] (one NHWC image per
// row). Noise of element e of image b comes from engine/noise.h's float
// Box-Muller (noise_normal_pair_f): one Philox block gives elements 2k and
// 2k+1, so a thread owns a quad, elements 4q..4q+3 of one image (two blocks),
// and loads / stores it as one float4 when per_image % 4 == 0 and every
// pointer is 16-byte aligned (kVector), else element by element (the last
// quad of an image may be short). noise_update_bf16 is noise_update's kernel
// with model_out stored as bf16 (widened exactly, so x is bitwise
// noise_update's on the widened values) and a second, bf16 store of the new x
// (quad_io.cuh: a bf16 quad is one 8-byte access).
//
// Grid: blockIdx.y strides over images (table entries read once per image and
// block), blockIdx.x * blockDim.x + threadIdx.x over an image's quads; grid.x
// is chosen so that about kTargetBlocks blocks of 256 threads exist in all,
// fewer when the images are small: 132 SMs x 4, one wave on an H100 / H200
// (these kernels use 32-47 registers, so 5-6 blocks of 256 fit per SM; 8 per
// SM would make a second, partial wave that costs ~25% on equal grid-stride
// shares). The grid depends on (batch, per_image) only, so the loss
// partition, and hence the loss, is the same on every run and device.
//
// Memory traffic per element (fp32), tables and step coefficients aside:
//   q_sample       read x0, write x_t                          8 B
//   diffusion_mse  read pred, write dpred, + read x0 unless     8 / 12 B
//                  epsilon (sample skips the noise entirely)
//   noise_update   read x and model_out, write x (in place)    12 B
//                  (bf16: model_out 2 B, + 2 B for x_model_input: 12 B)
//   initial_noise  write x                                      4 B
// Compute: Philox4x32-10 (10 rounds) per 2 elements plus logf, sqrtf, sinf,
// cosf: ~70 instructions per element, on the order of the 8-12 B of DRAM
// traffic an H100 moves in the same time, so these kernels sit near the ridge.
// The loss is a two-stage reduction: each block sums its squared errors in
// double (fixed per-thread order, then a fixed warp-shuffle tree) into
// partials[block]; one block of a second kernel sums the partials in a fixed
// order. No atomics, so the loss is bitwise reproducible.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "engine/noise.h"
#include "kernels/block_reduce.cuh"
#include "kernels/check.cuh"
#include "kernels/diffusion.cuh"
#include "kernels/emulation/launch.h"
#include "kernels/quad_io.cuh"
#include "kernels/vector_io.cuh"

namespace ddpm::kernels {

namespace {

constexpr int kThreads = 256;
#ifdef DDPM_CUDA_EMULATION
// The emulated tests' small sizes would each take one pass of the grid-stride
// loops with the GPU's grid; a tiny grid makes them take several.
constexpr int64_t kTargetBlocks = 2, kMaxGridY = 2;
#else
constexpr int64_t kTargetBlocks = 132 * 4, kMaxGridY = 65535;
#endif

// ---- quads of one image -------------------------------------------------------------

// A quad of float or bf16 storage (quad_io.cuh): one access when kVector,
// else element by element (elements past count read as 0, not written).
template <bool kVector, class T>
__device__ inline void load_quad(const T* __restrict__ p, int count, float (&v)[4]) {
  quad_io::load<kVector>(p, count, v);
}

template <bool kVector, class T>
__device__ inline void store_quad(T* __restrict__ p, int count, const float (&v)[4]) {
  quad_io::store<kVector>(p, count, v);
}

// The normals of elements 4q..4q+3 of `image`.
__device__ inline void draw_quad(uint64_t seed, NoisePurpose purpose, uint32_t step, uint32_t image,
                                 int64_t q, float z[4]) {
  const NormalPairF a = noise_normal_pair_f(seed, purpose, step, image, uint32_t(2 * q));
  const NormalPairF b = noise_normal_pair_f(seed, purpose, step, image, uint32_t(2 * q + 1));
  z[0] = a.even, z[1] = a.odd, z[2] = b.even, z[3] = b.odd;
}

// ---- kernels ----------------------------------------------------------------------

template <bool kVector>
__global__ void __launch_bounds__(kThreads)
    q_sample_kernel(const float* __restrict__ x0, const int32_t* __restrict__ t,
                    const float* __restrict__ sqrt_abar,
                    const float* __restrict__ sqrt_one_minus_abar,
                    const uint32_t* __restrict__ step_ptr, float* __restrict__ x_t, int64_t batch,
                    int64_t per_image, uint64_t seed) {
  const uint32_t step = *step_ptr;
  const int64_t quads = (per_image + 3) / 4;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const int32_t tb = t[b];
    const float sa = sqrt_abar[tb], sb = sqrt_one_minus_abar[tb];
    const int64_t row = b * per_image;
    for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < quads;
         q += int64_t(gridDim.x) * blockDim.x) {
      const int64_t e = 4 * q;
      const int count = int(per_image - e < 4 ? per_image - e : 4);
      float x[4], eps[4], y[4];
      load_quad<kVector>(x0 + row + e, count, x);
      draw_quad(seed, NoisePurpose::training_noise, step, uint32_t(b), q, eps);
      for (int k = 0; k < 4; ++k) y[k] = sa * x[k] + sb * eps[k];
      store_quad<kVector>(x_t + row + e, count, y);
    }
  }
}

template <bool kVector>
__global__ void __launch_bounds__(kThreads)
    diffusion_mse_partial_kernel(const float* __restrict__ pred, const float* __restrict__ x0,
                                 const int32_t* __restrict__ t, const float* __restrict__ sqrt_abar,
                                 const float* __restrict__ sqrt_one_minus_abar,
                                 const uint32_t* __restrict__ step_ptr, float* __restrict__ dpred,
                                 double* __restrict__ partials, int64_t batch, int64_t per_image,
                                 uint64_t seed, PredictionType prediction, float grad_scale) {
  const uint32_t step = *step_ptr;
  const int64_t quads = (per_image + 3) / 4;
  const bool needs_x0 = prediction != PredictionType::epsilon;
  const bool needs_eps = prediction != PredictionType::sample;
  double sum = 0;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const int32_t tb = t[b];
    const float sa = sqrt_abar[tb], sb = sqrt_one_minus_abar[tb];
    const int64_t row = b * per_image;
    for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < quads;
         q += int64_t(gridDim.x) * blockDim.x) {
      const int64_t e = 4 * q;
      const int count = int(per_image - e < 4 ? per_image - e : 4);
      float p[4], x[4] = {0, 0, 0, 0}, eps[4] = {0, 0, 0, 0}, g[4];
      load_quad<kVector>(pred + row + e, count, p);
      if (needs_x0) load_quad<kVector>(x0 + row + e, count, x);
      if (needs_eps) draw_quad(seed, NoisePurpose::training_noise, step, uint32_t(b), q, eps);
      for (int k = 0; k < 4; ++k) {
        const float target = prediction == PredictionType::epsilon  ? eps[k]
                             : prediction == PredictionType::sample ? x[k]
                                                                    : sa * eps[k] - sb * x[k];
        const float d = p[k] - target;
        if (k < count) sum += double(d) * double(d);
        g[k] = grad_scale * d;
      }
      store_quad<kVector>(dpred + row + e, count, g);
    }
  }
  sum = block_sum<kThreads>(sum);
  if (threadIdx.x == 0) partials[blockIdx.y * gridDim.x + blockIdx.x] = sum;
}

// One block: loss[0] = (sum of the partials, in index order per thread) / n.
__global__ void __launch_bounds__(kThreads)
    mean_of_partials_kernel(const double* __restrict__ partials, int64_t count, double n,
                            float* __restrict__ loss) {
  double sum = 0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) sum += partials[i];
  sum = block_sum<kThreads>(sum);
  if (threadIdx.x == 0) loss[0] = float(sum / n);
}

template <bool kVector>
__global__ void __launch_bounds__(kThreads)
    initial_noise_kernel(const SamplingState* __restrict__ state, float* __restrict__ x,
                         int64_t batch, int64_t per_image) {
  const uint64_t seed = state->seed;
  const uint32_t first_image = state->first_image;
  const int64_t quads = (per_image + 3) / 4;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const int64_t row = b * per_image;
    for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < quads;
         q += int64_t(gridDim.x) * blockDim.x) {
      const int64_t e = 4 * q;
      const int count = int(per_image - e < 4 ? per_image - e : 4);
      float z[4];
      draw_quad(seed, NoisePurpose::initial_sample, 0, first_image + uint32_t(b), q, z);
      store_quad<kVector>(x + row + e, count, z);
    }
  }
}

// M: model_out's storage (float, or __nv_bfloat16 widened exactly). When
// x_model_input is not null, the new x is also stored there as bf16 (the next
// step's model input).
template <bool kVector, class M>
__global__ void __launch_bounds__(kThreads)
    noise_update_kernel(const NoiseUpdateStep* __restrict__ steps,
                        const SamplingState* __restrict__ state, const M* __restrict__ model_out,
                        float* __restrict__ x, __nv_bfloat16* __restrict__ x_model_input,
                        int64_t batch, int64_t per_image) {
  const uint64_t seed = state->seed;
  const uint32_t index = state->step_index, first_image = state->first_image;
  const NoiseUpdateStep k = steps[index];
  const bool noisy = k.sigma != 0.0f;
  const int64_t quads = (per_image + 3) / 4;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const int64_t row = b * per_image;
    for (int64_t q = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; q < quads;
         q += int64_t(gridDim.x) * blockDim.x) {
      const int64_t e = 4 * q;
      const int count = int(per_image - e < 4 ? per_image - e : 4);
      float xv[4], m[4], z[4] = {0, 0, 0, 0}, y[4];
      load_quad<kVector>(x + row + e, count, xv);
      load_quad<kVector>(model_out + row + e, count, m);
      if (noisy) draw_quad(seed, NoisePurpose::step_noise, index, first_image + uint32_t(b), q, z);
      for (int j = 0; j < 4; ++j) {
        // The order of engine/scheduler.cpp's noise_update<float>.
        float x0 = k.x0_from_x * xv[j] + k.x0_from_model * m[j];
        if (k.clip) x0 = fminf(fmaxf(x0, -k.clip_range), k.clip_range);
        float prev = k.prev_from_x0 * x0 + k.prev_from_x * xv[j] + k.prev_from_model * m[j];
        if (noisy) prev += k.sigma * z[j];
        y[j] = prev;
      }
      store_quad<kVector>(x + row + e, count, y);
      if (x_model_input) store_quad<kVector>(x_model_input + row + e, count, y);
    }
  }
}

// One block: a run's first timestep, the index reset.
__global__ void start_sampling_kernel(const NoiseUpdateStep* __restrict__ steps,
                                      SamplingState* __restrict__ state,
                                      float* __restrict__ timesteps, int64_t batch) {
  if (threadIdx.x == 0) state->step_index = 0;
  const float ts = float(steps[0].timestep);
  for (int64_t b = threadIdx.x; b < batch; b += blockDim.x) timesteps[b] = ts;
}

// One block. Every thread reads the index before thread 0 replaces it. kLoop:
// the kernel is the last of a WHILE node's body and ends the loop after the
// last step (one thread: concurrent cudaGraphSetConditional calls are
// undefined behaviour).
template <bool kLoop>
__global__ void advance_sampling_step_kernel(const NoiseUpdateStep* __restrict__ steps,
                                             SamplingState* __restrict__ state,
                                             float* __restrict__ timesteps, int64_t batch,
                                             cudaGraphConditionalHandle loop) {
  const uint32_t next = state->step_index + 1, num_steps = state->num_steps;
  __syncthreads();
  if (threadIdx.x == 0) state->step_index = next;
  if (next < num_steps) {
    const float ts = float(steps[next].timestep);
    for (int64_t b = threadIdx.x; b < batch; b += blockDim.x) timesteps[b] = ts;
  } else if (kLoop && threadIdx.x == 0) {
    cudaGraphSetConditional(loop, 0);
  }
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

// Noise keys hold image and element indices as uint32.
void check_shape(const char* launcher, int64_t batch, int64_t per_image, int64_t first_image = 0) {
  if (batch < 0) fail(launcher, "batch must be >= 0, got " + std::to_string(batch));
  if (per_image < 0) fail(launcher, "per_image must be >= 0, got " + std::to_string(per_image));
  if (per_image > int64_t(UINT32_MAX))
    fail(launcher, "per_image must be < 2^32 (a noise key), got " + std::to_string(per_image));
  if (first_image < 0 || first_image + batch > int64_t(UINT32_MAX) + 1)
    fail(launcher, "images [" + std::to_string(first_image) + ", " +
                       std::to_string(first_image + batch) + ") must lie in [0, 2^32)");
}

void check_pointer(const char* launcher, const void* p, const char* name) {
  if (p == nullptr) fail(launcher, std::string(name) + " is null");
}

// Up to 256 threads, whole warps: a sampling batch is at most a few thousand images.
int timestep_threads(int64_t batch) {
  const int64_t threads = batch < kThreads ? ((batch + 31) / 32) * 32 : kThreads;
  return int(threads > 0 ? threads : 32);
}

template <class M>
void launch_noise_update(const char* who, const NoiseUpdateStep* steps, const SamplingState* state,
                         const M* model_out, float* x, __nv_bfloat16* x_model_input, int64_t batch,
                         int64_t per_image, cudaStream_t stream) {
  check_shape(who, batch, per_image);
  if (batch == 0 || per_image == 0) return;
  for (auto [p, name] : {std::pair<const void*, const char*>{steps, "steps"},
                         {state, "state"},
                         {model_out, "model_out"},
                         {x, "x"}})
    check_pointer(who, p, name);
  const dim3 grid = image_grid(batch, per_image);
  if (per_image % 4 == 0 && all_aligned16(x, model_out, x_model_input))
    DDPM_LAUNCH((noise_update_kernel<true, M>), grid, kThreads, 0, stream, steps, state, model_out,
                x, x_model_input, batch, per_image);
  else
    DDPM_LAUNCH((noise_update_kernel<false, M>), grid, kThreads, 0, stream, steps, state, model_out,
                x, x_model_input, batch, per_image);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

// ---- launchers --------------------------------------------------------------------

void q_sample(const float* x0, const int32_t* t, const float* sqrt_abar,
              const float* sqrt_one_minus_abar, const uint32_t* step, float* x_t,
              const DiffusionBatch& b, cudaStream_t stream) {
  check_shape("q_sample", b.batch, b.per_image);
  if (b.batch == 0 || b.per_image == 0) return;
  for (auto [p, name] : {std::pair<const void*, const char*>{x0, "x0"},
                         {t, "t"},
                         {sqrt_abar, "sqrt_abar"},
                         {sqrt_one_minus_abar, "sqrt_one_minus_abar"},
                         {step, "step"},
                         {x_t, "x_t"}})
    check_pointer("q_sample", p, name);
  const dim3 grid = image_grid(b.batch, b.per_image);
  if (b.per_image % 4 == 0 && aligned16(x0) && aligned16(x_t))
    DDPM_LAUNCH(q_sample_kernel<true>, grid, kThreads, 0, stream, x0, t, sqrt_abar,
                sqrt_one_minus_abar, step, x_t, b.batch, b.per_image, b.seed);
  else
    DDPM_LAUNCH(q_sample_kernel<false>, grid, kThreads, 0, stream, x0, t, sqrt_abar,
                sqrt_one_minus_abar, step, x_t, b.batch, b.per_image, b.seed);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

size_t diffusion_mse_workspace_bytes(const DiffusionBatch& b) {
  check_shape("diffusion_mse_workspace_bytes", b.batch, b.per_image);
  if (b.batch == 0 || b.per_image == 0) return 0;
  const dim3 grid = image_grid(b.batch, b.per_image);
  return size_t(grid.x) * grid.y * sizeof(double);
}

void diffusion_mse(const float* pred, const float* x0, const int32_t* t, const float* sqrt_abar,
                   const float* sqrt_one_minus_abar, const uint32_t* step, float* loss,
                   float* dpred, const DiffusionBatch& b, void* workspace, cudaStream_t stream) {
  check_shape("diffusion_mse", b.batch, b.per_image);
  if (b.batch == 0 || b.per_image == 0)
    fail("diffusion_mse", "empty batch (" + std::to_string(b.batch) + " x " +
                              std::to_string(b.per_image) + "): the mean of no elements");
  const int p = int(b.prediction);
  if (p < 0 || p > 2) fail("diffusion_mse", "unknown prediction type " + std::to_string(p));
  for (auto [ptr, name] : {std::pair<const void*, const char*>{pred, "pred"},
                           {x0, "x0"},
                           {t, "t"},
                           {sqrt_abar, "sqrt_abar"},
                           {sqrt_one_minus_abar, "sqrt_one_minus_abar"},
                           {step, "step"},
                           {loss, "loss"},
                           {dpred, "dpred"},
                           {workspace, "workspace"}})
    check_pointer("diffusion_mse", ptr, name);
  if (reinterpret_cast<uintptr_t>(workspace) % alignof(double) != 0)
    fail("diffusion_mse", "workspace must be 8-byte aligned");
  const dim3 grid = image_grid(b.batch, b.per_image);
  const int64_t n = b.batch * b.per_image;
  const float grad_scale = 2.0f / float(n);  // as the CPU backward: T(2) / T(n)
  auto* partials = static_cast<double*>(workspace);
  const bool vector = b.per_image % 4 == 0 && aligned16(pred) && aligned16(dpred) &&
                      (b.prediction == PredictionType::epsilon || aligned16(x0));
  if (vector)
    DDPM_LAUNCH(diffusion_mse_partial_kernel<true>, grid, kThreads, 0, stream, pred, x0, t,
                sqrt_abar, sqrt_one_minus_abar, step, dpred, partials, b.batch, b.per_image, b.seed,
                b.prediction, grad_scale);
  else
    DDPM_LAUNCH(diffusion_mse_partial_kernel<false>, grid, kThreads, 0, stream, pred, x0, t,
                sqrt_abar, sqrt_one_minus_abar, step, dpred, partials, b.batch, b.per_image, b.seed,
                b.prediction, grad_scale);
  DDPM_CUDA_CHECK(cudaGetLastError());
  DDPM_LAUNCH(mean_of_partials_kernel, 1, kThreads, 0, stream, partials, int64_t(grid.x) * grid.y,
              double(n), loss);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void initial_noise(const SamplingState* state, float* x, int64_t batch, int64_t per_image,
                   cudaStream_t stream) {
  check_shape("initial_noise", batch, per_image);
  if (batch == 0 || per_image == 0) return;
  check_pointer("initial_noise", state, "state");
  check_pointer("initial_noise", x, "x");
  const dim3 grid = image_grid(batch, per_image);
  if (per_image % 4 == 0 && aligned16(x))
    DDPM_LAUNCH(initial_noise_kernel<true>, grid, kThreads, 0, stream, state, x, batch, per_image);
  else
    DDPM_LAUNCH(initial_noise_kernel<false>, grid, kThreads, 0, stream, state, x, batch, per_image);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void start_sampling(const NoiseUpdateStep* steps, SamplingState* state, float* timesteps,
                    int64_t batch, cudaStream_t stream) {
  if (batch < 0) fail("start_sampling", "batch must be >= 0, got " + std::to_string(batch));
  check_pointer("start_sampling", steps, "steps");
  check_pointer("start_sampling", state, "state");
  if (batch > 0) check_pointer("start_sampling", timesteps, "timesteps");
  DDPM_LAUNCH(start_sampling_kernel, 1, timestep_threads(batch), 0, stream, steps, state, timesteps,
              batch);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void noise_update(const NoiseUpdateStep* steps, const SamplingState* state, const float* model_out,
                  float* x, int64_t batch, int64_t per_image, cudaStream_t stream) {
  launch_noise_update("noise_update", steps, state, model_out, x, nullptr, batch, per_image,
                      stream);
}

void noise_update_bf16(const NoiseUpdateStep* steps, const SamplingState* state,
                       const __nv_bfloat16* model_out, float* x, __nv_bfloat16* x_model_input,
                       int64_t batch, int64_t per_image, cudaStream_t stream) {
  launch_noise_update("noise_update_bf16", steps, state, model_out, x, x_model_input, batch,
                      per_image, stream);
}

void advance_sampling_step(const NoiseUpdateStep* steps, SamplingState* state, float* timesteps,
                           int64_t batch, std::optional<cudaGraphConditionalHandle> loop,
                           cudaStream_t stream) {
  if (batch < 0) fail("advance_sampling_step", "batch must be >= 0, got " + std::to_string(batch));
  check_pointer("advance_sampling_step", steps, "steps");
  check_pointer("advance_sampling_step", state, "state");
  if (batch > 0) check_pointer("advance_sampling_step", timesteps, "timesteps");
  const int threads = timestep_threads(batch);
  if (loop)
    DDPM_LAUNCH(advance_sampling_step_kernel<true>, 1, threads, 0, stream, steps, state, timesteps,
                batch, *loop);
  else
    DDPM_LAUNCH(advance_sampling_step_kernel<false>, 1, threads, 0, stream, steps, state, timesteps,
                batch, cudaGraphConditionalHandle{});
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ddpm::kernels
