#include "apps/metrics_plot.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/image/line_plot.h"
#include "engine/image/png_writer.h"

namespace ddpm::app {

void plot_metrics(const std::filesystem::path& metrics, const std::filesystem::path& png) {
  std::ifstream in(metrics);
  if (!in) throw std::runtime_error("cannot read " + metrics.string());
  PlotSeries loss{"loss", {}, {}, 0.95}, norm{"gradient norm (before clipping)", {}, {}, 0.95};
  std::string line;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number()) continue;
    const double step = j["step"].get<double>();
    if (j.contains("loss") && j["loss"].is_number())
      loss.x.push_back(step), loss.y.push_back(j["loss"].get<double>());
    if (j.contains("grad_norm") && j["grad_norm"].is_number())
      norm.x.push_back(step), norm.y.push_back(j["grad_norm"].get<double>());
  }
  write_png(png, render_line_plot({loss, norm}));
}

}  // namespace ddpm::app
