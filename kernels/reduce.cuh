// Deterministic column and split sums, for the bias gradients of conv2d and
// linear and the second stage of split-K weight gradients: a fixed partition
// chosen from the shape alone, sums in a fixed order, no atomics, so results
// are reproducible for a shape.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace ddpm::kernels {

// Rounds a workspace size up to 256 bytes, so that several carve-outs of one
// workspace each start aligned.
constexpr size_t workspace_align(size_t bytes) {
  return (bytes + 255) / 256 * 256;
}

// out[c] += sum over r of m[r, c] for a row-major m [rows, cols] (a bias
// gradient: m = dy as [pixels, channels]). Workspace: column_sum_workspace_bytes
// (0 when one chunk of rows suffices).
size_t column_sum_workspace_bytes(int64_t rows, int64_t cols);
void column_sum_add(const float* m, float* out, int64_t rows, int64_t cols, void* workspace,
                    cudaStream_t stream);

// The same for a bf16 m (issue 11: a bias gradient from a bf16 dy), out and
// the sums fp32, the same fixed order: bitwise column_sum_add of the widened
// m. A null m or out, or a null workspace where one is needed, throws
// std::invalid_argument; rows or cols <= 0 does nothing.
size_t column_sum_bf16_workspace_bytes(int64_t rows, int64_t cols);
void column_sum_add_bf16(const __nv_bfloat16* m, float* out, int64_t rows, int64_t cols,
                         void* workspace, cudaStream_t stream);

// out[i] += sum_{s < splits} partials[s * count + i], s in order.
void split_sum_add(const float* partials, int splits, int64_t count, float* out,
                   cudaStream_t stream);

}  // namespace ddpm::kernels
