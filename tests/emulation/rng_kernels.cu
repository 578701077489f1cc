// cuRAND's device API (Philox4x32-10) inside kernels: raw 32-bit draws, uniform
// floats and normal4 from curand_init(seed, subsequence, offset).
#include <curand_kernel.h>

#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {

namespace {

// Thread 0 of each block draws per_block numbers from the same (seed,
// subsequence, offset): every block must produce the same sequence.
__global__ void philox_uniform_kernel(unsigned long long seed, unsigned long long subsequence,
                                      unsigned long long offset, float* out, int per_block) {
  if (threadIdx.x != 0) return;
  curandStatePhilox4_32_10_t state;
  curand_init(seed, subsequence, offset, &state);
  for (int i = 0; i < per_block; ++i) out[blockIdx.x * per_block + i] = curand_uniform(&state);
}

__global__ void philox_raw_kernel(unsigned long long seed, unsigned long long subsequence,
                                  unsigned long long offset, unsigned* out, int count) {
  curandStatePhilox4_32_10_t state;
  curand_init(seed, subsequence, offset, &state);
  for (int i = 0; i < count; ++i) out[i] = curand(&state);
}

__global__ void philox_normal4_kernel(unsigned long long seed, float* out, int n4) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n4) return;
  curandStatePhilox4_32_10_t state;
  curand_init(seed, i, 0, &state);
  const float4 v = curand_normal4(&state);
  out[4 * i + 0] = v.x;
  out[4 * i + 1] = v.y;
  out[4 * i + 2] = v.z;
  out[4 * i + 3] = v.w;
}

}  // namespace

void philox_uniform(unsigned long long seed, unsigned long long subsequence,
                    unsigned long long offset, float* out, int blocks, int per_block,
                    cudaStream_t stream) {
  DDPM_LAUNCH(philox_uniform_kernel, blocks, 32, 0, stream, seed, subsequence, offset, out,
              per_block);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void philox_raw(unsigned long long seed, unsigned long long subsequence, unsigned long long offset,
                unsigned* out, int count, cudaStream_t stream) {
  DDPM_LAUNCH(philox_raw_kernel, 1, 1, 0, stream, seed, subsequence, offset, out, count);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void philox_normal4(unsigned long long seed, float* out, int n4, cudaStream_t stream) {
  DDPM_LAUNCH(philox_normal4_kernel, (n4 + 63) / 64, 64, 0, stream, seed, out, n4);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ddpm::emu_test
