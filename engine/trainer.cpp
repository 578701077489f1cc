#include "engine/trainer.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "engine/checkpoint/atomic_file.h"
#include "engine/checkpoint/errors.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/model_io.h"
#include "engine/sampler.h"

namespace ddpm {

namespace fs = std::filesystem;

namespace {

constexpr const char* kStateFile = "training_state.safetensors";
constexpr const char* kConfigFile = "train_config.json";
// v2: the flat buffers in the fused graph's parameter layout (q, k, v
// weights of an attention block side by side, then their biases); v1 (before
// the fusions) had each projection's weight and bias together, the unfused
// graph's layout. Both load.
constexpr const char* kStateFormat = "ddpm_cuda.training_state.v2";
constexpr const char* kStateFormatV1 = "ddpm_cuda.training_state.v1";

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
  o.activations = activation_dtype(c.training);
  return build_unet(c.model, o);
}

// Moves a flat buffer from graph `from`'s parameter layout to graph `to`'s,
// parameter by parameter (matched by name); padding stays zero.
std::vector<float> relayout(const std::vector<float>& v, const Graph& from, const Graph& to) {
  std::vector<float> out(size_t(to.param_buffer_elements), 0.0f);
  for (ValueId id : to.parameters()) {
    const Value& dst = to.values[size_t(id)];
    const Value& src = from.values[size_t(from.find(dst.name))];
    const int64_t n = dst.shape.numel();
    if (src.shape.numel() != n || src.param_offset + n > int64_t(v.size()))
      throw CheckpointError("training state: parameter '" + dst.name +
                            "' does not fit the v1 layout");
    std::copy_n(v.begin() + src.param_offset, n, out.begin() + dst.param_offset);
  }
  return out;
}

}  // namespace

Trainer::Trainer(const TrainConfig& config, const ImageDataset& data, Backend& backend,
                 const TrainingStepFactory& make_step, const TrainingStepOptions& options)
    : config_(config),
      data_((check_dataset(config, data), data)),
      backend_(backend),
      scheduler_(config.scheduler),
      unet_(build_train_graph(config)),
      sampler_(data.count, config.training.batch_size, config.training.seed),
      data_position_(sampler_.state()) {
  if (!make_step && backend.device() != Device::cpu)
    throw std::logic_error("trainer: the " + backend.name() +
                           " backend needs its training step (for CUDA: "
                           "engine/cuda/device_training_step.h, or make_device_runtime)");
  ex_ = std::make_unique<Executor>(unet_.graph, backend_, ExecMode::training);
  ex_->init_parameters(config.training.seed);
  const TrainingStepContext context{
      config_, data_, backend_, *ex_, unet_, scheduler_, optimizer_settings(config_.training),
      options};
  step_impl_ = make_step ? make_step(context) : make_cpu_training_step(context);
}

std::vector<float> Trainer::parameters() const {
  return ex_->read(ex_->parameters());
}

std::vector<float> Trainer::ema() const {
  return step_impl_->read(ParameterUpdater::Slot::ema);
}

void Trainer::enqueue_step() {
  const int64_t step = ++step_;
  std::vector<int64_t> batch = next_batch_.empty() ? sampler_.next_batch() : std::move(next_batch_);
  data_position_ = sampler_.state();
  next_batch_ = sampler_.next_batch();  // the same draw the next step would make
  step_impl_->enqueue(step, batch, next_batch_);
}

std::vector<StepMetrics> Trainer::collect_metrics() {
  std::vector<StepMetrics> metrics = step_impl_->collect();
  const OptimizerSettings settings = optimizer_settings(config_.training);
  for (StepMetrics& m : metrics) {
    m.learning_rate = warmup_learning_rate(settings, m.step);
    m.ema_decay = ema_decay_at(settings.ema, m.step);
  }
  return metrics;
}

StepMetrics Trainer::train_step() {
  enqueue_step();
  const std::vector<StepMetrics> metrics = collect_metrics();
  if (metrics.empty() || metrics.back().step != step_)
    throw std::logic_error("trainer: the training step returned no metrics for step " +
                           std::to_string(step_));
  return metrics.back();
}

void Trainer::save_checkpoint(const fs::path& dir) const {
  const fs::path tmp = dir.string() + ".tmp", old = dir.string() + ".old";
  fs::remove_all(tmp);
  try {
    write_checkpoint_files(tmp);
  } catch (...) {
    std::error_code ignored;  // a full disk: leave no half-written folder behind
    fs::remove_all(tmp, ignored);
    throw;
  }
  // Swap in: the previous checkpoint stays until the new one is in place.
  if (fs::exists(dir)) {
    fs::remove_all(old);
    fs::rename(dir, old);
  }
  fs::rename(tmp, dir);
  fs::remove_all(old);
}

void Trainer::write_checkpoint_files(const fs::path& tmp) const {
  // Host copies of everything on the device.
  using Slot = ParameterUpdater::Slot;
  const std::vector<float> ema = step_impl_->read(Slot::ema);
  save_pipeline(tmp, config_.model, config_.scheduler, unet_.graph, ema);
  StFile state;
  const std::vector<int64_t> shape{unet_.graph.param_buffer_elements};
  state.tensors["params"] = from_f32(parameters(), shape, DType::f32);
  state.tensors["ema"] = from_f32(ema, shape, DType::f32);
  state.tensors["adam_m"] = from_f32(step_impl_->read(Slot::adam_m), shape, DType::f32);
  state.tensors["adam_v"] = from_f32(step_impl_->read(Slot::adam_v), shape, DType::f32);
  state.metadata = {{"format", kStateFormat},
                    {"step", std::to_string(step_)},
                    {"sampler_epoch", std::to_string(data_position_.epoch)},
                    {"sampler_position", std::to_string(data_position_.position)}};
  write_safetensors(tmp / kStateFile, state);
  write_file_atomically(tmp / kConfigFile, train_config_to_json(config_));
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

std::string recover_interrupted_checkpoint(const fs::path& dir) {
  const fs::path old = dir.string() + ".old";
  if (fs::exists(dir / kStateFile) || !fs::exists(old / kStateFile)) return "";
  // dir may exist without a state: a folder the user made, or an older save's
  // leftovers; only an absent dir is the state between the two renames.
  if (fs::exists(dir))
    throw CheckpointError(dir.string() + " has no " + kStateFile + " but " + old.string() +
                          " has one: a save was interrupted; move one of them away and resume");
  fs::rename(old, dir);
  return "checkpoint: " + dir.string() +
         " was missing (a save was interrupted between its renames); restored the previous "
         "checkpoint from " +
         old.string();
}

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
  const bool v1 = meta("format") == kStateFormatV1;
  if (meta("format") != kStateFormat && !v1)
    throw CheckpointError(file.string() + ": format '" + meta("format") + "', expected '" +
                          kStateFormat + "' (or '" + kStateFormatV1 + "')");
  // A v1 state holds the unfused graph's layout (same parameters, same count).
  std::optional<UNetGraph> v1_graph;
  if (v1) {
    UNetBuildOptions o;
    o.fuse = false;
    v1_graph = build_unet(config_.model, o);
  }
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
    const size_t expected = v1_graph ? size_t(v1_graph->graph.param_buffer_elements) : n;
    if (v.size() != expected)
      throw CheckpointError(file.string() + ": tensor '" + name + "' has " +
                            std::to_string(v.size()) + " values, the model has " +
                            std::to_string(expected));
    return v1_graph ? relayout(v, v1_graph->graph, unet_.graph) : v;
  };
  const std::vector<float> params = buffer("params");
  using Slot = ParameterUpdater::Slot;
  const int64_t step = number("step");
  if (step < 0) throw CheckpointError(file.string() + ": metadata 'step' is negative");
  const SamplerState position{config_.training.seed, number("sampler_epoch"),
                              number("sampler_position")};
  BatchSampler sampler(data_.count, config_.training.batch_size, position);
  step_impl_->restore(step);  // first: it waits for (and drops) any step in flight
  step_impl_->write(Slot::ema, buffer("ema"));
  step_impl_->write(Slot::adam_m, buffer("adam_m"));
  step_impl_->write(Slot::adam_v, buffer("adam_v"));
  backend_.copy_from_host(ex_->parameters().data, params.data(), n * sizeof(float));
  ex_->refresh_parameter_copy();
  step_ = step;
  sampler_ = std::move(sampler);
  data_position_ = position;
  next_batch_.clear();
}

std::vector<float> Trainer::sample_ema(int64_t count, int64_t steps, const std::string& kind,
                                       uint64_t seed) const {
  UNetBuildOptions o;
  o.batch = count;
  o.activations = activation_dtype(config_.training);
  const UNetGraph g = build_unet(config_.model, o);
  Executor ex(g.graph, backend_, ExecMode::inference);
  const std::vector<float> ema = step_impl_->read(ParameterUpdater::Slot::ema);
  backend_.copy_from_host(ex.parameters().data, ema.data(), ema.size() * sizeof(float));
  ex.refresh_parameter_copy();
  SchedulerConfig sc = config_.scheduler;
  sc.kind = kind;
  SamplerOptions so;
  so.steps = steps;
  so.seed = seed;
  std::vector<float> out;
  make_sampling_loop_(ex, g)->sample(Scheduler(sc), so, out);
  return out;
}

}  // namespace ddpm
