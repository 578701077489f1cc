#include "apps/smoke_run.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <numbers>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/optimizer.h"
#include "engine/executor.h"
#include "engine/random.h"
#include "engine/scheduler.h"
#include "engine/tiny_denoiser.h"

namespace ddpm::app {

namespace {

// A smooth random image in [-1, 1]: two random plane waves per channel.
void synthetic_image(ddpm::Philox& rng, int64_t size, int64_t channels, float* out) {
  double fx[2], fy[2], ph[2];
  for (int k = 0; k < 2; ++k) {
    fx[k] = rng.uniform() * 0.6;
    fy[k] = rng.uniform() * 0.6;
    ph[k] = rng.uniform() * 2 * std::numbers::pi;
  }
  for (int64_t y = 0; y < size; ++y)
    for (int64_t x = 0; x < size; ++x)
      for (int64_t c = 0; c < channels; ++c) {
        const double v = 0.5 * std::sin(fx[0] * x + fy[0] * y + ph[0] + c) +
                         0.5 * std::cos(fx[1] * x - fy[1] * y + ph[1] - c);
        out[(y * size + x) * channels + c] = static_cast<float>(v);
      }
}

}  // namespace

int run_smoke(const SmokeOptions& o) {
  using namespace ddpm;
  if (o.device != "auto" && o.device != "cpu" && o.device != "cuda")
    throw std::invalid_argument("--device '" + o.device + "': expected auto, cpu or cuda");
  std::cout << "smoke: runs on the CPU (its loop runs AdamW on host memory)\n";
  TinyDenoiserConfig cfg;
  cfg.batch = o.batch;
  cfg.size = o.size;
  const TinyDenoiser model = build_tiny_denoiser(cfg);
  CpuBackend cpu;
  Executor ex(model.graph, cpu, ExecMode::training);
  ex.init_parameters(o.seed);
  std::printf(
      "smoke: tiny denoiser, %lld parameters, batch %lld, %lldx%lld, arena %.2f MiB "
      "(%.2f MiB without reuse)\n",
      static_cast<long long>(model.graph.num_parameters), static_cast<long long>(o.batch),
      static_cast<long long>(o.size), static_cast<long long>(o.size),
      ex.plan().peak_bytes / 1048576.0, ex.plan().unshared_bytes / 1048576.0);

  // The DDPM forward process with the paper's linear schedule (diffusers' defaults).
  const Scheduler schedule{SchedulerConfig{}};
  const auto kT = uint64_t(schedule.config().num_train_timesteps);

  const int64_t n = ex.parameters().numel(), pix = o.size * o.size * cfg.channels;
  std::vector<float> m(static_cast<size_t>(n)), v(static_cast<size_t>(n));
  std::vector<float> x0(static_cast<size_t>(o.batch * pix)), xt(x0.size()), eps(x0.size());
  std::vector<float> ts(static_cast<size_t>(o.batch));
  Philox data_rng(o.seed, /*stream=*/1u << 20);
  AdamWConfig adam;
  adam.lr = o.lr;
  double first = 0, window = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int step = 1; step <= o.steps; ++step) {
    for (int64_t i = 0; i < o.batch; ++i) {
      synthetic_image(data_rng, o.size, cfg.channels, x0.data() + i * pix);
      const auto t = int64_t(data_rng.below(kT));
      ts[static_cast<size_t>(i)] = static_cast<float>(t);
      for (int64_t j = i * pix; j < (i + 1) * pix; ++j) {
        eps[size_t(j)] = static_cast<float>(data_rng.normal());
        xt[size_t(j)] =
            static_cast<float>(schedule.sqrt_alpha_cumprod(t) * x0[size_t(j)] +
                               schedule.sqrt_one_minus_alpha_cumprod(t) * eps[size_t(j)]);
      }
    }
    ex.write(model.x_t, xt);
    ex.write(model.timesteps, ts);
    ex.write(model.target, eps);
    const RunContext ctx{o.seed, static_cast<uint64_t>(step), true};
    ex.forward(ctx);
    ex.backward(ctx);
    const double loss = ex.read(ex.value(model.loss))[0];
    if (!std::isfinite(loss)) {
      std::fprintf(stderr, "smoke: loss is %f at step %d\n", loss, step);
      return 1;
    }
    cpu::adamw_step(ex.parameters().ptr<float>(), ex.gradients().ptr<float>(), m.data(), v.data(),
                    n, adam, step);
    if (step == 1) first = loss;
    window += loss;
    if (step % o.log_every == 0 || step == o.steps) {
      const int count = step % o.log_every ? step % o.log_every : o.log_every;
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("step %5d  loss %.4f (mean of last %d)  %.1f img/s\n", step, window / count,
                  count, step * o.batch / secs);
      std::fflush(stdout);
      window = 0;
    }
  }
  std::printf("smoke: first loss %.4f, done\n", first);
  return 0;
}

}  // namespace ddpm::app
