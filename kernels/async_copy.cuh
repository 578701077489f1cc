// Asynchronous global -> shared copies (cp.async, sm_80+) and their commit /
// wait groups, for multi-stage tensor-core pipelines. Header-only.
//
// Semantics (PTX ISA, "cp.async", "cp.async.commit_group", "cp.async.wait_group"):
//   - copy16(dst, src, valid) starts a 16-byte copy from global `src` to shared
//     `dst` (both 16-byte aligned). When `valid` is false, nothing is read and
//     the 16 destination bytes become zero (src-size 0: the zero fill that
//     pads tiles at tensor edges). It bypasses L1 (.cg).
//   - commit() closes this thread's copies issued since the last commit into a
//     group. Groups are per thread.
//   - wait<N>() blocks until at most N of this thread's most recent groups
//     are still in flight; wait<0>() / wait_all() until all have landed.
//   - Other threads see the data only after the issuing thread's wait and a
//     barrier (__syncthreads) between them.
//
// Paths: the PTX instructions in device code for sm_80+. Under the CPU emulator
// the emulator's cp.async model (kernels/emulation/async_copy_model.h when
// present): the destination is poisoned at issue and written at the wait, so
// a missing wait or barrier reads NaNs in tests rather than passing by luck.
// Elsewhere (host pass, older GPUs) a synchronous copy.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#if defined(__CUDACC__) || defined(DDPM_CUDA_EMULATION)

#if defined(DDPM_CUDA_EMULATION) && __has_include("emulation/async_copy_model.h")
#include "emulation/async_copy_model.h"
#define DDPM_ASYNC_COPY_EMULATED 1
#endif

namespace ddpm::kernels::async_copy {

__device__ inline void copy16(void* smem_dst, const void* gmem_src, bool valid = true) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem_src),
               "r"(src_bytes)
               : "memory");
#elif defined(DDPM_ASYNC_COPY_EMULATED)
  ddpm::emu::async_copy_issue(smem_dst, gmem_src, 16, valid ? 16u : 0u);
#else
  uint4 v = make_uint4(0, 0, 0, 0);
  if (valid) v = *static_cast<const uint4*>(gmem_src);
  *static_cast<uint4*>(smem_dst) = v;
#endif
}

__device__ inline void commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#elif defined(DDPM_ASYNC_COPY_EMULATED)
  ddpm::emu::async_copy_commit();
#endif
}

// At most N of this thread's committed groups still in flight after the call.
template <int N>
__device__ inline void wait() {
  static_assert(N >= 0 && N < 8, "cp.async.wait_group takes 0..7 here");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#elif defined(DDPM_ASYNC_COPY_EMULATED)
  ddpm::emu::async_copy_wait(N);
#endif
}

// Every copy of this thread landed, committed or not (cp.async.wait_all).
__device__ inline void wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_all;\n" ::: "memory");
#elif defined(DDPM_ASYNC_COPY_EMULATED)
  ddpm::emu::async_copy_commit();
  ddpm::emu::async_copy_wait(0);
#endif
}

}  // namespace ddpm::kernels::async_copy

#endif  // __CUDACC__ || DDPM_CUDA_EMULATION
