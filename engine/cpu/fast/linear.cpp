// linear on the f32 fast path (the attention projections and the time
// embedding's MLP): the weight, in however many parts, is packed once per
// call into panels; the rows are split in fixed blocks (tasks). The weight
// gradient dW = dY^T X sums over rows in fixed chunks (one partial each,
// summed in chunk order); so does the bias gradient.
#include <algorithm>
#include <vector>

#include "engine/cpu/fast/common.h"
#include "engine/cpu/fast/ops.h"
#include "engine/cpu/fast/scratch.h"
#include "engine/cpu/fast/tiles.h"
#include "engine/cpu/thread_pool.h"

namespace ddpm::cpu::fast {

namespace {

constexpr int64_t kRowsPerTask = 64;
constexpr int64_t kRowsPerPartial = 512;

struct Geometry {
  int64_t rows, in, out, parts;
  int64_t part_out() const { return out / parts; }
};

Geometry geometry(const LinearParams& p, const Shape& x) {
  return {x.rows(), x.back(), p.out_features, p.weight_parts};
}

// W[o, i] of the stacked parts.
struct Weight {
  std::vector<const float*> parts;
  int64_t part_out, in;
  float operator()(int64_t o, int64_t i) const {
    return parts[size_t(o / part_out)][(o % part_out) * in + i];
  }
};

Weight weight(const LinearParams& p, const Geometry& g, std::span<const Tensor> inputs) {
  Weight w{{}, g.part_out(), g.in};
  for (int64_t part = 0; part < g.parts; ++part)
    w.parts.push_back(inputs[linear_weight_slot(p, part)].ptr<float>());
  return w;
}

}  // namespace

bool forward(const Kernels& k, const LinearParams& p, const ForwardArgs& a) {
  const Geometry g = geometry(p, a.inputs[0].shape);
  const Weight w = weight(p, g, a.inputs);
  const ColumnBlocks cb = column_blocks(k, g.out, g.in);
  float* panels = scratch(Slot::op_weights, size_t(g.in * cb.panel_width));
  pack_panels(cb, g.in, g.out, k.lanes, [&](int64_t i, int64_t o) { return w(o, i); }, panels);
  float* bias = nullptr;
  if (p.bias) {
    bias = scratch(Slot::op_misc, size_t(g.out));
    for (int64_t part = 0; part < g.parts; ++part)
      std::copy_n(a.inputs[linear_bias_slot(p, part)].ptr<float>(), g.part_out(),
                  bias + part * g.part_out());
  }
  const float* x = a.inputs[0].ptr<float>();
  const float* r = p.residual ? a.inputs.back().ptr<float>() : nullptr;
  float* y = a.outputs[0].ptr<float>();
  parallel_for_chunks(g.rows, kRowsPerTask, [&](int64_t r0, int64_t r1) {
    Epilogue e;
    e.bias = bias;
    e.add = r ? r + r0 * g.out : nullptr;
    e.add_rs = g.out;
    gemm_packed(k, r1 - r0, cb, g.in, {x + r0 * g.in, g.in, 1}, panels, y + r0 * g.out, g.out, e);
  });
  return true;
}

bool backward(const Kernels& k, const LinearParams& p, const BackwardArgs& a) {
  const Geometry g = geometry(p, a.inputs[0].shape);
  const float* dy = a.grad_outputs[0].ptr<float>();
  const std::vector<GradOut> grads = grad_outputs(a.grad_inputs);
  if (p.residual && grads.back().p)
    copy_or_add(dy, grads.back().p, g.rows * g.out, grads.back().accumulate);

  bool want_dw = false, want_db = false;
  for (int64_t part = 0; part < g.parts; ++part) {
    want_dw |= grads[linear_weight_slot(p, part)].p != nullptr;
    want_db |= p.bias && grads[linear_bias_slot(p, part)].p != nullptr;
  }
  if (want_dw || want_db) {
    // Partials of dW [out, in] (rows o broadcast from dy, lanes i of x) and db.
    const float* x = a.inputs[0].ptr<float>();
    const int64_t chunks = std::max<int64_t>(1, (g.rows + kRowsPerPartial - 1) / kRowsPerPartial);
    const int64_t wsize = g.out * g.in;
    float* parts = scratch(Slot::op_partials, size_t(chunks * (wsize + g.out)));
    float* db_parts = parts + chunks * wsize;
    parallel_for(chunks, [&](int64_t j) {
      const int64_t r0 = j * kRowsPerPartial, r1 = std::min(g.rows, r0 + kRowsPerPartial);
      if (want_dw)
        gemm(k, g.out, g.in, r1 - r0, {dy + r0 * g.out, 1, g.out}, x + r0 * g.in, g.in, 1,
             parts + j * wsize, g.in, {});
      if (want_db) {
        float* d = db_parts + j * g.out;
        std::fill(d, d + g.out, 0.0f);
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t o = 0; o < g.out; ++o) d[o] += dy[r * g.out + o];
      }
    });
    for (int64_t part = 0; part < g.parts; ++part) {
      const GradOut dw = grads[linear_weight_slot(p, part)];
      reduce_partials(parts + part * g.part_out() * g.in, chunks, wsize, g.part_out() * g.in, dw.p,
                      dw.accumulate);
      if (p.bias) {
        const GradOut db = grads[linear_bias_slot(p, part)];
        reduce_partials(db_parts + part * g.part_out(), chunks, g.out, g.part_out(), db.p,
                        db.accumulate);
      }
    }
  }

  const GradOut dx = grads[0];
  if (dx.p) {
    // dX = dY W: depth out, lanes in.
    const Weight w = weight(p, g, a.inputs);
    const ColumnBlocks cb = column_blocks(k, g.in, g.out);
    float* panels = scratch(Slot::op_weights, size_t(g.out * cb.panel_width));
    pack_panels(cb, g.out, g.in, k.lanes, [&](int64_t o, int64_t i) { return w(o, i); }, panels);
    parallel_for_chunks(g.rows, kRowsPerTask, [&](int64_t r0, int64_t r1) {
      Epilogue e;
      e.accumulate = dx.accumulate;
      gemm_packed(k, r1 - r0, cb, g.out, {dy + r0 * g.out, g.out, 1}, panels, dx.p + r0 * g.in,
                  g.in, e);
    });
  }
  return true;
}

}  // namespace ddpm::cpu::fast
