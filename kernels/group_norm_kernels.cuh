// The GroupNorm kernels and launchers, templated on the storage type T of the
// big activations x, y, dy, dx (float: group_norm.cu; __nv_bfloat16:
// group_norm_bf16.cu); everything else (bias, gamma, beta, mean, rstd, the
// gradients of the parameters, every partial and sum) is fp32 and computed in
// fp32 either way. One body for both, so the bf16 path is the fp32 algorithm on
// inputs widened exactly to float (bf16io::load), rounded once on store; with
// T = float the loads and stores are plain float / float4 accesses and the
// arithmetic is the fp32 kernels' as it always was. Included by those two .cu
// files only: each instantiates its own T. Over channels-last activations
// [N, P, C] in G groups, with an optional per-(sample, channel) add before it
// and an optional SiLU after it (contract: group_norm.cuh). With h = x + bias[n, c]:
//   y = act(gamma[c] * (h - mean[n, g]) * rstd[n, g] + beta[c])
//
// Work split. Each sample's P pixels are cut into `chunks` ranges of `rows`
// pixels; the cut depends on the shape only, so every launch of a shape
// reduces in the same order and results are bitwise reproducible. A tile block
// owns one (chunk, sample) = rows x C contiguous floats and is TX x TY
// threads (kThreads in all): TX threads across channel vectors (consecutive
// threads on consecutive channels, V = 16 / sizeof(T) elements (float4, or 8
// bf16) in one access when C % V == 0 and the big arrays are 16-byte aligned,
// else scalar), TY across rows. The cut aims at
// kTargetBlocks blocks (rows >= TY, so no thread idles): at batch 1 the CIFAR
// top level (P = 1024, C = 128: TX 32 x TY 8) gets 128 blocks of 8 rows, one
// float4 per thread; 16x16 with C = 256 gets 64 blocks. A tile is at most
// kTileBytes (32 KB: 8192 floats, 16384 bf16), so the stats kernel's second pass over it hits
// L1/L2. No atomics: every sum is a fixed sequence of partial sums (a thread over its rows, then
// over the TY row-threads in order, then the group's channels in order, then the chunks in order).
//
// Forward, 3 launches:
//   gn_stats_kernel     grid (chunks, N): per (sample, chunk, group) mean and
//                       M2 by the corrected two-pass method over the tile
//                       (pass 1: m0 = sum h / n; pass 2: d = h - m0, mean =
//                       m0 + sum d / n, M2 = sum d^2 - (sum d)^2 / n; Chan,
//                       Golub & LeVeque 1983), whose error does not grow with
//                       the offset of the data. Measured on x = 100 + N(0, 1),
//                       16x16 x 256 channels in 32 groups: rstd within 1.8e-7
//                       relative of the double oracle (1.4e-6 with a fused
//                       bias: the rounding of h = x + bias to fp32, which the
//                       fp32 CPU op shares), mean within 4e-6 (half an ulp of
//                       100). A one-pass E[h^2] - E[h]^2 in fp32 loses 4e-3
//                       relative in the variance there (1.7e-2 worst of 50).
//   gn_finalize_kernel  one warp per (sample, group): Chan's pairwise merge of
//                       the chunk partials in double, lane-strided then a
//                       shuffle tree (fixed order); writes mean and rstd.
//   gn_apply_kernel     grid (chunks, N): y = act((h - mean) (rstd gamma) + beta).
// Backward, 3 launches (xhat = (h - mean) rstd, z = gamma xhat + beta,
// dz = dy act'(z), dxhat = gamma dz, A = mean_g(dxhat), B = mean_g(dxhat xhat)):
//   gn_backward_partials_kernel  grid (chunks, N): per (sample, chunk,
//                       channel) sums of dz, dz xhat and xhat.
//   gn_backward_group_kernel     grid N: sums over chunks per (sample,
//                       channel), several threads a channel when C < 256;
//                       A and B per group; dbias[n, c] = sum_p dh =
//                       rstd (gamma S(dz) - P A - B S(xhat)), no extra pass.
//   gn_backward_dx_kernel        grid (chunks, N): dh = rstd (dxhat - A - xhat B)
//                       into dx; its blocks also reduce dgamma, dbeta over the
//                       batch (channel-strided across blocks, samples in order).
//
// Memory traffic per element (fp32; the [N, C], [N, G] and chunk partials are
// small): forward reads x twice (stats, apply) and writes y: 12 B against an
// 8 B minimum (one read and one write need a whole group on one SM, or a
// grid-wide sync). Backward reads x and dy twice and writes dx: 20 B (24 B
// accumulating) against 12 B (16 B). At batch 1 the inputs fit in L2 and the
// second reads come from there. bf16 halves every figure. The tile kernels
// ask for 4 blocks of 256 per SM (__launch_bounds__: <= 64 registers; without
// it the fp32 backward kernels take 67-80), the bf16 backward ones for 2
// (kBackwardBlocksPerSm); neither choice has been timed on a GPU yet.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/bf16_io.cuh"
#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "kernels/group_norm.cuh"

namespace ddpm::kernels::detail::gn {

constexpr int kThreads = 256;           // threads per block, every kernel
constexpr int kMaxChannels = 2048;      // keeps every kernel's shared memory under 48 KB
constexpr int64_t kTargetBlocks = 264;  // 2 blocks per SM of a 132-SM H100/H200
constexpr int64_t kTileBytes = 32768;   // a tile the second pass finds in L1/L2
constexpr int64_t kMaxBatch = 65535;    // gridDim.y

// Blocks per SM the backward tile kernels ask for. fp32: 4 (64 registers, no
// spill). bf16: 8 lanes of per-channel constants (bias, mean, rstd, gamma,
// beta, A, B) next to 8-wide x, dy, dx vectors spill 120-184 bytes at 4 blocks (64 registers),
// 56-120 at 3 (80), nothing at 2 (96-115 registers; cuobjdump
// --dump-resource-usage, sm_90). Fewer resident warps, each with two 16-byte
// loads in flight per element vector; not timed on a GPU yet (moving the
// constants to shared memory would allow 4 blocks again).
template <class T>
inline constexpr int kBackwardBlocksPerSm = sizeof(T) == sizeof(float) ? 4 : 2;

// The non-template kernels (finalize, backward group) are static: each of the
// two including files gets its own copy, as before the merge, and no symbol is
// defined twice.

// ---------------------------------------------------------------- helpers

__device__ inline float sigmoid(float z) {
  return 1.0f / (1.0f + expf(-z));
}

// d silu(z) / dz = s (1 + z (1 - s)), s = sigmoid(z).
__device__ inline float silu_grad(float z) {
  const float s = sigmoid(z);
  return s * (1.0f + z * (1.0f - s));
}

// The pixel range [p0, p1) of this block's chunk and its sample.
struct Tile {
  int64_t n, p0, p1;
};

__device__ inline Tile this_tile(int64_t pixels, int64_t rows) {
  const int64_t p0 = int64_t(blockIdx.x) * rows;
  return {int64_t(blockIdx.y), p0, p0 + rows < pixels ? p0 + rows : pixels};
}

__device__ inline int thread_rank() {
  return int(threadIdx.y * blockDim.x + threadIdx.x);
}
__device__ inline int block_threads() {
  return int(blockDim.x * blockDim.y);
}

// Threads of gn_backward_group_kernel that share one channel's chunks.
__host__ __device__ inline int group_kernel_split(int channels, int threads) {
  return channels < threads ? threads / channels : 1;
}

// Moments of a set of values: count, mean, sum of squared deviations.
struct Moments {
  double count, mean, m2;
};

// Chan, Golub & LeVeque's pairwise update; exact for empty sides.
__device__ inline Moments merge(const Moments& a, const Moments& b) {
  if (b.count == 0) return a;
  if (a.count == 0) return b;
  const double n = a.count + b.count, d = b.mean - a.mean, w = b.count / n;
  return {n, a.mean + d * w, a.m2 + b.m2 + d * d * a.count * w};
}

// ---------------------------------------------------------------- forward

// Shared memory: d1, d2 [TY][C], col1, col2 [C], center [G].
template <class T, int V>
__global__ void __launch_bounds__(kThreads, 4)
    gn_stats_kernel(const T* __restrict__ x, const float* __restrict__ bias,
                    float2* __restrict__ partial, int64_t pixels, int channels, int groups,
                    int64_t rows) {
  DDPM_DYNAMIC_SHARED(float, smem);
  const int ty_count = int(blockDim.y), c_count = channels;
  float* d1 = smem;
  float* d2 = d1 + ty_count * c_count;
  float* col1 = d2 + ty_count * c_count;
  float* col2 = col1 + c_count;
  float* center = col2 + c_count;
  const Tile t = this_tile(pixels, rows);
  const int cpg = channels / groups, t_rank = thread_rank(), t_count = block_threads();
  const T* xn = x + t.n * pixels * channels;
  const float count = float((t.p1 - t.p0) * cpg);

  // Sums over the thread's rows, per channel, into d1 (and d2) [ty][c].
  auto row_sums = [&](bool centered) {
    for (int cv = int(threadIdx.x); cv < channels / V; cv += int(blockDim.x)) {
      const int c0 = cv * V;
      float b[V], m[V], s1[V], s2[V];
      for (int j = 0; j < V; ++j) {
        b[j] = bias ? bias[t.n * channels + c0 + j] : 0.0f;
        m[j] = centered ? center[(c0 + j) / cpg] : 0.0f;
        s1[j] = s2[j] = 0.0f;
      }
      for (int64_t p = t.p0 + threadIdx.y; p < t.p1; p += blockDim.y) {
        float v[V];
        bf16io::load<V>(xn + p * channels + c0, v);
        for (int j = 0; j < V; ++j) {
          const float d = (v[j] + b[j]) - m[j];
          s1[j] += d;
          s2[j] += d * d;
        }
      }
      for (int j = 0; j < V; ++j) {
        d1[threadIdx.y * c_count + c0 + j] = s1[j];
        if (centered) d2[threadIdx.y * c_count + c0 + j] = s2[j];
      }
    }
  };
  // Column sums over TY, in order.
  auto column_sums = [&](bool both) {
    for (int c = t_rank; c < channels; c += t_count) {
      float s1 = 0.0f, s2 = 0.0f;
      for (int r = 0; r < ty_count; ++r) {
        s1 += d1[r * c_count + c];
        if (both) s2 += d2[r * c_count + c];
      }
      col1[c] = s1;
      if (both) col2[c] = s2;
    }
  };

  // Pass 1: the tile's group means.
  row_sums(false);
  __syncthreads();
  column_sums(false);
  __syncthreads();
  for (int g = t_rank; g < groups; g += t_count) {
    float s = 0.0f;
    for (int c = g * cpg; c < (g + 1) * cpg; ++c) s += col1[c];
    center[g] = s / count;
  }
  __syncthreads();
  // Pass 2: deviations from them (the tile is in L1/L2 now).
  row_sums(true);
  __syncthreads();
  column_sums(true);
  __syncthreads();
  for (int g = t_rank; g < groups; g += t_count) {
    float s1 = 0.0f, s2 = 0.0f;
    for (int c = g * cpg; c < (g + 1) * cpg; ++c) s1 += col1[c], s2 += col2[c];
    partial[(t.n * gridDim.x + blockIdx.x) * groups + g] =
        make_float2(center[g] + s1 / count, fmaxf(s2 - s1 * (s1 / count), 0.0f));
  }
}

// One warp per (sample, group); blockDim.x a multiple of 32.
static __global__ void gn_finalize_kernel(const float2* __restrict__ partial,
                                          float* __restrict__ mean, float* __restrict__ rstd,
                                          int64_t pairs, int groups, int64_t chunks, int64_t rows,
                                          int64_t pixels, int cpg, float eps) {
  const int64_t pair = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (pair >= pairs) return;  // whole warps
  const int lane = int(threadIdx.x % 32);
  const int64_t n = pair / groups, g = pair % groups;
  Moments acc{0, 0, 0};
  for (int64_t k = lane; k < chunks; k += 32) {
    const float2 q = partial[(n * chunks + k) * groups + g];
    const int64_t r = k * rows + rows <= pixels ? rows : pixels - k * rows;
    acc = merge(acc, Moments{double(r * cpg), double(q.x), double(q.y)});
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    const Moments other{__shfl_down_sync(0xffffffffu, acc.count, offset),
                        __shfl_down_sync(0xffffffffu, acc.mean, offset),
                        __shfl_down_sync(0xffffffffu, acc.m2, offset)};
    acc = merge(acc, other);
  }
  if (lane == 0) {
    mean[pair] = float(acc.mean);
    rstd[pair] = float(1.0 / sqrt(acc.m2 / acc.count + double(eps)));
  }
}

template <class T, int V>
__global__ void __launch_bounds__(kThreads, 4)
    gn_apply_kernel(const T* __restrict__ x, const float* __restrict__ bias,
                    const float* __restrict__ gamma, const float* __restrict__ beta,
                    const float* __restrict__ mean, const float* __restrict__ rstd,
                    T* __restrict__ y, int64_t pixels, int channels, int groups, int64_t rows,
                    bool silu) {
  const Tile t = this_tile(pixels, rows);
  const int cpg = channels / groups;
  const int64_t base = t.n * pixels * channels;
  for (int cv = int(threadIdx.x); cv < channels / V; cv += int(blockDim.x)) {
    const int c0 = cv * V;
    float b[V], m[V], scale[V], shift[V];
    for (int j = 0; j < V; ++j) {
      const int c = c0 + j;
      const int64_t ng = t.n * groups + c / cpg;
      b[j] = bias ? bias[t.n * channels + c] : 0.0f;
      m[j] = mean[ng];
      scale[j] = gamma ? rstd[ng] * gamma[c] : rstd[ng];
      shift[j] = beta ? beta[c] : 0.0f;
    }
    for (int64_t p = t.p0 + threadIdx.y; p < t.p1; p += blockDim.y) {
      float v[V];
      bf16io::load<V>(x + base + p * channels + c0, v);
      for (int j = 0; j < V; ++j) {
        const float z = ((v[j] + b[j]) - m[j]) * scale[j] + shift[j];
        v[j] = silu ? z * sigmoid(z) : z;
      }
      bf16io::store<V>(y + base + p * channels + c0, v);
    }
  }
}

// ---------------------------------------------------------------- backward

// The per-channel constants a backward tile thread needs for its vector.
template <int V>
struct ChannelConstants {
  float bias[V], mean[V], rstd[V], gamma[V], beta[V];
};

template <int V>
__device__ inline ChannelConstants<V> channel_constants(const float* bias, const float* gamma,
                                                        const float* beta, const float* mean,
                                                        const float* rstd, int64_t n, int c0,
                                                        int channels, int groups) {
  ChannelConstants<V> k;
  const int cpg = channels / groups;
  for (int j = 0; j < V; ++j) {
    const int c = c0 + j;
    const int64_t ng = n * groups + c / cpg;
    k.bias[j] = bias ? bias[n * channels + c] : 0.0f;
    k.mean[j] = mean[ng];
    k.rstd[j] = rstd[ng];
    k.gamma[j] = gamma ? gamma[c] : 1.0f;
    k.beta[j] = beta ? beta[c] : 0.0f;
  }
  return k;
}

// xhat and dz = dy act'(z) of one element.
__device__ inline void normalized_and_grad(float x, float dy, float bias, float mean, float rstd,
                                           float gamma, float beta, bool silu, float& xhat,
                                           float& dz) {
  xhat = ((x + bias) - mean) * rstd;
  dz = silu ? dy * silu_grad(xhat * gamma + beta) : dy;
}

// Shared memory: s_dz, s_dzx, s_x [TY][C]. Writes partial [N][chunks][3][C].
template <class T, int V>
__global__ void __launch_bounds__(kThreads, kBackwardBlocksPerSm<T>)
    gn_backward_partials_kernel(const T* __restrict__ x, const float* __restrict__ bias,
                                const float* __restrict__ gamma, const float* __restrict__ beta,
                                const float* __restrict__ mean, const float* __restrict__ rstd,
                                const T* __restrict__ dy, float* __restrict__ partial,
                                int64_t pixels, int channels, int groups, int64_t rows, bool silu) {
  DDPM_DYNAMIC_SHARED(float, smem);
  const int ty_count = int(blockDim.y), c_count = channels;
  float* s_dz = smem;
  float* s_dzx = s_dz + ty_count * c_count;
  float* s_x = s_dzx + ty_count * c_count;
  const Tile t = this_tile(pixels, rows);
  const int64_t base = t.n * pixels * channels;
  for (int cv = int(threadIdx.x); cv < channels / V; cv += int(blockDim.x)) {
    const int c0 = cv * V;
    const ChannelConstants<V> k =
        channel_constants<V>(bias, gamma, beta, mean, rstd, t.n, c0, channels, groups);
    float a_dz[V] = {}, a_dzx[V] = {}, a_x[V] = {};
    for (int64_t p = t.p0 + threadIdx.y; p < t.p1; p += blockDim.y) {
      float xv[V], gv[V];
      bf16io::load<V>(x + base + p * channels + c0, xv);
      bf16io::load<V>(dy + base + p * channels + c0, gv);
      for (int j = 0; j < V; ++j) {
        float xhat, dz;
        normalized_and_grad(xv[j], gv[j], k.bias[j], k.mean[j], k.rstd[j], k.gamma[j], k.beta[j],
                            silu, xhat, dz);
        a_dz[j] += dz;
        a_dzx[j] += dz * xhat;
        a_x[j] += xhat;
      }
    }
    for (int j = 0; j < V; ++j) {
      const int i = int(threadIdx.y) * c_count + c0 + j;
      s_dz[i] = a_dz[j], s_dzx[i] = a_dzx[j], s_x[i] = a_x[j];
    }
  }
  __syncthreads();
  float* out = partial + (t.n * gridDim.x + blockIdx.x) * 3 * channels;
  for (int c = thread_rank(); c < channels; c += block_threads()) {
    float v_dz = 0.0f, v_dzx = 0.0f, v_x = 0.0f;
    for (int r = 0; r < ty_count; ++r) {
      v_dz += s_dz[r * c_count + c];
      v_dzx += s_dzx[r * c_count + c];
      v_x += s_x[r * c_count + c];
    }
    out[c] = v_dz, out[channels + c] = v_dzx, out[2 * channels + c] = v_x;
  }
}

// One block per sample. Where C < blockDim, `split` = blockDim / C threads
// share a channel's chunks (thread s takes chunks s, s + split, ...) and their
// sums are added in s order. Shared memory: S(dz), S(dz xhat), S(xhat) [C],
// A, B [G], and with split > 1 the split sums [3][split][C]. Writes sum_dz,
// sum_dzx [N][C] (for dbeta, dgamma) and ab [N][G].
static __global__ void gn_backward_group_kernel(
    const float* __restrict__ partial, const float* __restrict__ gamma,
    const float* __restrict__ rstd, float* __restrict__ sum_dz, float* __restrict__ sum_dzx,
    float2* __restrict__ ab, float* __restrict__ dbias, bool accumulate_dbias, int64_t chunks,
    int64_t pixels, int channels, int groups) {
  DDPM_DYNAMIC_SHARED(float, smem);
  float* s_dz = smem;
  float* s_dzx = s_dz + channels;
  float* s_x = s_dzx + channels;
  float* s_a = s_x + channels;
  float* s_b = s_a + groups;
  float* s_split = s_b + groups;
  const int64_t n = blockIdx.x;
  const int cpg = channels / groups, split = group_kernel_split(channels, int(blockDim.x));
  const int lanes = split * channels;
  for (int i = int(threadIdx.x); i < lanes; i += int(blockDim.x)) {
    const int c = i % channels;
    float v_dz = 0.0f, v_dzx = 0.0f, v_x = 0.0f;
    for (int64_t k = i / channels; k < chunks; k += split) {
      const float* q = partial + (n * chunks + k) * 3 * channels;
      v_dz += q[c], v_dzx += q[channels + c], v_x += q[2 * channels + c];
    }
    if (split == 1) {
      s_dz[c] = v_dz, s_dzx[c] = v_dzx, s_x[c] = v_x;
    } else {
      s_split[i] = v_dz, s_split[lanes + i] = v_dzx, s_split[2 * lanes + i] = v_x;
    }
  }
  if (split > 1) {  // uniform across the block
    __syncthreads();
    for (int c = int(threadIdx.x); c < channels; c += int(blockDim.x)) {
      float v_dz = 0.0f, v_dzx = 0.0f, v_x = 0.0f;
      for (int i = c; i < lanes; i += channels)
        v_dz += s_split[i], v_dzx += s_split[lanes + i], v_x += s_split[2 * lanes + i];
      s_dz[c] = v_dz, s_dzx[c] = v_dzx, s_x[c] = v_x;
    }
  }
  __syncthreads();
  for (int c = int(threadIdx.x); c < channels; c += int(blockDim.x)) {
    sum_dz[n * channels + c] = s_dz[c];
    sum_dzx[n * channels + c] = s_dzx[c];
  }
  const float inv_count = 1.0f / float(pixels * cpg);
  for (int g = int(threadIdx.x); g < groups; g += int(blockDim.x)) {
    float a = 0.0f, b = 0.0f;
    for (int c = g * cpg; c < (g + 1) * cpg; ++c) {
      const float ga = gamma ? gamma[c] : 1.0f;
      a += ga * s_dz[c];
      b += ga * s_dzx[c];
    }
    s_a[g] = a * inv_count, s_b[g] = b * inv_count;
    ab[n * groups + g] = make_float2(s_a[g], s_b[g]);
  }
  if (!dbias) return;  // uniform across the block
  __syncthreads();
  for (int c = int(threadIdx.x); c < channels; c += int(blockDim.x)) {
    const int g = c / cpg;
    const float ga = gamma ? gamma[c] : 1.0f;
    const float v =
        rstd[n * groups + g] * (ga * s_dz[c] - float(pixels) * s_a[g] - s_b[g] * s_x[c]);
    float* o = dbias + n * channels + c;
    *o = accumulate_dbias ? *o + v : v;
  }
}

// dx over the tiles (when dx is given), and dgamma, dbeta += sums over the
// batch of sum_dzx, sum_dz, channel-strided over all blocks of the grid.
template <class T, int V>
__global__ void __launch_bounds__(kThreads, kBackwardBlocksPerSm<T>)
    gn_backward_dx_kernel(const T* __restrict__ x, const float* __restrict__ bias,
                          const float* __restrict__ gamma, const float* __restrict__ beta,
                          const float* __restrict__ mean, const float* __restrict__ rstd,
                          const T* __restrict__ dy, const float2* __restrict__ ab,
                          const float* __restrict__ sum_dz, const float* __restrict__ sum_dzx,
                          T* __restrict__ dx, float* __restrict__ dgamma, float* __restrict__ dbeta,
                          int64_t batch, int64_t pixels, int channels, int groups, int64_t rows,
                          bool silu, bool accumulate_dx) {
  if (dgamma || dbeta) {
    const int64_t block = int64_t(blockIdx.y) * gridDim.x + blockIdx.x;
    const int64_t stride = int64_t(gridDim.x) * gridDim.y * block_threads();
    for (int64_t c = block * block_threads() + thread_rank(); c < channels; c += stride) {
      float s_dzx = 0.0f, s_dz = 0.0f;
      for (int64_t n = 0; n < batch; ++n) {
        s_dzx += sum_dzx[n * channels + c];
        s_dz += sum_dz[n * channels + c];
      }
      if (dgamma) dgamma[c] += s_dzx;
      if (dbeta) dbeta[c] += s_dz;
    }
  }
  if (!dx) return;
  const Tile t = this_tile(pixels, rows);
  const int64_t base = t.n * pixels * channels;
  const int cpg = channels / groups;
  for (int cv = int(threadIdx.x); cv < channels / V; cv += int(blockDim.x)) {
    const int c0 = cv * V;
    const ChannelConstants<V> k =
        channel_constants<V>(bias, gamma, beta, mean, rstd, t.n, c0, channels, groups);
    float a[V], b[V];
    for (int j = 0; j < V; ++j) {
      const float2 q = ab[t.n * groups + (c0 + j) / cpg];
      a[j] = q.x, b[j] = q.y;
    }
    for (int64_t p = t.p0 + threadIdx.y; p < t.p1; p += blockDim.y) {
      const int64_t off = base + p * channels + c0;
      float xv[V], gv[V], out[V];
      bf16io::load<V>(x + off, xv);
      bf16io::load<V>(dy + off, gv);
      for (int j = 0; j < V; ++j) {
        float xhat, dz;
        normalized_and_grad(xv[j], gv[j], k.bias[j], k.mean[j], k.rstd[j], k.gamma[j], k.beta[j],
                            silu, xhat, dz);
        out[j] = k.rstd[j] * (dz * k.gamma[j] - a[j] - xhat * b[j]);  // dh
      }
      if (accumulate_dx) {  // old + dh, old first (as the CPU backend adds)
        float old[V];
        bf16io::load<V>(dx + off, old);
        for (int j = 0; j < V; ++j) out[j] = old[j] + out[j];
      }
      bf16io::store<V>(dx + off, out);
    }
  }
}

// ---------------------------------------------------------------- host side

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
inline size_t round_up_256(size_t b) {
  return (b + 255) / 256 * 256;
}

inline void validate(const char* who, const GroupNormShape& s) {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument(std::string(who) + ": " + what);
  };
  if (s.batch < 0 || s.batch > kMaxBatch)
    fail("batch " + std::to_string(s.batch) + " outside [0, " + std::to_string(kMaxBatch) + "]");
  if (s.pixels < 1) fail("pixels must be at least 1, got " + std::to_string(s.pixels));
  if (s.channels < 1 || s.channels > kMaxChannels)
    fail("channels " + std::to_string(s.channels) + " outside [1, " + std::to_string(kMaxChannels) +
         "]");
  if (s.groups < 1 || s.channels % s.groups != 0)
    fail(std::to_string(s.channels) + " channels are not divisible into " +
         std::to_string(s.groups) + " groups");
}

// The block shape of the tile kernels for vector width vec.
inline dim3 tile_block(int64_t channels, int vec) {
  const int vectors = int(channels / vec);
  const int tx = std::min(vectors, kThreads);
  return dim3(unsigned(tx), unsigned(kThreads / tx));
}

// The pixel cut, from the shape and T alone (not from pointer alignment), so
// the workspace size and the reduction order are fixed per shape. TY is the
// vector block's when C % V == 0 (V = 4 floats or 8 bf16), else the scalar one.
struct Chunking {
  int64_t rows, chunks;
};

template <class T>
Chunking chunking(const GroupNormShape& s) {
  constexpr int kV = bf16io::kVec16<T>;
  constexpr int64_t kTileElements = kTileBytes / int64_t(sizeof(T));
  const int64_t ty = tile_block(s.channels, s.channels % kV == 0 ? kV : 1).y;
  const int64_t cap = std::max(ty, kTileElements / s.channels / ty * ty);
  const int64_t fill = ceil_div(ceil_div(s.pixels, ceil_div(kTargetBlocks, s.batch)), ty) * ty;
  const int64_t rows = std::min(cap, fill);
  return {rows, ceil_div(s.pixels, rows)};
}

// Workspace regions (offsets in bytes, 256-aligned).
struct Workspace {
  size_t stats = 0, bytes_forward = 0;  // forward: float2 [N][chunks][G]
  size_t partial = 0, sum_dz = 0, sum_dzx = 0, ab = 0, bytes_backward = 0;  // backward
};

template <class T>
Workspace workspace_layout(const GroupNormShape& s) {
  const Chunking k = chunking<T>(s);
  const auto n = size_t(s.batch), c = size_t(s.channels), g = size_t(s.groups);
  Workspace w;
  w.bytes_forward = round_up_256(n * size_t(k.chunks) * g * sizeof(float2));
  w.partial = 0;
  w.sum_dz = round_up_256(n * size_t(k.chunks) * 3 * c * sizeof(float));
  w.sum_dzx = w.sum_dz + round_up_256(n * c * sizeof(float));
  w.ab = w.sum_dzx + round_up_256(n * c * sizeof(float));
  w.bytes_backward = w.ab + round_up_256(n * g * sizeof(float2));
  return w;
}

inline bool is_16b_aligned(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

inline void require(bool ok, const char* who, const char* what) {
  if (!ok) throw std::invalid_argument(std::string(who) + ": " + what);
}

// The launchers of group_norm.cuh / group_norm_bf16.cuh; `who` names the
// public function in error messages.
template <class T>
size_t workspace_bytes(const char* who, const GroupNormShape& s) {
  validate(who, s);
  if (s.batch == 0) return 0;
  const Workspace w = workspace_layout<T>(s);
  return std::max(w.bytes_forward, w.bytes_backward);
}

template <class T>
void forward(const char* who, const T* x, const float* bias, const float* gamma, const float* beta,
             T* y, float* mean, float* rstd, const GroupNormShape& s, float eps, bool silu,
             void* workspace, cudaStream_t stream) {
  constexpr int kV = bf16io::kVec16<T>;
  validate(who, s);
  if (s.batch == 0) return;
  require(x && y && mean && rstd, who, "x, y, mean and rstd must not be null");
  require(workspace && reinterpret_cast<uintptr_t>(workspace) % 16 == 0, who,
          "workspace must be non-null and 16-byte aligned");
  require((gamma == nullptr) == (beta == nullptr), who,
          "gamma and beta must both be given (affine) or both be null");
  require(eps > 0, who, "eps must be positive");
  const Chunking k = chunking<T>(s);
  const int c = int(s.channels), g = int(s.groups);
  const int vec = s.channels % kV == 0 && is_16b_aligned(x) && is_16b_aligned(y) ? kV : 1;
  const dim3 block = tile_block(s.channels, vec), grid(unsigned(k.chunks), unsigned(s.batch));
  auto* stats = static_cast<float2*>(workspace);

  const size_t stats_shmem = (2 * size_t(block.y) * c + 2 * size_t(c) + size_t(g)) * sizeof(float);
  if (vec == kV)
    DDPM_LAUNCH((gn_stats_kernel<T, kV>), grid, block, stats_shmem, stream, x, bias, stats,
                s.pixels, c, g, k.rows);
  else
    DDPM_LAUNCH((gn_stats_kernel<T, 1>), grid, block, stats_shmem, stream, x, bias, stats, s.pixels,
                c, g, k.rows);
  DDPM_CUDA_CHECK(cudaGetLastError());

  const int64_t pairs = s.batch * s.groups, warps = kThreads / 32;
  DDPM_LAUNCH(gn_finalize_kernel, unsigned(ceil_div(pairs, warps)), kThreads, 0, stream, stats,
              mean, rstd, pairs, g, k.chunks, k.rows, s.pixels, c / g, eps);
  DDPM_CUDA_CHECK(cudaGetLastError());

  if (vec == kV)
    DDPM_LAUNCH((gn_apply_kernel<T, kV>), grid, block, 0, stream, x, bias, gamma, beta, mean, rstd,
                y, s.pixels, c, g, k.rows, silu);
  else
    DDPM_LAUNCH((gn_apply_kernel<T, 1>), grid, block, 0, stream, x, bias, gamma, beta, mean, rstd,
                y, s.pixels, c, g, k.rows, silu);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void backward(const char* who, const T* x, const float* bias, const float* gamma, const float* beta,
              const float* mean, const float* rstd, const T* dy, T* dx, float* dbias, float* dgamma,
              float* dbeta, const GroupNormShape& s, bool silu, bool accumulate_dx,
              bool accumulate_dbias, void* workspace, cudaStream_t stream) {
  constexpr int kV = bf16io::kVec16<T>;
  validate(who, s);
  if (s.batch == 0 || !(dx || dbias || dgamma || dbeta)) return;
  require(x && mean && rstd && dy, who, "x, mean, rstd and dy must not be null");
  require(workspace && reinterpret_cast<uintptr_t>(workspace) % 16 == 0, who,
          "workspace must be non-null and 16-byte aligned");
  require(gamma || !(dgamma || dbeta), who, "dgamma/dbeta need gamma (an affine norm)");
  require(!(gamma && silu) || beta, who, "the SiLU backward of an affine norm needs beta");
  const Chunking k = chunking<T>(s);
  const Workspace w = workspace_layout<T>(s);
  const int c = int(s.channels), g = int(s.groups);
  const int vec =
      s.channels % kV == 0 && is_16b_aligned(x) && is_16b_aligned(dy) && is_16b_aligned(dx) ? kV
                                                                                            : 1;
  const dim3 block = tile_block(s.channels, vec), grid(unsigned(k.chunks), unsigned(s.batch));
  auto* base = static_cast<char*>(workspace);
  auto* partial = reinterpret_cast<float*>(base + w.partial);
  auto* sum_dz = reinterpret_cast<float*>(base + w.sum_dz);
  auto* sum_dzx = reinterpret_cast<float*>(base + w.sum_dzx);
  auto* ab = reinterpret_cast<float2*>(base + w.ab);
  const float* beta_read = silu ? beta : nullptr;  // read only for the SiLU derivative

  const size_t partial_shmem = 3 * size_t(block.y) * c * sizeof(float);
  if (vec == kV)
    DDPM_LAUNCH((gn_backward_partials_kernel<T, kV>), grid, block, partial_shmem, stream, x, bias,
                gamma, beta_read, mean, rstd, dy, partial, s.pixels, c, g, k.rows, silu);
  else
    DDPM_LAUNCH((gn_backward_partials_kernel<T, 1>), grid, block, partial_shmem, stream, x, bias,
                gamma, beta_read, mean, rstd, dy, partial, s.pixels, c, g, k.rows, silu);
  DDPM_CUDA_CHECK(cudaGetLastError());

  const int split = group_kernel_split(c, kThreads);
  const size_t group_shmem =
      (3 * size_t(c) + 2 * size_t(g) + (split > 1 ? 3 * size_t(split) * c : 0)) * sizeof(float);
  DDPM_LAUNCH(gn_backward_group_kernel, unsigned(s.batch), kThreads, group_shmem, stream, partial,
              gamma, rstd, sum_dz, sum_dzx, ab, dbias, accumulate_dbias, k.chunks, s.pixels, c, g);
  DDPM_CUDA_CHECK(cudaGetLastError());

  if (!dx && !dgamma && !dbeta) return;
  // Without dx only the parameter reduction runs: enough blocks for the channels.
  const dim3 dx_grid = dx ? grid : dim3(unsigned(ceil_div(c, kThreads)), 1);
  if (vec == kV)
    DDPM_LAUNCH((gn_backward_dx_kernel<T, kV>), dx_grid, block, 0, stream, x, bias, gamma,
                beta_read, mean, rstd, dy, ab, sum_dz, sum_dzx, dx, dgamma, dbeta, s.batch,
                s.pixels, c, g, k.rows, silu, accumulate_dx);
  else
    DDPM_LAUNCH((gn_backward_dx_kernel<T, 1>), dx_grid, block, 0, stream, x, bias, gamma, beta_read,
                mean, rstd, dy, ab, sum_dz, sum_dzx, dx, dgamma, dbeta, s.batch, s.pixels, c, g,
                k.rows, silu, accumulate_dx);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ddpm::kernels::detail::gn
