// e2e_table: the --e2e result as fixed-width text.
#include "apps/bench/e2e_report.h"

#include <cstdio>
#include <string>

namespace ddpm::bench {

namespace {

using json = nlohmann::json;

// A number with `digits` decimals, or "-" for a missing or null field.
std::string num(const json& row, const char* key, int digits) {
  if (!row.contains(key) || !row[key].is_number()) return "-";
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", digits, row[key].get<double>());
  return text;
}

// One row: graph mode, then five columns.
std::string line(const std::string& a, const std::string& b, const std::string& c,
                 const std::string& d, const std::string& e, const std::string& f) {
  char text[256];
  std::snprintf(text, sizeof text, "  %-6s %12s %10s %12s %11s %8s\n", a.c_str(), b.c_str(),
                c.c_str(), d.c_str(), e.c_str(), f.c_str());
  return text;
}

std::string agreement(const json& phase, const char* what) {
  if (!phase.contains("bitwise_equal")) return "";
  return std::string(what) + (phase["bitwise_equal"].get<bool>() ? "bitwise equal" : "DIFFER") +
         "\n";
}

}  // namespace

std::string e2e_table(const json& r) {
  std::string out = "ddpm_cuda_bench --e2e: " + r.value("config", std::string()) + " on " +
                    r.value("device", std::string()) + " (" +
                    std::to_string(r.value("parameters", int64_t(0))) + " parameters)\n";
  out += "precision: " + r.value("precision", std::string("-"));
  if (r.contains("precision_reason")) out += " (" + r["precision_reason"].get<std::string>() + ")";
  out += "\n";
  if (r.contains("train")) {
    const json& t = r["train"];
    out += "\ntraining, batch " + std::to_string(t.value("batch", 0)) + "\n";
    out += line("graph", "img/s", "ms/step", "launches/st", "kernels/st", "MiB");
    for (const json& m : t["modes"])
      out += line(m.value("graph", ""), num(m, "img_per_s", 1), num(m, "step_ms", 2),
                  num(m, "launch_calls_per_step", 1), num(m, "kernels_per_step", 1),
                  num(m, "device_mib", 0));
  }
  if (r.contains("sample")) {
    const json& s = r["sample"];
    out += "\nsampling, batch " + std::to_string(s.value("batch", 0)) + ", DDPM, " +
           std::to_string(s.value("steps", 0)) + " steps timed (img/s scaled to 1000 steps)\n";
    out += line("graph", "img/s@1000", "ms/step", "launches/st", "kernels/st", "MiB");
    for (const json& m : s["modes"])
      out += line(m.value("graph", ""), num(m, "img_per_s_1000_steps", 3), num(m, "step_ms", 2),
                  num(m, "launch_calls_per_step", 2), num(m, "kernels_per_step", 1),
                  num(m, "device_mib", 0));
  }
  if (r.contains("batch1")) {
    const json& b = r["batch1"];
    out += "\nsampling step at batch 1 (" + std::to_string(b.value("steps", 0)) + " steps timed)\n";
    out += line("graph", "ms/step", "", "launches/st", "kernels/st", "MiB");
    for (const json& m : b["modes"])
      out +=
          line(m.value("graph", ""), num(m, "step_ms", 3), "", num(m, "launch_calls_per_step", 2),
               num(m, "kernels_per_step", 1), num(m, "device_mib", 0));
  }
  out += "\n";
  if (r.contains("train")) out += agreement(r["train"], "training parameters, graph on vs off: ");
  if (r.contains("sample")) out += agreement(r["sample"], "sampled images, every graph mode: ");
  if (r.contains("batch1")) out += agreement(r["batch1"], "batch-1 images, every graph mode: ");
  if (r.contains("unet_forward_kernel_nodes") && r["unet_forward_kernel_nodes"].is_number())
    out += "kernels per UNet forward (nodes of a captured forward): " +
           std::to_string(r["unet_forward_kernel_nodes"].get<int64_t>()) + "\n";
  if (r.contains("warning")) out += "NOTE: " + r["warning"].get<std::string>() + "\n";
  out += "launch counts: " + r.value("launch_counts", std::string("-")) + "; elapsed " +
         num(r, "elapsed_s", 1) + " s\n";
  return out;
}

}  // namespace ddpm::bench
