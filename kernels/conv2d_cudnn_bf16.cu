// cuDNN's bf16 convolution, the benchmark baseline of vendor_bf16.h
// (CudnnConvBf16). The fp32 oracle (conv2d_cudnn.cu) shares the loader
// (cudnn_api.h); this file differs from it where a baseline must:
//   - Tensors and filter CUDNN_DATA_BFLOAT16, convolution compute type
//     CUDNN_DATA_FLOAT (cuDNN's BFLOAT16 configuration: bf16 in memory, fp32
//     accumulation, as our kernels), math type CUDNN_TENSOR_OP_MATH while the
//     heuristic is asked, then each operation's chosen entry's own math type.
//   - Algorithms: the heuristic's (cudnnGet*Algorithm_v7) first entry that
//     cuDNN supports for these descriptors (status success, a workspace it
//     states, at most kMaxAlgorithmWorkspace): the fastest by cuDNN's own
//     estimate, with no exclusions (the oracle keeps only summing algorithms,
//     for its error bound; a baseline wants speed).
//   - Set up once per shape (descriptors, algorithms, the handle), so a call is
//     cudnnSetStream and the operation: host overhead near PyTorch's, which
//     matters for the 4x4 shapes whose kernels take microseconds.
//   - Asymmetric pads as the oracle does them: x copied into a zero-bordered
//     buffer in the workspace (pad_kernel below), dx computed into one and
//     its interior copied out (crop_kernel). Outputs overwritten (beta 0).
// Workspace layout: [padded x or dx (asymmetric pads only), 256-aligned]
// [cuDNN's scratch, the largest of the three operations'].
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/check.cuh"
#include "kernels/conv2d_bf16.cuh"
#include "kernels/cudnn_api.h"
#include "kernels/dynamic_library.h"
#include "kernels/emulation/launch.h"
#include "kernels/reduce.cuh"
#include "kernels/vector_io.cuh"
#include "kernels/vendor_bf16.h"

namespace ddpm::kernels {

namespace {

using detail::cudnn;
using detail::cudnn_check;

// As conv2d_cudnn.cu: more scratch than this is passed over.
constexpr size_t kMaxAlgorithmWorkspace = size_t(512) << 20;

// ---------------------------------------------------------------- padding kernels

// x_pad[n, hp, wp, :] = x[n, hp - pad_top, wp - pad_left, :] inside, 0 on the
// border, in units of one Unit (uint16_t: one bf16; uint4: eight, when the
// channel count is a multiple of 8 and both pointers are 16-byte aligned).
template <class Unit>
__global__ void pad_kernel(const Unit* __restrict__ x, Unit* __restrict__ x_pad, int64_t units,
                           int64_t h, int64_t w, int64_t c_units, int64_t hp, int64_t wp,
                           int pad_top, int pad_left) {
  for (int64_t u = grid_thread_index(); u < units; u += grid_thread_count()) {
    const int64_t cu = u % c_units, pixel = u / c_units;
    const int64_t col = pixel % wp - pad_left, row = pixel / wp % hp - pad_top,
                  n = pixel / (wp * hp);
    Unit v{};
    if (row >= 0 && row < h && col >= 0 && col < w) v = x[((n * h + row) * w + col) * c_units + cu];
    x_pad[u] = v;
  }
}

// dx[n, h, w, :] = dx_pad[n, h + pad_top, w + pad_left, :].
template <class Unit>
__global__ void crop_kernel(const Unit* __restrict__ dx_pad, Unit* __restrict__ dx, int64_t units,
                            int64_t h, int64_t w, int64_t c_units, int64_t hp, int64_t wp,
                            int pad_top, int pad_left) {
  for (int64_t u = grid_thread_index(); u < units; u += grid_thread_count()) {
    const int64_t cu = u % c_units, pixel = u / c_units;
    const int64_t col = pixel % w, row = pixel / w % h, n = pixel / (w * h);
    dx[u] = dx_pad[((n * hp + row + pad_top) * wp + col + pad_left) * c_units + cu];
  }
}

constexpr int kCopyThreads = 256;

// pad: x (from) into the zero-bordered [N, hp, wp, C] buffer (to); else the
// interior of such a buffer (from) into dx (to).
void pad_or_crop(const void* from, void* to, const Conv2dShape& s, int64_t hp, int64_t wp, bool pad,
                 cudaStream_t stream) {
  const bool wide = s.in_channels % 8 == 0 && all_aligned16(from, to);
  const int64_t c_units = wide ? s.in_channels / 8 : s.in_channels;
  const int64_t units = s.batch * (pad ? hp * wp : s.in_h * s.in_w) * c_units;
  const unsigned blocks = grid_stride_blocks(units, kCopyThreads);
  auto launch = [&](auto unit) {
    using Unit = decltype(unit);
    const auto* src = static_cast<const Unit*>(from);
    auto* dst = static_cast<Unit*>(to);
    if (pad)
      DDPM_LAUNCH(pad_kernel<Unit>, blocks, kCopyThreads, 0, stream, src, dst, units, s.in_h,
                  s.in_w, c_units, hp, wp, s.pad_top, s.pad_left);
    else
      DDPM_LAUNCH(crop_kernel<Unit>, blocks, kCopyThreads, 0, stream, src, dst, units, s.in_h,
                  s.in_w, c_units, hp, wp, s.pad_top, s.pad_left);
  };
  if (wide)
    launch(uint4{});
  else
    launch(uint16_t{});
  DDPM_CUDA_CHECK(cudaGetLastError());
}

// ---------------------------------------------------------------- algorithms

template <class Algo>
struct Choice {
  Algo algo{};
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t bytes = 0;
};

// The first entry of the heuristic's list that cuDNN supports here (see the
// header comment). list(capacity, &returned, results) and workspace(algo,
// &bytes) call cuDNN; the math type is set on `conv` before the workspace
// query, since the size (and the support) depends on it.
template <class Perf, class Algo, class List, class Workspace>
Choice<Algo> first_supported(const char* op, int capacity, cudnnConvolutionDescriptor_t conv,
                             List list, Workspace workspace) {
  std::vector<Perf> perf(size_t(std::max(capacity, 1)));
  int returned = 0;
  cudnn_check(list(int(perf.size()), &returned, perf.data()), op);
  for (int i = 0; i < returned; ++i) {
    const Perf& p = perf[size_t(i)];
    if (p.status != CUDNN_STATUS_SUCCESS) continue;
    cudnn_check(cudnn().set_math_type(conv, p.mathType), "cudnnSetConvolutionMathType");
    size_t bytes = 0;
    if (workspace(p.algo, &bytes) == CUDNN_STATUS_SUCCESS && bytes <= kMaxAlgorithmWorkspace)
      return {p.algo, p.mathType, bytes};
  }
  throw std::runtime_error(std::string("cuDNN offers no bf16 algorithm for ") + op +
                           " of this shape within " + std::to_string(kMaxAlgorithmWorkspace >> 20) +
                           " MiB of workspace");
}

const char* math_name(cudnnMathType_t m) {
  return m == CUDNN_DEFAULT_MATH ? "default math" : m == CUDNN_FMA_MATH ? "fma math" : "tensor op";
}

}  // namespace

bool cudnn_bf16_available(std::string* reason) {
  if (!vendor_library_usable(cudnn().error, reason)) return false;
  try {
    detail::cudnn_thread_handle();
  } catch (const std::exception& e) {
    if (reason) *reason = e.what();
    return false;
  }
  return true;
}

struct CudnnConvBf16::State {
  Conv2dShape s;
  bool explicit_pad = false;
  int64_t in_h = 0, in_w = 0;  // of the tensor cuDNN reads (padded or not)
  size_t padded_bytes = 0;     // the padded x / dx buffer; 0 without one
  detail::TensorDescriptor x, y;
  detail::FilterDescriptor w;
  detail::ConvolutionDescriptor conv;
  cudnnHandle_t handle = nullptr;
  Choice<cudnnConvolutionFwdAlgo_t> forward;
  Choice<cudnnConvolutionBwdDataAlgo_t> data;
  Choice<cudnnConvolutionBwdFilterAlgo_t> filter;

  // The workspace's parts: the padded buffer, cuDNN's scratch.
  char* padded(void* workspace) const { return static_cast<char*>(workspace); }
  void* scratch(void* workspace) const {
    return workspace ? static_cast<char*>(workspace) + workspace_align(padded_bytes) : nullptr;
  }
  // The operation's math type on the shared convolution descriptor, and the stream.
  void prepare(cudnnMathType_t math, cudaStream_t stream) const {
    cudnn_check(cudnn().set_math_type(conv.get(), math), "cudnnSetConvolutionMathType");
    cudnn_check(cudnn().set_stream(handle, stream), "cudnnSetStream");
  }
};

CudnnConvBf16::CudnnConvBf16(const Conv2dShape& s) {
  conv2d_bf16_validate(s);
  if (s.batch < 1) throw std::invalid_argument("CudnnConvBf16: batch is 0, expected >= 1");
  std::string why;
  // Before State: its descriptors call into the library.
  if (!cudnn_bf16_available(&why)) throw std::runtime_error("cuDNN unavailable: " + why);
  state_ = std::make_unique<State>();
  State& st = *state_;
  st.s = s;
  st.handle = detail::cudnn_thread_handle();
  int pad_h = s.pad_top, pad_w = s.pad_left;
  st.explicit_pad = s.pad_top != s.pad_bottom || s.pad_left != s.pad_right;
  st.in_h = s.in_h, st.in_w = s.in_w;
  if (st.explicit_pad) {
    st.in_h = s.in_h + s.pad_top + s.pad_bottom;
    st.in_w = s.in_w + s.pad_left + s.pad_right;
    st.padded_bytes = size_t(s.batch * st.in_h * st.in_w * s.in_channels) * sizeof(__nv_bfloat16);
    pad_h = pad_w = 0;
  }
  st.x.set(CUDNN_TENSOR_NHWC, s.batch, s.in_channels, st.in_h, st.in_w, CUDNN_DATA_BFLOAT16);
  st.y.set(CUDNN_TENSOR_NHWC, s.batch, s.out_channels, s.out_h(), s.out_w(), CUDNN_DATA_BFLOAT16);
  cudnn_check(
      cudnn().set_filter_4d(st.w.get(), CUDNN_DATA_BFLOAT16, CUDNN_TENSOR_NHWC, int(s.out_channels),
                            int(s.in_channels), s.kernel_h, s.kernel_w),
      "cudnnSetFilter4dDescriptor");
  cudnn_check(cudnn().set_convolution_2d(st.conv.get(), pad_h, pad_w, s.stride, s.stride, 1, 1,
                                         CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
              "cudnnSetConvolution2dDescriptor");
  cudnn_check(cudnn().set_math_type(st.conv.get(), CUDNN_TENSOR_OP_MATH),
              "cudnnSetConvolutionMathType");
  int n = 0, c = 0, oh = 0, ow = 0;  // our output geometry must be cuDNN's
  cudnn_check(cudnn().forward_output_dim(st.conv.get(), st.x.get(), st.w.get(), &n, &c, &oh, &ow),
              "cudnnGetConvolution2dForwardOutputDim");
  if (n != s.batch || c != s.out_channels || oh != s.out_h() || ow != s.out_w())
    throw std::logic_error("conv2d cudnn bf16: cuDNN's output " + std::to_string(oh) + "x" +
                           std::to_string(ow) + " differs from ours " + std::to_string(s.out_h()) +
                           "x" + std::to_string(s.out_w()));

  const auto& api = cudnn();
  const cudnnHandle_t h = st.handle;
  const auto xd = st.x.get(), yd = st.y.get();
  const auto wd = st.w.get();
  const auto cd = st.conv.get();
  int count = 0;
  cudnn_check(api.forward_algorithm_count(h, &count),
              "cudnnGetConvolutionForwardAlgorithmMaxCount");
  st.forward = first_supported<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(
      "the forward", count, cd,
      [&](int cap, int* got, cudnnConvolutionFwdAlgoPerf_t* r) {
        return api.forward_algorithms(h, xd, wd, cd, yd, cap, got, r);
      },
      [&](cudnnConvolutionFwdAlgo_t algo, size_t* bytes) {
        return api.forward_workspace(h, xd, wd, cd, yd, algo, bytes);
      });
  // Each query starts from tensor-op math, as the first did.
  cudnn_check(api.set_math_type(cd, CUDNN_TENSOR_OP_MATH), "cudnnSetConvolutionMathType");
  cudnn_check(api.data_algorithm_count(h, &count),
              "cudnnGetConvolutionBackwardDataAlgorithmMaxCount");
  st.data = first_supported<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(
      "the backward-data", count, cd,
      [&](int cap, int* got, cudnnConvolutionBwdDataAlgoPerf_t* r) {
        return api.data_algorithms(h, wd, yd, cd, xd, cap, got, r);
      },
      [&](cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
        return api.data_workspace(h, wd, yd, cd, xd, algo, bytes);
      });
  cudnn_check(api.set_math_type(cd, CUDNN_TENSOR_OP_MATH), "cudnnSetConvolutionMathType");
  cudnn_check(api.filter_algorithm_count(h, &count),
              "cudnnGetConvolutionBackwardFilterAlgorithmMaxCount");
  st.filter = first_supported<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(
      "the backward-filter", count, cd,
      [&](int cap, int* got, cudnnConvolutionBwdFilterAlgoPerf_t* r) {
        return api.filter_algorithms(h, xd, yd, cd, wd, cap, got, r);
      },
      [&](cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
        return api.filter_workspace(h, xd, yd, cd, wd, algo, bytes);
      });
}

CudnnConvBf16::~CudnnConvBf16() = default;

size_t CudnnConvBf16::workspace_bytes() const {
  const State& st = *state_;
  return workspace_align(st.padded_bytes) +
         std::max({st.forward.bytes, st.data.bytes, st.filter.bytes});
}

std::string CudnnConvBf16::algorithms() const {
  const State& st = *state_;
  return "fwd " + std::to_string(int(st.forward.algo)) + " (" + math_name(st.forward.math) +
         "), bwd_data " + std::to_string(int(st.data.algo)) + " (" + math_name(st.data.math) +
         "), bwd_filter " + std::to_string(int(st.filter.algo)) + " (" + math_name(st.filter.math) +
         ")";
}

namespace {
constexpr float kOne = 1.0f, kZero = 0.0f;  // alpha, beta: float in the BFLOAT16 configuration
}  // namespace

void CudnnConvBf16::forward(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y,
                            void* workspace, cudaStream_t stream) const {
  const State& st = *state_;
  st.prepare(st.forward.math, stream);
  const void* input = x;
  if (st.explicit_pad) {
    pad_or_crop(x, st.padded(workspace), st.s, st.in_h, st.in_w, true, stream);
    input = st.padded(workspace);
  }
  cudnn_check(cudnn().forward(st.handle, &kOne, st.x.get(), input, st.w.get(), w, st.conv.get(),
                              st.forward.algo, st.scratch(workspace), st.forward.bytes, &kZero,
                              st.y.get(), y),
              "cudnnConvolutionForward");
}

void CudnnConvBf16::backward_data(const __nv_bfloat16* dy, const __nv_bfloat16* w,
                                  __nv_bfloat16* dx, void* workspace, cudaStream_t stream) const {
  const State& st = *state_;
  st.prepare(st.data.math, stream);
  // Asymmetric pads: the gradient of the padded input, whose interior is dx.
  void* out = st.explicit_pad ? static_cast<void*>(st.padded(workspace)) : dx;
  cudnn_check(cudnn().backward_data(st.handle, &kOne, st.w.get(), w, st.y.get(), dy, st.conv.get(),
                                    st.data.algo, st.scratch(workspace), st.data.bytes, &kZero,
                                    st.x.get(), out),
              "cudnnConvolutionBackwardData");
  if (st.explicit_pad) pad_or_crop(out, dx, st.s, st.in_h, st.in_w, false, stream);
}

void CudnnConvBf16::backward_filter(const __nv_bfloat16* x, const __nv_bfloat16* dy,
                                    __nv_bfloat16* dw, void* workspace, cudaStream_t stream) const {
  const State& st = *state_;
  st.prepare(st.filter.math, stream);
  const void* input = x;
  if (st.explicit_pad) {
    pad_or_crop(x, st.padded(workspace), st.s, st.in_h, st.in_w, true, stream);
    input = st.padded(workspace);
  }
  cudnn_check(cudnn().backward_filter(st.handle, &kOne, st.x.get(), input, st.y.get(), dy,
                                      st.conv.get(), st.filter.algo, st.scratch(workspace),
                                      st.filter.bytes, &kZero, st.w.get(), dw),
              "cudnnConvolutionBackwardFilter");
}

}  // namespace ddpm::kernels
