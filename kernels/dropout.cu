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
//
// Cost per element: 8 B (12 B accumulating) of DRAM traffic; Philox is ten
// rounds of two 32x32->64 multiplies and a few XORs per 4 elements, ~20
// integer instructions per element, well under what an H100 issues in the
// time its DRAM moves 8 B, so the kernel stays memory-bound.
#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/random.h"
#include "kernels/check.cuh"
#include "kernels/dropout.cuh"
#include "kernels/emulation/launch.h"
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

template <bool kMask, bool kVector>
__global__ void __launch_bounds__(kThreads)
    dropout_kernel(const float* __restrict__ in, float* __restrict__ out, int64_t n, MaskParams m,
                   bool accumulate) {
  const int64_t quads = (n + 3) / 4;
  if constexpr (kMask)
    if (m.step_ptr) m.step = *m.step_ptr;
  for (int64_t q = grid_thread_index(); q < quads; q += grid_thread_count()) {
    PhiloxBlock r{{0, 0, 0, 0}};
    if constexpr (kMask) r = quad_draws(m, q);
    const int64_t i0 = 4 * q;
    if (kVector && i0 + 4 <= n) {
      const float4 v = load_float4(in + i0);
      float4 y = make_float4(masked<kMask>(v.x, r.v[0], m), masked<kMask>(v.y, r.v[1], m),
                             masked<kMask>(v.z, r.v[2], m), masked<kMask>(v.w, r.v[3], m));
      if (accumulate) {
        const float4 old = load_float4(out + i0);
        y = make_float4(old.x + y.x, old.y + y.y, old.z + y.z, old.w + y.w);
      }
      store_float4(out + i0, y);
    } else {
      const int count = n - i0 < 4 ? int(n - i0) : 4;
      for (int k = 0; k < count; ++k) {
        const float y = masked<kMask>(in[i0 + k], r.v[k], m);
        out[i0 + k] = accumulate ? out[i0 + k] + y : y;
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

void launch(const float* in, float* out, int64_t n, double p, const DropoutKey& key,
            bool accumulate, cudaStream_t stream) {
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
      DDPM_LAUNCH((dropout_kernel<true, true>), blocks, kThreads, 0, stream, in, out, n, m,
                  accumulate);
    else
      DDPM_LAUNCH((dropout_kernel<true, false>), blocks, kThreads, 0, stream, in, out, n, m,
                  accumulate);
  } else {
    if (vec)
      DDPM_LAUNCH((dropout_kernel<false, true>), blocks, kThreads, 0, stream, in, out, n, m,
                  accumulate);
    else
      DDPM_LAUNCH((dropout_kernel<false, false>), blocks, kThreads, 0, stream, in, out, n, m,
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

}  // namespace ddpm::kernels
