#include "apps/train_run.h"

#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/progress.h"
#include "engine/checkpoint/atomic_file.h"
#include "engine/device_runtime.h"
#include "engine/image/grid.h"
#include "engine/image/png_writer.h"
#include "engine/model_summary.h"
#include "engine/trainer.h"

namespace ddpm::app {

namespace fs = std::filesystem;

namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_sigint(int) {
  g_stop = true;
}

fs::path checkpoint_folder(const fs::path& p) {
  return fs::exists(p / "checkpoint" / "training_state.safetensors") ? p / "checkpoint" : p;
}

void write_grid(const fs::path& path, const std::vector<float>& images, const UNetConfig& m,
                int64_t count) {
  const auto columns = int64_t(std::ceil(std::sqrt(double(count))));
  write_png(path, make_grid(images.data(), count, m.sample_height, m.sample_width, m.in_channels,
                            columns));
}

}  // namespace

int run_training(const TrainOptions& o) {
  TrainConfig config;
  fs::path resume_dir;
  if (!o.resume.empty()) {
    resume_dir = checkpoint_folder(o.resume);
    config = o.config.empty() ? checkpoint_train_config(resume_dir) : load_train_config(o.config);
  } else {
    if (o.config.empty()) throw ConfigError("--config is required (or --resume a checkpoint)");
    config = load_train_config(o.config);
  }
  if (!o.data_kind.empty()) config.data.kind = o.data_kind;
  if (!o.data_path.empty()) config.data.path = o.data_path;
  if (o.steps) config.training.steps = *o.steps;
  if (o.batch) config.training.batch_size = *o.batch;
  if (o.seed) config.training.seed = *o.seed;
  // Validate the overrides as if they had been in the file.
  config =
      parse_train_config(train_config_to_json(config), "the config with command-line overrides");

  if (o.print_model) {
    std::cout << describe_model(config.model, config.training.batch_size);
    return 0;
  }
  const DeviceRuntime dev = make_device_runtime(o.device, std::cout);
  const fs::path out = !o.out.empty()        ? o.out
                       : !resume_dir.empty() ? resume_dir.parent_path()
                                             : fs::path("runs") / o.config.stem();
  std::cout << "data: " << config.data.kind << " "
            << (config.data.path.empty() ? "(default location)" : config.data.path) << std::endl;
  const ImageDataset data = load_dataset(config.data.kind, config.data.path);
  std::cout << "data: " << data.count << " images " << data.height << "x" << data.width << "x"
            << data.channels << " from " << data.source << std::endl;
  Trainer trainer(config, data, *dev.backend, dev.make_updater);
  // The run folder is made only once the data and the model are known to fit.
  fs::create_directories(out / "samples");
  write_file_atomically(out / "train_config.json", train_config_to_json(config));
  std::cout << "model: " << trainer.unet().graph.num_parameters << " parameters; training batch "
            << config.training.batch_size << ", " << config.training.steps << " steps; output in "
            << out.string() << std::endl;
  if (!resume_dir.empty()) {
    trainer.resume(resume_dir);
    std::cout << "resumed from " << resume_dir.string() << " at step " << trainer.step()
              << std::endl;
  }

  const auto& log = config.logging;
  std::ofstream metrics(out / "metrics.jsonl", std::ios::app);
  if (!metrics)
    throw std::runtime_error("cannot open " + (out / "metrics.jsonl").string() + " for writing");
  auto sample = [&](const std::string& why) {
    const int64_t step = trainer.step();
    std::cout << "sampling " << log.sample_count << " images (" << log.sample_scheduler << ", "
              << log.sample_steps << " steps, EMA weights) " << why << "..." << std::flush;
    Progress p(1);
    const std::vector<float> images = trainer.sample_ema(
        log.sample_count, log.sample_steps, log.sample_scheduler, config.training.seed);
    char name[64];
    std::snprintf(name, sizeof name, "step_%07lld.png", static_cast<long long>(step));
    write_grid(out / "samples" / name, images, config.model, log.sample_count);
    std::cout << " " << (out / "samples" / name).string() << " (" << format_duration(p.elapsed())
              << ")" << std::endl;
  };
  int64_t saved_at = -1;
  auto save = [&]() {
    if (saved_at == trainer.step()) return;
    saved_at = trainer.step();
    trainer.save_checkpoint(out / "checkpoint");
    std::cout << "checkpoint: " << (out / "checkpoint").string() << " (step " << trainer.step()
              << ")" << std::endl;
  };

  g_stop = false;
  auto previous = std::signal(SIGINT, on_sigint);
  Progress progress(config.training.steps, trainer.step());
  double loss_sum = 0;
  int64_t loss_count = 0;
  while (trainer.step() < config.training.steps && !g_stop) {
    const StepMetrics m = trainer.train_step();
    if (!std::isfinite(m.loss)) {
      save();
      throw std::runtime_error("loss is " + std::to_string(m.loss) + " at step " +
                               std::to_string(m.step) + " (checkpoint saved for inspection)");
    }
    loss_sum += m.loss;
    ++loss_count;
    const double img_s = progress.rate(m.step) * double(config.training.batch_size);
    metrics << nlohmann::json{{"step", m.step},
                              {"loss", m.loss},
                              {"grad_norm", m.grad_norm},
                              {"lr", m.learning_rate},
                              {"ema_decay", m.ema_decay},
                              {"img_per_s", img_s},
                              {"time_s", progress.elapsed()}}
                   .dump()
            << "\n";
    if (m.step % log.log_every == 0 || m.step == config.training.steps) {
      metrics.flush();
      std::printf(
          "step %lld/%lld  loss %.4f (mean of %lld)  grad %.3f  lr %.2e  %.1f img/s  ETA %s\n",
          static_cast<long long>(m.step), static_cast<long long>(config.training.steps),
          loss_sum / double(loss_count), static_cast<long long>(loss_count), m.grad_norm,
          m.learning_rate, img_s, progress.eta(m.step).c_str());
      std::fflush(stdout);
      loss_sum = 0;
      loss_count = 0;
    }
    if (log.checkpoint_every > 0 && m.step % log.checkpoint_every == 0) save();
    if (log.sample_every > 0 && m.step % log.sample_every == 0 && m.step < config.training.steps)
      sample("at step " + std::to_string(m.step));
  }
  std::signal(SIGINT, previous);
  metrics.flush();
  save();
  if (g_stop) {
    std::cout << "interrupted at step " << trainer.step() << "; resume with --resume "
              << out.string() << std::endl;
    return 130;
  }
  sample("at the end");
  return 0;
}

}  // namespace ddpm::app
