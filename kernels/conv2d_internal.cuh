// Each conv2d implementation's launchers, behind kernels/conv2d.cuh
// (conv2d.cu validates the shape, handles batch 0 and dispatches). The
// launchers here may assume validate(s) passed and batch >= 1; their workspace
// is what their *_workspace_bytes returned. The bias gradient and split-K
// stage of every backward-filter are kernels/reduce.cuh.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/conv2d.cuh"

namespace ddpm::kernels::detail {

// ---------------------------------------------------------------- simt (fp32)
size_t conv2d_simt_workspace_bytes(const Conv2dShape& s);
void conv2d_simt_forward(const float* x, const float* w, const float* bias, const float* residual,
                         float* y, const Conv2dShape& s, void* workspace, cudaStream_t stream);
void conv2d_simt_backward_data(const float* dy, const float* w, float* dx, const Conv2dShape& s,
                               bool accumulate, void* workspace, cudaStream_t stream);
void conv2d_simt_backward_filter(const float* x, const float* dy, float* dw, float* db,
                                 const Conv2dShape& s, void* workspace, cudaStream_t stream);

// ------------------------------------------------- tensor_core (bf16 x bf16 + fp32)
size_t conv2d_tensor_core_workspace_bytes(const Conv2dShape& s);
void conv2d_tensor_core_forward(const float* x, const float* w, const float* bias,
                                const float* residual, float* y, const Conv2dShape& s,
                                void* workspace, cudaStream_t stream);
void conv2d_tensor_core_backward_data(const float* dy, const float* w, float* dx,
                                      const Conv2dShape& s, bool accumulate, void* workspace,
                                      cudaStream_t stream);
void conv2d_tensor_core_backward_filter(const float* x, const float* dy, float* dw, float* db,
                                        const Conv2dShape& s, void* workspace, cudaStream_t stream);

// ---------------------------------------------------------------- test hooks
// Emulated tests' problems are too small for the shape heuristics to pick the
// big tiles or a split, so the tests force them, to reach every path. Set
// before *_workspace_bytes and the launch, reset after; not thread-safe.
// simt: block tile 0 large 128x128, 1 medium 64x64, 2 narrow_n 128x16,
// 3 narrow_m 16x128, -1 the heuristic; backward-filter splits, 0 the heuristic.
int& conv2d_simt_forced_tile();
int& conv2d_simt_forced_splits();
// tensor_core: 64 or 128 rows a tile, 0 the heuristic.
int& conv2d_tensor_core_forced_tile();

// ------------------------------------------------------------- cudnn (oracle)
// Defined in conv2d_cudnn.cu, built into the nvcc library only (DDPM_WITH_CUDNN).
bool conv2d_cudnn_available(std::string* reason);
size_t conv2d_cudnn_workspace_bytes(const Conv2dShape& s);
void conv2d_cudnn_forward(const float* x, const float* w, const float* bias, const float* residual,
                          float* y, const Conv2dShape& s, void* workspace, cudaStream_t stream);
void conv2d_cudnn_backward_data(const float* dy, const float* w, float* dx, const Conv2dShape& s,
                                bool accumulate, void* workspace, cudaStream_t stream);
void conv2d_cudnn_backward_filter(const float* x, const float* dy, float* dw, float* db,
                                  const Conv2dShape& s, void* workspace, cudaStream_t stream);

}  // namespace ddpm::kernels::detail
