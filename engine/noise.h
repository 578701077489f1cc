// The random numbers of DDPM training and sampling, each a pure function of
// (seed, purpose, step, image, element) through Philox. So an image's noise
// does not depend on the batch it was drawn in, a resumed run draws what an
// uninterrupted one would, and a CUDA kernel can draw the same numbers on the
// device without state.
#pragma once

#include <cstdint>

#include "engine/random.h"

namespace ddpm {

enum class NoisePurpose : uint32_t {
  initial_sample = 1,     // x_T of sampling
  step_noise = 2,         // z of each reverse step
  training_noise = 3,     // eps of q_sample
  training_timestep = 4,  // t of each training image
  training_flip = 5,      // random horizontal flip
};

namespace noise_detail {
DDPM_HOST_DEVICE inline PhiloxBlock block(uint64_t seed, NoisePurpose p, uint32_t step,
                                          uint32_t image, uint32_t index) {
  return philox4x32_10(PhiloxBlock{{index, image, step, static_cast<uint32_t>(p)}},
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}
}  // namespace noise_detail

// Uniform in [0, 1) (24 bits).
DDPM_HOST_DEVICE inline double noise_uniform(uint64_t seed, NoisePurpose p, uint32_t step,
                                             uint32_t image, uint32_t index) {
  return uniform_from_bits(noise_detail::block(seed, p, step, image, index).v[0]);
}

// Standard normal by Box-Muller: elements 2k and 2k+1 are the cosine and sine
// halves of one pair of uniforms (the first kept off zero).
DDPM_HOST_DEVICE inline double noise_normal(uint64_t seed, NoisePurpose p, uint32_t step,
                                            uint32_t image, uint32_t element) {
  const PhiloxBlock r = noise_detail::block(seed, p, step, image, element >> 1);
  const double u1 = (static_cast<double>(r.v[0] >> 8) + 1) * (1.0 / 16777217.0);
  const double u2 = uniform_from_bits(r.v[1]);
  const double radius = sqrt(-2 * log(u1)), angle = 6.283185307179586 * u2;
  return radius * ((element & 1) ? sin(angle) : cos(angle));
}

// The same draws in float arithmetic, for kernels (double Box-Muller is slow
// on most GPUs): the pair of normals of elements 2 pair and 2 pair + 1 (the
// cosine and sine halves), and one element. Same keys and formula as
// noise_normal. u1 = j / (2^24 + 1) is rounded once to float (the fma forms
// j 2^-24 - j 2^-48 exactly), so 1 - u1 keeps its relative accuracy near 1 and
// u1 never becomes 1: j 2^-24 alone would give radius 0 instead of 3.4e-4 at
// j = 2^24. Against noise_normal, with u = 2^-24 and CUDA's documented errors
// (logf 1 ulp, sinf/cosf 2 ulp, sqrtf and fmaf correctly rounded; not under
// --use_fast_math, whose __logf / __sinf are far coarser):
//   radius: u1's rounding moves log u1 by <= 2u relative, logf <= 2u, sqrtf
//           halves that and adds u: <= 3u relative;
//   angle:  float(2 pi) (0.47u) and the product (u): <= 1.47u relative, so
//           <= 9.24u absolute on [0, 2 pi); sin/cos add <= 2 ulp (<= 4u);
//   product radius * trig: u relative;
// so |z_f - z| <= (3 + 9.24 + 4 + 1) u r <= 17.3u * 5.768 (the largest radius,
// sqrt(2 ln(2^24 + 1))) < 100u ~ 6.0e-6 (kNormalFloatAbsError). Measured with
// glibc over all 2^24 values of each uniform: radius 2.1u relative, sin/cos
// 6.9u absolute.
struct NormalPairF {
  float even, odd;
};

inline constexpr double kNormalFloatAbsError = 100.0 / 16777216.0;

DDPM_HOST_DEVICE inline NormalPairF noise_normal_pair_f(uint64_t seed, NoisePurpose p,
                                                        uint32_t step, uint32_t image,
                                                        uint32_t pair) {
  const PhiloxBlock r = noise_detail::block(seed, p, step, image, pair);
  const float j = static_cast<float>((r.v[0] >> 8) + 1);  // exact: j <= 2^24
  const float u1 = fmaf(j, -0x1p-48f, j * 0x1p-24f);
  const float u2 = static_cast<float>(r.v[1] >> 8) * 0x1p-24f;
  const float radius = sqrtf(-2.0f * logf(u1)), angle = 6.283185307179586f * u2;
  return NormalPairF{radius * cosf(angle), radius * sinf(angle)};
}

DDPM_HOST_DEVICE inline float noise_normal_f(uint64_t seed, NoisePurpose p, uint32_t step,
                                             uint32_t image, uint32_t element) {
  const NormalPairF z = noise_normal_pair_f(seed, p, step, image, element >> 1);
  return (element & 1) ? z.odd : z.even;
}

}  // namespace ddpm
