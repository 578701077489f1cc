// group_norm: GroupNorm over a channels-last tensor [N, ..., C], optionally
// preceded by a per-(sample, channel) add and followed by SiLU in the same op
// (the UNet's ResBlock adds its time-embedding projection and normalises:
// one op instead of add + group_norm).
// Inputs: x, then gamma [C], beta [C] when `affine`, then bias [N, C] when
// `channel_add`. With h = x + bias[n, c] (h = x without the add):
//   y = act(gamma[c] * (h - mean[n, g]) * rstd[n, g] + beta[c]).
// Outputs: y (shape of x), mean [N,G], rstd [N,G] (of h, saved for backward).
#pragma once

#include "engine/ops/signature.h"

namespace ddpm {

struct GroupNormParams {
  static constexpr const char* kName = "group_norm";
  int64_t groups = 32;
  double eps = 1e-6;
  bool affine = true;
  bool silu = false;
  bool channel_add = false;  // a last input [N, C] added before normalising
};

OpSignature signature(const GroupNormParams& p, std::span<const Shape> in);

// The index of the channel_add input (valid when p.channel_add).
inline size_t group_norm_channel_add_slot(const GroupNormParams& p) {
  return p.affine ? 3 : 1;
}

}  // namespace ddpm
