// A tiled matrix multiply with shared-memory tiles and barriers: the emulator's
// main correctness case and its cost reference (256^3 is about 2.1 M barrier
// hand-offs).
#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {

namespace {

template <int kTile>
__global__ void tiled_matmul_kernel(const float* __restrict__ a, const float* __restrict__ b,
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
    __syncthreads();  // the tiles are complete
    for (int kk = 0; kk < kTile; ++kk) acc += a_tile[threadIdx.y][kk] * b_tile[kk][threadIdx.x];
    __syncthreads();  // everyone is done with the tiles before they are overwritten
  }
  if (row < m && col < n) c[row * n + col] = acc;
}

}  // namespace

void tiled_matmul(const float* a, const float* b, float* c, int m, int n, int k,
                  cudaStream_t stream) {
  const dim3 block(kMatmulTile, kMatmulTile);
  const dim3 grid((n + kMatmulTile - 1) / kMatmulTile, (m + kMatmulTile - 1) / kMatmulTile);
  DDPM_LAUNCH(tiled_matmul_kernel<kMatmulTile>, grid, block, 0, stream, a, b, c, m, n, k);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ddpm::emu_test
