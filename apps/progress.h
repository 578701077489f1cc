// Terminal progress for long runs: a rate and an ETA, printed as lines (so a
// log file reads as well as a terminal).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace ddpm::app {

class Progress {
 public:
  Progress(int64_t total, int64_t done = 0) : total_(total), start_done_(done) {}
  // Seconds since construction; items per second since then; the ETA as "3m12s".
  double elapsed() const;
  double rate(int64_t done) const;
  std::string eta(int64_t done) const;

 private:
  int64_t total_, start_done_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

std::string format_duration(double seconds);

}  // namespace ddpm::app
