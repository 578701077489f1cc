#include "engine/trainer.h"

#include <cmath>

#include "engine/checkpoint/atomic_file.h"
#include "engine/checkpoint/errors.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/cpu/diffusion.h"
#include "engine/model_io.h"
#include "engine/noise.h"
#include "engine/sampler.h"

namespace ddpm {

namespace fs = std::filesystem;

namespace {

constexpr const char* kStateFile = "training_state.safetensors";
constexpr const char* kConfigFile = "train_config.json";
constexpr const char* kStateFormat = "ddpm_cuda.training_state.v1";

void check_dataset(const TrainConfig& c, const ImageDataset& d) {
  const UNetConfig& m = c.model;
  if (d.height != m.sample_height || d.width != m.sample_width || d.channels != m.in_channels)
    throw ConfigError("dataset " + d.source + " has " + std::to_string(d.height) + "x" +
                      std::to_string(d.width) + "x" + std::to_string(d.channels) +
                      " images, but the model config expects sample_size " +
                      std::to_string(m.sample_height) + "x" + std::to_string(m.sample_width) +
                      " and in_channels " + std::to_string(m.in_channels));
  if (m.out_channels != m.in_channels)
    throw ConfigError("model config: out_channels must equal in_channels to predict the noise");
  if (d.count < 1) throw ConfigError("dataset " + d.source + " is empty");
}

OptimizerSettings optimizer_settings(const TrainConfig::Training& t) {
  OptimizerSettings s;
  s.adam = AdamWConfig{t.learning_rate, t.adam_beta1, t.adam_beta2, t.adam_epsilon, t.weight_decay};
  s.warmup_steps = t.warmup_steps;
  s.grad_clip_norm = t.grad_clip_norm;
  s.ema = ema_schedule(t);
  return s;
}

UNetGraph build_train_graph(const TrainConfig& c) {
  UNetBuildOptions o;
  o.batch = c.training.batch_size;
  o.with_loss = true;
  return build_unet(c.model, o);
}

}  // namespace

Trainer::Trainer(const TrainConfig& config, const ImageDataset& data, Backend& backend,
                 const ParameterUpdaterFactory& make_updater)
    : config_(config),
      data_((check_dataset(config, data), data)),
      backend_(backend),
      scheduler_(config.scheduler),
      unet_(build_train_graph(config)),
      sampler_(data.count, config.training.batch_size, config.training.seed) {
  if (!make_updater && backend.device() != Device::cpu)
    throw std::logic_error("trainer: the " + backend.name() +
                           " backend needs a parameter updater (for CUDA: "
                           "engine/cuda/cuda_parameter_updater.h)");
  ex_ = std::make_unique<Executor>(unet_.graph, backend_, ExecMode::training);
  ex_->init_parameters(config.training.seed);
  const OptimizerSettings settings = optimizer_settings(config.training);
  updater_ = make_updater ? make_updater(backend_, ex_->parameters(), settings)
                          : make_cpu_parameter_updater(backend_, ex_->parameters(), settings);
  for (int64_t i = 0; i < config.scheduler.num_train_timesteps; ++i) {
    sqrt_abar_.push_back(scheduler_.sqrt_alpha_cumprod(i));
    sqrt_one_minus_abar_.push_back(scheduler_.sqrt_one_minus_alpha_cumprod(i));
  }
}

std::vector<float> Trainer::parameters() const {
  return ex_->read(ex_->parameters());
}

std::vector<float> Trainer::ema() const {
  return updater_->read(ParameterUpdater::Slot::ema);
}

StepMetrics Trainer::train_step() {
  const int64_t step = ++step_;
  const auto& t = config_.training;
  const uint64_t seed = t.seed;
  const int64_t batch = t.batch_size, per_image = data_.image_size();
  const int64_t num_t = config_.scheduler.num_train_timesteps;
  const std::vector<int64_t> indices = sampler_.next_batch();

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
  const cpu::DiffusionBatch db{batch, per_image, seed, uint32_t(step),
                               parse_prediction_type(config_.scheduler.prediction_type)};
  const std::vector<double> x0d(x0.begin(), x0.end());
  std::vector<double> x_td(x0d.size()), targetd(x0d.size());
  cpu::q_sample(x0d.data(), t_index.data(), sqrt_abar_.data(), sqrt_one_minus_abar_.data(), db,
                x_td.data());
  cpu::diffusion_target(x0d.data(), t_index.data(), sqrt_abar_.data(), sqrt_one_minus_abar_.data(),
                        db, targetd.data());
  const std::vector<float> x_t(x_td.begin(), x_td.end()), target(targetd.begin(), targetd.end());
  ex_->write(unet_.sample, x_t);
  ex_->write(unet_.timesteps, timesteps);
  ex_->write(unet_.target, target);
  const RunContext ctx{seed, uint64_t(step), true};
  ex_->forward(ctx);
  ex_->backward(ctx);

  StepMetrics m;
  m.step = step;
  m.loss = ex_->read(ex_->value(unet_.loss))[0];
  // Norm, clipping, AdamW and EMA where the parameters live.
  m.grad_norm = updater_->step(ex_->parameters(), ex_->gradients(), step);
  m.learning_rate = warmup_learning_rate(optimizer_settings(t), step);
  m.ema_decay = ema_decay_at(ema_schedule(t), step);
  return m;
}

void Trainer::save_checkpoint(const fs::path& dir) const {
  const fs::path tmp = dir.string() + ".tmp", old = dir.string() + ".old";
  fs::remove_all(tmp);
  // Host copies of everything on the device.
  using Slot = ParameterUpdater::Slot;
  const std::vector<float> ema = updater_->read(Slot::ema);
  save_pipeline(tmp, config_.model, config_.scheduler, unet_.graph, ema);
  StFile state;
  const std::vector<int64_t> shape{unet_.graph.param_buffer_elements};
  state.tensors["params"] = from_f32(parameters(), shape, DType::f32);
  state.tensors["ema"] = from_f32(ema, shape, DType::f32);
  state.tensors["adam_m"] = from_f32(updater_->read(Slot::adam_m), shape, DType::f32);
  state.tensors["adam_v"] = from_f32(updater_->read(Slot::adam_v), shape, DType::f32);
  state.metadata = {{"format", kStateFormat},
                    {"step", std::to_string(step_)},
                    {"sampler_epoch", std::to_string(sampler_.state().epoch)},
                    {"sampler_position", std::to_string(sampler_.state().position)}};
  write_safetensors(tmp / kStateFile, state);
  write_file_atomically(tmp / kConfigFile, train_config_to_json(config_));
  // Swap in: the previous checkpoint stays until the new one is in place.
  if (fs::exists(dir)) {
    fs::remove_all(old);
    fs::rename(dir, old);
  }
  fs::rename(tmp, dir);
  fs::remove_all(old);
}

namespace {

// The training state file of a checkpoint folder; an error when there is none.
fs::path state_file(const fs::path& dir) {
  const fs::path file = dir / kStateFile;
  if (!fs::exists(file))
    throw CheckpointError(dir.string() + ": no " + kStateFile +
                          " (not a training checkpoint written by ddpm_cuda_train)");
  return file;
}

}  // namespace

// A small JSON file beside the state, so reading the config (the app does it
// before building the trainer) does not read the weights a second time.
TrainConfig checkpoint_train_config(const fs::path& dir) {
  state_file(dir);
  return load_train_config(dir / kConfigFile);
}

void Trainer::resume(const fs::path& dir) {
  const TrainConfig saved = checkpoint_train_config(dir);
  if (unet_config_to_json(saved.model) != unet_config_to_json(config_.model))
    throw CheckpointError(dir.string() + ": the checkpoint's model config differs from this run's");
  const fs::path file = state_file(dir);
  const StFile state = read_safetensors(file);
  auto meta = [&](const std::string& key) -> const std::string& {
    auto it = state.metadata.find(key);
    if (it == state.metadata.end())
      throw CheckpointError(file.string() + ": metadata has no '" + key + "'");
    return it->second;
  };
  if (meta("format") != kStateFormat)
    throw CheckpointError(file.string() + ": format '" + meta("format") + "', expected '" +
                          kStateFormat + "'");
  auto number = [&](const std::string& key) {
    try {
      return std::stoll(meta(key));
    } catch (const std::exception&) {
      throw CheckpointError(file.string() + ": metadata '" + key +
                            "' is not a number: " + meta(key));
    }
  };
  const auto n = size_t(unet_.graph.param_buffer_elements);
  auto buffer = [&](const std::string& name) {
    auto it = state.tensors.find(name);
    if (it == state.tensors.end())
      throw CheckpointError(file.string() + ": missing tensor '" + name + "'");
    std::vector<float> v = to_f32(it->second);
    if (v.size() != n)
      throw CheckpointError(file.string() + ": tensor '" + name + "' has " +
                            std::to_string(v.size()) + " values, the model has " +
                            std::to_string(n));
    return v;
  };
  const std::vector<float> params = buffer("params");
  using Slot = ParameterUpdater::Slot;
  updater_->write(Slot::ema, buffer("ema"));
  updater_->write(Slot::adam_m, buffer("adam_m"));
  updater_->write(Slot::adam_v, buffer("adam_v"));
  backend_.copy_from_host(ex_->parameters().data, params.data(), n * sizeof(float));
  step_ = number("step");
  sampler_ = BatchSampler(
      data_.count, config_.training.batch_size,
      SamplerState{config_.training.seed, number("sampler_epoch"), number("sampler_position")});
}

std::vector<float> Trainer::sample_ema(int64_t count, int64_t steps, const std::string& kind,
                                       uint64_t seed) const {
  UNetBuildOptions o;
  o.batch = count;
  const UNetGraph g = build_unet(config_.model, o);
  Executor ex(g.graph, backend_, ExecMode::inference);
  const std::vector<float> ema = updater_->read(ParameterUpdater::Slot::ema);
  backend_.copy_from_host(ex.parameters().data, ema.data(), ema.size() * sizeof(float));
  SchedulerConfig sc = config_.scheduler;
  sc.kind = kind;
  SamplerOptions so;
  so.steps = steps;
  so.seed = seed;
  std::vector<float> out;
  sample_batch(ex, g, Scheduler(sc), so, out);
  return out;
}

}  // namespace ddpm
