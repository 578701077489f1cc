// A small line chart rendered to pixels, for the trainer's loss curve
// (loss.png beside metrics.jsonl): stacked panels, each one series against the
// step, raw points in light grey and a smoothed line on top, a log-scale y
// axis when the values span more than a decade, and the axis limits written
// with a built-in 5x7 pixel font (no font library is needed).
#pragma once

#include <string>
#include <vector>

#include "engine/image/grid.h"

namespace ddpm {

struct PlotSeries {
  std::string title;       // e.g. "loss"
  std::vector<double> x;   // the steps
  std::vector<double> y;   // same length; non-finite values are skipped
  double smoothing = 0.9;  // the EMA of the drawn line (0: none)
};

// One panel per series, stacked, `width` x `panel_height` each, RGB. Throws
// std::invalid_argument for mismatched lengths or a size under 200 x 120.
Image8 render_line_plot(const std::vector<PlotSeries>& panels, int width = 800,
                        int panel_height = 300);

}  // namespace ddpm
