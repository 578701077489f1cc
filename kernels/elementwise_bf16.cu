// bf16 elementwise kernels of the UNet (contract: elementwise_bf16.cuh): the
// operations of elementwise.cu with bf16 tensors, fp32 arithmetic.
//
// Design (as elementwise.cu's): 1-D grid-stride loops of 256-thread blocks,
// consecutive threads on consecutive units, at most one wave of resident blocks
// (grid_stride_blocks). A unit is 8 bf16 (one 16-byte load / store,
// bf16io::load<8>) when the pointers are 16-byte aligned and the shape keeps
// the 8 inside one row, else one element. Flat kernels run the 8-wide units
// over n / 8 * 8 elements and a second, scalar launch over the n % 8 tail.
// The arithmetic of each element is the fp32 kernels' on the widened values;
// only the store rounds (bf16io::store: nearest even). The shaped kernels
// (upsample, concat), the timestep embedding and the argument checks are
// elementwise_kernels.cuh's, one body with the fp32 launchers; this file keeps
// the flat kernels, whose launch split differs from fp32's (a separate tail
// launch, a simpler broadcast db reduction).
//
// add_backward's broadcast db: one block per (sample, tile of 32 channels),
// 32 channel lanes x 8 position lanes; each thread sums its positions (p = ty,
// ty + 8, ...) in fp32, shared memory holds the 8 partial sums, lane ty = 0
// adds them in order. Deterministic (fixed partition, no atomics); a simpler
// split than the fp32 kernel's (which also cuts positions across blocks): at
// batch 1 with few channels it leaves SMs idle (not yet measured on a GPU).
//
// Bytes moved per element (bf16; "+2" accumulating): silu_forward 4,
// silu_backward 6 (+2), add_forward 6 (broadcast 4), add_backward 2 + 2 per
// gradient (+2 each), upsample2x_forward 2.5 per output element,
// upsample2x_backward 2.5 per dy element (+0.5), concat 4 (+2), timestep
// embedding 2 per output element.
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/bf16_io.cuh"
#include "kernels/check.cuh"
#include "kernels/elementwise_bf16.cuh"
#include "kernels/elementwise_kernels.cuh"
#include "kernels/emulation/launch.h"
#include "kernels/vector_io.cuh"

namespace ddpm::kernels {

namespace {

using bf16 = __nv_bfloat16;
using bf16io::load;
using bf16io::store;
using detail::ew::check_add_shape;
using detail::ew::kThreads;
using detail::ew::require_nonnegative;
using detail::ew::require_pointers;
using detail::ew::store_or_add;

constexpr int kVec = 8;        // bf16 per 16-byte access
constexpr int kBiasTile = 32;  // channels per block of the broadcast db reduction
constexpr int kBiasRows = kThreads / kBiasTile;

__device__ inline float silu(float x) {
  return x / (1.0f + expf(-x));  // elementwise.cu's expression
}
__device__ inline float silu_grad(float x, float dy) {
  const float s = 1.0f / (1.0f + expf(-x));
  return dy * s * (1.0f + x * (1.0f - s));
}

// ---- flat kernels: units of V elements -----------------------------------------------

template <int V>
__global__ void silu_forward_kernel(const bf16* __restrict__ x, bf16* __restrict__ y,
                                    int64_t units) {
  for (int64_t u = grid_thread_index(); u < units; u += grid_thread_count()) {
    float v[V];
    load<V>(x + u * V, v);
    for (int j = 0; j < V; ++j) v[j] = silu(v[j]);
    store<V>(y + u * V, v);
  }
}

template <int V>
__global__ void silu_backward_kernel(const bf16* __restrict__ x, const bf16* __restrict__ dy,
                                     bf16* __restrict__ dx, int64_t units, bool accumulate) {
  for (int64_t u = grid_thread_index(); u < units; u += grid_thread_count()) {
    float xv[V], g[V];
    load<V>(x + u * V, xv);
    load<V>(dy + u * V, g);
    for (int j = 0; j < V; ++j) g[j] = silu_grad(xv[j], g[j]);
    store_or_add<bf16, V>(dx + u * V, g, accumulate);
  }
}

// y = scale (a + b) over units; b's unit is (u / per_sample) * c_units + u % c_units
// with a broadcast (per_sample > 0, in units), u itself otherwise.
template <int V>
__global__ void add_forward_kernel(const bf16* __restrict__ a, const bf16* __restrict__ b,
                                   bf16* __restrict__ y, int64_t units, int64_t c_units,
                                   int64_t per_sample, float scale) {
  for (int64_t u = grid_thread_index(); u < units; u += grid_thread_count()) {
    const int64_t bi = per_sample > 0 ? (u / per_sample) * c_units + u % c_units : u;
    float av[V], bv[V];
    load<V>(a + u * V, av);
    load<V>(b + bi * V, bv);
    for (int j = 0; j < V; ++j) av[j] = scale * (av[j] + bv[j]);
    store<V>(y + u * V, av);
  }
}

// da (+)= scale dy, db (+)= scale dy (same shape), either null.
template <int V>
__global__ void add_backward_kernel(const bf16* __restrict__ dy, bf16* __restrict__ da,
                                    bf16* __restrict__ db, int64_t units, float scale,
                                    bool accumulate_a, bool accumulate_b) {
  for (int64_t u = grid_thread_index(); u < units; u += grid_thread_count()) {
    float g[V], h[V];
    load<V>(dy + u * V, g);
    for (int j = 0; j < V; ++j) g[j] = scale * g[j], h[j] = g[j];
    if (da) store_or_add<bf16, V>(da + u * V, g, accumulate_a);
    if (db) store_or_add<bf16, V>(db + u * V, h, accumulate_b);
  }
}

// Broadcast db (see the top of the file), da on the way. Grid (channel tiles,
// samples up to 65535, looping beyond).
__global__ void __launch_bounds__(kThreads)
    add_bias_grad_kernel(const bf16* __restrict__ dy, bf16* __restrict__ da, bf16* __restrict__ db,
                         int64_t samples, int64_t positions, int64_t channels, float scale,
                         bool accumulate_a, bool accumulate_b) {
  __shared__ float partial[kBiasRows][kBiasTile];
  const int tx = int(threadIdx.x) % kBiasTile, ty = int(threadIdx.x) / kBiasTile;
  const int64_t c = int64_t(blockIdx.x) * kBiasTile + tx;
  const bool active = c < channels;
  for (int64_t s = blockIdx.y; s < samples; s += gridDim.y) {
    float sum = 0.0f;
    if (active)
      for (int64_t p = ty; p < positions; p += kBiasRows) {
        const int64_t i = (s * positions + p) * channels + c;
        float g[1];
        load<1>(dy + i, g);
        sum += g[0];
        if (da) {
          g[0] = scale * g[0];
          store_or_add<bf16, 1>(da + i, g, accumulate_a);
        }
      }
    partial[ty][tx] = sum;
    __syncthreads();
    if (ty == 0 && active) {
      float total = partial[0][tx];
      for (int r = 1; r < kBiasRows; ++r) total += partial[r][tx];
      float v[1] = {scale * total};
      store_or_add<bf16, 1>(db + s * channels + c, v, accumulate_b);
    }
    __syncthreads();  // partial is rewritten for the next sample
  }
}

// ---- launch helpers ------------------------------------------------------------------

// A flat kernel over n elements: 8-wide units over n / 8 * 8 when `vector`,
// then a scalar launch over the rest. launch(V-tag, offset, units).
template <class Launch>
void flat(int64_t n, bool vector, Launch launch) {
  const int64_t head = vector ? n / kVec * kVec : 0;
  if (head > 0) launch(std::integral_constant<int, kVec>{}, int64_t(0), head / kVec);
  if (n > head) launch(std::integral_constant<int, 1>{}, head, n - head);
}

}  // namespace

// ---- launchers -----------------------------------------------------------------------

void silu_forward_bf16(const bf16* x, bf16* y, int64_t n, cudaStream_t stream) {
  const char* who = "silu_forward_bf16";
  require_nonnegative(n, who, "n");
  if (n == 0) return;
  require_pointers(x && y, who, "x and y");
  flat(n, all_aligned16(x, y), [&](auto v, int64_t at, int64_t units) {
    constexpr int V = decltype(v)::value;
    DDPM_LAUNCH(silu_forward_kernel<V>, grid_stride_blocks(units, kThreads), kThreads, 0, stream,
                x + at, y + at, units);
    DDPM_CUDA_CHECK(cudaGetLastError());
  });
}

void silu_backward_bf16(const bf16* x, const bf16* dy, bf16* dx, int64_t n, bool accumulate,
                        cudaStream_t stream) {
  const char* who = "silu_backward_bf16";
  require_nonnegative(n, who, "n");
  if (n == 0) return;
  require_pointers(x && dy && dx, who, "x, dy and dx");
  flat(n, all_aligned16(x, dy, dx), [&](auto v, int64_t at, int64_t units) {
    constexpr int V = decltype(v)::value;
    DDPM_LAUNCH(silu_backward_kernel<V>, grid_stride_blocks(units, kThreads), kThreads, 0, stream,
                x + at, dy + at, dx + at, units, accumulate);
    DDPM_CUDA_CHECK(cudaGetLastError());
  });
}

void add_forward_bf16(const bf16* a, const bf16* b, bf16* y, int64_t n, int64_t channels,
                      int64_t per_sample, float scale, cudaStream_t stream) {
  const char* who = "add_forward_bf16";
  const bool broadcast = check_add_shape(who, n, channels, per_sample);
  if (n == 0) return;
  require_pointers(a && b && y, who, "a, b and y");
  if (!broadcast) {
    flat(n, all_aligned16(a, b, y), [&](auto v, int64_t at, int64_t units) {
      constexpr int V = decltype(v)::value;
      DDPM_LAUNCH(add_forward_kernel<V>, grid_stride_blocks(units, kThreads), kThreads, 0, stream,
                  a + at, b + at, y + at, units, int64_t(1), int64_t(0), scale);
      DDPM_CUDA_CHECK(cudaGetLastError());
    });
    return;
  }
  if (channels % kVec == 0 && all_aligned16(a, b, y))
    DDPM_LAUNCH(add_forward_kernel<kVec>, grid_stride_blocks(n / kVec, kThreads), kThreads, 0,
                stream, a, b, y, n / kVec, channels / kVec, per_sample / kVec, scale);
  else
    DDPM_LAUNCH(add_forward_kernel<1>, grid_stride_blocks(n, kThreads), kThreads, 0, stream, a, b,
                y, n, channels, per_sample, scale);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void add_backward_bf16(const bf16* dy, bf16* da, bf16* db, int64_t n, int64_t channels,
                       int64_t per_sample, float scale, bool accumulate_a, bool accumulate_b,
                       cudaStream_t stream) {
  const char* who = "add_backward_bf16";
  const bool broadcast = check_add_shape(who, n, channels, per_sample);
  if (n == 0 || (!da && !db)) return;
  require_pointers(dy != nullptr, who, "dy");
  if (!broadcast || !db) {
    bf16* same_shape_db = broadcast ? nullptr : db;
    flat(n, all_aligned16(dy, da, same_shape_db), [&](auto v, int64_t at, int64_t units) {
      constexpr int V = decltype(v)::value;
      DDPM_LAUNCH(add_backward_kernel<V>, grid_stride_blocks(units, kThreads), kThreads, 0, stream,
                  dy + at, da ? da + at : nullptr, same_shape_db ? same_shape_db + at : nullptr,
                  units, scale, accumulate_a, accumulate_b);
      DDPM_CUDA_CHECK(cudaGetLastError());
    });
    return;
  }
  const int64_t samples = n / per_sample, positions = per_sample / channels;
  const dim3 grid(unsigned((channels + kBiasTile - 1) / kBiasTile),
                  capped_blocks(samples < 65535 ? samples : 65535));
  DDPM_LAUNCH(add_bias_grad_kernel, grid, kThreads, 0, stream, dy, da, db, samples, positions,
              channels, scale, accumulate_a, accumulate_b);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void upsample2x_forward_bf16(const bf16* x, bf16* y, int64_t n, int64_t h, int64_t w, int64_t c,
                             cudaStream_t stream) {
  detail::ew::upsample2x_forward<bf16>("upsample2x_forward_bf16", x, y, n, h, w, c, stream);
}

void upsample2x_backward_bf16(const bf16* dy, bf16* dx, int64_t n, int64_t h, int64_t w, int64_t c,
                              bool accumulate, cudaStream_t stream) {
  detail::ew::upsample2x_backward<bf16>("upsample2x_backward_bf16", dy, dx, n, h, w, c, accumulate,
                                        stream);
}

void concat_channels_forward_bf16(const bf16* x, bf16* y, int64_t rows, int64_t x_channels,
                                  int64_t y_channels, int64_t offset, cudaStream_t stream) {
  detail::ew::concat_channels_forward<bf16>("concat_channels_forward_bf16", x, y, rows, x_channels,
                                            y_channels, offset, stream);
}

void concat_channels_backward_bf16(const bf16* dy, bf16* dx, int64_t rows, int64_t x_channels,
                                   int64_t y_channels, int64_t offset, bool accumulate,
                                   cudaStream_t stream) {
  detail::ew::concat_channels_backward<bf16>("concat_channels_backward_bf16", dy, dx, rows,
                                             x_channels, y_channels, offset, accumulate, stream);
}

void timestep_embedding_forward_bf16(const float* t, bf16* y, int64_t n, int64_t dim,
                                     bool flip_sin_to_cos, float freq_shift, float max_period,
                                     float scale, cudaStream_t stream) {
  detail::ew::timestep_embedding_forward<bf16>("timestep_embedding_forward_bf16", t, y, n, dim,
                                               flip_sin_to_cos, freq_shift, max_period, scale,
                                               stream);
}

}  // namespace ddpm::kernels
