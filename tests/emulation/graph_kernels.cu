// Kernels for the graph and stream-capture tests: element-wise updates whose
// result shows which arguments a replay used, and the device side of
// conditional nodes (a countdown that ends a WHILE loop through
// cudaGraphSetConditional, a flag that picks an IF branch).
#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {

namespace {

constexpr int kThreads = 128;

int blocks_for(int n) {
  return (n + kThreads - 1) / kThreads;
}

__global__ void add_scalar_kernel(float* x, int n, float value) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += value;
}

__global__ void affine_kernel(float* x, AffineParams p) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < p.n) x[i] = x[i] * p.scale + p.shift;
}

__global__ void set_int_kernel(int* p, int value) {
  if (threadIdx.x == 0) *p = value;
}

__global__ void count_down_kernel(int* counter, int* iterations,
                                  cudaGraphConditionalHandle handle) {
  if (threadIdx.x != 0) return;
  ++*iterations;
  if (--*counter <= 0) cudaGraphSetConditional(handle, 0);
}

__global__ void set_condition_kernel(const int* flag, cudaGraphConditionalHandle handle) {
  if (threadIdx.x == 0) cudaGraphSetConditional(handle, *flag != 0 ? 1u : 0u);
}

}  // namespace

void add_scalar(float* x, int n, float value, cudaStream_t stream) {
  add_scalar_unchecked(x, n, value, stream);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void add_scalar_unchecked(float* x, int n, float value, cudaStream_t stream) {
  DDPM_LAUNCH(add_scalar_kernel, blocks_for(n), kThreads, 0, stream, x, n, value);
}

void affine(float* x, const AffineParams& params, cudaStream_t stream) {
  DDPM_LAUNCH(affine_kernel, blocks_for(params.n), kThreads, 0, stream, x, params);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void set_int(int* p, int value, cudaStream_t stream) {
  DDPM_LAUNCH(set_int_kernel, 1, 32, 0, stream, p, value);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void count_down(int* counter, int* iterations, cudaGraphConditionalHandle handle,
                cudaStream_t stream) {
  DDPM_LAUNCH(count_down_kernel, 1, 32, 0, stream, counter, iterations, handle);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void set_condition(const int* flag, cudaGraphConditionalHandle handle, cudaStream_t stream) {
  DDPM_LAUNCH(set_condition_kernel, 1, 32, 0, stream, flag, handle);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ddpm::emu_test
