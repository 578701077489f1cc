// Fused multi-head self-attention with bf16 tensors on tensor cores, the bf16
// twin of attention.cuh (same contract, same AttentionShape):
//   o[n, t, h*D + d] = sum_u softmax_u(scale * q[n,t,h,:] . k[n,u,h,:]) v[n,u,h*D + d]
//   lse[n, h, t]     = log sum_u exp(scale * q[n,t,h,:] . k[n,u,h,:])
// q, k, v, o, dout and dq, dk, dv are bf16 in global memory; lse is fp32 and
// so is every statistic (scores, the running max and sum, D = rowsum(dO * O))
// and every accumulation. o and dout are [N, T, heads * head_dim] contiguous;
// q, k, v and dq, dk, dv have rows qkv_stride elements apart (0: contiguous),
// so they can be the three column blocks of one packed [N, T, 3C] projection
// output, read and written in place (q = p, k = p + C, v = p + 2C).
// FlashAttention-2 on mma.sync m16n8k16 (attention_bf16.cu has the design):
// the forward saves the log-sum-exp, the backward recomputes P from it; no
// atomics, so results are bitwise reproducible for a shape.
//
// Head dims: any 1..256 (as the fp32 kernel); the kernels are compiled for
// buckets 32, 64, 128 and 256 and a head_dim runs in the smallest bucket that
// holds it, its extra columns zero (so 32, 64, 128 and 256 waste nothing).
// Tensors whose base is 16-byte aligned, with head_dim and the row strides
// multiples of 8, are read with 16-byte cp.async copies; any other shape or
// alignment takes a scalar staging path into the same shared-memory tiles.
// bf16 pointers need 2-byte alignment, lse 4-byte.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/attention.cuh"  // AttentionShape (qkv_stride counts bf16 elements here)

namespace ddpm::kernels {

// The limits of attention.cuh's validate(): batch >= 0 (0 is a no-op),
// tokens >= 1, heads >= 1, 1 <= head_dim <= 256, qkv_stride 0 or >= heads *
// head_dim, batch * heads and every tensor under 2^31 elements.
// std::invalid_argument naming the field otherwise.
void attention_bf16_validate(const AttentionShape& s);

// Backward's scratch (D = rowsum(dO * O), fp32 [N, heads, T]) in bytes, a
// multiple of 256; dead after the call.
size_t attention_bf16_workspace_bytes(const AttentionShape& s);

// o (bf16) and lse (fp32, natural log) from q, k, v; scale > 0 and finite.
void attention_bf16_forward(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                            __nv_bfloat16* o, float* lse, const AttentionShape& s, float scale,
                            cudaStream_t stream);

// dq, dk, dv (= or += per flag; += reads the bf16 value, adds in fp32 and
// rounds once) from dout, given the forward's inputs, its output o and its
// lse. Any gradient pointer may be null (not computed). `workspace`:
// attention_bf16_workspace_bytes(s) bytes, 16-byte aligned.
void attention_bf16_backward(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                             const __nv_bfloat16* o, const float* lse, const __nv_bfloat16* dout,
                             __nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv,
                             const AttentionShape& s, float scale, bool accumulate_dq,
                             bool accumulate_dk, bool accumulate_dv, void* workspace,
                             cudaStream_t stream);

}  // namespace ddpm::kernels
