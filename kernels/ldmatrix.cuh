// ldmatrix: a warp loads one, two or four 8x8 matrices of 16-bit elements from
// shared memory into registers in the mma fragment layout (PTX ISA,
// "ldmatrix"; the fragment layouts of kernels/warp_mma.cuh). Header-only.
//
// Addresses: for matrix j (j < 1, 2 or 4), lanes 8j .. 8j+7 each give the
// address of one of its 8 rows (16 bytes, 16-byte aligned, in shared memory);
// the other lanes' addresses are ignored (x1: lanes 8..31, x2: 16..31).
// Result: lane l receives, in r[j], the pair of row l / 4 at columns
// 2 (l % 4) and 2 (l % 4) + 1 of matrix j (the lower column in the low 16
// bits). The .trans forms give the transposed matrix: row 2 (l % 4) and
// 2 (l % 4) + 1 at column l / 4. So with 4 matrices covering a 16x16 bf16
// tile as (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15),
// (rows 8-15, k 8-15), x4 yields exactly mma m16n8k16's A fragment.
//
// Paths: the instruction in device code for sm_75+; elsewhere (the CPU
// emulator, the host pass) a portable twin built from warp shuffles of the row
// addresses, which then reads shared memory with plain loads. All 32 lanes of
// the warp must call it, converged.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#if defined(__CUDACC__) || defined(DDPM_CUDA_EMULATION)

namespace ddpm::kernels::ldsm {

namespace detail {

__device__ inline int lane() {
  const unsigned linear = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  return int(linear & 31u);
}

// Portable twin: every lane learns the row addresses it needs by shuffles.
template <int Count, bool Trans>
__device__ inline void load_portable(uint32_t (&r)[Count], const void* row_addr) {
  const int l = lane();
  const unsigned long long mine = reinterpret_cast<unsigned long long>(row_addr);
  for (int j = 0; j < Count; ++j) {
    if constexpr (!Trans) {
      const auto* row =
          reinterpret_cast<const uint32_t*>(__shfl_sync(0xffffffffu, mine, 8 * j + l / 4));
      r[j] = row[l % 4];
    } else {
      const auto* row0 =
          reinterpret_cast<const uint16_t*>(__shfl_sync(0xffffffffu, mine, 8 * j + 2 * (l % 4)));
      const auto* row1 = reinterpret_cast<const uint16_t*>(
          __shfl_sync(0xffffffffu, mine, 8 * j + 2 * (l % 4) + 1));
      r[j] = uint32_t(row0[l / 4]) | (uint32_t(row1[l / 4]) << 16);
    }
  }
}

}  // namespace detail

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
#define DDPM_LDSM_PTX 1
#endif

__device__ inline void x1(uint32_t (&r)[1], const void* row_addr) {
#ifdef DDPM_LDSM_PTX
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row_addr));
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(a));
#else
  detail::load_portable<1, false>(r, row_addr);
#endif
}

__device__ inline void x2(uint32_t (&r)[2], const void* row_addr) {
#ifdef DDPM_LDSM_PTX
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row_addr));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(a));
#else
  detail::load_portable<2, false>(r, row_addr);
#endif
}

__device__ inline void x4(uint32_t (&r)[4], const void* row_addr) {
#ifdef DDPM_LDSM_PTX
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row_addr));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
#else
  detail::load_portable<4, false>(r, row_addr);
#endif
}

__device__ inline void x1_trans(uint32_t (&r)[1], const void* row_addr) {
#ifdef DDPM_LDSM_PTX
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row_addr));
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
               : "=r"(r[0])
               : "r"(a));
#else
  detail::load_portable<1, true>(r, row_addr);
#endif
}

__device__ inline void x2_trans(uint32_t (&r)[2], const void* row_addr) {
#ifdef DDPM_LDSM_PTX
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row_addr));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(a));
#else
  detail::load_portable<2, true>(r, row_addr);
#endif
}

__device__ inline void x4_trans(uint32_t (&r)[4], const void* row_addr) {
#ifdef DDPM_LDSM_PTX
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row_addr));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
#else
  detail::load_portable<4, true>(r, row_addr);
#endif
}

}  // namespace ddpm::kernels::ldsm

#endif  // __CUDACC__ || DDPM_CUDA_EMULATION
