// The trainer's loss curve: loss.png beside metrics.jsonl, redrawn from the
// whole file (so a resumed run's curve includes the steps before the resume).
#pragma once

#include <filesystem>

namespace ddpm::app {

// Reads every line of `metrics` (JSON objects with step, loss, grad_norm) and
// writes a two-panel plot (loss, gradient norm against the step) to `png`
// atomically. Lines that do not parse are skipped (a line being written when
// the run was killed). Throws ImageError / std::runtime_error on I/O errors.
void plot_metrics(const std::filesystem::path& metrics, const std::filesystem::path& png);

}  // namespace ddpm::app
