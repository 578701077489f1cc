#include "apps/progress.h"

#include <cmath>
#include <cstdio>

namespace ddpm::app {

double Progress::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

double Progress::rate(int64_t done) const {
  const double t = elapsed();
  return t > 0 ? double(done - start_done_) / t : 0.0;
}

std::string Progress::eta(int64_t done) const {
  const double r = rate(done);
  return r > 0 ? format_duration(double(total_ - done) / r) : "?";
}

std::string format_duration(double s) {
  char buf[32];
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(s) % 60);
  else
    std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(s / 60) % 60);
  return buf;
}

}  // namespace ddpm::app
