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

}  // namespace ddpm
