// Dropout forward and backward (contract: dropout.cuh).
//
// Design
//   - One kernel serves both directions: out (= or +=) mask(i) * scale * in,
//     in = x, out = y forward; in = dy, out = dx backward. The mask is
//     recomputed from Philox (engine/random.h, shared with the CPU backend)
//     rather than stored: no mask tensor to write in forward and read in
//     backward, and a step replays identically.
//   - Work unit: a quad, elements 4q..4q+3, which one Philox4x32-10 block
//     covers (counter word 0/1 = q, word 2 = salt, word 3 = step; key = seed):
//     one Philox call per thread per unit, lane k of the block for element
//     4q + k, as on the CPU. A 1-D grid-stride loop of 256-thread blocks,
//     consecutive threads on consecutive quads (coalesced), at most one wave
//     of resident blocks (vector_io.cuh's grid_stride_blocks).
//   - A quad is one 128-bit load and store when the pointers are 16-byte
//     aligned and the quad is whole; the last, short quad of n % 4 elements
//     (or every quad, unaligned) goes element by element.
//   - Keep test in integers: uniform_from_bits(b) = (b >> 8) 2^-24 is exact,
//     so u >= p  <=>  (b >> 8) >= ceil(p 2^24) (p 2^24 is exact in double):
//     the same decision as the CPU's double comparison, without doubles on
//     the GPU. A kept element is in * float(1 / (1 - p)) with the product
//     rounded on its own (__fmul_rn: no contraction into the accumulating
//     add), so results equal the CPU backend's f32 op bit for bit.
//   - p == 0 (inference, or no dropout) skips Philox: a copy or an add.
//   - The bf16 twins are the same kernel with bf16 storage (quad_io.cuh: a
//     quad is one 8-byte access): the mask and the fp32 product are the fp32
//     kernel's, the accumulating add is fp32 on the widened prior, and each
//     output is rounded to bf16 once. So bf16 out = bf16(the fp32 kernel's
//     out on the widened inputs), bit for bit.
//
// Cost per element: 8 B (12 B accumulating) of DRAM traffic (bf16: 4 B, 6 B);
// Philox is ten rounds of two 32x32->64 multiplies and a few XORs per 4
// elements, ~20 integer instructions per element, well under what an H100
// issues in the time its DRAM moves 8 B, so the kernel stays memory-bound.
#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/random.h"
#include "kernels/bf16_io.cuh"
#include "kernels/check.cuh"
#include "kernels/dropout.cuh"
#include "kernels/emulation/launch.h"
#include "kernels/quad_io.cuh"
#include "kernels/vector_io.cuh"

namespace ddpm::kernels {

namespace {

constexpr int kThreads = 256;

// What one launch applies: the keep threshold on the top 24 bits of a draw,
// the scale of kept elements, and the mask's key.
struct MaskParams {
  uint32_t threshold;  // ceil(p * 2^24)
  float scale;         // float(1 / (1 - p))
  uint32_t key_low, key_high, salt, step;
  const uint32_t* step_ptr;  // when not null, the step (device memory) instead of `step`
};

// The four Philox draws of quad q (one block of the CPU backend's stream).
__device__ inline PhiloxBlock quad_draws(const MaskParams& m, int64_t q) {
  const auto u = static_cast<uint64_t>(q);
  return philox4x32_10(
      PhiloxBlock{{static_cast<uint32_t>(u), static_cast<uint32_t>(u >> 32), m.salt, m.step}},
      m.key_low, m.key_high);
}

// in's element scaled and masked; dropped elements are exactly 0 (not in * 0,
// which would carry a NaN or infinity through), as on the CPU.
template <bool kMask>
__device__ inline float masked(float in, uint32_t bits, const MaskParams& m) {
  if constexpr (!kMask) {
    return in;
  } else {
    return (bits >> 8) >= m.threshold ? __fmul_rn(in, m.scale) : 0.0f;
  }
}

// T: the storage of in and out (float, or __nv_bfloat16 for the bf16 twins).
// The value is computed in float and stored rounded once (bf16; exact for float).
template <bool kMask, bool kVector, class T>
__global__ void __launch_bounds__(kThreads)
    dropout_kernel(const T* __restrict__ in, T* __restrict__ out, int64_t n, MaskParams m,
                   bool accumulate) {
  const int64_t quads = (n + 3) / 4;
  if constexpr (kMask)
    if (m.step_ptr) m.step = *m.step_ptr;
  for (int64_t q = grid_thread_index(); q < quads; q += grid_thread_count()) {
    PhiloxBlock r{{0, 0, 0, 0}};
    if constexpr (kMask) r = quad_draws(m, q);
    const int64_t i0 = 4 * q;
    if (kVector && i0 + 4 <= n) {
      float v[4];
      quad_io::load4(in + i0, v);
      for (int k = 0; k < 4; ++k) v[k] = masked<kMask>(v[k], r.v[k], m);
      if (accumulate) {
        float old[4];
        quad_io::load4(out + i0, old);
        for (int k = 0; k < 4; ++k) v[k] = old[k] + v[k];
      }
      quad_io::store4(out + i0, v);
    } else {
      const int count = n - i0 < 4 ? int(n - i0) : 4;
      for (int k = 0; k < count; ++k) {
        const float y = masked<kMask>(bf16io::to_float(in[i0 + k]), r.v[k], m);
        out[i0 + k] = bf16io::from_float<T>(accumulate ? bf16io::to_float(out[i0 + k]) + y : y);
      }
    }
  }
}

void check_arguments(const char* launcher, int64_t n, double p) {
  if (n < 0)
    throw std::invalid_argument(std::string(launcher) + ": n = " + std::to_string(n) +
                                " is negative");
  if (!(p >= 0 && p < 1))
    throw std::invalid_argument(std::string(launcher) + ": p = " + std::to_string(p) +
                                " is outside [0, 1)");
}

template <class T>
void launch(const T* in, T* out, int64_t n, double p, const DropoutKey& key, bool accumulate,
            cudaStream_t stream) {
  if (n == 0) return;
  const MaskParams m{static_cast<uint32_t>(std::ceil(p * 16777216.0)),
                     static_cast<float>(1.0 / (1.0 - p)),
                     static_cast<uint32_t>(key.seed),
                     static_cast<uint32_t>(key.seed >> 32),
                     key.salt,
                     key.step,
                     key.step_ptr};
  const unsigned blocks = grid_stride_blocks((n + 3) / 4, kThreads);
  const bool vec = all_aligned16(in, out);
  if (p > 0) {
    if (vec)
      DDPM_LAUNCH((dropout_kernel<true, true, T>), blocks, kThreads, 0, stream, in, out, n, m,
                  accumulate);
    else
      DDPM_LAUNCH((dropout_kernel<true, false, T>), blocks, kThreads, 0, stream, in, out, n, m,
                  accumulate);
  } else {
    if (vec)
      DDPM_LAUNCH((dropout_kernel<false, true, T>), blocks, kThreads, 0, stream, in, out, n, m,
                  accumulate);
    else
      DDPM_LAUNCH((dropout_kernel<false, false, T>), blocks, kThreads, 0, stream, in, out, n, m,
                  accumulate);
  }
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void dropout_forward(const float* x, float* y, int64_t n, double p, const DropoutKey& key,
                     cudaStream_t stream) {
  check_arguments("dropout_forward", n, p);
  launch(x, y, n, p, key, false, stream);
}

void dropout_backward(const float* dy, float* dx, int64_t n, double p, const DropoutKey& key,
                      bool accumulate, cudaStream_t stream) {
  check_arguments("dropout_backward", n, p);
  launch(dy, dx, n, p, key, accumulate, stream);
}

void dropout_forward_bf16(const __nv_bfloat16* x, __nv_bfloat16* y, int64_t n, double p,
                          const DropoutKey& key, cudaStream_t stream) {
  check_arguments("dropout_forward_bf16", n, p);
  launch(x, y, n, p, key, false, stream);
}

void dropout_backward_bf16(const __nv_bfloat16* dy, __nv_bfloat16* dx, int64_t n, double p,
                           const DropoutKey& key, bool accumulate, cudaStream_t stream) {
  check_arguments("dropout_backward_bf16", n, p);
  launch(dy, dx, n, p, key, accumulate, stream);
}

}  // namespace ddpm::kernels
