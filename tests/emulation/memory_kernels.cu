// Memory kernels: atomics of every emulated kind, dynamic shared memory, and a
// probe of what shared memory holds when a block starts.
#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {

namespace {

__global__ void atomic_count_kernel(unsigned* counter, int adds_per_thread) {
  for (int i = 0; i < adds_per_thread; ++i) atomicAdd(counter, 1u);
}

__global__ void atomic_float_sum_kernel(const float* __restrict__ x, float* total, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    atomicAdd(total, x[i]);
}

__global__ void atomic_mix_kernel(const int* __restrict__ x, int n, int* results, double* dsum,
                                  __half* hsum, __nv_bfloat16* bsum) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  atomicMax(&results[0], x[i]);
  atomicMin(&results[1], x[i]);
  if (atomicCAS(&results[2], 0, 1) == 0) atomicAdd(&results[3], 1);  // exactly one claim wins
  atomicExch(&results[4], i);
  atomicInc(reinterpret_cast<unsigned*>(&results[5]), 9u);  // counts modulo 10
  atomicSub(&results[6], 2);
  atomicAdd(dsum, 1.0);
  atomicAdd(hsum, __float2half(1.0f));
  atomicAdd(bsum, __float2bfloat16(1.0f));
}

__global__ void reverse_kernel(const float* __restrict__ x, float* __restrict__ y, int n) {
  DDPM_DYNAMIC_SHARED(float, tile);
  const int t = threadIdx.x, base = blockIdx.x * blockDim.x;
  const int count = min(int(blockDim.x), n - base);
  if (t < count) tile[t] = x[base + t];
  __syncthreads();
  if (t < count) y[base + t] = tile[count - 1 - t];
}

constexpr int kProbeWords = 64;

__global__ void poison_probe_kernel(unsigned* static_bits, unsigned* dynamic_bits) {
  __shared__ unsigned static_words[kProbeWords];
  DDPM_DYNAMIC_SHARED(unsigned, dynamic_words);
  if (threadIdx.x == 0) {
    unsigned s = 0xffffffffu, d = 0xffffffffu;
    for (int i = 0; i < kProbeWords; ++i) {
      s &= static_words[i];
      d &= dynamic_words[i];
    }
    static_bits[blockIdx.x] = s;
    dynamic_bits[blockIdx.x] = d;
  }
  __syncthreads();
  // Leave something behind for whichever block runs here next.
  static_words[threadIdx.x] = blockIdx.x;
  dynamic_words[threadIdx.x] = blockIdx.x;
}

}  // namespace

void atomic_count(unsigned* counter, int adds_per_thread, int blocks, int threads,
                  cudaStream_t stream) {
  DDPM_LAUNCH(atomic_count_kernel, blocks, threads, 0, stream, counter, adds_per_thread);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void atomic_float_sum(const float* x, float* total, int n, cudaStream_t stream) {
  DDPM_LAUNCH(atomic_float_sum_kernel, 8, 128, 0, stream, x, total, n);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void atomic_mix(const int* x, int n, int* results, double* dsum, __half* hsum, __nv_bfloat16* bsum,
                cudaStream_t stream) {
  DDPM_LAUNCH(atomic_mix_kernel, (n + 63) / 64, 64, 0, stream, x, n, results, dsum, hsum, bsum);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void reverse_in_blocks(const float* x, float* y, int n, int threads, cudaStream_t stream) {
  const size_t shmem = size_t(threads) * sizeof(float);
  DDPM_LAUNCH(reverse_kernel, (n + threads - 1) / threads, threads, shmem, stream, x, y, n);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void probe_shared_poison(unsigned* static_bits, unsigned* dynamic_bits, int blocks,
                         cudaStream_t stream) {
  DDPM_LAUNCH(poison_probe_kernel, blocks, kProbeWords, kProbeWords * sizeof(unsigned), stream,
              static_bits, dynamic_bits);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ddpm::emu_test
