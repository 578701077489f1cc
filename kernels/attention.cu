// Fused multi-head self-attention, fp32, flash-attention style (contract:
// attention.cuh). q, k, v, o and their gradients are [N, T, heads * D]
// (channels-last tokens); the (sample, head) slice of one is a T x D matrix
// with row stride C = heads * D, or for q, k, v and their gradients the
// shape's qkv_stride (3C when they are column blocks of one packed [N, T, 3C]
// projection output). lse is [N, heads, T].
//
// Tiles. Every kernel owns a tile of `rows` rows of one (sample, head) slice
// (queries in the forward and dQ kernels, keys in the dK/dV kernel), holds it
// in shared memory for its lifetime, and streams the other side through
// shared memory `cols` rows at a time. Grid: one block per (sample * head,
// tile), flattened into gridDim.x (tile fastest, so the blocks reading one
// slice's K and V run together and find them in L2). A tile is
// [rows][D_bucket + 4] floats: columns D..D_bucket are zero, so the loops run
// over compile-time widths; the + 4 makes the row stride an odd number of
// float4s, so the 8 threads of a 128-bit shared-memory phase that read 8
// different rows hit 8 different bank quads (conflict-free).
//
// Two register-blocked products per streamed tile:
//   score tile (rows x cols, inner dim D): thread (rt, ct) owns rows
//     rt*SM .. rt*SM+SM-1 and columns ct, ct + CT, ... (CT = cols / SN
//     threads across a row, consecutive lanes); the inner loop loads SM + SN
//     float4s of d and does 4 SM SN FMAs. It stores the tile transposed,
//     [col][row] (row stride rows + 4: again conflict-free), as SM-wide vectors.
//   output tile (rows x D_bucket, inner dim cols): thread owns OM rows and ON
//     columns in float4 chunks spaced by the threads across a row (a warp's
//     chunks are contiguous: conflict-free shared reads, coalesced global
//     stores); per streamed row it loads OM/4 + ON/4 float4s and does OM ON FMAs.
// Head-dim buckets 16, 32, 64, 128, 256 fix the tile sizes (tables below), so
// the output accumulators stay in registers (64 floats a thread at most).
//
// Forward (attention_forward_kernel), per key/value tile:
//   S = Q K^T (score tile), in log2 units: s * scale * log2(e); keys >= T
//   masked to -inf; running row max m (shuffle max across the CT threads of
//   a row), alpha = 2^(m_old - m_new), P = 2^(s - m_new) into shared memory,
//   the thread's partial row sum l = l alpha + sum P; then O = O alpha + P V.
//   At the end O / l and lse = (m + log2 l) ln 2. T x T never leaves the SM.
//   3 barriers a tile (K, V in; P in; P, K, V consumed).
// Backward, 3 launches, no atomics (each output element has one writer and a
// fixed summation order, so results are bitwise reproducible):
//   attention_row_dot_kernel  Drow = rowsum(dO * O) [N, heads, T] into the
//                             workspace; a power-of-two group of lanes a row
//                             (rows are contiguous D-float runs of dO and O).
//   attention_dkdv_kernel     block = key tile; per query tile recompute
//                             S^T = K Q^T and dP^T = V dO^T, P = 2^(s - lse
//                             log2 e), dS = P (dP - Drow), then
//                             dV += P^T dO, dK += dS^T Q; dK = scale dK.
//   attention_dq_kernel       block = query tile; per key tile S, dP as
//                             above, dQ += dS K; dQ = scale dQ.
//   With null dk and dv the second is skipped, with null dq the third.
//
// Work: the forward does 4 N heads T^2 D FLOPs; the backward 14 (S and dP
// computed twice: a single-pass backward would need atomics or T x T scratch
// for dQ). Traffic: Q and O once, K and V once per query tile (from L2),
// lse 4 B a row. The CIFAR-10 shape (N 128, T 256, 1 head of 256) is 8.6
// GFLOP forward. These are SIMT FMAs (fp32 throughout, no tensor cores, so
// the code also runs under the emulator). The tile tables below have not
// been timed on a GPU yet. ptxas (CUDA 13, sm_90) gives them 96-254
// registers a thread, without spills except 16 bytes in the 256 forward.
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/attention.cuh"
#include "kernels/attention_checks.h"
#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"

// Full unrolling of the micro-tile loops keeps the accumulators in registers
// under nvcc; g++ (the emulator) does not know the pragma.
#if defined(__CUDACC__)
#define ATTENTION_UNROLL _Pragma("unroll")
#else
#define ATTENTION_UNROLL
#endif

namespace ddpm::kernels {

namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr int kRowDotThreads = 256;

// ---------------------------------------------------------------- tile tables

// The tile geometry of one kernel for one head-dim bucket (see the header
// comment): kRows rows owned by the block, kCols streamed, kThreads threads;
// score micro-tile kSM x kSN, output micro-tile kOM x kON.
template <int kDim, int kRows, int kCols, int kThreads, int kSM, int kSN, int kOM, int kON>
struct Tiles {
  static constexpr int dim = kDim, rows = kRows, cols = kCols, threads = kThreads;
  static constexpr int sm = kSM, sn = kSN, om = kOM, on = kON;
  static constexpr int score_col_threads = kCols / kSN;       // CT: threads sharing a score row
  static constexpr int out_col_threads = kDim / kON;          // threads sharing an output row
  static constexpr int out_vec = kON < 4 ? kON : 4;           // floats per output chunk
  static constexpr int out_step = out_col_threads * out_vec;  // columns between a thread's chunks
  static constexpr int ld = kDim + 4;                         // [row][d] tiles
  static constexpr int ld_scores = kRows + 4;                 // [col][row] score tiles

  static_assert(kRows / kSM * score_col_threads == kThreads, "score micro-tiles cover the tile");
  static_assert(kRows / kOM * out_col_threads == kThreads, "output micro-tiles cover the tile");
  static_assert(score_col_threads <= 32 && (score_col_threads & (score_col_threads - 1)) == 0,
                "a score row's threads are a power-of-two group of lanes (shuffle reductions)");
  static_assert(kSM == 1 || kSM == 2 || kSM == 4, "score columns are stored as 1-4 float vectors");
  static_assert(kOM % (kOM < 4 ? kOM : 4) == 0 && kON % out_vec == 0, "whole vectors");
  static_assert(ld % 8 == 4 && ld_scores % 8 == 4, "odd float4 row strides: conflict-free");
};

// Forward and dQ: rows = queries, cols = keys. Small heads take 64 x 64
// tiles; 128 and 256 shrink the key (and query) tile so two forward blocks
// fit an SM (76 KB and 105 KB of shared memory; dQ takes 111 and 138 KB).
template <int kBucket>
struct QueryTiles;
template <>
struct QueryTiles<16> : Tiles<16, 64, 64, 128, 4, 8, 4, 2> {};
template <>
struct QueryTiles<32> : Tiles<32, 64, 64, 128, 4, 8, 4, 4> {};
template <>
struct QueryTiles<64> : Tiles<64, 64, 64, 128, 4, 8, 4, 8> {};
template <>
struct QueryTiles<128> : Tiles<128, 64, 32, 128, 4, 4, 4, 16> {};
template <>
struct QueryTiles<256> : Tiles<256, 32, 32, 128, 4, 2, 4, 16> {};

// dK/dV: rows = keys, cols = queries; two output accumulators (dK, dV), so
// 256 takes 256 threads to stay at 64 accumulator floats a thread.
template <int kBucket>
struct KeyTiles;
template <>
struct KeyTiles<16> : Tiles<16, 64, 64, 128, 4, 8, 4, 2> {};
template <>
struct KeyTiles<32> : Tiles<32, 64, 64, 128, 4, 8, 4, 4> {};
template <>
struct KeyTiles<64> : Tiles<64, 64, 64, 128, 4, 8, 4, 8> {};
template <>
struct KeyTiles<128> : Tiles<128, 32, 32, 128, 4, 2, 4, 8> {};
template <>
struct KeyTiles<256> : Tiles<256, 32, 32, 256, 2, 2, 4, 8> {};

// Shared memory of each kernel, in floats (every region a multiple of 4).
template <class Cfg>
constexpr size_t forward_shared_floats() {  // Q [rows], K, V [cols], P^T, row scale
  return size_t(Cfg::rows + 2 * Cfg::cols) * Cfg::ld + size_t(Cfg::cols) * Cfg::ld_scores +
         Cfg::rows;
}
template <class Cfg>
constexpr size_t dq_shared_floats() {  // Q, dO [rows], K, V [cols], dS^T, lse, Drow
  return size_t(2 * Cfg::rows + 2 * Cfg::cols) * Cfg::ld + size_t(Cfg::cols) * Cfg::ld_scores +
         2 * Cfg::rows;
}
template <class Cfg>
constexpr size_t dkdv_shared_floats() {  // K, V [rows], Q, dO [cols], P^T, dS^T, lse, Drow
  return size_t(2 * Cfg::rows + 2 * Cfg::cols) * Cfg::ld + 2 * size_t(Cfg::cols) * Cfg::ld_scores +
         2 * Cfg::cols;
}

// ---------------------------------------------------------------- device helpers

// W consecutive floats of shared memory (W = 1, 2, 4; aligned to W floats).
template <int W>
__device__ inline void load_floats(const float* p, float* v) {
  if constexpr (W == 4) {
    const float4 t = *reinterpret_cast<const float4*>(p);
    v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
  } else if constexpr (W == 2) {
    const float2 t = *reinterpret_cast<const float2*>(p);
    v[0] = t.x, v[1] = t.y;
  } else {
    v[0] = p[0];
  }
}

template <int W>
__device__ inline void store_floats(float* p, const float* v) {
  if constexpr (W == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else if constexpr (W == 2) {
    *reinterpret_cast<float2*>(p) = make_float2(v[0], v[1]);
  } else {
    p[0] = v[0];
  }
}

// Copies `tile_rows` x Cfg::dim floats of a slice (row stride `stride`) into
// a [tile_rows][Cfg::ld] shared tile; rows >= valid_rows and columns >= dim
// become zero (so products over them add nothing and nothing reads the
// 0xFF-poisoned or stale contents). vec4: 128-bit loads (dim % 4 == 0, 16-byte
// aligned slice); consecutive threads take consecutive chunks of a row.
template <class Cfg, int kTileRows>
__device__ inline void load_tile(float* tile, const float* __restrict__ src, int64_t stride,
                                 int valid_rows, int dim, bool vec4) {
  const int tid = int(threadIdx.x);
  if (vec4) {
    constexpr int kChunks = Cfg::dim / 4;
    for (int u = tid; u < kTileRows * kChunks; u += Cfg::threads) {
      const int r = u / kChunks, c = u % kChunks * 4;
      float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (r < valid_rows && c < dim) v = *reinterpret_cast<const float4*>(src + r * stride + c);
      *reinterpret_cast<float4*>(tile + r * Cfg::ld + c) = v;
    }
  } else {
    for (int u = tid; u < kTileRows * Cfg::dim; u += Cfg::threads) {
      const int r = u / Cfg::dim, c = u % Cfg::dim;
      tile[r * Cfg::ld + c] = r < valid_rows && c < dim ? src[r * stride + c] : 0.0f;
    }
  }
}

// Score micro-tile: s[i][j] = sum_{d < depth} a[i * ld + d] * b[j * b_step + d]
// (a: the thread's first row of the resident tile, b: its first column's row
// of the streamed tile; depth a multiple of 4, zero-padded). One fp32 chain
// per element, d in order.
template <int M, int N, int kLd>
__device__ inline void score_tile(float (&s)[M][N], const float* a, const float* b, int b_step,
                                  int depth) {
  ATTENTION_UNROLL
  for (int i = 0; i < M; ++i) {
    ATTENTION_UNROLL
    for (int j = 0; j < N; ++j) s[i][j] = 0.0f;
  }
  for (int d = 0; d < depth; d += 4) {
    float4 av[M], bv[N];
    ATTENTION_UNROLL
    for (int i = 0; i < M; ++i) av[i] = *reinterpret_cast<const float4*>(a + i * kLd + d);
    ATTENTION_UNROLL
    for (int j = 0; j < N; ++j) bv[j] = *reinterpret_cast<const float4*>(b + j * b_step + d);
    ATTENTION_UNROLL
    for (int i = 0; i < M; ++i) {
      ATTENTION_UNROLL
      for (int j = 0; j < N; ++j) {
        float t = s[i][j];
        t += av[i].x * bv[j].x;
        t += av[i].y * bv[j].y;
        t += av[i].z * bv[j].z;
        t += av[i].w * bv[j].w;
        s[i][j] = t;
      }
    }
  }
}

// Stores a score micro-tile transposed: st[(col0 + j * col_step) * ld + row0 + i] = s[i][j].
template <int M, int N, int kLd>
__device__ inline void store_scores_transposed(float* st, const float (&s)[M][N], int row0,
                                               int col0, int col_step) {
  ATTENTION_UNROLL
  for (int j = 0; j < N; ++j) {
    float column[M];
    ATTENTION_UNROLL
    for (int i = 0; i < M; ++i) column[i] = s[i][j];
    store_floats<M>(st + (col0 + j * col_step) * kLd + row0, column);
  }
}

// Output micro-tile: acc[i][c * V + w] += sum_{k < count} at[k * lda + i] *
// x[k * ld + c * out_step + w]: at is a transposed score tile at the thread's
// first row, x a [k][d] tile at its first column (V = out_vec). One fp32
// chain per element, k in order.
template <class Cfg>
__device__ inline void output_tile(float (&acc)[Cfg::om][Cfg::on], const float* at, int lda,
                                   const float* x, int count) {
  constexpr int M = Cfg::om, N = Cfg::on, V = Cfg::out_vec, MV = M < 4 ? M : 4;
  for (int k = 0; k < count; ++k) {
    float av[M], xv[N];
    ATTENTION_UNROLL
    for (int i = 0; i < M; i += MV) load_floats<MV>(at + k * lda + i, av + i);
    ATTENTION_UNROLL
    for (int c = 0; c < N / V; ++c) load_floats<V>(x + k * Cfg::ld + c * Cfg::out_step, xv + c * V);
    ATTENTION_UNROLL
    for (int i = 0; i < M; ++i) {
      ATTENTION_UNROLL
      for (int n = 0; n < N; ++n) acc[i][n] += av[i] * xv[n];
    }
  }
}

// Writes (or adds) row_factor[i] * acc[i] to the slice rows row0 + i <
// valid_rows, columns < dim. vec: vector accesses (dim % 4 == 0, aligned).
template <class Cfg>
__device__ inline void store_output(float* __restrict__ dst, int64_t stride,
                                    const float (&acc)[Cfg::om][Cfg::on],
                                    const float (&row_factor)[Cfg::om], int row0, int col0,
                                    int valid_rows, int dim, bool vec, bool accumulate) {
  constexpr int V = Cfg::out_vec;
  ATTENTION_UNROLL
  for (int i = 0; i < Cfg::om; ++i) {
    if (row0 + i >= valid_rows) continue;
    float* out = dst + (row0 + i) * stride;
    ATTENTION_UNROLL
    for (int c = 0; c < Cfg::on / V; ++c) {
      const int col = col0 + c * Cfg::out_step;
      float v[V];
      ATTENTION_UNROLL
      for (int w = 0; w < V; ++w) v[w] = acc[i][c * V + w] * row_factor[i];
      if (vec) {
        if (col >= dim) continue;  // dim % 4 == 0: a chunk is all in or all out
        if (accumulate) {
          float old[V];
          load_floats<V>(out + col, old);
          ATTENTION_UNROLL
          for (int w = 0; w < V; ++w) v[w] += old[w];
        }
        store_floats<V>(out + col, v);
      } else {
        ATTENTION_UNROLL
        for (int w = 0; w < V; ++w)
          if (col + w < dim) out[col + w] = accumulate ? out[col + w] + v[w] : v[w];
      }
    }
  }
}

// Combines a value over the power-of-two group of kWidth lanes holding one
// score row (consecutive lanes, aligned groups); every lane gets the result.
template <int kWidth>
__device__ inline float row_max(float v) {
  ATTENTION_UNROLL
  for (int offset = kWidth / 2; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
template <int kWidth>
__device__ inline float row_sum(float v) {
  ATTENTION_UNROLL
  for (int offset = kWidth / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ inline int min_int(int a, int b) {
  return a < b ? a : b;
}

// The block's (sample * head, tile) and the offsets of its slice.
struct SliceTile {
  int64_t slice_head;  // sample * heads + head
  int64_t offset;      // of element (sample, token 0, head, 0) in a [N, T, C] tensor (o, dO)
  int64_t in_offset;   // the same in q, k, v and their gradients (row stride in_stride)
  int first;           // first row of the block's tile
};

__device__ inline SliceTile slice_tile(int tiles, int tile_rows, int tokens, int heads, int dim,
                                       int64_t in_stride) {
  const int64_t slice_head = int64_t(blockIdx.x) / tiles;
  const int tile = int(int64_t(blockIdx.x) % tiles);
  const int64_t n = slice_head / heads, h = slice_head % heads;
  return {slice_head, n * tokens * int64_t(heads) * dim + h * dim, n * tokens * in_stride + h * dim,
          tile * tile_rows};
}

// ---------------------------------------------------------------- kernels

template <class Cfg>
__global__ void __launch_bounds__(Cfg::threads)
    attention_forward_kernel(const float* __restrict__ q, const float* __restrict__ k,
                             const float* __restrict__ v, float* __restrict__ o,
                             float* __restrict__ lse, int tokens, int heads, int dim,
                             int64_t in_stride, float score_to_log2, int tiles, bool vec4) {
  constexpr int SM = Cfg::sm, SN = Cfg::sn, CT = Cfg::score_col_threads;
  DDPM_DYNAMIC_SHARED(float, smem);
  float* q_tile = smem;                                    // [rows][ld]
  float* k_tile = q_tile + Cfg::rows * Cfg::ld;            // [cols][ld]
  float* v_tile = k_tile + Cfg::cols * Cfg::ld;            // [cols][ld]
  float* p_tile = v_tile + Cfg::cols * Cfg::ld;            // [cols][ld_scores]: P^T
  float* row_scale = p_tile + Cfg::cols * Cfg::ld_scores;  // [rows]: alpha, then 1 / l

  const SliceTile st = slice_tile(tiles, Cfg::rows, tokens, heads, dim, in_stride);
  const int64_t stride = int64_t(heads) * dim;
  const int tid = int(threadIdx.x), depth = (dim + 3) / 4 * 4;
  const int s_row = tid / CT * SM, s_col = tid % CT;  // score micro-tile
  const int o_row = tid / Cfg::out_col_threads * Cfg::om;
  const int o_col = tid % Cfg::out_col_threads * Cfg::out_vec;  // output micro-tile
  const int valid_rows = min_int(Cfg::rows, tokens - st.first);

  load_tile<Cfg, Cfg::rows>(q_tile, q + st.in_offset + st.first * in_stride, in_stride, valid_rows,
                            dim, vec4);
  float m[SM], l[SM], acc[Cfg::om][Cfg::on] = {};
  ATTENTION_UNROLL
  for (int i = 0; i < SM; ++i) m[i] = -INFINITY, l[i] = 0.0f;

  for (int k0 = 0; k0 < tokens; k0 += Cfg::cols) {
    const int valid_keys = min_int(Cfg::cols, tokens - k0);
    load_tile<Cfg, Cfg::cols>(k_tile, k + st.in_offset + k0 * in_stride, in_stride, valid_keys, dim,
                              vec4);
    load_tile<Cfg, Cfg::cols>(v_tile, v + st.in_offset + k0 * in_stride, in_stride, valid_keys, dim,
                              vec4);
    __syncthreads();

    float s[SM][SN];
    score_tile<SM, SN, Cfg::ld>(s, q_tile + s_row * Cfg::ld, k_tile + s_col * Cfg::ld, CT * Cfg::ld,
                                depth);
    ATTENTION_UNROLL
    for (int i = 0; i < SM; ++i) {
      float tile_max = -INFINITY;
      ATTENTION_UNROLL
      for (int j = 0; j < SN; ++j) {
        s[i][j] = s_col + j * CT < valid_keys ? s[i][j] * score_to_log2 : -INFINITY;
        tile_max = fmaxf(tile_max, s[i][j]);
      }
      const float m_new = fmaxf(m[i], row_max<CT>(tile_max));  // finite: a tile has a key
      const float alpha = exp2f(m[i] - m_new);                 // 0 on the first tile
      float sum = 0.0f;
      ATTENTION_UNROLL
      for (int j = 0; j < SN; ++j) {
        s[i][j] = exp2f(s[i][j] - m_new);
        sum += s[i][j];
      }
      m[i] = m_new;
      l[i] = l[i] * alpha + sum;  // this thread's columns; summed over the row at the end
      if (s_col == 0) row_scale[s_row + i] = alpha;
    }
    store_scores_transposed<SM, SN, Cfg::ld_scores>(p_tile, s, s_row, s_col, CT);
    __syncthreads();

    ATTENTION_UNROLL
    for (int i = 0; i < Cfg::om; ++i) {
      const float alpha = row_scale[o_row + i];
      ATTENTION_UNROLL
      for (int n = 0; n < Cfg::on; ++n) acc[i][n] *= alpha;
    }
    output_tile<Cfg>(acc, p_tile + o_row, Cfg::ld_scores, v_tile + o_col, valid_keys);
    __syncthreads();  // K, V, P and row_scale are rewritten next
  }

  ATTENTION_UNROLL
  for (int i = 0; i < SM; ++i) {
    const float row_l = row_sum<CT>(l[i]);
    const int row = s_row + i;
    if (s_col == 0) {
      row_scale[row] = 1.0f / row_l;
      if (row < valid_rows)
        lse[st.slice_head * tokens + st.first + row] = (m[i] + log2f(row_l)) * kLn2;
    }
  }
  __syncthreads();
  float inv_l[Cfg::om];
  ATTENTION_UNROLL
  for (int i = 0; i < Cfg::om; ++i) inv_l[i] = row_scale[o_row + i];
  store_output<Cfg>(o + st.offset + st.first * stride, stride, acc, inv_l, o_row, o_col, valid_rows,
                    dim, vec4, false);
}

// drow[n, h, t] = sum_d dout[n, t, h, d] o[n, t, h, d]. The (n, t, h) rows are
// consecutive runs of `dim` floats; `group` lanes (a power of two <= 32) share
// one, striding over it, then combine by a shuffle tree.
__global__ void __launch_bounds__(kRowDotThreads)
    attention_row_dot_kernel(const float* __restrict__ dout, const float* __restrict__ o,
                             float* __restrict__ drow, int64_t rows, int tokens, int heads, int dim,
                             int group, bool vec4) {
  const int64_t thread = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t row = thread / group;
  const int lane = int(thread % group);
  float sum = 0.0f;
  if (row < rows) {
    const float* a = dout + row * dim;
    const float* b = o + row * dim;
    if (vec4) {
      for (int d = lane * 4; d < dim; d += group * 4) {
        const float4 x = *reinterpret_cast<const float4*>(a + d);
        const float4 y = *reinterpret_cast<const float4*>(b + d);
        sum += x.x * y.x;
        sum += x.y * y.y;
        sum += x.z * y.z;
        sum += x.w * y.w;
      }
    } else {
      for (int d = lane; d < dim; d += group) sum += a[d] * b[d];
    }
  }
  for (int offset = group / 2; offset > 0; offset /= 2)  // every lane of the warp takes part
    sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  if (row < rows && lane == 0) {
    const int64_t per_sample = int64_t(tokens) * heads;
    const int64_t n = row / per_sample, t = row % per_sample / heads, h = row % heads;
    drow[(n * heads + h) * tokens + t] = sum;
  }
}

// dK and dV of one key tile (rows = keys), looping over the query tiles.
template <class Cfg>
__global__ void __launch_bounds__(Cfg::threads)
    attention_dkdv_kernel(const float* __restrict__ q, const float* __restrict__ k,
                          const float* __restrict__ v, const float* __restrict__ dout,
                          const float* __restrict__ lse, const float* __restrict__ drow,
                          float* __restrict__ dk, float* __restrict__ dv, int tokens, int heads,
                          int dim, int64_t in_stride, float score_to_log2, float scale, int tiles,
                          bool vec4, bool accumulate_dk, bool accumulate_dv) {
  constexpr int SM = Cfg::sm, SN = Cfg::sn, CT = Cfg::score_col_threads;
  DDPM_DYNAMIC_SHARED(float, smem);
  float* k_tile = smem;                                    // [rows][ld]
  float* v_tile = k_tile + Cfg::rows * Cfg::ld;            // [rows][ld]
  float* q_tile = v_tile + Cfg::rows * Cfg::ld;            // [cols][ld]
  float* do_tile = q_tile + Cfg::cols * Cfg::ld;           // [cols][ld]
  float* p_tile = do_tile + Cfg::cols * Cfg::ld;           // [cols][ld_scores]: P (query-major)
  float* ds_tile = p_tile + Cfg::cols * Cfg::ld_scores;    // [cols][ld_scores]: dS
  float* lse_tile = ds_tile + Cfg::cols * Cfg::ld_scores;  // [cols], log2 units
  float* drow_tile = lse_tile + Cfg::cols;                 // [cols]

  const SliceTile st = slice_tile(tiles, Cfg::rows, tokens, heads, dim, in_stride);
  const int64_t stride = int64_t(heads) * dim;
  const int tid = int(threadIdx.x), depth = (dim + 3) / 4 * 4;
  const int s_row = tid / CT * SM, s_col = tid % CT;
  const int o_row = tid / Cfg::out_col_threads * Cfg::om;
  const int o_col = tid % Cfg::out_col_threads * Cfg::out_vec;
  const int valid_keys = min_int(Cfg::rows, tokens - st.first);
  const float* lse_slice = lse + st.slice_head * tokens;
  const float* drow_slice = drow + st.slice_head * tokens;

  load_tile<Cfg, Cfg::rows>(k_tile, k + st.in_offset + st.first * in_stride, in_stride, valid_keys,
                            dim, vec4);
  load_tile<Cfg, Cfg::rows>(v_tile, v + st.in_offset + st.first * in_stride, in_stride, valid_keys,
                            dim, vec4);
  float acc_dk[Cfg::om][Cfg::on] = {}, acc_dv[Cfg::om][Cfg::on] = {};

  for (int q0 = 0; q0 < tokens; q0 += Cfg::cols) {
    const int valid_queries = min_int(Cfg::cols, tokens - q0);
    load_tile<Cfg, Cfg::cols>(q_tile, q + st.in_offset + q0 * in_stride, in_stride, valid_queries,
                              dim, vec4);
    load_tile<Cfg, Cfg::cols>(do_tile, dout + st.offset + q0 * stride, stride, valid_queries, dim,
                              vec4);
    for (int i = tid; i < Cfg::cols; i += Cfg::threads) {
      lse_tile[i] = i < valid_queries ? lse_slice[q0 + i] * kLog2e : 0.0f;
      drow_tile[i] = i < valid_queries ? drow_slice[q0 + i] : 0.0f;
    }
    __syncthreads();

    float p[SM][SN], ds[SM][SN];  // S^T and dP^T, then P^T and dS^T
    score_tile<SM, SN, Cfg::ld>(p, k_tile + s_row * Cfg::ld, q_tile + s_col * Cfg::ld, CT * Cfg::ld,
                                depth);
    score_tile<SM, SN, Cfg::ld>(ds, v_tile + s_row * Cfg::ld, do_tile + s_col * Cfg::ld,
                                CT * Cfg::ld, depth);
    ATTENTION_UNROLL
    for (int j = 0; j < SN; ++j) {
      const int col = s_col + j * CT;
      const float row_lse = lse_tile[col], row_dot = drow_tile[col];
      ATTENTION_UNROLL
      for (int i = 0; i < SM; ++i) {
        // No masks: queries past T (columns >= valid_queries) are never read
        // by the products below, keys past T are rows never stored.
        p[i][j] = exp2f(p[i][j] * score_to_log2 - row_lse);
        ds[i][j] = p[i][j] * (ds[i][j] - row_dot);
      }
    }
    store_scores_transposed<SM, SN, Cfg::ld_scores>(p_tile, p, s_row, s_col, CT);
    store_scores_transposed<SM, SN, Cfg::ld_scores>(ds_tile, ds, s_row, s_col, CT);
    __syncthreads();

    if (dv)
      output_tile<Cfg>(acc_dv, p_tile + o_row, Cfg::ld_scores, do_tile + o_col, valid_queries);
    if (dk)
      output_tile<Cfg>(acc_dk, ds_tile + o_row, Cfg::ld_scores, q_tile + o_col, valid_queries);
    __syncthreads();  // Q, dO, P, dS, lse and Drow are rewritten next
  }

  float ones[Cfg::om], scales[Cfg::om];
  ATTENTION_UNROLL
  for (int i = 0; i < Cfg::om; ++i) ones[i] = 1.0f, scales[i] = scale;
  const int64_t first = st.in_offset + st.first * in_stride;
  if (dv)
    store_output<Cfg>(dv + first, in_stride, acc_dv, ones, o_row, o_col, valid_keys, dim, vec4,
                      accumulate_dv);
  if (dk)
    store_output<Cfg>(dk + first, in_stride, acc_dk, scales, o_row, o_col, valid_keys, dim, vec4,
                      accumulate_dk);
}

// dQ of one query tile (rows = queries), looping over the key tiles.
template <class Cfg>
__global__ void __launch_bounds__(Cfg::threads)
    attention_dq_kernel(const float* __restrict__ q, const float* __restrict__ k,
                        const float* __restrict__ v, const float* __restrict__ dout,
                        const float* __restrict__ lse, const float* __restrict__ drow,
                        float* __restrict__ dq, int tokens, int heads, int dim, int64_t in_stride,
                        float score_to_log2, float scale, int tiles, bool vec4, bool accumulate) {
  constexpr int SM = Cfg::sm, SN = Cfg::sn, CT = Cfg::score_col_threads;
  DDPM_DYNAMIC_SHARED(float, smem);
  float* q_tile = smem;                                    // [rows][ld]
  float* do_tile = q_tile + Cfg::rows * Cfg::ld;           // [rows][ld]
  float* k_tile = do_tile + Cfg::rows * Cfg::ld;           // [cols][ld]
  float* v_tile = k_tile + Cfg::cols * Cfg::ld;            // [cols][ld]
  float* ds_tile = v_tile + Cfg::cols * Cfg::ld;           // [cols][ld_scores]: dS^T
  float* lse_tile = ds_tile + Cfg::cols * Cfg::ld_scores;  // [rows], log2 units
  float* drow_tile = lse_tile + Cfg::rows;                 // [rows]

  const SliceTile st = slice_tile(tiles, Cfg::rows, tokens, heads, dim, in_stride);
  const int64_t stride = int64_t(heads) * dim;
  const int tid = int(threadIdx.x), depth = (dim + 3) / 4 * 4;
  const int s_row = tid / CT * SM, s_col = tid % CT;
  const int o_row = tid / Cfg::out_col_threads * Cfg::om;
  const int o_col = tid % Cfg::out_col_threads * Cfg::out_vec;
  const int valid_rows = min_int(Cfg::rows, tokens - st.first);
  const int64_t first = st.in_offset + st.first * in_stride;

  load_tile<Cfg, Cfg::rows>(q_tile, q + first, in_stride, valid_rows, dim, vec4);
  load_tile<Cfg, Cfg::rows>(do_tile, dout + st.offset + st.first * stride, stride, valid_rows, dim,
                            vec4);
  for (int i = tid; i < Cfg::rows; i += Cfg::threads) {
    const int64_t at = st.slice_head * tokens + st.first + i;
    lse_tile[i] = i < valid_rows ? lse[at] * kLog2e : 0.0f;
    drow_tile[i] = i < valid_rows ? drow[at] : 0.0f;
  }
  __syncthreads();
  float row_lse[SM], row_dot[SM], acc[Cfg::om][Cfg::on] = {};
  ATTENTION_UNROLL
  for (int i = 0; i < SM; ++i) row_lse[i] = lse_tile[s_row + i], row_dot[i] = drow_tile[s_row + i];

  for (int k0 = 0; k0 < tokens; k0 += Cfg::cols) {
    const int valid_keys = min_int(Cfg::cols, tokens - k0);
    load_tile<Cfg, Cfg::cols>(k_tile, k + st.in_offset + k0 * in_stride, in_stride, valid_keys, dim,
                              vec4);
    load_tile<Cfg, Cfg::cols>(v_tile, v + st.in_offset + k0 * in_stride, in_stride, valid_keys, dim,
                              vec4);
    __syncthreads();

    float p[SM][SN], ds[SM][SN];  // S and dP, then dS
    score_tile<SM, SN, Cfg::ld>(p, q_tile + s_row * Cfg::ld, k_tile + s_col * Cfg::ld, CT * Cfg::ld,
                                depth);
    score_tile<SM, SN, Cfg::ld>(ds, do_tile + s_row * Cfg::ld, v_tile + s_col * Cfg::ld,
                                CT * Cfg::ld, depth);
    ATTENTION_UNROLL
    for (int i = 0; i < SM; ++i) {
      ATTENTION_UNROLL
      for (int j = 0; j < SN; ++j) {
        // No mask: keys past T (columns >= valid_keys) are never read by dQ += dS K.
        ds[i][j] = exp2f(p[i][j] * score_to_log2 - row_lse[i]) * (ds[i][j] - row_dot[i]);
      }
    }
    store_scores_transposed<SM, SN, Cfg::ld_scores>(ds_tile, ds, s_row, s_col, CT);
    __syncthreads();

    output_tile<Cfg>(acc, ds_tile + o_row, Cfg::ld_scores, k_tile + o_col, valid_keys);
    __syncthreads();  // K, V and dS are rewritten next
  }

  float scales[Cfg::om];
  ATTENTION_UNROLL
  for (int i = 0; i < Cfg::om; ++i) scales[i] = scale;
  store_output<Cfg>(dq + first, in_stride, acc, scales, o_row, o_col, valid_rows, dim, vec4,
                    accumulate);
}

// ---------------------------------------------------------------- host side

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

using attention_checks::check_scale;
using attention_checks::check_shape;
using attention_checks::qkv_stride_of;
using attention_checks::require;

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;  // null counts as aligned
}

// The head-dim bucket: the smallest tile width >= head_dim.
int bucket_of(int64_t head_dim) {
  for (int b : {16, 32, 64, 128}) {
    if (head_dim <= b) return b;
  }
  return 256;
}

// Lets `kernel` take `bytes` of dynamic shared memory (needed above 48 KB).
void allow_shared(const void* kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    DDPM_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

// What every kernel launch of one call shares.
struct Launch {
  int tokens, heads, dim;
  int64_t in_stride;  // of q, k, v and their gradients
  int64_t slices;     // batch * heads
  float score_to_log2, scale;
  bool vec4;
  cudaStream_t stream;
};

template <int kBucket>
void launch_forward(const Launch& a, const float* q, const float* k, const float* v, float* o,
                    float* lse) {
  using Cfg = QueryTiles<kBucket>;
  const int tiles = int(ceil_div(a.tokens, Cfg::rows));
  const size_t bytes = forward_shared_floats<Cfg>() * sizeof(float);
  allow_shared(reinterpret_cast<const void*>(&attention_forward_kernel<Cfg>), bytes);
  DDPM_LAUNCH(attention_forward_kernel<Cfg>, unsigned(a.slices * tiles), Cfg::threads, bytes,
              a.stream, q, k, v, o, lse, a.tokens, a.heads, a.dim, a.in_stride, a.score_to_log2,
              tiles, a.vec4);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

template <int kBucket>
void launch_backward(const Launch& a, const float* q, const float* k, const float* v,
                     const float* dout, const float* lse, const float* drow, float* dq, float* dk,
                     float* dv, bool accumulate_dq, bool accumulate_dk, bool accumulate_dv) {
  if (dk || dv) {
    using Cfg = KeyTiles<kBucket>;
    const int tiles = int(ceil_div(a.tokens, Cfg::rows));
    const size_t bytes = dkdv_shared_floats<Cfg>() * sizeof(float);
    allow_shared(reinterpret_cast<const void*>(&attention_dkdv_kernel<Cfg>), bytes);
    DDPM_LAUNCH(attention_dkdv_kernel<Cfg>, unsigned(a.slices * tiles), Cfg::threads, bytes,
                a.stream, q, k, v, dout, lse, drow, dk, dv, a.tokens, a.heads, a.dim, a.in_stride,
                a.score_to_log2, a.scale, tiles, a.vec4, accumulate_dk, accumulate_dv);
    DDPM_CUDA_CHECK(cudaGetLastError());
  }
  if (dq) {
    using Cfg = QueryTiles<kBucket>;
    const int tiles = int(ceil_div(a.tokens, Cfg::rows));
    const size_t bytes = dq_shared_floats<Cfg>() * sizeof(float);
    allow_shared(reinterpret_cast<const void*>(&attention_dq_kernel<Cfg>), bytes);
    DDPM_LAUNCH(attention_dq_kernel<Cfg>, unsigned(a.slices * tiles), Cfg::threads, bytes, a.stream,
                q, k, v, dout, lse, drow, dq, a.tokens, a.heads, a.dim, a.in_stride,
                a.score_to_log2, a.scale, tiles, a.vec4, accumulate_dq);
    DDPM_CUDA_CHECK(cudaGetLastError());
  }
}

Launch make_launch(const AttentionShape& s, float scale, bool vec4, cudaStream_t stream) {
  return {int(s.tokens),
          int(s.heads),
          int(s.head_dim),
          qkv_stride_of(s),
          s.batch * s.heads,
          scale * kLog2e,
          scale,
          vec4,
          stream};
}

}  // namespace

void validate(const AttentionShape& s) {
  check_shape("attention", s);
}

size_t attention_workspace_bytes(const AttentionShape& s) {
  return attention_checks::workspace_bytes("attention_workspace_bytes", s);
}

void attention_forward(const float* q, const float* k, const float* v, float* o, float* lse,
                       const AttentionShape& s, float scale, cudaStream_t stream) {
  const char* who = "attention_forward";
  check_shape(who, s);
  check_scale(who, scale);
  if (s.batch == 0) return;
  require(q && k && v && o && lse, who, "q, k, v, o and lse must not be null");
  const bool vec4 = s.head_dim % 4 == 0 && qkv_stride_of(s) % 4 == 0 && aligned16(q) &&
                    aligned16(k) && aligned16(v) && aligned16(o);
  const Launch a = make_launch(s, scale, vec4, stream);
  switch (bucket_of(s.head_dim)) {
    case 16:
      return launch_forward<16>(a, q, k, v, o, lse);
    case 32:
      return launch_forward<32>(a, q, k, v, o, lse);
    case 64:
      return launch_forward<64>(a, q, k, v, o, lse);
    case 128:
      return launch_forward<128>(a, q, k, v, o, lse);
    default:
      return launch_forward<256>(a, q, k, v, o, lse);
  }
}

void attention_backward(const float* q, const float* k, const float* v, const float* o,
                        const float* lse, const float* dout, float* dq, float* dk, float* dv,
                        const AttentionShape& s, float scale, bool accumulate_dq,
                        bool accumulate_dk, bool accumulate_dv, void* workspace,
                        cudaStream_t stream) {
  const char* who = "attention_backward";
  check_shape(who, s);
  check_scale(who, scale);
  if (s.batch == 0 || !(dq || dk || dv)) return;
  require(q && k && v && o && lse && dout, who, "q, k, v, o, lse and dout must not be null");
  require(workspace && reinterpret_cast<uintptr_t>(workspace) % 16 == 0, who,
          "workspace must be non-null and 16-byte aligned");
  auto* drow = static_cast<float*>(workspace);
  const bool vec4 = s.head_dim % 4 == 0 && qkv_stride_of(s) % 4 == 0 && aligned16(q) &&
                    aligned16(k) && aligned16(v) && aligned16(o) && aligned16(dout) &&
                    aligned16(dq) && aligned16(dk) && aligned16(dv);

  // Drow: `group` lanes a row, enough to cover it in one pass of vectors (<= 32).
  const int64_t rows = s.batch * s.tokens * s.heads;
  const int64_t vectors = vec4 ? s.head_dim / 4 : s.head_dim;
  int group = 1;
  while (group < 32 && group < vectors) group *= 2;
  DDPM_LAUNCH(attention_row_dot_kernel, unsigned(ceil_div(rows * group, kRowDotThreads)),
              kRowDotThreads, 0, stream, dout, o, drow, rows, int(s.tokens), int(s.heads),
              int(s.head_dim), group, vec4);
  DDPM_CUDA_CHECK(cudaGetLastError());

  const Launch a = make_launch(s, scale, vec4, stream);
  switch (bucket_of(s.head_dim)) {
    case 16:
      return launch_backward<16>(a, q, k, v, dout, lse, drow, dq, dk, dv, accumulate_dq,
                                 accumulate_dk, accumulate_dv);
    case 32:
      return launch_backward<32>(a, q, k, v, dout, lse, drow, dq, dk, dv, accumulate_dq,
                                 accumulate_dk, accumulate_dv);
    case 64:
      return launch_backward<64>(a, q, k, v, dout, lse, drow, dq, dk, dv, accumulate_dq,
                                 accumulate_dk, accumulate_dv);
    case 128:
      return launch_backward<128>(a, q, k, v, dout, lse, drow, dq, dk, dv, accumulate_dq,
                                  accumulate_dk, accumulate_dv);
    default:
      return launch_backward<256>(a, q, k, v, dout, lse, drow, dq, dk, dv, accumulate_dq,
                                  accumulate_dk, accumulate_dv);
  }
}

}  // namespace ddpm::kernels
