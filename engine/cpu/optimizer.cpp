#include "engine/cpu/optimizer.h"

#include <cmath>
#include <stdexcept>

namespace ddpm::cpu {

template <typename T>
void adamw_step(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWConfig& c, int64_t step,
                double grad_scale) {
  if (step < 1) throw std::invalid_argument("adamw: step counts from 1");
  const double bc1 = 1 - std::pow(c.beta1, double(step));
  const double bc2 = 1 - std::pow(c.beta2, double(step));
  const T decay = T(1 - c.lr * c.weight_decay), step_size = T(c.lr / bc1);
  const T b1 = T(c.beta1), b2 = T(c.beta2), sqrt_bc2 = T(std::sqrt(bc2)), eps = T(c.eps);
  // 1 - beta in double, then rounded, as torch passes it (value=1 - beta2): in
  // float, 1 - float(0.999) is 1.3e-5 relative below 0.001, which would bias v
  // against the bias correction computed from the double beta.
  const T one_minus_b1 = T(1 - c.beta1), one_minus_b2 = T(1 - c.beta2);
  const T gs = T(grad_scale);
#pragma omp parallel for
  for (int64_t i = 0; i < n; ++i) {
    const T g = grad[i] * gs;
    param[i] *= decay;
    m[i] = b1 * m[i] + one_minus_b1 * g;
    v[i] = b2 * v[i] + one_minus_b2 * g * g;
    param[i] -= step_size * m[i] / (std::sqrt(v[i]) / sqrt_bc2 + eps);
  }
}

template <typename T>
double global_norm(const T* grad, int64_t n) {
  double sum = 0;
#pragma omp parallel for reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += double(grad[i]) * double(grad[i]);
  return std::sqrt(sum);
}

template <typename T>
void ema_update(T* ema, const T* param, int64_t n, double decay) {
  const T one_minus = T(1 - decay);
#pragma omp parallel for
  for (int64_t i = 0; i < n; ++i) {
    const T step = one_minus * (ema[i] - param[i]);
    ema[i] -= step;
  }
}

template void ema_update<float>(float*, const float*, int64_t, double);
template void ema_update<double>(double*, const double*, int64_t, double);
template void adamw_step<float>(float*, const float*, float*, float*, int64_t, const AdamWConfig&,
                                int64_t, double);
template void adamw_step<double>(double*, const double*, double*, double*, int64_t,
                                 const AdamWConfig&, int64_t, double);
template double global_norm<float>(const float*, int64_t);
template double global_norm<double>(const double*, int64_t);

}  // namespace ddpm::cpu
