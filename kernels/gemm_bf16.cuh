// bf16 tensor-core GEMM for the linear layers (the bf16 twin of gemm.cuh):
//   C[m, n] (= or +=) op(A)[m, k] * op(B)[k, n] (+ bias[n])
// A, B bf16 in global memory; A stored [m, k] (or [k, m] with trans_a), B
// [k, n] (or [n, k] with trans_b), C [m, n], all contiguous; fp32
// accumulation; bias fp32; C bf16 (activations, activation gradients) or fp32
// (weight gradients: fp32 master gradients, which accumulate). For a linear
// layer y = x W^T + b (x [rows][in], W [out][in] in bf16):
//   forward   y  = x W^T + b   gemm_bf16(false, true,  rows, out, in,   x,  W, b,    y,  ...)
//   backward  dx (+)= dy W     gemm_bf16(false, false, rows, in,  out,  dy, W, null, dx, ...)
//             dW += dy^T x     gemm_bf16(true,  false, out,  in,  rows, dy, x, null, dW, true, ...)
// and db += column sums of dy (not here: reduce.cuh's column_sum_add is fp32;
// a bf16 column sum is left to the engine work).
//
// Deterministic: the block tile and the split of k (split-K, for outputs with
// too few tiles to fill the GPU) are chosen from (m, n, k) alone, each split
// writes an fp32 partial tile to the caller's workspace and a second kernel
// adds them in split order; no atomics. So a shape gives bitwise the same C on
// every run, and a CUDA graph replays the same plan. Nothing is allocated.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace ddpm::kernels {

// Block tiles (gemm_bf16.cu's header comment has the design).
enum class GemmBf16Tile { tile128x128, tile64x64 };

const char* gemm_bf16_tile_name(GemmBf16Tile tile);  // "128x128", "64x64"

// How a shape runs: the tile, and k cut into `splits` ranges of
// `stages_per_split` stages of 32 (the last one possibly shorter, none empty).
struct GemmBf16Plan {
  GemmBf16Tile tile = GemmBf16Tile::tile64x64;
  int splits = 1;
  int64_t stages_per_split = 0;
};

// The plan gemm_bf16 uses for an m x n x k product (shape only).
GemmBf16Plan gemm_bf16_plan(int64_t m, int64_t n, int64_t k);

// Scratch gemm_bf16 needs for that shape: splits x m x n fp32 partials, 0
// when there is one split (then workspace may be null).
size_t gemm_bf16_workspace_bytes(int64_t m, int64_t n, int64_t k);

// m, n, k >= 0 (an empty product writes bias, or leaves C with accumulate),
// each operand under 2^31 elements; std::invalid_argument otherwise. bias may
// be null. a, b, c need their element's alignment (2 bytes for bf16, 4 for
// fp32); an operand whose base is 16-byte aligned and whose contiguous extent
// (k, or m or n when transposed) is divisible by 8 is read with 16-byte
// cp.async copies, any other by scalar loads into the same tiles.
// `workspace`: gemm_bf16_workspace_bytes(m, n, k) bytes, 16-byte aligned
// (cudaMalloc's 256 is plenty).
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const __nv_bfloat16* a,
               const __nv_bfloat16* b, const float* bias, __nv_bfloat16* c, bool accumulate,
               void* workspace, cudaStream_t stream);
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const __nv_bfloat16* a,
               const __nv_bfloat16* b, const float* bias, float* c, bool accumulate,
               void* workspace, cudaStream_t stream);

namespace detail {

// Test hooks: a plan with a given tile and (at most) `splits` splits of k,
// normalised so that no split is empty; its workspace; and gemm_bf16 run with
// that plan instead of gemm_bf16_plan's (the same validation). `c_is_bf16`
// says what `c` points to.
GemmBf16Plan gemm_bf16_make_plan(GemmBf16Tile tile, int64_t splits, int64_t k);
size_t gemm_bf16_plan_workspace_bytes(const GemmBf16Plan& plan, int64_t m, int64_t n);
void gemm_bf16_with_plan(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                         const __nv_bfloat16* a, const __nv_bfloat16* b, const float* bias, void* c,
                         bool c_is_bf16, bool accumulate, void* workspace, const GemmBf16Plan& plan,
                         cudaStream_t stream);

}  // namespace detail

}  // namespace ddpm::kernels
