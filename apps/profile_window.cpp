// --profile-steps: parsing, the range check, and the cudaProfilerStart/Stop
// calls (profile_window.h). CUDA builds compile the calls in
// (DDPM_APP_CUDA_PROFILER); the runtime behind them is CUDA's, or the
// emulator's no-ops in the emulated apps.
#include "apps/profile_window.h"

#include <charconv>
#include <stdexcept>
#include <string_view>

#if DDPM_APP_CUDA_PROFILER
#include <cuda_profiler_api.h>
#include <cuda_runtime_api.h>
#endif

namespace ddpm::app {

namespace {

const char kFlag[] = "--profile-steps";

bool parse_step(std::string_view s, int64_t& out) {
  const char* end = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(s.data(), end, out);
  return !s.empty() && ec == std::errc{} && ptr == end;
}

#if DDPM_APP_CUDA_PROFILER
// The device's queue drained, then the profiler call; errors name both.
void call_profiler(cudaError_t (*call)(), const char* name) {
  cudaError_t e = cudaDeviceSynchronize();
  if (e == cudaSuccess) e = call();
  if (e != cudaSuccess)
    throw std::runtime_error(std::string(kFlag) + ": " + name + " failed: " + cudaGetErrorName(e) +
                             " (" + cudaGetErrorString(e) + ")");
}
#endif

}  // namespace

std::string StepWindow::str() const {
  return std::to_string(first) + ":" + std::to_string(last);
}

StepWindow parse_profile_steps(const std::string& text) {
  if (text.empty()) return {};
  const std::string_view s(text);
  const size_t colon = s.find(':');
  StepWindow w;
  if (colon == std::string_view::npos || !parse_step(s.substr(0, colon), w.first) ||
      !parse_step(s.substr(colon + 1), w.last))
    throw std::invalid_argument(std::string(kFlag) + " '" + text +
                                "': expected A:B, the first and last step of the window (e.g. "
                                "10:12)");
  if (w.first < 1 || w.last < w.first)
    throw std::invalid_argument(std::string(kFlag) + " '" + text +
                                "': steps count from 1 and the window needs 1 <= A <= B");
  return w;
}

void check_profile_steps(const StepWindow& w, int64_t first_step, int64_t last_step,
                         const std::string& run) {
  if (w.empty()) return;
  if (w.first < first_step || w.last > last_step)
    throw std::invalid_argument(std::string(kFlag) + " " + w.str() + ": outside the run's steps " +
                                std::to_string(first_step) + " to " + std::to_string(last_step) +
                                " (" + run + ")");
}

ProfileWindow::ProfileWindow(const StepWindow& window, bool cuda, std::ostream& log)
    : window_(window), cuda_(cuda), log_(log) {
  if (window_.empty()) return;
#if !DDPM_APP_CUDA_PROFILER
  cuda_ = false;
#endif
  if (!cuda_)
    log_ << kFlag << " " << window_.str()
         << ": ignored (no CUDA profiler on this device; the window is for Nsight on a GPU)\n";
}

ProfileWindow::~ProfileWindow() {
  if (!open_) return;
#if DDPM_APP_CUDA_PROFILER
  cudaProfilerStop();  // no throw here: the window's end is lost, the run's error is not
#endif
  log_ << "profile window: cudaProfilerStop at exit (window " << window_.str() << " cut short)"
       << std::endl;
}

void ProfileWindow::before(int64_t first, int64_t last) {
  if (!cuda_ || open_ || done_ || window_.empty()) return;
  if (last < window_.first || first > window_.last) return;
#if DDPM_APP_CUDA_PROFILER
  call_profiler(cudaProfilerStart, "cudaProfilerStart");
#endif
  open_ = true;
  log_ << "profile window: cudaProfilerStart before step " << first;
  if (last != first) log_ << " (steps " << first << " to " << last << " are one launch)";
  log_ << std::endl;
}

void ProfileWindow::after(int64_t last) {
  if (!open_ || last < window_.last) return;
#if DDPM_APP_CUDA_PROFILER
  call_profiler(cudaProfilerStop, "cudaProfilerStop");
#endif
  open_ = false;
  done_ = true;
  log_ << "profile window: cudaProfilerStop after step " << last << std::endl;
}

}  // namespace ddpm::app
