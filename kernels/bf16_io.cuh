// Storage-type-generic loads and stores for the memory-bound kernels of the
// bf16 path (issue 11): a tensor is stored as float or __nv_bfloat16, every
// kernel computes in float. V consecutive elements move between memory and a
// float[V] in one access where V * sizeof(T) is 16 bytes (float4, or 8 bf16 as
// a uint4), element by element for V = 1.
//
// Rules of use (as vector_io.cuh's): the vector forms need a 16-byte aligned
// address; the launcher checks alignment (aligned16 / all_aligned16) and the
// shape (e.g. a channel count divisible by 8 for bf16) and picks V = 1
// otherwise. Conversions: bf16 -> float is exact (a shift of the bits);
// float -> bf16 rounds to nearest, ties to even (__float2bfloat16_rn, and
// warp_mma.cuh's pack_bf16x2 for pairs: cvt.rn.bf16x2.f32 on sm_80+), so a
// stored result is within 2^-8 relative of the float it came from.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>
#include <vector_types.h>

#include <cstdint>

#include "kernels/warp_mma.cuh"  // pack_bf16x2

namespace ddpm::kernels::bf16io {

using bf16 = __nv_bfloat16;

#if defined(__CUDACC__) || defined(DDPM_CUDA_EMULATION)

__device__ inline float to_float(float v) {
  return v;
}
__device__ inline float to_float(bf16 v) {
  return __bfloat162float(v);
}

template <class T>
__device__ inline T from_float(float v);
template <>
__device__ inline float from_float<float>(float v) {
  return v;
}
template <>
__device__ inline bf16 from_float<bf16>(float v) {
  return __float2bfloat16_rn(v);
}

// The widest vector of T in 16 bytes: 4 floats or 8 bf16.
template <class T>
inline constexpr int kVec16 = int(16 / sizeof(T));

// The two bf16 halves of a 32-bit word as floats (exact).
__device__ inline float low_bf16(uint32_t w) {
  return __uint_as_float(w << 16);
}
__device__ inline float high_bf16(uint32_t w) {
  return __uint_as_float(w & 0xFFFF0000u);
}

// v[0..V) = p[0..V). V is 1 or kVec16<T>.
template <int V>
__device__ inline void load(const float* p, float (&v)[V]) {
  static_assert(V == 1 || V == 4, "float vectors are 1 or 4 wide");
  if constexpr (V == 4) {
    const float4 q = *reinterpret_cast<const float4*>(p);
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
  } else {
    v[0] = p[0];
  }
}
template <int V>
__device__ inline void load(const bf16* p, float (&v)[V]) {
  static_assert(V == 1 || V == 8, "bf16 vectors are 1 or 8 wide");
  if constexpr (V == 8) {
    const uint4 q = *reinterpret_cast<const uint4*>(p);
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
    for (int k = 0; k < 4; ++k) v[2 * k] = low_bf16(w[k]), v[2 * k + 1] = high_bf16(w[k]);
  } else {
    v[0] = __bfloat162float(p[0]);
  }
}

// p[0..V) = v[0..V), rounded to T.
template <int V>
__device__ inline void store(float* p, const float (&v)[V]) {
  static_assert(V == 1 || V == 4, "float vectors are 1 or 4 wide");
  if constexpr (V == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    p[0] = v[0];
  }
}
template <int V>
__device__ inline void store(bf16* p, const float (&v)[V]) {
  static_assert(V == 1 || V == 8, "bf16 vectors are 1 or 8 wide");
  if constexpr (V == 8) {
    uint4 q;
    q.x = mma::pack_bf16x2(v[0], v[1]);
    q.y = mma::pack_bf16x2(v[2], v[3]);
    q.z = mma::pack_bf16x2(v[4], v[5]);
    q.w = mma::pack_bf16x2(v[6], v[7]);
    *reinterpret_cast<uint4*>(p) = q;
  } else {
    p[0] = __float2bfloat16_rn(v[0]);
  }
}

#endif  // __CUDACC__ || DDPM_CUDA_EMULATION

}  // namespace ddpm::kernels::bf16io
