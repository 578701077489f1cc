// bf16 twins of elementwise.cuh's kernels (issue 11): the same operations,
// shapes and conventions, with every tensor __nv_bfloat16 in global memory and
// the arithmetic in fp32 (loads widen exactly, each output is rounded once to
// nearest even; an accumulating gradient adds in fp32 to the bf16 value read,
// then rounds). 16-byte accesses (8 bf16) where pointers are 16-byte aligned
// and the shape keeps 8 elements in one row (channel counts and offsets
// divisible by 8), element by element otherwise. Sums over positions (add's
// broadcast db, upsample's four pixels) are fp32 in a fixed order: bitwise
// reproducible, no atomics. Validation as the fp32 launchers
// (std::invalid_argument naming the launcher and the argument).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace ddpm::kernels {

// y = x sigmoid(x); dx (+)= dy s (1 + x (1 - s)).
void silu_forward_bf16(const __nv_bfloat16* x, __nv_bfloat16* y, int64_t n, cudaStream_t stream);
void silu_backward_bf16(const __nv_bfloat16* x, const __nv_bfloat16* dy, __nv_bfloat16* dx,
                        int64_t n, bool accumulate, cudaStream_t stream);

// y = scale (a + b); b has a's shape (per_sample == 0) or is [n / per_sample,
// channels] broadcast over each sample's positions (add_forward's contract).
void add_forward_bf16(const __nv_bfloat16* a, const __nv_bfloat16* b, __nv_bfloat16* y, int64_t n,
                      int64_t channels, int64_t per_sample, float scale, cudaStream_t stream);
// da (+)= scale dy; db (+)= scale dy (same shape) or scale * the fp32 sum of
// dy over the sample's positions, in position order (broadcast: one block per
// (sample, 32-channel tile)). Either gradient may be null.
void add_backward_bf16(const __nv_bfloat16* dy, __nv_bfloat16* da, __nv_bfloat16* db, int64_t n,
                       int64_t channels, int64_t per_sample, float scale, bool accumulate_a,
                       bool accumulate_b, cudaStream_t stream);

// Nearest upsampling by 2 of [n, h, w, c] and its adjoint (the four dy pixels
// summed in fp32 in the CPU backend's order, then rounded once).
void upsample2x_forward_bf16(const __nv_bfloat16* x, __nv_bfloat16* y, int64_t n, int64_t h,
                             int64_t w, int64_t c, cudaStream_t stream);
void upsample2x_backward_bf16(const __nv_bfloat16* dy, __nv_bfloat16* dx, int64_t n, int64_t h,
                              int64_t w, int64_t c, bool accumulate, cudaStream_t stream);

// Channel concat of one input and its split (concat_channels_forward's contract).
void concat_channels_forward_bf16(const __nv_bfloat16* x, __nv_bfloat16* y, int64_t rows,
                                  int64_t x_channels, int64_t y_channels, int64_t offset,
                                  cudaStream_t stream);
void concat_channels_backward_bf16(const __nv_bfloat16* dy, __nv_bfloat16* dx, int64_t rows,
                                   int64_t x_channels, int64_t y_channels, int64_t offset,
                                   bool accumulate, cudaStream_t stream);

// timestep_embedding_forward's fp32 values (same float operations) rounded to
// bf16: t[n] fp32 in device memory, y[n, dim] bf16.
void timestep_embedding_forward_bf16(const float* t, __nv_bfloat16* y, int64_t n, int64_t dim,
                                     bool flip_sin_to_cos, float freq_shift, float max_period,
                                     float scale, cudaStream_t stream);

}  // namespace ddpm::kernels
