// Kernels that probe the emulator's cp.async model (kernels/emulation/
// async_copy_model.h) through kernels/async_copy.cuh: when copies land, what a
// stage holds before they do, zero fill, commit groups, misuse that must fail
// the launch, state that must not outlive a block, and a stage read without
// the barrier after the wait (a race for TSan). Emulated builds only: several
// read a stage before its wait on purpose, which on a GPU gives whatever the
// copy engine has written by then.
#include <stdexcept>
#include <string>

#include "kernels/async_copy.cuh"
#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "tests/emulation/test_kernels.cuh"

#if !defined(DDPM_CUDA_EMULATION)
#error "async_copy_kernels.cu tests the emulator's cp.async model; it is not for nvcc"
#endif

namespace ddpm::emu_test {

namespace {

namespace cp = ddpm::kernels::async_copy;

constexpr int kMaxThreads = 64;

__global__ void async_copy_case_kernel(AsyncCopyCase which, const uint4* __restrict__ src,
                                       uint4* __restrict__ out) {
  __shared__ uint4 stage[2][kMaxThreads];
  const int t = threadIdx.x, n = blockDim.x;
  // Zeros first, so the poison the model writes at issue differs from what
  // the stage held (the block-start fill is 0xFF as well).
  stage[0][t] = stage[1][t] = make_uint4(0, 0, 0, 0);
  switch (which) {
    case AsyncCopyCase::kWaitAll:
      cp::copy16(&stage[0][t], &src[t]);
      cp::commit();
      cp::wait<0>();
      out[t] = stage[0][t];
      break;
    case AsyncCopyCase::kWaitOneOfTwo:
      cp::copy16(&stage[0][t], &src[t]);
      cp::commit();
      cp::copy16(&stage[1][t], &src[n + t]);
      cp::commit();
      cp::wait<1>();  // the first group has landed; the second may not have
      out[t] = stage[0][t];
      out[n + t] = stage[1][t];
      cp::wait<0>();
      out[2 * n + t] = stage[1][t];
      break;
    case AsyncCopyCase::kZeroFill:
      // Odd threads copy nothing from a null source: 16 zero bytes land.
      cp::copy16(&stage[0][t], t % 2 ? nullptr : &src[t], t % 2 == 0);
      cp::commit();
      cp::wait<0>();
      out[t] = stage[0][t];
      break;
    case AsyncCopyCase::kUncommitted:
      cp::copy16(&stage[0][t], &src[t]);
      cp::commit();
      cp::copy16(&stage[1][t], &src[n + t]);  // not committed: wait_group ignores it
      cp::wait<0>();
      out[t] = stage[0][t];
      out[n + t] = stage[1][t];
      cp::wait_all();
      out[2 * n + t] = stage[1][t];
      break;
    case AsyncCopyCase::kPartialSource:
      // The model's entry directly (copy16 reads 16 or 0 bytes): t % 17 bytes
      // read, the rest of the 16 zero-filled.
      ddpm::emu::async_copy_issue(&stage[0][t], &src[t], 16, unsigned(t % 17));
      cp::commit();
      cp::wait<0>();
      out[t] = stage[0][t];
      break;
    case AsyncCopyCase::kMisalignedDestination:
      cp::copy16(reinterpret_cast<char*>(&stage[0][t]) + (t == 3 ? 8 : 0), &src[t]);
      cp::wait_all();
      break;
    case AsyncCopyCase::kMisalignedSource:
      cp::copy16(&stage[0][t], reinterpret_cast<const char*>(&src[t]) + (t == 3 ? 4 : 0));
      cp::wait_all();
      break;
    case AsyncCopyCase::kGlobalDestination:
      cp::copy16(t == 2 ? &out[t] : &stage[0][t], &src[t]);
      cp::wait_all();
      break;
  }
}

__global__ void async_copy_leak_kernel(const uint4* __restrict__ src, uint4* __restrict__ out) {
  __shared__ uint4 stage[kMaxThreads];
  const int t = threadIdx.x;
  if (blockIdx.x == 0) {
    // Issued and committed, never waited for: dropped when the block ends.
    cp::copy16(&stage[t], &src[t]);
    cp::commit();
    cp::copy16(&stage[t], &src[t]);  // and one left uncommitted
    return;
  }
  // A leaked copy would land here, over this block's 0xFF-filled stage.
  cp::wait<0>();
  cp::wait_all();
  out[blockIdx.x * blockDim.x + t] = stage[t];
}

__global__ void async_copy_neighbour_read_kernel(const uint4* __restrict__ src,
                                                 uint4* __restrict__ out, bool barrier_after_wait) {
  __shared__ uint4 stage[kMaxThreads];
  const int t = threadIdx.x, n = blockDim.x;
  cp::copy16(&stage[t], &src[t]);
  cp::commit();
  __syncthreads();  // every copy issued (and its destination poisoned) before any wait
  cp::wait<0>();
  // Correct: the barrier makes every thread's landed copy visible to all.
  // Without it (BUG), thread t reads its neighbour's chunk, which lands at the
  // neighbour's wait: a race (and, in the emulator's fiber order, poison).
  if (barrier_after_wait) __syncthreads();
  out[t] = stage[(t + 1) % n];
}

void check_threads(int threads) {
  if (threads < 1 || threads > kMaxThreads)
    throw std::invalid_argument("async copy test kernels take 1.." + std::to_string(kMaxThreads) +
                                " threads, not " + std::to_string(threads));
}

}  // namespace

void async_copy_case(AsyncCopyCase which, const uint4* src, uint4* out, int threads,
                     cudaStream_t stream) {
  check_threads(threads);
  DDPM_LAUNCH(async_copy_case_kernel, 1, threads, 0, stream, which, src, out);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void async_copy_leak(const uint4* src, uint4* out, int blocks, int threads, cudaStream_t stream) {
  check_threads(threads);
  DDPM_LAUNCH(async_copy_leak_kernel, blocks, threads, 0, stream, src, out);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void async_copy_neighbour_read(const uint4* src, uint4* out, int threads, bool barrier_after_wait,
                               cudaStream_t stream) {
  check_threads(threads);
  DDPM_LAUNCH(async_copy_neighbour_read_kernel, 1, threads, 0, stream, src, out,
              barrier_after_wait);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ddpm::emu_test
