// Tiling helpers over the micro-kernel (isa.h), shared by the f32 fast ops:
// column blocks of at most max_vectors vectors, balanced row tiles, B panels
// packed per block, and a serial GEMM for the attention and linear layers.
// Everything here is decided by the problem's shape alone.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/cpu/fast/isa.h"

namespace ddpm::cpu::fast {

// Columns [col0, col0 + vectors * L) of an N-column output (the last block
// may extend past N: its last vector has last_lanes valid lanes). A packed
// B panel for the block holds K rows of vectors * L floats at panel_offset.
struct ColumnBlock {
  int64_t col0 = 0;
  int vectors = 0;
  int last_lanes = 0;
  int64_t panel_offset = 0;  // in floats, in a buffer of K * panel_width
};

struct ColumnBlocks {
  std::vector<ColumnBlock> blocks;
  int64_t panel_width = 0;  // sum of vectors * L: floats per k row over all blocks
  bool ragged = false;      // N is not a multiple of L
};

// Splits N columns into blocks of as even a number of vectors as possible,
// each at most k.max_vectors.
ColumnBlocks column_blocks(const Kernels& k, int64_t n, int64_t depth);

// Splits n rows into ceil(n / max_rows) tiles of balanced sizes; calls
// fn(row0, rows) for each.
template <typename Fn>
void for_row_tiles(int64_t n, int max_rows, Fn&& fn) {
  if (n <= 0) return;
  const int64_t tiles = (n + max_rows - 1) / max_rows, base = n / tiles, extra = n % tiles;
  int64_t r0 = 0;
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t rows = base + (t < extra ? 1 : 0);
    fn(r0, int(rows));
    r0 += rows;
  }
}

// Packs B (depth K x N, element (k, n) = get(k, n)) into the blocks' panels
// at out (K * panel_width floats); lanes past N are 0.
template <typename Get>
void pack_panels(const ColumnBlocks& cb, int64_t k_depth, int64_t n, int lanes, Get&& get,
                 float* out) {
  for (const ColumnBlock& b : cb.blocks) {
    const int64_t w = int64_t(b.vectors) * lanes;
    float* panel = out + b.panel_offset;
    for (int64_t k = 0; k < k_depth; ++k)
      for (int64_t j = 0; j < w; ++j)
        panel[k * w + j] = b.col0 + j < n ? get(k, b.col0 + j) : 0.0f;
  }
}

// A(m, k) = p[m * rs + k * ks].
struct MatA {
  const float* p;
  int64_t rs, ks;
};

// The micro-kernel's epilogue (isa.h): out = [out +] (alpha acc + bias) + add.
struct Epilogue {
  float alpha = 1;
  const float* bias = nullptr;  // [N]
  const float* add = nullptr;   // [M, N], row stride add_rs
  int64_t add_rs = 0;
  bool accumulate = false;
};

// out[m * out_rs + n] for m < M, n < N from sum_k A(m, k) B(k, n), with B
// already packed in cb's panels (depth rows), serially in the calling thread.
void gemm_packed(const Kernels& k, int64_t m, const ColumnBlocks& cb, int64_t depth, MatA a,
                 const float* panels, float* out, int64_t out_rs, const Epilogue& e);

// out[m * out_rs + n] for m < M, n < N from sum_k A(m, k) B(k, n), with
// B(k, n) = b[k * b_ks + n * b_ns], serially in the calling thread. B is read
// in place when its rows are contiguous (b_ns == 1), else packed into a
// per-thread panel first.
void gemm(const Kernels& k, int64_t m, int64_t n, int64_t depth, MatA a, const float* b,
          int64_t b_ks, int64_t b_ns, float* out, int64_t out_rs, const Epilogue& e);

}  // namespace ddpm::cpu::fast
