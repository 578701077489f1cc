// ddpm_cuda_train: trains a DDPM noise-prediction UNet (diffusers' UNet2DModel)
// from a JSON config, or runs the smoke check (--smoke).
#include <CLI/CLI.hpp>

#include <iostream>

#include "apps/smoke_run.h"
#include "apps/train_run.h"

int main(int argc, char** argv) {
  CLI::App app{"ddpm_cuda_train: train a DDPM (Ho et al. 2020) noise-prediction UNet"};
  ddpm::app::TrainOptions t;
  ddpm::app::SmokeOptions s;
  bool smoke = false;
  int64_t steps = 0, batch = 0;
  uint64_t seed = 0;
  std::string config, resume, out;
  app.add_option("--config", config, "Training config JSON (see apps/configs/)");
  app.add_option("--resume", resume,
                 "Continue from a checkpoint folder (or a run folder holding checkpoint/)");
  app.add_option("--out", out, "Run folder (default runs/<config name>, or the resumed run's)");
  app.add_option("--data", t.data_path, "Dataset path, overriding the config's data.path");
  app.add_option("--data-kind", t.data_kind,
                 "Dataset kind: fashion-mnist, idx, cifar10, png-folder");
  auto* steps_opt = app.add_option("--steps", steps, "Total training steps (overrides the config)")
                        ->check(CLI::PositiveNumber);
  auto* batch_opt = app.add_option("--batch", batch, "Batch size (overrides the config)")
                        ->check(CLI::PositiveNumber);
  auto* seed_opt =
      app.add_option("--seed", seed, "Seed for initialisation, data order, noise, dropout");
  app.add_option("--device", t.device, "auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--precision", t.precision,
                 "auto, bf16 or fp32. bf16: mixed precision (bf16 activations on tensor cores, "
                 "fp32 master weights, optimizer state and EMA; CUDA only). auto: bf16 on a GPU "
                 "with bf16 tensor cores (compute capability 8.0+), else fp32. Overrides the "
                 "config's training.precision; recorded in metrics.jsonl and the checkpoint; on "
                 "--resume this run's choice applies (a warning if it differs from the "
                 "checkpoint's)")
      ->check(CLI::IsMember({"auto", "bf16", "fp32"}))
      ->capture_default_str();
  std::string graph = "on";
  app.add_flag("--check-numerics", t.check_numerics,
               "Check every op's output and gradient for NaN/inf and stop at the first op that "
               "writes one, naming it (slow: a copy to the host after every op; on CUDA the "
               "step runs without its graph)");
  app.add_option("--profile-steps", t.profile_steps,
                 "A:B: training steps A to B (as the log numbers them) between "
                 "cudaProfilerStart and cudaProfilerStop, for nsys "
                 "--capture-range=cudaProfilerApi or ncu --profile-from-start off. Ignored on "
                 "the CPU");
  app.add_option("--graph", graph,
                 "CUDA: 'on' captures the whole training step (batch, forward, loss, backward, "
                 "clip, AdamW, EMA) once as a CUDA graph and replays it; 'off' launches the same "
                 "kernels one by one. Both give bitwise the same run; ignored on the CPU")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_flag("--print-model", t.print_model,
               "Print the model summary and planned memory, then exit");
  app.add_flag("--smoke", smoke,
               "Train the built-in tiny denoiser on synthetic images (a quick check)");
  app.footer(
      "Outputs in the run folder: train_config.json, metrics.jsonl (a JSON line per step,\n"
      "with its precision), samples/step_NNNNNNN.png, checkpoint/ (a diffusers DDPMPipeline\n"
      "with the EMA weights, plus training_state.safetensors for --resume). Ctrl-C saves a\n"
      "checkpoint and exits.\n"
      "--device auto or cuda trains on the GPU when this build has CUDA and one is present;\n"
      "otherwise on the CPU. On the GPU the whole step stays on the device (the host only\n"
      "gathers the batch's images, on a thread, while the step before runs); the loss and\n"
      "grad norm are read back in bulk when a log line is printed.");
  CLI11_PARSE(app, argc, argv);
  try {
    if (smoke) {
      if (t.precision == "bf16")
        throw std::invalid_argument(
            "--smoke trains the built-in tiny denoiser on the CPU in fp32; "
            "--precision bf16 does not apply");
      if (*steps_opt) s.steps = int(steps);
      if (*batch_opt) s.batch = batch;
      if (*seed_opt) s.seed = seed;
      s.device = t.device;
      return ddpm::app::run_smoke(s);
    }
    t.graph = graph == "on";
    t.config = config;
    t.resume = resume;
    t.out = out;
    if (*steps_opt) t.steps = steps;
    if (*batch_opt) t.batch = batch;
    if (*seed_opt) t.seed = seed;
    return ddpm::app::run_training(t);
  } catch (const std::exception& e) {
    std::cerr << "ddpm_cuda_train: error: " << e.what() << "\n";
    return 1;
  }
}
