// The CUDA backend: device memory, one stream, and every op's forward and
// backward rule on the kernels of kernels/ (the rules: engine/cuda/ops_*.cpp).
// f32 only. Everything is enqueued on the backend's stream; copies to the
// host wait for it, so the executor's reads see finished results.
//
// Built as its own library (ddpm_cuda_backend) so that ddpm_engine never
// links the CUDA runtime; the emulated tests compile the same sources against
// the CPU emulator of the CUDA runtime instead.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>
#include <string>

#include "engine/backend.h"
#include "kernels/conv2d.cuh"
#include "kernels/gemm.cuh"

namespace ddpm {

struct CudaBackendOptions {
  // simt: exact fp32, the defaults (they match the CPU backend to fp32
  // rounding); tensor_core: bf16 operands; cudnn / cublas: the vendor
  // libraries (GPU builds only, loaded at first use).
  kernels::ConvImpl conv = kernels::ConvImpl::simt;
  kernels::GemmImpl gemm = kernels::GemmImpl::simt;
  // The stream every operation goes on; null: the backend creates (and owns)
  // a non-blocking one.
  cudaStream_t stream = nullptr;
};

class CudaBackend : public Backend {
 public:
  // Throws std::invalid_argument when a chosen implementation is not
  // available in this build, and std::runtime_error on CUDA errors (no device).
  explicit CudaBackend(const CudaBackendOptions& options = {});
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  Device device() const override { return Device::cuda; }
  std::string name() const override { return "cuda"; }

  // cudaMalloc'ed (256-byte aligned); deallocate waits for the stream first.
  void* allocate(size_t bytes) override;
  size_t available_memory() const override;
  void deallocate(void* p) noexcept override;
  // Enqueued on the stream.
  void fill_zero(void* p, size_t bytes) override;
  // Both return once the copy is complete (the host buffer may be reused or read).
  void copy_from_host(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;
  void synchronize() override;
  // A device-to-device copy from a constant the backend holds: no host
  // synchronisation (capturable).
  void set_to_one(const Tensor& t) override;
  // f32 <-> bf16 by a kernel on the stream; other pairs through the host.
  void convert(const Tensor& src, const Tensor& dst) override;

  // Enqueue one op. Errors (a non-f32 tensor, a host tensor, a shape a kernel
  // rejects, a CUDA error) name the op and the node.
  void forward(const Node& node, const ForwardArgs& args) override;
  void backward(const Node& node, const BackwardArgs& args) override;

  // Grows the scratch workspace to what every node of `graph` asks for in
  // `training` (forward + backward) or forward-only mode, so that running it
  // allocates nothing (as CUDA graph capture requires). Optional: the
  // workspace otherwise grows on the first use of each larger op.
  void reserve_workspace(const Graph& graph, bool training);
  size_t workspace_capacity() const;

  cudaStream_t stream() const;
  const CudaBackendOptions& options() const { return options_; }

 private:
  class Env;  // the ops' view of the backend: stream, implementations, scratch

  CudaBackendOptions options_;
  std::unique_ptr<Env> env_;
};

}  // namespace ddpm
