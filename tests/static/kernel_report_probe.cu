// Two deliberately bad kernels for the ctest static.kernel_report_catches_probe: the
// kernel report must FAIL on this object, proving its checks can fail on real
// cuobjdump output. Compiled by nvcc only; never launched.
//  - spill_probe_kernel keeps 64 values live across a loop under a 32-register cap
//    (__launch_bounds__(1024, 2): 65536 / 2048 threads), so ptxas must spill;
//  - gemm_bf16_probe_kernel is named like the bf16 GEMM family, whose rule requires
//    HMMA, LDSM and LDGSTS, but is a plain FMA loop.

namespace ddpm::kernels::probe {

__global__ void __launch_bounds__(1024, 2) spill_probe_kernel(const float* in, float* out, int n) {
  constexpr int kLive = 64;
  float v[kLive];
#pragma unroll
  for (int i = 0; i < kLive; ++i) v[i] = in[threadIdx.x + i * blockDim.x];
  for (int step = 0; step < n; ++step) {
    // Every value depends on its neighbour: all 64 stay live across iterations.
    const float first = v[0];
#pragma unroll
    for (int i = 0; i < kLive - 1; ++i) v[i] = fmaf(v[i], 1.0001f, v[i + 1]);
    v[kLive - 1] = fmaf(v[kLive - 1], 0.9999f, first);
  }
#pragma unroll
  for (int i = 0; i < kLive; ++i) out[threadIdx.x + i * blockDim.x] = v[i];
}

__global__ void __launch_bounds__(128)
    gemm_bf16_probe_kernel(const float* a, const float* b, float* c, int k) {
  float acc = 0.0f;
  for (int i = 0; i < k; ++i) acc = fmaf(a[i * 128 + threadIdx.x], b[i], acc);
  c[threadIdx.x] = acc;
}

}  // namespace ddpm::kernels::probe
