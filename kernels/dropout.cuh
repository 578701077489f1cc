// Dropout on raw device pointers, with exactly the CPU backend's mask
// (engine/cpu/dropout.cpp): element i keeps when the uniform drawn for it is
// >= p, the uniform being uniform_from_bits of lane i % 4 of
//   philox4x32_10(counter {i / 4 (low, high word), salt, step}, key {seed low, seed high})
// (engine/random.h). The mask is a pure function of (seed, step, salt, i), so
// forward and backward recompute it instead of storing it, and GPU and CPU
// agree on it bit for bit; kept elements are x * float(1 / (1 - p)), the
// CPU's float product, so f32 results match the CPU backend exactly.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace ddpm::kernels {

// What a mask is keyed on: the run's seed, the training step (the CPU keys on
// its low 32 bits) and the dropout node's salt.
struct DropoutKey {
  uint64_t seed = 0;
  uint32_t step = 0;
  uint32_t salt = 0;
  // When not null, the step is read from here (device memory) instead of
  // `step`, so that a captured CUDA graph keys each replay on the current step.
  const uint32_t* step_ptr = nullptr;
};

// y = keep(i) ? x * float(1 / (1 - p)) : 0 over n elements; p == 0 copies x
// (dropout off: inference, or p = 0). 0 <= p < 1 and n >= 0, else
// std::invalid_argument. x and y must not overlap; 128-bit accesses when both
// are 16-byte aligned.
void dropout_forward(const float* x, float* y, int64_t n, double p, const DropoutKey& key,
                     cudaStream_t stream);

// dx (= or +=) keep(i) ? dy * float(1 / (1 - p)) : 0, the same mask as the
// forward of the same key; p == 0 passes dy through. dx must not overlap dy.
void dropout_backward(const float* dy, float* dx, int64_t n, double p, const DropoutKey& key,
                      bool accumulate, cudaStream_t stream);

// bf16 twins (issue 11), the same mask for the same key: a kept element is
// bf16(float(x) * float(1 / (1 - p))); accumulating, the fp32 value is added
// to the widened prior of dx in fp32 and the sum rounded once (nearest even).
// p == 0 copies (adds). Arguments as above; 8-byte quad accesses when both
// pointers are 16-byte aligned.
void dropout_forward_bf16(const __nv_bfloat16* x, __nv_bfloat16* y, int64_t n, double p,
                          const DropoutKey& key, cudaStream_t stream);
void dropout_backward_bf16(const __nv_bfloat16* dy, __nv_bfloat16* dx, int64_t n, double p,
                           const DropoutKey& key, bool accumulate, cudaStream_t stream);

}  // namespace ddpm::kernels
