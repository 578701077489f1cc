// Multi-head attention on the f32 fast path: one task per (sample, head),
// the T x T scores in per-thread scratch (as the reference, the CPU spends
// memory; the CUDA kernel does not), the products on the micro-kernel and
// the softmax's exponentials vectorised (isa.h). Backward recomputes the
// probabilities from the saved log-sum-exp, as the reference does.
#include <array>
#include <cstring>
#include <vector>

#include "engine/cpu/fast/common.h"
#include "engine/cpu/fast/ops.h"
#include "engine/cpu/fast/scratch.h"
#include "engine/cpu/fast/tiles.h"
#include "engine/cpu/thread_pool.h"

namespace ddpm::cpu::fast {

namespace {

struct Geometry {
  int64_t n, tokens, heads, d, c, ld;
  int64_t in_offset(int64_t b, int64_t h) const { return b * tokens * ld + h * d; }
  int64_t out_offset(int64_t b, int64_t h) const { return b * tokens * c + h * d; }
};

Geometry geometry(const AttentionParams& p, const Shape& in0) {
  const int64_t c = p.heads * p.head_dim;
  return {in0[0], attention_tokens(in0), p.heads, p.head_dim, c, p.packed_qkv ? 3 * c : c};
}

// q, k, v (or their gradients): three tensors, or column blocks of one.
template <typename T>
std::array<T*, 3> qkv(const AttentionParams& p, const Geometry& g, std::array<T*, 3> ptrs) {
  if (p.packed_qkv) return {ptrs[0], ptrs[0] ? ptrs[0] + g.c : nullptr, ptrs[0] ? ptrs[0] + 2 * g.c : nullptr};
  return ptrs;
}

// s = scale q k^T for one (sample, head): [T, T], row stride T.
void scores(const Kernels& k, const Geometry& g, float scale, const float* q, const float* kk,
            float* s) {
  Epilogue e;
  e.alpha = scale;
  gemm(k, g.tokens, g.tokens, g.d, {q, g.ld, 1}, kk, 1, g.ld, s, g.tokens, e);
}

}  // namespace

bool forward(const Kernels& k, const AttentionParams& p, const ForwardArgs& a) {
  const Geometry g = geometry(p, a.inputs[0].shape);
  const float scale = float(attention_scale(p));
  const auto in = qkv<const float>(
      p, g,
      {a.inputs[0].ptr<float>(), p.packed_qkv ? nullptr : a.inputs[1].ptr<float>(),
       p.packed_qkv ? nullptr : a.inputs[2].ptr<float>()});
  float* o = a.outputs[0].ptr<float>();
  float* lse = a.outputs[1].ptr<float>();
  parallel_for(g.n * g.heads, [&](int64_t task) {
    const int64_t b = task / g.heads, h = task % g.heads;
    const int64_t off = g.in_offset(b, h);
    float* s = scratch(Slot::task_a, size_t(g.tokens * g.tokens));
    scores(k, g, scale, in[0] + off, in[1] + off, s);
    k.softmax_rows(s, g.tokens, g.tokens, g.tokens, lse + task * g.tokens);
    gemm(k, g.tokens, g.d, g.tokens, {s, g.tokens, 1}, in[2] + off, g.ld, 1,
         o + g.out_offset(b, h), g.c, {});
  });
  return true;
}

// dV = P^T dO; dP = dO V^T; dS = P (dP - D), D_i = dO_i . O_i;
// dQ = scale dS K; dK = scale dS^T Q.
bool backward(const Kernels& k, const AttentionParams& p, const BackwardArgs& a) {
  const Geometry g = geometry(p, a.inputs[0].shape);
  const float scale = float(attention_scale(p));
  // Each task adds its (sample, head) block: overwritten gradients are
  // zeroed first, as the reference does.
  std::vector<float*> gp;
  for (const GradTensor& gi : a.grad_inputs) {
    float* ptr = gi.tensor.defined() ? gi.tensor.ptr<float>() : nullptr;
    if (ptr && !gi.accumulate) std::memset(ptr, 0, gi.tensor.bytes());
    gp.push_back(ptr);
  }
  const auto d = qkv<float>(p, g, {gp[0], p.packed_qkv ? nullptr : gp[1], p.packed_qkv ? nullptr : gp[2]});
  if (!a.grad_outputs[0].defined()) return true;
  const auto in = qkv<const float>(
      p, g,
      {a.inputs[0].ptr<float>(), p.packed_qkv ? nullptr : a.inputs[1].ptr<float>(),
       p.packed_qkv ? nullptr : a.inputs[2].ptr<float>()});
  const float* o = a.outputs[0].ptr<float>();
  const float* d_o = a.grad_outputs[0].ptr<float>();
  const float* lse = a.outputs[1].ptr<float>();
  parallel_for(g.n * g.heads, [&](int64_t task) {
    const int64_t b = task / g.heads, h = task % g.heads;
    const int64_t off = g.in_offset(b, h), out_off = g.out_offset(b, h);
    const int64_t t = g.tokens;
    float* prob = scratch(Slot::task_a, size_t(t * t));
    float* dprob = scratch(Slot::task_b, size_t(t * t));
    float* dsum = scratch(Slot::task_c, size_t(t));
    scores(k, g, scale, in[0] + off, in[1] + off, prob);
    k.exp_rows(prob, t, t, t, lse + task * t);
    Epilogue add;
    add.accumulate = true;
    if (d[2]) gemm(k, t, g.d, t, {prob, 1, t}, d_o + out_off, g.c, 1, d[2] + off, g.ld, add);
    gemm(k, t, t, g.d, {d_o + out_off, g.c, 1}, in[2] + off, 1, g.ld, dprob, t, {});
    for (int64_t i = 0; i < t; ++i) dsum[i] = k.dot(d_o + out_off + i * g.c, o + out_off + i * g.c, g.d);
    k.softmax_grad_rows(prob, dprob, t, t, t, dsum);
    Epilogue scaled_add = add;
    scaled_add.alpha = scale;
    if (d[0]) gemm(k, t, g.d, t, {dprob, t, 1}, in[1] + off, g.ld, 1, d[0] + off, g.ld, scaled_add);
    if (d[1]) gemm(k, t, g.d, t, {dprob, 1, t}, in[0] + off, g.ld, 1, d[1] + off, g.ld, scaled_add);
  });
  return true;
}

}  // namespace ddpm::cpu::fast
