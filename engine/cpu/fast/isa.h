// The f32 fast path's primitive kernels, one table per instruction set
// (AVX-512, AVX2+FMA), chosen at run time from what the CPU supports. The
// ops in engine/cpu/fast/*.cpp build convolutions, GEMMs, attention and
// GroupNorm from these; the f64 path and CPUs without AVX2 use the reference
// code in engine/cpu/*.cpp. Results are deterministic for a given table:
// no primitive's summation order depends on threads or alignment.
#pragma once

#include <cstdint>

namespace ddpm::cpu::fast {

enum class Isa { none, avx2, avx512 };
const char* isa_name(Isa isa);

// One run of a tile's reduction: A rows start at `a`, B rows at `b`, `len`
// steps of k.
struct Segment {
  const float* a;
  const float* b;
  int64_t len;
};

// The micro-kernel's contract. A tile is R rows x V vectors of L lanes:
//   acc[r][n] = sum over segments s, k < s.len of
//               A(s, r, k) * B(s, k, n),
//   A(s, r, k) = s.a[a_off + r * a_rs + k * a_ks]  (broadcast),
//   B(s, k, n) = s.b[b_off + k * b_ks + n]          (n < V * L, vector loads).
// Then, per element (n < (V - 1) * L + last_lanes; other lanes untouched):
//   v = alpha * acc (alpha == 1: acc); v = bias[n] + v; v = v + add[r * add_rs + n];
//   out[r * out_rs + n] = accumulate ? out[...] + v : v.
// B is read as whole vectors: lanes past last_lanes must be readable (a padded
// panel) unless the tile is the masked variant (masked_b), which loads only
// the valid lanes of the last vector (slower: for ragged direct operands).
struct TileArgs {
  const Segment* segs = nullptr;
  int nseg = 0;
  int64_t a_rs = 0, a_ks = 1, b_ks = 0;
  int64_t a_off = 0, b_off = 0;
  float* out = nullptr;
  int64_t out_rs = 0;
  int last_lanes = 0;
  float alpha = 1;
  const float* bias = nullptr;
  const float* add = nullptr;
  int64_t add_rs = 0;
  bool accumulate = false;
};
using TileFn = void (*)(const TileArgs&);

constexpr int kMaxVectors = 4;
constexpr int kMaxRows = 16;

struct Kernels {
  Isa isa = Isa::none;
  int lanes = 0;                    // L: floats per vector
  int max_vectors = 0;              // V <= this
  int max_rows[kMaxVectors + 1]{};  // R <= max_rows[V] (register budget)
  // tile[V][R][masked_b]; null where (V, R) is not instantiated.
  TileFn tile[kMaxVectors + 1][kMaxRows + 1][2]{};

  // Row-wise softmax of rows x cols scores s (row stride ld), in place:
  // p = exp(s - lse), lse = max + log(sum exp(s - max)) (sum in double),
  // saved per row.
  void (*softmax_rows)(float* s, int64_t rows, int64_t cols, int64_t ld, float* lse) = nullptr;
  // p = exp(s - lse[row]) in place.
  void (*exp_rows)(float* s, int64_t rows, int64_t cols, int64_t ld, const float* lse) = nullptr;
  // dp = p * (dp - d[row]) in place (attention's dS).
  void (*softmax_grad_rows)(const float* p, float* dp, int64_t rows, int64_t cols, int64_t ld,
                            const float* d) = nullptr;
  // sum_i a[i] b[i] in f32, a fixed order of lanes.
  float (*dot)(const float* a, const float* b, int64_t n) = nullptr;

  // GroupNorm on one sample's [pixels, c] map, h = x + bias[c] (bias may be
  // null). Per channel, in double: sums[c] += sum_p h, or with `mean`
  // (per channel) sums[c] += sum_p (h - mean[c])^2.
  void (*gn_channel_sums)(const float* x, const float* bias, int64_t pixels, int64_t c,
                          const float* mean, double* sums) = nullptr;
  // y = act(gamma[c] * ((h - mean[c]) * rstd[c]) + beta[c]) (gamma/beta null:
  // identity affine), act = SiLU or identity.
  void (*gn_apply)(const float* x, const float* bias, int64_t pixels, int64_t c,
                   const float* mean, const float* rstd, const float* gamma, const float* beta,
                   bool silu, float* y) = nullptr;
  // Backward, first pass: dz = dy act'(z) stored in dz_out; per channel, in
  // double: s_dz_xhat += dz xhat, s_dz += dz, s_dxhat += dxhat,
  // s_dxhat_xhat += dxhat xhat, with dxhat = dz gamma[c].
  void (*gn_backward_sums)(const float* x, const float* bias, const float* dy, int64_t pixels,
                           int64_t c, const float* mean, const float* rstd, const float* gamma,
                           const float* beta, bool silu, float* dz_out, double* s_dz_xhat,
                           double* s_dz, double* s_dxhat, double* s_dxhat_xhat) = nullptr;
  // Second pass: dh = rstd (dxhat - m1[c] - xhat m2[c]); dx = dh (or dx + dh
  // when accumulate; dx may be null); dbias_sums[c] += sum_p dh in double
  // (null: not wanted).
  void (*gn_backward_apply)(const float* x, const float* bias, const float* dz, int64_t pixels,
                            int64_t c, const float* mean, const float* rstd, const float* gamma,
                            const float* m1, const float* m2, float* dx, bool accumulate,
                            double* dbias_sums) = nullptr;
};

// The table the f32 ops use now, or null: run the reference code. Chosen at
// first use: the best this CPU and build support, unless DDPM_CPU_ISA
// (none, avx2, avx512) asks for another.
const Kernels* kernels();

// The best instruction set this CPU and build support.
Isa best_isa();
// Switches the f32 ops to `isa` (tests, benchmarks); throws
// std::invalid_argument when this CPU or build lacks it.
void set_isa(Isa isa);
Isa active_isa();

}  // namespace ddpm::cpu::fast
