// Multi-head attention on the CPU, one (sample, head) at a time: the T x T
// scores are materialised here (the reference may spend memory; the CUDA
// kernel does not). Backward recomputes the probabilities from the saved
// log-sum-exp: P = exp(scale Q K^T - lse).
#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/cpu/common.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/ops.h"

namespace ddpm::cpu {

namespace {

struct AttnGeometry {
  int64_t n, tokens, heads, d, c;
};

AttnGeometry geometry(const AttentionParams& p, const Shape& q) {
  return {q[0], attention_tokens(q), p.heads, p.head_dim, q.back()};
}

// s [T, T] = scale * Q_h K_h^T, Q_h and K_h strided views of [T, C] rows.
template <typename T>
void scores(const AttnGeometry& g, T scale, const T* q, const T* k, T* s) {
  gemm<T>(false, true, int(g.tokens), int(g.tokens), int(g.d), scale, q, int(g.c), k, int(g.c),
          T(0), s, int(g.tokens));
}

}  // namespace

void forward(const AttentionParams& p, const ForwardArgs& a) {
  dispatch_float(a.inputs[0].dtype, "attention", [&]<typename T>() {
    const AttnGeometry g = geometry(p, a.inputs[0].shape);
    const T scale = T(attention_scale(p));
    std::vector<T> s(static_cast<size_t>(g.tokens * g.tokens));
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t h = 0; h < g.heads; ++h) {
        const int64_t off = n * g.tokens * g.c + h * g.d;
        scores(g, scale, a.inputs[0].ptr<T>() + off, a.inputs[1].ptr<T>() + off, s.data());
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
                a.inputs[2].ptr<T>() + off, int(g.c), T(0), a.outputs[0].ptr<T>() + off, int(g.c));
      }
  });
}

// dV = P^T dO; dP = dO V^T; dS = P (dP - D), D_i = sum_j P_ij dP_ij = dO_i . O_i;
// dQ = scale dS K; dK = scale dS^T Q.
void backward(const AttentionParams& p, const BackwardArgs& a) {
  dispatch_float(a.inputs[0].dtype, "attention", [&]<typename T>() {
    const AttnGeometry g = geometry(p, a.inputs[0].shape);
    const T scale = T(attention_scale(p));
    T* dq = begin_grad<T>(a.grad_inputs[0]);
    T* dk = begin_grad<T>(a.grad_inputs[1]);
    T* dv = begin_grad<T>(a.grad_inputs[2]);
    if (!a.grad_outputs[0].defined()) return;
    const size_t tt = static_cast<size_t>(g.tokens * g.tokens);
    std::vector<T> prob(tt), dprob(tt);
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t h = 0; h < g.heads; ++h) {
        const int64_t off = n * g.tokens * g.c + h * g.d;
        const T* q = a.inputs[0].ptr<T>() + off;
        const T* k = a.inputs[1].ptr<T>() + off;
        const T* v = a.inputs[2].ptr<T>() + off;
        const T* o = a.outputs[0].ptr<T>() + off;
        const T* d_o = a.grad_outputs[0].ptr<T>() + off;
        const T* lse = a.outputs[1].ptr<T>() + (n * g.heads + h) * g.tokens;
        scores(g, scale, q, k, prob.data());
        for (int64_t i = 0; i < g.tokens; ++i)
          for (int64_t j = 0; j < g.tokens; ++j)
            prob[size_t(i * g.tokens + j)] = std::exp(prob[size_t(i * g.tokens + j)] - lse[i]);
        if (dv)
          gemm<T>(true, false, int(g.tokens), int(g.d), int(g.tokens), T(1), prob.data(),
                  int(g.tokens), d_o, int(g.c), T(1), dv + off, int(g.c));
        gemm<T>(false, true, int(g.tokens), int(g.tokens), int(g.d), T(1), d_o, int(g.c), v,
                int(g.c), T(0), dprob.data(), int(g.tokens));
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
                  int(g.tokens), k, int(g.c), T(1), dq + off, int(g.c));
        if (dk)
          gemm<T>(true, false, int(g.tokens), int(g.d), int(g.tokens), scale, dprob.data(),
                  int(g.tokens), q, int(g.c), T(1), dk + off, int(g.c));
      }
  });
}

}  // namespace ddpm::cpu
