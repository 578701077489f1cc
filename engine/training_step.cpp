// The CPU training step (engine/training_step.h): the batch prepared on the
// host, the forward process in double through the CPU references of the
// device kernels, the model on the CPU backend, the CPU parameter updater.
// Every step is finished when enqueue() returns.
#include "engine/training_step.h"

#include <stdexcept>
#include <string>
#include <utility>

#include "engine/cpu/diffusion.h"
#include "engine/noise.h"

namespace ddpm {

namespace {

class CpuTrainingStep final : public TrainingStep {
 public:
  explicit CpuTrainingStep(const TrainingStepContext& c)
      : config_(c.config),
        data_(c.data),
        ex_(c.executor),
        unet_(c.unet),
        prediction_(parse_prediction_type(c.config.scheduler.prediction_type)),
        updater_(make_cpu_parameter_updater(c.backend, c.executor.parameters(), c.optimizer)) {
    for (int64_t i = 0; i < c.config.scheduler.num_train_timesteps; ++i) {
      sqrt_abar_.push_back(c.scheduler.sqrt_alpha_cumprod(i));
      sqrt_one_minus_abar_.push_back(c.scheduler.sqrt_one_minus_alpha_cumprod(i));
    }
  }

  void enqueue(int64_t step, std::span<const int64_t> indices, std::span<const int64_t>) override {
    const auto& t = config_.training;
    const uint64_t seed = t.seed;
    const int64_t batch = t.batch_size, per_image = data_.image_size();
    const int64_t num_t = config_.scheduler.num_train_timesteps;
    if (int64_t(indices.size()) != batch)
      throw std::invalid_argument("cpu training step: " + std::to_string(indices.size()) +
                                  " images for a batch of " + std::to_string(batch));

    // Data (with random flips), then the forward process through the CPU
    // reference of the q_sample kernel: t and eps keyed on (seed, step, image).
    std::vector<float> x0(static_cast<size_t>(batch * per_image));
    std::vector<int32_t> t_index(static_cast<size_t>(batch));
    std::vector<float> timesteps(static_cast<size_t>(batch));
    for (int64_t b = 0; b < batch; ++b) {
      const auto s = uint32_t(step), img = uint32_t(b);
      const bool flip =
          t.random_flip && noise_uniform(seed, NoisePurpose::training_flip, s, img, 0) < 0.5;
      data_.to_float(indices[size_t(b)], x0.data() + b * per_image, flip);
      t_index[size_t(b)] = cpu::training_timestep(seed, s, img, num_t);
      timesteps[size_t(b)] = float(t_index[size_t(b)]);
    }
    const cpu::DiffusionBatch db{batch, per_image, seed, uint32_t(step), prediction_};
    const std::vector<double> x0d(x0.begin(), x0.end());
    std::vector<double> x_td(x0d.size()), targetd(x0d.size());
    cpu::q_sample(x0d.data(), t_index.data(), sqrt_abar_.data(), sqrt_one_minus_abar_.data(), db,
                  x_td.data());
    cpu::diffusion_target(x0d.data(), t_index.data(), sqrt_abar_.data(),
                          sqrt_one_minus_abar_.data(), db, targetd.data());
    const std::vector<float> x_t(x_td.begin(), x_td.end()), target(targetd.begin(), targetd.end());
    ex_.write(unet_.sample, x_t);
    ex_.write(unet_.timesteps, timesteps);
    ex_.write(unet_.target, target);
    const RunContext ctx{seed, uint64_t(step), true};
    ex_.forward(ctx);
    ex_.backward(ctx);

    StepMetrics m;
    m.step = step;
    m.loss = ex_.read(ex_.value(unet_.loss))[0];
    // Norm, clipping, AdamW and EMA where the parameters live.
    m.grad_norm = updater_->step(ex_.parameters(), ex_.gradients(), step);
    ex_.refresh_parameter_copy();  // a mixed-precision graph's bf16 weights
    done_.push_back(m);
  }

  std::vector<StepMetrics> collect() override { return std::exchange(done_, {}); }

  void restore(int64_t) override { done_.clear(); }

  std::vector<float> read(ParameterUpdater::Slot slot) const override {
    return updater_->read(slot);
  }
  void write(ParameterUpdater::Slot slot, std::span<const float> values) override {
    updater_->write(slot, values);
  }

 private:
  const TrainConfig& config_;
  const ImageDataset& data_;
  Executor& ex_;
  const UNetGraph& unet_;
  PredictionType prediction_;
  std::unique_ptr<ParameterUpdater> updater_;            // Adam moments and EMA
  std::vector<double> sqrt_abar_, sqrt_one_minus_abar_;  // the forward process's tables
  std::vector<StepMetrics> done_;                        // not yet collected
};

}  // namespace

std::unique_ptr<TrainingStep> make_cpu_training_step(const TrainingStepContext& c) {
  if (c.backend.device() != Device::cpu)
    throw std::invalid_argument("cpu training step: the model is on the " + c.backend.name() +
                                " backend");
  return std::make_unique<CpuTrainingStep>(c);
}

}  // namespace ddpm
