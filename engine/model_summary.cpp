#include "engine/model_summary.h"

#include <cstdio>

#include "engine/memory_plan.h"
#include "engine/unet.h"

namespace ddpm {

namespace {
std::string mib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / 1048576.0);
  return buf;
}
}  // namespace

std::string describe_model(const UNetConfig& c, int64_t batch) {
  UNetBuildOptions o;
  o.batch = batch;
  o.with_loss = true;
  const UNetGraph train = build_unet(c, o);
  o.with_loss = false;
  const UNetGraph infer = build_unet(c, o);
  std::string out = "UNet2DModel " + std::to_string(c.sample_height) + "x" +
                    std::to_string(c.sample_width) + "x" + std::to_string(c.in_channels) +
                    ", block_out_channels [";
  for (size_t i = 0; i < c.block_out_channels.size(); ++i)
    out += (i ? ", " : "") + std::to_string(c.block_out_channels[i]);
  out += "], layers_per_block " + std::to_string(c.layers_per_block) + "\n";
  char line[160];
  for (const auto& [block, count] : parameters_per_block(train.graph)) {
    std::snprintf(line, sizeof line, "  %-16s %12lld parameters\n", block.c_str(),
                  static_cast<long long>(count));
    out += line;
  }
  std::snprintf(line, sizeof line, "  %-16s %12lld parameters (%s in fp32)\n", "total",
                static_cast<long long>(train.graph.num_parameters),
                mib(size_t(train.graph.num_parameters) * 4).c_str());
  out += line;
  const MemoryPlan pi = plan_memory(infer.graph, ExecMode::inference);
  const MemoryPlan pt = plan_memory(train.graph, ExecMode::training);
  out += "  activations at batch " + std::to_string(batch) + ": inference peak " +
         mib(pi.peak_bytes) + " (" + mib(pi.unshared_bytes) + " without reuse), training peak " +
         mib(pt.peak_bytes) + " (" + mib(pt.unshared_bytes) + " without reuse)\n";
  out += "  graph: " + std::to_string(train.graph.nodes.size()) + " ops in training, " +
         std::to_string(infer.graph.nodes.size()) + " in inference\n";
  return out;
}

}  // namespace ddpm
