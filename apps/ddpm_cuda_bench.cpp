// ddpm_cuda_bench: times our compute-bound kernels on every distinct conv,
// attention and linear shape of a UNet2DModel (default: the DDPM CIFAR-10
// model at batch 128) against cuDNN / cuBLAS in the same process, and writes
// the table as markdown (optionally into tools/PERFORMANCE.md between markers).
//
// --list prints the shapes and their FLOPs and needs no GPU.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

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
      "against cuDNN and cuBLAS (CUDA events, warm-up, median of repeats)"};
  std::string config_path;
  ddpm::bench::BenchOptions o;
  bool list = false;
  std::string markdown, performance_md;
  app.add_option("--config", config_path,
                 "A UNet2DModel config.json (default: the DDPM CIFAR-10 model)")
      ->check(CLI::ExistingFile);
  app.add_option("--batch", o.batch, "Batch size")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--warmup", o.warmup, "Untimed launches first")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--repeats", o.repeats, "Timed launches; the median is reported")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--conv-impl", o.conv_impls,
                 "Convolution implementations to time: simt, tensor_core, cudnn")
      ->check(CLI::IsMember({"simt", "tensor_core", "cudnn"}))
      ->capture_default_str();
  app.add_flag("--list", list, "Print the shapes and their FLOPs and exit (no GPU needed)");
  app.add_option("--markdown", markdown, "Also write the result table to this file");
  app.add_option("--performance-md", performance_md,
                 "Replace the section between the kernel-bench markers of this file (e.g. "
                 "tools/PERFORMANCE.md) with the table");
  CLI11_PARSE(app, argc, argv);
  try {
    const ddpm::UNetConfig config =
        config_path.empty() ? ddpm::UNetConfig::cifar10() : ddpm::load_unet_config(config_path);
    const auto shapes = ddpm::bench::model_shapes(config, o.batch);
    if (list) {
      print_shapes(shapes, o.batch);
      return 0;
    }
    o.model = config_path.empty() ? "DDPM CIFAR-10 UNet" : config_path;
    const std::string table = ddpm::bench::run_kernel_bench(shapes, o, std::cout);
    if (!markdown.empty()) ddpm::write_file_atomically(markdown, table);
    if (!performance_md.empty()) ddpm::bench::replace_marked_section(performance_md, table);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "ddpm_cuda_bench: error: " << e.what() << "\n";
    return 1;
  }
}
