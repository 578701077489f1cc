// Fused multi-head self-attention over the tokens of a channels-last map, the
// contract of the CPU backend's attention op (engine/ops/attention.h):
//   o[n, t, h*D + d] = sum_u softmax_u(scale * q[n,t,h,:] . k[n,u,h,:]) v[n,u,h*D + d]
//   lse[n, h, t]     = log sum_u exp(scale * q[n,t,h,:] . k[n,u,h,:])
// q, k, v, o and their gradients are [N, T, heads * head_dim]: o and dout
// contiguous; q, k, v and dq, dk, dv with rows qkv_stride floats apart (the
// shape's field; 0 means contiguous), so that they can be the three column
// blocks of one [N, T, 3 * heads * head_dim] projection output (q = p,
// k = p + C, v = p + 2C, qkv_stride = 3C) read and written in place.
// Flash-attention style: an online softmax over tiles of keys, the T x T
// scores never reach global memory; the forward saves the log-sum-exp and the
// backward recomputes the probabilities from it. fp32 throughout.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace ddpm::kernels {

struct AttentionShape {
  int64_t batch = 0;   // N
  int64_t tokens = 0;  // T (H*W: 256 at 16x16, 196 at 14x14, 49 at 7x7)
  int64_t heads = 0;
  int64_t head_dim = 0;  // D
  // Row stride of q, k, v (and dq, dk, dv) in floats: 0 for heads * head_dim
  // (contiguous), else at least that.
  int64_t qkv_stride = 0;
};

// Limits, checked by every launcher (std::invalid_argument naming the field):
// batch >= 0 (0 is a no-op), tokens >= 1, heads >= 1, 1 <= head_dim <= 256,
// batch * heads <= 2^31 - 1 and every tensor under 2^31 elements (with
// qkv_stride: batch * tokens * qkv_stride); scale > 0 and finite. Results are
// bitwise reproducible for a shape (no atomics), and do not depend on
// qkv_stride (only where the rows are read and written).
void validate(const AttentionShape& s);

// Backward's scratch (the row sums D = rowsum(dO * O)), in bytes; dead after the call.
size_t attention_workspace_bytes(const AttentionShape& s);

void attention_forward(const float* q, const float* k, const float* v, float* o, float* lse,
                       const AttentionShape& s, float scale, cudaStream_t stream);

// dq, dk, dv (= or += per flag) from dout, given the forward's inputs, its
// output o and its lse. Any gradient pointer may be null (not computed).
void attention_backward(const float* q, const float* k, const float* v, const float* o,
                        const float* lse, const float* dout, float* dq, float* dk, float* dv,
                        const AttentionShape& s, float scale, bool accumulate_dq,
                        bool accumulate_dk, bool accumulate_dv, void* workspace,
                        cudaStream_t stream);

}  // namespace ddpm::kernels
