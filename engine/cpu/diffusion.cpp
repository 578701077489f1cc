#include "engine/cpu/diffusion.h"

#include <algorithm>
#include <stdexcept>

#include "engine/noise.h"

namespace ddpm {

PredictionType parse_prediction_type(const std::string& name) {
  if (name == "epsilon") return PredictionType::epsilon;
  if (name == "sample") return PredictionType::sample;
  if (name == "v_prediction") return PredictionType::v_prediction;
  throw std::invalid_argument("prediction_type '" + name +
                              "' is not one of epsilon, sample, v_prediction");
}

namespace cpu {

namespace {

void check(const DiffusionBatch& b, const char* what) {
  if (b.batch < 0 || b.per_image < 0 || b.batch > int64_t(UINT32_MAX) ||
      b.per_image > int64_t(UINT32_MAX))
    throw std::invalid_argument(std::string(what) + ": batch " + std::to_string(b.batch) +
                                " and per_image " + std::to_string(b.per_image) +
                                " must be in [0, 2^32)");
}

// Calls fn(i, b, a, s, eps) for every element i = b per_image + e, with the
// image's table entries and the element's double eps.
template <typename T, typename Fn>
void for_each_draw(const int32_t* t, const T* sqrt_abar, const T* sqrt_one_minus_abar,
                   const DiffusionBatch& d, Fn&& fn) {
  const int64_t n = d.batch * d.per_image;
#pragma omp parallel for
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = i / d.per_image, e = i % d.per_image;
    const int32_t tb = t[b];
    const double eps =
        noise_normal(d.seed, NoisePurpose::training_noise, d.step, uint32_t(b), uint32_t(e));
    fn(i, double(sqrt_abar[tb]), double(sqrt_one_minus_abar[tb]), eps);
  }
}

}  // namespace

int32_t training_timestep(uint64_t seed, uint32_t step, uint32_t image,
                          int64_t num_train_timesteps) {
  const double u = noise_uniform(seed, NoisePurpose::training_timestep, step, image, 0);
  return int32_t(
      std::min<int64_t>(int64_t(u * double(num_train_timesteps)), num_train_timesteps - 1));
}

template <typename T>
void q_sample(const T* x0, const int32_t* t, const T* sqrt_abar, const T* sqrt_one_minus_abar,
              const DiffusionBatch& b, T* x_t) {
  check(b, "cpu::q_sample");
  for_each_draw<T>(
      t, sqrt_abar, sqrt_one_minus_abar, b,
      [&](int64_t i, double a, double s, double eps) { x_t[i] = T(a * double(x0[i]) + s * eps); });
}

template <typename T>
void diffusion_target(const T* x0, const int32_t* t, const T* sqrt_abar,
                      const T* sqrt_one_minus_abar, const DiffusionBatch& b, T* target) {
  check(b, "cpu::diffusion_target");
  if (b.prediction == PredictionType::sample) {
    std::copy(x0, x0 + b.batch * b.per_image, target);
    return;
  }
  const bool v = b.prediction == PredictionType::v_prediction;
  for_each_draw<T>(t, sqrt_abar, sqrt_one_minus_abar, b,
                   [&](int64_t i, double a, double s, double eps) {
                     target[i] = T(v ? a * eps - s * double(x0[i]) : eps);
                   });
}

template void q_sample<float>(const float*, const int32_t*, const float*, const float*,
                              const DiffusionBatch&, float*);
template void q_sample<double>(const double*, const int32_t*, const double*, const double*,
                               const DiffusionBatch&, double*);
template void diffusion_target<float>(const float*, const int32_t*, const float*, const float*,
                                      const DiffusionBatch&, float*);
template void diffusion_target<double>(const double*, const int32_t*, const double*, const double*,
                                       const DiffusionBatch&, double*);

}  // namespace cpu
}  // namespace ddpm
