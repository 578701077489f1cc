#include "engine/sampler.h"

#include "engine/noise.h"

namespace ddpm {

void sample_batch(Executor& ex, const UNetGraph& unet, const Scheduler& scheduler,
                  const SamplerOptions& o, std::vector<float>& out) {
  const Shape shape = ex.graph().values[size_t(unet.sample)].shape;
  const int64_t batch = shape[0], per_image = shape.numel() / batch;
  const std::vector<StepCoefficients> plan = scheduler.plan(o.steps);

  std::vector<float> x(static_cast<size_t>(shape.numel())), z(x.size()),
      t(static_cast<size_t>(batch)), eps_host;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t e = 0; e < per_image; ++e)
      x[size_t(b * per_image + e)] = float(noise_normal(o.seed, NoisePurpose::initial_sample, 0,
                                                        uint32_t(o.first_image + b), uint32_t(e)));
  for (size_t i = 0; i < plan.size(); ++i) {
    const StepCoefficients& k = plan[i];
    std::fill(t.begin(), t.end(), float(k.timestep));
    ex.write(unet.sample, x);
    ex.write(unet.timesteps, t);
    ex.forward(RunContext{o.seed, i, false});
    // The model runs on the executor's backend; the scheduler's update runs
    // here on the host (an f32 prediction in CPU memory is read in place;
    // otherwise copied back and converted: batch * per_image floats a step,
    // small next to the UNet's work).
    const Tensor prediction = ex.value(unet.prediction);
    const bool in_place = prediction.device == Device::cpu && prediction.dtype == DType::f32;
    if (!in_place) eps_host = ex.read<float>(prediction);
    const float* eps = in_place ? prediction.ptr<float>() : eps_host.data();
    if (k.sigma != 0)
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t e = 0; e < per_image; ++e)
          z[size_t(b * per_image + e)] =
              float(noise_normal(o.seed, NoisePurpose::step_noise, uint32_t(i),
                                 uint32_t(o.first_image + b), uint32_t(e)));
    noise_update<float>(k, x.data(), eps, z.data(), x.data(), int64_t(x.size()));
    if (o.progress) o.progress(int64_t(i) + 1, int64_t(plan.size()));
  }
  out = std::move(x);
}

}  // namespace ddpm
