#include "kernels/check.cuh"
#include "kernels/elementwise.cuh"
#include "kernels/emulation/launch.h"

namespace ddpm::kernels {

namespace {

constexpr int kThreads = 256;

__global__ void silu_forward_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float v = x[i];
    y[i] = v / (1.0f + expf(-v));
  }
}

__global__ void silu_backward_kernel(const float* __restrict__ x, const float* __restrict__ dy,
                                     float* __restrict__ dx, int64_t n, bool accumulate) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float v = x[i], s = 1.0f / (1.0f + expf(-v));
    const float g = dy[i] * s * (1.0f + v * (1.0f - s));
    dx[i] = accumulate ? dx[i] + g : g;
  }
}

int blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return int(b < 65535 ? (b > 0 ? b : 1) : 65535);
}

}  // namespace

void silu_forward(const float* x, float* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  DDPM_LAUNCH(silu_forward_kernel, blocks_for(n), kThreads, 0, stream, x, y, n);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void silu_backward(const float* x, const float* dy, float* dx, int64_t n, bool accumulate,
                   cudaStream_t stream) {
  if (n == 0) return;
  DDPM_LAUNCH(silu_backward_kernel, blocks_for(n), kThreads, 0, stream, x, dy, dx, n, accumulate);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ddpm::kernels
