// The fp32 SIMT implementation of kernels/conv2d.cuh (launchers declared in
// conv2d_internal.cuh): every operation is one implicit GEMM, run by one
// kernel template (conv_gemm_kernel) whose operands are gathered straight from
// the NHWC / OHWI tensors as the tiles are loaded; nothing is unfolded in memory.
//
//   operation        GEMM rows M    cols N     reduction        A (M x red.)        B (red. x N)
//   forward          P pixels       O          K  = R*S*C       im2col(x) rows      w rows [O, K]
//   backward-data    Q pixels       C          K' = R*S*O       dy through the      w as [K', C]
//                                                               transposed geometry
//   backward-filter  O              K = R*S*C  P (split-K)      dy^T                im2col(x)
//
// (P = N*Ho*Wo output pixels, Q = N*H*W input pixels, k = (r*S + s)*C + c.)
// Backward-data: dx[n,h,w,c] = sum over (r, s, o) of dy[n,ho,wo,o] w[o,r,s,c]
// with ho = (h + pad_top - r) / stride, wo likewise; a term whose division is
// not exact or lands outside the map is a zero of the gathered operand (with
// stride 2, 3/4 of a 3x3 kernel's terms at a pixel; the downsample convs are
// the only strided ones, and a per-parity split is left for later).
//
// Block tiles (TileConfig): BM x BN outputs per block, the reduction in steps
// of kBK = 8; each thread owns a TM x TN register micro-tile made of 4x4
// blocks spaced BM / (TM / 4) rows and BN / (TN / 4) columns apart, so its
// shared-memory reads are float4 and a warp's are broadcasts (A) or 256
// contiguous bytes (B): conflict-free. Shapes:
//   large     128 x 128, 8 x 8, 256 threads  big GEMMs (the CIFAR 32x32 and 16x16 layers)
//   medium     64 x  64, 4 x 4, 256 threads  when large tiles would not fill the GPU
//   narrow_n  128 x  16, 8 x 4,  64 threads  N <= 16 (conv_out's O = 3)
//   narrow_m   16 x 128, 4 x 8,  64 threads  M <= 16 (conv_out's backward-filter)
// Per step the large tile reads 2 x 128 x 8 floats (8 KB, mostly L1/L2 hits:
// neighbouring pixels share rows of x) for 2 x 128 x 128 x 8 = 262,144 FLOP,
// 32 FLOP per byte; a thread does 64 FMAs per 4 float4 shared-memory loads.
//
// Loads. The operands come in units of 4 consecutive elements along their
// contiguous axis: channels c (im2col, w as [K', C]), k (w rows), o (dy). A
// unit is one 128-bit load when that channel count is a multiple of 4 and the
// tensors are 16-byte aligned (template V = 4), otherwise 4 scalar loads with
// their own bounds checks (V = 1; conv_in's C = 3, conv_out's O = 3). A unit
// along the reduction (A of forward and backward-data, B of forward) is
// stored transposed into the [kBK][BM + 4] shared tile (the pad of 4 makes the
// two k-quads of a warp's 16 rows hit different banks); a unit along M or N is
// one float4 store. Each unit keeps its gather position as mixed-radix digits
// ((r, s, c), (n, ho, wo), ...) stepped by kBK per tile: no division in the
// main loop. The next tile is fetched into registers while the current one is
// multiplied out of the other of two shared buffers: one barrier per step.
//
// Epilogues: forward adds bias[o] then residual (which may alias y: each
// element is read and written by the same thread); backward-data stores or
// adds into dx; backward-filter adds into dw when it runs unsplit, else each
// split stores its partial sum into the workspace and split_sum_add
// (reduce.cuh) adds the splits in order into dw. db is column_sum_add over dy.
// The split count and pixel ranges depend on the shape alone and no atomics
// are used: results are bitwise reproducible for a shape.
#include <algorithm>
#include <cstdint>

#include "kernels/check.cuh"
#include "kernels/conv2d_internal.cuh"
#include "kernels/emulation/launch.h"
#include "kernels/reduce.cuh"
#include "kernels/vector_io.cuh"

// Full unrolling of the fixed-trip loops over a thread's micro-tile and units,
// so that their arrays stay in registers (g++ under the emulator: its own pragma).
#if defined(__CUDACC__)
#define CONV_UNROLL _Pragma("unroll")
#else
#define CONV_UNROLL _Pragma("GCC unroll 16")
#endif

namespace ddpm::kernels::detail {

// Test hooks (conv2d_internal.cuh).
int& conv2d_simt_forced_tile() {
  static int tile = -1;
  return tile;
}
int& conv2d_simt_forced_splits() {
  static int splits = 0;
  return splits;
}

namespace {

constexpr int kBK = 8;   // reduction step of every tile shape
constexpr int kPad = 4;  // shared tile row pad: float4-aligned, spreads the transposed stores

// Planning (host): 2 blocks on each of an H100's 132 SMs. A constant, not the
// device's count, so the backward-filter split (and its rounding) is a function
// of the shape alone.
constexpr int64_t kTargetBlocks = 264;
constexpr int64_t kMinSplitPixels = 512;  // 64 reduction steps per split at least
constexpr int64_t kMaxSplits = 64;

template <int BM, int BN, int TM, int TN, int MinBlocks>
struct TileConfig {
  static constexpr int kBM = BM, kBN = BN, kTM = TM, kTN = TN;
  static constexpr int kThreadsN = BN / TN, kThreads = (BM / TM) * kThreadsN;
  static constexpr int kMinBlocks = MinBlocks;
  static_assert(TM % 4 == 0 && TN % 4 == 0 && BM % TM == 0 && BN % TN == 0);
};
using LargeTile = TileConfig<128, 128, 8, 8, 2>;
using MediumTile = TileConfig<64, 64, 4, 4, 2>;
using NarrowNTile = TileConfig<128, 16, 8, 4, 4>;
using NarrowMTile = TileConfig<16, 128, 4, 8, 4>;
enum class Tile { large = 0, medium = 1, narrow_n = 2, narrow_m = 3 };

// The shape in 32-bit ints (validate() keeps every tensor below 2^31 elements).
struct ConvDims {
  int in_h, in_w, in_c, out_h, out_w, out_c;
  int kernel_h, kernel_w, stride, pad_top, pad_left;
  int gemm_k;      // K = R*S*C
  int out_pixels;  // P
  int in_pixels;   // Q
  int backward_k;  // K' = R*S*O
};

ConvDims conv_dims(const Conv2dShape& s) {
  ConvDims d;
  d.in_h = int(s.in_h), d.in_w = int(s.in_w), d.in_c = int(s.in_channels);
  d.out_h = int(s.out_h()), d.out_w = int(s.out_w()), d.out_c = int(s.out_channels);
  d.kernel_h = s.kernel_h, d.kernel_w = s.kernel_w, d.stride = s.stride;
  d.pad_top = s.pad_top, d.pad_left = s.pad_left;
  d.gemm_k = int(s.gemm_k());
  d.out_pixels = int(s.out_pixels());
  d.in_pixels = int(s.in_pixels());
  d.backward_k = s.kernel_h * s.kernel_w * d.out_c;
  return d;
}

// ------------------------------------------------------------ gather helpers

// Digits (hi, mid, lo) of i = (hi * mid_n + mid) * lo_n + lo: (r, s, c) of a
// filter index, (n, h, w) of a pixel. Loaders divide once, then step.
struct Digits {
  int hi, mid, lo;
};

__device__ inline Digits to_digits(int i, int lo_n, int mid_n) {
  const int t = i / lo_n;
  return {t / mid_n, t % mid_n, i - t * lo_n};
}

__device__ inline void advance(Digits& d, int step, int lo_n, int mid_n) {
  d.lo += step;
  while (d.lo >= lo_n) {  // more than once only when lo_n < step
    d.lo -= lo_n;
    if (++d.mid == mid_n) d.mid = 0, ++d.hi;
  }
}

// The output position t / stride when t >= 0 is a multiple of stride inside
// [0, limit), else -1 (a zero term of backward-data's gathered dy).
__device__ inline int strided_source(int t, int stride, int limit) {
  if (stride == 1) return unsigned(t) < unsigned(limit) ? t : -1;
  if (t < 0 || t % stride != 0) return -1;
  const int o = t / stride;
  return o < limit ? o : -1;
}

__device__ inline void set_zero(float (&v)[4]) {
  v[0] = v[1] = v[2] = v[3] = 0.f;
}

__device__ inline void load4(const float* p, float (&v)[4]) {
  const float4 q = load_float4(p);
  v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
}

// x[n, hi, wi, c] or 0 in the padding.
__device__ inline float x_or_zero(const float* x, const ConvDims& d, int x_base, int hi, int wi,
                                  int c) {
  if (unsigned(hi) >= unsigned(d.in_h) || unsigned(wi) >= unsigned(d.in_w)) return 0.f;
  return x[x_base + (hi * d.in_w + wi) * d.in_c + c];
}

// ------------------------------------------------------------------ units
//
// A unit is 4 consecutive elements of an operand that one thread fetches per
// reduction step. kAlongK: the 4 run along the reduction (stored transposed);
// else along the rows of A (M) or columns of B (N). init(d, line, k0) places
// it at row/column `line` and reduction index k0; fetch(src, d, k_end, v)
// gathers the current step (zeros outside the operand) and steps by kBK.
// Units whose reduction index is tracked as (r, s, .) digits know its end by
// r reaching R (one register fewer than a counter: the large tile sits at its
// 128-register bound); the others compare with k_end.

// Forward A: 4 consecutive k of output pixel p's receptive field in x.
template <int V>
struct PatchRowUnit {
  static constexpr bool kAlongK = true;
  int x_base;    // n * H * W * C; -1 for a row past P
  int hi0, wi0;  // input position of the receptive field's (0, 0)
  Digits rsc;    // (r, s, c) of the first k; k < K exactly while r < R

  __device__ void init(const ConvDims& d, int p, int k0) {
    rsc = to_digits(k0, d.in_c, d.kernel_w);
    x_base = -1;
    if (p < d.out_pixels) {
      const Digits nhw = to_digits(p, d.out_w, d.out_h);
      x_base = nhw.hi * d.in_h * d.in_w * d.in_c;
      hi0 = nhw.mid * d.stride - d.pad_top;
      wi0 = nhw.lo * d.stride - d.pad_left;
    }
  }
  __device__ void fetch(const float* x, const ConvDims& d, int, float (&v)[4]) {
    set_zero(v);
    if (x_base >= 0) {
      if constexpr (V == 4) {  // C % 4 == 0: the 4 share (r, s)
        const int hi = hi0 + rsc.hi, wi = wi0 + rsc.mid;
        if (rsc.hi < d.kernel_h && unsigned(hi) < unsigned(d.in_h) &&
            unsigned(wi) < unsigned(d.in_w))
          load4(x + x_base + (hi * d.in_w + wi) * d.in_c + rsc.lo, v);
      } else {
        Digits e = rsc;
        for (int j = 0; j < 4 && e.hi < d.kernel_h; ++j, advance(e, 1, d.in_c, d.kernel_w))
          v[j] = x_or_zero(x, d, x_base, hi0 + e.hi, wi0 + e.mid, e.lo);
      }
    }
    advance(rsc, kBK, d.in_c, d.kernel_w);
  }
};

// Forward B: 4 consecutive k of filter o's row w[o, :] (K contiguous floats).
template <int V>
struct FilterRowUnit {
  static constexpr bool kAlongK = true;
  int row;  // o * K; -1 past O
  int k;

  __device__ void init(const ConvDims& d, int o, int k0) {
    row = o < d.out_c ? o * d.gemm_k : -1;
    k = k0;
  }
  __device__ void fetch(const float* w, const ConvDims&, int k_end, float (&v)[4]) {
    set_zero(v);
    if (row >= 0) {
      if constexpr (V == 4) {  // K % 4 == 0
        if (k < k_end) load4(w + row + k, v);
      } else {
        for (int j = 0; j < 4 && k + j < k_end; ++j) v[j] = w[row + k + j];
      }
    }
    k += kBK;
  }
};

// Backward-data A: for input pixel q, 4 consecutive k' = (r, s, o) of
// dy[n, (h + pad_top - r) / stride, (w + pad_left - s) / stride, o].
template <int V>
struct DyGatherUnit {
  static constexpr bool kAlongK = true;
  int dy_base;  // n * Ho * Wo * O; -1 for a row past Q
  int h_padded, w_padded;
  Digits rso;  // (r, s, o) of the first k'; k' < K' exactly while r < R

  __device__ void init(const ConvDims& d, int q, int k0) {
    rso = to_digits(k0, d.out_c, d.kernel_w);
    dy_base = -1;
    if (q < d.in_pixels) {
      const Digits nhw = to_digits(q, d.in_w, d.in_h);
      dy_base = nhw.hi * d.out_h * d.out_w * d.out_c;
      h_padded = nhw.mid + d.pad_top;
      w_padded = nhw.lo + d.pad_left;
    }
  }
  __device__ float at(const float* dy, const ConvDims& d, const Digits& e) const {
    const int ho = strided_source(h_padded - e.hi, d.stride, d.out_h);
    const int wo = strided_source(w_padded - e.mid, d.stride, d.out_w);
    if (ho < 0 || wo < 0) return 0.f;
    return dy[dy_base + (ho * d.out_w + wo) * d.out_c + e.lo];
  }
  __device__ void fetch(const float* dy, const ConvDims& d, int, float (&v)[4]) {
    set_zero(v);
    if (dy_base >= 0) {
      if constexpr (V == 4) {  // O % 4 == 0: the 4 share (r, s)
        if (rso.hi < d.kernel_h) {
          const int ho = strided_source(h_padded - rso.hi, d.stride, d.out_h);
          const int wo = strided_source(w_padded - rso.mid, d.stride, d.out_w);
          if (ho >= 0 && wo >= 0) load4(dy + dy_base + (ho * d.out_w + wo) * d.out_c + rso.lo, v);
        }
      } else {
        Digits e = rso;
        for (int j = 0; j < 4 && e.hi < d.kernel_h; ++j, advance(e, 1, d.out_c, d.kernel_w))
          v[j] = at(dy, d, e);
      }
    }
    advance(rso, kBK, d.out_c, d.kernel_w);
  }
};

// Backward-data B: w[o, r, s, c..c+3] at reduction index k' = (r, s, o).
template <int V>
struct FilterColumnUnit {
  static constexpr bool kAlongK = false;
  int c;
  Digits rso;  // (r, s, o) of k'; k' < K' exactly while r < R

  __device__ void init(const ConvDims& d, int c0, int k0) {
    c = c0;
    rso = to_digits(k0, d.out_c, d.kernel_w);
  }
  __device__ void fetch(const float* w, const ConvDims& d, int, float (&v)[4]) {
    set_zero(v);
    if (rso.hi < d.kernel_h && c < d.in_c) {
      const float* p = w + rso.lo * d.gemm_k + (rso.hi * d.kernel_w + rso.mid) * d.in_c + c;
      if constexpr (V == 4) {  // C % 4 == 0
        load4(p, v);
      } else {
        for (int j = 0; j < 4 && c + j < d.in_c; ++j) v[j] = p[j];
      }
    }
    advance(rso, kBK, d.out_c, d.kernel_w);
  }
};

// Backward-filter A: dy[p, o..o+3] (dy^T's column p).
template <int V>
struct DyColumnUnit {
  static constexpr bool kAlongK = false;
  int o, p;

  __device__ void init(const ConvDims&, int o0, int p0) { o = o0, p = p0; }
  __device__ void fetch(const float* dy, const ConvDims& d, int p_end, float (&v)[4]) {
    set_zero(v);
    if (p < p_end && o < d.out_c) {
      const float* q = dy + p * d.out_c + o;
      if constexpr (V == 4) {  // O % 4 == 0
        load4(q, v);
      } else {
        for (int j = 0; j < 4 && o + j < d.out_c; ++j) v[j] = q[j];
      }
    }
    p += kBK;
  }
};

// Backward-filter B: im2col(x)[p, k..k+3], the filter index fixed, the pixel
// stepping.
template <int V>
struct PatchColumnUnit {
  static constexpr bool kAlongK = false;
  int k, p;
  Digits rsc;  // (r, s, c) of k
  Digits nhw;  // (n, ho, wo) of p

  __device__ void init(const ConvDims& d, int k0, int p0) {
    k = k0, p = p0;
    rsc = to_digits(k0, d.in_c, d.kernel_w);
    nhw = to_digits(p0, d.out_w, d.out_h);
  }
  __device__ void fetch(const float* x, const ConvDims& d, int p_end, float (&v)[4]) {
    set_zero(v);
    if (p < p_end && k < d.gemm_k) {
      const int x_base = nhw.hi * d.in_h * d.in_w * d.in_c;
      const int hi0 = nhw.mid * d.stride - d.pad_top, wi0 = nhw.lo * d.stride - d.pad_left;
      if constexpr (V == 4) {  // C % 4 == 0: the 4 share (r, s)
        const int hi = hi0 + rsc.hi, wi = wi0 + rsc.mid;
        if (unsigned(hi) < unsigned(d.in_h) && unsigned(wi) < unsigned(d.in_w))
          load4(x + x_base + (hi * d.in_w + wi) * d.in_c + rsc.lo, v);
      } else {
        Digits e = rsc;
        for (int j = 0; j < 4 && k + j < d.gemm_k; ++j, advance(e, 1, d.in_c, d.kernel_w))
          v[j] = x_or_zero(x, d, x_base, hi0 + e.hi, wi0 + e.mid, e.lo);
      }
    }
    p += kBK;
    advance(nhw, kBK, d.out_w, d.out_h);
  }
};

// ---------------------------------------------------------------- problems
//
// What conv_gemm_kernel needs of an operation: the unit types and sources of
// A and B, the GEMM rows, the reduction range of a split, and the epilogue
// store of 4 consecutive outputs (m, n..n+3).

template <int V>
struct ForwardProblem {
  using UnitA = PatchRowUnit<V>;
  using UnitB = FilterRowUnit<V>;
  ConvDims d;
  const float* x;
  const float* w;
  const float* bias;      // may be null
  const float* residual;  // may be null or alias y
  float* y;
  bool vector_out;  // O % 4 == 0 and y, residual, bias 16-byte aligned

  __device__ const float* a_source() const { return x; }
  __device__ const float* b_source() const { return w; }
  __device__ int rows() const { return d.out_pixels; }
  __device__ void reduction_range(int, int& begin, int& end) const { begin = 0, end = d.gemm_k; }
  __device__ void store(int, int m, int n, const float (&v)[4]) const {
    if (m >= d.out_pixels || n >= d.out_c) return;
    const int i = m * d.out_c + n;
    if (vector_out) {
      float4 out = make_float4(v[0], v[1], v[2], v[3]);
      if (bias) {
        const float4 b = load_float4(bias + n);
        out.x += b.x, out.y += b.y, out.z += b.z, out.w += b.w;
      }
      if (residual) {
        const float4 r = load_float4(residual + i);
        out.x += r.x, out.y += r.y, out.z += r.z, out.w += r.w;
      }
      store_float4(y + i, out);
      return;
    }
    for (int j = 0; j < 4 && n + j < d.out_c; ++j) {
      float out = v[j];
      if (bias) out += bias[n + j];
      if (residual) out += residual[i + j];
      y[i + j] = out;
    }
  }
};

template <int V>
struct BackwardDataProblem {
  using UnitA = DyGatherUnit<V>;
  using UnitB = FilterColumnUnit<V>;
  ConvDims d;
  const float* dy;
  const float* w;
  float* dx;
  bool accumulate;
  bool vector_out;  // C % 4 == 0 and dx 16-byte aligned

  __device__ const float* a_source() const { return dy; }
  __device__ const float* b_source() const { return w; }
  __device__ int rows() const { return d.in_pixels; }
  __device__ void reduction_range(int, int& begin, int& end) const {
    begin = 0, end = d.backward_k;
  }
  __device__ void store(int, int m, int n, const float (&v)[4]) const {
    if (m >= d.in_pixels || n >= d.in_c) return;
    float* out = dx + m * d.in_c + n;
    if (vector_out) {
      float4 q = make_float4(v[0], v[1], v[2], v[3]);
      if (accumulate) {
        const float4 prior = load_float4(out);
        q.x += prior.x, q.y += prior.y, q.z += prior.z, q.w += prior.w;
      }
      store_float4(out, q);
      return;
    }
    for (int j = 0; j < 4 && n + j < d.in_c; ++j) out[j] = accumulate ? out[j] + v[j] : v[j];
  }
};

template <int V>
struct BackwardFilterProblem {
  using UnitA = DyColumnUnit<V>;
  using UnitB = PatchColumnUnit<V>;
  ConvDims d;
  const float* x;
  const float* dy;
  float* out;         // dw (splits == 1, adding) or the partials [splits][O][K] (storing)
  int split_pixels;   // pixels per split, a multiple of kBK
  bool add_into_out;  // splits == 1
  bool vector_out;    // K % 4 == 0 and out 16-byte aligned

  __device__ const float* a_source() const { return dy; }
  __device__ const float* b_source() const { return x; }
  __device__ int rows() const { return d.out_c; }
  __device__ void reduction_range(int split, int& begin, int& end) const {
    begin = split * split_pixels;
    end = begin + split_pixels < d.out_pixels ? begin + split_pixels : d.out_pixels;
  }
  __device__ void store(int split, int m, int n, const float (&v)[4]) const {
    if (m >= d.out_c || n >= d.gemm_k) return;
    float* o = out + int64_t(split) * d.out_c * d.gemm_k + m * d.gemm_k + n;
    if (vector_out) {
      float4 q = make_float4(v[0], v[1], v[2], v[3]);
      if (add_into_out) {
        const float4 prior = load_float4(o);
        q.x += prior.x, q.y += prior.y, q.z += prior.z, q.w += prior.w;
      }
      store_float4(o, q);
      return;
    }
    for (int j = 0; j < 4 && n + j < d.gemm_k; ++j) o[j] = add_into_out ? o[j] + v[j] : v[j];
  }
};

// ------------------------------------------------------------------ kernel

// Where unit u of a ROWS x kBK operand tile sits: its row (or first of 4
// rows) and its reduction offset in the tile.
template <bool AlongK, int ROWS>
__device__ inline void unit_position(int u, int& row, int& k) {
  if constexpr (AlongK) {
    row = u / (kBK / 4), k = (u % (kBK / 4)) * 4;
  } else {
    row = (u % (ROWS / 4)) * 4, k = u / (ROWS / 4);
  }
}

// The units a thread owns of one operand, their staging registers and their
// trip to shared memory.
template <class Unit, int ROWS, int THREADS>
struct OperandLoader {
  static constexpr int kUnits = ROWS * kBK / 4;
  static constexpr int kPerThread = (kUnits + THREADS - 1) / THREADS;
  // Value-initialised: the units a thread does not own (kUnits < THREADS) are never used.
  Unit units[kPerThread] = {};
  float staged[kPerThread][4] = {};

  __device__ static bool owns(int i) {
    return kUnits % THREADS == 0 || int(threadIdx.x) + i * THREADS < kUnits;
  }
  __device__ void init(const ConvDims& d, int line0, int k_begin) {
    CONV_UNROLL
    for (int i = 0; i < kPerThread; ++i) {
      if (!owns(i)) continue;
      int row, k;
      unit_position<Unit::kAlongK, ROWS>(int(threadIdx.x) + i * THREADS, row, k);
      units[i].init(d, line0 + row, k_begin + k);
    }
  }
  __device__ void fetch(const float* src, const ConvDims& d, int k_end) {
    CONV_UNROLL
    for (int i = 0; i < kPerThread; ++i)
      if (owns(i)) units[i].fetch(src, d, k_end, staged[i]);
  }
  __device__ void store(float (&tile)[kBK][ROWS + kPad]) const {
    CONV_UNROLL
    for (int i = 0; i < kPerThread; ++i) {
      if (!owns(i)) continue;
      int row, k;
      unit_position<Unit::kAlongK, ROWS>(int(threadIdx.x) + i * THREADS, row, k);
      if constexpr (Unit::kAlongK) {
        for (int j = 0; j < 4; ++j) tile[k + j][row] = staged[i][j];
      } else {
        store_float4(&tile[k][row],
                     make_float4(staged[i][0], staged[i][1], staged[i][2], staged[i][3]));
      }
    }
  }
};

// acc += the block tiles' product, for this thread's micro-tile: rows
// tm * 4 + g * (BM / (TM / 4)) + i, columns likewise.
template <class Cfg>
__device__ inline void multiply_tiles(const float (&a)[kBK][Cfg::kBM + kPad],
                                      const float (&b)[kBK][Cfg::kBN + kPad], int tm, int tn,
                                      float (&acc)[Cfg::kTM][Cfg::kTN]) {
  constexpr int kStrideM = Cfg::kBM / (Cfg::kTM / 4), kStrideN = Cfg::kBN / (Cfg::kTN / 4);
  CONV_UNROLL
  for (int kk = 0; kk < kBK; ++kk) {
    float av[Cfg::kTM], bv[Cfg::kTN];
    CONV_UNROLL
    for (int g = 0; g < Cfg::kTM / 4; ++g) {
      const float4 q = *reinterpret_cast<const float4*>(&a[kk][tm * 4 + g * kStrideM]);
      av[4 * g] = q.x, av[4 * g + 1] = q.y, av[4 * g + 2] = q.z, av[4 * g + 3] = q.w;
    }
    CONV_UNROLL
    for (int g = 0; g < Cfg::kTN / 4; ++g) {
      const float4 q = *reinterpret_cast<const float4*>(&b[kk][tn * 4 + g * kStrideN]);
      bv[4 * g] = q.x, bv[4 * g + 1] = q.y, bv[4 * g + 2] = q.z, bv[4 * g + 3] = q.w;
    }
    CONV_UNROLL
    for (int i = 0; i < Cfg::kTM; ++i) {
      CONV_UNROLL
      for (int j = 0; j < Cfg::kTN; ++j) acc[i][j] += av[i] * bv[j];
    }
  }
}

// One block: the BM x BN output tile number blockIdx.x (M fastest) over the
// reduction range of split blockIdx.y.
template <class Cfg, class Problem>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kMinBlocks)
    conv_gemm_kernel(const Problem problem) {
  __shared__ __align__(16) float a_tiles[2][kBK][Cfg::kBM + kPad];
  __shared__ __align__(16) float b_tiles[2][kBK][Cfg::kBN + kPad];
  const ConvDims& d = problem.d;
  const int m_tiles = (problem.rows() + Cfg::kBM - 1) / Cfg::kBM;
  const int m0 = int(blockIdx.x % unsigned(m_tiles)) * Cfg::kBM;
  const int n0 = int(blockIdx.x / unsigned(m_tiles)) * Cfg::kBN;
  const int split = int(blockIdx.y);
  int k_begin, k_end;
  problem.reduction_range(split, k_begin, k_end);
  const int steps = k_end > k_begin ? (k_end - k_begin + kBK - 1) / kBK : 0;

  OperandLoader<typename Problem::UnitA, Cfg::kBM, Cfg::kThreads> a_loader;
  OperandLoader<typename Problem::UnitB, Cfg::kBN, Cfg::kThreads> b_loader;
  a_loader.init(d, m0, k_begin);
  b_loader.init(d, n0, k_begin);
  const float* a_src = problem.a_source();
  const float* b_src = problem.b_source();

  float acc[Cfg::kTM][Cfg::kTN];
  CONV_UNROLL
  for (int i = 0; i < Cfg::kTM; ++i) {
    CONV_UNROLL
    for (int j = 0; j < Cfg::kTN; ++j) acc[i][j] = 0.f;
  }
  const int tm = int(threadIdx.x) / Cfg::kThreadsN, tn = int(threadIdx.x) % Cfg::kThreadsN;

  if (steps > 0) {
    a_loader.fetch(a_src, d, k_end);
    b_loader.fetch(b_src, d, k_end);
    a_loader.store(a_tiles[0]);
    b_loader.store(b_tiles[0]);
  }
  __syncthreads();
  for (int step = 0; step < steps; ++step) {
    const int buf = step & 1;
    const bool more = step + 1 < steps;
    if (more) {  // the next step's loads are in flight during the FMAs
      a_loader.fetch(a_src, d, k_end);
      b_loader.fetch(b_src, d, k_end);
    }
    multiply_tiles<Cfg>(a_tiles[buf], b_tiles[buf], tm, tn, acc);
    if (more) {  // the other buffer was last read before the previous barrier
      a_loader.store(a_tiles[buf ^ 1]);
      b_loader.store(b_tiles[buf ^ 1]);
    }
    __syncthreads();
  }

  constexpr int kStrideM = Cfg::kBM / (Cfg::kTM / 4), kStrideN = Cfg::kBN / (Cfg::kTN / 4);
  CONV_UNROLL
  for (int gm = 0; gm < Cfg::kTM / 4; ++gm) {
    CONV_UNROLL
    for (int i = 0; i < 4; ++i) {
      CONV_UNROLL
      for (int gn = 0; gn < Cfg::kTN / 4; ++gn) {
        const float(&row)[Cfg::kTN] = acc[4 * gm + i];
        const float v[4] = {row[4 * gn], row[4 * gn + 1], row[4 * gn + 2], row[4 * gn + 3]};
        problem.store(split, m0 + tm * 4 + gm * kStrideM + i, n0 + tn * 4 + gn * kStrideN, v);
      }
    }
  }
}

// ------------------------------------------------------------------ host

template <class Cfg, class Problem>
void launch_tile(const Problem& problem, int64_t rows, int64_t cols, int splits,
                 cudaStream_t stream) {
  const int64_t tiles = ((rows + Cfg::kBM - 1) / Cfg::kBM) * ((cols + Cfg::kBN - 1) / Cfg::kBN);
  DDPM_LAUNCH((conv_gemm_kernel<Cfg, Problem>), dim3(unsigned(tiles), unsigned(splits)),
              dim3(Cfg::kThreads), 0, stream, problem);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

template <class Problem>
void launch(Tile tile, const Problem& problem, int64_t rows, int64_t cols, int splits,
            cudaStream_t stream) {
  switch (tile) {
    case Tile::large:
      return launch_tile<LargeTile>(problem, rows, cols, splits, stream);
    case Tile::medium:
      return launch_tile<MediumTile>(problem, rows, cols, splits, stream);
    case Tile::narrow_n:
      return launch_tile<NarrowNTile>(problem, rows, cols, splits, stream);
    case Tile::narrow_m:
      return launch_tile<NarrowMTile>(problem, rows, cols, splits, stream);
  }
}

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// The tile shape for a rows x cols GEMM. Unsplit GEMMs take large tiles only
// when there are enough of them for a wave (kTargetBlocks / 2: one large block
// per SM); backward-filter's split over P supplies the blocks, so it takes
// them whenever their waste is small. None of this has been timed yet.
Tile choose_tile(int64_t rows, int64_t cols, bool split_k) {
  const int forced = conv2d_simt_forced_tile();
  if (forced >= 0 && forced <= 3) return Tile(forced);
  if (cols <= 16 && rows > 16) return Tile::narrow_n;
  if (rows <= 16 && cols > 16) return Tile::narrow_m;
  if (split_k) return rows >= 96 && cols >= 96 ? Tile::large : Tile::medium;
  return ceil_div(rows, 128) * ceil_div(cols, 128) >= kTargetBlocks / 2 ? Tile::large
                                                                        : Tile::medium;
}

int64_t tile_count(Tile tile, int64_t rows, int64_t cols) {
  static constexpr int kRows[] = {128, 64, 128, 16}, kCols[] = {128, 64, 16, 128};
  return ceil_div(rows, kRows[int(tile)]) * ceil_div(cols, kCols[int(tile)]);
}

// Backward-filter: the tile, and P cut into `splits` ranges of `split_pixels`
// (a multiple of kBK; every range non-empty).
struct FilterPlan {
  Tile tile;
  int splits;
  int split_pixels;
};

FilterPlan plan_backward_filter(const Conv2dShape& s) {
  const int64_t rows = s.out_channels, cols = s.gemm_k(), pixels = s.out_pixels();
  FilterPlan plan;
  plan.tile = choose_tile(rows, cols, true);
  int64_t splits = conv2d_simt_forced_splits();
  if (splits <= 0)
    splits = std::min({ceil_div(kTargetBlocks, tile_count(plan.tile, rows, cols)),
                       ceil_div(pixels, kMinSplitPixels), kMaxSplits});
  splits = std::clamp<int64_t>(splits, 1, ceil_div(pixels, kBK));
  const int64_t split_pixels = ceil_div(ceil_div(pixels, splits), kBK) * kBK;
  plan.split_pixels = int(split_pixels);
  plan.splits = int(ceil_div(pixels, split_pixels));
  return plan;
}

size_t filter_partials_bytes(const Conv2dShape& s, const FilterPlan& plan) {
  if (plan.splits == 1) return 0;
  return workspace_align(size_t(plan.splits) * size_t(s.out_channels * s.gemm_k()) * sizeof(float));
}

}  // namespace

size_t conv2d_simt_workspace_bytes(const Conv2dShape& s) {
  // Only backward-filter uses scratch: its split partials, then column_sum_add's.
  return filter_partials_bytes(s, plan_backward_filter(s)) +
         column_sum_workspace_bytes(s.out_pixels(), s.out_channels);
}

void conv2d_simt_forward(const float* x, const float* w, const float* bias, const float* residual,
                         float* y, const Conv2dShape& s, void*, cudaStream_t stream) {
  const ConvDims d = conv_dims(s);
  const Tile tile = choose_tile(d.out_pixels, d.out_c, false);
  const bool vector_out = d.out_c % 4 == 0 && all_aligned16(y, residual, bias);
  if (d.in_c % 4 == 0 && all_aligned16(x, w))
    launch(tile, ForwardProblem<4>{d, x, w, bias, residual, y, vector_out}, d.out_pixels, d.out_c,
           1, stream);
  else
    launch(tile, ForwardProblem<1>{d, x, w, bias, residual, y, vector_out}, d.out_pixels, d.out_c,
           1, stream);
}

void conv2d_simt_backward_data(const float* dy, const float* w, float* dx, const Conv2dShape& s,
                               bool accumulate, void*, cudaStream_t stream) {
  const ConvDims d = conv_dims(s);
  const Tile tile = choose_tile(d.in_pixels, d.in_c, false);
  const bool vector_out = d.in_c % 4 == 0 && all_aligned16(dx);
  if (d.in_c % 4 == 0 && d.out_c % 4 == 0 && all_aligned16(dy, w))
    launch(tile, BackwardDataProblem<4>{d, dy, w, dx, accumulate, vector_out}, d.in_pixels, d.in_c,
           1, stream);
  else
    launch(tile, BackwardDataProblem<1>{d, dy, w, dx, accumulate, vector_out}, d.in_pixels, d.in_c,
           1, stream);
}

void conv2d_simt_backward_filter(const float* x, const float* dy, float* dw, float* db,
                                 const Conv2dShape& s, void* workspace, cudaStream_t stream) {
  const ConvDims d = conv_dims(s);
  const FilterPlan plan = plan_backward_filter(s);
  const bool split = plan.splits > 1;
  char* scratch = static_cast<char*>(workspace);
  float* out = split ? reinterpret_cast<float*>(scratch) : dw;
  const bool vector_out = d.gemm_k % 4 == 0 && all_aligned16(out);
  if (d.in_c % 4 == 0 && d.out_c % 4 == 0 && all_aligned16(x, dy))
    launch(plan.tile,
           BackwardFilterProblem<4>{d, x, dy, out, plan.split_pixels, !split, vector_out}, d.out_c,
           d.gemm_k, plan.splits, stream);
  else
    launch(plan.tile,
           BackwardFilterProblem<1>{d, x, dy, out, plan.split_pixels, !split, vector_out}, d.out_c,
           d.gemm_k, plan.splits, stream);
  if (split) split_sum_add(out, plan.splits, s.out_channels * s.gemm_k(), dw, stream);
  if (db)
    column_sum_add(dy, db, s.out_pixels(), s.out_channels, scratch + filter_partials_bytes(s, plan),
                   stream);
}

}  // namespace ddpm::kernels::detail

#undef CONV_UNROLL
