// Elementwise kernels on raw device pointers (channels-last layouts), each
// with a launcher that takes a stream and checks the launch. Gradients
// either overwrite their destination or add to it (`accumulate`), as the
// executor's first / later contributions need. 128-bit loads and stores where
// pointers and sizes allow, with a scalar tail.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace ddpm::kernels {

// y = x * sigmoid(x).
void silu_forward(const float* x, float* y, int64_t n, cudaStream_t stream);
// dx (+)= dy * s * (1 + x * (1 - s)), s = sigmoid(x).
void silu_backward(const float* x, const float* dy, float* dx, int64_t n, bool accumulate,
                   cudaStream_t stream);

// y = scale * (a + b) over n elements. With per_sample > 0, b is [n / per_sample,
// channels] and broadcast over each sample's per_sample / channels positions
// (a = [N, H, W, C], b = [N, C]); with per_sample == 0, b has a's shape.
void add_forward(const float* a, const float* b, float* y, int64_t n, int64_t channels,
                 int64_t per_sample, float scale, cudaStream_t stream);
// da (+)= scale * dy; db (+)= scale * dy, summed over positions when broadcast.
// Either gradient may be null (not wanted).
void add_backward(const float* dy, float* da, float* db, int64_t n, int64_t channels,
                  int64_t per_sample, float scale, bool accumulate_a, bool accumulate_b,
                  cudaStream_t stream);
// The same with scratch for the broadcast db reduction: with a workspace of at
// least add_backward_workspace_bytes(n, channels, per_sample) bytes (16-byte
// aligned for the float4 path), the reduction over positions is split across
// blocks, so a batch of 1 with many positions fills the GPU; with a null
// workspace (or the overload above), one block per (sample, 16-channel tile)
// reduces all of a sample's positions. Both are deterministic (a fixed
// partition from the shape, no atomics); they may differ from each other in
// the last bits (different summation orders). Throws if a non-null workspace
// is smaller than asked for.
size_t add_backward_workspace_bytes(int64_t n, int64_t channels, int64_t per_sample);
void add_backward(const float* dy, float* da, float* db, int64_t n, int64_t channels,
                  int64_t per_sample, float scale, bool accumulate_a, bool accumulate_b,
                  void* workspace, size_t workspace_bytes, cudaStream_t stream);

// Nearest-neighbour upsampling by 2 of [n, h, w, c] into [n, 2h, 2w, c], and its
// adjoint (each input pixel gathers its four outputs).
void upsample2x_forward(const float* x, float* y, int64_t n, int64_t h, int64_t w, int64_t c,
                        cudaStream_t stream);
void upsample2x_backward(const float* dy, float* dx, int64_t n, int64_t h, int64_t w, int64_t c,
                         bool accumulate, cudaStream_t stream);

// Channel concat, one input at a time: y[r, offset + j] = x[r, j] for rows r
// and j < x_channels, y having y_channels per row. Its adjoint (the split):
// dx[r, j] (+)= dy[r, offset + j].
void concat_channels_forward(const float* x, float* y, int64_t rows, int64_t x_channels,
                             int64_t y_channels, int64_t offset, cudaStream_t stream);
void concat_channels_backward(const float* dy, float* dx, int64_t rows, int64_t x_channels,
                              int64_t y_channels, int64_t offset, bool accumulate,
                              cudaStream_t stream);

// diffusers' sinusoidal timestep embedding of t[n] (read from device memory,
// so a captured graph picks up each step's timestep) into y[n, dim], in the
// CPU backend's order of float operations (engine/cpu/timestep_embedding.cpp).
void timestep_embedding_forward(const float* t, float* y, int64_t n, int64_t dim,
                                bool flip_sin_to_cos, float freq_shift, float max_period,
                                float scale, cudaStream_t stream);

}  // namespace ddpm::kernels
