// The closed set of ops a graph node can hold: one typed parameter struct per op.
#pragma once

#include <variant>

#include "engine/ops/attention.h"
#include "engine/ops/conv2d.h"
#include "engine/ops/dropout.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/group_norm.h"
#include "engine/ops/linear.h"
#include "engine/ops/mse_loss.h"
#include "engine/ops/timestep_embedding.h"

namespace ddpm {

using OpParams = std::variant<Conv2dParams, GroupNormParams, LinearParams, AttentionParams,
                              SiluParams, AddParams, ConcatParams, Upsample2xParams,
                              TimestepEmbeddingParams, DropoutParams, MseLossParams>;

inline const char* op_name(const OpParams& p) {
  return std::visit([](const auto& q) { return std::decay_t<decltype(q)>::kName; }, p);
}

inline OpSignature op_signature(const OpParams& p, std::span<const Shape> in) {
  return std::visit([&](const auto& q) { return signature(q, in); }, p);
}

}  // namespace ddpm
