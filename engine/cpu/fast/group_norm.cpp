// GroupNorm (+ channel add, + SiLU) on the f32 fast path. Each sample's
// pixels are split in fixed chunks (tasks = samples x chunks, so a batch of
// one still uses every thread); per-channel sums go into one double partial
// per task and are reduced in chunk order, then per group. The element-wise
// passes are the primitive kernels of isa.h (vectorised over channels).
// Backward stores dz = dy act'(z) from its first pass and reads it in the
// second, instead of recomputing the SiLU's exponential.
#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/cpu/fast/common.h"
#include "engine/cpu/fast/ops.h"
#include "engine/cpu/fast/scratch.h"
#include "engine/cpu/thread_pool.h"

namespace ddpm::cpu::fast {

namespace {

constexpr int64_t kChunkPixels = 256;

struct Geometry {
  int64_t n, pixels, c, groups;
  int64_t chunks;  // per sample
  int64_t cpg() const { return c / groups; }
  int64_t tasks() const { return n * chunks; }
  int64_t p0(int64_t chunk) const { return chunk * kChunkPixels; }
  int64_t count(int64_t chunk) const { return std::min(kChunkPixels, pixels - p0(chunk)); }
};

Geometry geometry(const GroupNormParams& p, const Shape& x) {
  const int64_t n = x[0], c = x.back(), pixels = x.numel() / (n * c);
  return {n, pixels, c, p.groups, std::max<int64_t>(1, (pixels + kChunkPixels - 1) / kChunkPixels)};
}

// Sums the tasks' partials of sample b (chunks in order) into out[c].
void sum_chunks(const Geometry& g, const double* parts, int64_t b, int64_t stride, double* out) {
  std::fill(out, out + g.c, 0.0);
  for (int64_t ch = 0; ch < g.chunks; ++ch) {
    const double* p = parts + (b * g.chunks + ch) * stride;
    for (int64_t c = 0; c < g.c; ++c) out[c] += p[c];
  }
}

// Group means of per-channel sums, spread back over the channels as floats.
void group_means(const Geometry& g, const double* sums, double count, float* per_channel,
                 double* per_group) {
  for (int64_t gr = 0; gr < g.groups; ++gr) {
    double s = 0;
    for (int64_t c = gr * g.cpg(); c < (gr + 1) * g.cpg(); ++c) s += sums[c];
    const double m = s / count;
    if (per_group) per_group[gr] = m;
    for (int64_t c = gr * g.cpg(); c < (gr + 1) * g.cpg(); ++c) per_channel[c] = float(m);
  }
}

}  // namespace

bool forward(const Kernels& k, const GroupNormParams& p, const ForwardArgs& a) {
  const Geometry g = geometry(p, a.inputs[0].shape);
  const float* x = a.inputs[0].ptr<float>();
  const float* gamma = p.affine ? a.inputs[1].ptr<float>() : nullptr;
  const float* beta = p.affine ? a.inputs[2].ptr<float>() : nullptr;
  const float* bias = p.channel_add ? a.inputs[group_norm_channel_add_slot(p)].ptr<float>() : nullptr;
  float* y = a.outputs[0].ptr<float>();
  float* mean_out = a.outputs[1].ptr<float>();
  float* rstd_out = a.outputs[2].ptr<float>();
  const double count = double(g.pixels * g.cpg());
  double* parts = scratch_doubles(Slot::op_partials, size_t(g.tasks() * g.c));
  // Per-channel mean and rstd of each sample, as floats.
  float* stats = scratch(Slot::op_misc, size_t(2 * g.n * g.c));
  float* mean_c = stats;
  float* rstd_c = stats + g.n * g.c;
  auto channel_sums = [&](const float* mean) {
    parallel_for(g.tasks(), [&](int64_t task) {
      const int64_t b = task / g.chunks, ch = task % g.chunks;
      double* s = parts + task * g.c;
      std::fill(s, s + g.c, 0.0);
      k.gn_channel_sums(x + (b * g.pixels + g.p0(ch)) * g.c, bias ? bias + b * g.c : nullptr,
                        g.count(ch), g.c, mean ? mean + b * g.c : nullptr, s);
    });
  };
  std::vector<double> sums(static_cast<size_t>(g.c)), per_group(static_cast<size_t>(g.groups));
  channel_sums(nullptr);
  for (int64_t b = 0; b < g.n; ++b) {
    sum_chunks(g, parts, b, g.c, sums.data());
    group_means(g, sums.data(), count, mean_c + b * g.c, per_group.data());
    for (int64_t gr = 0; gr < g.groups; ++gr) mean_out[b * g.groups + gr] = float(per_group[size_t(gr)]);
  }
  channel_sums(mean_c);
  for (int64_t b = 0; b < g.n; ++b) {
    sum_chunks(g, parts, b, g.c, sums.data());
    group_means(g, sums.data(), count, rstd_c + b * g.c, per_group.data());
    for (int64_t gr = 0; gr < g.groups; ++gr) {
      const float r = float(1.0 / std::sqrt(per_group[size_t(gr)] + p.eps));
      rstd_out[b * g.groups + gr] = r;
      for (int64_t c = gr * g.cpg(); c < (gr + 1) * g.cpg(); ++c) rstd_c[b * g.c + c] = r;
    }
  }
  parallel_for(g.tasks(), [&](int64_t task) {
    const int64_t b = task / g.chunks, ch = task % g.chunks;
    const int64_t off = (b * g.pixels + g.p0(ch)) * g.c;
    k.gn_apply(x + off, bias ? bias + b * g.c : nullptr, g.count(ch), g.c, mean_c + b * g.c,
               rstd_c + b * g.c, gamma, beta, p.silu, y + off);
  });
  return true;
}

bool backward(const Kernels& k, const GroupNormParams& p, const BackwardArgs& a) {
  const Geometry g = geometry(p, a.inputs[0].shape);
  const float* x = a.inputs[0].ptr<float>();
  const float* gamma = p.affine ? a.inputs[1].ptr<float>() : nullptr;
  const float* beta = p.affine && p.silu ? a.inputs[2].ptr<float>() : nullptr;
  const size_t bias_slot = group_norm_channel_add_slot(p);
  const float* bias = p.channel_add ? a.inputs[bias_slot].ptr<float>() : nullptr;
  const float* mean = a.outputs[1].ptr<float>();
  const float* rstd = a.outputs[2].ptr<float>();
  const float* dy = a.grad_outputs[0].ptr<float>();
  const std::vector<GradOut> grads = grad_outputs(a.grad_inputs);
  const GradOut dx = grads[0];
  const GradOut dgamma = p.affine ? grads[1] : GradOut{};
  const GradOut dbeta = p.affine ? grads[2] : GradOut{};
  const GradOut dbias = p.channel_add ? grads[bias_slot] : GradOut{};
  const double count = double(g.pixels * g.cpg());

  // Per-channel mean, rstd (pass A, B) and m1, m2 (pass B) of each sample.
  float* stats = scratch(Slot::op_misc, size_t(4 * g.n * g.c));
  float* mean_c = stats;
  float* rstd_c = stats + g.n * g.c;
  float* m1 = stats + 2 * g.n * g.c;
  float* m2 = stats + 3 * g.n * g.c;
  for (int64_t b = 0; b < g.n; ++b)
    for (int64_t c = 0; c < g.c; ++c) {
      mean_c[b * g.c + c] = mean[b * g.groups + c / g.cpg()];
      rstd_c[b * g.c + c] = rstd[b * g.groups + c / g.cpg()];
    }
  float* dz = scratch(Slot::op_input, size_t(g.n * g.pixels * g.c));
  // Four sums per channel per task: dz xhat, dz, dxhat, dxhat xhat.
  const int64_t stride = 4 * g.c;
  double* parts = scratch_doubles(Slot::op_partials, size_t(g.tasks() * stride));
  parallel_for(g.tasks(), [&](int64_t task) {
    const int64_t b = task / g.chunks, ch = task % g.chunks;
    const int64_t off = (b * g.pixels + g.p0(ch)) * g.c;
    double* s = parts + task * stride;
    std::fill(s, s + stride, 0.0);
    k.gn_backward_sums(x + off, bias ? bias + b * g.c : nullptr, dy + off, g.count(ch), g.c,
                       mean_c + b * g.c, rstd_c + b * g.c, gamma, beta, p.silu, dz + off, s,
                       s + g.c, s + 2 * g.c, s + 3 * g.c);
  });
  std::vector<double> sums(static_cast<size_t>(stride)), dgamma_sum(static_cast<size_t>(g.c)),
      dbeta_sum(static_cast<size_t>(g.c));
  for (int64_t b = 0; b < g.n; ++b) {
    std::fill(sums.begin(), sums.end(), 0.0);
    for (int64_t ch = 0; ch < g.chunks; ++ch) {
      const double* s = parts + (b * g.chunks + ch) * stride;
      for (int64_t i = 0; i < stride; ++i) sums[size_t(i)] += s[i];
    }
    for (int64_t c = 0; c < g.c; ++c) {
      dgamma_sum[size_t(c)] += sums[size_t(c)];
      dbeta_sum[size_t(c)] += sums[size_t(g.c + c)];
    }
    group_means(g, sums.data() + 2 * g.c, count, m1 + b * g.c, nullptr);
    group_means(g, sums.data() + 3 * g.c, count, m2 + b * g.c, nullptr);
  }
  if (dgamma.p)
    for (int64_t c = 0; c < g.c; ++c) {
      const float v = float(dgamma_sum[size_t(c)]);
      dgamma.p[c] = dgamma.accumulate ? dgamma.p[c] + v : v;
    }
  if (dbeta.p)
    for (int64_t c = 0; c < g.c; ++c) {
      const float v = float(dbeta_sum[size_t(c)]);
      dbeta.p[c] = dbeta.accumulate ? dbeta.p[c] + v : v;
    }
  if (!dx.p && !dbias.p) return true;
  parallel_for(g.tasks(), [&](int64_t task) {
    const int64_t b = task / g.chunks, ch = task % g.chunks;
    const int64_t off = (b * g.pixels + g.p0(ch)) * g.c;
    double* s = parts + task * stride;
    std::fill(s, s + g.c, 0.0);
    k.gn_backward_apply(x + off, bias ? bias + b * g.c : nullptr, dz + off, g.count(ch), g.c,
                        mean_c + b * g.c, rstd_c + b * g.c, gamma, m1 + b * g.c, m2 + b * g.c,
                        dx.p ? dx.p + off : nullptr, dx.accumulate, dbias.p ? s : nullptr);
  });
  if (dbias.p)
    for (int64_t b = 0; b < g.n; ++b) {
      sum_chunks(g, parts, b, stride, sums.data());
      for (int64_t c = 0; c < g.c; ++c) {
        const float v = float(sums[size_t(c)]);
        float& d = dbias.p[b * g.c + c];
        d = dbias.accumulate ? d + v : v;
      }
    }
  return true;
}

}  // namespace ddpm::cpu::fast
