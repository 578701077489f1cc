// Records every CUDA thread's built-in index variables, for the 1-, 2- and 3-D
// launch tests and the launch-limit tests.
#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {

namespace {

__global__ void record_indices_kernel(ThreadRecord* out) {
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  ThreadRecord& r = out[block * (blockDim.x * blockDim.y * blockDim.z) + thread];
  r.thread[0] = threadIdx.x, r.thread[1] = threadIdx.y, r.thread[2] = threadIdx.z;
  r.block[0] = blockIdx.x, r.block[1] = blockIdx.y, r.block[2] = blockIdx.z;
  r.block_dim[0] = blockDim.x, r.block_dim[1] = blockDim.y, r.block_dim[2] = blockDim.z;
  r.grid_dim[0] = gridDim.x, r.grid_dim[1] = gridDim.y, r.grid_dim[2] = gridDim.z;
  r.warp_size = warpSize;
}

}  // namespace

void record_indices(ThreadRecord* out, dim3 grid, dim3 block, cudaStream_t stream) {
  DDPM_LAUNCH(record_indices_kernel, grid, block, 0, stream, out);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void launch_with_shared(ThreadRecord* out, dim3 grid, dim3 block, size_t shmem_bytes,
                        cudaStream_t stream) {
  // No check here: the limit tests read cudaGetLastError themselves.
  DDPM_LAUNCH(record_indices_kernel, grid, block, shmem_bytes, stream, out);
}

const void* record_indices_kernel_address() {
  return reinterpret_cast<const void*>(&record_indices_kernel);
}

}  // namespace ddpm::emu_test
