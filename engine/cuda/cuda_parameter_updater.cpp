#include "engine/cuda/cuda_parameter_updater.h"

#include <stdexcept>
#include <string>

#include "engine/cuda/cuda_backend.h"
#include "kernels/check.cuh"
#include "kernels/optimizer.cuh"

namespace ddpm {

namespace {

kernels::AdamWEmaConfig kernel_config(const OptimizerSettings& s) {
  if (s.warmup_steps < 0 || s.warmup_steps > INT32_MAX)
    throw std::invalid_argument("cuda parameter updater: warmup_steps " +
                                std::to_string(s.warmup_steps) + " out of range");
  kernels::AdamWEmaConfig c;
  c.lr = s.adam.lr;
  c.beta1 = s.adam.beta1;
  c.beta2 = s.adam.beta2;
  c.eps = s.adam.eps;
  c.weight_decay = s.adam.weight_decay;
  c.warmup_steps = int32_t(s.warmup_steps);
  c.clip_norm = s.grad_clip_norm > 0 ? s.grad_clip_norm : 0.0;
  c.ema = s.ema;
  return c;
}

float* floats(const DeviceBuffer& b) {
  return static_cast<float*>(b.data());
}

}  // namespace

CudaParameterUpdater::CudaParameterUpdater(CudaBackend& backend, const Tensor& params,
                                           const OptimizerSettings& s)
    : backend_(backend),
      config_(kernel_config(s)),
      n_(params.numel()),
      m_(backend, params.bytes()),
      v_(backend, params.bytes()),
      ema_(backend, params.bytes()),
      scalars_(backend, sizeof(DeviceScalars)),
      workspace_(backend, kernels::grad_norm_workspace_bytes(params.numel())) {
  check(params, "parameters");
  backend_.fill_zero(m_.data(), m_.bytes());
  backend_.fill_zero(v_.data(), v_.bytes());
  if (n_ > 0)
    DDPM_CUDA_CHECK(cudaMemcpyAsync(ema_.data(), params.data, params.bytes(),
                                    cudaMemcpyDeviceToDevice, backend_.stream()));
  backend_.synchronize();
}

void CudaParameterUpdater::enqueue(const Tensor& params, const Tensor& grads, const uint32_t* step,
                                   float* norm, const Tensor& params_bf16) {
  check(params, "parameters");
  check(grads, "gradients");
  if (params_bf16.defined() && (params_bf16.numel() != n_ || params_bf16.dtype != DType::bf16 ||
                                params_bf16.device != Device::cuda))
    throw std::invalid_argument(
        "cuda parameter updater: the bf16 weight copy is not a bf16 "
        "CUDA buffer of " +
        std::to_string(n_) + " elements");
  if (!step || !norm)
    throw std::invalid_argument("cuda parameter updater: step and norm must be device pointers");
  const cudaStream_t stream = backend_.stream();
  const auto* g = static_cast<const float*>(grads.data);
  kernels::grad_norm(g, n_, norm, workspace_.data(), stream);
  kernels::adamw_ema_step(static_cast<float*>(params.data), g, floats(m_), floats(v_), floats(ema_),
                          n_, step, norm, config_, stream,
                          static_cast<__nv_bfloat16*>(params_bf16.data));
}

double CudaParameterUpdater::step(const Tensor& params, const Tensor& grads, int64_t step) {
  if (step < 1 || step > int64_t(UINT32_MAX))
    throw std::invalid_argument("cuda parameter updater: step " + std::to_string(step) +
                                " out of range (counts from 1)");
  auto* scalars = static_cast<DeviceScalars*>(scalars_.data());
  const auto step32 = uint32_t(step);
  backend_.copy_from_host(&scalars->step, &step32, sizeof step32);
  enqueue(params, grads, &scalars->step, &scalars->norm);
  float norm = 0;
  backend_.copy_to_host(&norm, &scalars->norm, sizeof norm);  // waits for the step
  return norm;
}

std::vector<float> CudaParameterUpdater::read(Slot slot) const {
  std::vector<float> host(static_cast<size_t>(n_));
  backend_.copy_to_host(host.data(), buffer(slot).data(), host.size() * sizeof(float));
  return host;
}

void CudaParameterUpdater::write(Slot slot, std::span<const float> values) {
  if (values.size() != size_t(n_))
    throw std::invalid_argument("cuda parameter updater: " + std::to_string(values.size()) +
                                " values for a state of " + std::to_string(n_));
  backend_.copy_from_host(buffer(slot).data(), values.data(), values.size() * sizeof(float));
}

void CudaParameterUpdater::check(const Tensor& t, const char* what) const {
  if (t.numel() != n_ || t.dtype != DType::f32 || t.device != Device::cuda)
    throw std::invalid_argument(std::string("cuda parameter updater: ") + what +
                                " are not the f32 CUDA buffer of " + std::to_string(n_) +
                                " elements it was made for");
}

const DeviceBuffer& CudaParameterUpdater::buffer(Slot s) const {
  return s == Slot::adam_m ? m_ : s == Slot::adam_v ? v_ : ema_;
}

std::unique_ptr<CudaParameterUpdater> make_cuda_updater(Backend& backend, const Tensor& params,
                                                        const OptimizerSettings& settings) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  if (!cuda)
    throw std::invalid_argument("cuda parameter updater: needs the CUDA backend, got " +
                                backend.name());
  if (params.dtype != DType::f32 || params.device != Device::cuda)
    throw std::invalid_argument(
        "cuda parameter updater: the parameters must be an f32 CUDA buffer");
  return std::make_unique<CudaParameterUpdater>(*cuda, params, settings);
}

std::unique_ptr<ParameterUpdater> make_cuda_parameter_updater(Backend& backend,
                                                              const Tensor& params,
                                                              const OptimizerSettings& settings) {
  return make_cuda_updater(backend, params, settings);
}

}  // namespace ddpm
