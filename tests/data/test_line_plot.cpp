// The loss-curve renderer (engine/image/line_plot.h): where the line lands,
// the log axis, skipped non-finite values, and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "engine/image/line_plot.h"

namespace ddpm {
namespace {

// Pixels of the smoothed line's colour (31, 94, 180) in columns [x0, x1).
int line_pixels(const Image8& im, int64_t x0, int64_t x1, int64_t y0 = 0, int64_t y1 = -1) {
  if (y1 < 0) y1 = im.height;
  int n = 0;
  for (int64_t y = y0; y < y1; ++y)
    for (int64_t x = x0; x < x1; ++x) {
      const uint8_t* p = &im.pixels[size_t((y * im.width + x) * 3)];
      n += p[0] == 31 && p[1] == 94 && p[2] == 180;
    }
  return n;
}

TEST(LinePlot, FallingSeriesRunsFromTopLeftToBottomRight) {
  PlotSeries s{"loss", {}, {}, 0.0};  // no smoothing: the line goes through the points
  for (int i = 0; i <= 100; ++i) s.x.push_back(i), s.y.push_back(1.0 - i / 100.0);
  const Image8 im = render_line_plot({s}, 400, 200);
  ASSERT_EQ(im.width, 400);
  ASSERT_EQ(im.height, 200);
  ASSERT_EQ(im.channels, 3);
  // Left quarter of the plot: the line is in the upper half; right quarter: lower half.
  EXPECT_GT(line_pixels(im, 140, 180, 0, 100), 0);
  EXPECT_EQ(line_pixels(im, 140, 180, 100, 200), 0);
  EXPECT_GT(line_pixels(im, 340, 380, 100, 200), 0);
  EXPECT_EQ(line_pixels(im, 340, 380, 0, 100), 0);
}

TEST(LinePlot, PanelsStackAndNonFiniteValuesAreSkipped) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  PlotSeries a{"loss", {1, 2, 3, 4}, {1.0, nan, 0.5, 0.25}, 0.5};
  PlotSeries b{"grad norm", {1, 2, 3, 4}, {nan, nan, nan, nan}, 0.5};
  const Image8 im = render_line_plot({a, b}, 300, 150);
  EXPECT_EQ(im.height, 300);
  EXPECT_GT(line_pixels(im, 0, 300, 0, 150), 0);    // the first panel has its line
  EXPECT_EQ(line_pixels(im, 0, 300, 150, 300), 0);  // the second has no finite value
}

TEST(LinePlot, RejectsMismatchedSeriesAndTinyImages) {
  EXPECT_THROW(render_line_plot({PlotSeries{"x", {1, 2}, {1}, 0}}), std::invalid_argument);
  EXPECT_THROW(render_line_plot({PlotSeries{"x", {1}, {1}, 0}}, 100, 100), std::invalid_argument);
}

}  // namespace
}  // namespace ddpm
