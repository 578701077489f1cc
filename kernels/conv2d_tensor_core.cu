// Tensor-core convolution (conv2d.cuh's tensor_core implementation): the three
// implicit GEMMs of conv2d.cuh with bf16 operands and fp32 accumulation, on the
// warp-level mma.sync m16n8k16 of kernels/warp_mma.cuh (its portable
// warp-shuffle path under the CPU emulator and below sm_80).
//
//   op               output    reduction      A [M][red]              B [N][red]
//   forward          y[P][O]   K  = R S C     im2col(x) [p][k]        w [o][k]
//   backward-data    dx[Q][C]  K' = R S O     dy gathered [q][k']     w as [c][k']
//   backward-filter  dw[O][K]  P              dy as [o][p]            im2col(x) as [k][p]
//
// One kernel template runs all three: a block owns a BM x BN output tile and
// walks the reduction in stages of kBK = 32. Each operand is staged in shared
// memory as rows of 32 bf16 (16 packed pairs, 64 bytes), whatever its layout
// in global memory:
//   - operands contiguous along the reduction (forward's A and B,
//     backward-data's A) are read as float4 along it (8 threads cover a row's
//     128 bytes) and stored as two packed pairs (one 64-bit store);
//   - the others (contiguous along M or N) are read as float4 across 4 rows at
//     2 adjacent reduction indices, and each row's two floats packed into one
//     pair: the transpose costs nothing extra.
// fp32 values are rounded to bf16 (nearest-even, cvt.rn.bf16x2) at that store;
// gathers outside the tensor (padding, tails of M, N and the reduction) are
// zeros, so any shape validate() allows runs (channels 3 or 5 take the scalar
// path of the same loops: a float4 needs the channel count it stays inside of
// divisible by 4, and a 16-byte aligned tensor). A thread's reduction offset
// is the same in all its units of a stage, so the divisions that locate a k
// (tap, channel; or pixel) run once per stage, and those of a row once.
//
// Shared layout: a row's 16 pairs form four 16-byte chunks; chunk c of row r
// sits at chunk c ^ (2 * bit 1 of r). A warp's fragment loads are 64-bit: the
// mma pairs A's registers 0/2 (k = 2t.., 2t+8..) with B's registers 0/1 (the
// same k), so a lane may take the physically adjacent pairs 2t and 2t+1 of a
// 16-wide k step as those registers; the reduction runs over the 16 k in a
// permuted order, which a sum does not see. With the swizzle, each half-warp's
// 64-bit loads (4 rows x 4 lanes) and the stagers' stores cover all 32 banks
// once: no bank conflicts, and no padding.
//
// Pipeline: two shared stages and register staging. While the warps run the
// mma's of stage s, every thread's global loads for the next stage are in
// flight (in registers, still fp32); after the mma's they are rounded and
// stored to the other stage; one __syncthreads per stage.
//
// Tiles: 128 x 128 with 8 warps of 64 x 32 (4 x 4 mma tiles, 64 fp32
// accumulators a thread) when the output has at least a wave of such tiles,
// else 64 x 64 with 4 warps of 32 x 32: the CIFAR-sized layers at small batch
// (4 x 32 x 32 pixels x 128 channels is 32 big tiles but 128 small ones) would
// leave most of the 132 SMs idle otherwise. A 128 x 128 x 32 stage moves 32 KB
// of fp32 from L2 for 0.5 M multiply-adds (16 per byte) and holds 2 x 16 KB of
// bf16 in shared memory.
//
// Backward-filter reduces over P, long and shared by few output tiles, so P is
// split (splits chosen from the shape alone, about two waves of blocks, at
// least 4 stages per split); each split writes its partial tile to the
// workspace and split_sum_add adds them in split order into dw (one split adds
// into dw directly). db is column_sum_add of dy. No atomics: deterministic.
// Backward-data with stride > 1 gathers zeros for the taps a pixel does not
// receive (3/4 of the work for 3x3 stride 2); the stride-2 layers are a small
// part of the network.
//
// Index math is 32-bit: validate() keeps every tensor under 2^31 elements.
#include <algorithm>
#include <cstdint>

#include "kernels/check.cuh"
#include "kernels/conv2d.cuh"
#include "kernels/conv2d_internal.cuh"
#include "kernels/emulation/launch.h"
#include "kernels/reduce.cuh"
#include "kernels/vector_io.cuh"
#include "kernels/warp_mma.cuh"

// Every device loop here has a compile-time trip count; unrolled, its arrays
// (accumulators, fragments, staged values) stay in registers.
#if defined(__CUDACC__)
#define TC_UNROLL _Pragma("unroll")
#else
#define TC_UNROLL
#endif

namespace ddpm::kernels::detail {

// Test hook (conv2d_internal.cuh).
int& conv2d_tensor_core_forced_tile() {
  static int rows = 0;
  return rows;
}

namespace {

constexpr int kBK = 32;                // reduction elements per stage
constexpr int kPairsPerRow = kBK / 2;  // packed bf16 pairs (b32 words) per shared row
constexpr int64_t kWaveBlocks = 132;   // SMs of an H100 / H200
constexpr int64_t kFilterTargetBlocks = 2 * kWaveBlocks;
constexpr int kMinStagesPerSplit = 4;

template <int BM, int BN, int WARPS_M, int WARPS_N>
struct TileShape {
  static constexpr int kBM = BM, kBN = BN;
  static constexpr int kWarpsN = WARPS_N;
  static constexpr int kThreads = 32 * WARPS_M * WARPS_N;
  static constexpr int kWarpM = BM / WARPS_M, kWarpN = BN / WARPS_N;
  static constexpr int kFragsM = kWarpM / mma::kM, kFragsN = kWarpN / mma::kN;
  static constexpr int kStageWordsA = BM * kPairsPerRow, kStageWordsB = BN * kPairsPerRow;
  static_assert(kWarpM % mma::kM == 0 && kWarpN % mma::kN == 0, "whole mma tiles per warp");
  static_assert(kBK % mma::kK == 0, "whole mma k steps per stage");
};
using LargeTile = TileShape<128, 128, 2, 4>;  // 8 warps of 64 x 32
using SmallTile = TileShape<64, 64, 2, 2>;    // 4 warps of 32 x 32

// Word index of pair `pair` (0..15) of row `row` in a stage [rows][16]: the
// pair's 16-byte chunk XOR-swizzled with bit 1 of the row (see the top).
__device__ inline int stage_word(int row, int pair) {
  const int chunk = (pair >> 2) ^ (((row >> 1) & 1) << 1);
  return row * kPairsPerRow + chunk * 4 + (pair & 3);
}

// ------------------------------------------------------------------ geometry

struct ConvDims {
  int batch, in_h, in_w, in_c, out_c;  // N, H, W, C, O
  int kernel_h, kernel_w, stride, pad_top, pad_left;
  int out_h, out_w;  // Ho, Wo
  int out_pixels;    // P = N Ho Wo
  int in_pixels;     // Q = N H W
  int filter_k;      // K = R S C
  int taps_out;      // K' = R S O
};

ConvDims conv_dims(const Conv2dShape& s) {
  ConvDims d;
  d.batch = int(s.batch), d.in_h = int(s.in_h), d.in_w = int(s.in_w);
  d.in_c = int(s.in_channels), d.out_c = int(s.out_channels);
  d.kernel_h = s.kernel_h, d.kernel_w = s.kernel_w, d.stride = s.stride;
  d.pad_top = s.pad_top, d.pad_left = s.pad_left;
  d.out_h = int(s.out_h()), d.out_w = int(s.out_w());
  d.out_pixels = int(s.out_pixels()), d.in_pixels = int(s.in_pixels());
  d.filter_k = int(s.gemm_k());
  d.taps_out = s.kernel_h * s.kernel_w * d.out_c;
  return d;
}

// ------------------------------------------------------------------ operand sources
//
// Each GEMM operand is a Source. Element (i, k) of the operand (i an M row for
// A, an N row for B; k along the reduction) is data[offset(row(i), at(k))],
// or zero where offset is -1 (padding, or outside the GEMM). row() and at()
// split the index math: a thread keeps row() of its rows for the whole block,
// and all its units of a stage share one k (see StageLoader), so at() runs
// once per stage and k, not per element. `vec`: the launcher found 4
// consecutive elements contiguous and 16-byte aligned wherever the first
// exists (along k for kReductionContiguous sources, else across rows 4j..4j+3).

// Forward A: im2col(x)[p][k], k = (r S + s) C + c.
struct Im2colByPixel {
  static constexpr bool kReductionContiguous = true;
  const float* data;
  ConvDims d;
  bool vec;
  struct Row {
    int image_base, h0, w0;  // n H W; the window's top-left input pixel
    bool valid;
  };
  struct At {
    int r, s, c;
    bool valid;
  };
  __device__ Row row(int p) const {
    const int hw = d.out_h * d.out_w, n = p / hw, rem = p - n * hw, ho = rem / d.out_w;
    const int wo = rem - ho * d.out_w;
    return {n * d.in_h * d.in_w, ho * d.stride - d.pad_top, wo * d.stride - d.pad_left,
            p < d.out_pixels};
  }
  __device__ At at(int k) const {
    const int tap = k / d.in_c, r = tap / d.kernel_w;
    return {r, tap - r * d.kernel_w, k - tap * d.in_c, k < d.filter_k};
  }
  __device__ int offset(const Row& row, const At& at) const {
    const int h = row.h0 + at.r, w = row.w0 + at.s;
    if (!row.valid || !at.valid || unsigned(h) >= unsigned(d.in_h) ||
        unsigned(w) >= unsigned(d.in_w))
      return -1;
    return (row.image_base + h * d.in_w + w) * d.in_c + at.c;
  }
};

// Forward B: w[o][k], rows of length K.
struct FilterByOutChannel {
  static constexpr bool kReductionContiguous = true;
  const float* data;
  ConvDims d;
  bool vec;
  struct Row {
    int base;
    bool valid;
  };
  struct At {
    int k;
    bool valid;
  };
  __device__ Row row(int o) const { return {o * d.filter_k, o < d.out_c}; }
  __device__ At at(int k) const { return {k, k < d.filter_k}; }
  __device__ int offset(const Row& row, const At& at) const {
    return row.valid && at.valid ? row.base + at.k : -1;
  }
};

// Backward-data A: dy gathered for input pixel q at k' = (r S + s) O + o:
// dy[n, ho, wo, o] where ho stride = h + pad_top - r (and likewise for w),
// zero where that has no integral solution inside the output.
struct OutGradByInPixel {
  static constexpr bool kReductionContiguous = true;
  const float* data;
  ConvDims d;
  bool vec;
  struct Row {
    int image_base, h_padded, w_padded;  // n Ho Wo; h + pad_top; w + pad_left
    bool valid;
  };
  struct At {
    int r, s, o;
    bool valid;
  };
  __device__ Row row(int q) const {
    const int hw = d.in_h * d.in_w, n = q / hw, rem = q - n * hw, h = rem / d.in_w;
    const int w = rem - h * d.in_w;
    return {n * d.out_h * d.out_w, h + d.pad_top, w + d.pad_left, q < d.in_pixels};
  }
  __device__ At at(int k) const {
    const int tap = k / d.out_c, r = tap / d.kernel_w;
    return {r, tap - r * d.kernel_w, k - tap * d.out_c, k < d.taps_out};
  }
  __device__ int offset(const Row& row, const At& at) const {
    const int th = row.h_padded - at.r, tw = row.w_padded - at.s;
    if (!row.valid || !at.valid || th < 0 || tw < 0) return -1;
    int ho = th, wo = tw;
    if (d.stride > 1) {
      ho = th / d.stride, wo = tw / d.stride;
      if (ho * d.stride != th || wo * d.stride != tw) return -1;
    }
    if (ho >= d.out_h || wo >= d.out_w) return -1;
    return (row.image_base + ho * d.out_w + wo) * d.out_c + at.o;
  }
};

// Backward-data B: w[o][tap][c] as [c][k'], k' = tap O + o.
struct FilterByInChannel {
  static constexpr bool kReductionContiguous = false;
  const float* data;
  ConvDims d;
  bool vec;
  struct Row {
    int c;
    bool valid;
  };
  struct At {
    int base;  // w[o][tap][0]
    bool valid;
  };
  __device__ Row row(int c) const { return {c, c < d.in_c}; }
  __device__ At at(int k) const {
    const int tap = k / d.out_c, o = k - tap * d.out_c;
    return {(o * d.kernel_h * d.kernel_w + tap) * d.in_c, k < d.taps_out};
  }
  __device__ int offset(const Row& row, const At& at) const {
    return row.valid && at.valid ? at.base + row.c : -1;
  }
};

// Backward-filter A: dy[p][o] as [o][p].
struct OutGradByOutChannel {
  static constexpr bool kReductionContiguous = false;
  const float* data;
  ConvDims d;
  bool vec;
  struct Row {
    int o;
    bool valid;
  };
  struct At {
    int base;  // dy[p][0]
    bool valid;
  };
  __device__ Row row(int o) const { return {o, o < d.out_c}; }
  __device__ At at(int p) const { return {p * d.out_c, p < d.out_pixels}; }
  __device__ int offset(const Row& row, const At& at) const {
    return row.valid && at.valid ? at.base + row.o : -1;
  }
};

// Backward-filter B: im2col(x)[p][k] as [k][p] (Im2colByPixel transposed).
struct Im2colByFilterIndex {
  static constexpr bool kReductionContiguous = false;
  const float* data;
  ConvDims d;
  bool vec;
  using Row = Im2colByPixel::At;
  using At = Im2colByPixel::Row;
  __device__ Im2colByPixel pixel_major() const { return {data, d, vec}; }
  __device__ Row row(int k) const { return pixel_major().at(k); }
  __device__ At at(int p) const { return pixel_major().row(p); }
  __device__ int offset(const Row& row, const At& at) const {
    return pixel_major().offset(at, row);
  }
};

// ------------------------------------------------------------------ staging

__device__ inline void load4(const float* data, int offset, float (&v)[4]) {
  if (offset >= 0) {
    const float4 q = load_float4(data + offset);
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
  } else {
    v[0] = v[1] = v[2] = v[3] = 0.f;
  }
}

__device__ inline float load1(const float* data, int offset) {
  return offset >= 0 ? data[offset] : 0.f;
}

// Moves one operand's stage [ROWS x kBK] from global memory into registers
// (load) and from there, rounded to bf16, into a shared stage (store).
template <class T, int ROWS, class Source, bool kReductionContiguous = Source::kReductionContiguous>
struct StageLoader;

// Along the reduction: unit u of a thread is 4 consecutive k of one row; 8
// threads read a row's 32 floats (128 bytes), a warp 4 rows. A thread's quad
// (tid % 8) is the same in all its units.
template <class T, int ROWS, class Source>
struct StageLoader<T, ROWS, Source, true> {
  static constexpr int kQuadsPerRow = kBK / 4;
  static constexpr int kUnits = ROWS * kQuadsPerRow / T::kThreads;
  static constexpr int kRowsPerPass = T::kThreads / kQuadsPerRow;
  static_assert(kUnits * T::kThreads == ROWS * kQuadsPerRow, "whole units per thread");

  typename Source::Row rows[kUnits];
  float v[kUnits][4];

  __device__ static int quad() { return int(threadIdx.x) % kQuadsPerRow; }
  __device__ static int unit_row(int u) {
    return int(threadIdx.x) / kQuadsPerRow + u * kRowsPerPass;
  }

  __device__ StageLoader(const Source& src, int row0) {
    TC_UNROLL
    for (int u = 0; u < kUnits; ++u) rows[u] = src.row(row0 + unit_row(u));
  }
  __device__ void load(const Source& src, int k0) {
    const int k = k0 + 4 * quad();
    if (src.vec) {
      const typename Source::At at = src.at(k);
      TC_UNROLL
      for (int u = 0; u < kUnits; ++u) load4(src.data, src.offset(rows[u], at), v[u]);
      return;
    }
    TC_UNROLL
    for (int e = 0; e < 4; ++e) {
      const typename Source::At at = src.at(k + e);
      TC_UNROLL
      for (int u = 0; u < kUnits; ++u) v[u][e] = load1(src.data, src.offset(rows[u], at));
    }
  }
  __device__ void store(uint32_t* stage) const {
    TC_UNROLL
    for (int u = 0; u < kUnits; ++u) {
      const uint2 pairs =
          make_uint2(mma::pack_bf16x2(v[u][0], v[u][1]), mma::pack_bf16x2(v[u][2], v[u][3]));
      *reinterpret_cast<uint2*>(&stage[stage_word(unit_row(u), 2 * quad())]) = pairs;
    }
  }
};

// Across rows: unit u of a thread is rows 4j..4j+3 at k = 2 pair() and
// 2 pair() + 1 (one packed pair per row); a half-warp covers the stage's 16
// pairs of one row group, so each 16-byte read is half of a 32-byte sector
// whose other half its neighbour reads. A thread's pair (tid % 16) is the same
// in all its units.
template <class T, int ROWS, class Source>
struct StageLoader<T, ROWS, Source, false> {
  static constexpr int kGroups = ROWS / 4;
  static constexpr int kUnits = kPairsPerRow * kGroups / T::kThreads;
  static constexpr int kGroupsPerPass = T::kThreads / kPairsPerRow;
  static_assert(kUnits * T::kThreads == kPairsPerRow * kGroups, "whole units per thread");
  static_assert(kGroupsPerPass % 2 == 0, "a unit's group parity is the thread's");

  typename Source::Row first_rows[kUnits];  // row 4j of each unit (the vector path)
  int row0;
  float v[kUnits][2][4];  // [unit][k parity][row in group]

  __device__ static int pair() { return int(threadIdx.x) % kPairsPerRow; }
  __device__ static int unit_group(int u) {
    return int(threadIdx.x) / kPairsPerRow + u * kGroupsPerPass;
  }

  __device__ StageLoader(const Source& src, int first_row) : row0(first_row) {
    TC_UNROLL
    for (int u = 0; u < kUnits; ++u) first_rows[u] = src.row(row0 + 4 * unit_group(u));
  }
  __device__ void load(const Source& src, int k0) {
    const int k = k0 + 2 * pair();
    const typename Source::At at[2] = {src.at(k), src.at(k + 1)};
    TC_UNROLL
    for (int u = 0; u < kUnits; ++u) {
      TC_UNROLL
      for (int parity = 0; parity < 2; ++parity) {
        if (src.vec) {
          load4(src.data, src.offset(first_rows[u], at[parity]), v[u][parity]);
          continue;
        }
        TC_UNROLL
        for (int e = 0; e < 4; ++e) {  // rows one by one: their Row is recomputed
          const typename Source::Row row = src.row(row0 + 4 * unit_group(u) + e);
          v[u][parity][e] = load1(src.data, src.offset(row, at[parity]));
        }
      }
    }
  }
  __device__ void store(uint32_t* stage) const {
    // Odd groups store their rows in the order 1 0 3 2: at each step the two
    // half-warps then write rows of opposite parity, i.e. opposite bank halves.
    const bool odd = (int(threadIdx.x) / kPairsPerRow) & 1;
    TC_UNROLL
    for (int u = 0; u < kUnits; ++u) {
      uint32_t pairs[4];
      TC_UNROLL
      for (int e = 0; e < 4; ++e) pairs[e] = mma::pack_bf16x2(v[u][0][e], v[u][1][e]);
      TC_UNROLL
      for (int e = 0; e < 4; ++e) {
        const int row_in_group = odd ? e ^ 1 : e;
        const uint32_t value = odd ? pairs[e ^ 1] : pairs[e];
        stage[stage_word(4 * unit_group(u) + row_in_group, pair())] = value;
      }
    }
  }
};

// ------------------------------------------------------------------ mma over one stage

template <class T>
using Accumulators = float[T::kFragsM][T::kFragsN][4];

template <class T>
__device__ inline void mma_stage(const uint32_t* stage_a, const uint32_t* stage_b, int warp_m,
                                 int warp_n, int lane, Accumulators<T>& acc) {
  const int group = lane >> 2, thread_in_group = lane & 3;
  TC_UNROLL
  for (int ks = 0; ks < kBK / mma::kK; ++ks) {
    // This lane's pairs 2t and 2t+1 of the k step (see the top of this file).
    const int pair = ks * (mma::kK / 2) + 2 * thread_in_group;
    uint32_t a[T::kFragsM][4], b[T::kFragsN][2];
    TC_UNROLL
    for (int i = 0; i < T::kFragsM; ++i) {
      const int row = warp_m * T::kWarpM + i * mma::kM + group;
      const uint2 top = *reinterpret_cast<const uint2*>(&stage_a[stage_word(row, pair)]);
      const uint2 bottom = *reinterpret_cast<const uint2*>(&stage_a[stage_word(row + 8, pair)]);
      a[i][0] = top.x, a[i][1] = bottom.x, a[i][2] = top.y, a[i][3] = bottom.y;
    }
    TC_UNROLL
    for (int j = 0; j < T::kFragsN; ++j) {
      const int row = warp_n * T::kWarpN + j * mma::kN + group;
      const uint2 col = *reinterpret_cast<const uint2*>(&stage_b[stage_word(row, pair)]);
      b[j][0] = col.x, b[j][1] = col.y;
    }
    mma::mma_m16n8k16_bf16_grid(acc, a, b);
  }
}

// ------------------------------------------------------------------ epilogues
//
// Called with (m, n, v0, v1, split) for the outputs (m, n) and (m, n + 1), n
// even; they check the bounds.

// y = acc + bias + residual; residual may be y itself (read, then written,
// by the same thread).
struct ForwardEpilogue {
  float* y;
  const float* bias;
  const float* residual;
  int rows, cols;
  bool pairs;  // cols even and y, residual 8-byte aligned: float2 stores
  __device__ float value(int m, int n, float acc) const {
    float v = acc;
    if (bias) v += bias[n];
    if (residual) v += residual[m * cols + n];
    return v;
  }
  __device__ void operator()(int m, int n, float v0, float v1, int) const {
    if (m >= rows || n >= cols) return;
    if (pairs) {
      const float2 out = make_float2(value(m, n, v0), value(m, n + 1, v1));
      *reinterpret_cast<float2*>(&y[m * cols + n]) = out;
      return;
    }
    y[m * cols + n] = value(m, n, v0);
    if (n + 1 < cols) y[m * cols + n + 1] = value(m, n + 1, v1);
  }
};

// out = acc or out += acc (backward-data; backward-filter in one split).
struct StoreOrAddEpilogue {
  float* out;
  int rows, cols;
  bool accumulate, pairs;
  __device__ void operator()(int m, int n, float v0, float v1, int) const {
    if (m >= rows || n >= cols) return;
    float* p = &out[m * cols + n];
    if (pairs) {
      float2 v = make_float2(v0, v1);
      if (accumulate) {
        const float2 old = *reinterpret_cast<const float2*>(p);
        v.x = old.x + v.x, v.y = old.y + v.y;
      }
      *reinterpret_cast<float2*>(p) = v;
      return;
    }
    p[0] = accumulate ? p[0] + v0 : v0;
    if (n + 1 < cols) p[1] = accumulate ? p[1] + v1 : v1;
  }
};

// partials[split][m][n] = acc (backward-filter, several splits).
struct SplitPartialEpilogue {
  float* partials;
  int rows, cols;
  bool pairs;
  __device__ void operator()(int m, int n, float v0, float v1, int split) const {
    if (m >= rows || n >= cols) return;
    float* p = partials + int64_t(split) * rows * cols + m * cols + n;
    if (pairs) {
      *reinterpret_cast<float2*>(p) = make_float2(v0, v1);
      return;
    }
    p[0] = v0;
    if (n + 1 < cols) p[1] = v1;
  }
};

// ------------------------------------------------------------------ the kernel

struct GemmGrid {
  int tiles_n;           // output tiles along N (the fast index of blockIdx.x)
  int stages;            // reduction stages in all: ceil(reduction / kBK)
  int stages_per_split;  // blockIdx.y = split
};

// Block (tile, split): out[BM x BN] over the split's reduction stages.
template <class T, class SourceA, class SourceB, class Epilogue>
__global__ void __launch_bounds__(T::kThreads)
    conv_implicit_gemm_kernel(const SourceA src_a, const SourceB src_b, const GemmGrid grid,
                              const Epilogue epilogue) {
  __shared__ uint4 stages_raw[2 * (T::kStageWordsA + T::kStageWordsB) / 4];
  uint32_t* const stages_a = reinterpret_cast<uint32_t*>(stages_raw);
  uint32_t* const stages_b = stages_a + 2 * T::kStageWordsA;

  // Consecutive blocks share an A tile (the activations, read once from DRAM).
  const int tile_n = int(blockIdx.x) % grid.tiles_n, tile_m = int(blockIdx.x) / grid.tiles_n;
  const int m0 = tile_m * T::kBM, n0 = tile_n * T::kBN;
  const int split = int(blockIdx.y);
  const int first = split * grid.stages_per_split;
  const int last = min(grid.stages, first + grid.stages_per_split);  // exclusive, > first

  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int warp_m = warp / T::kWarpsN, warp_n = warp % T::kWarpsN;

  StageLoader<T, T::kBM, SourceA> loader_a(src_a, m0);
  StageLoader<T, T::kBN, SourceB> loader_b(src_b, n0);
  Accumulators<T> acc;
  mma::zero_accumulators(acc);

  loader_a.load(src_a, first * kBK);
  loader_b.load(src_b, first * kBK);
  loader_a.store(stages_a);
  loader_b.store(stages_b);
  __syncthreads();
  for (int s = first; s < last; ++s) {
    const int buffer = (s - first) & 1;
    const bool more = s + 1 < last;
    if (more) {  // in flight during the mma's below
      loader_a.load(src_a, (s + 1) * kBK);
      loader_b.load(src_b, (s + 1) * kBK);
    }
    mma_stage<T>(stages_a + buffer * T::kStageWordsA, stages_b + buffer * T::kStageWordsB, warp_m,
                 warp_n, lane, acc);
    if (more) {  // the other buffer was last read before the previous barrier
      loader_a.store(stages_a + (buffer ^ 1) * T::kStageWordsA);
      loader_b.store(stages_b + (buffer ^ 1) * T::kStageWordsB);
    }
    __syncthreads();
  }

  const int m_base = m0 + warp_m * T::kWarpM, n_base = n0 + warp_n * T::kWarpN;
  mma::for_each_accumulator_pair(acc, lane, [&](int row, int col, float v0, float v1) {
    epilogue(m_base + row, n_base + col, v0, v1, split);
  });
}

// ------------------------------------------------------------------ launching

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

bool aligned8(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & uintptr_t(7)) == 0;
}

template <class T>
int64_t tile_count(int64_t m, int64_t n) {
  return ceil_div(m, T::kBM) * ceil_div(n, T::kBN);
}

// Big tiles where they fill a wave (forward, backward-data), or where the
// output is at least one big tile in each direction (backward-filter, whose
// splits fill the GPU); the test override first.
bool use_large_tiles(int64_t m, int64_t n, bool splits_fill) {
  const int forced = conv2d_tensor_core_forced_tile();
  if (forced == LargeTile::kBM) return true;
  if (forced == SmallTile::kBM) return false;
  if (splits_fill) return m >= LargeTile::kBM && n >= LargeTile::kBN;
  return tile_count<LargeTile>(m, n) >= kWaveBlocks;
}

struct Split {
  int splits, stages, stages_per_split;
};

// Backward-filter's cut of the reduction: about kFilterTargetBlocks blocks,
// at least kMinStagesPerSplit stages a split, no empty split.
template <class T>
Split filter_split(const ConvDims& d) {
  const int64_t stages = ceil_div(d.out_pixels, kBK);
  const int64_t tiles = tile_count<T>(d.out_c, d.filter_k);
  const int64_t most = std::max<int64_t>(1, stages / kMinStagesPerSplit);
  const int64_t want = std::clamp<int64_t>(ceil_div(kFilterTargetBlocks, tiles), 1, most);
  const int64_t per_split = ceil_div(stages, want);
  return {int(ceil_div(stages, per_split)), int(stages), int(per_split)};
}

template <class T, class SourceA, class SourceB, class Epilogue>
void launch_gemm(const SourceA& a, const SourceB& b, int64_t m, int64_t n, int64_t reduction,
                 const Split* split, const Epilogue& epilogue, cudaStream_t stream) {
  GemmGrid grid;
  grid.tiles_n = int(ceil_div(n, T::kBN));
  grid.stages = int(ceil_div(reduction, kBK));
  grid.stages_per_split = split ? split->stages_per_split : grid.stages;
  const dim3 blocks(unsigned(tile_count<T>(m, n)), unsigned(split ? split->splits : 1));
  DDPM_LAUNCH((conv_implicit_gemm_kernel<T, SourceA, SourceB, Epilogue>), blocks, T::kThreads, 0,
              stream, a, b, grid, epilogue);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

template <class SourceA, class SourceB, class Epilogue>
void launch_by_size(const SourceA& a, const SourceB& b, int64_t m, int64_t n, int64_t reduction,
                    const Epilogue& epilogue, cudaStream_t stream) {
  if (use_large_tiles(m, n, false))
    launch_gemm<LargeTile>(a, b, m, n, reduction, nullptr, epilogue, stream);
  else
    launch_gemm<SmallTile>(a, b, m, n, reduction, nullptr, epilogue, stream);
}

template <class T>
void backward_filter(const float* x, const float* dy, float* dw, const ConvDims& d, float* partials,
                     cudaStream_t stream) {
  const OutGradByOutChannel a{dy, d, d.out_c % 4 == 0 && aligned16(dy)};
  const Im2colByFilterIndex b{x, d, d.in_c % 4 == 0 && aligned16(x)};
  const Split split = filter_split<T>(d);
  const bool pairs = d.filter_k % 2 == 0;  // dw and the workspace: 8-byte aligned then
  if (split.splits == 1) {
    const StoreOrAddEpilogue add{dw, d.out_c, d.filter_k, true, pairs && aligned8(dw)};
    launch_gemm<T>(a, b, d.out_c, d.filter_k, d.out_pixels, &split, add, stream);
    return;
  }
  const SplitPartialEpilogue store{partials, d.out_c, d.filter_k, pairs};
  launch_gemm<T>(a, b, d.out_c, d.filter_k, d.out_pixels, &split, store, stream);
  split_sum_add(partials, split.splits, int64_t(d.out_c) * d.filter_k, dw, stream);
}

template <class T>
size_t filter_partials_bytes(const ConvDims& d) {
  const Split split = filter_split<T>(d);
  if (split.splits == 1) return 0;
  return workspace_align(size_t(split.splits) * size_t(d.out_c) * size_t(d.filter_k) *
                         sizeof(float));
}

}  // namespace

size_t conv2d_tensor_core_workspace_bytes(const Conv2dShape& s) {
  const ConvDims d = conv_dims(s);
  // Either tile size (the shape picks one; tests may force the other).
  const size_t partials =
      std::max(filter_partials_bytes<LargeTile>(d), filter_partials_bytes<SmallTile>(d));
  return partials + column_sum_workspace_bytes(d.out_pixels, d.out_c);
}

void conv2d_tensor_core_forward(const float* x, const float* w, const float* bias,
                                const float* residual, float* y, const Conv2dShape& s,
                                void* /*workspace*/, cudaStream_t stream) {
  const ConvDims d = conv_dims(s);
  const Im2colByPixel a{x, d, d.in_c % 4 == 0 && aligned16(x)};
  const FilterByOutChannel b{w, d, d.filter_k % 4 == 0 && aligned16(w)};
  const bool pairs = d.out_c % 2 == 0 && aligned8(y) && (!residual || aligned8(residual));
  const ForwardEpilogue epilogue{y, bias, residual, d.out_pixels, d.out_c, pairs};
  launch_by_size(a, b, d.out_pixels, d.out_c, d.filter_k, epilogue, stream);
}

void conv2d_tensor_core_backward_data(const float* dy, const float* w, float* dx,
                                      const Conv2dShape& s, bool accumulate, void* /*workspace*/,
                                      cudaStream_t stream) {
  const ConvDims d = conv_dims(s);
  const OutGradByInPixel a{dy, d, d.out_c % 4 == 0 && aligned16(dy)};
  const FilterByInChannel b{w, d, d.in_c % 4 == 0 && aligned16(w)};
  const StoreOrAddEpilogue epilogue{dx, d.in_pixels, d.in_c, accumulate,
                                    d.in_c % 2 == 0 && aligned8(dx)};
  launch_by_size(a, b, d.in_pixels, d.in_c, d.taps_out, epilogue, stream);
}

void conv2d_tensor_core_backward_filter(const float* x, const float* dy, float* dw, float* db,
                                        const Conv2dShape& s, void* workspace,
                                        cudaStream_t stream) {
  const ConvDims d = conv_dims(s);
  const size_t partials_bytes =
      std::max(filter_partials_bytes<LargeTile>(d), filter_partials_bytes<SmallTile>(d));
  float* const partials = static_cast<float*>(workspace);
  if (use_large_tiles(d.out_c, d.filter_k, true))
    backward_filter<LargeTile>(x, dy, dw, d, partials, stream);
  else
    backward_filter<SmallTile>(x, dy, dw, d, partials, stream);
  if (db)
    column_sum_add(dy, db, d.out_pixels, d.out_c, static_cast<char*>(workspace) + partials_bytes,
                   stream);
}

}  // namespace ddpm::kernels::detail
