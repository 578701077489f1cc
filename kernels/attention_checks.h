// The host-side argument checks of the two attention families, attention.cu
// (fp32) and attention_bf16.cu: the same AttentionShape limits (attention.cuh's
// validate()), scale and pointer rules, with messages prefixed by the calling
// entry point's name ("attention_forward: ...", "attention_bf16_backward:
// ..."). Host-only and header-inline, so that each family's emulated tests
// build from its own source alone.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/attention.cuh"

namespace ddpm::kernels::attention_checks {

constexpr int kMaxHeadDim = 256;  // both families' largest head-dim bucket

[[noreturn]] inline void fail(const char* who, const std::string& what) {
  throw std::invalid_argument(std::string(who) + ": " + what);
}

inline void require(bool ok, const char* who, const char* what) {
  if (!ok) fail(who, what);
}

inline void check_shape(const char* who, const AttentionShape& s) {
  constexpr int64_t kMax = (int64_t(1) << 31) - 1;  // largest count below 2^31
  if (s.batch < 0) fail(who, "batch must be >= 0, got " + std::to_string(s.batch));
  if (s.tokens < 1) fail(who, "tokens must be >= 1, got " + std::to_string(s.tokens));
  if (s.heads < 1) fail(who, "heads must be >= 1, got " + std::to_string(s.heads));
  if (s.head_dim < 1 || s.head_dim > kMaxHeadDim)
    fail(who, "head_dim " + std::to_string(s.head_dim) + " outside [1, " +
                  std::to_string(kMaxHeadDim) + "]");
  if (s.heads > kMax || (s.batch > 0 && s.batch > kMax / s.heads))
    fail(who, "batch * heads must be below 2^31 (batch " + std::to_string(s.batch) + ", heads " +
                  std::to_string(s.heads) + ")");
  // q/k/v/o: batch * tokens * heads * head_dim; lse: batch * heads * tokens (smaller).
  const int64_t channels = s.heads * s.head_dim;  // <= 2^39: no overflow
  if (s.tokens > kMax / channels || (s.batch > 0 && s.batch > kMax / (s.tokens * channels)))
    fail(who, "tensors must have fewer than 2^31 elements (batch " + std::to_string(s.batch) +
                  ", tokens " + std::to_string(s.tokens) + ", channels " +
                  std::to_string(channels) + ")");
  // q, k, v rows qkv_stride apart: the rows span batch * tokens * qkv_stride.
  if (s.qkv_stride != 0 && (s.qkv_stride < channels || s.qkv_stride > kMax / s.tokens ||
                            (s.batch > 0 && s.batch > kMax / (s.tokens * s.qkv_stride))))
    fail(who, "qkv_stride " + std::to_string(s.qkv_stride) + " must be 0 or at least heads * " +
                  "head_dim (" + std::to_string(channels) +
                  "), with batch * tokens * qkv_stride below 2^31");
}

inline void check_scale(const char* who, float scale) {
  if (!(scale > 0.0f) || !(scale < INFINITY))
    fail(who, "scale must be positive and finite, got " + std::to_string(scale));
}

// The row stride of q, k, v and their gradients.
inline int64_t qkv_stride_of(const AttentionShape& s) {
  return s.qkv_stride ? s.qkv_stride : s.heads * s.head_dim;
}

// The backward's scratch: D = rowsum(dO * O), fp32 [N, heads, T], rounded up
// to 256 bytes.
inline size_t workspace_bytes(const char* who, const AttentionShape& s) {
  check_shape(who, s);
  const size_t bytes = size_t(s.batch * s.heads * s.tokens) * sizeof(float);
  return (bytes + 255) / 256 * 256;
}

}  // namespace ddpm::kernels::attention_checks
