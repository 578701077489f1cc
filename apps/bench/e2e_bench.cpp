// ddpm_cuda_bench --e2e (e2e_bench.h): training and sampling timed through the
// same engine calls as the apps, mode by mode.
#include "apps/bench/e2e_bench.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <random>
#include <stdexcept>

#include "engine/device_runtime.h"
#include "engine/sampler.h"
#include "engine/train_config.h"
#include "engine/trainer.h"
#include "engine/unet.h"

namespace ddpm::bench {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Random 8-bit images of the model's shape: speed does not depend on the
// pixels, and the GPU machines carry no dataset. Fixed seed: every run and
// mode trains on the same bytes.
ImageDataset synthetic_dataset(const UNetConfig& m, int64_t count) {
  ImageDataset d;
  d.count = count;
  d.height = m.sample_height;
  d.width = m.sample_width;
  d.channels = m.in_channels;
  d.pixels.resize(size_t(d.count * d.image_size()));
  std::mt19937 rng(12345);
  for (uint8_t& p : d.pixels) p = uint8_t(rng() >> 24);
  d.source = "synthetic (random bytes)";
  return d;
}

// Device memory in use now, less what was in use before the bench built
// anything, in MiB; null where the runtime cannot tell.
struct MemoryMeter {
  const DeviceProbes& probes;
  bool cuda;
  std::optional<double> base;
  json mib() const {
    if (!cuda || !probes.memory_in_use_bytes || !base) return nullptr;
    const std::optional<double> now = probes.memory_in_use_bytes();
    if (!now) return nullptr;
    return std::max(0.0, (*now - *base) / double(1 << 20));
  }
};

// The runtime's launch counters around a timed region, per step.
struct Counted {
  const DeviceProbes& probes;
  bool cuda;
  void reset() const {
    if (cuda && probes.reset_counts) probes.reset_counts();
  }
  void add_to(json& row, double per) const {
    if (!cuda || !probes.counts) return;
    const std::optional<LaunchCounts> c = probes.counts();
    if (!c) return;
    row["kernels_per_step"] = double(c->kernels) / per;
    row["launch_calls_per_step"] = double(c->launch_calls) / per;
    row["graph_launches_per_step"] = double(c->graph_launches) / per;
    row["host_syncs_per_step"] = double(c->host_syncs) / per;
  }
};

bool has_phase(const E2eOptions& o, const std::string& phase) {
  return std::find(o.phases.begin(), o.phases.end(), phase) != o.phases.end();
}

void check_options(const E2eOptions& o) {
  if (o.config.empty()) throw std::invalid_argument("--e2e needs --config (a training config)");
  if (o.batch < 0 || o.sample_batch < 0)
    throw std::invalid_argument("--batch and --sample-batch must be positive");
  if (o.steps < 1 || o.train_steps < 1 || o.b1_steps < 1)
    throw std::invalid_argument("--steps, --train-steps and --b1-steps must be at least 1");
  if (o.warmup < 1)
    throw std::invalid_argument(
        "--warmup must be at least 1 with --e2e (the first step captures the graph)");
  for (const std::string& p : o.phases)
    if (p != "train" && p != "sample" && p != "b1")
      throw std::invalid_argument("--phases: unknown phase '" + p + "' (train, sample, b1)");
}

// ---- training -----------------------------------------------------------------------

json bench_training(const E2eOptions& o, const TrainConfig& base, const ImageDataset& data,
                    DeviceRuntime& dev, const MemoryMeter& memory, const Counted& counted,
                    std::ostream& log) {
  const bool cuda = dev.device == Device::cuda;
  const int64_t batch = base.training.batch_size;
  json modes = json::array();
  std::vector<std::vector<float>> params;
  for (const bool graph : cuda ? std::vector<bool>{false, true} : std::vector<bool>{false}) {
    const std::string name = cuda ? (graph ? "on" : "off") : "host";
    TrainConfig c = base;
    c.training.steps = o.warmup + o.train_steps;
    TrainingStepOptions so;
    so.graph = graph;
    const auto t_setup = Clock::now();
    Trainer trainer(c, data, *dev.backend, dev.make_training_step, so);
    for (int64_t i = 0; i < o.warmup; ++i) trainer.enqueue_step();
    trainer.collect_metrics();  // waits: the warm-up (and capture) is done
    const double warm_s = seconds_since(t_setup);
    counted.reset();
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < o.train_steps; ++i) trainer.enqueue_step();
    const std::vector<StepMetrics> m = trainer.collect_metrics();  // waits for every step
    const double s = seconds_since(t0);
    json row{{"graph", name},
             {"img_per_s", double(o.train_steps * batch) / s},
             {"step_ms", 1e3 * s / double(o.train_steps)},
             {"last_loss", m.empty() ? 0.0 : m.back().loss},
             {"setup_and_warmup_s", warm_s},
             {"device_mib", memory.mib()}};
    counted.add_to(row, double(o.train_steps));
    if (!m.empty() && !std::isfinite(m.back().loss)) row["warning"] = "the loss is not finite";
    log << "  train graph " << name << ": " << row["img_per_s"].get<double>() << " img/s ("
        << row["step_ms"].get<double>() << " ms/step)" << std::endl;
    modes.push_back(row);
    params.push_back(trainer.parameters());
  }
  json r{{"batch", batch},
         {"steps_timed", o.train_steps},
         {"warmup_steps", o.warmup},
         {"modes", modes}};
  if (params.size() > 1)
    r["bitwise_equal"] = std::all_of(params.begin(), params.end(),
                                     [&](const std::vector<float>& p) { return p == params[0]; });
  return r;
}

// ---- sampling -----------------------------------------------------------------------

// The modes the device's loop runs: off, step and, where conditional nodes
// exist, loop on CUDA; the host loop ("off") on the CPU.
std::vector<SamplingGraph> sampling_modes(const SamplingLoop& loop, bool cuda, json& notes) {
  if (!cuda) return {SamplingGraph::off};
  std::vector<SamplingGraph> modes{SamplingGraph::off, SamplingGraph::step};
  try {
    loop.resolve(SamplingGraph::loop);
    modes.push_back(SamplingGraph::loop);
  } catch (const std::exception& e) {
    notes.push_back(std::string("graph loop not run: ") + e.what());
  }
  return modes;
}

struct SamplingRun {
  json rows = json::array();
  std::vector<std::vector<float>> images;
  json notes = json::array();
};

// Each mode: a 2-step warm-up (first use, capture; the step table is sized
// by the first mode's timed run, so no later mode re-captures), then one
// timed batch of `steps`.
SamplingRun time_sampling(const TrainConfig& c, DeviceRuntime& dev, int64_t batch, int64_t steps,
                          const MemoryMeter& memory, const Counted& counted,
                          const DeviceProbes& probes, json* forward_nodes, std::ostream& log) {
  const bool cuda = dev.device == Device::cuda;
  UNetBuildOptions bo;
  bo.batch = batch;
  bo.activations = activation_dtype(c.training);
  const UNetGraph unet = build_unet(c.model, bo);
  Executor ex(unet.graph, *dev.backend, ExecMode::inference);
  ex.init_parameters(c.training.seed);
  const std::unique_ptr<SamplingLoop> loop =
      dev.make_sampling_loop ? dev.make_sampling_loop(ex, unet) : make_host_sampling_loop(ex, unet);
  SchedulerConfig sc = c.scheduler;
  sc.kind = "ddpm";
  const Scheduler scheduler(sc);
  SamplingRun run;
  if (cuda && steps > 2)
    run.notes.push_back(
        "graph off's timed batch is the first of " + std::to_string(steps) +
        " steps: it grows the device loop's step table (one allocation and one host "
        "synchronisation, once), so no later mode re-captures");
  for (const SamplingGraph mode : sampling_modes(*loop, cuda, run.notes)) {
    const std::string name = cuda ? sampling_graph_name(mode) : "host";
    SamplerOptions so;
    so.seed = c.training.seed;
    so.graph = mode;
    std::vector<float> images;
    so.steps = std::min<int64_t>(2, steps);
    const auto t_warm = Clock::now();
    loop->sample(scheduler, so, images);
    const double warm_s = seconds_since(t_warm);
    so.steps = steps;
    counted.reset();
    const auto t0 = Clock::now();
    loop->sample(scheduler, so, images);  // returns once the images are on the host
    const double s = seconds_since(t0);
    const double step_s = s / double(steps);
    json row{{"graph", name},
             {"seconds", s},
             {"step_ms", 1e3 * step_s},
             {"img_per_s_1000_steps", double(batch) / (1000.0 * step_s)},
             {"img_steps_per_s", double(batch) / step_s},
             {"warmup_s", warm_s},
             {"device_mib", memory.mib()}};
    counted.add_to(row, double(steps));
    log << "  sample batch " << batch << " graph " << name << ": " << row["step_ms"].get<double>()
        << " ms/step" << std::endl;
    run.rows.push_back(row);
    run.images.push_back(std::move(images));
  }
  if (forward_nodes && cuda && probes.forward_kernel_nodes) {
    const std::optional<int64_t> n = probes.forward_kernel_nodes(ex);
    if (n) *forward_nodes = *n;
  }
  return run;
}

bool all_equal(const std::vector<std::vector<float>>& v) {
  return std::all_of(v.begin(), v.end(), [&](const std::vector<float>& x) { return x == v[0]; });
}

}  // namespace

json run_e2e_bench(const E2eOptions& o, const DeviceProbes& probes, std::ostream& log) {
  check_options(o);
  TrainConfig config = load_train_config(o.config);
  if (o.batch) config.training.batch_size = o.batch;
  const int64_t batch = config.training.batch_size;
  const int64_t sample_batch = o.sample_batch ? o.sample_batch : batch;
  const auto t_start = Clock::now();

  DeviceRuntime dev = make_device_runtime(o.device, log);
  const bool cuda = dev.device == Device::cuda;
  // Every phase runs at this precision: the Trainer reads it from the config,
  // the sampling graphs from activation_dtype.
  std::string precision_why;
  config.training.precision = resolve_precision(o.precision, dev, &precision_why);
  log << "precision: " << config.training.precision << " (" << precision_why << ")" << std::endl;
  MemoryMeter memory{probes, cuda, std::nullopt};
  if (cuda && probes.memory_in_use_bytes) memory.base = probes.memory_in_use_bytes();
  const Counted counted{probes, cuda};

  json r;
  r["bench"] = "ddpm_cuda_bench --e2e";
  r["config"] = o.config.string();
  r["device"] = dev.description;
  r["precision"] = config.training.precision;
  r["precision_reason"] = precision_why;
  r["cpu_threads"] = omp_get_max_threads();
  r["launch_counts"] = cuda && probes.counts ? probes.launches_how : "not counted on this device";
  if (cuda && probes.emulated)
    r["warning"] = "CUDA runs on the CPU emulator here: the times measure the emulation, not a GPU";
  {
    UNetBuildOptions bo;
    bo.batch = 1;
    r["parameters"] = build_unet(config.model, bo).graph.num_parameters;
  }
  json unet_forward_kernels = nullptr;

  if (has_phase(o, "train")) {
    const ImageDataset data = o.config_data ? load_dataset(config.data.kind, config.data.path)
                                            : synthetic_dataset(config.model, 4 * batch);
    log << "training: batch " << batch << ", " << o.warmup << " warm-up + " << o.train_steps
        << " timed steps per mode; data " << data.source << std::endl;
    r["train"] = bench_training(o, config, data, dev, memory, counted, log);
    r["train"]["data"] = data.source;
  }
  if (has_phase(o, "sample")) {
    log << "sampling: batch " << sample_batch << ", DDPM, " << o.steps << " timed steps per mode"
        << std::endl;
    SamplingRun s = time_sampling(config, dev, sample_batch, o.steps, memory, counted, probes,
                                  &unet_forward_kernels, log);
    r["sample"] = {{"batch", sample_batch},
                   {"steps", o.steps},
                   {"scheduler", "ddpm"},
                   {"modes", s.rows},
                   {"notes", s.notes}};
    if (s.images.size() > 1) r["sample"]["bitwise_equal"] = all_equal(s.images);
  }
  if (has_phase(o, "b1")) {
    log << "batch-1 sampling step latency: " << o.b1_steps << " timed steps per mode" << std::endl;
    SamplingRun s =
        time_sampling(config, dev, 1, o.b1_steps, memory, counted, probes,
                      unet_forward_kernels.is_null() ? &unet_forward_kernels : nullptr, log);
    r["batch1"] = {{"steps", o.b1_steps}, {"modes", s.rows}, {"notes", s.notes}};
    if (s.images.size() > 1) r["batch1"]["bitwise_equal"] = all_equal(s.images);
  }
  r["unet_forward_kernel_nodes"] = unet_forward_kernels;
  r["elapsed_s"] = seconds_since(t_start);
  return r;
}

}  // namespace ddpm::bench
