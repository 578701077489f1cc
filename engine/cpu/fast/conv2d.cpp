// conv2d on the f32 fast path: a direct NHWC convolution on the micro-kernel
// (isa.h), no im2col. An output tile is R consecutive pixels of one output
// row by V vectors of output channels; its reduction runs over the kh*kw
// taps (one segment each: the input pixels under the tap, C channels deep)
// against the weight packed as [tap, ci] x [o] panels. The input is read in
// place (a zero-padded copy when the conv pads).
//   forward  y = conv(x, w) + bias + r: tasks = output rows.
//   dx, stride 1: the same kernel over dy padded by k - 1 - pad, with the
//       weight rotated by 180 degrees and transposed (a "full" convolution);
//       stride > 1: each tap's dy [pixels, O] x W_tap [O, C] added into a
//       padded dx image at stride s, tap after tap (tasks = images).
//   dw = sum over pixels dy^T x_shifted: rows = output channels broadcast
//       from dy, lanes = input channels of the shifted x; the pixels are
//       split in fixed chunks, one partial per (chunk, tap), summed in chunk
//       order (deterministic at any thread count); db the same way.
#include <algorithm>
#include <array>
#include <vector>

#include "engine/cpu/fast/common.h"
#include "engine/cpu/fast/ops.h"
#include "engine/cpu/fast/scratch.h"
#include "engine/cpu/fast/tiles.h"
#include "engine/cpu/thread_pool.h"

namespace ddpm::cpu::fast {

namespace {

constexpr int kMaxTaps = 49;  // kernels up to 7x7
// Output pixels per partial of the weight gradient: a chunk's dy and x rows
// (~1024 x (C + O) floats) stay in L2 while every (tap, o, c) tile of the
// chunk streams over them.
constexpr int64_t kChunkPixels = 1024;

// An NHWC map.
struct Map {
  const float* p;
  int64_t n, h, w, c;
};

// m zero-padded by pad: a copy in `slot`, or m itself when pad is zero.
Map padded(const Map& m, const Padding2d& pad, Slot slot) {
  if (!pad.top && !pad.bottom && !pad.left && !pad.right) return m;
  const int64_t hp = m.h + pad.top + pad.bottom, wp = m.w + pad.left + pad.right, c = m.c;
  float* out = scratch(slot, size_t(m.n * hp * wp * c));
  parallel_for_chunks(m.n * hp, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t b = row / hp, y = row % hp - pad.top;
      float* dst = out + row * wp * c;
      if (y < 0 || y >= m.h) {
        std::fill(dst, dst + wp * c, 0.0f);
        continue;
      }
      std::fill(dst, dst + pad.left * c, 0.0f);
      std::copy_n(m.p + (b * m.h + y) * m.w * c, m.w * c, dst + pad.left * c);
      std::fill(dst + (pad.left + m.w) * c, dst + wp * c, 0.0f);
    }
  });
  return {out, m.n, hp, wp, c};
}

struct ConvOut {
  float* y;
  int64_t h, w, c;
  const float* bias;  // [c] or null
  const float* add;   // like y, or null
  bool accumulate;
};

// out[b, oy, ox, :] = sum over taps (ky, kx) and ci of
//   xp[b, oy s + ky, ox s + kx, ci] * W[(ky kw + kx) C + ci, :]
// with W in panels (depth kh kw C), epilogue per ConvOut.
void direct_conv(const Kernels& k, const Map& xp, int kh, int kw, int s, const ColumnBlocks& cb,
                 const float* panels, const ConvOut& out) {
  const int64_t taps = kh * kw, c = xp.c;
  parallel_for(xp.n * out.h, [&](int64_t row) {
    const int64_t b = row / out.h, oy = row % out.h;
    std::array<Segment, kMaxTaps> segs;
    for (const ColumnBlock& blk : cb.blocks) {
      const int64_t width = int64_t(blk.vectors) * k.lanes;
      TileArgs t;
      t.segs = segs.data();
      t.nseg = int(taps);
      t.a_rs = s * c;
      t.b_ks = width;
      t.out_rs = out.c;
      t.last_lanes = blk.last_lanes;
      t.bias = out.bias ? out.bias + blk.col0 : nullptr;
      t.add_rs = out.c;
      t.accumulate = out.accumulate;
      for_row_tiles(out.w, k.max_rows[blk.vectors], [&](int64_t ox0, int rows) {
        for (int ky = 0; ky < kh; ++ky)
          for (int kx = 0; kx < kw; ++kx) {
            const int tap = ky * kw + kx;
            segs[size_t(tap)] = {xp.p + ((b * xp.h + oy * s + ky) * xp.w + ox0 * s + kx) * c,
                                 panels + blk.panel_offset + tap * c * width, c};
          }
        const int64_t off = ((b * out.h + oy) * out.w + ox0) * out.c + blk.col0;
        t.out = out.y + off;
        t.add = out.add ? out.add + off : nullptr;
        k.tile[blk.vectors][rows][0](t);
      });
    }
  });
}

struct Geometry {
  int64_t n, h, w, c, ho, wo, o;
  int kh, kw, s;
  Padding2d pad;
  int64_t taps() const { return int64_t(kh) * kw; }
  int64_t depth() const { return taps() * c; }
};

Geometry geometry(const Conv2dParams& p, const Shape& x, const Shape& y) {
  return {x[0], x[1], x[2], x[3], y[1], y[2], p.out_channels, p.kernel_h, p.kernel_w,
          p.stride, p.pad};
}

// dx for stride 1: the forward kernel over dy padded by k - 1 - pad, with
// W'[(ky', kx', o), ci] = W[o, kh - 1 - ky', kw - 1 - kx', ci].
void input_grad_gather(const Kernels& k, const Geometry& g, const float* w, const float* dy,
                       GradOut dx) {
  const Padding2d full{g.kh - 1 - g.pad.top, g.kh - 1 - g.pad.bottom, g.kw - 1 - g.pad.left,
                       g.kw - 1 - g.pad.right};
  const int64_t depth = g.taps() * g.o;
  const ColumnBlocks cb = column_blocks(k, g.c, depth);
  float* panels = scratch(Slot::op_weights, size_t(depth * cb.panel_width));
  const int64_t taps = g.taps();
  pack_panels(
      cb, depth, g.c, k.lanes,
      [&](int64_t kk, int64_t ci) {
        const int64_t tap = kk / g.o, o = kk % g.o;
        return w[(o * taps + (taps - 1 - tap)) * g.c + ci];
      },
      panels);
  const Map dyp = padded({dy, g.n, g.ho, g.wo, g.o}, full, Slot::op_input);
  direct_conv(k, dyp, g.kh, g.kw, 1, cb, panels,
              {dx.p, g.h, g.w, g.c, nullptr, nullptr, dx.accumulate});
}

// dx for any stride: per image, dxp[oy s + ky, ox s + kx, :] += dy[oy, ox, :] W_tap
// for each tap in order, into a zeroed padded image, then its interior to dx.
void input_grad_scatter(const Kernels& k, const Geometry& g, const float* w, const float* dy,
                        GradOut dx) {
  const int64_t taps = g.taps();
  const ColumnBlocks cb = column_blocks(k, g.c, g.o);
  const int64_t per_tap = g.o * cb.panel_width;
  float* panels = scratch(Slot::op_weights, size_t(taps * per_tap));
  for (int64_t tap = 0; tap < taps; ++tap)
    pack_panels(
        cb, g.o, g.c, k.lanes,
        [&](int64_t o, int64_t ci) { return w[(o * taps + tap) * g.c + ci]; },
        panels + tap * per_tap);
  const int64_t hp = g.h + g.pad.top + g.pad.bottom, wp = g.w + g.pad.left + g.pad.right;
  parallel_for(g.n, [&](int64_t b) {
    float* dxp = scratch(Slot::task_a, size_t(hp * wp * g.c));
    std::fill(dxp, dxp + hp * wp * g.c, 0.0f);
    Segment seg{};
    for (int ky = 0; ky < g.kh; ++ky)
      for (int kx = 0; kx < g.kw; ++kx)
        for (int64_t oy = 0; oy < g.ho; ++oy)
          for (const ColumnBlock& blk : cb.blocks) {
            TileArgs t;
            t.segs = &seg;
            t.nseg = 1;
            t.a_rs = g.o;
            t.b_ks = int64_t(blk.vectors) * k.lanes;
            t.out_rs = g.s * g.c;
            t.last_lanes = blk.last_lanes;
            t.accumulate = true;
            for_row_tiles(g.wo, k.max_rows[blk.vectors], [&](int64_t ox0, int rows) {
              seg = {dy + ((b * g.ho + oy) * g.wo + ox0) * g.o,
                     panels + (ky * g.kw + kx) * per_tap + blk.panel_offset, g.o};
              t.out = dxp + ((oy * g.s + ky) * wp + kx + ox0 * g.s) * g.c + blk.col0;
              k.tile[blk.vectors][rows][0](t);
            });
          }
    float* dst = dx.p + b * g.h * g.w * g.c;
    for (int64_t y = 0; y < g.h; ++y) {
      const float* src = dxp + ((y + g.pad.top) * wp + g.pad.left) * g.c;
      float* d = dst + y * g.w * g.c;
      for (int64_t i = 0; i < g.w * g.c; ++i) d[i] = dx.accumulate ? d[i] + src[i] : src[i];
    }
  });
}

// dw [O, taps, C] and db [O] as sums over fixed chunks of output rows.
void weight_grad(const Kernels& k, const Geometry& g, const float* x, const float* dy, GradOut dw,
                 GradOut db) {
  const Map xp = dw.p ? padded({x, g.n, g.h, g.w, g.c}, g.pad, Slot::op_input) : Map{};
  const int64_t rows = g.n * g.ho;
  const int64_t rows_per_chunk = std::max<int64_t>(1, (kChunkPixels + g.wo - 1) / g.wo);
  const int64_t chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
  const int64_t taps = g.taps(), wsize = g.o * taps * g.c;
  float* parts = scratch(Slot::op_partials, size_t(chunks * (wsize + g.o)));
  float* db_parts = parts + chunks * wsize;
  const ColumnBlocks cb = column_blocks(k, g.c, 0);
  const int64_t per_chunk = dw.p ? taps : 1;
  parallel_for(chunks * per_chunk, [&](int64_t task) {
    const int64_t j = task / per_chunk, tap = task % per_chunk;
    const int64_t r0 = j * rows_per_chunk, r1 = std::min(rows, r0 + rows_per_chunk);
    if (dw.p) {
      const int64_t ky = tap / g.kw, kx = tap % g.kw;
      thread_local std::vector<Segment> segs;
      segs.resize(size_t(r1 - r0));
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / g.ho, oy = r % g.ho;
        segs[size_t(r - r0)] = {dy + r * g.wo * g.o,
                                xp.p + ((b * xp.h + oy * g.s + ky) * xp.w + kx) * g.c, g.wo};
      }
      for (const ColumnBlock& blk : cb.blocks) {
        TileArgs t;
        t.segs = segs.data();
        t.nseg = int(r1 - r0);
        t.a_rs = 1;
        t.a_ks = g.o;
        t.b_ks = g.s * g.c;
        t.b_off = blk.col0;
        t.out_rs = taps * g.c;
        t.last_lanes = blk.last_lanes;
        const bool masked = blk.last_lanes < k.lanes;
        for_row_tiles(g.o, k.max_rows[blk.vectors], [&](int64_t o0, int n_o) {
          t.a_off = o0;
          t.out = parts + j * wsize + (o0 * taps + tap) * g.c + blk.col0;
          k.tile[blk.vectors][n_o][masked](t);
        });
      }
    }
    if (db.p && tap == 0) {
      float* d = db_parts + j * g.o;
      std::fill(d, d + g.o, 0.0f);
      for (int64_t i = r0 * g.wo; i < r1 * g.wo; ++i)
        for (int64_t o = 0; o < g.o; ++o) d[o] += dy[i * g.o + o];
    }
  });
  reduce_partials(parts, chunks, wsize, wsize, dw.p, dw.accumulate);
  reduce_partials(db_parts, chunks, g.o, g.o, db.p, db.accumulate);
}

}  // namespace

bool forward(const Kernels& k, const Conv2dParams& p, const ForwardArgs& a) {
  if (p.kernel_h * p.kernel_w > kMaxTaps) return false;
  const Geometry g = geometry(p, a.inputs[0].shape, a.outputs[0].shape);
  const float* w = a.inputs[1].ptr<float>();
  const int64_t depth = g.depth();
  const ColumnBlocks cb = column_blocks(k, g.o, depth);
  float* panels = scratch(Slot::op_weights, size_t(depth * cb.panel_width));
  pack_panels(cb, depth, g.o, k.lanes, [&](int64_t kk, int64_t o) { return w[o * depth + kk]; },
              panels);
  const Map xp = padded({a.inputs[0].ptr<float>(), g.n, g.h, g.w, g.c}, g.pad, Slot::op_input);
  direct_conv(k, xp, g.kh, g.kw, g.s, cb, panels,
              {a.outputs[0].ptr<float>(), g.ho, g.wo, g.o,
               p.bias ? a.inputs[2].ptr<float>() : nullptr,
               p.residual ? a.inputs.back().ptr<float>() : nullptr, false});
  return true;
}

bool backward(const Kernels& k, const Conv2dParams& p, const BackwardArgs& a) {
  if (p.kernel_h * p.kernel_w > kMaxTaps) return false;
  const Geometry g = geometry(p, a.inputs[0].shape, a.grad_outputs[0].shape);
  const std::vector<GradOut> grads = grad_outputs(a.grad_inputs);
  const float* dy = a.grad_outputs[0].ptr<float>();
  const float* w = a.inputs[1].ptr<float>();
  // The residual's gradient is dy itself.
  if (p.residual && grads.back().p)
    copy_or_add(dy, grads.back().p, g.n * g.ho * g.wo * g.o, grads.back().accumulate);
  const GradOut dw = grads[1], db = p.bias ? grads[2] : GradOut{};
  if (dw.p || db.p) weight_grad(k, g, a.inputs[0].ptr<float>(), dy, dw, db);
  if (grads[0].p) {
    const bool gather = g.s == 1 && g.pad.top < g.kh && g.pad.bottom < g.kh &&
                        g.pad.left < g.kw && g.pad.right < g.kw;
    if (gather)
      input_grad_gather(k, g, w, dy, grads[0]);
    else
      input_grad_scatter(k, g, w, dy, grads[0]);
  }
  return true;
}

}  // namespace ddpm::cpu::fast
