// Deliberately broken kernels: each bug must be caught, by the emulator's own
// checks (divergent barriers, warp misuse, __trap, a fiber stack overflow), by
// ThreadSanitizer (a missing barrier) or by AddressSanitizer (a shared-memory
// overrun).
#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {

namespace {

constexpr unsigned kFullMask = 0xffffffffu;

__global__ void early_return_kernel(float* x, int live) {
  const int t = threadIdx.x;
  if (t >= live) return;  // BUG: the threads that return never reach the barrier
  x[t] = 1.0f;
  __syncthreads();
  x[t] += x[(t + 1) % live];
}

__global__ void barrier_in_branches_kernel(float* x) {
  if (threadIdx.x % 2 == 0) {
    x[threadIdx.x] = 1.0f;
    __syncthreads();  // BUG: two different barriers
  } else {
    x[threadIdx.x] = 2.0f;
    __syncthreads();
  }
}

template <int kTile>
__global__ void tiled_matmul_missing_barrier_kernel(const float* __restrict__ a,
                                                    const float* __restrict__ b,
                                                    float* __restrict__ c, int m, int n, int k) {
  __shared__ float a_tile[kTile][kTile];
  __shared__ float b_tile[kTile][kTile];
  const int row = blockIdx.y * kTile + threadIdx.y;
  const int col = blockIdx.x * kTile + threadIdx.x;
  float acc = 0.0f;
  for (int k0 = 0; k0 < k; k0 += kTile) {
    const int ak = k0 + threadIdx.x, bk = k0 + threadIdx.y;
    a_tile[threadIdx.y][threadIdx.x] = (row < m && ak < k) ? a[row * k + ak] : 0.0f;
    b_tile[threadIdx.y][threadIdx.x] = (bk < k && col < n) ? b[bk * n + col] : 0.0f;
    __syncthreads();
    for (int kk = 0; kk < kTile; ++kk) acc += a_tile[threadIdx.y][kk] * b_tile[kk][threadIdx.x];
    // BUG: no __syncthreads() here, so the next step's stores race with these loads.
  }
  if (row < m && col < n) c[row * n + col] = acc;
}

__global__ void shared_tile_write_kernel(float* out, int shift) {
  DDPM_DYNAMIC_SHARED(float, tile);
  tile[threadIdx.x + shift] = float(threadIdx.x);  // BUG when shift > 0: one past the end
  __syncthreads();
  out[threadIdx.x] = tile[threadIdx.x];
}

__global__ void warp_misuse_kernel(int which, float* out) {
  const int lane = threadIdx.x % 32;
  float v = float(threadIdx.x);
  switch (static_cast<WarpMisuse>(which)) {
    case WarpMisuse::kMaskExcludesCaller:
      v = __shfl_sync(lane == 0 ? 0xfffffffeu : kFullMask, v, 1);
      break;
    case WarpMisuse::kDivergentShuffles:
      if (lane % 2 == 0) {
        v = __shfl_xor_sync(kFullMask, v, 1);
      } else {
        v = __shfl_down_sync(kFullMask, v, 1);
      }
      break;
    case WarpMisuse::kReadOutsideMask:
      if (lane < 16) v = __shfl_xor_sync(0x0000ffffu, v, 16);
      break;
    case WarpMisuse::kShflPartialWarp:
      v += __shfl_down_sync(kFullMask, v, 16);
      break;
    case WarpMisuse::kShuffleThenBarrier:
      if (lane == 0) {
        __syncthreads();
      } else {
        v = __shfl_xor_sync(kFullMask, v, 1);
      }
      break;
  }
  out[threadIdx.x] = v;
}

__global__ void stack_hog_kernel(float* out, int n) {
  float scratch[32 * 1024];  // BUG under emulation: 128 KB of locals, twice a 64 KB fiber stack
  for (int i = 0; i < n; ++i) scratch[i] = float(i) * out[0];
  out[threadIdx.x] = scratch[n - 1 - threadIdx.x];
}

__global__ void trap_kernel(float* out) {
  if (threadIdx.x == 3) __trap();
  out[threadIdx.x] = 1.0f;
}

}  // namespace

void early_return_before_barrier(float* x, int threads, int live, cudaStream_t stream) {
  DDPM_LAUNCH(early_return_kernel, 1, threads, 0, stream, x, live);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void barrier_in_branches(float* x, int threads, cudaStream_t stream) {
  DDPM_LAUNCH(barrier_in_branches_kernel, 1, threads, 0, stream, x);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void tiled_matmul_missing_barrier(const float* a, const float* b, float* c, int m, int n, int k,
                                  cudaStream_t stream) {
  const dim3 block(kMatmulTile, kMatmulTile);
  const dim3 grid((n + kMatmulTile - 1) / kMatmulTile, (m + kMatmulTile - 1) / kMatmulTile);
  DDPM_LAUNCH(tiled_matmul_missing_barrier_kernel<kMatmulTile>, grid, block, 0, stream, a, b, c, m,
              n, k);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void shared_tile_write(float* out, int threads, int shift, cudaStream_t stream) {
  DDPM_LAUNCH(shared_tile_write_kernel, 1, threads, threads * sizeof(float), stream, out, shift);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void warp_misuse(WarpMisuse which, float* out, cudaStream_t stream) {
  const int threads = which == WarpMisuse::kShflPartialWarp ? 100 : 32;
  DDPM_LAUNCH(warp_misuse_kernel, 1, threads, 0, stream, static_cast<int>(which), out);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void stack_overflow_in_kernel(float* out, cudaStream_t stream) {
  DDPM_LAUNCH(stack_hog_kernel, 1, 32, 0, stream, out, 32 * 1024);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void trap_in_kernel(float* out, cudaStream_t stream) {
  DDPM_LAUNCH(trap_kernel, 1, 32, 0, stream, out);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ddpm::emu_test
