// bf16 tensor-core convolution: conv2d.cuh's contract (NHWC activations,
// OHWI weights, kernels 1..7, stride 1..4, asymmetric pads, forward with a
// bias / residual epilogue, backward-data, backward-filter split over pixels)
// with bf16 tensors in global memory and fp32 accumulation, for the mixed
// precision path of issue 11:
//
//   tensor                        type   note
//   x, dy, residual, y, dx        bf16   activations and their gradients
//   w                             bf16   the bf16 copy of the fp32 master weights
//   bias                          fp32   master
//   dw, db                        fp32   master gradients (overwrite or accumulate)
//
// Each output is an fp32 sum of exact bf16 x bf16 products (mma.sync
// m16n8k16 on sm_80+; the portable warp-shuffle twin under the CPU emulator),
// rounded once to bf16 for y and dx (forward: after adding bias and residual
// in fp32). Operands move by cp.async (16-byte, a 3-stage pipeline) and
// ldmatrix; channel counts that are not a multiple of 8 (the first conv's 1 or
// 3 input channels, the last conv's output channels) and 2-byte aligned
// pointers take a scalar staging path into the same shared layout.
// Backward-data with stride s runs the s^2 output phases of dx (the pixels
// h = ph (mod s), w = pw (mod s)) as separate GEMMs over only the taps that
// reach them: no multiply-adds on the zeros of the strided gather.
// Kernels: kernels/conv2d_bf16_mainloop.cuh; launchers: kernels/conv2d_bf16.cu.
//
// Launchers do not allocate or synchronise (capturable in a CUDA graph), are
// deterministic for a shape (fixed tiles and split order, no atomics), and
// throw std::invalid_argument naming what is wrong. batch 0 is a no-op.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>

#include "kernels/conv2d.cuh"

namespace ddpm::kernels {

// conv2d.cuh's limits (every launcher checks them): batch >= 0, H, W, C, O
// >= 1, 1 <= R, S <= 7, stride 1..4, 0 <= pads < kernel size, an output of at
// least 1x1, every tensor under 2^31 elements. std::invalid_argument
// "conv2d_bf16: <field> is <v>, expected <range>" otherwise.
void conv2d_bf16_validate(const Conv2dShape& s);

// Scratch of conv2d_bf16_backward_filter for this shape, in bytes (the split
// partials of dw and db; 0 when one split suffices). The forward and
// backward-data need none. 256-byte aligned start; no initialisation needed.
size_t conv2d_bf16_workspace_bytes(const Conv2dShape& s);

// y = bf16(conv(x, w) + bias + residual). bias [O] (fp32) and residual
// [N, Ho, Wo, O] may be null; residual may alias y (added in place).
void conv2d_bf16_forward(const __nv_bfloat16* x, const __nv_bfloat16* w, const float* bias,
                         const __nv_bfloat16* residual, __nv_bfloat16* y, const Conv2dShape& s,
                         cudaStream_t stream);

// dx = bf16(dL/dx), or dx = bf16(dx + dL/dx) when accumulate (the sum in fp32).
void conv2d_bf16_backward_data(const __nv_bfloat16* dy, const __nv_bfloat16* w, __nv_bfloat16* dx,
                               const Conv2dShape& s, bool accumulate, cudaStream_t stream);

// dw [O, R, S, C] = dL/dw and, when db is not null, db [O] = dL/db (the sum
// of dy over pixels); with accumulate, added to what they hold instead. fp32
// out. workspace: at least conv2d_bf16_workspace_bytes(s) bytes
// (workspace_bytes says how many there are; too few throws).
void conv2d_bf16_backward_filter(const __nv_bfloat16* x, const __nv_bfloat16* dy, float* dw,
                                 float* db, const Conv2dShape& s, bool accumulate, void* workspace,
                                 size_t workspace_bytes, cudaStream_t stream);

namespace detail {
// Test hooks: the emulated tests' problems are too small for the heuristics
// to pick the 128 x 128 tile or to split backward-filter. Set before
// conv2d_bf16_workspace_bytes and the launch, reset to 0 after; not
// thread-safe. Tile: 64 or 128 rows, 0 the heuristic. Splits: backward-
// filter's pixel splits (clamped to the stages there are), 0 the heuristic.
int& conv2d_bf16_forced_tile();
int& conv2d_bf16_forced_splits();
}  // namespace detail

}  // namespace ddpm::kernels
