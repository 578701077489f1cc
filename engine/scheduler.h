// Noise schedules and the reverse-process update of diffusers' DDPMScheduler
// and DDIMScheduler. Tables are computed in float64 (diffusers uses float32;
// tests compare within that difference). Each reverse step reduces to one
// per-element formula with step coefficients, which the CPU reference and the
// fused CUDA kernel evaluate alike:
//   x0   = x0_from_x * x_t + x0_from_model * model_output, clamped when clip
//   prev = prev_from_x0 * x0 + prev_from_x * x_t + prev_from_model * model_output
//          + sigma * z,   z ~ N(0, I)
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace ddpm {

struct SchedulerConfig {
  std::string kind = "ddpm";  // ddpm | ddim
  int64_t num_train_timesteps = 1000;
  std::string beta_schedule = "linear";  // linear | scaled_linear | squaredcos_cap_v2
  double beta_start = 1e-4, beta_end = 0.02;
  std::vector<double> trained_betas;          // overrides beta_schedule when set
  std::string variance_type = "fixed_small";  // ddpm: fixed_small | fixed_large
  bool clip_sample = true;
  double clip_sample_range = 1.0;
  std::string prediction_type = "epsilon";   // epsilon | sample | v_prediction
  std::string timestep_spacing = "leading";  // leading | linspace | trailing
  int64_t steps_offset = 0;
  bool set_alpha_to_one = true;           // ddim: alpha_bar before the first step is 1
  double eta = 0.0;                       // ddim: 0 deterministic, 1 DDPM-like noise
  bool use_clipped_model_output = false;  // ddim
};

// Reads a diffusers scheduler_config.json (DDPMScheduler or DDIMScheduler);
// unsupported values and unknown keys are errors naming the key.
SchedulerConfig parse_scheduler_config(const std::string& json_text, const std::string& source);
SchedulerConfig load_scheduler_config(const std::filesystem::path& path);
std::string scheduler_config_to_json(const SchedulerConfig& c);

struct StepCoefficients {
  int64_t timestep = 0, prev_timestep = -1;
  double x0_from_x = 0, x0_from_model = 0;
  bool clip = false;
  double clip_range = 1;
  double prev_from_x0 = 0, prev_from_x = 0, prev_from_model = 0;
  double sigma = 0;  // 0: no noise drawn at this step
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerConfig c);
  const SchedulerConfig& config() const { return c_; }

  const std::vector<double>& betas() const { return betas_; }
  const std::vector<double>& alphas_cumprod() const { return abar_; }
  // Training's forward process: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.
  double sqrt_alpha_cumprod(int64_t t) const;
  double sqrt_one_minus_alpha_cumprod(int64_t t) const;

  // diffusers' set_timesteps: the descending timesteps of a run of `steps`.
  std::vector<int64_t> timesteps(int64_t steps) const;
  // The update from timesteps(steps)[index] to the next.
  StepCoefficients step(int64_t steps, int64_t index) const;
  // Every step of a run, in order.
  std::vector<StepCoefficients> plan(int64_t steps) const;

 private:
  StepCoefficients step_of(const std::vector<int64_t>& timesteps, int64_t index) const;
  double abar_at(int64_t t) const;  // t < 0: the value before the first step
  SchedulerConfig c_;
  std::vector<double> betas_, abar_;
};

// The CPU reference of the noise update over n elements (z may be null when
// coefficients.sigma is 0).
template <typename T>
void noise_update(const StepCoefficients& k, const T* x_t, const T* model_output, const T* z,
                  T* x_prev, int64_t n);

}  // namespace ddpm
