// mse_loss: the mean over all elements of (pred - target)^2, as a [1] tensor
// (PyTorch's F.mse_loss with reduction "mean": DDPM's "simple" loss).
#pragma once

#include "engine/ops/signature.h"

namespace ddpm {

struct MseLossParams {
  static constexpr const char* kName = "mse_loss";
};

OpSignature signature(const MseLossParams& p, std::span<const Shape> in);

}  // namespace ddpm
