// cuDNN as conv2d.cuh's reference implementation (nvcc library build only,
// DDPM_WITH_CUDNN): the oracle of the GPU tests and the benchmark's baseline.
// The detail::conv2d_cudnn_* functions of conv2d_internal.cuh, through
// cuDNN 9's legacy convolution API in fp32.
//
//   - libcudnn.so.9 is opened with dlopen at first use (cudnn_api.h, shared
//     with the bf16 baseline), never linked. Unavailable (with
//     the reason) when it cannot be loaded, has no device, or cannot create a
//     handle or load its convolution sub-library.
//   - Layouts map directly: x and y are CUDNN_TENSOR_NHWC tensors (dims given
//     as n, c, h, w), the OHWI weights a CUDNN_TENSOR_NHWC filter (KRSC),
//     CUDNN_CROSS_CORRELATION (no kernel flip, as PyTorch), compute fp32,
//     math type CUDNN_FMA_MATH: no TF32 tensor cores.
//   - Algorithms: per (device, shape), the first of the heuristic's list
//     (cudnnGet*Algorithm_v7) that cuDNN supports here (status success, a
//     workspace size it will state for our FMA-math descriptor), at most
//     kMaxAlgorithmWorkspace, that sums products directly (GEMM-like or
//     direct, not FFT or Winograd: an oracle with fp32 summation's error
//     bound), preferring entries not asking for tensor-op math; failing
//     those, the first summing algorithm cuDNN supports. Chosen once and
//     cached; the workspace is the largest of the three operations'
//     choices, so one conv2d_workspace_bytes serves all three.
//   - Asymmetric padding (cuDNN pads symmetrically): x is copied into a
//     zero-bordered [N, H + pt + pb, W + pl + pr, C] buffer in the workspace
//     and cuDNN runs with pad 0, giving exactly our Ho, Wo and windows. The
//     backward-data computes into such a padded dx buffer (beta 0), and a crop
//     kernel writes (or adds) its interior to dx. The backward-filter reads
//     the padded x. Symmetric pads go to cuDNN as they are.
//   - Forward epilogue: the residual is copied into y first (skipped when it
//     aliases y) and the convolution adds into it (beta = 1); the bias is added
//     with cudnnAddTensor (a 1 x O x 1 x 1 tensor broadcast over y).
//   - Backward-data accumulate: beta = 1. Backward-filter always adds (beta =
//     1); db += cudnnConvolutionBackwardBias(dy), also beta = 1, so the bias
//     gradient does not share code with our own kernels' (reduce.cuh).
//   - One handle per host thread and device, cudnnSetStream at every call;
//     handles live until the process ends (destroying them from thread-exit or
//     static destructors could run after the CUDA runtime shut down).
// Workspace layout: [padded x or dx (asymmetric pads only), 256-aligned]
// [cuDNN's workspace for the operation's algorithm].
#include <algorithm>
#include <array>
#include <iterator>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/check.cuh"
#include "kernels/conv2d_internal.cuh"
#include "kernels/cudnn_api.h"
#include "kernels/dynamic_library.h"
#include "kernels/emulation/launch.h"
#include "kernels/reduce.cuh"
#include "kernels/vector_io.cuh"

namespace ddpm::kernels::detail {

namespace {

// Algorithms asking for more scratch than this are passed over (FFT-style
// algorithms can ask for gigabytes at training batch sizes).
constexpr size_t kMaxAlgorithmWorkspace = size_t(512) << 20;

// What cuDNN sees of a shape: the input (zero-padded in the workspace when
// the pads are asymmetric) and its symmetric pads.
struct Geometry {
  bool explicit_pad = false;
  int64_t in_h = 0, in_w = 0;  // of the tensor cuDNN reads (padded or not)
  int pad_h = 0, pad_w = 0;    // cuDNN's (symmetric) padding
  size_t padded_bytes = 0;     // the padded x / dx buffer; 0 without one
};

Geometry geometry(const Conv2dShape& s) {
  Geometry g;
  g.explicit_pad = s.pad_top != s.pad_bottom || s.pad_left != s.pad_right;
  if (g.explicit_pad) {
    g.in_h = s.in_h + s.pad_top + s.pad_bottom;
    g.in_w = s.in_w + s.pad_left + s.pad_right;
    g.padded_bytes = size_t(s.batch * g.in_h * g.in_w * s.in_channels) * sizeof(float);
  } else {
    g.in_h = s.in_h, g.in_w = s.in_w;
    g.pad_h = s.pad_top, g.pad_w = s.pad_left;
  }
  return g;
}

// The descriptors of one shape: x (as cuDNN sees it, also dx), w (also dw),
// y (also dy), the 1 x O x 1 x 1 bias, and the convolution.
struct Descriptors {
  TensorDescriptor x, y, bias;
  FilterDescriptor w;
  ConvolutionDescriptor conv;

  Descriptors(const Conv2dShape& s, const Geometry& g) {
    x.set(CUDNN_TENSOR_NHWC, s.batch, s.in_channels, g.in_h, g.in_w);
    y.set(CUDNN_TENSOR_NHWC, s.batch, s.out_channels, s.out_h(), s.out_w());
    bias.set(CUDNN_TENSOR_NCHW, 1, s.out_channels, 1, 1);
    cudnn_check(
        cudnn().set_filter_4d(w.get(), CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, int(s.out_channels),
                              int(s.in_channels), s.kernel_h, s.kernel_w),
        "cudnnSetFilter4dDescriptor");
    cudnn_check(cudnn().set_convolution_2d(conv.get(), g.pad_h, g.pad_w, s.stride, s.stride, 1, 1,
                                           CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                "cudnnSetConvolution2dDescriptor");
    cudnn_check(cudnn().set_math_type(conv.get(), CUDNN_FMA_MATH), "cudnnSetConvolutionMathType");
  }
};

// ---------------------------------------------------------------- algorithms

struct Algorithms {
  cudnnConvolutionFwdAlgo_t forward{};
  cudnnConvolutionBwdDataAlgo_t data{};
  cudnnConvolutionBwdFilterAlgo_t filter{};
  size_t forward_bytes = 0, data_bytes = 0, filter_bytes = 0;
  size_t max_bytes() const { return std::max(forward_bytes, std::max(data_bytes, filter_bytes)); }
};

// The algorithms that sum the products of each output directly (implicit or
// explicit GEMM, direct): the oracle's error is then fp32 summation's, the
// bound the tests derive. FFT and Winograd transform their operands and
// round differently; they are passed over.
constexpr cudnnConvolutionFwdAlgo_t kForwardSummingAlgorithms[] = {
    CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
    CUDNN_CONVOLUTION_FWD_ALGO_GEMM, CUDNN_CONVOLUTION_FWD_ALGO_DIRECT};
constexpr cudnnConvolutionBwdDataAlgo_t kDataSummingAlgorithms[] = {
    CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, CUDNN_CONVOLUTION_BWD_DATA_ALGO_0};
constexpr cudnnConvolutionBwdFilterAlgo_t kFilterSummingAlgorithms[] = {
    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0,
    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3};

// The first usable entry of the heuristic's list (see the header comment),
// among `summing` (in that order when the heuristic offers none);
// list(capacity, &returned, results) and workspace(algo, &bytes) call cuDNN.
template <class Perf, class Algo, size_t kCount, class List, class Workspace>
std::pair<Algo, size_t> first_usable(const char* op, int capacity, const Algo (&summing)[kCount],
                                     List list, Workspace workspace) {
  auto usable = [&](Algo algo, size_t* bytes) {
    if (std::find(std::begin(summing), std::end(summing), algo) == std::end(summing)) return false;
    // cuDNN states a size only for an algorithm it supports with these
    // descriptors, our FMA math type included.
    return workspace(algo, bytes) == CUDNN_STATUS_SUCCESS && *bytes <= kMaxAlgorithmWorkspace;
  };
  std::vector<Perf> perf(size_t(std::max(capacity, 1)));
  int returned = 0;
  cudnn_check(list(int(perf.size()), &returned, perf.data()), op);
  for (const bool tensor_op_entries : {false, true}) {  // entries meant for tensor ops last
    for (int i = 0; i < returned; ++i) {
      const Perf& p = perf[size_t(i)];
      const bool tensor_op =
          p.mathType == CUDNN_TENSOR_OP_MATH || p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
      size_t bytes = 0;
      if (p.status == CUDNN_STATUS_SUCCESS && tensor_op == tensor_op_entries &&
          usable(p.algo, &bytes))
        return {p.algo, bytes};
    }
  }
  for (const Algo algo : summing) {
    size_t bytes = 0;
    if (usable(algo, &bytes)) return {algo, bytes};
  }
  throw std::runtime_error(std::string("cuDNN offers no fp32 FMA-math summing algorithm for ") +
                           op + " of this shape within " +
                           std::to_string(kMaxAlgorithmWorkspace >> 20) + " MiB of workspace");
}

Algorithms choose_algorithms(const Conv2dShape& s, cudnnHandle_t h, const Descriptors& d) {
  int n = 0, c = 0, oh = 0, ow = 0;  // our output geometry must be cuDNN's
  cudnn_check(cudnn().forward_output_dim(d.conv.get(), d.x.get(), d.w.get(), &n, &c, &oh, &ow),
              "cudnnGetConvolution2dForwardOutputDim");
  if (n != s.batch || c != s.out_channels || oh != s.out_h() || ow != s.out_w())
    throw std::logic_error("conv2d cudnn: cuDNN's output " + std::to_string(oh) + "x" +
                           std::to_string(ow) + " differs from ours " + std::to_string(s.out_h()) +
                           "x" + std::to_string(s.out_w()));
  const CudnnApi& api = cudnn();
  Algorithms a;
  int count = 0;
  cudnn_check(api.forward_algorithm_count(h, &count),
              "cudnnGetConvolutionForwardAlgorithmMaxCount");
  std::tie(a.forward, a.forward_bytes) = first_usable<cudnnConvolutionFwdAlgoPerf_t>(
      "the forward", count, kForwardSummingAlgorithms,
      [&](int cap, int* got, cudnnConvolutionFwdAlgoPerf_t* r) {
        return api.forward_algorithms(h, d.x.get(), d.w.get(), d.conv.get(), d.y.get(), cap, got,
                                      r);
      },
      [&](cudnnConvolutionFwdAlgo_t algo, size_t* bytes) {
        return api.forward_workspace(h, d.x.get(), d.w.get(), d.conv.get(), d.y.get(), algo, bytes);
      });
  cudnn_check(api.data_algorithm_count(h, &count),
              "cudnnGetConvolutionBackwardDataAlgorithmMaxCount");
  std::tie(a.data, a.data_bytes) = first_usable<cudnnConvolutionBwdDataAlgoPerf_t>(
      "the backward-data", count, kDataSummingAlgorithms,
      [&](int cap, int* got, cudnnConvolutionBwdDataAlgoPerf_t* r) {
        return api.data_algorithms(h, d.w.get(), d.y.get(), d.conv.get(), d.x.get(), cap, got, r);
      },
      [&](cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
        return api.data_workspace(h, d.w.get(), d.y.get(), d.conv.get(), d.x.get(), algo, bytes);
      });
  cudnn_check(api.filter_algorithm_count(h, &count),
              "cudnnGetConvolutionBackwardFilterAlgorithmMaxCount");
  std::tie(a.filter, a.filter_bytes) = first_usable<cudnnConvolutionBwdFilterAlgoPerf_t>(
      "the backward-filter", count, kFilterSummingAlgorithms,
      [&](int cap, int* got, cudnnConvolutionBwdFilterAlgoPerf_t* r) {
        return api.filter_algorithms(h, d.x.get(), d.y.get(), d.conv.get(), d.w.get(), cap, got, r);
      },
      [&](cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
        return api.filter_workspace(h, d.x.get(), d.y.get(), d.conv.get(), d.w.get(), algo, bytes);
      });
  return a;
}

// The cached choice for (current device, shape); the heuristic runs once.
Algorithms algorithms(const Conv2dShape& s, cudnnHandle_t h, const Descriptors& d) {
  int device = 0;
  DDPM_CUDA_CHECK(cudaGetDevice(&device));
  using Key = std::array<int64_t, 13>;
  const Key key{device,         s.batch,    s.in_h,     s.in_w,   s.in_channels,
                s.out_channels, s.kernel_h, s.kernel_w, s.stride, s.pad_top,
                s.pad_bottom,   s.pad_left, s.pad_right};
  static std::mutex mutex;
  static std::map<Key, Algorithms> cache;
  {
    const std::lock_guard<std::mutex> lock(mutex);
    if (const auto it = cache.find(key); it != cache.end()) return it->second;
  }
  const Algorithms a = choose_algorithms(s, h, d);  // outside the lock: it takes a while
  const std::lock_guard<std::mutex> lock(mutex);
  return cache.emplace(key, a).first->second;  // a racing thread's equal choice may win
}

// ---------------------------------------------------------------- padding kernels

// x_pad[n, hp, wp, c] = x[n, hp - pt, wp - pl, c] inside, 0 in the border;
// units of V channels (V = 4: C % 4 == 0, both 16-byte aligned).
template <int V>
__global__ void pad_input_kernel(const float* __restrict__ x, float* __restrict__ x_pad,
                                 int64_t units, int64_t h, int64_t w, int64_t c_units, int64_t hp,
                                 int64_t wp, int pad_top, int pad_left) {
  for (int64_t u = grid_thread_index(); u < units; u += grid_thread_count()) {
    const int64_t cu = u % c_units, pixel = u / c_units;
    const int64_t col = pixel % wp - pad_left, row = pixel / wp % hp - pad_top,
                  n = pixel / (wp * hp);
    typename FloatVec<V>::type v{};
    if (row >= 0 && row < h && col >= 0 && col < w)
      v = load_vec<V>(x + ((n * h + row) * w + col) * c_units * V + cu * V);
    store_vec<V>(x_pad + u * V, v);
  }
}

// dx[n, h, w, c] (= or +=) dx_pad[n, h + pt, w + pl, c]; units of V channels.
template <int V>
__global__ void crop_gradient_kernel(const float* __restrict__ dx_pad, float* __restrict__ dx,
                                     int64_t units, int64_t h, int64_t w, int64_t c_units,
                                     int64_t hp, int64_t wp, int pad_top, int pad_left,
                                     bool accumulate) {
  for (int64_t u = grid_thread_index(); u < units; u += grid_thread_count()) {
    const int64_t cu = u % c_units, pixel = u / c_units;
    const int64_t col = pixel % w, row = pixel / w % h, n = pixel / (w * h);
    auto v = load_vec<V>(dx_pad + ((n * hp + row + pad_top) * wp + col + pad_left) * c_units * V +
                         cu * V);
    if (accumulate) v = vec_map([](float a, float b) { return a + b; }, load_vec<V>(dx + u * V), v);
    store_vec<V>(dx + u * V, v);
  }
}

constexpr int kCopyThreads = 256;

void pad_input(const float* x, float* x_pad, const Conv2dShape& s, const Geometry& g,
               cudaStream_t stream) {
  const int v = s.in_channels % 4 == 0 && all_aligned16(x, x_pad) ? 4 : 1;
  const int64_t c_units = s.in_channels / v, units = s.batch * g.in_h * g.in_w * c_units;
  const unsigned blocks = grid_stride_blocks(units, kCopyThreads);
  if (v == 4)
    DDPM_LAUNCH(pad_input_kernel<4>, blocks, kCopyThreads, 0, stream, x, x_pad, units, s.in_h,
                s.in_w, c_units, g.in_h, g.in_w, s.pad_top, s.pad_left);
  else
    DDPM_LAUNCH(pad_input_kernel<1>, blocks, kCopyThreads, 0, stream, x, x_pad, units, s.in_h,
                s.in_w, c_units, g.in_h, g.in_w, s.pad_top, s.pad_left);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void crop_gradient(const float* dx_pad, float* dx, const Conv2dShape& s, const Geometry& g,
                   bool accumulate, cudaStream_t stream) {
  const int v = s.in_channels % 4 == 0 && all_aligned16(dx_pad, dx) ? 4 : 1;
  const int64_t c_units = s.in_channels / v, units = s.batch * s.in_h * s.in_w * c_units;
  const unsigned blocks = grid_stride_blocks(units, kCopyThreads);
  if (v == 4)
    DDPM_LAUNCH(crop_gradient_kernel<4>, blocks, kCopyThreads, 0, stream, dx_pad, dx, units, s.in_h,
                s.in_w, c_units, g.in_h, g.in_w, s.pad_top, s.pad_left, accumulate);
  else
    DDPM_LAUNCH(crop_gradient_kernel<1>, blocks, kCopyThreads, 0, stream, dx_pad, dx, units, s.in_h,
                s.in_w, c_units, g.in_h, g.in_w, s.pad_top, s.pad_left, accumulate);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

// ---------------------------------------------------------------- one call

// Everything one operation needs: the thread's handle on the stream, the
// shape's descriptors and algorithms, and the workspace carved up.
struct Call {
  Geometry geo;
  Descriptors desc;
  cudnnHandle_t handle;
  Algorithms algo;
  float* padded;        // the padded x / dx buffer (explicit_pad only)
  void* cudnn_scratch;  // cuDNN's workspace

  Call(const Conv2dShape& s, void* workspace, cudaStream_t stream)
      : geo(geometry(s)),
        desc(s, geo),
        handle(cudnn_thread_handle()),
        algo(algorithms(s, handle, desc)) {
    cudnn_check(cudnn().set_stream(handle, stream), "cudnnSetStream");
    char* base = static_cast<char*>(workspace);
    padded = geo.explicit_pad ? reinterpret_cast<float*>(base) : nullptr;
    cudnn_scratch = base ? base + workspace_align(geo.padded_bytes) : nullptr;
  }
};

constexpr float kOne = 1.0f, kZero = 0.0f;

}  // namespace

bool conv2d_cudnn_available(std::string* reason) {
  if (!vendor_library_usable(cudnn().error, reason)) return false;
  try {
    cudnn_thread_handle();
  } catch (const std::exception& e) {
    if (reason) *reason = e.what();
    return false;
  }
  return true;
}

size_t conv2d_cudnn_workspace_bytes(const Conv2dShape& s) {
  const Geometry geo = geometry(s);
  const Descriptors desc(s, geo);
  const cudnnHandle_t handle = cudnn_thread_handle();
  return workspace_align(geo.padded_bytes) + algorithms(s, handle, desc).max_bytes();
}

void conv2d_cudnn_forward(const float* x, const float* w, const float* bias, const float* residual,
                          float* y, const Conv2dShape& s, void* workspace, cudaStream_t stream) {
  const Call call(s, workspace, stream);
  const float* input = x;
  if (call.geo.explicit_pad) {
    pad_input(x, call.padded, s, call.geo, stream);
    input = call.padded;
  }
  const float* beta = &kZero;
  if (residual) {
    if (residual != y)
      DDPM_CUDA_CHECK(cudaMemcpyAsync(y, residual,
                                      size_t(s.out_pixels() * s.out_channels) * sizeof(float),
                                      cudaMemcpyDeviceToDevice, stream));
    beta = &kOne;
  }
  cudnn_check(cudnn().forward(call.handle, &kOne, call.desc.x.get(), input, call.desc.w.get(), w,
                              call.desc.conv.get(), call.algo.forward, call.cudnn_scratch,
                              call.algo.forward_bytes, beta, call.desc.y.get(), y),
              "cudnnConvolutionForward");
  if (bias)
    cudnn_check(cudnn().add_tensor(call.handle, &kOne, call.desc.bias.get(), bias, &kOne,
                                   call.desc.y.get(), y),
                "cudnnAddTensor");
}

void conv2d_cudnn_backward_data(const float* dy, const float* w, float* dx, const Conv2dShape& s,
                                bool accumulate, void* workspace, cudaStream_t stream) {
  const Call call(s, workspace, stream);
  // Asymmetric pads: the gradient of the padded input, whose interior is dx's.
  float* out = call.geo.explicit_pad ? call.padded : dx;
  const float* beta = accumulate && !call.geo.explicit_pad ? &kOne : &kZero;
  cudnn_check(cudnn().backward_data(call.handle, &kOne, call.desc.w.get(), w, call.desc.y.get(), dy,
                                    call.desc.conv.get(), call.algo.data, call.cudnn_scratch,
                                    call.algo.data_bytes, beta, call.desc.x.get(), out),
              "cudnnConvolutionBackwardData");
  if (call.geo.explicit_pad) crop_gradient(call.padded, dx, s, call.geo, accumulate, stream);
}

void conv2d_cudnn_backward_filter(const float* x, const float* dy, float* dw, float* db,
                                  const Conv2dShape& s, void* workspace, cudaStream_t stream) {
  const Call call(s, workspace, stream);
  const float* input = x;
  if (call.geo.explicit_pad) {
    pad_input(x, call.padded, s, call.geo, stream);
    input = call.padded;
  }
  cudnn_check(
      cudnn().backward_filter(call.handle, &kOne, call.desc.x.get(), input, call.desc.y.get(), dy,
                              call.desc.conv.get(), call.algo.filter, call.cudnn_scratch,
                              call.algo.filter_bytes, &kOne, call.desc.w.get(), dw),
      "cudnnConvolutionBackwardFilter");
  if (db)
    cudnn_check(cudnn().backward_bias(call.handle, &kOne, call.desc.y.get(), dy, &kOne,
                                      call.desc.bias.get(), db),
                "cudnnConvolutionBackwardBias");
}

}  // namespace ddpm::kernels::detail
