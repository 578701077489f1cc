#include "engine/scheduler.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numbers>
#include <sstream>

#include "engine/json_config.h"

namespace ddpm {

using nlohmann::json;

namespace {

std::vector<double> make_betas(const SchedulerConfig& c) {
  const int64_t n = c.num_train_timesteps;
  std::vector<double> b(static_cast<size_t>(n));
  if (!c.trained_betas.empty()) return c.trained_betas;
  for (int64_t i = 0; i < n; ++i) {
    const double f = n == 1 ? 0 : double(i) / double(n - 1);
    if (c.beta_schedule == "linear") {
      b[size_t(i)] = c.beta_start + f * (c.beta_end - c.beta_start);
    } else if (c.beta_schedule == "scaled_linear") {
      const double s =
          std::sqrt(c.beta_start) + f * (std::sqrt(c.beta_end) - std::sqrt(c.beta_start));
      b[size_t(i)] = s * s;
    } else {  // squaredcos_cap_v2 (Nichol & Dhariwal 2021), capped at 0.999
      auto abar = [](double t) {
        return std::pow(std::cos((t + 0.008) / 1.008 * std::numbers::pi / 2), 2);
      };
      b[size_t(i)] =
          std::min(1 - abar(double(i + 1) / double(n)) / abar(double(i) / double(n)), 0.999);
    }
  }
  return b;
}

void check_choice(const std::string& source, const std::string& key, const std::string& value,
                  std::initializer_list<const char*> choices) {
  std::string list;
  for (const char* c : choices) {
    if (value == c) return;
    list += (list.empty() ? "" : ", ") + std::string(c);
  }
  throw ConfigError(source + ": key '" + key + "': value \"" + value + "\" is not supported (" +
                    list + ")");
}

void validate(const SchedulerConfig& c, const std::string& source) {
  check_choice(source, "_class_name", c.kind, {"ddpm", "ddim"});
  check_choice(source, "beta_schedule", c.beta_schedule,
               {"linear", "scaled_linear", "squaredcos_cap_v2"});
  check_choice(source, "variance_type", c.variance_type, {"fixed_small", "fixed_large"});
  check_choice(source, "prediction_type", c.prediction_type, {"epsilon", "sample", "v_prediction"});
  check_choice(source, "timestep_spacing", c.timestep_spacing, {"leading", "linspace", "trailing"});
  if (c.num_train_timesteps < 1)
    throw ConfigError(source + ": key 'num_train_timesteps': must be positive");
  // The tables hold one double per timestep: 4e12 of them was a 32 TB
  // allocation at construction (found by tests/fuzz). diffusers' models use
  // 1000 to 4000.
  constexpr int64_t kMaxTimesteps = 1'000'000;
  if (c.num_train_timesteps > kMaxTimesteps)
    throw ConfigError(source +
                      ": key 'num_train_timesteps': " + std::to_string(c.num_train_timesteps) +
                      " is over the limit of " + std::to_string(kMaxTimesteps));
  if (!c.trained_betas.empty() && int64_t(c.trained_betas.size()) != c.num_train_timesteps)
    throw ConfigError(
        source + ": key 'trained_betas': has " + std::to_string(c.trained_betas.size()) +
        " values but num_train_timesteps is " + std::to_string(c.num_train_timesteps));
  if (!(c.beta_start > 0 && c.beta_start < 1))
    throw ConfigError(source + ": key 'beta_start': must be in (0, 1)");
  if (!(c.beta_end > 0 && c.beta_end < 1))
    throw ConfigError(source + ": key 'beta_end': must be in (0, 1)");
  // A beta of 0 makes DDPM's posterior variance 0/0 at t = 0; 1 or more
  // makes alpha_bar 0 or negative (square roots of negatives).
  for (size_t i = 0; i < c.trained_betas.size(); ++i)
    if (!(c.trained_betas[i] > 0 && c.trained_betas[i] < 1))
      throw ConfigError(source + ": key 'trained_betas': value " + std::to_string(i) + " (" +
                        json(c.trained_betas[i]).dump() + ") is not in (0, 1)");
  if (!(c.clip_sample_range > 0))
    throw ConfigError(source + ": key 'clip_sample_range': must be positive");
  // Every run's timesteps are at least steps_offset ("leading" spacing).
  if (c.steps_offset < 0 || c.steps_offset >= c.num_train_timesteps)
    throw ConfigError(source + ": key 'steps_offset': must be in [0, num_train_timesteps), got " +
                      std::to_string(c.steps_offset));
  if (!(c.eta >= 0)) throw ConfigError(source + ": eta must be non-negative");
}

}  // namespace

SchedulerConfig parse_scheduler_config(const std::string& text, const std::string& source) {
  const json j = parse_json_object(text, source);
  JsonSection r(j, "", source);
  SchedulerConfig c;
  std::string class_name = "DDPMScheduler";
  r.read("_class_name", class_name);
  if (class_name == "DDPMScheduler")
    c.kind = "ddpm";
  else if (class_name == "DDIMScheduler")
    c.kind = "ddim";
  else
    r.fail("_class_name", "\"" + class_name + "\" is not supported (DDPMScheduler, DDIMScheduler)");
  r.read("num_train_timesteps", c.num_train_timesteps);
  r.read("beta_schedule", c.beta_schedule);
  r.read("beta_start", c.beta_start);
  r.read("beta_end", c.beta_end);
  r.read_list("trained_betas", c.trained_betas);
  r.read("variance_type", c.variance_type);
  r.read("clip_sample", c.clip_sample);
  r.read("clip_sample_range", c.clip_sample_range);
  r.read("prediction_type", c.prediction_type);
  r.read("timestep_spacing", c.timestep_spacing);
  r.read("steps_offset", c.steps_offset);
  r.read("set_alpha_to_one", c.set_alpha_to_one);
  r.only("thresholding", {false});
  r.only("rescale_betas_zero_snr", {false});
  // Read only by thresholding (rejected above) or by old pipelines.
  for (const char* k : {"dynamic_thresholding_ratio", "sample_max_value", "tensor_format"})
    r.get(k);
  r.reject_unknown("scheduler config keys");
  validate(c, source);
  return c;
}

SchedulerConfig load_scheduler_config(const std::filesystem::path& path) {
  std::ifstream f(path);
  if (!f) throw ConfigError("cannot open scheduler config " + path.string());
  std::stringstream s;
  s << f.rdbuf();
  return parse_scheduler_config(s.str(), path.string());
}

std::string scheduler_config_to_json(const SchedulerConfig& c) {
  json j;
  j["_class_name"] = c.kind == "ddim" ? "DDIMScheduler" : "DDPMScheduler";
  j["_diffusers_version"] = "0.31.0";
  j["num_train_timesteps"] = c.num_train_timesteps;
  j["beta_schedule"] = c.beta_schedule;
  j["beta_start"] = c.beta_start;
  j["beta_end"] = c.beta_end;
  j["trained_betas"] = c.trained_betas.empty() ? json(nullptr) : json(c.trained_betas);
  if (c.kind == "ddpm") j["variance_type"] = c.variance_type;
  if (c.kind == "ddim") j["set_alpha_to_one"] = c.set_alpha_to_one;
  j["clip_sample"] = c.clip_sample;
  j["clip_sample_range"] = c.clip_sample_range;
  j["prediction_type"] = c.prediction_type;
  j["timestep_spacing"] = c.timestep_spacing;
  j["steps_offset"] = c.steps_offset;
  j["thresholding"] = false;
  j["rescale_betas_zero_snr"] = false;
  return j.dump(2) + "\n";
}

Scheduler::Scheduler(SchedulerConfig c) : c_(std::move(c)) {
  validate(c_, "scheduler");
  betas_ = make_betas(c_);
  abar_.resize(betas_.size());
  double prod = 1;
  for (size_t i = 0; i < betas_.size(); ++i) abar_[i] = prod *= 1 - betas_[i];
}

double Scheduler::abar_at(int64_t t) const {
  if (t >= 0) return abar_.at(size_t(t));
  // DDPM: alpha_bar before step 0 is 1; DDIM: 1 or alpha_bar_0 (set_alpha_to_one).
  return c_.kind == "ddim" && !c_.set_alpha_to_one ? abar_[0] : 1.0;
}

double Scheduler::sqrt_alpha_cumprod(int64_t t) const {
  return std::sqrt(abar_.at(size_t(t)));
}
double Scheduler::sqrt_one_minus_alpha_cumprod(int64_t t) const {
  return std::sqrt(1 - abar_.at(size_t(t)));
}

std::vector<int64_t> Scheduler::timesteps(int64_t steps) const {
  const int64_t n = c_.num_train_timesteps;
  if (steps < 1 || steps > n)
    throw std::invalid_argument("steps must be in [1, " + std::to_string(n) + "], got " +
                                std::to_string(steps));
  std::vector<int64_t> ts;
  if (c_.timestep_spacing == "linspace") {
    // np.linspace(0, n - 1, steps).round()[::-1]
    for (int64_t i = steps - 1; i >= 0; --i)
      ts.push_back(std::llround(
          std::nearbyint(steps == 1 ? 0.0 : double(i) * double(n - 1) / double(steps - 1))));
  } else if (c_.timestep_spacing == "leading") {
    const int64_t ratio = n / steps;
    for (int64_t i = steps - 1; i >= 0; --i) ts.push_back(i * ratio + c_.steps_offset);
  } else {  // trailing: np.round(np.arange(n, 0, -n / steps)) - 1
    const double ratio = double(n) / double(steps);
    const auto count = int64_t(std::ceil(double(n) / ratio));  // numpy's arange length
    for (int64_t i = 0; i < count; ++i)
      ts.push_back(int64_t(std::nearbyint(double(n) - double(i) * ratio)) - 1);
  }
  for (int64_t t : ts)
    if (t < 0 || t >= n)
      throw std::invalid_argument("timestep " + std::to_string(t) +
                                  " out of range (steps_offset too large?)");
  return ts;
}

StepCoefficients Scheduler::step(int64_t steps, int64_t index) const {
  return step_of(timesteps(steps), index);
}

std::vector<StepCoefficients> Scheduler::plan(int64_t steps) const {
  const std::vector<int64_t> ts = timesteps(steps);
  std::vector<StepCoefficients> out;
  for (size_t i = 0; i < ts.size(); ++i) out.push_back(step_of(ts, int64_t(i)));
  return out;
}

StepCoefficients Scheduler::step_of(const std::vector<int64_t>& ts, int64_t index) const {
  const int64_t steps = int64_t(ts.size());
  StepCoefficients k;
  k.timestep = ts.at(size_t(index));
  const int64_t t = k.timestep;
  // DDPM takes the next timestep of the run; DDIM steps back n // steps (as diffusers does).
  k.prev_timestep = c_.kind == "ddim"
                        ? t - c_.num_train_timesteps / steps
                        : (size_t(index) + 1 < ts.size() ? ts[size_t(index) + 1] : -1);
  const double abar = abar_.at(size_t(t)), abar_prev = abar_at(k.prev_timestep);
  const double sa = std::sqrt(abar), sb = std::sqrt(1 - abar);
  k.clip = c_.clip_sample;
  k.clip_range = c_.clip_sample_range;
  // x0 and epsilon as functions of (x_t, model_output).
  double eps_from_x = 0, eps_from_model = 0;
  if (c_.prediction_type == "epsilon") {
    k.x0_from_x = 1 / sa, k.x0_from_model = -sb / sa;
    eps_from_model = 1;
  } else if (c_.prediction_type == "sample") {
    k.x0_from_model = 1;
    eps_from_x = 1 / sb, eps_from_model = -sa / sb;
  } else {  // v_prediction
    k.x0_from_x = sa, k.x0_from_model = -sb;
    eps_from_x = sb, eps_from_model = sa;
  }
  if (c_.kind == "ddpm") {
    const double alpha = abar / abar_prev, beta = 1 - alpha;
    k.prev_from_x0 = std::sqrt(abar_prev) * beta / (1 - abar);
    k.prev_from_x = std::sqrt(alpha) * (1 - abar_prev) / (1 - abar);
    if (t > 0) {
      const double variance = c_.variance_type == "fixed_large"
                                  ? beta
                                  : std::max((1 - abar_prev) / (1 - abar) * beta, 1e-20);
      k.sigma = std::sqrt(variance);
    }
  } else {
    const double variance = (1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev);
    const double std_dev = c_.eta * std::sqrt(variance);
    const double dir = std::sqrt(std::max(1 - abar_prev - std_dev * std_dev, 0.0));
    k.prev_from_x0 = std::sqrt(abar_prev);
    if (c_.use_clipped_model_output) {
      // epsilon recomputed from the clipped x0: (x_t - sa x0) / sb.
      k.prev_from_x0 -= dir * sa / sb;
      k.prev_from_x = dir / sb;
    } else {
      k.prev_from_x = dir * eps_from_x;
      k.prev_from_model = dir * eps_from_model;
    }
    k.sigma = c_.eta > 0 ? std_dev : 0;
  }
  return k;
}

template <typename T>
void noise_update(const StepCoefficients& k, const T* x, const T* m, const T* z, T* out,
                  int64_t n) {
  const T ax = T(k.x0_from_x), am = T(k.x0_from_model), lo = T(-k.clip_range), hi = T(k.clip_range);
  const T px0 = T(k.prev_from_x0), px = T(k.prev_from_x), pm = T(k.prev_from_model), s = T(k.sigma);
#pragma omp parallel for
  for (int64_t i = 0; i < n; ++i) {
    T x0 = ax * x[i] + am * m[i];
    if (k.clip) x0 = std::clamp(x0, lo, hi);
    T prev = px0 * x0 + px * x[i] + pm * m[i];
    if (k.sigma != 0) prev += s * z[i];
    out[i] = prev;
  }
}

template void noise_update<float>(const StepCoefficients&, const float*, const float*, const float*,
                                  float*, int64_t);
template void noise_update<double>(const StepCoefficients&, const double*, const double*,
                                   const double*, double*, int64_t);

}  // namespace ddpm
