// ddpm_cuda_sample: samples images from a DDPM: a diffusers UNet2DModel or
// DDPMPipeline folder, or a checkpoint written by ddpm_cuda_train.
#include <CLI/CLI.hpp>

#include <iostream>

#include "apps/sample_run.h"

int main(int argc, char** argv) {
  CLI::App app{"ddpm_cuda_sample: sample images from a DDPM (DDPM ancestral or DDIM steps)"};
  ddpm::app::SampleOptions o;
  std::string model, out;
  double eta = 0;
  app.add_option("--model", model,
                 "A diffusers UNet2DModel or DDPMPipeline folder, or a run's checkpoint/")
      ->required();
  app.add_option("--steps", o.steps, "Denoising steps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--scheduler", o.scheduler, "ddpm or ddim (default: the folder's, else ddpm)")
      ->check(CLI::IsMember({"ddpm", "ddim"}));
  auto* eta_opt = app.add_option("--eta", eta, "DDIM eta: 0 deterministic, 1 DDPM-like noise")
                      ->check(CLI::NonNegativeNumber);
  app.add_option("--timestep-spacing", o.timestep_spacing,
                 "leading, linspace or trailing (default: the folder's)")
      ->check(CLI::IsMember({"leading", "linspace", "trailing"}));
  app.add_option("--num", o.num, "Number of images")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--batch", o.batch, "Images per batch")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--seed", o.seed, "Seed: image i's noise depends on (seed, i) only")
      ->capture_default_str();
  app.add_option("--out", out, "Grid PNG path; beside it <name>_images/ and <name>.npy")
      ->capture_default_str();
  app.add_option("--columns", o.columns, "Grid columns (default: square)")
      ->check(CLI::PositiveNumber);
  app.add_option("--first-image", o.first_image,
                 "Index of the first image: samples images [K, K + num) of the run that --seed "
                 "defines (image i's noise depends on (seed, i) only), so a large job can be "
                 "sharded across GPUs or machines; the PNGs are named by that index")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--graph", o.graph,
                 "CUDA backend's sampling loop: off (eager launches), step (one denoising step "
                 "captured as a CUDA graph, replayed per step) or loop (the whole loop one graph "
                 "launch per batch; CUDA 12.4+ runtime and driver). Default: loop where "
                 "supported, else step. Bitwise the same images in every mode; the CPU runs "
                 "its host loop whatever this says")
      ->check(CLI::IsMember({"off", "step", "loop"}));
  app.add_option("--profile-steps", o.profile_steps,
                 "A:B: sampling steps A to B (from 1, counted over the whole run, batch after "
                 "batch) between cudaProfilerStart and cudaProfilerStop, for nsys "
                 "--capture-range=cudaProfilerApi or ncu --profile-from-start off; with --graph "
                 "loop, the whole batches holding them (one launch each). Ignored on the CPU");
  app.add_option("--device", o.device, "auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--precision", o.precision,
                 "auto, bf16 or fp32. bf16: mixed precision (the UNet's activations in bf16 on "
                 "tensor cores, its weights rounded to bf16 from the fp32 checkpoint; x_t kept "
                 "in fp32 between steps; CUDA only). auto: bf16 on a GPU with bf16 tensor cores "
                 "(compute capability 8.0+), else fp32")
      ->check(CLI::IsMember({"auto", "bf16", "fp32"}))
      ->capture_default_str();
  app.add_flag("--print-model", o.print_model,
               "Print the model summary and planned memory, then exit");
  app.footer(
      "--device auto or cuda samples on the GPU when this build has CUDA and one is present;\n"
      "on the CPU, 1000 steps of the CIFAR-10 model take minutes per image (try --scheduler\n"
      "ddim --steps 50).");
  CLI11_PARSE(app, argc, argv);
  o.model = model;
  if (!out.empty()) o.out = out;
  if (*eta_opt) o.eta = eta;
  try {
    return ddpm::app::run_sampling(o);
  } catch (const std::exception& e) {
    std::cerr << "ddpm_cuda_sample: error: " << e.what() << "\n";
    return 1;
  }
}
