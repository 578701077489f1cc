// group_norm: GroupNorm over a channels-last tensor [N, ..., C], optionally
// followed by SiLU in the same op (the UNet always pairs them).
// Inputs: x, and gamma [C], beta [C] when `affine`.
// Outputs: y (shape of x), mean [N,G], rstd [N,G] (saved for backward).
#pragma once

#include "engine/ops/signature.h"

namespace ddpm {

struct GroupNormParams {
  static constexpr const char* kName = "group_norm";
  int64_t groups = 32;
  double eps = 1e-6;
  bool affine = true;
  bool silu = false;
};

OpSignature signature(const GroupNormParams& p, std::span<const Shape> in);

}  // namespace ddpm
