// The optimizer step over the flat parameter buffer: the global gradient norm
// and AdamW fused with global-norm clipping and the EMA update. Contracts in
// optimizer.cuh; the reference is engine/cpu/optimizer.h.
//
// grad_norm: two kernels. The first runs norm_blocks(n) blocks of 256 threads
// (a function of n only: ceil(n / 1024) up to 528 blocks), each thread summing
// g^2 over a grid-stride range in double (exact squares, fixed order), the
// block reducing by a fixed shuffle tree into partials[block]; the second, one
// block, sums the partials in a fixed order and writes sqrt as float. No
// atomics: bitwise reproducible. Reads 4 B per element.
//
// adamw_ema_step: one grid-stride pass. Thread 0 of each block derives the
// step's scalars (warmup lr, bias corrections, clip factor, the EMA decay of
// engine/ema_schedule.h) in double
// from *step and *norm, exactly as the CPU reference does from its doubles,
// and shares them through shared memory; every element then runs the CPU's
// float formula.
// Per element: read param, grad, m, v (+ ema) = 16 (20) B, write param, m, v
// (+ ema) = 12 (16) B: 28 B, 36 B with EMA, once each.
//
// Grids: at most 132 SMs x 4 blocks of 256 threads, one wave on an H100 / H200
// (up to 48 registers here, so 5 blocks fit per SM; 8 would leave a second,
// partial wave that costs ~25% on equal grid-stride shares); 1024 threads per
// SM with 4-5 independent 16-byte loads each keep ~64 KB in flight per SM,
// several times bandwidth x latency.
//
// Both use 128-bit loads / stores when every pointer is 16-byte aligned (the
// flat buffers are), n / 4 float4s and a scalar tail of n % 4; otherwise
// scalar throughout. The optional bf16 copy of the parameters (issue 11) adds
// a 2 B store per element (8 B per float4, so it needs 8-byte alignment for
// the vector path), rounded to nearest even from the fp32 result.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/bf16_io.cuh"
#include "kernels/block_reduce.cuh"
#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "kernels/optimizer.cuh"
#include "kernels/vector_io.cuh"

namespace ddpm::kernels {

namespace {

constexpr int kThreads = 256;
#ifdef DDPM_CUDA_EMULATION
// The emulated tests' small sizes would each take one pass of the grid-stride
// loops with the GPU's grid; a tiny grid makes them take several.
constexpr int64_t kNormMaxBlocks = 4, kAdamMaxBlocks = 4;
#else
constexpr int64_t kNormMaxBlocks = 132 * 4, kAdamMaxBlocks = 132 * 4;
#endif

__device__ inline double square(float g) {
  return double(g) * double(g);
}  // exact

template <bool kVector>
__global__ void __launch_bounds__(kThreads)
    sum_of_squares_partial_kernel(const float* __restrict__ grad, int64_t n,
                                  double* __restrict__ partials) {
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  double sum = 0;
  int64_t scalar_from = 0;
  if constexpr (kVector) {
    const auto* g4 = reinterpret_cast<const float4*>(grad);
    for (int64_t i = first; i < n / 4; i += stride) {
      const float4 g = g4[i];
      sum += square(g.x) + square(g.y) + square(g.z) + square(g.w);
    }
    scalar_from = n / 4 * 4;
  }
  for (int64_t i = scalar_from + first; i < n; i += stride) sum += square(grad[i]);
  sum = block_sum<kThreads>(sum);
  if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

__global__ void __launch_bounds__(kThreads)
    sqrt_of_partials_kernel(const double* __restrict__ partials, int64_t count,
                            float* __restrict__ norm) {
  double sum = 0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) sum += partials[i];
  sum = block_sum<kThreads>(sum);
  if (threadIdx.x == 0) norm[0] = float(sqrt(sum));
}

// The step's scalars, as engine/cpu/optimizer.cpp (adamw_step, ema_update) and
// the trainer derive them in double, rounded to float.
struct AdamWScalars {
  float grad_scale, decay, step_size, beta1, one_minus_beta1, beta2, one_minus_beta2, sqrt_bc2, eps,
      ema_one_minus;
};

__device__ inline AdamWScalars adamw_scalars(const AdamWEmaConfig& c, uint32_t step,
                                             const float* norm) {
  const double s = double(step);
  const double warm = c.warmup_steps > 0 ? fmin(1.0, s / double(c.warmup_steps)) : 1.0;
  const double lr = double(c.lr) * warm;
  const double bc1 = 1 - pow(double(c.beta1), s), bc2 = 1 - pow(double(c.beta2), s);
  const double clip =
      c.clip_norm > 0 ? fmin(1.0, double(c.clip_norm) / (double(*norm) + 1e-6)) : 1.0;
  AdamWScalars k;
  k.grad_scale = float(clip);
  k.decay = float(1 - lr * double(c.weight_decay));
  k.step_size = float(lr / bc1);
  k.beta1 = float(c.beta1);
  k.one_minus_beta1 = float(1 - c.beta1);
  k.beta2 = float(c.beta2);
  k.one_minus_beta2 = float(1 - c.beta2);
  k.sqrt_bc2 = float(sqrt(bc2));
  k.eps = float(c.eps);
  k.ema_one_minus = float(1 - ema_decay_at(c.ema, int64_t(step)));
  return k;
}

// One element, in the CPU reference's order of float operations.
struct AdamWElement {
  float param, m, v, ema;
};

__device__ inline AdamWElement adamw_element(const AdamWScalars& k, float param, float grad,
                                             float m, float v, float ema) {
  const float g = grad * k.grad_scale;
  param *= k.decay;
  m = k.beta1 * m + k.one_minus_beta1 * g;
  v = k.beta2 * v + k.one_minus_beta2 * g * g;
  param -= k.step_size * m / (sqrtf(v) / k.sqrt_bc2 + k.eps);
  // diffusers' order, not contracted into an FMA: bitwise the CPU's update.
  ema = __fsub_rn(ema, __fmul_rn(k.ema_one_minus, __fsub_rn(ema, param)));
  return AdamWElement{param, m, v, ema};
}

template <bool kVector>
__global__ void __launch_bounds__(kThreads)
    adamw_ema_kernel(float* __restrict__ param, const float* __restrict__ grad,
                     float* __restrict__ m, float* __restrict__ v, float* __restrict__ ema,
                     int64_t n, const uint32_t* __restrict__ step, const float* __restrict__ norm,
                     AdamWEmaConfig c, __nv_bfloat16* __restrict__ params_bf16) {
  __shared__ AdamWScalars shared_scalars;
  if (threadIdx.x == 0) shared_scalars = adamw_scalars(c, *step, norm);
  __syncthreads();
  // A non-finite gradient norm (a NaN or inf gradient): nothing changes, so
  // the state stays the last good one while the trainer stops the run.
  if (norm != nullptr && !isfinite(*norm)) return;
  const AdamWScalars k = shared_scalars;
  const bool with_ema = ema != nullptr;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  int64_t scalar_from = 0;
  if constexpr (kVector) {
    auto* p4 = reinterpret_cast<float4*>(param);
    const auto* g4 = reinterpret_cast<const float4*>(grad);
    auto* m4 = reinterpret_cast<float4*>(m);
    auto* v4 = reinterpret_cast<float4*>(v);
    auto* e4 = reinterpret_cast<float4*>(ema);
    for (int64_t i = first; i < n / 4; i += stride) {
      const float4 p = p4[i], g = g4[i], mi = m4[i], vi = v4[i];
      const float4 e = with_ema ? e4[i] : make_float4(0, 0, 0, 0);
      const AdamWElement a = adamw_element(k, p.x, g.x, mi.x, vi.x, e.x);
      const AdamWElement b = adamw_element(k, p.y, g.y, mi.y, vi.y, e.y);
      const AdamWElement cc = adamw_element(k, p.z, g.z, mi.z, vi.z, e.z);
      const AdamWElement d = adamw_element(k, p.w, g.w, mi.w, vi.w, e.w);
      p4[i] = make_float4(a.param, b.param, cc.param, d.param);
      m4[i] = make_float4(a.m, b.m, cc.m, d.m);
      v4[i] = make_float4(a.v, b.v, cc.v, d.v);
      if (with_ema) e4[i] = make_float4(a.ema, b.ema, cc.ema, d.ema);
      if (params_bf16)
        reinterpret_cast<uint2*>(params_bf16)[i] =
            make_uint2(mma::pack_bf16x2(a.param, b.param), mma::pack_bf16x2(cc.param, d.param));
    }
    scalar_from = n / 4 * 4;
  }
  for (int64_t i = scalar_from + first; i < n; i += stride) {
    const AdamWElement a =
        adamw_element(k, param[i], grad[i], m[i], v[i], with_ema ? ema[i] : 0.0f);
    param[i] = a.param;
    m[i] = a.m;
    v[i] = a.v;
    if (with_ema) ema[i] = a.ema;
    if (params_bf16) params_bf16[i] = bf16io::from_float<__nv_bfloat16>(a.param);
  }
}

int64_t norm_blocks(int64_t n) {
  const int64_t b = (n + 4 * kThreads - 1) / (4 * kThreads);
  return b < 1 ? 1 : b < kNormMaxBlocks ? b : kNormMaxBlocks;
}

[[noreturn]] void fail(const char* launcher, const std::string& what) {
  throw std::invalid_argument(std::string("kernels::") + launcher + ": " + what);
}

}  // namespace

size_t grad_norm_workspace_bytes(int64_t n) {
  if (n < 0) fail("grad_norm_workspace_bytes", "n must be >= 0, got " + std::to_string(n));
  return n == 0 ? 0 : size_t(norm_blocks(n)) * sizeof(double);
}

void grad_norm(const float* grad, int64_t n, float* norm, void* workspace, cudaStream_t stream) {
  if (n < 0) fail("grad_norm", "n must be >= 0, got " + std::to_string(n));
  if (norm == nullptr) fail("grad_norm", "norm is null");
  if (n == 0) {  // the norm of nothing is 0 (all-zero bytes)
    DDPM_CUDA_CHECK(cudaMemsetAsync(norm, 0, sizeof(float), stream));
    return;
  }
  if (grad == nullptr) fail("grad_norm", "grad is null");
  if (workspace == nullptr) fail("grad_norm", "workspace is null");
  if (reinterpret_cast<uintptr_t>(workspace) % alignof(double) != 0)
    fail("grad_norm", "workspace must be 8-byte aligned");
  auto* partials = static_cast<double*>(workspace);
  const int64_t blocks = norm_blocks(n);
  if (aligned16(grad))
    DDPM_LAUNCH(sum_of_squares_partial_kernel<true>, int(blocks), kThreads, 0, stream, grad, n,
                partials);
  else
    DDPM_LAUNCH(sum_of_squares_partial_kernel<false>, int(blocks), kThreads, 0, stream, grad, n,
                partials);
  DDPM_CUDA_CHECK(cudaGetLastError());
  DDPM_LAUNCH(sqrt_of_partials_kernel, 1, kThreads, 0, stream, partials, blocks, norm);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void adamw_ema_step(float* param, const float* grad, float* m, float* v, float* ema, int64_t n,
                    const uint32_t* step, const float* norm, const AdamWEmaConfig& c,
                    cudaStream_t stream, __nv_bfloat16* params_bf16) {
  if (n < 0) fail("adamw_ema_step", "n must be >= 0, got " + std::to_string(n));
  if (n == 0) return;
  if (!param || !grad || !m || !v || !step)
    fail("adamw_ema_step", "param, grad, m, v and step must not be null");
  if (c.clip_norm > 0 && norm == nullptr)
    fail("adamw_ema_step", "clip_norm " + std::to_string(c.clip_norm) + " > 0 needs norm");
  if (c.warmup_steps < 0)
    fail("adamw_ema_step", "warmup_steps must be >= 0, got " + std::to_string(c.warmup_steps));
  if (!(c.beta1 >= 0 && c.beta1 < 1) || !(c.beta2 >= 0 && c.beta2 < 1))
    fail("adamw_ema_step", "beta1 " + std::to_string(c.beta1) + " and beta2 " +
                               std::to_string(c.beta2) + " must be in [0, 1)");
  const int64_t wanted = (n / 4 + kThreads - 1) / kThreads;
  const int64_t blocks = wanted < 1 ? 1 : wanted < kAdamMaxBlocks ? wanted : kAdamMaxBlocks;
  const bool vector = aligned16(param) && aligned16(grad) && aligned16(m) && aligned16(v) &&
                      (ema == nullptr || aligned16(ema)) &&
                      reinterpret_cast<uintptr_t>(params_bf16) % 8 == 0;
  if (vector)
    DDPM_LAUNCH(adamw_ema_kernel<true>, int(blocks), kThreads, 0, stream, param, grad, m, v, ema, n,
                step, norm, c, params_bf16);
  else
    DDPM_LAUNCH(adamw_ema_kernel<false>, int(blocks), kThreads, 0, stream, param, grad, m, v, ema,
                n, step, norm, c, params_bf16);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ddpm::kernels
