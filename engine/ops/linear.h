// linear: y = x W^T + b (+ r) over the last dimension.
// Inputs: x [..., in]; the weight [out, in] (PyTorch's layout) as
// `weight_parts` parameters W_0.. of [out / weight_parts, in] each, stacked in
// order; the bias [out] likewise as b_0.. when `bias`; r [..., out] when
// `residual`. Output: y [..., out].
// Parts let one GEMM compute diffusers' separately named to_q, to_k and to_v
// projections as one [tokens, 3C] product (the graph builder lays the parts
// out back to back in the flat parameter buffer, where a backend may read
// them as one matrix); the residual is the attention block's skip
// connection added in the GEMM's epilogue. Its gradient is dy.
#pragma once

#include "engine/ops/signature.h"

namespace ddpm {

struct LinearParams {
  static constexpr const char* kName = "linear";
  int64_t out_features = 0;
  bool bias = true;
  bool residual = false;     // a last input added to the output
  int64_t weight_parts = 1;  // the weight (and bias) given as this many stacked parts
};

OpSignature signature(const LinearParams& p, std::span<const Shape> in);

// Input slots: weight part i at 1 + i, bias part i at 1 + parts + i, the
// residual last.
inline size_t linear_weight_slot(const LinearParams& p, int64_t part) {
  (void)p;
  return size_t(1 + part);
}
inline size_t linear_bias_slot(const LinearParams& p, int64_t part) {
  return size_t(1 + p.weight_parts + part);
}
inline size_t linear_input_count(const LinearParams& p) {
  return size_t(1 + p.weight_parts * (p.bias ? 2 : 1) + (p.residual ? 1 : 0));
}

}  // namespace ddpm
