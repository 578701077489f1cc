// Fused multi-head self-attention, bf16 tensors on tensor cores,
// FlashAttention-2 style (contract: attention_bf16.cuh; the fp32 twin is
// attention.cu, whose structure this follows).
//
// Slices and tiles. The (sample, head) slice of q, k, v (or their gradients)
// is a T x D matrix with row stride qkv_stride, of o and dout one with row
// stride C = heads * D; lse and the backward's D statistic are [N, heads, T].
// Every kernel owns a tile of 64 rows of one slice (queries in the forward and
// dQ kernels, keys in the dK/dV kernel): 4 warps, each owning 16 rows, the
// M = 16 of mma.sync m16n8k16. The other side streams through shared memory
// `cols` rows at a time. Grid: one block per (slice, tile), flattened into
// gridDim.x with the tile fastest, so the blocks reading one slice's K and V
// run together and find them in L2.
//
// Head-dim buckets 32, 64, 128, 256 (kDim): tiles are kDim columns wide,
// columns head_dim..kDim-1 zero-filled at the copy (so they add nothing to the
// products and are never stored).
//
// Shared memory. A tile is [rows][kDim] bf16, each row kDim / 8 16-byte chunks,
// no padding; chunk c of row r is stored at chunk swizzle(r, c): for rows of 8+
// chunks (kDim >= 64), c ^ (r % 8) within each aligned group of 8 chunks; for
// 4-chunk rows (kDim 32: two rows per 128-byte line), c ^ ((r / 2) % 4). Row
// starts are 64-byte multiples, so a chunk's bank quad is its position in its
// 128-byte line. Why that is conflict-free:
//   - ldmatrix: each 8x8 matrix is 8 consecutive rows (starting at a multiple
//     of 8) at one logical chunk; the swizzle sends them to the 8 different
//     positions of a line (kDim >= 64: r % 8 takes every value; kDim 32: the
//     pair (r % 2, (r / 2) % 4) does), so the 8 row reads cover all 32 banks.
//   - cp.async 16-byte stores: consecutive threads take consecutive chunks of
//     a row (or of two rows, kDim 32), so each 8-thread phase writes the 8
//     chunks of one 128-byte line, permuted: all 32 banks once.
//
// Products, per warp (16 rows): score-like products S = A B^T (A: the warp's
// 16 rows of a resident tile, B: a streamed tile as [n][k], both read with
// ldmatrix.x4, non-transposed: an x4 gives A's 16x16 fragment, or B's k 0-15
// for two 8-column blocks), and value-like products O += P X (P: an fp32
// score accumulator rounded to bf16 and repacked as A fragments in registers,
// the FA2 trick: the C layout of two adjacent n-blocks is the A layout of one
// k step; X: a streamed tile [k][n], read with ldmatrix.x4.trans).
//
// Forward (attention_bf16_forward_kernel), per key tile of `cols` keys: S =
// Q K^T in fp32, scaled to log2 units (s * scale * log2 e), keys >= T masked to
// -inf before the max; running row max m (a quad of lanes shares a row: two
// shuffles), alpha = 2^(m_old - m_new), P = 2^(s - m_new), l = l alpha + rowsum
// P (fp32, P before rounding), O = O alpha + bf16(P) V. At the end O / l is
// stored as bf16, lse = (m + log2 l) ln 2 as fp32. K and V tiles are double
// buffered with cp.async (Q, K0, V0 in the first group; tile j + 1's copies
// are in flight while tile j is computed). Q stays in shared memory; its
// fragments are reloaded each tile (registers go to the O accumulator: 16 x
// kDim fp32 a warp, 128 a lane at kDim 256).
//
// Backward, 3 launches, no atomics: each output element has one writer and a
// fixed summation order, so results are bitwise reproducible.
//   attention_bf16_row_dot_kernel  D = rowsum(dO * O) (fp32, from the bf16
//                                  tensors) into the workspace.
//   attention_bf16_dkdv_kernel     block = 64 keys (each warp 16); per query
//                                  tile (Q, dO, lse, D double-buffered):
//                                  S^T = K Q^T, dP^T = V dO^T, P^T = 2^(S^T
//                                  log2 e scale - lse log2 e), dS^T = P^T (dP^T
//                                  - D), dV += bf16(P^T) dO, dK += bf16(dS^T) Q;
//                                  dK = scale dK. P^T and dS^T never leave
//                                  registers. At kDim 256 the dK, dV columns
//                                  are split in two blocks (128 each, S and dP
//                                  computed by both) so the two accumulators
//                                  stay at 128 fp32 a lane.
//   attention_bf16_dq_kernel       block = 64 queries; per key tile (K, V
//                                  double-buffered): S, dP = dO V^T, dS as
//                                  above, dQ += bf16(dS) K; dQ = scale dQ.
// With null dk and dv the second is skipped, with null dq the third.
//
// Fallback: tensors that are not 16-byte aligned, or a head_dim or stride not
// a multiple of 8, are staged by plain 2-byte loads into the same tiles and
// stored 2 bytes at a time (`vec` false); the arithmetic is the same.
// Emulator: mma, ldmatrix and cp.async run as their portable twins (see
// warp_mma.cuh, ldmatrix.cuh, async_copy.cuh).
//
// Resources (ptxas, CUDA 13, sm_90; not yet timed on a GPU), registers a
// thread / dynamic shared memory, no spills anywhere:
//   kDim           32           64           128          256
//   forward     76 / 20 KB  127 / 40 KB  174 / 80 KB  242 / 96 KB
//   dK/dV      128 / 25 KB  170 / 49 KB  249 / 64.5 KB 218 / 96.25 KB (x2 column halves)
//   dQ         124 / 24 KB  155 / 48 KB  157 / 64 KB  222 / 96 KB
// (above 48 KB the launcher opts in with cudaFuncAttributeMaxDynamicSharedMemorySize).
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "kernels/async_copy.cuh"
#include "kernels/attention_bf16.cuh"
#include "kernels/attention_checks.h"
#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "kernels/ldmatrix.cuh"
#include "kernels/warp_mma.cuh"

#if defined(__CUDACC__)
#define ATTN_UNROLL _Pragma("unroll")
#else
#define ATTN_UNROLL
#endif

namespace ddpm::kernels {

namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr int kTileRows = 64;  // rows a block owns: 4 warps of 16
constexpr int kThreads = 128;
constexpr int kRowDotThreads = 256;
constexpr int kRowDotGroup = 8;  // lanes per row of the D statistic

// ---------------------------------------------------------------- geometry

// kDim: the head-dim bucket; kCols: rows of the streamed tile; kOut: output
// columns a block computes (the dK/dV split at 256), kOutChunk: n-blocks of 8
// per mma grid call (bounds the B fragments live at once).
template <int kDim_, int kCols_, int kOut_ = kDim_>
struct Geometry {
  static constexpr int dim = kDim_, cols = kCols_, out = kOut_;
  static constexpr int out_blocks = out / 8;
  static constexpr int nc = out_blocks < 8 ? out_blocks : 8;  // n-blocks a grid call
  static constexpr int out_groups = out_blocks / nc;
  static_assert(dim % 32 == 0 && cols % 16 == 0 && out % 32 == 0 && dim % out == 0);
};

// Forward: 64 queries, keys in tiles of 64 (32 at kDim 256: 96 KB of shared memory).
template <int kDim>
using ForwardGeometry = Geometry<kDim, (kDim <= 128 ? 64 : 32)>;
// The backward keeps two score accumulators (S, dP) live next to its output
// accumulators, so its streamed tiles shrink as kDim grows (ptxas, sm_90:
// 64 -> 32 -> 16 rows keeps every kernel under 255 registers without spills).
template <int kDim>
constexpr int backward_cols() {
  return kDim <= 64 ? 64 : kDim <= 128 ? 32 : 16;
}
// dQ: 64 queries, keys in tiles of backward_cols.
template <int kDim>
using DqGeometry = Geometry<kDim, backward_cols<kDim>()>;
// dK/dV: 64 keys, queries in tiles of backward_cols, output columns <= 128.
template <int kDim>
using DkdvGeometry = Geometry<kDim, backward_cols<kDim>(), (kDim <= 128 ? kDim : 128)>;

template <class G>
constexpr size_t forward_shared_bytes() {  // Q, then 2 stages of K, V
  return size_t(kTileRows + 2 * 2 * G::cols) * G::dim * 2;
}
template <class G>
constexpr size_t dq_shared_bytes() {  // Q, dO, then 2 stages of K, V
  return size_t(2 * kTileRows + 2 * 2 * G::cols) * G::dim * 2;
}
template <class G>
constexpr size_t dkdv_shared_bytes() {  // K, V, 2 stages of Q, dO, then 2 of lse, D (fp32)
  return size_t(2 * kTileRows + 2 * 2 * G::cols) * G::dim * 2 + 2 * 2 * G::cols * sizeof(float);
}

// ---------------------------------------------------------------- device helpers

// The stored chunk of logical chunk c in row r (see the top of the file).
template <int kChunks>
__device__ inline int swizzle(int r, int c) {
  if constexpr (kChunks >= 8) {
    return (c & ~7) | ((c ^ r) & 7);
  } else {
    static_assert(kChunks == 4, "rows of 4 or a multiple of 8 chunks");
    return c ^ ((r >> 1) & 3);
  }
}

// Address of (row r, logical chunk c) of a [rows][kDim] tile.
template <int kDim>
__device__ inline uint16_t* chunk_at(uint16_t* tile, int r, int c) {
  return tile + r * kDim + swizzle<kDim / 8>(r, c) * 8;
}
template <int kDim>
__device__ inline const uint16_t* chunk_at(const uint16_t* tile, int r, int c) {
  return tile + r * kDim + swizzle<kDim / 8>(r, c) * 8;
}

__device__ inline int min_int(int a, int b) {
  return a < b ? a : b;
}

__device__ inline float bf16_to_float(uint16_t x) {
  return __uint_as_float(uint32_t(x) << 16);
}

// Copies kRows x kDim elements of a slice (row stride `stride`) into a
// swizzled [kRows][kDim] tile; rows >= valid_rows and columns >= dim become
// zero. vec: 16-byte cp.async copies (zero fill for what is outside), the
// caller commits and waits; else plain loads and a 16-byte shared store.
template <int kDim, int kRows>
__device__ inline void load_tile(uint16_t* tile, const uint16_t* __restrict__ src, int64_t stride,
                                 int valid_rows, int dim, bool vec) {
  constexpr int W = kDim / 8;
  for (int u = int(threadIdx.x); u < kRows * W; u += kThreads) {
    const int r = u / W, c = u % W;
    uint16_t* dst = chunk_at<kDim>(tile, r, c);
    if (vec) {
      const bool ok = r < valid_rows && c * 8 < dim;
      async_copy::copy16(dst, ok ? src + r * stride + c * 8 : src, ok);
    } else {
      uint32_t w[4];
      ATTN_UNROLL
      for (int e = 0; e < 8; e += 2) {
        const int col = c * 8 + e;
        const uint32_t lo = r < valid_rows && col < dim ? src[r * stride + col] : 0u;
        const uint32_t hi = r < valid_rows && col + 1 < dim ? src[r * stride + col + 1] : 0u;
        w[e / 2] = lo | (hi << 16);
      }
      *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
}

// acc[0][n] (16 x cols, C layout) = A B^T: A = rows a_row0..+15 of a
// [..][kDim] tile, B = rows 0..cols-1 of another, the product over kDim.
template <int kDim, int kCols>
__device__ inline void product_abt(float (&acc)[1][kCols / 8][4], const uint16_t* a_tile,
                                   int a_row0, const uint16_t* b_tile) {
  const int lane = int(threadIdx.x) & 31, j = lane >> 3, r8 = lane & 7;
  ATTN_UNROLL
  for (int n = 0; n < kCols / 8; ++n) {
    ATTN_UNROLL
    for (int e = 0; e < 4; ++e) acc[0][n][e] = 0.0f;
  }
  ATTN_UNROLL
  for (int kk = 0; kk < kDim / 16; ++kk) {
    // A: matrices (rows 0-7, k 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15).
    uint32_t a[1][4];
    const int ar = a_row0 + (j & 1) * 8 + r8;
    ldsm::x4(a[0], chunk_at<kDim>(a_tile, ar, 2 * kk + (j >> 1)));
    // B: per 16 rows, matrices (rows 0-7, k 0-7), (0-7, 8-15), (8-15, 0-7),
    // (8-15, 8-15): registers 0, 1 of n-block 2 nb2 and of 2 nb2 + 1.
    uint32_t b[kCols / 8][2];
    ATTN_UNROLL
    for (int nb2 = 0; nb2 < kCols / 16; ++nb2) {
      uint32_t r[4];
      const int br = nb2 * 16 + (j >> 1) * 8 + r8;
      ldsm::x4(r, chunk_at<kDim>(b_tile, br, 2 * kk + (j & 1)));
      b[2 * nb2][0] = r[0], b[2 * nb2][1] = r[1];
      b[2 * nb2 + 1][0] = r[2], b[2 * nb2 + 1][1] = r[3];
    }
    mma::mma_m16n8k16_bf16_grid<1, kCols / 8>(acc, a, b);
  }
}

// acc (16 x G::out, in G::out_groups groups of G::nc n-blocks) += bf16(p) X:
// p a 16 x kK score accumulator (C layout), X = rows 0..kK-1 of a [..][kDim]
// tile at columns col0..col0 + G::out - 1.
template <class G, int kK>
__device__ inline void product_px(float (&acc)[G::out_groups][1][G::nc][4],
                                  const float (&p)[1][kK / 8][4], const uint16_t* x_tile,
                                  int col0) {
  const int lane = int(threadIdx.x) & 31, j = lane >> 3, r8 = lane & 7;
  ATTN_UNROLL
  for (int kk = 0; kk < kK / 16; ++kk) {
    // The C fragments of n-blocks 2 kk and 2 kk + 1 are A's (rows g, g + 8) x
    // (k 2t.., 2t + 8..) registers.
    uint32_t a[1][4];
    a[0][0] = mma::pack_bf16x2(p[0][2 * kk][0], p[0][2 * kk][1]);
    a[0][1] = mma::pack_bf16x2(p[0][2 * kk][2], p[0][2 * kk][3]);
    a[0][2] = mma::pack_bf16x2(p[0][2 * kk + 1][0], p[0][2 * kk + 1][1]);
    a[0][3] = mma::pack_bf16x2(p[0][2 * kk + 1][2], p[0][2 * kk + 1][3]);
    const int xr = kk * 16 + (j & 1) * 8 + r8;
    ATTN_UNROLL
    for (int grp = 0; grp < G::out_groups; ++grp) {
      // B (k = rows, n = columns) by .trans: matrices (rows 0-7, n-block 2np),
      // (8-15, 2np), (0-7, 2np + 1), (8-15, 2np + 1).
      uint32_t b[G::nc][2];
      ATTN_UNROLL
      for (int np = 0; np < G::nc / 2; ++np) {
        uint32_t r[4];
        const int c = col0 / 8 + grp * G::nc + 2 * np + (j >> 1);
        ldsm::x4_trans(r, chunk_at<G::dim>(x_tile, xr, c));
        b[2 * np][0] = r[0], b[2 * np][1] = r[1];
        b[2 * np + 1][0] = r[2], b[2 * np + 1][1] = r[3];
      }
      mma::mma_m16n8k16_bf16_grid<1, G::nc>(acc[grp], a, b);
    }
  }
}

// Stores (or adds to) row `row` of an output, the lane's pair (x0, x1) at
// columns col, col + 1 (those < dim), rounded to bf16 once. pairs: 4-byte
// aligned pair stores (vec path); else 2-byte ones.
__device__ inline void store_pair(uint16_t* __restrict__ row, int col, float x0, float x1, int dim,
                                  bool pairs, bool accumulate) {
  if (col >= dim) return;
  if (pairs) {  // dim is even
    auto* p = reinterpret_cast<uint32_t*>(row + col);
    if (accumulate) {
      const uint32_t old = *p;
      x0 += bf16_to_float(uint16_t(old & 0xFFFFu));
      x1 += bf16_to_float(uint16_t(old >> 16));
    }
    *p = mma::pack_bf16x2(x0, x1);
  } else {
    if (accumulate) x0 += bf16_to_float(row[col]);
    row[col] = uint16_t(mma::pack_bf16x2(x0, 0.0f) & 0xFFFFu);
    if (col + 1 < dim) {
      if (accumulate) x1 += bf16_to_float(row[col + 1]);
      row[col + 1] = uint16_t(mma::pack_bf16x2(x1, 0.0f) & 0xFFFFu);
    }
  }
}

// Writes factor * acc (the warp's 16 rows x G::out columns from col0, C
// layout) to an output whose row `first_row` is at dst (row stride `stride`),
// rows < valid_rows of the warp's 16.
template <class G>
__device__ inline void store_accumulator(uint16_t* __restrict__ dst, int64_t stride,
                                         const float (&acc)[G::out_groups][1][G::nc][4],
                                         float factor, int col0, int valid_rows, int dim,
                                         bool pairs, bool accumulate) {
  const int lane = int(threadIdx.x) & 31, g = lane >> 2, t = lane & 3;
  ATTN_UNROLL
  for (int half = 0; half < 2; ++half) {
    const int r = g + 8 * half;
    if (r >= valid_rows) continue;
    uint16_t* row = dst + r * stride;
    ATTN_UNROLL
    for (int grp = 0; grp < G::out_groups; ++grp) {
      ATTN_UNROLL
      for (int n = 0; n < G::nc; ++n) {
        const int col = col0 + (grp * G::nc + n) * 8 + 2 * t;
        store_pair(row, col, acc[grp][0][n][2 * half] * factor,
                   acc[grp][0][n][2 * half + 1] * factor, dim, pairs, accumulate);
      }
    }
  }
}

// Sum over the 4 lanes of a quad (the lanes sharing an accumulator row);
// every lane gets the same value (each step adds a pair commutatively).
__device__ inline float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  v += __shfl_xor_sync(0xffffffffu, v, 2);
  return v;
}
// Multiplies a warp's output accumulator (16 rows) row-wise: the lane's rows
// g and g + 8 (elements 0, 1 and 2, 3 of each C fragment) by f[0] and f[1].
template <class G>
__device__ inline void scale_rows(float (&acc)[G::out_groups][1][G::nc][4], const float (&f)[2]) {
  ATTN_UNROLL
  for (int grp = 0; grp < G::out_groups; ++grp) {
    ATTN_UNROLL
    for (int n = 0; n < G::nc; ++n) {
      ATTN_UNROLL
      for (int e = 0; e < 4; ++e) acc[grp][0][n][e] *= f[e >> 1];
    }
  }
}

__device__ inline float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
  return v;
}

// What every kernel of a call shares.
struct Params {
  int tokens, heads, dim;
  int64_t in_stride;   // rows of q, k, v, dq, dk, dv
  int64_t out_stride;  // rows of o, dout: heads * dim
  float score_to_log2, scale;
  int tiles;  // 64-row tiles a slice
  bool vec;
};

// The block's slice and the offsets of its (sample, head) in the tensors.
struct Slice {
  int64_t index;       // sample * heads + head
  int64_t in_offset;   // element (sample, token 0, head, 0) of q, k, v and their gradients
  int64_t out_offset;  // the same in o, dout
};

__device__ inline Slice slice_of(int64_t index, const Params& p) {
  const int64_t n = index / p.heads, h = index % p.heads;
  return {index, n * p.tokens * p.in_stride + h * p.dim, n * p.tokens * p.out_stride + h * p.dim};
}

// Stage tile & 1 of a double-buffered pair of K, V tiles ([kCols][kDim] each,
// K first), as the forward and the dQ kernel stream them.
template <int kDim, int kCols>
__device__ inline uint16_t* kv_stage(uint16_t* kv_stages, int tile) {
  return kv_stages + (tile & 1) * 2 * kCols * kDim;
}

// Starts the copies of key tile `tile` (keys tile * kCols..) of the slice's K
// and V into its stage; the caller commits.
template <int kDim, int kCols>
__device__ inline void load_kv_stage(uint16_t* kv_stages, int tile, const uint16_t* k,
                                     const uint16_t* v, const Slice& sl, const Params& p) {
  uint16_t* kt = kv_stage<kDim, kCols>(kv_stages, tile);
  const int k0 = tile * kCols, valid = min_int(kCols, p.tokens - k0);
  load_tile<kDim, kCols>(kt, k + sl.in_offset + k0 * p.in_stride, p.in_stride, valid, p.dim, p.vec);
  load_tile<kDim, kCols>(kt + kCols * kDim, v + sl.in_offset + k0 * p.in_stride, p.in_stride, valid,
                         p.dim, p.vec);
}

// ---------------------------------------------------------------- forward

template <class G>
__global__ void __launch_bounds__(kThreads)
    attention_bf16_forward_kernel(const uint16_t* __restrict__ q, const uint16_t* __restrict__ k,
                                  const uint16_t* __restrict__ v, uint16_t* __restrict__ o,
                                  float* __restrict__ lse, Params p) {
  constexpr int kDim = G::dim, kCols = G::cols;
  DDPM_DYNAMIC_SHARED(uint4, smem);
  uint16_t* q_tile = reinterpret_cast<uint16_t*>(smem);  // [64][kDim]
  uint16_t* kv_stages = q_tile + kTileRows * kDim;       // 2 x (K, V [kCols][kDim])

  const Slice sl = slice_of(int64_t(blockIdx.x) / p.tiles, p);
  const int first = int(int64_t(blockIdx.x) % p.tiles) * kTileRows;
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31, t = lane & 3;
  const int valid_rows = min_int(kTileRows, p.tokens - first);
  const int key_tiles = (p.tokens + kCols - 1) / kCols;

  auto load_kv = [&](int tile) { load_kv_stage<kDim, kCols>(kv_stages, tile, k, v, sl, p); };
  load_tile<kDim, kTileRows>(q_tile, q + sl.in_offset + first * p.in_stride, p.in_stride,
                             valid_rows, p.dim, p.vec);
  load_kv(0);
  async_copy::commit();

  float acc[G::out_groups][1][G::nc][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // rows g, g + 8 (log2 units)
  for (int tile = 0; tile < key_tiles; ++tile) {
    if (tile + 1 < key_tiles) load_kv(tile + 1);
    async_copy::commit();  // possibly empty: keeps "all but the newest group" = this tile
    async_copy::wait<1>();
    __syncthreads();
    const uint16_t* kt = kv_stage<kDim, kCols>(kv_stages, tile);
    const uint16_t* vt = kt + kCols * kDim;

    float s[1][kCols / 8][4];
    product_abt<kDim, kCols>(s, q_tile, warp * 16, kt);

    // Online softmax; keys >= T get -inf before the max (a tile has a key, so
    // the new max is finite and alpha = 0 on the first tile).
    const int k0 = tile * kCols;
    float mx[2] = {m[0], m[1]};
    ATTN_UNROLL
    for (int n = 0; n < kCols / 8; ++n) {
      ATTN_UNROLL
      for (int e = 0; e < 4; ++e) {
        const int key = k0 + n * 8 + 2 * t + (e & 1);
        const float x = key < p.tokens ? s[0][n][e] * p.score_to_log2 : -INFINITY;
        s[0][n][e] = x;
        mx[e >> 1] = fmaxf(mx[e >> 1], x);
      }
    }
    float alpha[2], sum[2] = {0.0f, 0.0f};
    ATTN_UNROLL
    for (int h = 0; h < 2; ++h) {
      mx[h] = quad_max(mx[h]);
      alpha[h] = exp2f(m[h] - mx[h]);
      m[h] = mx[h];
    }
    ATTN_UNROLL
    for (int n = 0; n < kCols / 8; ++n) {
      ATTN_UNROLL
      for (int e = 0; e < 4; ++e) {
        s[0][n][e] = exp2f(s[0][n][e] - m[e >> 1]);
        sum[e >> 1] += s[0][n][e];
      }
    }
    ATTN_UNROLL
    for (int h = 0; h < 2; ++h) l[h] = l[h] * alpha[h] + sum[h];  // the lane's columns
    scale_rows<G>(acc, alpha);
    product_px<G, kCols>(acc, s, vt, 0);
    __syncthreads();  // this stage is refilled by the next iteration's copies
  }

  const int g = lane >> 2, row0 = first + warp * 16;
  float inv_l[2];
  ATTN_UNROLL
  for (int h = 0; h < 2; ++h) {
    const float row_l = quad_sum(l[h]);
    inv_l[h] = 1.0f / row_l;
    const int row = row0 + g + 8 * h;
    if (t == 0 && row < p.tokens) lse[sl.index * p.tokens + row] = (m[h] + log2f(row_l)) * kLn2;
  }
  scale_rows<G>(acc, inv_l);
  store_accumulator<G>(o + sl.out_offset + int64_t(row0) * p.out_stride, p.out_stride, acc, 1.0f, 0,
                       p.tokens - row0, p.dim, p.vec, false);
}

// ---------------------------------------------------------------- backward

// drow[n, h, t] = sum_d dout[n, t, h, d] o[n, t, h, d] in fp32. The (n, t, h)
// rows are runs of `dim` elements; kRowDotGroup lanes share one (16-byte
// chunks, or elements, strided), then a shuffle butterfly: a fixed order.
__global__ void __launch_bounds__(kRowDotThreads)
    attention_bf16_row_dot_kernel(const uint16_t* __restrict__ dout, const uint16_t* __restrict__ o,
                                  float* __restrict__ drow, int64_t rows, int tokens, int heads,
                                  int dim, bool vec) {
  const int64_t thread = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t row = thread / kRowDotGroup;
  const int lane = int(thread % kRowDotGroup);
  float sum = 0.0f;
  if (row < rows) {
    const uint16_t* a = dout + row * dim;
    const uint16_t* b = o + row * dim;
    if (vec) {
      for (int c = lane * 8; c < dim; c += kRowDotGroup * 8) {
        const uint4 x = *reinterpret_cast<const uint4*>(a + c);
        const uint4 y = *reinterpret_cast<const uint4*>(b + c);
        const uint32_t xs[4] = {x.x, x.y, x.z, x.w}, ys[4] = {y.x, y.y, y.z, y.w};
        ATTN_UNROLL
        for (int w = 0; w < 4; ++w) {
          sum +=
              bf16_to_float(uint16_t(xs[w] & 0xFFFFu)) * bf16_to_float(uint16_t(ys[w] & 0xFFFFu));
          sum += bf16_to_float(uint16_t(xs[w] >> 16)) * bf16_to_float(uint16_t(ys[w] >> 16));
        }
      }
    } else {
      for (int d = lane; d < dim; d += kRowDotGroup)
        sum += bf16_to_float(a[d]) * bf16_to_float(b[d]);
    }
  }
  for (int offset = kRowDotGroup / 2; offset > 0; offset /= 2)  // every lane takes part
    sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  if (row < rows && lane == 0) {
    const int64_t per_sample = int64_t(tokens) * heads;
    const int64_t n = row / per_sample, t = row % per_sample / heads, h = row % heads;
    drow[(n * heads + h) * tokens + t] = sum;
  }
}

// dK and dV of 64 keys (columns col0.. of the output: blockIdx.x = (slice *
// tiles + tile) * col_slices + column slice), looping over the query tiles.
template <class G>
__global__ void __launch_bounds__(kThreads)
    attention_bf16_dkdv_kernel(const uint16_t* __restrict__ q, const uint16_t* __restrict__ k,
                               const uint16_t* __restrict__ v, const uint16_t* __restrict__ dout,
                               const float* __restrict__ lse, const float* __restrict__ drow,
                               uint16_t* __restrict__ dk, uint16_t* __restrict__ dv, Params p,
                               bool accumulate_dk, bool accumulate_dv) {
  constexpr int kDim = G::dim, kCols = G::cols;
  DDPM_DYNAMIC_SHARED(uint4, smem);
  uint16_t* k_tile = reinterpret_cast<uint16_t*>(smem);  // [64][kDim]
  uint16_t* v_tile = k_tile + kTileRows * kDim;          // [64][kDim]
  uint16_t* qdo_stages = v_tile + kTileRows * kDim;      // 2 x (Q, dO [kCols][kDim])
  float* stats = reinterpret_cast<float*>(qdo_stages + 2 * 2 * kCols * kDim);  // 2 x (lse, D)

  const int64_t block = int64_t(blockIdx.x);
  constexpr int kColSlices = kDim / G::out;
  const int col0 = int(block % kColSlices) * G::out;
  const int64_t slice_tile = block / kColSlices;
  const Slice sl = slice_of(slice_tile / p.tiles, p);
  const int first = int(slice_tile % p.tiles) * kTileRows;
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const int g = lane >> 2, t = lane & 3;
  const int valid_keys = min_int(kTileRows, p.tokens - first);
  const int query_tiles = (p.tokens + kCols - 1) / kCols;
  const int64_t stat_offset = sl.index * p.tokens;

  auto load_stage = [&](int tile) {
    const int stage = tile & 1, q0 = tile * kCols, valid = min_int(kCols, p.tokens - q0);
    uint16_t* qt = qdo_stages + stage * 2 * kCols * kDim;
    load_tile<kDim, kCols>(qt, q + sl.in_offset + q0 * p.in_stride, p.in_stride, valid, p.dim,
                           p.vec);
    load_tile<kDim, kCols>(qt + kCols * kDim, dout + sl.out_offset + q0 * p.out_stride,
                           p.out_stride, valid, p.dim, p.vec);
    // Queries >= T: lse +inf (P = 0), D = 0.
    float* st = stats + stage * 2 * kCols;
    for (int i = int(threadIdx.x); i < kCols; i += kThreads) {
      const bool ok = i < valid;
      st[i] = ok ? lse[stat_offset + q0 + i] * kLog2e : INFINITY;
      st[kCols + i] = ok ? drow[stat_offset + q0 + i] : 0.0f;
    }
  };
  load_tile<kDim, kTileRows>(k_tile, k + sl.in_offset + first * p.in_stride, p.in_stride,
                             valid_keys, p.dim, p.vec);
  load_tile<kDim, kTileRows>(v_tile, v + sl.in_offset + first * p.in_stride, p.in_stride,
                             valid_keys, p.dim, p.vec);
  load_stage(0);
  async_copy::commit();

  // The lane's accumulator rows (keys) g and g + 8 of the warp's 16: past T, P = 0.
  const bool key_ok[2] = {warp * 16 + g < valid_keys, warp * 16 + g + 8 < valid_keys};
  float acc_dk[G::out_groups][1][G::nc][4] = {}, acc_dv[G::out_groups][1][G::nc][4] = {};
  for (int tile = 0; tile < query_tiles; ++tile) {
    if (tile + 1 < query_tiles) load_stage(tile + 1);
    async_copy::commit();
    async_copy::wait<1>();
    __syncthreads();
    const uint16_t* qt = qdo_stages + (tile & 1) * 2 * kCols * kDim;
    const uint16_t* dot = qt + kCols * kDim;
    const float* lse_t = stats + (tile & 1) * 2 * kCols;
    const float* d_t = lse_t + kCols;

    float pt[1][kCols / 8][4], ds_t[1][kCols / 8][4];  // P^T, then dP^T -> dS^T
    product_abt<kDim, kCols>(pt, k_tile, warp * 16, qt);
    product_abt<kDim, kCols>(ds_t, v_tile, warp * 16, dot);
    ATTN_UNROLL
    for (int n = 0; n < kCols / 8; ++n) {
      ATTN_UNROLL
      for (int e = 0; e < 4; ++e) {
        const int col = n * 8 + 2 * t + (e & 1);  // query in the tile
        const float pe = key_ok[e >> 1] ? exp2f(pt[0][n][e] * p.score_to_log2 - lse_t[col]) : 0.0f;
        pt[0][n][e] = pe;
        ds_t[0][n][e] = pe * (ds_t[0][n][e] - d_t[col]);
      }
    }
    if (dv) product_px<G, kCols>(acc_dv, pt, dot, col0);
    if (dk) product_px<G, kCols>(acc_dk, ds_t, qt, col0);
    __syncthreads();  // this stage is refilled by the next iteration's copies
  }

  const int row0 = first + warp * 16;
  const int64_t at = sl.in_offset + int64_t(row0) * p.in_stride;
  if (dv)
    store_accumulator<G>(dv + at, p.in_stride, acc_dv, 1.0f, col0, valid_keys - warp * 16, p.dim,
                         p.vec, accumulate_dv);
  if (dk)
    store_accumulator<G>(dk + at, p.in_stride, acc_dk, p.scale, col0, valid_keys - warp * 16, p.dim,
                         p.vec, accumulate_dk);
}

// dQ of 64 queries, looping over the key tiles.
template <class G>
__global__ void __launch_bounds__(kThreads)
    attention_bf16_dq_kernel(const uint16_t* __restrict__ q, const uint16_t* __restrict__ k,
                             const uint16_t* __restrict__ v, const uint16_t* __restrict__ dout,
                             const float* __restrict__ lse, const float* __restrict__ drow,
                             uint16_t* __restrict__ dq, Params p, bool accumulate) {
  constexpr int kDim = G::dim, kCols = G::cols;
  DDPM_DYNAMIC_SHARED(uint4, smem);
  uint16_t* q_tile = reinterpret_cast<uint16_t*>(smem);  // [64][kDim]
  uint16_t* do_tile = q_tile + kTileRows * kDim;         // [64][kDim]
  uint16_t* kv_stages = do_tile + kTileRows * kDim;      // 2 x (K, V [kCols][kDim])

  const Slice sl = slice_of(int64_t(blockIdx.x) / p.tiles, p);
  const int first = int(int64_t(blockIdx.x) % p.tiles) * kTileRows;
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const int g = lane >> 2, t = lane & 3;
  const int valid_rows = min_int(kTileRows, p.tokens - first);
  const int key_tiles = (p.tokens + kCols - 1) / kCols;

  auto load_kv = [&](int tile) { load_kv_stage<kDim, kCols>(kv_stages, tile, k, v, sl, p); };
  load_tile<kDim, kTileRows>(q_tile, q + sl.in_offset + first * p.in_stride, p.in_stride,
                             valid_rows, p.dim, p.vec);
  load_tile<kDim, kTileRows>(do_tile, dout + sl.out_offset + first * p.out_stride, p.out_stride,
                             valid_rows, p.dim, p.vec);
  load_kv(0);
  async_copy::commit();

  // The lane's rows g, g + 8: lse in log2 units and D (rows past T: never stored).
  const int row0 = first + warp * 16;
  float row_lse[2], row_d[2];
  ATTN_UNROLL
  for (int h = 0; h < 2; ++h) {
    const int row = row0 + g + 8 * h;
    row_lse[h] = row < p.tokens ? lse[sl.index * p.tokens + row] * kLog2e : 0.0f;
    row_d[h] = row < p.tokens ? drow[sl.index * p.tokens + row] : 0.0f;
  }

  float acc[G::out_groups][1][G::nc][4] = {};
  for (int tile = 0; tile < key_tiles; ++tile) {
    if (tile + 1 < key_tiles) load_kv(tile + 1);
    async_copy::commit();
    async_copy::wait<1>();
    __syncthreads();
    const uint16_t* kt = kv_stage<kDim, kCols>(kv_stages, tile);
    const uint16_t* vt = kt + kCols * kDim;

    float s[1][kCols / 8][4], ds[1][kCols / 8][4];  // S, then dP -> dS
    product_abt<kDim, kCols>(s, q_tile, warp * 16, kt);
    product_abt<kDim, kCols>(ds, do_tile, warp * 16, vt);
    const int k0 = tile * kCols;
    ATTN_UNROLL
    for (int n = 0; n < kCols / 8; ++n) {
      ATTN_UNROLL
      for (int e = 0; e < 4; ++e) {
        // Keys >= T: P = 0 (2^(0 - lse) of their zero rows could overflow).
        const int key = k0 + n * 8 + 2 * t + (e & 1);
        const float pe =
            key < p.tokens ? exp2f(s[0][n][e] * p.score_to_log2 - row_lse[e >> 1]) : 0.0f;
        ds[0][n][e] = pe * (ds[0][n][e] - row_d[e >> 1]);
      }
    }
    product_px<G, kCols>(acc, ds, kt, 0);
    __syncthreads();  // this stage is refilled by the next iteration's copies
  }

  store_accumulator<G>(dq + sl.in_offset + int64_t(row0) * p.in_stride, p.in_stride, acc, p.scale,
                       0, valid_rows - warp * 16, p.dim, p.vec, accumulate);
}

// ---------------------------------------------------------------- host side

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

using attention_checks::check_scale;
using attention_checks::check_shape;
using attention_checks::qkv_stride_of;
using attention_checks::require;

bool aligned(const void* p, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;  // null counts as aligned
}

int bucket_of(int64_t head_dim) {
  for (int b : {32, 64, 128}) {
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

Params make_params(const AttentionShape& s, float scale, bool vec) {
  Params p{};
  p.tokens = int(s.tokens);
  p.heads = int(s.heads);
  p.dim = int(s.head_dim);
  p.in_stride = qkv_stride_of(s);
  p.out_stride = s.heads * s.head_dim;
  p.score_to_log2 = scale * kLog2e;
  p.scale = scale;
  p.tiles = int(ceil_div(s.tokens, kTileRows));
  p.vec = vec;
  return p;
}

// 16-byte copies: head_dim and the strides multiples of 8 elements, every
// tensor 16-byte aligned.
bool vector_path(const AttentionShape& s, std::initializer_list<const void*> tensors) {
  if (s.head_dim % 8 != 0 || qkv_stride_of(s) % 8 != 0) return false;
  for (const void* t : tensors)
    if (!aligned(t, 16)) return false;
  return true;
}

void check_bf16_alignment(const char* who, std::initializer_list<const void*> tensors) {
  for (const void* t : tensors) require(aligned(t, 2), who, "bf16 tensors must be 2-byte aligned");
}

template <int kDim>
void launch_forward(const Params& p, int64_t slices, const uint16_t* q, const uint16_t* k,
                    const uint16_t* v, uint16_t* o, float* lse, cudaStream_t stream) {
  using G = ForwardGeometry<kDim>;
  const size_t bytes = forward_shared_bytes<G>();
  allow_shared(reinterpret_cast<const void*>(&attention_bf16_forward_kernel<G>), bytes);
  DDPM_LAUNCH(attention_bf16_forward_kernel<G>, unsigned(slices * p.tiles), kThreads, bytes, stream,
              q, k, v, o, lse, p);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

template <int kDim>
void launch_backward(const Params& p, int64_t slices, const uint16_t* q, const uint16_t* k,
                     const uint16_t* v, const uint16_t* dout, const float* lse, const float* drow,
                     uint16_t* dq, uint16_t* dk, uint16_t* dv, bool accumulate_dq,
                     bool accumulate_dk, bool accumulate_dv, cudaStream_t stream) {
  if (dk || dv) {
    using G = DkdvGeometry<kDim>;
    const size_t bytes = dkdv_shared_bytes<G>();
    allow_shared(reinterpret_cast<const void*>(&attention_bf16_dkdv_kernel<G>), bytes);
    DDPM_LAUNCH(attention_bf16_dkdv_kernel<G>, unsigned(slices * p.tiles * (G::dim / G::out)),
                kThreads, bytes, stream, q, k, v, dout, lse, drow, dk, dv, p, accumulate_dk,
                accumulate_dv);
    DDPM_CUDA_CHECK(cudaGetLastError());
  }
  if (dq) {
    using G = DqGeometry<kDim>;
    const size_t bytes = dq_shared_bytes<G>();
    allow_shared(reinterpret_cast<const void*>(&attention_bf16_dq_kernel<G>), bytes);
    DDPM_LAUNCH(attention_bf16_dq_kernel<G>, unsigned(slices * p.tiles), kThreads, bytes, stream, q,
                k, v, dout, lse, drow, dq, p, accumulate_dq);
    DDPM_CUDA_CHECK(cudaGetLastError());
  }
}

const uint16_t* bits(const __nv_bfloat16* p) {
  return reinterpret_cast<const uint16_t*>(p);
}
uint16_t* bits(__nv_bfloat16* p) {
  return reinterpret_cast<uint16_t*>(p);
}

}  // namespace

void attention_bf16_validate(const AttentionShape& s) {
  check_shape("attention_bf16", s);
}

size_t attention_bf16_workspace_bytes(const AttentionShape& s) {
  return attention_checks::workspace_bytes("attention_bf16_workspace_bytes", s);
}

void attention_bf16_forward(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                            __nv_bfloat16* o, float* lse, const AttentionShape& s, float scale,
                            cudaStream_t stream) {
  const char* who = "attention_bf16_forward";
  check_shape(who, s);
  check_scale(who, scale);
  if (s.batch == 0) return;
  require(q && k && v && o && lse, who, "q, k, v, o and lse must not be null");
  check_bf16_alignment(who, {q, k, v, o});
  require(aligned(lse, 4), who, "lse must be 4-byte aligned");
  const Params p = make_params(s, scale, vector_path(s, {q, k, v, o}));
  const int64_t slices = s.batch * s.heads;
  switch (bucket_of(s.head_dim)) {
    case 32:
      return launch_forward<32>(p, slices, bits(q), bits(k), bits(v), bits(o), lse, stream);
    case 64:
      return launch_forward<64>(p, slices, bits(q), bits(k), bits(v), bits(o), lse, stream);
    case 128:
      return launch_forward<128>(p, slices, bits(q), bits(k), bits(v), bits(o), lse, stream);
    default:
      return launch_forward<256>(p, slices, bits(q), bits(k), bits(v), bits(o), lse, stream);
  }
}

void attention_bf16_backward(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                             const __nv_bfloat16* o, const float* lse, const __nv_bfloat16* dout,
                             __nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv,
                             const AttentionShape& s, float scale, bool accumulate_dq,
                             bool accumulate_dk, bool accumulate_dv, void* workspace,
                             cudaStream_t stream) {
  const char* who = "attention_bf16_backward";
  check_shape(who, s);
  check_scale(who, scale);
  if (s.batch == 0 || !(dq || dk || dv)) return;
  require(q && k && v && o && lse && dout, who, "q, k, v, o, lse and dout must not be null");
  require(workspace && aligned(workspace, 16), who,
          "workspace must be non-null and 16-byte aligned");
  check_bf16_alignment(who, {q, k, v, o, dout, dq, dk, dv});
  require(aligned(lse, 4), who, "lse must be 4-byte aligned");
  auto* drow = static_cast<float*>(workspace);
  const bool vec = vector_path(s, {q, k, v, o, dout, dq, dk, dv});

  const int64_t rows = s.batch * s.tokens * s.heads;
  DDPM_LAUNCH(attention_bf16_row_dot_kernel,
              unsigned(ceil_div(rows * kRowDotGroup, kRowDotThreads)), kRowDotThreads, 0, stream,
              bits(dout), bits(o), drow, rows, int(s.tokens), int(s.heads), int(s.head_dim), vec);
  DDPM_CUDA_CHECK(cudaGetLastError());

  const Params p = make_params(s, scale, vec);
  const int64_t slices = s.batch * s.heads;
  switch (bucket_of(s.head_dim)) {
    case 32:
      return launch_backward<32>(p, slices, bits(q), bits(k), bits(v), bits(dout), lse, drow,
                                 bits(dq), bits(dk), bits(dv), accumulate_dq, accumulate_dk,
                                 accumulate_dv, stream);
    case 64:
      return launch_backward<64>(p, slices, bits(q), bits(k), bits(v), bits(dout), lse, drow,
                                 bits(dq), bits(dk), bits(dv), accumulate_dq, accumulate_dk,
                                 accumulate_dv, stream);
    case 128:
      return launch_backward<128>(p, slices, bits(q), bits(k), bits(v), bits(dout), lse, drow,
                                  bits(dq), bits(dk), bits(dv), accumulate_dq, accumulate_dk,
                                  accumulate_dv, stream);
    default:
      return launch_backward<256>(p, slices, bits(q), bits(k), bits(v), bits(dout), lse, drow,
                                  bits(dq), bits(dk), bits(dv), accumulate_dq, accumulate_dk,
                                  accumulate_dv, stream);
  }
}

}  // namespace ddpm::kernels
