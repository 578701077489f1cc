// Multi-head attention on the CPU, one (sample, head) at a time: the T x T
// scores are materialised here (the reference may spend memory; the CUDA
// kernel does not). Backward recomputes the probabilities from the saved
// log-sum-exp: P = exp(scale Q K^T - lse). Q, K and V (and their gradients)
// are read as strided views: rows of C floats, or of 3C with packed q|k|v.
#include <algorithm>
#include <array>
#include <cmath>
#include <span>
#include <vector>

#include "engine/cpu/common.h"
#include "engine/cpu/fast/ops.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/ops.h"

namespace ddpm::cpu {

namespace {

struct AttnGeometry {
  int64_t n, tokens, heads, d, c;
  int64_t ld;  // row stride of q, k, v: c, or 3c when packed
  // Offsets of (sample n, head h) in q/k/v and in o.
  int64_t in_offset(int64_t n_, int64_t h) const { return n_ * tokens * ld + h * d; }
  int64_t out_offset(int64_t n_, int64_t h) const { return n_ * tokens * c + h * d; }
};

AttnGeometry geometry(const AttentionParams& p, const Shape& in0) {
  const int64_t c = p.heads * p.head_dim;
  return {in0[0], attention_tokens(in0), p.heads, p.head_dim, c, p.packed_qkv ? 3 * c : c};
}

// The q, k, v inputs (or their gradients): three tensors, or three column
// blocks of the packed one.
template <typename Tensorish, typename Get>
auto qkv_parts(const AttentionParams& p, const AttnGeometry& g, std::span<const Tensorish> ts,
               Get get) {
  using Ptr = decltype(get(ts[0]));
  std::array<Ptr, 3> r{};
  for (int i = 0; i < 3; ++i) {
    Ptr base = get(ts[p.packed_qkv ? 0 : size_t(i)]);
    r[size_t(i)] = base && p.packed_qkv ? base + i * g.c : base;
  }
  return r;
}

// s [T, T] = scale * Q_h K_h^T, Q_h and K_h strided views of [T, ld] rows.
template <typename T>
void scores(const AttnGeometry& g, T scale, const T* q, const T* k, T* s) {
  gemm<T>(false, true, int(g.tokens), int(g.tokens), int(g.d), scale, q, int(g.ld), k, int(g.ld),
          T(0), s, int(g.tokens));
}

}  // namespace

void forward(const AttentionParams& p, const ForwardArgs& a) {
  if (fast::try_fast(p, a, a.inputs[0].dtype)) return;
  dispatch_float(a.inputs[0].dtype, "attention", [&]<typename T>() {
    const AttnGeometry g = geometry(p, a.inputs[0].shape);
    const T scale = T(attention_scale(p));
    const auto qkv =
        qkv_parts(p, g, a.inputs, [](const Tensor& t) -> const T* { return t.ptr<T>(); });
    std::vector<T> s(static_cast<size_t>(g.tokens * g.tokens));
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t h = 0; h < g.heads; ++h) {
        const int64_t off = g.in_offset(n, h);
        scores(g, scale, qkv[0] + off, qkv[1] + off, s.data());
        T* lse = a.outputs[1].ptr<T>() + (n * g.heads + h) * g.tokens;
        for (int64_t i = 0; i < g.tokens; ++i) {
          T* row = s.data() + i * g.tokens;
          const T mx = *std::max_element(row, row + g.tokens);
          double sum = 0;
          for (int64_t j = 0; j < g.tokens; ++j) sum += std::exp(double(row[j] - mx));
          lse[i] = mx + T(std::log(sum));
          for (int64_t j = 0; j < g.tokens; ++j) row[j] = std::exp(row[j] - lse[i]);
        }
        gemm<T>(false, false, int(g.tokens), int(g.d), int(g.tokens), T(1), s.data(), int(g.tokens),
                qkv[2] + off, int(g.ld), T(0), a.outputs[0].ptr<T>() + g.out_offset(n, h),
                int(g.c));
      }
  });
}

// dV = P^T dO; dP = dO V^T; dS = P (dP - D), D_i = sum_j P_ij dP_ij = dO_i . O_i;
// dQ = scale dS K; dK = scale dS^T Q.
void backward(const AttentionParams& p, const BackwardArgs& a) {
  if (fast::try_fast(p, a, a.inputs[0].dtype)) return;
  dispatch_float(a.inputs[0].dtype, "attention", [&]<typename T>() {
    const AttnGeometry g = geometry(p, a.inputs[0].shape);
    const T scale = T(attention_scale(p));
    std::vector<T*> grads;
    for (const GradTensor& gi : a.grad_inputs) grads.push_back(begin_grad<T>(gi));
    const auto [dq, dk, dv] = qkv_parts(p, g, std::span<T* const>(grads), [](T* t) { return t; });
    const auto qkv =
        qkv_parts(p, g, a.inputs, [](const Tensor& t) -> const T* { return t.ptr<T>(); });
    if (!a.grad_outputs[0].defined()) return;
    const size_t tt = static_cast<size_t>(g.tokens * g.tokens);
    std::vector<T> prob(tt), dprob(tt);
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t h = 0; h < g.heads; ++h) {
        const int64_t off = g.in_offset(n, h), out_off = g.out_offset(n, h);
        const T* q = qkv[0] + off;
        const T* k = qkv[1] + off;
        const T* v = qkv[2] + off;
        const T* o = a.outputs[0].ptr<T>() + out_off;
        const T* d_o = a.grad_outputs[0].ptr<T>() + out_off;
        const T* lse = a.outputs[1].ptr<T>() + (n * g.heads + h) * g.tokens;
        scores(g, scale, q, k, prob.data());
        for (int64_t i = 0; i < g.tokens; ++i)
          for (int64_t j = 0; j < g.tokens; ++j)
            prob[size_t(i * g.tokens + j)] = std::exp(prob[size_t(i * g.tokens + j)] - lse[i]);
        if (dv)
          gemm<T>(true, false, int(g.tokens), int(g.d), int(g.tokens), T(1), prob.data(),
                  int(g.tokens), d_o, int(g.c), T(1), dv + off, int(g.ld));
        gemm<T>(false, true, int(g.tokens), int(g.tokens), int(g.d), T(1), d_o, int(g.c), v,
                int(g.ld), T(0), dprob.data(), int(g.tokens));
        for (int64_t i = 0; i < g.tokens; ++i) {
          T dsum = 0;
          for (int64_t e = 0; e < g.d; ++e) dsum += d_o[i * g.c + e] * o[i * g.c + e];
          for (int64_t j = 0; j < g.tokens; ++j) {
            const size_t ij = size_t(i * g.tokens + j);
            dprob[ij] = prob[ij] * (dprob[ij] - dsum);  // now dS
          }
        }
        if (dq)
          gemm<T>(false, false, int(g.tokens), int(g.d), int(g.tokens), scale, dprob.data(),
                  int(g.tokens), k, int(g.ld), T(1), dq + off, int(g.ld));
        if (dk)
          gemm<T>(true, false, int(g.tokens), int(g.d), int(g.tokens), scale, dprob.data(),
                  int(g.tokens), q, int(g.ld), T(1), dk + off, int(g.ld));
      }
  });
}

}  // namespace ddpm::cpu
