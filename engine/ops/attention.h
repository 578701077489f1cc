// attention: multi-head softmax(Q K^T * scale) V over the tokens of a
// channels-last map. Inputs q, k, v: [N, ..., heads*head_dim] with the middle
// dimensions flattened into T tokens (H*W of an NHWC map); or, when
// `packed_qkv`, one input [N, ..., 3 * heads*head_dim] holding each token's
// q, k and v side by side (the output of the fused QKV projection, read in
// place: no split). The projections are separate linear ops. Outputs: o
// [N, ..., heads*head_dim] and lse [N, heads, T], the log-sum-exp of each
// score row, which the backward uses to recompute the probabilities instead
// of storing the T x T matrix.
#pragma once

#include "engine/ops/signature.h"

namespace ddpm {

struct AttentionParams {
  static constexpr const char* kName = "attention";
  int64_t heads = 1;
  int64_t head_dim = 0;
  double scale = 0;         // 0 means head_dim^-1/2
  bool packed_qkv = false;  // one [.., 3C] input instead of q, k, v
};

OpSignature signature(const AttentionParams& p, std::span<const Shape> in);
double attention_scale(const AttentionParams& p);
int64_t attention_tokens(const Shape& q);

}  // namespace ddpm
