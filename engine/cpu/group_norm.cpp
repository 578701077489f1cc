// GroupNorm (+ optional per-channel add before it, + optional SiLU after it)
// on the CPU, channels last. Statistics are accumulated in double and stored
// as mean and 1/sqrt(var + eps) per (sample, group), as PyTorch does (biased
// variance). The added h = x + bias[n, c] is rounded to T, as the unfused add
// would store it, and recomputed wherever it is read.
#include <cmath>
#include <vector>

#include "engine/cpu/common.h"
#include "engine/cpu/fast/ops.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/thread_pool.h"

namespace ddpm::cpu {

namespace {

template <typename T>
T sigmoid(T z) {
  return T(1) / (T(1) + std::exp(-z));
}

struct GnGeometry {
  int64_t n, pixels, c, groups;
  int64_t cpg() const { return c / groups; }
};

GnGeometry geometry(const GroupNormParams& p, const Shape& x) {
  return {x[0], x.numel() / (x[0] * x.back()), x.back(), p.groups};
}

// h = x + bias[n, c] for the elements of sample n (x and bias already offset
// to sample n), or x alone.
template <typename T>
struct AddedInput {
  const T* x;
  const T* bias;  // [C] of this sample, or null
  int64_t c;
  T operator()(int64_t i, int64_t ch) const {
    return bias ? x[i * c + ch] + bias[ch] : x[i * c + ch];
  }
};

}  // namespace

void forward(const GroupNormParams& p, const ForwardArgs& a) {
  if (fast::try_fast(p, a, a.inputs[0].dtype)) return;
  dispatch_float(a.inputs[0].dtype, "group_norm", [&]<typename T>() {
    const GnGeometry g = geometry(p, a.inputs[0].shape);
    const T* x = a.inputs[0].ptr<T>();
    const T* gamma = p.affine ? a.inputs[1].ptr<T>() : nullptr;
    const T* beta = p.affine ? a.inputs[2].ptr<T>() : nullptr;
    const T* bias = p.channel_add ? a.inputs[group_norm_channel_add_slot(p)].ptr<T>() : nullptr;
    T* y = a.outputs[0].ptr<T>();
    T* mean_out = a.outputs[1].ptr<T>();
    T* rstd_out = a.outputs[2].ptr<T>();
    parallel_for(g.n * g.groups, [&](int64_t task) {
        const int64_t n = task / g.groups, gr = task % g.groups;
        const AddedInput<T> xn{x + n * g.pixels * g.c, bias ? bias + n * g.c : nullptr, g.c};
        T* yn = y + n * g.pixels * g.c;
        const int64_t c0 = gr * g.cpg(), c1 = c0 + g.cpg();
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < g.pixels; ++i)
          for (int64_t c = c0; c < c1; ++c) sum += double(xn(i, c));
        const double count = double(g.pixels * g.cpg());
        const double mean = sum / count;
        for (int64_t i = 0; i < g.pixels; ++i)
          for (int64_t c = c0; c < c1; ++c) {
            const double d = double(xn(i, c)) - mean;
            sq += d * d;
          }
        const T m = T(mean), rstd = T(1.0 / std::sqrt(sq / count + p.eps));
        mean_out[n * g.groups + gr] = m;
        rstd_out[n * g.groups + gr] = rstd;
        for (int64_t i = 0; i < g.pixels; ++i)
          for (int64_t c = c0; c < c1; ++c) {
            T z = (xn(i, c) - m) * rstd;
            if (gamma) z = z * gamma[c] + beta[c];
            yn[i * g.c + c] = p.silu ? z * sigmoid(z) : z;
          }
    });
  });
}

// With xhat = (x - mean) rstd, z = gamma xhat + beta, y = act(z):
//   dz = dy act'(z), dgamma = sum dz xhat, dbeta = sum dz, dxhat = dz gamma,
//   dx = dh = rstd (dxhat - mean_g(dxhat) - xhat mean_g(dxhat xhat)),
//   dbias[n, c] = sum over pixels of dh.
void backward(const GroupNormParams& p, const BackwardArgs& a) {
  if (fast::try_fast(p, a, a.inputs[0].dtype)) return;
  dispatch_float(a.inputs[0].dtype, "group_norm", [&]<typename T>() {
    const GnGeometry g = geometry(p, a.inputs[0].shape);
    const T* x = a.inputs[0].ptr<T>();
    const T* gamma = p.affine ? a.inputs[1].ptr<T>() : nullptr;
    const T* beta = p.affine && p.silu ? a.inputs[2].ptr<T>() : nullptr;
    const T* bias = p.channel_add ? a.inputs[group_norm_channel_add_slot(p)].ptr<T>() : nullptr;
    const T* mean = a.outputs[1].ptr<T>();
    const T* rstd = a.outputs[2].ptr<T>();
    const T* dy = a.grad_outputs[0].ptr<T>();
    T* dx = begin_grad<T>(a.grad_inputs[0]);
    T* dgamma = p.affine ? begin_grad<T>(a.grad_inputs[1]) : nullptr;
    T* dbeta = p.affine ? begin_grad<T>(a.grad_inputs[2]) : nullptr;
    // Every rule adds, so x and bias being one value ([N, C] maps) needs no care.
    T* dbias =
        p.channel_add ? begin_grad<T>(a.grad_inputs[group_norm_channel_add_slot(p)]) : nullptr;
    const int64_t nc = g.n * g.c;
    // Per (sample, channel) partial sums, reduced over samples afterwards so
    // the parallel loop writes disjoint memory.
    std::vector<T> dgamma_nc(static_cast<size_t>(nc), T(0)),
        dbeta_nc(static_cast<size_t>(nc), T(0));
    parallel_for(g.n * g.groups, [&](int64_t task) {
        const int64_t n = task / g.groups, gr = task % g.groups;
        const int64_t base = n * g.pixels * g.c, c0 = gr * g.cpg(), c1 = c0 + g.cpg();
        const AddedInput<T> xn{x + base, bias ? bias + n * g.c : nullptr, g.c};
        const T m = mean[n * g.groups + gr], r = rstd[n * g.groups + gr];
        double sum_dxhat = 0, sum_dxhat_xhat = 0;
        auto dz_at = [&](int64_t i, int64_t c, T xhat) {
          T dz = dy[base + i * g.c + c];
          if (p.silu) {
            const T z = gamma ? xhat * gamma[c] + (beta ? beta[c] : T(0)) : xhat;
            const T s = sigmoid(z);
            dz *= s * (T(1) + z * (T(1) - s));
          }
          return dz;
        };
        for (int64_t i = 0; i < g.pixels; ++i)
          for (int64_t c = c0; c < c1; ++c) {
            const T xhat = (xn(i, c) - m) * r;
            const T dz = dz_at(i, c, xhat);
            dgamma_nc[size_t(n * g.c + c)] += dz * xhat;
            dbeta_nc[size_t(n * g.c + c)] += dz;
            const T dxhat = gamma ? dz * gamma[c] : dz;
            sum_dxhat += double(dxhat);
            sum_dxhat_xhat += double(dxhat * xhat);
          }
        if (!dx && !dbias) return;
        const double count = double(g.pixels * g.cpg());
        const T mean_dxhat = T(sum_dxhat / count), mean_dxhat_xhat = T(sum_dxhat_xhat / count);
        // This (sample, group) owns dbias[n, c0..c1): no other iteration writes it.
        for (int64_t i = 0; i < g.pixels; ++i)
          for (int64_t c = c0; c < c1; ++c) {
            const T xhat = (xn(i, c) - m) * r;
            const T dz = dz_at(i, c, xhat);
            const T dxhat = gamma ? dz * gamma[c] : dz;
            const T dh = r * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat);
            if (dx) dx[base + i * g.c + c] += dh;
            if (dbias) dbias[n * g.c + c] += dh;
          }
    });
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t c = 0; c < g.c; ++c) {
        if (dgamma) dgamma[c] += dgamma_nc[size_t(n * g.c + c)];
        if (dbeta) dbeta[c] += dbeta_nc[size_t(n * g.c + c)];
      }
  });
}

}  // namespace ddpm::cpu
