// Quads of float or __nv_bfloat16 storage for the kernels whose work unit is
// four consecutive elements (one Philox4x32 block, or two Box-Muller pairs):
// dropout, mse_loss, the sampler's noise update, the training batch. A quad
// moves in one access, a float4 (16 bytes) or four bf16 as a uint2 (8 bytes),
// and is computed on as float[4]: bf16 widens exactly, a bf16 store rounds
// each float to nearest even (bf16_io.cuh's conversions). With T = float the
// loads and stores are the plain float4 accesses the fp32 kernels always did,
// so their results are bitwise those of before.
//
// Rules: load4 / store4 need an address aligned to the quad's size (16 bytes
// for float, 8 for bf16; the launchers check aligned16, which implies both);
// load_or_zero / store_first handle a short last quad element by element.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>
#include <vector_types.h>

#include <cstdint>

#include "kernels/bf16_io.cuh"

namespace ddpm::kernels::quad_io {

#if defined(__CUDACC__) || defined(DDPM_CUDA_EMULATION)

// v = p[0..4), one access.
__device__ inline void load4(const float* p, float (&v)[4]) {
  const float4 f = *reinterpret_cast<const float4*>(p);
  v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
}
__device__ inline void load4(const __nv_bfloat16* p, float (&v)[4]) {
  const uint2 w = *reinterpret_cast<const uint2*>(p);
  v[0] = bf16io::low_bf16(w.x), v[1] = bf16io::high_bf16(w.x);
  v[2] = bf16io::low_bf16(w.y), v[3] = bf16io::high_bf16(w.y);
}

// p[0..4) = v (rounded to T), one access.
__device__ inline void store4(float* p, const float (&v)[4]) {
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ inline void store4(__nv_bfloat16* p, const float (&v)[4]) {
  *reinterpret_cast<uint2*>(p) =
      make_uint2(mma::pack_bf16x2(v[0], v[1]), mma::pack_bf16x2(v[2], v[3]));
}

// The first `count` (<= 4) elements one by one, the rest of v zero.
template <class T>
__device__ inline void load_or_zero(const T* p, int count, float (&v)[4]) {
  for (int k = 0; k < 4; ++k) v[k] = k < count ? bf16io::to_float(p[k]) : 0.0f;
}

// p[0..count) = v[0..count) (rounded to T), one by one.
template <class T>
__device__ inline void store_first(T* p, int count, const float (&v)[4]) {
  for (int k = 0; k < 4; ++k)
    if (k < count) p[k] = bf16io::from_float<T>(v[k]);
}

// A whole quad in one access (kVector) or element by element.
template <bool kVector, class T>
__device__ inline void load(const T* p, int count, float (&v)[4]) {
  if constexpr (kVector)
    load4(p, v);
  else
    load_or_zero(p, count, v);
}
template <bool kVector, class T>
__device__ inline void store(T* p, int count, const float (&v)[4]) {
  if constexpr (kVector)
    store4(p, v);
  else
    store_first(p, count, v);
}

#endif  // __CUDACC__ || DDPM_CUDA_EMULATION

}  // namespace ddpm::kernels::quad_io
