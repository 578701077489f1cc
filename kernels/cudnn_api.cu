// The cuDNN loader of cudnn_api.h: the symbols resolved once per process,
// errors turned into exceptions, one handle per host thread and device.
// Moved here from conv2d_cudnn.cu unchanged when the bf16 baseline
// (conv2d_cudnn_bf16.cu) came to share it.
#include "kernels/cudnn_api.h"

#include <stdexcept>
#include <string>
#include <unordered_map>

#include "kernels/check.cuh"
#include "kernels/dynamic_library.h"

namespace ddpm::kernels::detail {

const CudnnApi& cudnn() {
  static const CudnnApi api = [] {
    CudnnApi a;
    static const DynamicLibrary lib{"libcudnn.so.9"};
    if (!lib.loaded()) {
      a.error = "cannot load libcudnn.so.9 (" + lib.error() + ")";
      return a;
    }
    try {
#define DDPM_CUDNN_SYMBOL(field, name) a.field = lib.symbol<decltype(a.field)>(#name)
      DDPM_CUDNN_SYMBOL(get_version, cudnnGetVersion);
      DDPM_CUDNN_SYMBOL(error_string, cudnnGetErrorString);
      DDPM_CUDNN_SYMBOL(last_error_string, cudnnGetLastErrorString);
      DDPM_CUDNN_SYMBOL(create, cudnnCreate);
      DDPM_CUDNN_SYMBOL(set_stream, cudnnSetStream);
      DDPM_CUDNN_SYMBOL(create_tensor, cudnnCreateTensorDescriptor);
      DDPM_CUDNN_SYMBOL(destroy_tensor, cudnnDestroyTensorDescriptor);
      DDPM_CUDNN_SYMBOL(set_tensor_4d, cudnnSetTensor4dDescriptor);
      DDPM_CUDNN_SYMBOL(create_filter, cudnnCreateFilterDescriptor);
      DDPM_CUDNN_SYMBOL(destroy_filter, cudnnDestroyFilterDescriptor);
      DDPM_CUDNN_SYMBOL(set_filter_4d, cudnnSetFilter4dDescriptor);
      DDPM_CUDNN_SYMBOL(create_convolution, cudnnCreateConvolutionDescriptor);
      DDPM_CUDNN_SYMBOL(destroy_convolution, cudnnDestroyConvolutionDescriptor);
      DDPM_CUDNN_SYMBOL(set_convolution_2d, cudnnSetConvolution2dDescriptor);
      DDPM_CUDNN_SYMBOL(set_math_type, cudnnSetConvolutionMathType);
      DDPM_CUDNN_SYMBOL(forward_output_dim, cudnnGetConvolution2dForwardOutputDim);
      DDPM_CUDNN_SYMBOL(forward_algorithm_count, cudnnGetConvolutionForwardAlgorithmMaxCount);
      DDPM_CUDNN_SYMBOL(forward_algorithms, cudnnGetConvolutionForwardAlgorithm_v7);
      DDPM_CUDNN_SYMBOL(forward_workspace, cudnnGetConvolutionForwardWorkspaceSize);
      DDPM_CUDNN_SYMBOL(forward, cudnnConvolutionForward);
      DDPM_CUDNN_SYMBOL(data_algorithm_count, cudnnGetConvolutionBackwardDataAlgorithmMaxCount);
      DDPM_CUDNN_SYMBOL(data_algorithms, cudnnGetConvolutionBackwardDataAlgorithm_v7);
      DDPM_CUDNN_SYMBOL(data_workspace, cudnnGetConvolutionBackwardDataWorkspaceSize);
      DDPM_CUDNN_SYMBOL(backward_data, cudnnConvolutionBackwardData);
      DDPM_CUDNN_SYMBOL(filter_algorithm_count, cudnnGetConvolutionBackwardFilterAlgorithmMaxCount);
      DDPM_CUDNN_SYMBOL(filter_algorithms, cudnnGetConvolutionBackwardFilterAlgorithm_v7);
      DDPM_CUDNN_SYMBOL(filter_workspace, cudnnGetConvolutionBackwardFilterWorkspaceSize);
      DDPM_CUDNN_SYMBOL(backward_filter, cudnnConvolutionBackwardFilter);
      DDPM_CUDNN_SYMBOL(add_tensor, cudnnAddTensor);
      DDPM_CUDNN_SYMBOL(backward_bias, cudnnConvolutionBackwardBias);
#undef DDPM_CUDNN_SYMBOL
    } catch (const std::exception& e) {
      a.error = e.what();
      return a;
    }
    if (const size_t version = a.get_version(); version / 10000 != 9)
      a.error = "libcudnn.so.9 reports version " + std::to_string(version) + ", expected 9.x";
    return a;
  }();
  return api;
}

void cudnn_check(cudnnStatus_t status, const char* call) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  std::string detail(512, '\0');
  cudnn().last_error_string(detail.data(), detail.size());
  if (const size_t end = detail.find('\0'); end != std::string::npos) detail.resize(end);
  throw std::runtime_error(std::string("cuDNN ") + call +
                           " failed: " + cudnn().error_string(status) +
                           (detail.empty() ? "" : " (" + detail + ")"));
}

// Creating a handle also loads the convolution sub-library (a query of it),
// so a missing libcudnn_cnn shows here rather than at the first convolution.
cudnnHandle_t cudnn_thread_handle() {
  int device = 0;
  DDPM_CUDA_CHECK(cudaGetDevice(&device));
  thread_local std::unordered_map<int, cudnnHandle_t> handles;
  if (const auto it = handles.find(device); it != handles.end()) return it->second;
  cudnnHandle_t handle = nullptr;
  cudnn_check(cudnn().create(&handle), "cudnnCreate");
  int count = 0;
  cudnn_check(cudnn().forward_algorithm_count(handle, &count),
              "cudnnGetConvolutionForwardAlgorithmMaxCount");
  handles.emplace(device, handle);
  return handle;
}

}  // namespace ddpm::kernels::detail
