// conv2d.cuh's entry points: shape validation, the batch-0 no-op and the
// dispatch to an implementation (conv2d_simt.cu, conv2d_tensor_core.cu,
// conv2d_cudnn.cu).
#include <stdexcept>
#include <string>

#include "kernels/conv2d.cuh"
#include "kernels/conv2d_internal.cuh"

namespace ddpm::kernels {

namespace {

[[noreturn]] void bad_shape(const std::string& what) {
  throw std::invalid_argument("conv2d: " + what);
}

[[noreturn]] void cudnn_unavailable() {
  std::string reason;
  conv_impl_available(ConvImpl::cudnn, &reason);
  throw std::invalid_argument("conv2d: --conv-impl cudnn is not available: " + reason);
}

void check_range(const char* name, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi)
    bad_shape(std::string(name) + " is " + std::to_string(v) + ", expected " + std::to_string(lo) +
              ".." + std::to_string(hi));
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
  constexpr int64_t kMaxExtent = int64_t(1) << 30;
  check_range("batch", s.batch, 0, kMaxExtent);
  check_range("in_h", s.in_h, 1, kMaxExtent);
  check_range("in_w", s.in_w, 1, kMaxExtent);
  check_range("in_channels", s.in_channels, 1, kMaxExtent);
  check_range("out_channels", s.out_channels, 1, kMaxExtent);
  check_range("kernel_h", s.kernel_h, 1, 7);
  check_range("kernel_w", s.kernel_w, 1, 7);
  check_range("stride", s.stride, 1, 4);
  check_range("pad_top", s.pad_top, 0, s.kernel_h - 1);
  check_range("pad_bottom", s.pad_bottom, 0, s.kernel_h - 1);
  check_range("pad_left", s.pad_left, 0, s.kernel_w - 1);
  check_range("pad_right", s.pad_right, 0, s.kernel_w - 1);
  if (s.in_h + s.pad_top + s.pad_bottom < s.kernel_h ||
      s.in_w + s.pad_left + s.pad_right < s.kernel_w)
    bad_shape("the padded input " + std::to_string(s.in_h) + "x" + std::to_string(s.in_w) +
              " is smaller than the " + std::to_string(s.kernel_h) + "x" +
              std::to_string(s.kernel_w) + " kernel");
  constexpr int64_t kMaxElements = (int64_t(1) << 31) - 1;
  const int64_t x = s.in_pixels() * s.in_channels;
  const int64_t y = s.out_pixels() * s.out_channels;
  const int64_t w = s.out_channels * s.gemm_k();
  if (x > kMaxElements || y > kMaxElements || w > kMaxElements)
    bad_shape("a tensor has 2^31 elements or more (x " + std::to_string(x) + ", y " +
              std::to_string(y) + ", w " + std::to_string(w) + ")");
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
