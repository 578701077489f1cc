// cuDNN as our convolution code sees it (nvcc library build only, the vendor
// sources of kernels/CMakeLists.txt): libcudnn.so.9 opened with dlopen at
// first use (dynamic_library.h) and never linked, the functions we call as
// pointers, errors as exceptions naming the call, one handle per host thread
// and device, and RAII descriptors. Shared by the fp32 oracle
// (conv2d_cudnn.cu) and the bf16 benchmark baseline (conv2d_cudnn_bf16.cu);
// defined in cudnn_api.cu. Only types and enums come from cudnn.h.
#pragma once

#include <cudnn.h>

#include <cstdint>
#include <string>

namespace ddpm::kernels::detail {

// The functions we call, resolved once per process.
struct CudnnApi {
  decltype(&cudnnGetVersion) get_version = nullptr;
  decltype(&cudnnGetErrorString) error_string = nullptr;
  decltype(&cudnnGetLastErrorString) last_error_string = nullptr;
  decltype(&cudnnCreate) create = nullptr;
  decltype(&cudnnSetStream) set_stream = nullptr;
  decltype(&cudnnCreateTensorDescriptor) create_tensor = nullptr;
  decltype(&cudnnDestroyTensorDescriptor) destroy_tensor = nullptr;
  decltype(&cudnnSetTensor4dDescriptor) set_tensor_4d = nullptr;
  decltype(&cudnnCreateFilterDescriptor) create_filter = nullptr;
  decltype(&cudnnDestroyFilterDescriptor) destroy_filter = nullptr;
  decltype(&cudnnSetFilter4dDescriptor) set_filter_4d = nullptr;
  decltype(&cudnnCreateConvolutionDescriptor) create_convolution = nullptr;
  decltype(&cudnnDestroyConvolutionDescriptor) destroy_convolution = nullptr;
  decltype(&cudnnSetConvolution2dDescriptor) set_convolution_2d = nullptr;
  decltype(&cudnnSetConvolutionMathType) set_math_type = nullptr;
  decltype(&cudnnGetConvolution2dForwardOutputDim) forward_output_dim = nullptr;
  decltype(&cudnnGetConvolutionForwardAlgorithmMaxCount) forward_algorithm_count = nullptr;
  decltype(&cudnnGetConvolutionForwardAlgorithm_v7) forward_algorithms = nullptr;
  decltype(&cudnnGetConvolutionForwardWorkspaceSize) forward_workspace = nullptr;
  decltype(&cudnnConvolutionForward) forward = nullptr;
  decltype(&cudnnGetConvolutionBackwardDataAlgorithmMaxCount) data_algorithm_count = nullptr;
  decltype(&cudnnGetConvolutionBackwardDataAlgorithm_v7) data_algorithms = nullptr;
  decltype(&cudnnGetConvolutionBackwardDataWorkspaceSize) data_workspace = nullptr;
  decltype(&cudnnConvolutionBackwardData) backward_data = nullptr;
  decltype(&cudnnGetConvolutionBackwardFilterAlgorithmMaxCount) filter_algorithm_count = nullptr;
  decltype(&cudnnGetConvolutionBackwardFilterAlgorithm_v7) filter_algorithms = nullptr;
  decltype(&cudnnGetConvolutionBackwardFilterWorkspaceSize) filter_workspace = nullptr;
  decltype(&cudnnConvolutionBackwardFilter) backward_filter = nullptr;
  decltype(&cudnnAddTensor) add_tensor = nullptr;
  decltype(&cudnnConvolutionBackwardBias) backward_bias = nullptr;
  std::string error;  // why the library is unusable; empty when it loaded
};

// The process's copy, loaded at the first call; check `error` before use
// (vendor_library_usable in dynamic_library.h).
const CudnnApi& cudnn();

// Throws std::runtime_error naming `call`, cuDNN's status string and its last
// error message, unless status is CUDNN_STATUS_SUCCESS.
void cudnn_check(cudnnStatus_t status, const char* call);

// This thread's handle on the current device, created at first use (which
// also loads the convolution sub-library, so a missing libcudnn_cnn shows
// there). Handles live until the process ends: destroying them from
// thread-exit or static destructors could run after the CUDA runtime shut down.
cudnnHandle_t cudnn_thread_handle();

// ---------------------------------------------------------------- descriptors

class TensorDescriptor {
 public:
  TensorDescriptor() { cudnn_check(cudnn().create_tensor(&d_), "cudnnCreateTensorDescriptor"); }
  ~TensorDescriptor() { cudnn().destroy_tensor(d_); }
  TensorDescriptor(const TensorDescriptor&) = delete;
  TensorDescriptor& operator=(const TensorDescriptor&) = delete;
  // dims n, c, h, w of a tensor of `type` stored with the given layout.
  void set(cudnnTensorFormat_t format, int64_t n, int64_t c, int64_t h, int64_t w,
           cudnnDataType_t type = CUDNN_DATA_FLOAT) {
    cudnn_check(cudnn().set_tensor_4d(d_, format, type, int(n), int(c), int(h), int(w)),
                "cudnnSetTensor4dDescriptor");
  }
  cudnnTensorDescriptor_t get() const { return d_; }

 private:
  cudnnTensorDescriptor_t d_ = nullptr;
};

class FilterDescriptor {
 public:
  FilterDescriptor() { cudnn_check(cudnn().create_filter(&d_), "cudnnCreateFilterDescriptor"); }
  ~FilterDescriptor() { cudnn().destroy_filter(d_); }
  FilterDescriptor(const FilterDescriptor&) = delete;
  FilterDescriptor& operator=(const FilterDescriptor&) = delete;
  cudnnFilterDescriptor_t get() const { return d_; }

 private:
  cudnnFilterDescriptor_t d_ = nullptr;
};

class ConvolutionDescriptor {
 public:
  ConvolutionDescriptor() {
    cudnn_check(cudnn().create_convolution(&d_), "cudnnCreateConvolutionDescriptor");
  }
  ~ConvolutionDescriptor() { cudnn().destroy_convolution(d_); }
  ConvolutionDescriptor(const ConvolutionDescriptor&) = delete;
  ConvolutionDescriptor& operator=(const ConvolutionDescriptor&) = delete;
  cudnnConvolutionDescriptor_t get() const { return d_; }

 private:
  cudnnConvolutionDescriptor_t d_ = nullptr;
};

}  // namespace ddpm::kernels::detail
