// The host sampling loop (sample_batch, make_host_sampling_loop) and the
// graph-mode names shared with the device loop.
#include "engine/sampler.h"

#include <stdexcept>

#include "engine/noise.h"

namespace ddpm {

const char* sampling_graph_name(SamplingGraph mode) {
  switch (mode) {
    case SamplingGraph::automatic:
      return "auto";
    case SamplingGraph::off:
      return "off";
    case SamplingGraph::step:
      return "step";
    case SamplingGraph::loop:
      return "loop";
  }
  return "?";
}

SamplingGraph parse_sampling_graph(const std::string& name) {
  for (SamplingGraph m :
       {SamplingGraph::automatic, SamplingGraph::off, SamplingGraph::step, SamplingGraph::loop})
    if (name == sampling_graph_name(m)) return m;
  throw std::invalid_argument("sampling graph mode '" + name +
                              "': expected auto, off, step or loop");
}

void check_sampler_options(const SamplerOptions& o, int64_t batch) {
  if (o.steps < 1)
    throw std::invalid_argument("sampler: steps must be >= 1, got " + std::to_string(o.steps));
  // Image keys are uint32 (engine/noise.h).
  if (o.first_image < 0 || o.first_image + batch > (int64_t(1) << 32))
    throw std::invalid_argument("sampler: images [" + std::to_string(o.first_image) + ", " +
                                std::to_string(o.first_image + batch) +
                                ") must lie in [0, 2^32) (the noise keys)");
}

namespace {

// out[e] = noise_normal_f(seed, purpose, step, image, e) for e < n, a Philox
// block per pair.
void draw_normals(uint64_t seed, NoisePurpose purpose, uint32_t step, uint32_t image, float* out,
                  int64_t n) {
  for (int64_t e = 0; e < n; e += 2) {
    const NormalPairF z = noise_normal_pair_f(seed, purpose, step, image, uint32_t(e >> 1));
    out[e] = z.even;
    if (e + 1 < n) out[e + 1] = z.odd;
  }
}

class HostSamplingLoop final : public SamplingLoop {
 public:
  HostSamplingLoop(Executor& ex, const UNetGraph& unet) : ex_(ex), unet_(unet) {}

  void sample(const Scheduler& scheduler, const SamplerOptions& options,
              std::vector<float>& out) override {
    sample_batch(ex_, unet_, scheduler, options, out);
  }

  SamplingGraph resolve(SamplingGraph, std::string* why) const override {
    if (why)
      *why = "the host loop (model on the " + ex_.backend().name() +
             " backend, the scheduler step on the host; graph modes apply to the CUDA backend)";
    return SamplingGraph::off;
  }

 private:
  Executor& ex_;
  const UNetGraph& unet_;
};

}  // namespace

std::unique_ptr<SamplingLoop> make_host_sampling_loop(Executor& ex, const UNetGraph& unet) {
  return std::make_unique<HostSamplingLoop>(ex, unet);
}

void sample_batch(Executor& ex, const UNetGraph& unet, const Scheduler& scheduler,
                  const SamplerOptions& o, std::vector<float>& out) {
  const Shape shape = ex.graph().values[size_t(unet.sample)].shape;
  const int64_t batch = shape[0], per_image = shape.numel() / batch;
  if (ex.graph().values[size_t(unet.prediction)].shape.numel() != shape.numel())
    throw std::invalid_argument("sampler: the model's output " +
                                ex.graph().values[size_t(unet.prediction)].shape.str() +
                                " must have the shape of its input " + shape.str());
  check_sampler_options(o, batch);
  const std::vector<StepCoefficients> plan = scheduler.plan(o.steps);

  // The noise is engine/noise.h's float draw, the very function the device
  // loop's kernels evaluate, so both backends start from the same x_T and add
  // the same z.
  std::vector<float> x(static_cast<size_t>(shape.numel())), z(x.size()),
      t(static_cast<size_t>(batch)), eps_host;
  for (int64_t b = 0; b < batch; ++b)
    draw_normals(o.seed, NoisePurpose::initial_sample, 0, uint32_t(o.first_image + b),
                 x.data() + b * per_image, per_image);
  for (size_t i = 0; i < plan.size(); ++i) {
    if (o.before_step) o.before_step(int64_t(i));
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
        draw_normals(o.seed, NoisePurpose::step_noise, uint32_t(i), uint32_t(o.first_image + b),
                     z.data() + b * per_image, per_image);
    noise_update<float>(k, x.data(), eps, z.data(), x.data(), int64_t(x.size()));
    if (o.progress) o.progress(int64_t(i) + 1, int64_t(plan.size()));
  }
  if (o.before_step) o.before_step(int64_t(plan.size()));
  out = std::move(x);
}

}  // namespace ddpm
