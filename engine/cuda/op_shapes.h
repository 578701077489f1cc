// What the fp32 and bf16 rules of the CUDA backend share about a node: its
// tensors as the kernels' shapes, and the stacked weight parts of a linear
// layer (engine/cuda/ops_dense.cpp, ops_dense_bf16.cpp).
#pragma once

#include <array>
#include <stdexcept>
#include <string>

#include "engine/backend.h"
#include "engine/graph.h"
#include "kernels/attention.cuh"
#include "kernels/conv2d.cuh"
#include "kernels/dropout.cuh"
#include "kernels/group_norm.cuh"

namespace ddpm::cuda {

// x [N, H, W, C] and the op's parameters as the kernels' shape.
inline kernels::Conv2dShape conv_shape(const Conv2dParams& p, const Shape& x) {
  kernels::Conv2dShape s;
  s.batch = x[0];
  s.in_h = x[1];
  s.in_w = x[2];
  s.in_channels = x[3];
  s.out_channels = p.out_channels;
  s.kernel_h = p.kernel_h;
  s.kernel_w = p.kernel_w;
  s.stride = p.stride;
  s.pad_top = p.pad.top;
  s.pad_bottom = p.pad.bottom;
  s.pad_left = p.pad.left;
  s.pad_right = p.pad.right;
  return s;
}

inline kernels::GroupNormShape group_norm_shape(const GroupNormParams& p, const Shape& x) {
  const int64_t n = x[0], c = x.back();
  return {n, x.numel() / (n * c), c, p.groups};
}

// With packed_qkv the one input is [N, T, 3C]: q, k, v are its column blocks.
inline kernels::AttentionShape attention_shape(const AttentionParams& p, const Shape& q) {
  return {q[0], attention_tokens(q), p.heads, p.head_dim,
          p.packed_qkv ? 3 * p.heads * p.head_dim : 0};
}

// The three column blocks q, k, v of a packed tensor (or its gradient).
template <class T>
std::array<T*, 3> qkv_blocks(const AttentionParams& p, T* packed) {
  const int64_t c = p.heads * p.head_dim;
  if (!packed) return {nullptr, nullptr, nullptr};
  return {packed, packed + c, packed + 2 * c};
}

// The start of `parts` tensors that lie back to back in memory, each of
// `each` elements, in slot order from `first` (as GraphBuilder::linear_stacked
// lays out the parameters, and the flat gradient buffer and the bf16 copy
// mirror them), so one GEMM reads or writes them as one stacked matrix. null
// when none is defined (a frozen weight's gradient); an error naming what is
// not adjacent otherwise.
template <class Get>
auto stacked(const LinearParams& p, size_t first, int64_t each, const char* what, Get get) {
  auto* base = get(first);
  for (int64_t i = 1; i < p.weight_parts; ++i) {
    auto* part = get(first + size_t(i));
    if (base == nullptr && part == nullptr) continue;
    if (base == nullptr || part != base + i * each)
      throw std::invalid_argument(std::string("the ") + std::to_string(p.weight_parts) + " " +
                                  what +
                                  " parts must lie back to back in memory, as "
                                  "GraphBuilder::linear_stacked places them, to be one GEMM");
  }
  return base;
}

// elementwise.cuh's description of add's b: per_sample > 0 for the [N, C]
// broadcast.
struct AddLayout {
  int64_t n, channels, per_sample;
};

inline AddLayout add_layout(const Shape& a, const Shape& b) {
  const int64_t n = a.numel();
  return {n, a.back(), add_is_broadcast(a, b) ? n / a[0] : 0};
}

// Dropout as the CPU keys it (engine/cpu/dropout.cpp): off outside training,
// the step's low 32 bits (read from device memory when the context has it
// there: a captured training step) and the node's salt.
inline double dropout_active_p(const DropoutParams& p, const RunContext& ctx) {
  return ctx.training ? p.p : 0.0;
}

inline kernels::DropoutKey dropout_key(const DropoutParams& p, const RunContext& ctx) {
  return {ctx.seed, static_cast<uint32_t>(ctx.step), p.salt, ctx.device_step};
}

}  // namespace ddpm::cuda
