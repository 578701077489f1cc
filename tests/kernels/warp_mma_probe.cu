// The warp_mma probe kernels (warp_mma_probe.h): one warp packs its fragments
// from global memory through the layout helpers of kernels/warp_mma.cuh, runs
// one mma by the chosen path and writes D back through the same helpers.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "kernels/warp_mma.cuh"
#include "tests/kernels/warp_mma_probe.h"

namespace ddpm::testing {

namespace {

using kernels::mma::fragment_col;
using kernels::mma::fragment_row;
using kernels::mma::Operand;

// a [16][16], b [16][8] (k rows), c and d [16][8], row-major.
__global__ void warp_mma_probe_kernel(const float* a, const float* b, const float* c, float* d,
                                      bool portable) {
  const int lane = int(threadIdx.x);
  uint32_t fa[4], fb[2];
  float fc[4], fd[4];
  for (int r = 0; r < 4; ++r) {
    const int lo = 2 * r, hi = 2 * r + 1;  // elements of register r
    fa[r] = kernels::mma::pack_bf16x2(
        a[fragment_row(Operand::a, lane, lo) * 16 + fragment_col(Operand::a, lane, lo)],
        a[fragment_row(Operand::a, lane, hi) * 16 + fragment_col(Operand::a, lane, hi)]);
  }
  for (int r = 0; r < 2; ++r) {
    const int lo = 2 * r, hi = 2 * r + 1;
    fb[r] = kernels::mma::pack_bf16x2(
        b[fragment_row(Operand::b, lane, lo) * 8 + fragment_col(Operand::b, lane, lo)],
        b[fragment_row(Operand::b, lane, hi) * 8 + fragment_col(Operand::b, lane, hi)]);
  }
  for (int i = 0; i < 4; ++i)
    fc[i] = c[fragment_row(Operand::c, lane, i) * 8 + fragment_col(Operand::c, lane, i)];
  if (portable)
    kernels::mma::mma_m16n8k16_bf16_portable(fd, fa, fb, fc);
  else
    kernels::mma::mma_m16n8k16_bf16(fd, fa, fb, fc);
  for (int i = 0; i < 4; ++i)
    d[fragment_row(Operand::c, lane, i) * 8 + fragment_col(Operand::c, lane, i)] = fd[i];
}

__global__ void warp_mma_path_kernel(int* uses_ptx) {
  *uses_ptx = kernels::mma::mma_uses_ptx() ? 1 : 0;
}

// Device copies of the probe's operands, freed on every exit.
struct DeviceBuffer {
  explicit DeviceBuffer(size_t bytes) { DDPM_CUDA_CHECK(cudaMalloc(&p, bytes)); }
  ~DeviceBuffer() { cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* p = nullptr;
};

}  // namespace

void run_warp_mma_probe(const float* a, const float* b, const float* c, float* d, MmaPath path) {
  constexpr size_t kA = 16 * 16 * sizeof(float), kB = 16 * 8 * sizeof(float), kC = kB;
  DeviceBuffer da(kA), db(kB), dc(kC), dd(kC);
  DDPM_CUDA_CHECK(cudaMemcpy(da.p, a, kA, cudaMemcpyHostToDevice));
  DDPM_CUDA_CHECK(cudaMemcpy(db.p, b, kB, cudaMemcpyHostToDevice));
  DDPM_CUDA_CHECK(cudaMemcpy(dc.p, c, kC, cudaMemcpyHostToDevice));
  DDPM_LAUNCH(warp_mma_probe_kernel, 1, 32, 0, cudaStream_t{}, static_cast<const float*>(da.p),
              static_cast<const float*>(db.p), static_cast<const float*>(dc.p),
              static_cast<float*>(dd.p), path == MmaPath::portable);
  DDPM_CUDA_CHECK(cudaGetLastError());
  DDPM_CUDA_CHECK(cudaMemcpy(d, dd.p, kC, cudaMemcpyDeviceToHost));
}

bool warp_mma_default_is_ptx() {
  DeviceBuffer flag(sizeof(int));
  DDPM_LAUNCH(warp_mma_path_kernel, 1, 1, 0, cudaStream_t{}, static_cast<int*>(flag.p));
  DDPM_CUDA_CHECK(cudaGetLastError());
  int uses_ptx = 0;
  DDPM_CUDA_CHECK(cudaMemcpy(&uses_ptx, flag.p, sizeof(int), cudaMemcpyDeviceToHost));
  return uses_ptx != 0;
}

}  // namespace ddpm::testing
