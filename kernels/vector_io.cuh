// 128-bit (float4) global loads and stores for memory-bound kernels, and the
// grid-stride loops around them. Any kernel family may include it.
//
// Rules of use:
//   - A float4 access needs a 16-byte aligned address. The launcher checks its
//     pointers with all_aligned16() (and the kernel's shapes: e.g. a channel
//     count divisible by 4 when a float4 must stay inside one row) and picks
//     the vector path only when all hold; otherwise the kernel runs the scalar
//     path over the same elements. cudaMalloc returns 256-byte aligned memory,
//     so a tensor starting at a multiple of 4 floats of an allocation qualifies.
//   - Flat elementwise kernels (element i of every array belongs together) use
//     grid_stride_vec4(): float4 units over the first n / 4 * 4 elements, then a
//     scalar tail of n % 4 elements, both grid-stride.
//   - Shaped kernels (rows of channels) template on the vector width V (1 or 4)
//     and index in units of V floats: FloatVec<V>, load_vec<V>, store_vec<V>.
//   - vec_map applies a scalar function to each component, so one lambda serves
//     both widths.
//   - grid_stride_blocks() sizes a 1-D grid-stride launch: one thread per unit
//     up to one full wave of resident blocks on the current device;
//     grid_stride_block_cap() lowers that bound for tests.
// Everything here is `__host__ __device__ inline` or `__device__ inline` so it
// builds under nvcc and under the g++ emulator (kernels/emulation/). Host code
// (a test) may include it for the launch-sizing part; the device part is
// compiled only by nvcc or under the emulator.
#pragma once

#include <cuda_runtime_api.h>
#include <vector_types.h>

#include <cstdint>

namespace ddpm::kernels {

#if defined(__CUDACC__) || defined(DDPM_CUDA_EMULATION)

// ---- Alignment ---------------------------------------------------------------

__host__ __device__ inline bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & uintptr_t(15)) == 0;
}

// True when every pointer that is not null is 16-byte aligned.
template <class... T>
__host__ __device__ inline bool all_aligned16(const T*... p) {
  return (... && (p == nullptr || aligned16(p)));
}

// ---- Vector types of width V ----------------------------------------------------

template <int V>
struct FloatVec;
template <>
struct FloatVec<1> {
  using type = float;
};
template <>
struct FloatVec<4> {
  using type = float4;
};

// p must be aligned to V floats' bytes (16 for V = 4).
template <int V>
__device__ inline typename FloatVec<V>::type load_vec(const float* p) {
  return *reinterpret_cast<const typename FloatVec<V>::type*>(p);
}
template <int V>
__device__ inline void store_vec(float* p, const typename FloatVec<V>::type& v) {
  *reinterpret_cast<typename FloatVec<V>::type*>(p) = v;
}

__device__ inline float4 load_float4(const float* p) {
  return load_vec<4>(p);
}
__device__ inline void store_float4(float* p, const float4& v) {
  store_vec<4>(p, v);
}

// Component-wise f over one, two or three operands of the same width.
template <class F>
__device__ inline float vec_map(F f, float a) {
  return f(a);
}
template <class F>
__device__ inline float4 vec_map(F f, const float4& a) {
  return make_float4(f(a.x), f(a.y), f(a.z), f(a.w));
}
template <class F>
__device__ inline float vec_map(F f, float a, float b) {
  return f(a, b);
}
template <class F>
__device__ inline float4 vec_map(F f, const float4& a, const float4& b) {
  return make_float4(f(a.x, b.x), f(a.y, b.y), f(a.z, b.z), f(a.w, b.w));
}
template <class F>
__device__ inline float vec_map(F f, float a, float b, float c) {
  return f(a, b, c);
}
template <class F>
__device__ inline float4 vec_map(F f, const float4& a, const float4& b, const float4& c) {
  return make_float4(f(a.x, b.x, c.x), f(a.y, b.y, c.y), f(a.z, b.z, c.z), f(a.w, b.w, c.w));
}

// ---- Grid-stride loops ---------------------------------------------------------------

__device__ inline int64_t grid_thread_index() {
  return int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ inline int64_t grid_thread_count() {
  return int64_t(gridDim.x) * blockDim.x;
}

// Flat loop over n elements: with `vectorize`, vec(i) for i = 0, 4, ... below
// n / 4 * 4 (the caller loads and stores float4 at element i) and scalar(i) for
// the n % 4 tail; without it scalar(i) for every i. Each element is visited
// exactly once; consecutive threads take consecutive units (coalesced).
template <class Vec, class Scalar>
__device__ inline void grid_stride_vec4(int64_t n, bool vectorize, Vec vec, Scalar scalar) {
  const int64_t first = grid_thread_index(), stride = grid_thread_count();
  const int64_t n4 = vectorize ? n / 4 : 0;
  for (int64_t u = first; u < n4; u += stride) vec(4 * u);
  for (int64_t i = 4 * n4 + first; i < n; i += stride) scalar(i);
}

#endif  // __CUDACC__ || DDPM_CUDA_EMULATION

// ---- Launch sizing (host) --------------------------------------------------------------

// Multiprocessors of the current device (cached for the process: the engine
// drives one device). 132 (an H100 SXM) if the query fails.
inline int device_multiprocessors() {
  static const int count = [] {
    int device = 0, sms = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
        sms <= 0) {
      cudaGetLastError();  // the query's error is not the caller's launch error
      sms = 132;
    }
    return sms;
  }();
  return count;
}

// An upper bound on the blocks of grid-stride launches (and on grid
// dimensions that loops stride over), 0 for none. For tests: a small cap makes
// every thread run several iterations of its loops at emulator-sized inputs.
// Set it while no launch is being prepared on another host thread.
inline unsigned& grid_stride_block_cap() {
  static unsigned cap = 0;
  return cap;
}

// `want` blocks limited by grid_stride_block_cap(), at least 1.
inline unsigned capped_blocks(int64_t want) {
  const int64_t cap = grid_stride_block_cap();
  if (cap > 0 && want > cap) want = cap;
  return unsigned(want < 1 ? 1 : want);
}

// Blocks for a 1-D grid-stride launch over `units` work items of one thread
// each: ceil(units / threads), at most one wave of 2048 / threads resident
// blocks per multiprocessor (more blocks would only queue), at least 1.
inline unsigned grid_stride_blocks(int64_t units, int threads) {
  const int64_t wave = int64_t(device_multiprocessors()) * (2048 / threads);
  const int64_t need = (units + threads - 1) / threads;
  return capped_blocks(need < wave ? need : wave);
}

}  // namespace ddpm::kernels
