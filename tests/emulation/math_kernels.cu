// Device math intrinsics that g++ lacks and the emulator supplies (fast-math
// float intrinsics, fp16/bf16 math, bit intrinsics, min/max, __ldg), each
// evaluated once per thread.
#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {

namespace {

__global__ void math_intrinsics_kernel(const float* __restrict__ x, float* __restrict__ out,
                                       int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float v = __ldg(&x[i]);
  const __half h = __float2half(v);
  float* o = out + i * kMathResults;
  o[0] = __expf(v);
  o[1] = __logf(v);
  o[2] = __fdividef(1.0f, v);
  o[3] = rsqrtf(v);
  o[4] = __frcp_rn(v);
  o[5] = fmaf(v, v, 1.0f);
  o[6] = __saturatef(v - 1.0f);
  o[7] = __powf(v, 1.5f);
  o[8] = __half2float(__hfma(h, __float2half(0.5f), __float2half(1.0f)));
  o[9] = __half2float(hexp(h));
  o[10] = __half2float(hsqrt(h));
  o[11] = __half2float(hrsqrt(h));
  o[12] = __bfloat162float(hexp(__float2bfloat16(v)));
  o[13] = float(__popc(unsigned(i) * 2654435761u));
  o[14] = float(__clz(i + 1));
  o[15] = float(__ffs(i + 8));
  o[16] = __uint_as_float(__brev(__brev(__float_as_uint(v))));
  o[17] = max(v, 2.0f);
  o[18] = float(min(i, 3));
  o[19] = normcdff(v - 2.0f);
  o[20] = erfinvf((v - 2.0f) / 2.5f);
}

}  // namespace

void math_intrinsics(const float* x, float* out, int n, cudaStream_t stream) {
  DDPM_LAUNCH(math_intrinsics_kernel, (n + 63) / 64, 64, 0, stream, x, out, n);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ddpm::emu_test
