// Column sums and split sums (reduce.cuh): the bias gradients of conv2d and
// linear, and the second stage of a split-K weight gradient. Both are memory-bound and
// deterministic: a fixed partition chosen from the shape alone, sums in a fixed order, no atomics.
//
// column_sum_add: blocks of 32 column lanes x 8 row lanes (each warp reads 128
// contiguous bytes of one row) over (column tile, chunk of rows). A thread sums
// its chunk's rows with stride 8, the 8 row lanes are added in order through
// shared memory, and the chunk's partial goes to the workspace; a second
// kernel adds a column's chunk partials in order into out. One chunk: the first
// kernel adds into out itself. column_sum_add_bf16 is the same kernels with m
// in bf16, widened exactly: the same fp32 sums in the same order (bitwise
// column_sum_add of the widened matrix). Its loads are 2-byte (64 bytes per
// warp row): the bias gradient reads each dy element once, alongside the
// backward conv or GEMM that reads it many times.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/bf16_io.cuh"
#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "kernels/reduce.cuh"

namespace ddpm::kernels {

namespace {

constexpr int kColLanes = 32;
constexpr int kRowLanes = 8;
constexpr int64_t kRowsPerChunk = 1024;  // enough work per block to hide latency
constexpr int64_t kMaxChunks = 128;      // x (cols / 32) blocks: about a wave or more

int64_t column_sum_chunks(int64_t rows) {
  return std::clamp<int64_t>((rows + kRowsPerChunk - 1) / kRowsPerChunk, 1, kMaxChunks);
}

// T: m's storage (float, or __nv_bfloat16 widened exactly: the same fp32 sums).
template <class T>
__global__ void column_sum_kernel(const T* __restrict__ m, float* __restrict__ out, int64_t rows,
                                  int64_t cols, int64_t rows_per_chunk, bool add_into_out) {
  __shared__ float lanes[kRowLanes][kColLanes];
  const int64_t col = int64_t(blockIdx.x) * kColLanes + threadIdx.x;
  const int64_t begin = int64_t(blockIdx.y) * rows_per_chunk;
  const int64_t end = std::min(rows, begin + rows_per_chunk);
  float sum = 0.f;
  if (col < cols)
    for (int64_t r = begin + threadIdx.y; r < end; r += kRowLanes)
      sum += bf16io::to_float(m[r * cols + col]);
  lanes[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    float total = lanes[0][threadIdx.x];
    for (int i = 1; i < kRowLanes; ++i) total += lanes[i][threadIdx.x];
    if (add_into_out)
      out[col] += total;
    else
      out[int64_t(blockIdx.y) * cols + col] = total;
  }
}

__global__ void split_sum_kernel(const float* __restrict__ partials, int splits, int64_t count,
                                 float* __restrict__ out) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    float total = partials[i];
    for (int s = 1; s < splits; ++s) total += partials[int64_t(s) * count + i];
    out[i] += total;
  }
}

unsigned split_sum_blocks(int64_t count) {
  return unsigned(std::clamp<int64_t>((count + 255) / 256, 1, 1056));  // <= 8 x 132 SMs
}

template <class T>
void column_sum(const T* m, float* out, int64_t rows, int64_t cols, void* workspace,
                cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const int64_t chunks = column_sum_chunks(rows);
  const int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
  const dim3 grid(unsigned((cols + kColLanes - 1) / kColLanes), unsigned(chunks));
  const dim3 block(kColLanes, kRowLanes);
  if (chunks == 1) {
    DDPM_LAUNCH(column_sum_kernel<T>, grid, block, 0, stream, m, out, rows, cols, rows_per_chunk,
                true);
    DDPM_CUDA_CHECK(cudaGetLastError());
    return;
  }
  float* partials = static_cast<float*>(workspace);
  DDPM_LAUNCH(column_sum_kernel<T>, grid, block, 0, stream, m, partials, rows, cols, rows_per_chunk,
              false);
  DDPM_CUDA_CHECK(cudaGetLastError());
  split_sum_add(partials, int(chunks), cols, out, stream);
}

}  // namespace

size_t column_sum_workspace_bytes(int64_t rows, int64_t cols) {
  const int64_t chunks = column_sum_chunks(rows);
  return chunks == 1 ? 0 : workspace_align(size_t(chunks * cols) * sizeof(float));
}

void column_sum_add(const float* m, float* out, int64_t rows, int64_t cols, void* workspace,
                    cudaStream_t stream) {
  column_sum(m, out, rows, cols, workspace, stream);
}

size_t column_sum_bf16_workspace_bytes(int64_t rows, int64_t cols) {
  return column_sum_workspace_bytes(rows, cols);
}

void column_sum_add_bf16(const __nv_bfloat16* m, float* out, int64_t rows, int64_t cols,
                         void* workspace, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  if (!m || !out) throw std::invalid_argument("column_sum_add_bf16: m and out must not be null");
  if (column_sum_chunks(rows) > 1 && !workspace)
    throw std::invalid_argument("column_sum_add_bf16: a workspace of " +
                                std::to_string(column_sum_bf16_workspace_bytes(rows, cols)) +
                                " bytes is needed (column_sum_bf16_workspace_bytes), got null");
  column_sum(m, out, rows, cols, workspace, stream);
}

void split_sum_add(const float* partials, int splits, int64_t count, float* out,
                   cudaStream_t stream) {
  if (count <= 0 || splits <= 0) return;
  DDPM_LAUNCH(split_sum_kernel, split_sum_blocks(count), 256, 0, stream, partials, splits, count,
              out);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ddpm::kernels
