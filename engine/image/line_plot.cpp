#include "engine/image/line_plot.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace ddpm {

namespace {

// 5x7 glyphs, one 5-bit row each (bit 4 the leftmost pixel), for the
// characters axis labels and series titles use; others draw as a box.
struct Glyph {
  char c;
  std::array<uint8_t, 7> rows;
};
constexpr Glyph kFont[] = {
    {'0', {14, 17, 19, 21, 25, 17, 14}}, {'1', {4, 12, 4, 4, 4, 4, 14}},
    {'2', {14, 17, 1, 2, 4, 8, 31}},     {'3', {30, 1, 1, 14, 1, 1, 30}},
    {'4', {2, 6, 10, 18, 31, 2, 2}},     {'5', {31, 16, 30, 1, 1, 17, 14}},
    {'6', {6, 8, 16, 30, 17, 17, 14}},   {'7', {31, 1, 2, 4, 8, 8, 8}},
    {'8', {14, 17, 17, 14, 17, 17, 14}}, {'9', {14, 17, 17, 15, 1, 2, 12}},
    {'.', {0, 0, 0, 0, 0, 12, 12}},      {'-', {0, 0, 0, 31, 0, 0, 0}},
    {'+', {0, 4, 4, 31, 4, 4, 0}},       {':', {0, 12, 12, 0, 12, 12, 0}},
    {'/', {1, 2, 2, 4, 8, 8, 16}},       {'(', {2, 4, 8, 8, 8, 4, 2}},
    {')', {8, 4, 2, 2, 2, 4, 8}},        {' ', {0, 0, 0, 0, 0, 0, 0}},
    {'a', {0, 0, 14, 1, 15, 17, 15}},    {'b', {16, 16, 22, 25, 17, 17, 30}},
    {'c', {0, 0, 14, 16, 16, 17, 14}},   {'d', {1, 1, 13, 19, 17, 17, 15}},
    {'e', {0, 0, 14, 17, 31, 16, 14}},   {'f', {6, 9, 8, 28, 8, 8, 8}},
    {'g', {0, 15, 17, 17, 15, 1, 14}},   {'h', {16, 16, 22, 25, 17, 17, 17}},
    {'i', {4, 0, 12, 4, 4, 4, 14}},      {'k', {16, 16, 18, 20, 24, 20, 18}},
    {'l', {12, 4, 4, 4, 4, 4, 14}},      {'m', {0, 0, 26, 21, 21, 17, 17}},
    {'n', {0, 0, 22, 25, 17, 17, 17}},   {'o', {0, 0, 14, 17, 17, 17, 14}},
    {'p', {0, 30, 17, 17, 30, 16, 16}},  {'r', {0, 0, 22, 25, 16, 16, 16}},
    {'s', {0, 0, 14, 16, 14, 1, 30}},    {'t', {8, 8, 28, 8, 8, 9, 6}},
    {'u', {0, 0, 17, 17, 17, 19, 13}},   {'w', {0, 0, 17, 17, 21, 21, 10}},
    {'x', {0, 0, 17, 10, 4, 10, 17}},    {'y', {0, 17, 17, 17, 15, 1, 14}},
};
constexpr std::array<uint8_t, 7> kBox = {31, 17, 17, 17, 17, 17, 31};
constexpr int kScale = 2;  // text pixels per font pixel
constexpr int kCharW = 6 * kScale, kCharH = 7 * kScale;

struct Rgb {
  uint8_t r, g, b;
};
constexpr Rgb kAxis{90, 90, 90}, kText{30, 30, 30}, kRaw{190, 190, 190}, kLine{31, 94, 180};

class Canvas {
 public:
  explicit Canvas(Image8& im) : im_(im) {}
  void set(int x, int y, Rgb c) {
    if (x < 0 || y < 0 || x >= im_.width || y >= im_.height) return;
    uint8_t* p = &im_.pixels[size_t((int64_t(y) * im_.width + x) * 3)];
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
  }
  void line(int x0, int y0, int x1, int y1, Rgb c) {  // Bresenham
    const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
    const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    for (int err = dx + dy;;) {
      set(x0, y0, c);
      if (x0 == x1 && y0 == y1) return;
      const int e2 = 2 * err;
      if (e2 >= dy) err += dy, x0 += sx;
      if (e2 <= dx) err += dx, y0 += sy;
    }
  }
  void text(int x, int y, const std::string& s, Rgb c) {
    for (char ch : s) {
      const std::array<uint8_t, 7>* rows = &kBox;
      for (const Glyph& g : kFont)
        if (g.c == ch) rows = &g.rows;
      // Descenders sit two font rows lower than the other letters.
      const int drop = (ch == 'g' || ch == 'p' || ch == 'y') ? 2 * kScale : 0;
      for (int r = 0; r < 7; ++r)
        for (int b = 0; b < 5; ++b)
          if ((*rows)[size_t(r)] >> (4 - b) & 1)
            for (int i = 0; i < kScale * kScale; ++i)
              set(x + b * kScale + i % kScale, y + drop + r * kScale + i / kScale, c);
      x += kCharW;
    }
  }

 private:
  Image8& im_;
};

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

void draw_panel(Canvas& cv, const PlotSeries& s, int top, int width, int height) {
  const int left = 11 * kCharW, right = width - 16, y0 = top + kCharH + 12,
            y1 = top + height - kCharH - 14;
  cv.text(left, top + 6, s.title, kText);
  std::vector<size_t> ok;
  for (size_t i = 0; i < s.y.size(); ++i)
    if (std::isfinite(s.y[i]) && std::isfinite(s.x[i])) ok.push_back(i);
  cv.line(left, y0, left, y1, kAxis), cv.line(left, y1, right, y1, kAxis);
  if (ok.empty()) {
    cv.text(left + 10, (y0 + y1) / 2, "no finite values", kText);
    return;
  }
  double xmin = s.x[ok.front()], xmax = xmin, ymin = s.y[ok.front()], ymax = ymin;
  for (size_t i : ok) {
    xmin = std::min(xmin, s.x[i]), xmax = std::max(xmax, s.x[i]);
    ymin = std::min(ymin, s.y[i]), ymax = std::max(ymax, s.y[i]);
  }
  const bool log_y = ymin > 0 && ymax > 10 * ymin;
  auto fy = [&](double v) { return log_y ? std::log10(v) : v; };
  double lo = fy(ymin), hi = fy(ymax);
  if (hi - lo < 1e-12 * std::max(1.0, std::abs(hi))) lo -= 0.5, hi += 0.5;
  if (xmax <= xmin) xmax = xmin + 1;
  auto px = [&](double x) {
    return left + int(std::lround((x - xmin) / (xmax - xmin) * (right - left)));
  };
  auto py = [&](double y) { return y1 - int(std::lround((fy(y) - lo) / (hi - lo) * (y1 - y0))); };
  for (size_t i : ok) cv.set(px(s.x[i]), py(s.y[i]), kRaw);
  // The smoothed line: an EMA with TensorBoard's bias correction, so its start
  // is not pulled towards zero.
  double ema = 0, weight = 0;
  int last_x = 0, last_y = 0;
  for (size_t n = 0; n < ok.size(); ++n) {
    const double v = fy(s.y[ok[n]]);
    ema = s.smoothing * ema + (1 - s.smoothing) * v;
    weight = s.smoothing * weight + (1 - s.smoothing);
    const double shown = weight > 0 ? ema / weight : v;
    const int x = px(s.x[ok[n]]);
    const int y = y1 - int(std::lround((shown - lo) / (hi - lo) * (y1 - y0)));
    if (n > 0) cv.line(last_x, last_y, x, y, kLine);
    last_x = x, last_y = y;
  }
  const std::string top_label = number(log_y ? std::pow(10, hi) : hi),
                    bottom_label = number(log_y ? std::pow(10, lo) : lo);
  cv.text(left - int(top_label.size() + 1) * kCharW, y0, top_label, kText);
  cv.text(left - int(bottom_label.size() + 1) * kCharW, y1 - kCharH, bottom_label, kText);
  if (log_y) cv.text(right - 9 * kCharW, top + 6, "log scale", kAxis);
  cv.text(left, y1 + 6, "step " + number(xmin), kText);
  const std::string end = number(xmax);
  cv.text(right - int(end.size()) * kCharW, y1 + 6, end, kText);
}

}  // namespace

Image8 render_line_plot(const std::vector<PlotSeries>& panels, int width, int panel_height) {
  if (width < 200 || panel_height < 120)
    throw std::invalid_argument("render_line_plot: at least 200 x 120 pixels per panel, got " +
                                std::to_string(width) + " x " + std::to_string(panel_height));
  for (const PlotSeries& s : panels)
    if (s.x.size() != s.y.size())
      throw std::invalid_argument("render_line_plot: series '" + s.title + "' has " +
                                  std::to_string(s.x.size()) + " x values and " +
                                  std::to_string(s.y.size()) + " y values");
  Image8 im;
  im.width = width;
  im.height = int64_t(panel_height) * int64_t(std::max<size_t>(panels.size(), 1));
  im.channels = 3;
  im.pixels.assign(size_t(im.width * im.height * 3), 255);
  Canvas cv(im);
  for (size_t i = 0; i < panels.size(); ++i)
    draw_panel(cv, panels[i], int(i) * panel_height, width, panel_height);
  return im;
}

}  // namespace ddpm
