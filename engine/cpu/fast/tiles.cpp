// Tiling helpers and the serial GEMM of the f32 fast path (tiles.h).
#include "engine/cpu/fast/tiles.h"

#include <algorithm>

#include "engine/cpu/fast/scratch.h"

namespace ddpm::cpu::fast {

ColumnBlocks column_blocks(const Kernels& k, int64_t n, int64_t depth) {
  ColumnBlocks cb;
  const int L = k.lanes;
  const int64_t nvec = (n + L - 1) / L;
  const int64_t nblocks = (nvec + k.max_vectors - 1) / k.max_vectors;
  const int64_t base = nblocks ? nvec / nblocks : 0, extra = nblocks ? nvec % nblocks : 0;
  int64_t col = 0, offset = 0;
  for (int64_t i = 0; i < nblocks; ++i) {
    ColumnBlock b;
    b.col0 = col;
    b.vectors = int(base + (i < extra ? 1 : 0));
    b.last_lanes = int(std::min<int64_t>(L, n - (col + int64_t(b.vectors - 1) * L)));
    b.panel_offset = offset;
    offset += depth * b.vectors * L;
    col += int64_t(b.vectors) * L;
    cb.panel_width += int64_t(b.vectors) * L;
    cb.blocks.push_back(b);
  }
  cb.ragged = n % L != 0;
  return cb;
}

namespace {

// One column block's tiles; B rows at b (row stride b_ks).
void gemm_block(const Kernels& k, int64_t m, const ColumnBlock& blk, int64_t depth, MatA a,
                const float* b, int64_t b_ks, bool masked, float* out, int64_t out_rs,
                const Epilogue& e) {
  Segment seg{nullptr, b, depth};
  TileArgs t;
  t.segs = &seg;
  t.nseg = 1;
  t.a_rs = a.rs;
  t.a_ks = a.ks;
  t.b_ks = b_ks;
  t.out_rs = out_rs;
  t.last_lanes = blk.last_lanes;
  t.alpha = e.alpha;
  t.bias = e.bias ? e.bias + blk.col0 : nullptr;
  t.add_rs = e.add_rs;
  t.accumulate = e.accumulate;
  for_row_tiles(m, k.max_rows[blk.vectors], [&](int64_t r0, int rows) {
    seg.a = a.p + r0 * a.rs;
    t.out = out + r0 * out_rs + blk.col0;
    t.add = e.add ? e.add + r0 * e.add_rs + blk.col0 : nullptr;
    k.tile[blk.vectors][rows][masked](t);
  });
}

}  // namespace

void gemm_packed(const Kernels& k, int64_t m, const ColumnBlocks& cb, int64_t depth, MatA a,
                 const float* panels, float* out, int64_t out_rs, const Epilogue& e) {
  for (const ColumnBlock& blk : cb.blocks)
    gemm_block(k, m, blk, depth, a, panels + blk.panel_offset, int64_t(blk.vectors) * k.lanes,
               false, out, out_rs, e);
}

void gemm(const Kernels& k, int64_t m, int64_t n, int64_t depth, MatA a, const float* b,
          int64_t b_ks, int64_t b_ns, float* out, int64_t out_rs, const Epilogue& e) {
  if (m <= 0 || n <= 0) return;
  const ColumnBlocks cb = column_blocks(k, n, depth);
  if (b_ns != 1) {
    float* packed = scratch(Slot::task_panel, size_t(depth * cb.panel_width));
    pack_panels(
        cb, depth, n, k.lanes, [&](int64_t kk, int64_t j) { return b[kk * b_ks + j * b_ns]; },
        packed);
    gemm_packed(k, m, cb, depth, a, packed, out, out_rs, e);
    return;
  }
  // B read in place: a ragged last block needs the masked loads.
  for (const ColumnBlock& blk : cb.blocks)
    gemm_block(k, m, blk, depth, a, b + blk.col0, b_ks, blk.last_lanes < k.lanes, out, out_rs,
               e);
}

}  // namespace ddpm::cpu::fast
