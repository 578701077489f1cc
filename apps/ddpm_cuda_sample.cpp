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
  app.add_option("--device", o.device, "auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
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
