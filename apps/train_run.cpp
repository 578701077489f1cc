#include "apps/train_run.h"

#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "apps/metrics_plot.h"
#include "apps/profile_window.h"
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

// --resume takes a run folder or its checkpoint folder. A save interrupted
// between its renames is recovered first (recover_interrupted_checkpoint).
fs::path checkpoint_folder(const fs::path& p) {
  const bool run_folder = fs::exists(p / "checkpoint") || fs::exists(p / "checkpoint.old");
  const fs::path dir = run_folder ? p / "checkpoint" : p;
  if (const std::string note = recover_interrupted_checkpoint(dir); !note.empty())
    std::cout << note << std::endl;
  return dir;
}

void write_grid(const fs::path& path, const std::vector<float>& images, const UNetConfig& m,
                int64_t count) {
  const auto columns = int64_t(std::ceil(std::sqrt(double(count))));
  write_png(path, make_grid(images.data(), count, m.sample_height, m.sample_width, m.in_channels,
                            columns));
}

// --precision resolved against the device and printed under the device
// line. On --resume the flag decides; a checkpoint recorded in another
// precision is worth a warning (its fp32 master weights resume either way).
std::string resolve_and_report_precision(const std::string& requested, const DeviceRuntime& dev,
                                         const fs::path& resume_dir) {
  std::string why;
  const std::string precision = resolve_precision(requested, dev, &why);
  std::cout << "precision: " << precision << " (" << why << ")" << std::endl;
  if (!resume_dir.empty()) {
    const std::string recorded = checkpoint_train_config(resume_dir).training.precision;
    if (recorded != precision)
      std::cerr << "warning: the checkpoint was trained in " << recorded
                << "; this run continues in " << precision << " (--precision " << requested << ")"
                << std::endl;
  }
  return precision;
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
  const StepWindow window = parse_profile_steps(o.profile_steps);
  if (resume_dir.empty())  // before the run folder is made (a resumed run checks below)
    check_profile_steps(window, 1, config.training.steps,
                        "this run trains steps 1 to " + std::to_string(config.training.steps));
  const DeviceRuntime dev = make_device_runtime(o.device, std::cout);
  // Before the run folder is made: bf16 on the CPU is an error.
  config.training.precision = resolve_and_report_precision(o.precision, dev, resume_dir);
  const fs::path out = !o.out.empty()        ? o.out
                       : !resume_dir.empty() ? resume_dir.parent_path()
                                             : fs::path("runs") / o.config.stem();
  std::cout << "data: " << config.data.kind << " "
            << (config.data.path.empty() ? "(default location)" : config.data.path) << std::endl;
  const ImageDataset data = load_dataset(config.data.kind, config.data.path);
  std::cout << "data: " << data.count << " images " << data.height << "x" << data.width << "x"
            << data.channels << " from " << data.source << std::endl;
  TrainingStepOptions step_options;
  step_options.graph = o.graph && !o.check_numerics;  // the checks copy to the host
  if (o.check_numerics)
    std::cout << "check numerics: every op's output and gradient is checked for NaN/inf"
              << (dev.device == Device::cuda && o.graph ? " (CUDA graph off for it)" : "")
              << std::endl;
  Trainer trainer(config, data, *dev.backend, dev.make_training_step, step_options);
  trainer.set_sampling_loop(dev.make_sampling_loop);
  trainer.set_check_numerics(o.check_numerics);
  if (dev.device == Device::cuda)
    std::cout << "training step: on the device, "
              << (step_options.graph ? "captured as a CUDA graph and replayed (--graph on)"
                                     : "launched eagerly (--graph off)")
              << std::endl;
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
  check_profile_steps(window, trainer.step() + 1, config.training.steps,
                      "this run trains steps " + std::to_string(trainer.step() + 1) + " to " +
                          std::to_string(config.training.steps));
  ProfileWindow profile(window, dev.device == Device::cuda, std::cout);

  const auto& log = config.logging;
  std::ofstream metrics(out / "metrics.jsonl", std::ios::app);
  if (!metrics)
    throw std::runtime_error("cannot open " + (out / "metrics.jsonl").string() + " for writing");
  // loss.png, redrawn from the whole metrics.jsonl at each checkpoint. A
  // failure to draw it is reported, never fatal: the run matters more.
  auto plot_loss = [&] {
    try {
      plot_metrics(out / "metrics.jsonl", out / "loss.png");
    } catch (const std::exception& e) {
      std::cerr << "warning: loss plot not written: " << e.what() << std::endl;
    }
  };
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
    plot_loss();
  };

  g_stop = false;
  auto previous = std::signal(SIGINT, on_sigint);
  Progress progress(config.training.steps, trainer.step());
  double loss_sum = 0;
  int64_t loss_count = 0;
  // Steps are enqueued ahead of the device (on the GPU a step returns before
  // it has run); their metrics arrive in bulk when a log line, a checkpoint
  // or a sample needs them. Each line's time and rate are taken when its step
  // was enqueued: the host runs at most about two steps ahead of the GPU.
  std::deque<std::pair<double, double>> enqueued;  // (time_s, img/s) per step not yet written
  // Writes the lines of every step collected; returns the last step's metrics.
  auto write_metrics = [&] {
    std::optional<StepMetrics> not_finite;
    StepMetrics last;
    for (const StepMetrics& m : trainer.collect_metrics()) {
      last = m;
      const auto [time_s, img_s] = enqueued.front();
      enqueued.pop_front();
      if (!(std::isfinite(m.loss) && std::isfinite(m.grad_norm)) && !not_finite) not_finite = m;
      loss_sum += m.loss;
      ++loss_count;
      // The precision in every line: a resumed run may change it.
      metrics
          << nlohmann::json{{"step", m.step},           {"loss", m.loss},
                            {"grad_norm", m.grad_norm}, {"lr", m.learning_rate},
                            {"ema_decay", m.ema_decay}, {"img_per_s", img_s},
                            {"time_s", time_s},         {"precision", config.training.precision}}
                 .dump()
          << "\n";
    }
    metrics.flush();
    if (not_finite) {
      // The last good checkpoint stays as it is: the diverged state goes
      // beside it, under another name, for inspection.
      const fs::path inspect = out / "checkpoint_nonfinite";
      std::string saved = "; the diverged state could not be saved";
      try {
        trainer.save_checkpoint(inspect);
        saved = "; the state at step " + std::to_string(trainer.step()) +
                " (the optimizer applies no non-finite gradient) is in " + inspect.string() +
                " for inspection";
      } catch (const std::exception& e) {
        saved += std::string(": ") + e.what();
      }
      const std::string good =
          saved_at >= 0 || fs::exists(out / "checkpoint")
              ? "the last good checkpoint is " + (out / "checkpoint").string() +
                    (saved_at >= 0 ? " (step " + std::to_string(saved_at) + ")" : "")
              : "no checkpoint was saved before it";
      throw std::runtime_error("training diverged at step " + std::to_string(not_finite->step) +
                               ": loss " + std::to_string(not_finite->loss) + ", gradient norm " +
                               std::to_string(not_finite->grad_norm) + "; " + good + saved +
                               ". Lower the learning rate or raise warmup_steps, then resume "
                               "from the good checkpoint");
    }
    return last;
  };
  while (trainer.step() < config.training.steps && !g_stop) {
    profile.before(trainer.step() + 1, trainer.step() + 1);
    trainer.enqueue_step();
    const int64_t step = trainer.step();
    profile.after(step);
    const double img_s = progress.rate(step) * double(config.training.batch_size);
    enqueued.emplace_back(progress.elapsed(), img_s);
    const bool last = step == config.training.steps;
    const bool log_now = step % log.log_every == 0 || last;
    const bool save_now = log.checkpoint_every > 0 && step % log.checkpoint_every == 0;
    const bool sample_now = log.sample_every > 0 && step % log.sample_every == 0 && !last;
    if (!(log_now || save_now || sample_now || g_stop)) continue;
    const StepMetrics m = write_metrics();
    if (log_now) {
      std::printf(
          "step %lld/%lld  loss %.4f (mean of %lld)  grad %.3f  lr %.2e  %.1f img/s  ETA %s\n",
          static_cast<long long>(step), static_cast<long long>(config.training.steps),
          loss_sum / double(loss_count), static_cast<long long>(loss_count), m.grad_norm,
          m.learning_rate, img_s, progress.eta(step).c_str());
      std::fflush(stdout);
      loss_sum = 0;
      loss_count = 0;
    }
    if (save_now) save();
    if (sample_now) sample("at step " + std::to_string(step));
  }
  std::signal(SIGINT, previous);
  write_metrics();  // Ctrl-C between log lines: the steps run so far
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
