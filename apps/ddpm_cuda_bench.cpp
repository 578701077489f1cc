// ddpm_cuda_bench: times our compute-bound kernels on every distinct conv,
// attention and linear shape of a UNet2DModel (default: the DDPM CIFAR-10
// model at batch 128) against cuDNN / cuBLAS in the same process, and writes
// the table as markdown (optionally into tools/PERFORMANCE.md between markers).
//
// --list prints the shapes and their FLOPs and needs no GPU.
// --e2e times the whole app path instead (training and sampling in each graph
// mode, on any device: bench/e2e_bench.h), with a JSON result.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "apps/bench/e2e_bench.h"
#include "apps/bench/e2e_report.h"
#include "apps/bench/kernel_bench.h"
#include "apps/bench/markdown_section.h"
#include "apps/bench/model_shapes.h"
#include "engine/checkpoint/atomic_file.h"
#include "engine/unet_config.h"

namespace {

void print_shapes(const ddpm::bench::ModelShapes& m, int64_t batch) {
  std::printf("batch %lld\n%-44s %5s %8s  %s\n", static_cast<long long>(batch), "convolution",
              "uses", "GFLOP", "first use");
  double total = 0;
  for (const auto& c : m.convs) {
    const double gflop = 2e-9 * double(c.macs());
    total += gflop * c.count;
    std::printf("%-44s %5d %8.2f  %s%s\n", c.describe().c_str(), c.count, gflop,
                c.first_name.c_str(), c.count_with_input_grad < c.count ? " (no input grad)" : "");
  }
  for (const auto& a : m.attentions) {
    const double gflop = 2e-9 * double(a.macs());
    total += gflop * a.count;
    std::printf("attention %-34s %5d %8.2f  %s\n", a.describe().c_str(), a.count, gflop,
                a.first_name.c_str());
  }
  for (const auto& l : m.linears) {
    const double gflop = 2e-9 * double(l.macs());
    total += gflop * l.count;
    std::printf("linear %-37s %5d %8.3f  %s\n", l.describe().c_str(), l.count, gflop,
                l.first_name.c_str());
  }
  std::printf("forward total %.2f GFLOP (%.3f GFLOP per image)\n", total, total / double(batch));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "ddpm_cuda_bench: time our convolution, attention and GEMM kernels on a UNet's shapes\n"
      "against cuDNN and cuBLAS (CUDA events, warm-up, median of repeats); or, with --e2e,\n"
      "training and sampling through the whole app path in each graph mode"};
  std::string config_path;
  ddpm::bench::BenchOptions o;
  ddpm::bench::E2eOptions e2e;
  bool list = false, run_e2e = false;
  std::string markdown, performance_md, json_path, e2e_data = "synthetic";
  app.add_option("--config", config_path,
                 "A UNet2DModel config.json (default: the DDPM CIFAR-10 model); with --e2e a "
                 "training config (e.g. apps/configs/ddpm_cifar10.json)")
      ->check(CLI::ExistingFile);
  auto* batch_opt = app.add_option("--batch", o.batch,
                                   "Batch size (--e2e: the training batch, default the config's)")
                        ->check(CLI::PositiveNumber)
                        ->capture_default_str();
  app.add_option("--warmup", o.warmup,
                 "Untimed launches first (--e2e: untimed training steps per mode, at least 1)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--e2e", run_e2e,
               "Time the whole app path: training img/s per --graph mode, 1000-step sampling "
               "img/s per mode, the batch-1 sampling step, launches per step, device memory");
  app.add_option("--sample-batch", e2e.sample_batch, "--e2e: sampling batch (default --batch)")
      ->check(CLI::PositiveNumber);
  app.add_option("--steps", e2e.steps,
                 "--e2e: sampling steps timed per mode (img/s reported for 1000 steps)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--train-steps", e2e.train_steps, "--e2e: training steps timed per mode")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--b1-steps", e2e.b1_steps, "--e2e: batch-1 sampling steps timed per mode")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--phases", e2e.phases, "--e2e: which of train, sample, b1 to run")
      ->delimiter(',')
      ->check(CLI::IsMember({"train", "sample", "b1"}))
      ->capture_default_str();
  app.add_option("--data", e2e_data,
                 "--e2e: training images: synthetic (random, no dataset needed) or config (the "
                 "config's dataset)")
      ->check(CLI::IsMember({"synthetic", "config"}))
      ->capture_default_str();
  app.add_option("--device", e2e.device, "--e2e: auto, cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--precision", e2e.precision,
                 "--e2e: auto, bf16 or fp32: the precision training and sampling run in. bf16: "
                 "mixed precision (bf16 activations on tensor cores, fp32 master weights; CUDA "
                 "only). auto: bf16 on a GPU with bf16 tensor cores (compute capability 8.0+), "
                 "else fp32. Reported in the table and the JSON")
      ->check(CLI::IsMember({"auto", "bf16", "fp32"}))
      ->capture_default_str();
  app.add_option("--json", json_path, "--e2e: also write the result as JSON to this file");
  app.add_option("--repeats", o.repeats, "Timed launches; the median is reported")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--conv-impl", o.conv_impls,
                 "Convolution implementations to time: simt, tensor_core, cudnn")
      ->check(CLI::IsMember({"simt", "tensor_core", "cudnn"}))
      ->capture_default_str();
  app.add_flag("--bf16,!--no-bf16", o.bf16,
               "Also time our bf16 kernels against cuDNN / cuBLAS in bf16 (and our fp32 kernels) "
               "on every shape, checking our outputs against theirs (on by default)")
      ->capture_default_str();
  app.add_flag("--list", list, "Print the shapes and their FLOPs and exit (no GPU needed)");
  app.add_option("--markdown", markdown, "Also write the result table to this file");
  app.add_option("--performance-md", performance_md,
                 "Replace the section between the kernel-bench markers of this file (e.g. "
                 "tools/PERFORMANCE.md) with the table");
  CLI11_PARSE(app, argc, argv);
  try {
    if (run_e2e) {
      e2e.config = config_path;
      if (*batch_opt) e2e.batch = o.batch;
      e2e.warmup = o.warmup;
      e2e.config_data = e2e_data == "config";
      const nlohmann::json result =
          ddpm::bench::run_e2e_bench(e2e, ddpm::bench::device_probes(), std::cout);
      const std::string table = ddpm::bench::e2e_table(result);
      std::cout << "\n" << table << std::flush;
      if (!json_path.empty()) ddpm::write_file_atomically(json_path, result.dump(2) + "\n");
      if (!markdown.empty()) ddpm::write_file_atomically(markdown, "```\n" + table + "```\n");
      return 0;
    }
    const ddpm::UNetConfig config =
        config_path.empty() ? ddpm::UNetConfig::cifar10() : ddpm::load_unet_config(config_path);
    const auto shapes = ddpm::bench::model_shapes(config, o.batch);
    if (list) {
      print_shapes(shapes, o.batch);
      return 0;
    }
    o.model = config_path.empty() ? "DDPM CIFAR-10 UNet" : config_path;
    const auto result = ddpm::bench::run_kernel_bench(shapes, o, std::cout);
    if (!markdown.empty()) ddpm::write_file_atomically(markdown, result.table);
    if (!performance_md.empty()) ddpm::bench::replace_marked_section(performance_md, result.table);
    if (result.mismatches > 0 || result.failures > 0) {
      std::cerr << "ddpm_cuda_bench: error: bf16 rows: " << result.mismatches
                << " disagree with their reference (MISMATCH in the table), " << result.failures
                << " where our kernel failed\n";
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "ddpm_cuda_bench: error: " << e.what() << "\n";
    return 1;
  }
}
