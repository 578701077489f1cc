// The implicit-GEMM mainloop of the bf16 convolution (kernels/conv2d_bf16.cu):
// one kernel template for forward, backward-data and backward-filter. A block
// owns a BM x BN output tile and walks its reduction range in stages of
// kBK = 32, through a kStages = 3 deep cp.async pipeline, ldmatrix and
// mma.sync m16n8k16 (bf16 x bf16 + fp32). Internal to conv2d_bf16.cu.
//
// Operands. Each GEMM operand is a Source (conv2d_bf16.cu): element (i, k),
// i an M row (A) or N row (B), k along the reduction, is a bf16 of global
// memory or zero (padding, tails). A source is one of two layouts:
//   - reduction-contiguous (forward's A and B, backward-data's A): 8
//     consecutive k of one row are 8 consecutive bf16 (8 channels of one tap,
//     NHWC / OHWI). Staged as [row][kBK]: a row is 64 bytes, 4 chunks of 16.
//   - row-contiguous (backward-data's B, both of backward-filter's):
//     8 consecutive rows at one k are 8 consecutive bf16 (channels again).
//     Staged as [k][ROWS]: a k row is ROWS * 2 bytes, ROWS / 8 chunks.
// A 16-byte chunk is one cp.async (16 bytes, zero fill when the chunk is
// outside the tensor) where the source says its chunks are contiguous and
// 16-byte aligned (`vec`: the channel count divisible by 8, the pointer
// aligned); otherwise the thread gathers the chunk's 8 elements one by one
// and stores them with one 16-byte st.shared into the same layout (the first
// conv's 3 input channels, the last conv's 3 output channels).
//
// Fragments: ldmatrix.x4 from [row][k] gives A's four registers (matrices
// rows 0-7 / 8-15 x k 0-7 / 8-15) or two n8 tiles of B; ldmatrix.x4.trans
// from [k][row] gives the same registers from the transposed storage
// (kernels/ldmatrix.cuh: trans delivers row 2(l%4), 2(l%4)+1 at column l/4,
// which is exactly (k = 2t, 2t+1; m or n = g)).
//
// Swizzle, and why it is conflict-free. Shared memory has 32 banks of 4
// bytes: 8 groups of 16 bytes, bank group = (byte address / 16) mod 8. Both
// ldmatrix (per 8x8 matrix: 8 lanes give 8 row addresses, 16 bytes each) and
// the stagers' 16-byte stores (a quarter-warp of 8 threads per phase) touch
// 8 chunks at a time; they are conflict-free when those 8 chunks sit in 8
// different bank groups.
//   [row][kBK], 64-byte rows: chunk c of row r is stored at chunk
//     c ^ ((r >> 1) & 3). Bank group = 4 (r & 1) + (c ^ ((r >> 1) & 3)).
//     ldmatrix reads one logical chunk of 8 rows r0..r0+7 (r0 % 8 == 0):
//     r & 1 picks the half, (r >> 1) & 3 takes 4 values, so 8 groups.
//     A stager quarter-warp writes rows 2j, 2j+1, chunks 0..3: again 8 groups.
//   [k][ROWS], rows of 128 or 256 bytes (a multiple of 128: every k row
//     starts in bank group 0): chunk c of k row r is stored at c ^ (r & 7).
//     ldmatrix .trans reads one logical chunk of 8 k rows r0..r0+7: r & 7
//     takes 8 values, 8 groups. A stager quarter-warp writes chunks 8j..8j+7
//     of one k row: XOR with a constant permutes them, 8 groups.
// No padding is needed, so three 128 x 128 stages fit the 48 KB of static
// shared memory.
//
// Pipeline: stages s+1 and s+2 are in flight (cp.async groups, one per stage
// and thread, committed even when empty so the group count stays uniform)
// while the warps run stage s. Before reading stage s: wait<kStages - 2>
// (this thread's copies of stage s landed) then __syncthreads (everyone's
// did, and everyone finished reading stage s - 1, whose buffer the copies
// issued right after the barrier overwrite).
#pragma once

#include <cstdint>

#include "kernels/async_copy.cuh"
#include "kernels/ldmatrix.cuh"
#include "kernels/warp_mma.cuh"

#if defined(__CUDACC__)
#define BF16_UNROLL _Pragma("unroll")
#else
#define BF16_UNROLL
#endif

namespace ddpm::kernels::detail::conv_bf16 {

constexpr int kBK = 32;     // reduction elements per stage
constexpr int kStages = 3;  // pipeline depth
constexpr int kChunk = 8;   // bf16 per 16-byte chunk

template <int BM, int BN, int WARPS_M, int WARPS_N>
struct TileShape {
  static constexpr int kBM = BM, kBN = BN;
  static constexpr int kWarpsN = WARPS_N;
  static constexpr int kThreads = 32 * WARPS_M * WARPS_N;
  static constexpr int kWarpM = BM / WARPS_M, kWarpN = BN / WARPS_N;
  static constexpr int kFragsM = kWarpM / mma::kM, kFragsN = kWarpN / mma::kN;
  static constexpr int kStageBytesA = BM * kBK * 2, kStageBytesB = BN * kBK * 2;
  static_assert(kWarpM % mma::kM == 0 && kFragsN % 2 == 0, "x4 loads: n8 tiles in pairs");
  static_assert(BM >= 64 && BN >= 64, "[k][rows] stages need rows of >= 8 chunks");
};
using LargeTile = TileShape<128, 128, 2, 4>;  // 8 warps of 64 x 32
using SmallTile = TileShape<64, 64, 2, 2>;    // 4 warps of 32 x 32

// Byte offsets of logical chunk `chunk` of row `row` (see the top).
__device__ inline int k_major_offset(int row, int chunk) {  // [row][kBK]
  return row * (kBK * 2) + ((chunk ^ ((row >> 1) & 3)) << 4);
}
template <int ROWS>
__device__ inline int row_major_offset(int k, int chunk) {  // [k][ROWS]
  return k * (ROWS * 2) + ((chunk ^ (k & 7)) << 4);
}

// Stages one operand: each thread owns kUnits chunks of the stage, at a
// fixed position along the contiguous direction (so Source::fixed() runs
// once per block and Source::step() once per stage and unit, or once per
// stage where the unit's k is the thread's).
template <class T, int ROWS, class Source, bool kReductionContiguous = Source::kReductionContiguous>
struct Stager;

template <class T, int ROWS, class Source>
struct Stager<T, ROWS, Source, true> {  // [row][kBK]; thread: chunk tid % 4 of rows
  static constexpr int kChunksPerRow = kBK / kChunk;
  static constexpr int kRowsPerPass = T::kThreads / kChunksPerRow;
  static constexpr int kUnits = ROWS / kRowsPerPass;
  static_assert(kUnits * kRowsPerPass == ROWS, "whole units");
  typename Source::Fixed fixed[kUnits];
  int first_row;

  __device__ static int chunk() { return int(threadIdx.x) % kChunksPerRow; }
  __device__ static int row(int u) { return int(threadIdx.x) / kChunksPerRow + u * kRowsPerPass; }
  __device__ Stager(const Source& src, int row0) : first_row(row0) {
    BF16_UNROLL
    for (int u = 0; u < kUnits; ++u) fixed[u] = src.fixed(row0 + row(u));
  }
  __device__ void stage(const Source& src, int k0, char* smem) const {
    const int k = k0 + kChunk * chunk();
    if (src.vec) {
      const typename Source::Step step = src.step(k);
      BF16_UNROLL
      for (int u = 0; u < kUnits; ++u) {
        const uint16_t* p = src.chunk(fixed[u], step);
        async_copy::copy16(smem + k_major_offset(row(u), chunk()), p ? p : src.data, p != nullptr);
      }
      return;
    }
    BF16_UNROLL
    for (int u = 0; u < kUnits; ++u) {
      uint32_t w[4];
      BF16_UNROLL
      for (int e = 0; e < 4; ++e)
        w[e] = uint32_t(src.element(first_row + row(u), k + 2 * e)) |
               (uint32_t(src.element(first_row + row(u), k + 2 * e + 1)) << 16);
      *reinterpret_cast<uint4*>(smem + k_major_offset(row(u), chunk())) =
          make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
};

template <class T, int ROWS, class Source>
struct Stager<T, ROWS, Source, false> {  // [k][ROWS]; thread: chunk tid % (ROWS/8) of k rows
  static constexpr int kChunksPerRow = ROWS / kChunk;
  static constexpr int kRowsPerPass = T::kThreads / kChunksPerRow;
  static constexpr int kUnits = kBK / kRowsPerPass;
  static_assert(kUnits * kRowsPerPass == kBK, "whole units");
  typename Source::Fixed fixed;
  int first;  // the chunk's first row (M or N index)

  __device__ static int chunk() { return int(threadIdx.x) % kChunksPerRow; }
  __device__ static int krow(int u) { return int(threadIdx.x) / kChunksPerRow + u * kRowsPerPass; }
  __device__ Stager(const Source& src, int row0) : first(row0 + kChunk * chunk()) {
    fixed = src.fixed(first);
  }
  __device__ void stage(const Source& src, int k0, char* smem) const {
    BF16_UNROLL
    for (int u = 0; u < kUnits; ++u) {
      const int k = k0 + krow(u);
      char* dst = smem + row_major_offset<ROWS>(krow(u), chunk());
      if (src.vec) {
        const uint16_t* p = src.chunk(fixed, src.step(k));
        async_copy::copy16(dst, p ? p : src.data, p != nullptr);
        continue;
      }
      uint32_t w[4];
      BF16_UNROLL
      for (int e = 0; e < 4; ++e)
        w[e] = uint32_t(src.element(first + 2 * e, k)) |
               (uint32_t(src.element(first + 2 * e + 1, k)) << 16);
      *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
};

template <class T>
using Accumulators = float[T::kFragsM][T::kFragsN][4];

// A fragments of one 16-wide k step (ks) for the warp's kFragsM m16 tiles.
template <class T, bool kReductionContiguous>
__device__ inline void load_a(const char* stage, int warp_m, int ks, int lane,
                              uint32_t (&a)[T::kFragsM][4]) {
  BF16_UNROLL
  for (int i = 0; i < T::kFragsM; ++i) {
    const int m = warp_m * T::kWarpM + i * mma::kM;
    if constexpr (kReductionContiguous) {  // matrix lane/8: rows +8 (bit 0), k +8 (bit 1)
      const int row = m + (lane & 7) + ((lane >> 3) & 1) * 8;
      ldsm::x4(a[i], stage + k_major_offset(row, ks * 2 + (lane >> 4)));
    } else {  // transposed: k +8 (bit 1), rows +8 (bit 0)
      const int k = ks * mma::kK + (lane & 7) + (lane >> 4) * 8;
      ldsm::x4_trans(a[i], stage + row_major_offset<T::kBM>(k, m / kChunk + ((lane >> 3) & 1)));
    }
  }
}

// B fragments of one k step for the warp's kFragsN n8 tiles, two per x4.
template <class T, bool kReductionContiguous>
__device__ inline void load_b(const char* stage, int warp_n, int ks, int lane,
                              uint32_t (&b)[T::kFragsN][2]) {
  BF16_UNROLL
  for (int j = 0; j < T::kFragsN; j += 2) {
    const int n = warp_n * T::kWarpN + j * mma::kN;
    uint32_t r[4];
    if constexpr (kReductionContiguous) {  // matrix lane/8: k +8 (bit 0), tile +1 (bit 1)
      const int row = n + (lane & 7) + (lane >> 4) * 8;
      ldsm::x4(r, stage + k_major_offset(row, ks * 2 + ((lane >> 3) & 1)));
    } else {
      const int k = ks * mma::kK + (lane & 7) + ((lane >> 3) & 1) * 8;
      ldsm::x4_trans(r, stage + row_major_offset<T::kBN>(k, n / kChunk + (lane >> 4)));
    }
    b[j][0] = r[0], b[j][1] = r[1], b[j + 1][0] = r[2], b[j + 1][1] = r[3];
  }
}

// What a Problem (conv2d_bf16.cu) tells the kernel about blockIdx.y's GEMM:
// its sizes and the block's reduction stages [first, last).
struct Job {
  int rows, cols;   // M, N
  int first, last;  // stages of this block (last may equal first: no reduction)
};

// Block (tile = blockIdx.x, z = blockIdx.y): out[BM x BN] of problem.job(z).
// Tiles are numbered N-fastest (consecutive blocks share the A tile); blocks
// past job(z)'s tiles (backward-data's smaller phases) return at once.
template <class T, class Problem>
__global__ void __launch_bounds__(T::kThreads) conv_bf16_kernel(const Problem problem) {
  using SourceA = typename Problem::SourceA;
  using SourceB = typename Problem::SourceB;
  // 16-byte alignment is all cp.async and ldmatrix need; the bank analysis
  // at the top holds for any 16-byte aligned base (a constant shift of the
  // bank groups permutes them).
  __shared__ uint4 smem[kStages * (T::kStageBytesA + T::kStageBytesB) / 16];
  char* const stages_a = reinterpret_cast<char*>(smem);
  char* const stages_b = stages_a + kStages * T::kStageBytesA;

  const int z = int(blockIdx.y);
  const Job job = problem.job(z);
  const int tiles_n = (job.cols + T::kBN - 1) / T::kBN;
  const int tile_m = int(blockIdx.x) / tiles_n, tile_n = int(blockIdx.x) % tiles_n;
  const int m0 = tile_m * T::kBM, n0 = tile_n * T::kBN;
  if (m0 >= job.rows) return;  // the whole block: before any barrier

  const SourceA src_a = problem.source_a(z);
  const SourceB src_b = problem.source_b(z);
  const Stager<T, T::kBM, SourceA> stager_a(src_a, m0);
  const Stager<T, T::kBN, SourceB> stager_b(src_b, n0);

  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int warp_m = warp / T::kWarpsN, warp_n = warp % T::kWarpsN;
  Accumulators<T> acc;
  mma::zero_accumulators(acc);

  const int count = job.last - job.first;
  BF16_UNROLL
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < count) {
      stager_a.stage(src_a, (job.first + s) * kBK, stages_a + s * T::kStageBytesA);
      stager_b.stage(src_b, (job.first + s) * kBK, stages_b + s * T::kStageBytesB);
    }
    async_copy::commit();
  }
  for (int t = 0; t < count; ++t) {
    async_copy::wait<kStages - 2>();
    __syncthreads();
    const int next = t + kStages - 1;
    if (next < count) {
      const int buffer = next % kStages;
      stager_a.stage(src_a, (job.first + next) * kBK, stages_a + buffer * T::kStageBytesA);
      stager_b.stage(src_b, (job.first + next) * kBK, stages_b + buffer * T::kStageBytesB);
    }
    async_copy::commit();
    const char* stage_a = stages_a + (t % kStages) * T::kStageBytesA;
    const char* stage_b = stages_b + (t % kStages) * T::kStageBytesB;
    BF16_UNROLL
    for (int ks = 0; ks < kBK / mma::kK; ++ks) {
      uint32_t a[T::kFragsM][4], b[T::kFragsN][2];
      load_a<T, SourceA::kReductionContiguous>(stage_a, warp_m, ks, lane, a);
      load_b<T, SourceB::kReductionContiguous>(stage_b, warp_n, ks, lane, b);
      mma::mma_m16n8k16_bf16_grid(acc, a, b);
    }
  }
  async_copy::wait_all();  // only empty groups can be left; keeps the count honest

  const int m_base = m0 + warp_m * T::kWarpM, n_base = n0 + warp_n * T::kWarpN;
  mma::for_each_accumulator_pair(acc, lane, [&](int row, int col, float v0, float v1) {
    const int m = m_base + row, n = n_base + col;
    if (m < job.rows && n < job.cols) problem.store(z, m, n, v0, v1);
  });
}

}  // namespace ddpm::kernels::detail::conv_bf16

#undef BF16_UNROLL
