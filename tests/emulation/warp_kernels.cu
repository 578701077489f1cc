// Warp-level kernels: shuffle reductions (xor and down), a shuffle-up scan that
// works on a partial last warp, votes and block-wide counts, shuffles of 16-
// and 64-bit types, match and reduce.
#include <cassert>

#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {

namespace {

constexpr unsigned kFullMask = 0xffffffffu;

template <bool kXor>
__device__ inline float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) {
    if constexpr (kXor) {
      v += __shfl_xor_sync(kFullMask, v, offset);
    } else {
      v += __shfl_down_sync(kFullMask, v, offset);
    }
  }
  return v;  // xor: every lane holds the sum; down: lane 0 does
}

template <bool kXor>
__global__ void block_sum_kernel(const float* __restrict__ x, float* __restrict__ block_sums,
                                 int n) {
  __shared__ float warp_sums[32];
  float v = 0.0f;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) v += x[i];
  v = warp_sum<kXor>(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    // Only as many entries as there are warps were written.
    v = lane < int(blockDim.x / 32) ? warp_sums[lane] : 0.0f;
    v = warp_sum<false>(v);
    if (lane == 0) block_sums[blockIdx.x] = v;
  }
}

__global__ void warp_scan_kernel(const int* __restrict__ x, int* __restrict__ out) {
  // The lanes of this warp that exist: all 32, or fewer in a partial last warp.
  const unsigned lanes = __ballot_sync(kFullMask, 1);
  const int lane = threadIdx.x % 32;
  int v = x[threadIdx.x];
  for (int offset = 1; offset < 32; offset *= 2) {
    const int other = __shfl_up_sync(lanes, v, offset);  // lanes below `offset` get their own
    if (lane >= offset) v += other;
  }
  out[threadIdx.x] = v;
}

__global__ void warp_votes_kernel(const int* __restrict__ predicate, unsigned* ballots, int* any,
                                  int* all, int* counts) {
  const int p = predicate[threadIdx.x] != 0;
  const unsigned ballot = __ballot_sync(kFullMask, p);
  const int some = __any_sync(kFullMask, p);
  const int every = __all_sync(kFullMask, p);
  if (threadIdx.x % 32 == 0) {
    ballots[threadIdx.x / 32] = ballot;
    any[threadIdx.x / 32] = some;
    all[threadIdx.x / 32] = every;
  }
  const int count = __syncthreads_count(p);
  const int count_and = __syncthreads_and(p);
  const int count_or = __syncthreads_or(p);
  if (threadIdx.x == 0) {
    counts[0] = count;
    counts[1] = count_and;
    counts[2] = count_or;
  }
}

template <class T>
__global__ void swap_pairs_kernel(const T* __restrict__ x, T* __restrict__ y) {
  y[threadIdx.x] = __shfl_xor_sync(kFullMask, x[threadIdx.x], 1);
}

__global__ void match_reduce_kernel(const int* __restrict__ key, unsigned* match, int* sums,
                                    int* maxes) {
  const int k = key[threadIdx.x];
  match[threadIdx.x] = __match_any_sync(kFullMask, k);
  sums[threadIdx.x] = __reduce_add_sync(kFullMask, k);
  maxes[threadIdx.x] = __reduce_max_sync(kFullMask, k);
}

}  // namespace

void block_sum(const float* x, float* block_sums, int n, int blocks, int threads, bool use_xor,
               cudaStream_t stream) {
  assert(threads % 32 == 0 && threads <= 1024);  // the xor butterfly needs whole warps
  if (use_xor) {
    DDPM_LAUNCH(block_sum_kernel<true>, blocks, threads, 0, stream, x, block_sums, n);
  } else {
    DDPM_LAUNCH(block_sum_kernel<false>, blocks, threads, 0, stream, x, block_sums, n);
  }
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void warp_inclusive_scan(const int* x, int* out, int threads, cudaStream_t stream) {
  DDPM_LAUNCH(warp_scan_kernel, 1, threads, 0, stream, x, out);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void warp_votes(const int* predicate, unsigned* ballots, int* any, int* all, int* counts,
                int threads, cudaStream_t stream) {
  DDPM_LAUNCH(warp_votes_kernel, 1, threads, 0, stream, predicate, ballots, any, all, counts);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void swap_pairs_half(const __half* x, __half* y, cudaStream_t stream) {
  DDPM_LAUNCH(swap_pairs_kernel<__half>, 1, 32, 0, stream, x, y);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void swap_pairs_bf16(const __nv_bfloat16* x, __nv_bfloat16* y, cudaStream_t stream) {
  DDPM_LAUNCH(swap_pairs_kernel<__nv_bfloat16>, 1, 32, 0, stream, x, y);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void swap_pairs_double(const double* x, double* y, cudaStream_t stream) {
  DDPM_LAUNCH(swap_pairs_kernel<double>, 1, 32, 0, stream, x, y);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void warp_match_and_reduce(const int* key, unsigned* match, int* sums, int* maxes,
                           cudaStream_t stream) {
  DDPM_LAUNCH(match_reduce_kernel, 1, 32, 0, stream, key, match, sums, maxes);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ddpm::emu_test
