// Helpers shared by the f32 fast ops (engine/cpu/fast/*.cpp).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/backend.h"

namespace ddpm::cpu::fast {

// A gradient destination: null when not wanted; `accumulate` says whether
// the op adds to it or overwrites it. When two of an op's destinations share
// memory (one value feeding two input slots) both are prepared as the
// reference does (an overwritten one zeroed first) and then added to, so
// neither contribution is lost.
struct GradOut {
  float* p = nullptr;
  bool accumulate = false;
};

std::vector<GradOut> grad_outputs(std::span<const GradTensor> grads);

// dst[i] = src[i] (or dst[i] + src[i] when accumulate), in parallel chunks.
void copy_or_add(const float* src, float* dst, int64_t n, bool accumulate);

// dst[e] = [dst[e] +] sum_j parts[j * stride + e] for e < n, j < count, the
// parts summed in order j = 0, 1, ... (a fixed order: deterministic at any
// thread count). dst may be null (nothing to do).
void reduce_partials(const float* parts, int64_t count, int64_t stride, int64_t n, float* dst,
                     bool accumulate);

}  // namespace ddpm::cpu::fast
