// One warp's tensor-core multiply-accumulate, D[16x8] = A[16x16] * B[16x8] + C[16x8],
// bf16 operands and fp32 accumulators, in the register layout of the PTX
// instruction mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (PTX ISA,
// "Matrix Fragments for mma.m16n8k16 with floating point type"). Header-only.
//
// Fragments. With g = lane >> 2 (groupID) and t = lane % 4 (threadID_in_group),
// each lane holds
//   A: 4 x b32 registers, 8 bf16 a0..a7 (two per register, the lower-numbered
//      element in the low 16 bits): row g for a0,a1,a4,a5 and g + 8 for
//      a2,a3,a6,a7; column 2t + (i & 1), plus 8 for i >= 4. So register 0 is
//      (g, 2t..2t+1), 1 is (g+8, 2t..), 2 is (g, 2t+8..), 3 is (g+8, 2t+8..).
//   B: 2 x b32 registers, 4 bf16 b0..b3: row (= k) 2t + (i & 1), plus 8 for
//      i >= 2; column g. Register 0 is k = 2t..2t+1, register 1 is k = 2t+8..2t+9.
//   C, D: 4 floats c0..c3: row g for c0,c1 and g + 8 for c2,c3; column 2t + (i & 1).
// fragment_row / fragment_col below give the (row, column) of every element;
// kernels and tests use them, so the layout is written down once.
//
// Paths. mma_m16n8k16_bf16() issues the PTX instruction where it exists
// (device code for sm_80 and later) and otherwise (the host pass, older GPUs,
// the CPU emulator) runs mma_m16n8k16_bf16_portable(), which computes the same
// function with warp shuffles: each lane gathers the two rows of A and the two
// columns of B its four outputs need (16 shuffles of 64 bits) and forms
// every product of two bf16 values in fp32 (exact: 8 x 8 significant bits) and
// sums them in fp32, in k order, onto C. The tensor core adds the same exact
// products in another order and rounding, so the two paths agree to the
// accumulation bound of 16 fp32 additions, not bitwise. mma_m16n8k16_bf16_grid
// runs a warp tile of FM x FN instructions; its portable path gathers each
// fragment once for the grid, the bulk of the emulator's time in a GEMM. All
// of them must be called by all 32 lanes of a warp, converged.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

// Fragment loops have compile-time trip counts; unrolled, they stay in registers.
#if defined(__CUDACC__)
#define DDPM_MMA_UNROLL _Pragma("unroll")
#else
#define DDPM_MMA_UNROLL
#endif

namespace ddpm::kernels::mma {

constexpr int kM = 16, kN = 8, kK = 16;  // the instruction's shape
constexpr int kRegsA = 4, kRegsB = 2, kRegsC = 4;
constexpr int kElemsA = 8, kElemsB = 4, kElemsC = 4;  // per lane

enum class Operand { a, b, c };

// Row and column, within its 16x16 (A), 16x8 (B, rows are k) or 16x8 (C, D)
// matrix, of element i of `lane`'s fragment (i < 8, 4, 4). Element i of A or B
// sits in register i / 2, in its low half when i is even.
__host__ __device__ constexpr int fragment_row(Operand op, int lane, int i) {
  const int group = lane >> 2, thread_in_group = lane & 3;
  switch (op) {
    case Operand::a:
      return group + ((i & 2) ? 8 : 0);
    case Operand::b:
      return thread_in_group * 2 + (i & 1) + ((i & 2) ? 8 : 0);
    case Operand::c:
      return group + ((i & 2) ? 8 : 0);
  }
  return -1;
}

__host__ __device__ constexpr int fragment_col(Operand op, int lane, int i) {
  const int group = lane >> 2, thread_in_group = lane & 3;
  switch (op) {
    case Operand::a:
      return thread_in_group * 2 + (i & 1) + ((i & 4) ? 8 : 0);
    case Operand::b:
      return group;
    case Operand::c:
      return thread_in_group * 2 + (i & 1);
  }
  return -1;
}

// Two floats rounded to bf16 (to nearest, ties to even) in one b32 register:
// `lo` in bits 0..15, `hi` in bits 16..31 (the order of the fragments'
// element pairs). One cvt.rn.bf16x2.f32 on sm_80+.
__host__ __device__ inline uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162_raw raw = __floats2bfloat162_rn(lo, hi);
  return uint32_t(raw.x) | (uint32_t(raw.y) << 16);
}

#if defined(__CUDACC__) || defined(DDPM_CUDA_EMULATION)

namespace detail {

__device__ inline float bf16_low(uint32_t packed) {
  return __uint_as_float(packed << 16);
}
__device__ inline float bf16_high(uint32_t packed) {
  return __uint_as_float(packed & 0xFFFF0000u);
}
__device__ inline unsigned long long join(uint32_t lo, uint32_t hi) {
  return static_cast<unsigned long long>(lo) | (static_cast<unsigned long long>(hi) << 32);
}
// The lane within its warp, for any block shape (warps are formed from the
// linear thread index).
__device__ inline int lane_id() {
  const unsigned linear = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  return int(linear & 31u);
}

// Portable path, in three steps that a grid of tiles can share (see
// mma_m16n8k16_bf16_grid): gather rows, gather columns, multiply.

// Rows g and g+8 of this lane's A as packed k pairs [p] (k = 2p, 2p+1): lane
// 4g + j holds pairs j (register 0: row g, register 1: row g+8) and j + 4
// (registers 2, 3). 64-bit shuffles: the widest CUDA has.
__device__ inline void gather_a_rows(const uint32_t (&a)[4], uint32_t (&row_lo)[8],
                                     uint32_t (&row_hi)[8]) {
  const int group = lane_id() >> 2;
  const unsigned long long regs01 = join(a[0], a[1]), regs23 = join(a[2], a[3]);
  DDPM_MMA_UNROLL
  for (int j = 0; j < 4; ++j) {
    const unsigned long long v01 = __shfl_sync(0xFFFFFFFFu, regs01, group * 4 + j);
    const unsigned long long v23 = __shfl_sync(0xFFFFFFFFu, regs23, group * 4 + j);
    row_lo[j] = uint32_t(v01), row_hi[j] = uint32_t(v01 >> 32);
    row_lo[j + 4] = uint32_t(v23), row_hi[j + 4] = uint32_t(v23 >> 32);
  }
}

// Columns 2t and 2t+1 of B as packed k pairs: column n lives in lanes
// 4n..4n+3, lane 4n + j holding pair j (register 0) and pair j + 4 (register 1).
__device__ inline void gather_b_cols(const uint32_t (&b)[2], uint32_t (&col0)[8],
                                     uint32_t (&col1)[8]) {
  const int thread_in_group = lane_id() & 3;
  const unsigned long long regs = join(b[0], b[1]);
  DDPM_MMA_UNROLL
  for (int j = 0; j < 4; ++j) {
    const unsigned long long v0 = __shfl_sync(0xFFFFFFFFu, regs, (2 * thread_in_group) * 4 + j);
    const unsigned long long v1 = __shfl_sync(0xFFFFFFFFu, regs, (2 * thread_in_group + 1) * 4 + j);
    col0[j] = uint32_t(v0), col0[j + 4] = uint32_t(v0 >> 32);
    col1[j] = uint32_t(v1), col1[j + 4] = uint32_t(v1 >> 32);
  }
}

// d = rows x cols + c for this lane's four outputs, in k order.
__device__ inline void multiply_gathered(const uint32_t (&row_lo)[8], const uint32_t (&row_hi)[8],
                                         const uint32_t (&col0)[8], const uint32_t (&col1)[8],
                                         float (&d)[4], const float (&c)[4]) {
  float acc[4] = {c[0], c[1], c[2], c[3]};
  DDPM_MMA_UNROLL
  for (int p = 0; p < 8; ++p) {  // k = 2p, then k = 2p + 1
    const float lo0 = bf16_low(row_lo[p]), lo1 = bf16_high(row_lo[p]);
    const float hi0 = bf16_low(row_hi[p]), hi1 = bf16_high(row_hi[p]);
    const float b00 = bf16_low(col0[p]), b01 = bf16_high(col0[p]);
    const float b10 = bf16_low(col1[p]), b11 = bf16_high(col1[p]);
    // __fmul_rn / __fadd_rn: no FMA contraction, so the GPU build of this
    // path rounds as the emulated one does (the products are exact anyway).
    acc[0] = __fadd_rn(acc[0], __fmul_rn(lo0, b00));
    acc[1] = __fadd_rn(acc[1], __fmul_rn(lo0, b10));
    acc[2] = __fadd_rn(acc[2], __fmul_rn(hi0, b00));
    acc[3] = __fadd_rn(acc[3], __fmul_rn(hi0, b10));
    acc[0] = __fadd_rn(acc[0], __fmul_rn(lo1, b01));
    acc[1] = __fadd_rn(acc[1], __fmul_rn(lo1, b11));
    acc[2] = __fadd_rn(acc[2], __fmul_rn(hi1, b01));
    acc[3] = __fadd_rn(acc[3], __fmul_rn(hi1, b11));
  }
  DDPM_MMA_UNROLL
  for (int i = 0; i < 4; ++i) d[i] = acc[i];
}

}  // namespace detail

// d = a * b + c by warp shuffles (see the top of this file); d may alias c.
__device__ inline void mma_m16n8k16_bf16_portable(float (&d)[4], const uint32_t (&a)[4],
                                                  const uint32_t (&b)[2], const float (&c)[4]) {
  uint32_t row_lo[8], row_hi[8], col0[8], col1[8];
  detail::gather_a_rows(a, row_lo, row_hi);
  detail::gather_b_cols(b, col0, col1);
  detail::multiply_gathered(row_lo, row_hi, col0, col1, d, c);
}

// d = a * b + c: the tensor-core instruction on sm_80+, the portable path
// elsewhere. d may alias c (the usual accumulate: mma(acc, a, b, acc)).
__device__ inline void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4],
                                         const uint32_t (&b)[2], const float (&c)[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
        "f"(c[2]), "f"(c[3]));
#else
  mma_m16n8k16_bf16_portable(d, a, b, c);
#endif
}

// A warp tile of FM x FN instructions: acc[i][j] += a[i] * b[j] (a warp's
// 16 FM x 8 FN output over one k step of 16). The instruction per tile where
// it exists; the portable path gathers each A and B fragment once for the
// whole grid (8 (FM + FN) shuffles instead of 16 FM FN).
template <int FM, int FN>
__device__ inline void mma_m16n8k16_bf16_grid(float (&acc)[FM][FN][4], const uint32_t (&a)[FM][4],
                                              const uint32_t (&b)[FN][2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  DDPM_MMA_UNROLL
  for (int i = 0; i < FM; ++i) DDPM_MMA_UNROLL
  for (int j = 0; j < FN; ++j) mma_m16n8k16_bf16(acc[i][j], a[i], b[j], acc[i][j]);
#else
  uint32_t col0[FN][8], col1[FN][8];
  DDPM_MMA_UNROLL
  for (int j = 0; j < FN; ++j) detail::gather_b_cols(b[j], col0[j], col1[j]);
  DDPM_MMA_UNROLL
  for (int i = 0; i < FM; ++i) {
    uint32_t row_lo[8], row_hi[8];
    detail::gather_a_rows(a[i], row_lo, row_hi);
    DDPM_MMA_UNROLL
    for (int j = 0; j < FN; ++j)
      detail::multiply_gathered(row_lo, row_hi, col0[j], col1[j], acc[i][j], acc[i][j]);
  }
#endif
}

// A warp tile's FM x FN accumulators (each one instruction's C: 16 x 8) set to 0.
template <int FM, int FN>
__device__ inline void zero_accumulators(float (&acc)[FM][FN][4]) {
  DDPM_MMA_UNROLL
  for (int i = 0; i < FM; ++i) {
    DDPM_MMA_UNROLL
    for (int j = 0; j < FN; ++j) {
      DDPM_MMA_UNROLL
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;
    }
  }
}

// Visits a warp tile's accumulators two at a time, the pairs of the C layout:
// f(row, col, v0, v1) with v0, v1 at (row, col) and (row, col + 1), row and
// col within the warp tile (16 FM x 8 FN). Elements 0, 1 of a C fragment are
// (row g, columns 2t, 2t+1), elements 2, 3 the same columns of row g + 8: so
// every epilogue stores adjacent column pairs.
template <int FM, int FN, class F>
__device__ inline void for_each_accumulator_pair(const float (&acc)[FM][FN][4], int lane, F&& f) {
  DDPM_MMA_UNROLL
  for (int i = 0; i < FM; ++i) {
    DDPM_MMA_UNROLL
    for (int j = 0; j < FN; ++j) {
      DDPM_MMA_UNROLL
      for (int e = 0; e < 4; e += 2)
        f(i * kM + fragment_row(Operand::c, lane, e), j * kN + fragment_col(Operand::c, lane, e),
          acc[i][j][e], acc[i][j][e + 1]);
    }
  }
}

// True where mma_m16n8k16_bf16 is the PTX instruction (device code, sm_80+).
__device__ constexpr bool mma_uses_ptx() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  return true;
#else
  return false;
#endif
}

#endif  // __CUDACC__ || DDPM_CUDA_EMULATION

}  // namespace ddpm::kernels::mma

#undef DDPM_MMA_UNROLL
