// CudaBackend: memory, the stream, the scratch workspace, and the dispatch of
// each node to its rule in ops_dense.cpp / ops_pointwise.cpp.
#include "engine/cuda/cuda_backend.h"

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "engine/cuda/cuda_ops.h"
#include "engine/cuda/nvtx_ranges.h"
#include "kernels/check.cuh"
#include "kernels/convert.cuh"
#include "kernels/reduce.cuh"

namespace ddpm {

namespace cuda {

float* begin_adding_grad(const GradTensor& g, cudaStream_t stream) {
  float* p = grad(g);
  if (p && !g.accumulate) DDPM_CUDA_CHECK(cudaMemsetAsync(p, 0, g.tensor.bytes(), stream));
  return p;
}

namespace {
__nv_bfloat16* as_bf16(const Tensor& t) {
  if (t.dtype != DType::bf16)
    throw std::logic_error(std::string("a bf16 rule was given a tensor of dtype ") +
                           dtype_name(t.dtype));
  return static_cast<__nv_bfloat16*>(t.data);
}
}  // namespace

const __nv_bfloat16* in_bf16(const Tensor& t) {
  return as_bf16(t);
}
__nv_bfloat16* out_bf16(const Tensor& t) {
  return as_bf16(t);
}
__nv_bfloat16* grad_bf16(const GradTensor& g) {
  return as_bf16(g.tensor);
}

bool no_upstream_gradient(const BackwardArgs& a, cudaStream_t stream) {
  if (a.grad_outputs[0].defined()) return false;
  for (const GradTensor& g : a.grad_inputs) begin_adding_grad(g, stream);
  return true;
}

}  // namespace cuda

namespace {

// Logs a CUDA error where throwing is not allowed (destructors, deallocate).
void log_cuda_error(cudaError_t e, const char* call) {
  if (e != cudaSuccess)
    std::fprintf(stderr, "cuda backend: %s failed: %s (%s)\n", call, cudaGetErrorName(e),
                 cudaGetErrorString(e));
}

}  // namespace

// The ops' view of the backend. Owns the stream (unless given one) and the
// scratch workspace, which grows to the largest request and never shrinks.
class CudaBackend::Env final : public cuda::OpEnv {
 public:
  explicit Env(const CudaBackendOptions& o) : conv_(o.conv), gemm_(o.gemm), stream_(o.stream) {
    if (!stream_) {
      DDPM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
      owns_stream_ = true;
    }
    // 1 as f32 (bytes 0-3) and as f64 (bytes 8-15): what set_to_one copies.
    struct Ones {
      float f32 = 1;
      double f64 = 1;
    };
    static_assert(offsetof(Ones, f64) == 8);
    const Ones ones;
    DDPM_CUDA_CHECK(cudaMalloc(&ones_, sizeof ones));
    DDPM_CUDA_CHECK(cudaMemcpy(ones_, &ones, sizeof ones, cudaMemcpyHostToDevice));
  }
  ~Env() override {
    log_cuda_error(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    if (ones_) log_cuda_error(cudaFree(ones_), "cudaFree (constants)");
    if (workspace_) log_cuda_error(cudaFree(workspace_), "cudaFree (workspace)");
    if (owns_stream_) log_cuda_error(cudaStreamDestroy(stream_), "cudaStreamDestroy");
  }
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;

  cudaStream_t stream() const override { return stream_; }
  kernels::ConvImpl conv_impl() const override { return conv_; }
  kernels::GemmImpl gemm_impl() const override { return gemm_; }

  void* workspace(size_t bytes) override {
    if (bytes == 0) return nullptr;
    reserve(bytes);
    return workspace_;
  }

  // Grows to at least `bytes` (by half again at least, so that a first step
  // of ever larger ops reallocates a few times, not once per op).
  void reserve(size_t bytes, bool exact = false) {
    if (bytes <= capacity_) return;
    const size_t grown =
        kernels::workspace_align(exact ? bytes : std::max(bytes, capacity_ + capacity_ / 2));
    // Kernels already queued may still read the old buffer.
    DDPM_CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (workspace_) DDPM_CUDA_CHECK(cudaFree(workspace_));
    workspace_ = nullptr;
    capacity_ = 0;
    DDPM_CUDA_CHECK(cudaMalloc(&workspace_, grown));
    capacity_ = grown;
  }
  size_t capacity() const { return capacity_; }
  // Device memory holding 1 in `dtype` (f32 or f64).
  const void* one(DType dtype) const {
    return static_cast<const char*>(ones_) + (dtype == DType::f64 ? 8 : 0);
  }

 private:
  kernels::ConvImpl conv_;
  kernels::GemmImpl gemm_;
  cudaStream_t stream_;
  bool owns_stream_ = false;
  void* workspace_ = nullptr;
  size_t capacity_ = 0;
  void* ones_ = nullptr;
};

CudaBackend::CudaBackend(const CudaBackendOptions& options) : options_(options) {
  std::string reason;
  if (!kernels::conv_impl_available(options.conv, &reason))
    throw std::invalid_argument(std::string("cuda backend: convolution implementation ") +
                                kernels::conv_impl_name(options.conv) +
                                " is not available: " + reason);
  if (!kernels::gemm_impl_available(options.gemm, &reason))
    throw std::invalid_argument(std::string("cuda backend: GEMM implementation ") +
                                kernels::gemm_impl_name(options.gemm) +
                                " is not available: " + reason);
  env_ = std::make_unique<Env>(options);
}

CudaBackend::~CudaBackend() = default;

cudaStream_t CudaBackend::stream() const {
  return env_->stream();
}

size_t CudaBackend::workspace_capacity() const {
  return env_->capacity();
}

// ---- memory -----------------------------------------------------------------------

void* CudaBackend::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();  // not sticky: the caller may free something and retry
    const std::string what = "cuda backend: cudaMalloc of " + std::to_string(bytes >> 20) +
                             " MiB failed: " + cudaGetErrorString(e);
    if (e == cudaErrorMemoryAllocation)
      throw OutOfMemoryError(what + " (" + std::to_string(available_memory() >> 20) +
                             " MiB free on the device)");
    throw std::runtime_error(what);
  }
  return p;
}

size_t CudaBackend::available_memory() const {
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) {
    cudaGetLastError();
    return SIZE_MAX;
  }
  return free;
}

void CudaBackend::deallocate(void* p) noexcept {
  if (!p) return;
  // Work queued on the stream may still use the memory.
  log_cuda_error(cudaStreamSynchronize(env_->stream()), "cudaStreamSynchronize");
  log_cuda_error(cudaFree(p), "cudaFree");
}

void CudaBackend::fill_zero(void* p, size_t bytes) {
  if (bytes) DDPM_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, env_->stream()));
}

// Synchronous on purpose: the caller's buffer may be pinned memory, from which
// an asynchronous copy would read after we return. These copies are few (inputs,
// the loss seed, checkpoints); the step's work stays on the stream.
void CudaBackend::copy_from_host(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  DDPM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, env_->stream()));
  DDPM_CUDA_CHECK(cudaStreamSynchronize(env_->stream()));
}

void CudaBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  DDPM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, env_->stream()));
  DDPM_CUDA_CHECK(cudaStreamSynchronize(env_->stream()));
}

void CudaBackend::synchronize() {
  DDPM_CUDA_CHECK(cudaStreamSynchronize(env_->stream()));
}

void CudaBackend::set_to_one(const Tensor& t) {
  if (t.numel() != 1 || t.device != Device::cuda ||
      (t.dtype != DType::f32 && t.dtype != DType::f64))
    throw std::invalid_argument("cuda backend: set_to_one needs one f32 or f64 element");
  DDPM_CUDA_CHECK(cudaMemcpyAsync(t.data, env_->one(t.dtype), dtype_size(t.dtype),
                                  cudaMemcpyDeviceToDevice, env_->stream()));
}

void CudaBackend::convert(const Tensor& src, const Tensor& dst) {
  if (src.numel() != dst.numel())
    throw std::invalid_argument("cuda backend: convert of " + std::to_string(src.numel()) +
                                " elements into " + std::to_string(dst.numel()));
  if (src.dtype == DType::f32 && dst.dtype == DType::bf16)
    kernels::convert_f32_to_bf16(static_cast<const float*>(src.data),
                                 static_cast<__nv_bfloat16*>(dst.data), src.numel(),
                                 env_->stream());
  else if (src.dtype == DType::bf16 && dst.dtype == DType::f32)
    kernels::convert_bf16_to_f32(static_cast<const __nv_bfloat16*>(src.data),
                                 static_cast<float*>(dst.data), src.numel(), env_->stream());
  else
    Backend::convert(src, dst);
}

// ---- ops --------------------------------------------------------------------------

namespace {

// Every tensor f32 or bf16 (its value's dtype: undefined ones carry it too),
// every defined one in device memory.
void check_tensor(const Tensor& t, const char* role, size_t slot) {
  if (t.dtype != DType::f32 && t.dtype != DType::bf16)
    throw std::invalid_argument(std::string(role) + " " + std::to_string(slot) + " has dtype " +
                                dtype_name(t.dtype) +
                                ": the CUDA backend runs f32 and bf16 tensors only");
  if (t.defined() && t.device != Device::cuda)
    throw std::invalid_argument(std::string(role) + " " + std::to_string(slot) + " is in " +
                                device_name(t.device) +
                                " memory: the CUDA backend needs its own allocations");
}

void check_tensors(std::span<const Tensor> ts, const char* role) {
  for (size_t i = 0; i < ts.size(); ++i) check_tensor(ts[i], role, i);
}

// Runs one rule; errors name the op and the node (invalid arguments stay so).
template <class Rule>
void run_rule(const char* direction, const Node& node, Rule&& rule) {
  const std::string where =
      std::string("cuda ") + direction + " of " + op_name(node.params) + " '" + node.name + "': ";
  try {
    rule();
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(where + e.what());
  } catch (const std::exception& e) {
    throw std::runtime_error(where + e.what());
  }
}

// A node runs its bf16 rule when its first input is bf16 (GraphBuilder gives
// its outputs that dtype).
bool runs_in_bf16(std::span<const Tensor> inputs) {
  return !inputs.empty() && inputs[0].dtype == DType::bf16;
}

}  // namespace

// Each op in an NVTX range named by its node (e.g. down_blocks.1.resnets.0.conv1),
// coloured by direction (engine/cuda/nvtx_ranges.h).
void CudaBackend::forward(const Node& node, const ForwardArgs& args) {
  const nvtx::Range range(node.name.c_str(), nvtx::Phase::forward);
  run_rule("forward", node, [&] {
    check_tensors(args.inputs, "input");
    check_tensors(args.outputs, "output");
    std::visit(
        [&](const auto& p) {
          if (runs_in_bf16(args.inputs))
            cuda::bf16::forward(p, args, *env_);
          else
            cuda::forward(p, args, *env_);
        },
        node.params);
  });
}

void CudaBackend::backward(const Node& node, const BackwardArgs& args) {
  const nvtx::Range range(node.name.c_str(), nvtx::Phase::backward);
  run_rule("backward", node, [&] {
    check_tensors(args.inputs, "input");
    check_tensors(args.outputs, "output");
    check_tensors(args.grad_outputs, "output gradient");
    for (size_t i = 0; i < args.grad_inputs.size(); ++i)
      check_tensor(args.grad_inputs[i].tensor, "input gradient", i);
    std::visit(
        [&](const auto& p) {
          if (runs_in_bf16(args.inputs))
            cuda::bf16::backward(p, args, *env_);
          else
            cuda::backward(p, args, *env_);
        },
        node.params);
  });
}

void CudaBackend::reserve_workspace(const Graph& graph, bool training) {
  if (graph.dtype != DType::f32)
    throw std::invalid_argument(
        std::string("cuda backend: the graph's dtype is ") + dtype_name(graph.dtype) +
        "; the CUDA backend runs f32 graphs (with f32 or bf16 activations)");
  size_t most = 0;
  std::vector<Shape> shapes;
  for (const Node& node : graph.nodes) {
    shapes.clear();
    for (ValueId v : node.inputs) shapes.push_back(graph.values[static_cast<size_t>(v)].shape);
    const bool bf16 =
        !node.inputs.empty() && graph.values[size_t(node.inputs[0])].dtype == DType::bf16;
    run_rule("workspace sizing", node, [&] {
      const size_t bytes = std::visit(
          [&](const auto& p) {
            return bf16 ? cuda::bf16::workspace_bytes(p, shapes, training, *env_)
                        : cuda::workspace_bytes(p, shapes, training, *env_);
          },
          node.params);
      most = std::max(most, bytes);
    });
  }
  env_->reserve(most, /*exact=*/true);
}

}  // namespace ddpm
