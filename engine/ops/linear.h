// linear: y = x W^T + b over the last dimension.
// Inputs: x [..., in], weight [out, in] (PyTorch's layout), bias [out].
// Output: y [..., out].
#pragma once

#include "engine/ops/signature.h"

namespace ddpm {

struct LinearParams {
  static constexpr const char* kName = "linear";
  int64_t out_features = 0;
  bool bias = true;
};

OpSignature signature(const LinearParams& p, std::span<const Shape> in);

}  // namespace ddpm
