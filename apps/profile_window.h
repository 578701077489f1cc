// --profile-steps A:B (ddpm_cuda_train and ddpm_cuda_sample): steps A to B
// of the run, and only they, between cudaProfilerStart and cudaProfilerStop,
// so that `nsys profile --capture-range=cudaProfilerApi` and
// `ncu --profile-from-start off` record just that window (README,
// "Profiling"). Steps are counted from 1: training steps as the log and
// metrics.jsonl number them; sampling steps over the whole run (batch b's
// step i is b * steps + i, b from 0, i from 1). Where one launch runs many
// steps (sampling with --graph loop: a whole batch) the window widens to
// those launches.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

namespace ddpm::app {

// Steps first..last, inclusive; empty() when the flag was not given.
struct StepWindow {
  int64_t first = 0, last = 0;
  bool empty() const { return first == 0; }
  std::string str() const;  // "A:B"
};

// "A:B" with 1 <= A <= B (A:A is one step); "" gives an empty window.
// Anything else: std::invalid_argument naming --profile-steps.
StepWindow parse_profile_steps(const std::string& text);

// Throws std::invalid_argument naming --profile-steps unless the window lies
// in the run's steps [first_step, last_step]; `run` says what those are.
void check_profile_steps(const StepWindow& window, int64_t first_step, int64_t last_step,
                         const std::string& run);

// Opens and closes the window as the steps are enqueued. On a device without
// the CUDA profiler (the CPU) it says once that the window is ignored.
// Each call to the profiler first waits for the device, so the window holds
// its own steps' work and nothing before or after it.
class ProfileWindow {
 public:
  ProfileWindow(const StepWindow& window, bool cuda, std::ostream& log);
  ~ProfileWindow();  // closes a window still open (an error, Ctrl-C)
  ProfileWindow(const ProfileWindow&) = delete;
  ProfileWindow& operator=(const ProfileWindow&) = delete;

  // Before enqueuing the work of steps [first, last] (one step, or every step
  // of one launch): opens the window if they reach into it.
  void before(int64_t first, int64_t last);
  // After enqueuing the work of steps up to `last`: closes the window once
  // its last step is in.
  void after(int64_t last);
  bool is_open() const { return open_; }

 private:
  StepWindow window_;
  bool cuda_;
  std::ostream& log_;
  bool open_ = false, done_ = false;
};

}  // namespace ddpm::app
