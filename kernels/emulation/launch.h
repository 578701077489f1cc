// The one way launchers start kernels and declare dynamic shared memory, so the
// same kernel source builds with nvcc (a real launch) and with g++ under the
// emulator (cuda_emulation.h). Include it from every .cu file that launches.
//
//   DDPM_LAUNCH(kernel, grid, block, shmem_bytes, stream, args...);
//   DDPM_CUDA_CHECK(cudaGetLastError());
//
// A template kernel whose name holds a comma goes in parentheses:
// DDPM_LAUNCH((tile_kernel<float, 4>), ...); both nvcc and the emulator accept it.
//
//   __global__ void k(...) { DDPM_DYNAMIC_SHARED(float, tile); tile[threadIdx.x] = ...; }
//
// declares `tile` as the block's dynamic shared memory: under nvcc
// `extern __shared__ float tile[]`, under the emulator a pointer to a per-block
// heap region of exactly shmem_bytes (0xFF-filled, bounds seen by ASan).
#pragma once

#if defined(__CUDACC__)

#define DDPM_LAUNCH(kernel, grid, block, shmem_bytes, stream, ...) \
  kernel<<<(grid), (block), (shmem_bytes), (stream)>>>(__VA_ARGS__)
#define DDPM_DYNAMIC_SHARED(T, name) extern __shared__ T name[]

#else

#include "cuda_emulation.h"

#define DDPM_LAUNCH(kernel, grid, block, shmem_bytes, stream, ...)     \
  ::ddpm::emu::launch(#kernel, kernel, (grid), (block), (shmem_bytes), \
                      (stream)__VA_OPT__(, ) __VA_ARGS__)
#define DDPM_DYNAMIC_SHARED(T, name) T* const name = ::ddpm::emu::dynamic_shared_memory<T>()

#endif
