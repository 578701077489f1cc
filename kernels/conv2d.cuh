// 2-D convolution of NHWC activations with OHWI weights (the layouts of the
// CPU backend's conv2d op, engine/ops/conv2d.h), as implicit GEMMs:
//
//   forward          y[P, O]      = A[P, K] * W^T   A = im2col(x) gathered on the fly
//   backward-data    dx[Q, C]     = dY~[Q, K'] * W'  (dy gathered through the
//                                                    transposed geometry, K' = R*S*O)
//   backward-filter  dW[O, K]     = dY^T[O, P] * A[P, K]   (split over P)
//
// with P = N*Ho*Wo output pixels, Q = N*H*W input pixels, K = R*S*C (c fastest,
// which is OHWI's row of a filter). Three implementations share this contract:
//   simt         fp32 FMA, tiled through shared memory with register blocking;
//                the exact-fp32 reference among our kernels.
//   tensor_core  bf16 operands (each fp32 input rounded to nearest-even when it
//                is staged to shared memory), fp32 accumulation, mma.sync
//                m16n8k16 on sm_80+; a portable warp-shuffle mma with the same
//                fragment layout elsewhere (and under the CPU emulator).
//   cudnn        cuDNN's legacy convolution API in fp32 with FMA math (no
//                TF32): the oracle of the GPU tests and the benchmark's
//                baseline. Loaded with dlopen at first use; unavailable in
//                emulated builds and where libcudnn.so.9 cannot be loaded.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ddpm::kernels {

struct Conv2dShape {
  int64_t batch = 0;                            // N
  int64_t in_h = 0, in_w = 0, in_channels = 0;  // H, W, C
  int64_t out_channels = 0;                     // O
  int kernel_h = 3, kernel_w = 3;               // R, S
  int stride = 1;
  int pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;

  int64_t out_h() const { return (in_h + pad_top + pad_bottom - kernel_h) / stride + 1; }
  int64_t out_w() const { return (in_w + pad_left + pad_right - kernel_w) / stride + 1; }
  int64_t gemm_k() const { return int64_t(kernel_h) * kernel_w * in_channels; }  // K
  int64_t out_pixels() const { return batch * out_h() * out_w(); }               // P
  int64_t in_pixels() const { return batch * in_h * in_w; }                      // Q
  // Multiply-adds of one forward (each backward has the same count).
  int64_t macs() const { return out_pixels() * out_channels * gemm_k(); }
};

enum class ConvImpl { simt, tensor_core, cudnn };

const char* conv_impl_name(ConvImpl impl);  // "simt", "tensor_core", "cudnn"
// Parses a name of conv_impl_name; std::invalid_argument naming the choices.
ConvImpl parse_conv_impl(std::string_view name);
// False for cudnn in emulated builds or when libcudnn cannot be loaded
// (reason, when given, says why); true otherwise.
bool conv_impl_available(ConvImpl impl, std::string* reason = nullptr);

// Limits, checked by every launcher (std::invalid_argument naming the field):
// batch >= 0 (0 is a no-op), H, W, C, O >= 1, 1 <= R, S <= 7, stride 1..4,
// 0 <= pads < kernel size, an output of at least 1x1, every tensor (x, y, w)
// under 2^31 elements. Pointers need only 4-byte alignment; kernels take
// 128-bit accesses where alignment and channel counts allow.
void validate(const Conv2dShape& s);

// Scratch for any of the three operations of this shape and implementation,
// in bytes (256-byte aligned start, as cudaMalloc gives); no initialisation
// needed, dead after the call.
size_t conv2d_workspace_bytes(const Conv2dShape& s, ConvImpl impl);

// y = conv(x, w) + bias + residual. bias [O] and residual [N, Ho, Wo, O] may
// be null; residual may alias y (the skip connection added in place).
void conv2d_forward(const float* x, const float* w, const float* bias, const float* residual,
                    float* y, const Conv2dShape& s, ConvImpl impl, void* workspace,
                    cudaStream_t stream);

// dx (= or +=) dL/dx from dy [N, Ho, Wo, O] and w.
void conv2d_backward_data(const float* dy, const float* w, float* dx, const Conv2dShape& s,
                          bool accumulate, ConvImpl impl, void* workspace, cudaStream_t stream);

// dw += dL/dw [O, R, S, C] and, when db is not null, db += dL/db [O] (the sum
// of dy over pixels). Always adding: the flat gradient buffer is zeroed once a
// step. Deterministic for a shape and implementation (fixed split, no atomics)
// except cudnn, whose algorithm choice is cuDNN's.
void conv2d_backward_filter(const float* x, const float* dy, float* dw, float* db,
                            const Conv2dShape& s, ConvImpl impl, void* workspace,
                            cudaStream_t stream);

}  // namespace ddpm::kernels
