// Row-major fp32 GEMM (contract: gemm.cuh):
//   C[m, n] (= or +=) op(A)[m, k] * op(B)[k, n] (+ bias[n])
// our own SIMT kernel, and the dispatch to cuBLAS (gemm_cublas.cu) in the nvcc
// library build (DDPM_WITH_CUBLAS); emulated builds have no cuBLAS.
//
// The SIMT kernel (the classic shared-memory + register-blocked SGEMM)
//   - A block owns a BM x BN tile of C. k advances in stages of BK: each stage
//     stages op(A)'s BM x BK slab and op(B)'s BK x BN slab in shared memory,
//     both k-major ([BK][BM + 4], [BK][BN + 4]), so a thread reads the TM (TN)
//     values it needs at one k as float4s. Each thread keeps a TM x TN
//     micro-tile of C in registers: per k step it reads TM + TN floats from
//     shared memory for TM * TN FMAs (8x8: 4 FMAs per float read, what an
//     SM's 128 FMA/clk against 32 float/clk of shared-memory bandwidth needs).
//   - A thread's rows are ty*4 + {0..3} plus the same + BM/2 (TM = 8), its
//     columns likewise: a quarter-warp's float4 reads of B cover 128
//     contiguous bytes (no bank conflict), those of A are broadcasts; the
//     epilogue's float4 stores give 256 contiguous bytes per half-warp row.
//   - Double buffering: the next stage's global loads go to registers before
//     the current stage's FMAs and to the other shared buffer after them; one
//     __syncthreads per stage.
//   - Staging from global memory: an operand stored contiguous along k (A, or
//     B transposed) is read as float4s along k and written transposed into
//     the k-major tile (the 4-float row padding makes those scalar stores
//     conflict-free for BK = 8); one stored contiguous along m or n (A
//     transposed, or B) is copied float4 to float4. The float4 path needs the
//     contiguous dimension divisible by 4 and 16-byte aligned pointers for
//     both operands; otherwise every element is loaded as a scalar, with the
//     same tiles. Out-of-range rows and k are staged as zeros (tails).
//   - Tiles, chosen from the shape alone (never the device), so results are
//     bitwise reproducible for a shape (no atomics, fixed summation order):
//       128x128, BK 8, 8x8 micro-tiles, 256 threads        if >= 132 tiles
//       64x64, BK 16, 8x8 micro-tiles, 4 k-groups (256 thr.) if >= 132 tiles
//       32x32, BK 32, 4x4 micro-tiles, 4 k-groups (256 thr.) otherwise
//     In the k-group ("in-block split-K") tiles, group g multiplies k steps
//     [g BK/4, (g+1) BK/4) of every stage into its own accumulators; at the
//     end the groups' tiles are added through shared memory in a fixed order,
//     acc0 + (acc1 + (acc2 + acc3)). They keep 8 warps on an SM where few
//     tiles exist (the time-embedding MLP: 128 x 512; a weight gradient
//     dW = dy^T x of an attention projection: 256 x 256 with k = 32768).
//     True split-K across blocks would fill the GPU there, but needs scratch
//     memory the contract does not pass (and atomics would not be
//     deterministic).
//   - Epilogue: v = acc (+ bias[col]); C = v, or C += v with accumulate; float4
//     stores where n % 4 == 0 and C (and bias) are 16-byte aligned.
//   - Index math is 32-bit: every operand has fewer than 2^31 elements, and an
//     index is formed only for an element inside its matrix.
// Cost per stage and block (128x128): 2 x 1024 floats loaded (L2-served
// mostly: a row panel of A is reused across the n tiles), 16.5 KB shared
// memory, 256 threads x 64 accumulators. ptxas (sm_90): 106-123 registers
// for 128x128, 119-128 for 64x64 (its scalar-staging variants spill 4-12
// bytes), 69-93 for 32x32; __launch_bounds__(256, 2) caps them at 128.
// Not yet timed on a GPU: see tools/PERFORMANCE.md when it is.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "kernels/gemm.cuh"
#include "kernels/gemm_checks.h"
#include "kernels/gemm_internal.cuh"

// Full unrolling of the fixed-trip loops over a thread's micro-tile and staged
// units keeps those arrays in registers under nvcc (without it the 8x8
// accumulators went to local memory); g++ (the emulator) has its own pragma.
#if defined(__CUDACC__)
#define GEMM_UNROLL _Pragma("unroll")
#else
#define GEMM_UNROLL _Pragma("GCC unroll 16")
#endif

namespace ddpm::kernels {

namespace {

constexpr int64_t kTargetBlocks = 132;  // one wave on an H100/H200 (132 SMs)
constexpr int64_t kMaxGridY = 65535;

// One block tile configuration: BM x BN outputs, stages of BK, TM x TN
// micro-tiles, kSplit groups of threads splitting each stage's k steps.
template <int kBM, int kBN, int kBK, int kTM, int kTN, int kSplitGroups>
struct TileConfig {
  static constexpr int BM = kBM, BN = kBN, BK = kBK, TM = kTM, TN = kTN, kSplit = kSplitGroups;
  static constexpr int kGroupThreads = (BM / TM) * (BN / TN);
  static constexpr int kThreads = kGroupThreads * kSplit;
  static constexpr int kStepsPerGroup = BK / kSplit;  // k steps of a stage per group
  static constexpr int kLdA = BM + 4, kLdB = BN + 4;  // shared row strides (floats)
  static constexpr int kStageFloats = BK * (kLdA + kLdB);
  // Two stages; the k-group reduction reuses them as one BM x BN tile.
  static constexpr int kTileFloats = BM * BN;
  static constexpr int kSharedFloats =
      kSplit > 1 && kTileFloats > 2 * kStageFloats ? kTileFloats : 2 * kStageFloats;
  static constexpr size_t kSharedBytes = size_t(kSharedFloats) * sizeof(float);
  static_assert(TM % 4 == 0 && TN % 4 == 0, "micro-tiles are float4 groups");
  static_assert(BK % kSplit == 0, "each k-group takes whole k steps");
  static_assert(kGroupThreads % 32 == 0, "k-groups are whole warps");
  static_assert(kSharedBytes <= 48 * 1024, "no opt-in to more shared memory");
};

using Tile128 = TileConfig<128, 128, 8, 8, 8, 1>;
using Tile64 = TileConfig<64, 64, 16, 8, 8, 4>;
using Tile32 = TileConfig<32, 32, 32, 4, 4, 4>;

struct GemmArgs {
  const float* a;
  const float* b;
  const float* bias;
  float* c;
  int m, n, k;
  bool accumulate;
  bool vector_store;  // n % 4 == 0, C and bias 16-byte aligned
  bool m_tiles_on_x;  // row tiles on grid x (more than gridDim.y allows)
};

// One operand's stage: the BK x R slab (R = BM rows of op(A), or BN columns
// of op(B)) kept in shared memory as [BK][R + 4], r fastest. In global memory
// the operand is [r_total][k_total] (kAlongK: contiguous along k) or
// [k_total][r_total]. A unit is V consecutive floats along the contiguous
// dimension; consecutive threads take consecutive units (coalesced).
template <int R, int BK, int kThreads, bool kAlongK, int V>
struct StageLoader {
  static constexpr int kLd = R + 4;
  static constexpr int kUnits = BK * R / V;
  static constexpr int kPerThread = (kUnits + kThreads - 1) / kThreads;
  float regs[kPerThread * V];

  // Global -> registers for the stage whose corner is (r0, k0); zeros outside.
  __device__ inline void load(const float* __restrict__ src, int r_total, int k_total, int r0,
                              int k0) {
    GEMM_UNROLL
    for (int p = 0; p < kPerThread; ++p) {
      float* v = regs + p * V;
      GEMM_UNROLL
      for (int i = 0; i < V; ++i) v[i] = 0.0f;
      const int u = int(threadIdx.x) + p * kThreads;
      if (kUnits % kThreads != 0 && u >= kUnits) continue;
      int r, kk;
      coords(u, r, kk);
      const int gr = r0 + r, gk = k0 + kk;
      // With V = 4 the contiguous extent is divisible by 4: a unit is wholly in or out.
      if (gr >= r_total || gk >= k_total) continue;
      const float* q = kAlongK ? src + (gr * k_total + gk) : src + (gk * r_total + gr);
      if constexpr (V == 4) {
        const float4 f = *reinterpret_cast<const float4*>(q);
        v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
      } else {
        v[0] = *q;
      }
    }
  }

  // Registers -> the k-major shared tile.
  __device__ inline void store(float* __restrict__ tile) const {
    GEMM_UNROLL
    for (int p = 0; p < kPerThread; ++p) {
      const int u = int(threadIdx.x) + p * kThreads;
      if (kUnits % kThreads != 0 && u >= kUnits) continue;
      int r, kk;
      coords(u, r, kk);
      const float* v = regs + p * V;
      if constexpr (!kAlongK && V == 4) {
        *reinterpret_cast<float4*>(tile + kk * kLd + r) = make_float4(v[0], v[1], v[2], v[3]);
      } else {
        GEMM_UNROLL
        for (int i = 0; i < V; ++i) tile[(kAlongK ? (kk + i) * kLd + r : kk * kLd + r + i)] = v[i];
      }
    }
  }

  // Unit u's first element in the slab: row r (of R) and k step kk (of BK).
  __device__ static inline void coords(int u, int& r, int& kk) {
    if constexpr (kAlongK) {
      r = u / (BK / V);
      kk = (u % (BK / V)) * V;
    } else {
      kk = u / (R / V);
      r = (u % (R / V)) * V;
    }
  }
};

// The i-th of a thread's TM rows (or TN columns) within the tile, thread t of
// its dimension: float4 groups kTileExtent / (kMicro / 4) apart (TM = 8:
// t*4 + {0..3} and that + BM/2), so a quarter-warp's float4 accesses are
// contiguous.
template <int kTileExtent, int kMicro>
__device__ inline int micro_offset(int t, int i) {
  return (i / 4) * (kTileExtent / (kMicro / 4)) + t * 4 + (i % 4);
}

template <class Cfg, bool kTransA, bool kTransB, int V>
__global__ void __launch_bounds__(Cfg::kThreads, 2) gemm_simt_kernel(const GemmArgs g) {
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, TM = Cfg::TM, TN = Cfg::TN;
  DDPM_DYNAMIC_SHARED(float, smem);
  // A is [m][k] (contiguous along k) unless transposed; B is [k][n] unless transposed.
  StageLoader<BM, BK, Cfg::kThreads, !kTransA, V> load_a;
  StageLoader<BN, BK, Cfg::kThreads, kTransB, V> load_b;

  const int tile_m = int(g.m_tiles_on_x ? blockIdx.x : blockIdx.y);
  const int tile_n = int(g.m_tiles_on_x ? blockIdx.y : blockIdx.x);
  const int m0 = tile_m * BM, n0 = tile_n * BN;
  const int tid = int(threadIdx.x);
  const int group = tid / Cfg::kGroupThreads, lane_in_group = tid % Cfg::kGroupThreads;
  const int tx = lane_in_group % (BN / TN), ty = lane_in_group / (BN / TN);

  auto stage_a = [&](int buffer) { return smem + buffer * Cfg::kStageFloats; };
  auto stage_b = [&](int buffer) { return smem + buffer * Cfg::kStageFloats + BK * Cfg::kLdA; };

  float acc[TM][TN];
  GEMM_UNROLL
  for (int i = 0; i < TM; ++i) {
    GEMM_UNROLL
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
  }

  const int stages = (g.k + BK - 1) / BK;
  if (stages > 0) {
    load_a.load(g.a, g.m, g.k, m0, 0);
    load_b.load(g.b, g.n, g.k, n0, 0);
    load_a.store(stage_a(0));
    load_b.store(stage_b(0));
  }
  __syncthreads();
  for (int s = 0; s < stages; ++s) {
    const bool more = s + 1 < stages;
    if (more) {  // the next stage's loads are in flight during this stage's FMAs
      load_a.load(g.a, g.m, g.k, m0, (s + 1) * BK);
      load_b.load(g.b, g.n, g.k, n0, (s + 1) * BK);
    }
    const float* as = stage_a(s & 1);
    const float* bs = stage_b(s & 1);
    GEMM_UNROLL
    for (int step = 0; step < Cfg::kStepsPerGroup; ++step) {
      const int kk = group * Cfg::kStepsPerGroup + step;
      float av[TM], bv[TN];
      GEMM_UNROLL
      for (int q = 0; q < TM / 4; ++q) {
        const float4 f =
            *reinterpret_cast<const float4*>(as + kk * Cfg::kLdA + micro_offset<BM, TM>(ty, 4 * q));
        av[4 * q] = f.x, av[4 * q + 1] = f.y, av[4 * q + 2] = f.z, av[4 * q + 3] = f.w;
      }
      GEMM_UNROLL
      for (int q = 0; q < TN / 4; ++q) {
        const float4 f =
            *reinterpret_cast<const float4*>(bs + kk * Cfg::kLdB + micro_offset<BN, TN>(tx, 4 * q));
        bv[4 * q] = f.x, bv[4 * q + 1] = f.y, bv[4 * q + 2] = f.z, bv[4 * q + 3] = f.w;
      }
      GEMM_UNROLL
      for (int i = 0; i < TM; ++i) {
        GEMM_UNROLL
        for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];
      }
    }
    if (more) {  // the other buffer was last read in stage s - 1, before the last barrier
      load_a.store(stage_a((s + 1) & 1));
      load_b.store(stage_b((s + 1) & 1));
    }
    __syncthreads();
  }

  if constexpr (Cfg::kSplit > 1) {
    // acc0 + (acc1 + (... + acc_last)), through one BM x BN tile in the (now
    // free) stage buffers; group g's thread and group g-1's thread with the
    // same (ty, tx) own the same outputs. One barrier a round: the thread
    // that reads a tile position in one round is the one that writes it in
    // the next.
    float* partial = smem;
    GEMM_UNROLL
    for (int from = Cfg::kSplit - 1; from >= 1; --from) {
      if (group == from) {
        GEMM_UNROLL
        for (int i = 0; i < TM; ++i) {
          GEMM_UNROLL
          for (int q = 0; q < TN / 4; ++q) {
            float* at =
                partial + micro_offset<BM, TM>(ty, i) * BN + micro_offset<BN, TN>(tx, 4 * q);
            *reinterpret_cast<float4*>(at) =
                make_float4(acc[i][4 * q], acc[i][4 * q + 1], acc[i][4 * q + 2], acc[i][4 * q + 3]);
          }
        }
      }
      __syncthreads();
      if (group == from - 1) {
        GEMM_UNROLL
        for (int i = 0; i < TM; ++i) {
          GEMM_UNROLL
          for (int q = 0; q < TN / 4; ++q) {
            const float* at =
                partial + micro_offset<BM, TM>(ty, i) * BN + micro_offset<BN, TN>(tx, 4 * q);
            const float4 f = *reinterpret_cast<const float4*>(at);
            acc[i][4 * q] += f.x, acc[i][4 * q + 1] += f.y;
            acc[i][4 * q + 2] += f.z, acc[i][4 * q + 3] += f.w;
          }
        }
      }
    }
    if (group != 0) return;
  }

  // Epilogue: v = acc (+ bias); C = v or C += v.
  GEMM_UNROLL
  for (int i = 0; i < TM; ++i) {
    const int row = m0 + micro_offset<BM, TM>(ty, i);
    if (row >= g.m) continue;
    float* c_row = g.c + row * g.n;
    GEMM_UNROLL
    for (int q = 0; q < TN / 4; ++q) {
      const int col0 = n0 + micro_offset<BN, TN>(tx, 4 * q);
      if (col0 >= g.n) continue;
      float v[4] = {acc[i][4 * q], acc[i][4 * q + 1], acc[i][4 * q + 2], acc[i][4 * q + 3]};
      if (g.vector_store) {  // n % 4 == 0: all four columns exist
        if (g.bias) {
          const float4 bb = *reinterpret_cast<const float4*>(g.bias + col0);
          v[0] += bb.x, v[1] += bb.y, v[2] += bb.z, v[3] += bb.w;
        }
        float4* out = reinterpret_cast<float4*>(c_row + col0);
        if (g.accumulate) {
          const float4 old = *out;
          v[0] += old.x, v[1] += old.y, v[2] += old.z, v[3] += old.w;
        }
        *out = make_float4(v[0], v[1], v[2], v[3]);
      } else {
        GEMM_UNROLL
        for (int j = 0; j < 4; ++j) {
          if (col0 + j >= g.n) continue;
          const float x = g.bias ? v[j] + g.bias[col0 + j] : v[j];
          c_row[col0 + j] = g.accumulate ? c_row[col0 + j] + x : x;
        }
      }
    }
  }
}

// ---------------------------------------------------------------- host side

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

template <class Cfg, bool kTransA, bool kTransB>
void launch_kernel(const GemmArgs& args, bool vector_loads, dim3 grid, cudaStream_t stream) {
  if (vector_loads)
    DDPM_LAUNCH((gemm_simt_kernel<Cfg, kTransA, kTransB, 4>), grid, Cfg::kThreads,
                Cfg::kSharedBytes, stream, args);
  else
    DDPM_LAUNCH((gemm_simt_kernel<Cfg, kTransA, kTransB, 1>), grid, Cfg::kThreads,
                Cfg::kSharedBytes, stream, args);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

template <class Cfg>
void launch_tile(GemmArgs args, bool trans_a, bool trans_b, bool vector_loads,
                 cudaStream_t stream) {
  const int64_t tiles_m = ceil_div(args.m, Cfg::BM), tiles_n = ceil_div(args.n, Cfg::BN);
  // m * n < 2^31, so when tiles_m exceeds gridDim.y's limit, tiles_n is small.
  args.m_tiles_on_x = tiles_m > kMaxGridY;
  const dim3 grid = args.m_tiles_on_x ? dim3(unsigned(tiles_m), unsigned(tiles_n))
                                      : dim3(unsigned(tiles_n), unsigned(tiles_m));
  if (!trans_a && !trans_b)
    launch_kernel<Cfg, false, false>(args, vector_loads, grid, stream);
  else if (!trans_a && trans_b)
    launch_kernel<Cfg, false, true>(args, vector_loads, grid, stream);
  else if (trans_a && !trans_b)
    launch_kernel<Cfg, true, false>(args, vector_loads, grid, stream);
  else
    launch_kernel<Cfg, true, true>(args, vector_loads, grid, stream);
}

void validate(int64_t m, int64_t n, int64_t k, const float* a, const float* b, const float* bias,
              const float* c) {
  detail::check_gemm_arguments("gemm", m, n, k, a, b, bias, c, 4, 4);
}

}  // namespace

namespace detail {

const char* gemm_tile_name(GemmTile tile) {
  switch (tile) {
    case GemmTile::automatic:
      return "automatic";
    case GemmTile::tile128x128:
      return "128x128";
    case GemmTile::tile64x64_split4:
      return "64x64_split4";
    case GemmTile::tile32x32_split4:
      return "32x32_split4";
  }
  return "?";
}

GemmTile choose_gemm_tile(int64_t m, int64_t n) {
  if (ceil_div(m, Tile128::BM) * ceil_div(n, Tile128::BN) >= kTargetBlocks)
    return GemmTile::tile128x128;
  if (ceil_div(m, Tile64::BM) * ceil_div(n, Tile64::BN) >= kTargetBlocks)
    return GemmTile::tile64x64_split4;
  return GemmTile::tile32x32_split4;
}

void gemm_simt(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
               const float* b, const float* bias, float* c, bool accumulate, GemmTile tile,
               cudaStream_t stream) {
  if (m == 0 || n == 0) return;
  GemmArgs args{a, b, bias, c, int(m), int(n), int(k), accumulate, false, false};
  args.vector_store = n % 4 == 0 && aligned16(c) && (bias == nullptr || aligned16(bias));
  // float4 staging: each operand's contiguous extent divisible by 4, and aligned.
  const bool vector_loads = (trans_a ? m : k) % 4 == 0 && (trans_b ? k : n) % 4 == 0 &&
                            (k == 0 || (aligned16(a) && aligned16(b)));
  if (tile == GemmTile::automatic) tile = choose_gemm_tile(m, n);
  switch (tile) {
    case GemmTile::automatic:
    case GemmTile::tile128x128:
      return launch_tile<Tile128>(args, trans_a, trans_b, vector_loads, stream);
    case GemmTile::tile64x64_split4:
      return launch_tile<Tile64>(args, trans_a, trans_b, vector_loads, stream);
    case GemmTile::tile32x32_split4:
      return launch_tile<Tile32>(args, trans_a, trans_b, vector_loads, stream);
  }
}

}  // namespace detail

const char* gemm_impl_name(GemmImpl impl) {
  switch (impl) {
    case GemmImpl::simt:
      return "simt";
    case GemmImpl::cublas:
      return "cublas";
  }
  return "?";
}

GemmImpl parse_gemm_impl(std::string_view name) {
  for (GemmImpl impl : {GemmImpl::simt, GemmImpl::cublas})
    if (name == gemm_impl_name(impl)) return impl;
  throw std::invalid_argument("unknown GEMM implementation '" + std::string(name) +
                              "': expected simt or cublas");
}

bool gemm_impl_available(GemmImpl impl, std::string* reason) {
  if (impl != GemmImpl::cublas) return true;
#if DDPM_WITH_CUBLAS
  return detail::gemm_cublas_available(reason);
#else
  if (reason) *reason = "this build has no cuBLAS (the CPU emulator, or built without it)";
  return false;
#endif
}

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
          const float* b, const float* bias, float* c, bool accumulate, GemmImpl impl,
          cudaStream_t stream) {
  validate(m, n, k, a, b, bias, c);
  if (m == 0 || n == 0) return;
  switch (impl) {
    case GemmImpl::simt:
      return detail::gemm_simt(trans_a, trans_b, m, n, k, a, b, bias, c, accumulate,
                               detail::GemmTile::automatic, stream);
    case GemmImpl::cublas: {
      std::string reason;
      if (!gemm_impl_available(impl, &reason))
        throw std::invalid_argument("gemm: the cublas implementation is not available: " + reason);
#if DDPM_WITH_CUBLAS
      return detail::gemm_cublas(trans_a, trans_b, m, n, k, a, b, bias, c, accumulate, stream);
#endif
    }
  }
}

}  // namespace ddpm::kernels
