#include "engine/parameter_updater.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace ddpm {

double warmup_learning_rate(const OptimizerSettings& s, int64_t step) {
  return s.adam.lr *
         (s.warmup_steps > 0 ? std::min(1.0, double(step) / double(s.warmup_steps)) : 1.0);
}

namespace {

// The optimizer state in host vectors, updated by the CPU reference of the
// fused CUDA kernel (engine/cpu/optimizer.h).
class CpuParameterUpdater final : public ParameterUpdater {
 public:
  CpuParameterUpdater(const Tensor& params, const OptimizerSettings& s) : settings_(s) {
    const auto n = size_t(params.numel());
    const float* p = params.ptr<float>();
    m_.assign(n, 0.0f);
    v_.assign(n, 0.0f);
    ema_.assign(p, p + n);
  }

  double step(const Tensor& params, const Tensor& grads, int64_t step) override {
    check_size(params, "parameters");
    check_size(grads, "gradients");
    float* p = params.ptr<float>();
    const float* g = grads.ptr<float>();
    const int64_t n = params.numel();
    const double norm = cpu::global_norm(g, n);
    if (!std::isfinite(norm)) return norm;  // a NaN or inf gradient changes nothing
    // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when below 1.
    const double clip = settings_.grad_clip_norm > 0
                            ? std::min(1.0, settings_.grad_clip_norm / (norm + 1e-6))
                            : 1.0;
    AdamWConfig adam = settings_.adam;
    adam.lr = warmup_learning_rate(settings_, step);
    cpu::adamw_step(p, g, m_.data(), v_.data(), n, adam, step, clip);
    cpu::ema_update(ema_.data(), p, n, ema_decay_at(settings_.ema, step));
    return norm;
  }

  std::vector<float> read(Slot slot) const override { return buffer(slot); }

  void write(Slot slot, std::span<const float> values) override {
    std::vector<float>& b = buffer(slot);
    if (values.size() != b.size())
      throw std::invalid_argument("parameter updater: " + std::to_string(values.size()) +
                                  " values for a state of " + std::to_string(b.size()));
    std::copy(values.begin(), values.end(), b.begin());
  }

 private:
  void check_size(const Tensor& t, const char* what) const {
    if (size_t(t.numel()) != ema_.size() || t.device != Device::cpu)
      throw std::invalid_argument(std::string("parameter updater: ") + what +
                                  " are not the CPU buffer it was made for");
  }
  std::vector<float>& buffer(Slot s) {
    return s == Slot::adam_m ? m_ : s == Slot::adam_v ? v_ : ema_;
  }
  const std::vector<float>& buffer(Slot s) const {
    return s == Slot::adam_m ? m_ : s == Slot::adam_v ? v_ : ema_;
  }

  OptimizerSettings settings_;
  std::vector<float> m_, v_, ema_;
};

}  // namespace

std::unique_ptr<ParameterUpdater> make_cpu_parameter_updater(Backend& backend, const Tensor& params,
                                                             const OptimizerSettings& settings) {
  if (backend.device() != Device::cpu || params.device != Device::cpu)
    throw std::invalid_argument("cpu parameter updater: the parameters are in " +
                                std::string(device_name(params.device)) + " memory (" +
                                backend.name() + " backend)");
  return std::make_unique<CpuParameterUpdater>(params, settings);
}

}  // namespace ddpm
