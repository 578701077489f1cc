// bf16 tensor-core GEMM (contract: gemm_bf16.cuh):
//   C[m, n] (= or +=) op(A)[m, k] * op(B)[k, n] (+ bias[n])
// on the warp-level mma.sync m16n8k16 (kernels/warp_mma.cuh), with operands
// read by cp.async (async_copy.cuh) into a 3-stage shared-memory pipeline and
// moved into fragments by ldmatrix (ldmatrix.cuh). Under the CPU emulator and
// below sm_80 the same code runs the portable twins of those primitives.
//
// Tiles. A block owns a BM x BN tile of C and walks k in stages of kBK = 32:
//   128 x 128, 8 warps of 64 x 32 (4 x 4 mma tiles, 64 fp32 accumulators a
//               thread), 3 x 16 KB of shared stages;
//   64 x 64,    4 warps of 32 x 32 (2 x 4 mma tiles), 3 x 8 KB;
// the big tile where it gives a wave of blocks (132 SMs on an H100/H200), else
// the small one where that does, else split-K (below).
//
// Shared layout. Each operand's stage is kept in the layout it has in global
// memory, so a 16-byte global chunk (8 bf16) lands as one 16-byte shared chunk:
//   - contiguous along k (A as [m][k], B transposed as [n][k]): R rows of 32
//     bf16 = 64 bytes = 4 chunks. Chunk c of row r is stored at chunk
//     c ^ ((r >> 1) & 3). ldmatrix (non-transposed) reads 8 consecutive rows
//     r0..r0+7 (r0 % 8 == 0) at one logical chunk per 8x8 matrix. Two rows
//     share a 128-byte bank line, so the 16-byte bank group of row r is
//     4 (r & 1) + physical chunk: r & 1 gives bit 2, c ^ ((r >> 1) & 3)
//     takes 4 distinct values over the 4 row pairs; the 8 rows hit 8 distinct
//     bank groups = all 32 banks once.
//   - contiguous along m or n (A transposed as [k][m], B as [k][n]): 32 k rows
//     of R bf16 (R = 64 or 128: 8 or 16 chunks, a multiple of 128 bytes, so
//     the row adds nothing to the bank). Chunk c of k row r is stored at chunk
//     c ^ (r & 7). ldmatrix.trans reads 8 consecutive k rows at one logical
//     chunk per matrix: c ^ (r & 7) takes 8 distinct values in the low 3 bits,
//     8 distinct bank groups. The .trans form hands each lane the pair
//     (k = 2t, 2t+1) at one m (n) = the mma fragment, so no register shuffling.
//   cp.async stores: a quarter-warp (the unit a 128-byte shared access is
//   served in) writes 8 consecutive chunks: two whole rows (k-contiguous; the
//   XOR permutes chunks within a row) or 8 chunks of an aligned group of 8 in
//   one row (m/n-contiguous; the XOR permutes within the group): 128
//   distinct bytes, conflict-free. No padding is needed.
// Fragments: A's x4 loads the four 8x8 matrices (rows 0-7 | 8-15) x (k 0-7 |
// 8-15) in the order of the mma A registers; B's x4 loads two n8 tiles' (k 0-7,
// k 8-15) pairs. Operands contiguous along k use ldmatrix, the others
// ldmatrix.trans (A as [k][m] stores 8x8 blocks with rows = k).
//
// Pipeline (kStages = 3): stages 0 and 1 are issued before the loop; at stage
// s a thread waits for its group s (wait<1>: at most the newest group still in
// flight), one __syncthreads makes stage s visible to every warp and also
// says every warp is done with stage s - 1, whose buffer is then refilled with
// stage s + 2 while the mma's of stage s run. One barrier per stage. Every
// iteration commits a group (possibly empty) so the group count stays regular.
//
// Staging without 16-byte copies: an operand whose contiguous extent is not a
// multiple of 8, or whose base is not 16-byte aligned, is loaded element by
// element (zeros outside the matrix) and stored as the same 16-byte chunks,
// synchronously; the pipeline's barriers order those stores as well. Both
// paths zero-fill rows and k beyond the matrix (tails), so any shape works.
//
// Epilogue: v = acc (+ bias[n]); C = v or C = C + v; rounded to bf16 once at
// the store for bf16 outputs; pairs of columns stored as one 32-bit (bf16) or
// 64-bit (fp32) word where n is even and C aligned.
//
// Split-K. When even the small tile leaves SMs idle (the attention
// projections' dW = dy^T x: 256 x 256 with k = 32768 is 4 big tiles), k is cut
// into splits, chosen from the shape alone: about two blocks per SM (a big
// block takes 48 KB and 256 threads, two fit), at least kMinStagesPerSplit
// stages each; the big tile where k is long enough for it to reach that many
// blocks (4 tiles x 64 splits of 16 stages for that dW), else the small one.
// Split s writes its fp32 tile to workspace[s][m][n];
// gemm_bf16_split_epilogue_kernel adds the partials in split order (s = 0, 1,
// ...) and applies the same epilogue. No atomics: bitwise reproducible for a
// shape.
//
// Index math is 32-bit (validate() keeps every operand under 2^31 elements and
// an index is formed only for an element inside its matrix), except the
// split offsets into the workspace.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/async_copy.cuh"
#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "kernels/gemm_bf16.cuh"
#include "kernels/gemm_checks.h"
#include "kernels/ldmatrix.cuh"
#include "kernels/warp_mma.cuh"

// Every device loop here has a compile-time trip count; unrolled, its arrays
// (accumulators, fragments) stay in registers.
#if defined(__CUDACC__)
#define GB_UNROLL _Pragma("unroll")
#else
#define GB_UNROLL
#endif

namespace ddpm::kernels {

namespace {

constexpr int kBK = 32;               // k per stage
constexpr int kStages = 3;            // cp.async pipeline depth
constexpr int kChunk = 8;             // bf16 per 16-byte chunk
constexpr int64_t kWaveBlocks = 132;  // SMs of an H100 / H200
constexpr int64_t kSplitTargetBlocks = 2 * kWaveBlocks;
constexpr int64_t kMinStagesPerSplit =
    8;                                 // 256 of k: fills and drains the pipeline a few times over
constexpr int64_t kMaxSplits = 65535;  // gridDim.y

template <int BM_, int BN_, int WARPS_M, int WARPS_N, int MIN_BLOCKS>
struct Tile {
  static constexpr int BM = BM_, BN = BN_, kWarpsN = WARPS_N, kMinBlocks = MIN_BLOCKS;
  static constexpr int kThreads = 32 * WARPS_M * WARPS_N;
  static constexpr int kWarpM = BM / WARPS_M, kWarpN = BN / WARPS_N;
  static constexpr int kFragsM = kWarpM / mma::kM, kFragsN = kWarpN / mma::kN;
  static constexpr int kStageBytesA = BM * kBK * 2, kStageBytesB = BN * kBK * 2;
  static constexpr int kSharedBytes = kStages * (kStageBytesA + kStageBytesB);
  static_assert(kWarpM % mma::kM == 0 && kWarpN % mma::kN == 0, "whole mma tiles per warp");
  static_assert(kFragsN % 2 == 0, "B fragments come in pairs from one ldmatrix.x4");
  static_assert(BM % 64 == 0 && BN % 64 == 0, "m/n-contiguous rows need 8 chunks for the swizzle");
  static_assert(kSharedBytes <= 48 * 1024, "static shared memory, no opt-in");
};
using LargeTile = Tile<128, 128, 2, 4, 2>;  // 8 warps of 64 x 32
using SmallTile = Tile<64, 64, 2, 2, 4>;    // 4 warps of 32 x 32

// ------------------------------------------------------------------ shared layout

// One operand's stage: R rows of op(A) (R = BM) or columns of op(B) (R = BN)
// by kBK. kAlongK: stored [R][kBK], else [kBK][R]. Byte offset of chunk
// `chunk` of stored row `row`, XOR-swizzled (see the top of this file).
template <int R, bool kAlongK>
struct StageLayout {
  static constexpr int kRowChunks = kAlongK ? kBK / kChunk : R / kChunk;
  static constexpr int kRows = kAlongK ? R : kBK;
  static constexpr int kChunks = kRows * kRowChunks;
  __device__ static inline int offset(int row, int chunk) {
    if constexpr (kAlongK)
      return row * (kBK * 2) + ((chunk ^ ((row >> 1) & 3)) << 4);
    else
      return row * (R * 2) + ((chunk ^ (row & 7)) << 4);
  }
};

// An operand in global memory: `rows` along m (A) or n (B) by `k`, stored
// contiguous along k (row stride k) or along rows (k-row stride `rows`).
struct Operand {
  const uint16_t* data;  // bf16 bits
  int rows, k;
  bool vec;  // 16-byte copies: base 16-byte aligned, contiguous extent % 8 == 0
};

// Issues (or, on the scalar path, performs) the loads of one operand's stage
// whose corner is (r0, k0) into `stage`. Zeros outside the matrix.
template <int R, bool kAlongK, int kThreads>
__device__ inline void load_stage(const Operand& op, int r0, int k0, char* stage) {
  using L = StageLayout<R, kAlongK>;
  constexpr int kPerThread = (L::kChunks + kThreads - 1) / kThreads;
  // Along the contiguous dimension (`along`) and across it (`fixed`).
  const int along_extent = kAlongK ? op.k : op.rows, fixed_extent = kAlongK ? op.rows : op.k;
  GB_UNROLL
  for (int p = 0; p < kPerThread; ++p) {
    const int u = int(threadIdx.x) + p * kThreads;
    if (L::kChunks % kThreads != 0 && u >= L::kChunks) break;
    const int row = u / L::kRowChunks, chunk = u % L::kRowChunks;
    const int fixed = (kAlongK ? r0 : k0) + row, along = (kAlongK ? k0 : r0) + chunk * kChunk;
    char* const dst = stage + L::offset(row, chunk);
    const bool fixed_ok = fixed < fixed_extent;
    if (op.vec) {  // along_extent % 8 == 0: a chunk is wholly inside or outside
      const bool valid = fixed_ok && along < along_extent;
      const uint16_t* src = valid ? op.data + (fixed * along_extent + along) : op.data;
      async_copy::copy16(dst, src, valid);
    } else {
      uint32_t w[4];
      GB_UNROLL
      for (int e = 0; e < 4; ++e) {
        uint32_t lo = 0, hi = 0;
        if (fixed_ok && along + 2 * e < along_extent)
          lo = op.data[fixed * along_extent + along + 2 * e];
        if (fixed_ok && along + 2 * e + 1 < along_extent)
          hi = op.data[fixed * along_extent + along + 2 * e + 1];
        w[e] = lo | (hi << 16);
      }
      *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
}

// ------------------------------------------------------------------ mma over one stage

template <class T>
using Accumulators = float[T::kFragsM][T::kFragsN][4];

// One ldmatrix.x4 whose lane reads row r of the 8x8 matrix at (row, k) of a
// stage of kRows rows. Stored along k, the matrix is read as it is; stored
// with rows = k, it is transposed, so both give (row, k pair) fragments.
template <int kRows, bool kAlongK>
__device__ inline void load_x4(const char* stage, int row, int k, int r, uint32_t (&q)[4]) {
  using L = StageLayout<kRows, kAlongK>;
  if constexpr (kAlongK)
    ldsm::x4(q, stage + L::offset(row + r, k / kChunk));
  else
    ldsm::x4_trans(q, stage + L::offset(k + r, row / kChunk));
}

// A's fragments for k step ks: lane l addresses row l % 8 of matrix l / 8,
// matrices (m 0-7, k 0-7), (m 8-15, k 0-7), (m 0-7, k 8-15), (m 8-15, k 8-15)
// = the mma's A registers 0..3.
template <class T, bool kAlongK>
__device__ inline void load_a_fragments(const char* stage, int m_warp, int ks, int lane,
                                        uint32_t (&a)[T::kFragsM][4]) {
  const int matrix = lane >> 3, r = lane & 7;
  GB_UNROLL
  for (int i = 0; i < T::kFragsM; ++i) {
    const int m = m_warp + i * mma::kM + 8 * (matrix & 1);
    const int k = ks * mma::kK + 8 * (matrix >> 1);
    load_x4<T::BM, kAlongK>(stage, m, k, r, a[i]);
  }
}

// B's fragments for k step ks, two n8 tiles per x4: matrices (n 0-7, k 0-7),
// (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15) = registers 0, 1 of
// tile j and 0, 1 of tile j + 1.
template <class T, bool kAlongK>
__device__ inline void load_b_fragments(const char* stage, int n_warp, int ks, int lane,
                                        uint32_t (&b)[T::kFragsN][2]) {
  const int matrix = lane >> 3, r = lane & 7;
  GB_UNROLL
  for (int j = 0; j < T::kFragsN; j += 2) {
    const int n = n_warp + j * mma::kN + 8 * (matrix >> 1);
    const int k = ks * mma::kK + 8 * (matrix & 1);
    uint32_t q[4];
    load_x4<T::BN, kAlongK>(stage, n, k, r, q);
    b[j][0] = q[0], b[j][1] = q[1], b[j + 1][0] = q[2], b[j + 1][1] = q[3];
  }
}

// ------------------------------------------------------------------ epilogue

enum class OutKind : int { bf16, f32, partial };

struct KernelArgs {
  Operand a, b;
  const float* bias;
  void* c;          // __nv_bfloat16 or float, [m][n]
  float* partials;  // [splits][m][n] when out == partial
  int m, n;
  int tiles_n;
  int stages;            // ceil(k / kBK)
  int stages_per_split;  // blockIdx.y = split
  OutKind out;
  bool accumulate;
  bool pairs;  // n even and C (bf16: 4-byte, fp32: 8-byte) aligned
};

__device__ inline float bf16_bits_to_float(uint32_t bits) {
  return __uint_as_float(bits << 16);
}
__device__ inline uint16_t float_to_bf16_bits(float v) {
  return uint16_t(mma::pack_bf16x2(v, 0.0f) & 0xFFFFu);
}

// The final value of C at (row, col) from the sum `v` (bias, accumulate)...
__device__ inline float finish(const KernelArgs& g, int col, float v) {
  return g.bias ? v + g.bias[col] : v;
}

// ... and its store: outputs (row, col) and (row, col + 1) from v0, v1 (col
// even; the second only where col + 1 < n). The bf16 rounding happens once, here.
__device__ inline void store_pair(const KernelArgs& g, int row, int col, float v0, float v1,
                                  int split) {
  if (row >= g.m || col >= g.n) return;
  const bool second = col + 1 < g.n;
  const int at = row * g.n + col;
  if (g.out == OutKind::partial) {
    float* p = g.partials + int64_t(split) * g.m * g.n + at;
    if (g.pairs) {
      *reinterpret_cast<float2*>(p) = make_float2(v0, v1);
    } else {
      p[0] = v0;
      if (second) p[1] = v1;
    }
    return;
  }
  v0 = finish(g, col, v0);
  if (second) v1 = finish(g, col + 1, v1);
  if (g.out == OutKind::f32) {
    float* p = static_cast<float*>(g.c) + at;
    if (g.pairs) {
      float2 v = make_float2(v0, v1);
      if (g.accumulate) {
        const float2 old = *reinterpret_cast<const float2*>(p);
        v.x = old.x + v.x, v.y = old.y + v.y;
      }
      *reinterpret_cast<float2*>(p) = v;
    } else {
      p[0] = g.accumulate ? p[0] + v0 : v0;
      if (second) p[1] = g.accumulate ? p[1] + v1 : v1;
    }
    return;
  }
  uint16_t* p = static_cast<uint16_t*>(g.c) + at;
  if (g.pairs) {
    uint32_t* word = reinterpret_cast<uint32_t*>(p);
    if (g.accumulate) {
      const uint32_t old = *word;
      v0 = bf16_bits_to_float(old & 0xFFFFu) + v0;
      v1 = bf16_bits_to_float(old >> 16) + v1;
    }
    *word = mma::pack_bf16x2(v0, v1);
  } else {
    p[0] = float_to_bf16_bits(g.accumulate ? bf16_bits_to_float(p[0]) + v0 : v0);
    if (second) p[1] = float_to_bf16_bits(g.accumulate ? bf16_bits_to_float(p[1]) + v1 : v1);
  }
}

// ------------------------------------------------------------------ the kernels

// Block (tile, split): C's BM x BN tile over the split's stages of k.
template <class T, bool kTransA, bool kTransB>
__global__ void __launch_bounds__(T::kThreads, T::kMinBlocks) gemm_bf16_kernel(const KernelArgs g) {
  // A is [m][k] (contiguous along k) unless transposed; B is [k][n] unless transposed.
  constexpr bool kAlongKA = !kTransA, kAlongKB = kTransB;
  __shared__ uint4 smem_raw[T::kSharedBytes / 16];
  char* const stages_a = reinterpret_cast<char*>(smem_raw);
  char* const stages_b = stages_a + kStages * T::kStageBytesA;

  // Consecutive blocks share an A row panel (L2 reuse).
  const int tile_n = int(blockIdx.x) % g.tiles_n, tile_m = int(blockIdx.x) / g.tiles_n;
  const int m0 = tile_m * T::BM, n0 = tile_n * T::BN;
  const int split = int(blockIdx.y);
  const int first = split * g.stages_per_split;
  const int count = min(g.stages, first + g.stages_per_split) - first;  // > 0 unless k == 0

  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int m_warp = (warp / T::kWarpsN) * T::kWarpM, n_warp = (warp % T::kWarpsN) * T::kWarpN;

  auto load = [&](int s, int buffer) {  // stage first + s into `buffer`
    const int k0 = (first + s) * kBK;
    load_stage<T::BM, kAlongKA, T::kThreads>(g.a, m0, k0, stages_a + buffer * T::kStageBytesA);
    load_stage<T::BN, kAlongKB, T::kThreads>(g.b, n0, k0, stages_b + buffer * T::kStageBytesB);
  };

  Accumulators<T> acc;
  mma::zero_accumulators(acc);

  GB_UNROLL
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < count) load(s, s);
    async_copy::commit();
  }
  int buffer = 0;  // s % kStages
  for (int s = 0; s < count; ++s) {
    async_copy::wait<kStages - 2>();  // this thread's copies of stage s landed
    __syncthreads();                  // everyone's did; everyone is done with stage s - 1
    const int next = s + kStages - 1, next_buffer = buffer == 0 ? kStages - 1 : buffer - 1;
    if (next < count) load(next, next_buffer);  // into stage s - 1's buffer
    async_copy::commit();
    const char* sa = stages_a + buffer * T::kStageBytesA;
    const char* sb = stages_b + buffer * T::kStageBytesB;
    GB_UNROLL
    for (int ks = 0; ks < kBK / mma::kK; ++ks) {
      uint32_t a[T::kFragsM][4], b[T::kFragsN][2];
      load_a_fragments<T, kAlongKA>(sa, m_warp, ks, lane, a);
      load_b_fragments<T, kAlongKB>(sb, n_warp, ks, lane, b);
      mma::mma_m16n8k16_bf16_grid(acc, a, b);
    }
    buffer = buffer == kStages - 1 ? 0 : buffer + 1;
  }
  async_copy::wait_all();  // only empty groups remain; leave none behind

  mma::for_each_accumulator_pair(acc, lane, [&](int row, int col, float v0, float v1) {
    store_pair(g, m0 + m_warp + row, n0 + n_warp + col, v0, v1, split);
  });
}

// Split-K's second pass: C[i] from the sum of partials[s][i] over s in order,
// through the same epilogue (bias, accumulate, rounding) as store_pair.
__global__ void gemm_bf16_split_epilogue_kernel(const KernelArgs g, int splits) {
  const int count = g.m * g.n;
  for (int i = int(blockIdx.x * blockDim.x + threadIdx.x); i < count;
       i += int(gridDim.x * blockDim.x)) {
    float v = g.partials[i];
    for (int s = 1; s < splits; ++s) v += g.partials[int64_t(s) * count + i];
    v = finish(g, i % g.n, v);
    if (g.out == OutKind::f32) {
      float* p = static_cast<float*>(g.c) + i;
      *p = g.accumulate ? *p + v : v;
    } else {
      uint16_t* p = static_cast<uint16_t*>(g.c) + i;
      *p = float_to_bf16_bits(g.accumulate ? bf16_bits_to_float(*p) + v : v);
    }
  }
}

// ------------------------------------------------------------------ host side

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

template <class T>
int64_t tile_count(int64_t m, int64_t n) {
  return ceil_div(m, T::BM) * ceil_div(n, T::BN);
}

bool aligned(const void* p, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

[[noreturn]] void bad_argument(const std::string& what) {
  detail::gemm_bad_argument("gemm_bf16", what);
}

void check_dimension(const char* name, int64_t v) {
  detail::check_gemm_dimension("gemm_bf16", name, v);
}

void validate(int64_t m, int64_t n, int64_t k, const void* a, const void* b, const float* bias,
              const void* c, bool c_is_bf16, const void* workspace, size_t workspace_bytes) {
  detail::check_gemm_arguments("gemm_bf16", m, n, k, a, b, bias, c, 2, c_is_bf16 ? 2 : 4);
  const bool output = m > 0 && n > 0;
  if (output && workspace_bytes > 0) {
    if (workspace == nullptr)
      bad_argument("workspace is null but this shape needs " + std::to_string(workspace_bytes) +
                   " bytes (gemm_bf16_workspace_bytes)");
    if (!aligned(workspace, 16)) bad_argument("workspace is not 16-byte aligned");
  }
}

template <class T, bool kTransA, bool kTransB>
void launch(const KernelArgs& args, int splits, cudaStream_t stream) {
  const dim3 grid(unsigned(tile_count<T>(args.m, args.n)), unsigned(splits));
  DDPM_LAUNCH((gemm_bf16_kernel<T, kTransA, kTransB>), grid, T::kThreads, 0, stream, args);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_tile(const KernelArgs& args, bool trans_a, bool trans_b, int splits,
                 cudaStream_t stream) {
  if (!trans_a && !trans_b)
    launch<T, false, false>(args, splits, stream);
  else if (!trans_a && trans_b)
    launch<T, false, true>(args, splits, stream);
  else if (trans_a && !trans_b)
    launch<T, true, false>(args, splits, stream);
  else
    launch<T, true, true>(args, splits, stream);
}

void run(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const __nv_bfloat16* a,
         const __nv_bfloat16* b, const float* bias, void* c, bool c_is_bf16, bool accumulate,
         void* workspace, const GemmBf16Plan& plan, cudaStream_t stream) {
  if (m == 0 || n == 0) return;
  KernelArgs g{};
  // A is [m][k] unless transposed ([k][m]); B is [k][n] unless transposed ([n][k]).
  g.a = {reinterpret_cast<const uint16_t*>(a), int(m), int(k), false};
  g.b = {reinterpret_cast<const uint16_t*>(b), int(n), int(k), false};
  g.a.vec = (trans_a ? m : k) % kChunk == 0 && aligned(a, 16);
  g.b.vec = (trans_b ? k : n) % kChunk == 0 && aligned(b, 16);
  g.bias = bias;
  g.c = c;
  g.m = int(m), g.n = int(n);
  const int64_t tile_n = plan.tile == GemmBf16Tile::tile128x128 ? LargeTile::BN : SmallTile::BN;
  g.tiles_n = int(ceil_div(n, tile_n));
  g.stages = int(ceil_div(k, kBK));
  g.stages_per_split = int(plan.stages_per_split);
  g.accumulate = accumulate;
  const bool split = plan.splits > 1;
  if (split) {
    g.out = OutKind::partial;
    g.partials = static_cast<float*>(workspace);
    g.pairs = n % 2 == 0;
  } else {
    g.out = c_is_bf16 ? OutKind::bf16 : OutKind::f32;
    g.pairs = n % 2 == 0 && aligned(c, c_is_bf16 ? 4 : 8);
  }
  if (plan.tile == GemmBf16Tile::tile128x128)
    launch_tile<LargeTile>(g, trans_a, trans_b, plan.splits, stream);
  else
    launch_tile<SmallTile>(g, trans_a, trans_b, plan.splits, stream);
  if (!split) return;
  g.out = c_is_bf16 ? OutKind::bf16 : OutKind::f32;
  constexpr int kThreads = 256;
  const int64_t blocks = std::min<int64_t>(ceil_div(m * n, kThreads), 4 * kWaveBlocks);
  DDPM_LAUNCH(gemm_bf16_split_epilogue_kernel, unsigned(blocks), kThreads, 0, stream, g,
              plan.splits);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void checked_run(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                 const __nv_bfloat16* a, const __nv_bfloat16* b, const float* bias, void* c,
                 bool c_is_bf16, bool accumulate, void* workspace, const GemmBf16Plan& plan,
                 cudaStream_t stream) {
  validate(m, n, k, a, b, bias, c, c_is_bf16, workspace,
           detail::gemm_bf16_plan_workspace_bytes(plan, m, n));
  run(trans_a, trans_b, m, n, k, a, b, bias, c, c_is_bf16, accumulate, workspace, plan, stream);
}

}  // namespace

const char* gemm_bf16_tile_name(GemmBf16Tile tile) {
  switch (tile) {
    case GemmBf16Tile::tile128x128:
      return "128x128";
    case GemmBf16Tile::tile64x64:
      return "64x64";
  }
  return "?";
}

namespace detail {

GemmBf16Plan gemm_bf16_make_plan(GemmBf16Tile tile, int64_t splits, int64_t k) {
  const int64_t stages = ceil_div(std::max<int64_t>(k, 0), kBK);
  GemmBf16Plan plan;
  plan.tile = tile;
  if (stages == 0) return plan;  // one split, no stages: the epilogue alone
  splits = std::clamp<int64_t>(splits, 1, std::min(stages, kMaxSplits));
  plan.stages_per_split = ceil_div(stages, splits);
  plan.splits = int(ceil_div(stages, plan.stages_per_split));  // none empty
  return plan;
}

size_t gemm_bf16_plan_workspace_bytes(const GemmBf16Plan& plan, int64_t m, int64_t n) {
  if (plan.splits <= 1 || m <= 0 || n <= 0) return 0;
  const size_t bytes = size_t(plan.splits) * size_t(m) * size_t(n) * sizeof(float);
  return (bytes + 255) / 256 * 256;
}

void gemm_bf16_with_plan(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                         const __nv_bfloat16* a, const __nv_bfloat16* b, const float* bias, void* c,
                         bool c_is_bf16, bool accumulate, void* workspace, const GemmBf16Plan& plan,
                         cudaStream_t stream) {
  checked_run(trans_a, trans_b, m, n, k, a, b, bias, c, c_is_bf16, accumulate, workspace, plan,
              stream);
}

}  // namespace detail

GemmBf16Plan gemm_bf16_plan(int64_t m, int64_t n, int64_t k) {
  using detail::gemm_bf16_make_plan;
  if (tile_count<LargeTile>(m, n) >= kWaveBlocks)
    return gemm_bf16_make_plan(GemmBf16Tile::tile128x128, 1, k);
  if (tile_count<SmallTile>(m, n) >= kWaveBlocks)
    return gemm_bf16_make_plan(GemmBf16Tile::tile64x64, 1, k);
  // Too few tiles for a wave: split k, into about kSplitTargetBlocks blocks,
  // each split at least kMinStagesPerSplit stages. The big tile (half the
  // partial traffic per multiply-add) where k is long enough for it to reach
  // that many blocks, else the small one (more blocks for a short k).
  const int64_t most = std::max<int64_t>(1, ceil_div(k, kBK) / kMinStagesPerSplit);
  auto splits_for = [&](int64_t tiles) {
    return std::clamp<int64_t>(ceil_div(kSplitTargetBlocks, std::max<int64_t>(tiles, 1)), 1, most);
  };
  const int64_t large_tiles = tile_count<LargeTile>(m, n);
  if (m >= LargeTile::BM && n >= LargeTile::BN &&
      large_tiles * splits_for(large_tiles) >= kSplitTargetBlocks)
    return gemm_bf16_make_plan(GemmBf16Tile::tile128x128, splits_for(large_tiles), k);
  return gemm_bf16_make_plan(GemmBf16Tile::tile64x64, splits_for(tile_count<SmallTile>(m, n)), k);
}

namespace {

// Both gemm_bf16 overloads: the dimensions checked before the plan reads
// them, then the plan of gemm_bf16_plan.
void planned_run(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                 const __nv_bfloat16* a, const __nv_bfloat16* b, const float* bias, void* c,
                 bool c_is_bf16, bool accumulate, void* workspace, cudaStream_t stream) {
  check_dimension("m", m), check_dimension("n", n), check_dimension("k", k);
  checked_run(trans_a, trans_b, m, n, k, a, b, bias, c, c_is_bf16, accumulate, workspace,
              gemm_bf16_plan(m, n, k), stream);
}

}  // namespace

size_t gemm_bf16_workspace_bytes(int64_t m, int64_t n, int64_t k) {
  return detail::gemm_bf16_plan_workspace_bytes(gemm_bf16_plan(m, n, k), m, n);
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const __nv_bfloat16* a,
               const __nv_bfloat16* b, const float* bias, __nv_bfloat16* c, bool accumulate,
               void* workspace, cudaStream_t stream) {
  planned_run(trans_a, trans_b, m, n, k, a, b, bias, c, true, accumulate, workspace, stream);
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const __nv_bfloat16* a,
               const __nv_bfloat16* b, const float* bias, float* c, bool accumulate,
               void* workspace, cudaStream_t stream) {
  planned_run(trans_a, trans_b, m, n, k, a, b, bias, c, false, accumulate, workspace, stream);
}

}  // namespace ddpm::kernels
