// The elementwise kernels whose fp32 and bf16 versions are the same code: the
// shaped copies and gathers (nearest upsampling by 2 and its gradient, channel
// concat and its split), the sinusoidal timestep embedding, and the launchers'
// argument checks. Templated on the storage type T (float: elementwise.cu,
// __nv_bfloat16: elementwise_bf16.cu) and a unit of V elements moved with
// bf16io::load / store (V = 16 / sizeof(T): one 16-byte access, when the
// pointers are 16-byte aligned and the shape keeps a unit inside one row; else
// V = 1). Arithmetic is fp32 on values widened exactly from T; with T = float
// the loads and stores are plain float / float4 accesses and every expression
// and summation order is the fp32 kernels' of before the merge (results
// bitwise unchanged). Only stores round, for bf16 (nearest even).
//
// The flat kernels (SiLU, add, add's gradients) stay in their .cu files: the
// fp32 ones fold the n % 4 tail into one launch (grid_stride_vec4) and reduce
// the broadcast bias gradient with a split over positions, the bf16 ones use a
// second launch for the tail and a simpler reduction (elementwise_bf16.cu).
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/bf16_io.cuh"
#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "kernels/vector_io.cuh"

namespace ddpm::kernels::detail::ew {

constexpr int kThreads = 256;  // threads per block, every kernel

// p[0..V) = v, or p = old + v (old first, as the CPU backend adds) when accumulating.
template <class T, int V>
__device__ inline void store_or_add(T* p, float (&v)[V], bool accumulate) {
  if (accumulate) {
    float old[V];
    bf16io::load<V>(p, old);
    for (int j = 0; j < V; ++j) v[j] = old[j] + v[j];
  }
  bf16io::store<V>(p, v);
}

// ---- Upsample x2 ---------------------------------------------------------------------

// Unit u of x = [rows = n * h, w, c_units] goes to output pixels (2r + a, 2j + b).
template <class T, int V>
__global__ void upsample2x_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t units,
                                          int64_t w, int64_t c_units) {
  for (int64_t u = grid_thread_index(); u < units; u += grid_thread_count()) {
    const int64_t c = u % c_units, pixel = u / c_units;
    const int64_t j = pixel % w, r = pixel / w;
    const int64_t o = ((2 * r) * (2 * w) + 2 * j) * c_units + c, down = 2 * w * c_units;
    float v[V];
    bf16io::load<V>(x + u * V, v);  // exact: the copies are bitwise x
    bf16io::store<V>(y + o * V, v);
    bf16io::store<V>(y + (o + c_units) * V, v);
    bf16io::store<V>(y + (o + down) * V, v);
    bf16io::store<V>(y + (o + down + c_units) * V, v);
  }
}

// dx[u] (+)= its four dy pixels, summed in the CPU backend's order
// (row 2r: 2j, 2j + 1; then row 2r + 1).
template <class T, int V>
__global__ void upsample2x_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx,
                                           int64_t units, int64_t w, int64_t c_units,
                                           bool accumulate) {
  for (int64_t u = grid_thread_index(); u < units; u += grid_thread_count()) {
    const int64_t c = u % c_units, pixel = u / c_units;
    const int64_t j = pixel % w, r = pixel / w;
    const int64_t o = ((2 * r) * (2 * w) + 2 * j) * c_units + c, down = 2 * w * c_units;
    float g[V], t[V];
    bf16io::load<V>(dy + o * V, g);
    bf16io::load<V>(dy + (o + c_units) * V, t);
    for (int k = 0; k < V; ++k) g[k] += t[k];
    bf16io::load<V>(dy + (o + down) * V, t);
    for (int k = 0; k < V; ++k) g[k] += t[k];
    bf16io::load<V>(dy + (o + down + c_units) * V, t);
    for (int k = 0; k < V; ++k) g[k] += t[k];
    store_or_add<T, V>(dx + u * V, g, accumulate);
  }
}

// ---- Concat / split --------------------------------------------------------------------

template <class T, int V>
__global__ void concat_channels_forward_kernel(const T* __restrict__ x, T* __restrict__ y,
                                               int64_t units, int64_t x_units, int64_t y_units,
                                               int64_t offset_units) {
  for (int64_t u = grid_thread_index(); u < units; u += grid_thread_count()) {
    const int64_t r = u / x_units, j = u % x_units;
    float v[V];
    bf16io::load<V>(x + u * V, v);
    bf16io::store<V>(y + (r * y_units + offset_units + j) * V, v);
  }
}

template <class T, int V>
__global__ void concat_channels_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx,
                                                int64_t units, int64_t x_units, int64_t y_units,
                                                int64_t offset_units, bool accumulate) {
  for (int64_t u = grid_thread_index(); u < units; u += grid_thread_count()) {
    const int64_t r = u / x_units, j = u % x_units;
    float v[V];
    bf16io::load<V>(dy + (r * y_units + offset_units + j) * V, v);
    store_or_add<T, V>(dx + u * V, v, accumulate);
  }
}

// ---- Timestep embedding ------------------------------------------------------------------

// Unit (b, i), i < half: frequency f_i, argument scale * (t[b] * f_i), its sin
// and cos into their columns; unit (b, 0) also zeroes the pad column of an odd
// dim. The float operations and their order are those of
// engine/cpu/timestep_embedding.cpp: exponent = (-ln(max_period) * i) /
// (half - freq_shift), f = exp(exponent), arg = scale * (t * f). Accurate
// expf/sinf/cosf (not __sinf: arguments reach ~1000 rad).
template <class T>
__global__ void timestep_embedding_kernel(const float* __restrict__ t, T* __restrict__ y, int64_t n,
                                          int64_t dim, int64_t half, float neg_log_max_period,
                                          float denominator, float scale, bool flip_sin_to_cos) {
  for (int64_t u = grid_thread_index(); u < n * half; u += grid_thread_count()) {
    const int64_t b = u / half, i = u % half;
    const float exponent = (neg_log_max_period * float(i)) / denominator;
    const float arg = scale * (t[b] * expf(exponent));
    T* row = y + b * dim;
    row[flip_sin_to_cos ? half + i : i] = bf16io::from_float<T>(sinf(arg));
    row[flip_sin_to_cos ? i : half + i] = bf16io::from_float<T>(cosf(arg));
    if (i == 0 && dim % 2) row[dim - 1] = bf16io::from_float<T>(0.0f);
  }
}

// ---- Argument checks (std::invalid_argument naming the launcher) -------------------------

inline void require(bool ok, const char* launcher, const std::string& what) {
  if (!ok) throw std::invalid_argument(std::string(launcher) + ": " + what);
}

inline void require_nonnegative(int64_t v, const char* launcher, const char* name) {
  require(v >= 0, launcher, std::string(name) + " = " + std::to_string(v) + " is negative");
}

inline void require_pointers(bool ok, const char* launcher, const char* names) {
  require(ok, launcher, std::string(names) + " must not be null");
}

// Validates add's broadcast description; true when b is broadcast.
inline bool check_add_shape(const char* launcher, int64_t n, int64_t channels, int64_t per_sample) {
  require_nonnegative(n, launcher, "n");
  require_nonnegative(per_sample, launcher, "per_sample");
  if (per_sample == 0) return false;
  require(channels > 0, launcher,
          "channels = " + std::to_string(channels) + " must be positive with a broadcast b");
  require(per_sample % channels == 0, launcher,
          "per_sample = " + std::to_string(per_sample) +
              " is not a multiple of channels = " + std::to_string(channels));
  require(n % per_sample == 0, launcher,
          "n = " + std::to_string(n) +
              " is not a multiple of per_sample = " + std::to_string(per_sample));
  return true;
}

inline void check_nhwc(const char* launcher, int64_t n, int64_t h, int64_t w, int64_t c) {
  require_nonnegative(n, launcher, "n");
  require_nonnegative(h, launcher, "h");
  require_nonnegative(w, launcher, "w");
  require_nonnegative(c, launcher, "c");
}

inline void check_concat(const char* launcher, int64_t rows, int64_t x_channels, int64_t y_channels,
                         int64_t offset) {
  require_nonnegative(rows, launcher, "rows");
  require_nonnegative(x_channels, launcher, "x_channels");
  require_nonnegative(offset, launcher, "offset");
  require(offset + x_channels <= y_channels, launcher,
          "offset " + std::to_string(offset) + " + x_channels " + std::to_string(x_channels) +
              " exceeds y_channels " + std::to_string(y_channels));
}

// ---- Launchers of elementwise.cuh / elementwise_bf16.cuh ---------------------------------
// `who` names the public function in error messages. Null pointers are
// rejected only when there is work (an empty launch touches nothing).

template <class T>
void upsample2x_forward(const char* who, const T* x, T* y, int64_t n, int64_t h, int64_t w,
                        int64_t c, cudaStream_t stream) {
  constexpr int kV = bf16io::kVec16<T>;
  check_nhwc(who, n, h, w, c);
  const int64_t count = n * h * w * c;
  if (count == 0) return;
  require_pointers(x && y, who, "x and y");
  if (c % kV == 0 && all_aligned16(x, y))
    DDPM_LAUNCH((upsample2x_forward_kernel<T, kV>), grid_stride_blocks(count / kV, kThreads),
                kThreads, 0, stream, x, y, count / kV, w, c / kV);
  else
    DDPM_LAUNCH((upsample2x_forward_kernel<T, 1>), grid_stride_blocks(count, kThreads), kThreads, 0,
                stream, x, y, count, w, c);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void upsample2x_backward(const char* who, const T* dy, T* dx, int64_t n, int64_t h, int64_t w,
                         int64_t c, bool accumulate, cudaStream_t stream) {
  constexpr int kV = bf16io::kVec16<T>;
  check_nhwc(who, n, h, w, c);
  const int64_t count = n * h * w * c;
  if (count == 0) return;
  require_pointers(dy && dx, who, "dy and dx");
  if (c % kV == 0 && all_aligned16(dy, dx))
    DDPM_LAUNCH((upsample2x_backward_kernel<T, kV>), grid_stride_blocks(count / kV, kThreads),
                kThreads, 0, stream, dy, dx, count / kV, w, c / kV, accumulate);
  else
    DDPM_LAUNCH((upsample2x_backward_kernel<T, 1>), grid_stride_blocks(count, kThreads), kThreads,
                0, stream, dy, dx, count, w, c, accumulate);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void concat_channels_forward(const char* who, const T* x, T* y, int64_t rows, int64_t x_channels,
                             int64_t y_channels, int64_t offset, cudaStream_t stream) {
  constexpr int kV = bf16io::kVec16<T>;
  check_concat(who, rows, x_channels, y_channels, offset);
  const int64_t count = rows * x_channels;
  if (count == 0) return;
  require_pointers(x && y, who, "x and y");
  if ((x_channels | y_channels | offset) % kV == 0 && all_aligned16(x, y))
    DDPM_LAUNCH((concat_channels_forward_kernel<T, kV>), grid_stride_blocks(count / kV, kThreads),
                kThreads, 0, stream, x, y, count / kV, x_channels / kV, y_channels / kV,
                offset / kV);
  else
    DDPM_LAUNCH((concat_channels_forward_kernel<T, 1>), grid_stride_blocks(count, kThreads),
                kThreads, 0, stream, x, y, count, x_channels, y_channels, offset);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void concat_channels_backward(const char* who, const T* dy, T* dx, int64_t rows, int64_t x_channels,
                              int64_t y_channels, int64_t offset, bool accumulate,
                              cudaStream_t stream) {
  constexpr int kV = bf16io::kVec16<T>;
  check_concat(who, rows, x_channels, y_channels, offset);
  const int64_t count = rows * x_channels;
  if (count == 0) return;
  require_pointers(dy && dx, who, "dy and dx");
  if ((x_channels | y_channels | offset) % kV == 0 && all_aligned16(dy, dx))
    DDPM_LAUNCH((concat_channels_backward_kernel<T, kV>), grid_stride_blocks(count / kV, kThreads),
                kThreads, 0, stream, dy, dx, count / kV, x_channels / kV, y_channels / kV,
                offset / kV, accumulate);
  else
    DDPM_LAUNCH((concat_channels_backward_kernel<T, 1>), grid_stride_blocks(count, kThreads),
                kThreads, 0, stream, dy, dx, count, x_channels, y_channels, offset, accumulate);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void timestep_embedding_forward(const char* who, const float* t, T* y, int64_t n, int64_t dim,
                                bool flip_sin_to_cos, float freq_shift, float max_period,
                                float scale, cudaStream_t stream) {
  require_nonnegative(n, who, "n");
  require(dim >= 2, who, "dim = " + std::to_string(dim) + " must be at least 2");
  require(max_period > 0, who, "max_period = " + std::to_string(max_period) + " must be positive");
  const int64_t half = dim / 2;
  // As the CPU backend: ln in double of the period, rounded to float, negated;
  // the denominator in float.
  const float neg_log_max_period = -float(std::log(double(max_period)));
  const float denominator = float(half) - freq_shift;
  require(denominator != 0.0f, who,
          "dim / 2 - freq_shift is zero (dim = " + std::to_string(dim) +
              ", freq_shift = " + std::to_string(freq_shift) + ")");
  if (n == 0) return;
  require_pointers(t && y, who, "t and y");
  DDPM_LAUNCH(timestep_embedding_kernel<T>, grid_stride_blocks(n * half, kThreads), kThreads, 0,
              stream, t, y, n, dim, half, neg_log_max_period, denominator, scale, flip_sin_to_cos);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ddpm::kernels::detail::ew
