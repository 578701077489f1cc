// Block-wide reductions in a fixed order, so a sum gives the same bits on
// every run (no atomics): a shuffle tree within each warp, then one over the
// warps' partial sums.
#pragma once

#if defined(__CUDACC__) || defined(DDPM_CUDA_EMULATION)

namespace ddpm::kernels {

// The sum of v over a block of kThreads threads (a multiple of 32, at most
// 1024); the result is valid in thread 0. Every thread of the block must call it.
template <int kThreads>
__device__ inline double block_sum(double v) {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024,
                "block_sum: whole warps, at most 1024 threads");
  __shared__ double warp_sums[kThreads / 32];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / 32 ? warp_sums[lane] : 0.0;
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  return v;
}

}  // namespace ddpm::kernels

#endif
