#include "apps/sample_run.h"

#include <cmath>
#include <cstdio>
#include <iostream>

#include "apps/profile_window.h"
#include "apps/progress.h"
#include "engine/device_runtime.h"
#include "engine/image/grid.h"
#include "engine/image/npy_writer.h"
#include "engine/image/png_writer.h"
#include "engine/model_io.h"
#include "engine/model_summary.h"
#include "engine/sampler.h"

namespace ddpm::app {

namespace fs = std::filesystem;

int run_sampling(const SampleOptions& o) {
  const ModelFolder model = find_model(o.model);
  const UNetConfig& mc = model.config;
  if (o.print_model) {
    std::cout << describe_model(mc, o.batch);
    return 0;
  }
  const int64_t batch = std::min(o.batch, o.num);
  const int64_t batches = (o.num + batch - 1) / batch, total_steps = batches * o.steps;
  const StepWindow window = parse_profile_steps(o.profile_steps);
  check_profile_steps(
      window, 1, total_steps,
      std::to_string(batches) + " batches of " + std::to_string(o.steps) + " steps");
  const DeviceRuntime dev = make_device_runtime(o.device, std::cout);
  std::string precision_why;
  const std::string precision = resolve_precision(o.precision, dev, &precision_why);
  std::cout << "precision: " << precision << " (" << precision_why << ")" << std::endl;
  // The folder's scheduler, else diffusers' DDPMScheduler defaults; flags override.
  SchedulerConfig sc = model.scheduler.value_or(SchedulerConfig{});
  if (!model.scheduler)
    std::cout << "scheduler: the folder has none; using diffusers' DDPMScheduler defaults\n";
  if (!o.scheduler.empty()) sc.kind = o.scheduler;
  if (o.eta) sc.eta = *o.eta;
  if (!o.timestep_spacing.empty()) sc.timestep_spacing = o.timestep_spacing;
  const Scheduler scheduler(sc);
  const SamplingGraph graph_mode = parse_sampling_graph(o.graph);
  std::cout << "model: " << model.unet_dir.string() << " (" << mc.sample_height << "x"
            << mc.sample_width << "x" << mc.out_channels << ")\nsampling " << o.num << " images";
  if (o.first_image)
    std::cout << " (" << o.first_image << " to " << o.first_image + o.num - 1 << ")";
  std::cout << ", " << sc.kind << " " << o.steps << " steps, batch " << batch << ", seed " << o.seed
            << std::endl;

  UNetBuildOptions bo;
  bo.batch = batch;
  if (precision == "bf16") bo.activations = DType::bf16;
  const UNetGraph unet = build_unet(mc, bo);
  Executor ex(unet.graph, *dev.backend, ExecMode::inference);
  load_unet_weights(model, ex);
  const std::unique_ptr<SamplingLoop> loop =
      dev.make_sampling_loop ? dev.make_sampling_loop(ex, unet) : make_host_sampling_loop(ex, unet);
  std::string how;
  const SamplingGraph resolved = loop->resolve(graph_mode, &how);  // throws if it cannot run
  std::cout << "sampling loop: " << how << std::endl;
  ProfileWindow profile(window, dev.device == Device::cuda, std::cout);

  const int64_t per_image = mc.sample_height * mc.sample_width * mc.out_channels;
  std::vector<float> all(static_cast<size_t>(o.num * per_image));
  Progress progress(total_steps);
  for (int64_t b = 0; b < batches; ++b) {
    SamplerOptions so;
    so.steps = o.steps;
    so.seed = o.seed;
    so.first_image = o.first_image + b * batch;
    so.graph = graph_mode;
    so.progress = [&](int64_t done, int64_t steps) {
      const int64_t global = b * o.steps + done;
      if (done % 50 == 0 || done == steps)
        std::printf("batch %lld/%lld  step %lld/%lld  %.2f steps/s  ETA %s\n",
                    static_cast<long long>(b + 1), static_cast<long long>(batches),
                    static_cast<long long>(done), static_cast<long long>(steps),
                    progress.rate(global), progress.eta(global).c_str()),
            std::fflush(stdout);
    };
    // The profile window: step by step where the host enqueues each step;
    // around the batch's one launch in mode loop.
    const int64_t base = b * o.steps;
    if (resolved == SamplingGraph::loop) {
      profile.before(base + 1, base + o.steps);
    } else if (!window.empty()) {
      so.before_step = [&profile, base, steps = o.steps](int64_t i) {
        if (i > 0) profile.after(base + i);
        if (i < steps) profile.before(base + i + 1, base + i + 1);
      };
    }
    std::vector<float> images;
    loop->sample(scheduler, so, images);
    if (resolved == SamplingGraph::loop) profile.after(base + o.steps);
    const int64_t keep = std::min(batch, o.num - b * batch);  // the last batch may be padded
    std::copy(images.begin(), images.begin() + keep * per_image,
              all.begin() + b * batch * per_image);
  }

  const fs::path grid_path = o.out;
  const fs::path stem = grid_path.parent_path() / grid_path.stem();
  if (!grid_path.parent_path().empty()) fs::create_directories(grid_path.parent_path());
  const int64_t columns = o.columns ? o.columns : int64_t(std::ceil(std::sqrt(double(o.num))));
  write_png(grid_path, make_grid(all.data(), o.num, mc.sample_height, mc.sample_width,
                                 mc.out_channels, columns));
  const fs::path each = stem.string() + "_images";
  fs::create_directories(each);
  std::vector<uint8_t> pixels(static_cast<size_t>(per_image));
  std::vector<float> unit(all.size());
  for (int64_t i = 0; i < o.num; ++i) {
    for (int64_t e = 0; e < per_image; ++e)
      pixels[size_t(e)] = to_uint8(all[size_t(i * per_image + e)]);
    char name[32];
    // Named by the image's index in the run: shards of one run (--first-image)
    // can share a folder.
    std::snprintf(name, sizeof name, "%06lld.png", static_cast<long long>(o.first_image + i));
    write_png(each / name, pixels.data(), mc.sample_height, mc.sample_width, mc.out_channels);
  }
  for (size_t i = 0; i < all.size(); ++i) unit[i] = std::clamp(all[i] / 2.0f + 0.5f, 0.0f, 1.0f);
  const std::vector<int64_t> shape{o.num, mc.sample_height, mc.sample_width, mc.out_channels};
  write_npy(stem.string() + ".npy", unit.data(), shape);
  std::cout << "wrote " << grid_path.string() << ", " << each.string() << "/ (" << o.num
            << " PNGs), " << stem.string() << ".npy (NHWC float32 in [0, 1]) in "
            << format_duration(progress.elapsed()) << std::endl;
  return 0;
}

}  // namespace ddpm::app
