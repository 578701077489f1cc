// fp32 <-> bf16 casts (contract: convert.cuh).
//
// One grid-stride kernel per direction over units of 8 elements: 8 floats (two
// 16-byte loads or stores) against 8 bf16 (one 16-byte access), when both
// pointers are 16-byte aligned; the n % 8 tail (and, unaligned, every element)
// goes element by element in the same launch, so a cast is always one launch.
// Consecutive threads take consecutive units (coalesced), at most one wave of
// resident 256-thread blocks (vector_io.cuh's grid_stride_blocks).
// Rounding: bf16io::store (cvt.rn.bf16x2.f32 on sm_80+, __float2bfloat16_rn
// element by element): nearest even; widening is a shift of the bits (exact).
// Bytes per element: 6 either way (memory-bound).
#include <stdexcept>
#include <string>

#include "kernels/bf16_io.cuh"
#include "kernels/check.cuh"
#include "kernels/convert.cuh"
#include "kernels/emulation/launch.h"
#include "kernels/vector_io.cuh"

namespace ddpm::kernels {

namespace {

using bf16 = __nv_bfloat16;

constexpr int kThreads = 256;
constexpr int kUnit = 8;  // elements per vector unit: one 16-byte bf16 access

// out[i] = in[i] converted, for i < n. kVector: units of 8 with 16-byte
// accesses over n / 8 * 8 elements, then the tail; else every element alone.
template <bool kVector, class In, class Out>
__global__ void __launch_bounds__(kThreads)
    convert_kernel(const In* __restrict__ in, Out* __restrict__ out, int64_t n) {
  const int64_t first = grid_thread_index(), stride = grid_thread_count();
  const int64_t units = kVector ? n / kUnit : 0;
  for (int64_t u = first; u < units; u += stride) {
    float v[kUnit];
    if constexpr (sizeof(In) == 4) {  // float: two float4 loads, one uint4 store
      float lo[4], hi[4];
      bf16io::load<4>(in + u * kUnit, lo);
      bf16io::load<4>(in + u * kUnit + 4, hi);
      for (int k = 0; k < 4; ++k) v[k] = lo[k], v[4 + k] = hi[k];
      bf16io::store<kUnit>(out + u * kUnit, v);
    } else {  // bf16: one uint4 load, two float4 stores
      bf16io::load<kUnit>(in + u * kUnit, v);
      float lo[4] = {v[0], v[1], v[2], v[3]}, hi[4] = {v[4], v[5], v[6], v[7]};
      bf16io::store<4>(out + u * kUnit, lo);
      bf16io::store<4>(out + u * kUnit + 4, hi);
    }
  }
  for (int64_t i = units * kUnit + first; i < n; i += stride)
    out[i] = bf16io::from_float<Out>(bf16io::to_float(in[i]));
}

template <class In, class Out>
void convert(const char* who, const In* x, Out* y, int64_t n, cudaStream_t stream) {
  if (n < 0)
    throw std::invalid_argument(std::string(who) + ": n = " + std::to_string(n) + " is negative");
  if (n == 0) return;
  if (!x || !y) throw std::invalid_argument(std::string(who) + ": x and y must not be null");
  // Work items: units, plus the tail's elements (at most 7) in the same loop's threads.
  if (all_aligned16(x, y)) {
    const unsigned blocks = grid_stride_blocks(n / kUnit > 0 ? n / kUnit : n, kThreads);
    DDPM_LAUNCH((convert_kernel<true, In, Out>), blocks, kThreads, 0, stream, x, y, n);
  } else {
    DDPM_LAUNCH((convert_kernel<false, In, Out>), grid_stride_blocks(n, kThreads), kThreads, 0,
                stream, x, y, n);
  }
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void convert_f32_to_bf16(const float* x, bf16* y, int64_t n, cudaStream_t stream) {
  convert("convert_f32_to_bf16", x, y, n, stream);
}

void convert_bf16_to_f32(const bf16* x, float* y, int64_t n, cudaStream_t stream) {
  convert("convert_bf16_to_f32", x, y, n, stream);
}

}  // namespace ddpm::kernels
