// Casts between fp32 and bf16 tensors in device memory (issue 11's glue: the
// engine's casts at the edges of the bf16 graph, e.g. an fp32 input into the
// first bf16 conv, a bf16 output back to fp32 for the host). Plain pointers,
// a stream, no allocation and no synchronisation (capturable in a CUDA graph).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace ddpm::kernels {

// y[i] = x[i] rounded to nearest, ties to even (NaN stays NaN, overflow gives
// infinity). n >= 0 (0: no launch), else std::invalid_argument; any alignment
// (16-byte accesses when both pointers are 16-byte aligned). x and y must not
// overlap.
void convert_f32_to_bf16(const float* x, __nv_bfloat16* y, int64_t n, cudaStream_t stream);

// y[i] = x[i] widened to float (exact). As above.
void convert_bf16_to_f32(const __nv_bfloat16* x, float* y, int64_t n, cudaStream_t stream);

}  // namespace ddpm::kernels
