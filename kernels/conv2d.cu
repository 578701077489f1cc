// conv2d.cuh's entry points: shape validation, the batch-0 no-op and the
// dispatch to an implementation (conv2d_simt.cu, conv2d_tensor_core.cu,
// conv2d_cudnn.cu).
#include <stdexcept>
#include <string>

#include "kernels/conv2d.cuh"
#include "kernels/conv2d_internal.cuh"
#include "kernels/conv2d_shape.h"

namespace ddpm::kernels {

namespace {

[[noreturn]] void cudnn_unavailable() {
  std::string reason;
  conv_impl_available(ConvImpl::cudnn, &reason);
  throw std::invalid_argument("conv2d: --conv-impl cudnn is not available: " + reason);
}

}  // namespace

const char* conv_impl_name(ConvImpl impl) {
  switch (impl) {
    case ConvImpl::simt:
      return "simt";
    case ConvImpl::tensor_core:
      return "tensor_core";
    case ConvImpl::cudnn:
      return "cudnn";
  }
  return "?";
}

ConvImpl parse_conv_impl(std::string_view name) {
  for (ConvImpl impl : {ConvImpl::simt, ConvImpl::tensor_core, ConvImpl::cudnn})
    if (name == conv_impl_name(impl)) return impl;
  throw std::invalid_argument("unknown convolution implementation '" + std::string(name) +
                              "': expected simt, tensor_core or cudnn");
}

bool conv_impl_available(ConvImpl impl, std::string* reason) {
  if (impl != ConvImpl::cudnn) return true;
#if DDPM_WITH_CUDNN
  return detail::conv2d_cudnn_available(reason);
#else
  if (reason) *reason = "this build has no cuDNN (the CPU emulator, or built without it)";
  return false;
#endif
}

void validate(const Conv2dShape& s) {
  detail::check_conv2d_shape("conv2d", s);
}

size_t conv2d_workspace_bytes(const Conv2dShape& s, ConvImpl impl) {
  validate(s);
  if (s.batch == 0) return 0;
  switch (impl) {
    case ConvImpl::simt:
      return detail::conv2d_simt_workspace_bytes(s);
    case ConvImpl::tensor_core:
      return detail::conv2d_tensor_core_workspace_bytes(s);
    case ConvImpl::cudnn:
#if DDPM_WITH_CUDNN
      if (conv_impl_available(impl)) return detail::conv2d_cudnn_workspace_bytes(s);
#endif
      cudnn_unavailable();
  }
  return 0;
}

void conv2d_forward(const float* x, const float* w, const float* bias, const float* residual,
                    float* y, const Conv2dShape& s, ConvImpl impl, void* workspace,
                    cudaStream_t stream) {
  validate(s);
  if (s.batch == 0) return;
  switch (impl) {
    case ConvImpl::simt:
      return detail::conv2d_simt_forward(x, w, bias, residual, y, s, workspace, stream);
    case ConvImpl::tensor_core:
      return detail::conv2d_tensor_core_forward(x, w, bias, residual, y, s, workspace, stream);
    case ConvImpl::cudnn:
#if DDPM_WITH_CUDNN
      if (conv_impl_available(impl))
        return detail::conv2d_cudnn_forward(x, w, bias, residual, y, s, workspace, stream);
#endif
      cudnn_unavailable();
  }
}

void conv2d_backward_data(const float* dy, const float* w, float* dx, const Conv2dShape& s,
                          bool accumulate, ConvImpl impl, void* workspace, cudaStream_t stream) {
  validate(s);
  if (s.batch == 0) return;
  switch (impl) {
    case ConvImpl::simt:
      return detail::conv2d_simt_backward_data(dy, w, dx, s, accumulate, workspace, stream);
    case ConvImpl::tensor_core:
      return detail::conv2d_tensor_core_backward_data(dy, w, dx, s, accumulate, workspace, stream);
    case ConvImpl::cudnn:
#if DDPM_WITH_CUDNN
      if (conv_impl_available(impl))
        return detail::conv2d_cudnn_backward_data(dy, w, dx, s, accumulate, workspace, stream);
#endif
      cudnn_unavailable();
  }
}

void conv2d_backward_filter(const float* x, const float* dy, float* dw, float* db,
                            const Conv2dShape& s, ConvImpl impl, void* workspace,
                            cudaStream_t stream) {
  validate(s);
  if (s.batch == 0) return;
  switch (impl) {
    case ConvImpl::simt:
      return detail::conv2d_simt_backward_filter(x, dy, dw, db, s, workspace, stream);
    case ConvImpl::tensor_core:
      return detail::conv2d_tensor_core_backward_filter(x, dy, dw, db, s, workspace, stream);
    case ConvImpl::cudnn:
#if DDPM_WITH_CUDNN
      if (conv_impl_available(impl))
        return detail::conv2d_cudnn_backward_filter(x, dy, dw, db, s, workspace, stream);
#endif
      cudnn_unavailable();
  }
}

}  // namespace ddpm::kernels
