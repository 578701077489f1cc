// bf16 tensor-core convolution (kernels/conv2d_bf16.cuh): the operand sources
// and epilogues of the three implicit GEMMs, tile and split choice, the
// launchers. The mainloop (pipeline, swizzle, ldmatrix, mma) is
// kernels/conv2d_bf16_mainloop.cuh.
//
//   op               output     reduction         A [M][red]             B [N][red]
//   forward          y[P][O]    K = R S C         im2col(x) [p][k]       w [o][k]
//   backward-data    dx[Q_ph][C] R_ph S_ph O      dy gathered [q][k']    w as [c][k']
//   (one GEMM per output phase ph of dx: Q_ph its pixels, R_ph S_ph the taps
//    reaching them)
//   backward-filter  dw[O][K]   P (split)         dy as [o][p]           im2col(x) as [k][p]
//
// Backward-data phases. With stride s, dx(h) receives dy(ho) through tap r
// iff h + pad_top - r = s ho. For the phase h = ph + s a that holds only for
// r = r0 + s i, r0 = (ph + pad_top) mod s, and then ho = base + a - i with
// base = (ph + pad_top - r0) / s. So phase ph is a dense GEMM over the
// ceil((R - r0) / s) taps of that residue (likewise along w); a phase with no
// tap (a 1x1 kernel at stride 2) is a GEMM with an empty reduction: zeros.
// blockIdx.y is the phase; the grid is sized for phase 0 (the largest), the
// other phases' extra blocks return at once.
//
// Backward-filter splits the pixels (blockIdx.y) so that about two waves of
// blocks run, each split at least 4 stages; the partials go to the
// workspace and one pass adds them in split order (no atomics:
// deterministic). db is a column sum of dy over the same pixel splits.
//
// Index math is 32-bit: validate keeps every tensor under 2^31 elements.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/check.cuh"
#include "kernels/conv2d_bf16.cuh"
#include "kernels/conv2d_bf16_mainloop.cuh"
#include "kernels/conv2d_shape.h"
#include "kernels/emulation/launch.h"
#include "kernels/reduce.cuh"
#include "kernels/warp_mma.cuh"

namespace ddpm::kernels {

namespace detail {
int& conv2d_bf16_forced_tile() {
  static int rows = 0;
  return rows;
}
int& conv2d_bf16_forced_splits() {
  static int splits = 0;
  return splits;
}
}  // namespace detail

namespace {

using namespace detail::conv_bf16;

constexpr int64_t kWaveBlocks = 132;  // SMs of an H100 / H200
constexpr int64_t kFilterTargetBlocks = 2 * kWaveBlocks;
constexpr int kMinStagesPerSplit = 4;

// ------------------------------------------------------------------ bf16 bits

__device__ inline float bf16_to_float(uint16_t bits) {
  return __uint_as_float(uint32_t(bits) << 16);
}
__device__ inline uint16_t float_to_bf16(float v) {  // nearest even
  return uint16_t(mma::pack_bf16x2(v, 0.f) & 0xFFFFu);
}

// ------------------------------------------------------------------ geometry

struct Dims {
  int batch, in_h, in_w, in_c, out_c;  // N, H, W, C, O
  int kernel_h, kernel_w, stride, pad_top, pad_left;
  int out_h, out_w;  // Ho, Wo
  int out_pixels;    // P
  int filter_k;      // K = R S C
};

Dims dims_of(const Conv2dShape& s) {
  Dims d;
  d.batch = int(s.batch), d.in_h = int(s.in_h), d.in_w = int(s.in_w);
  d.in_c = int(s.in_channels), d.out_c = int(s.out_channels);
  d.kernel_h = s.kernel_h, d.kernel_w = s.kernel_w, d.stride = s.stride;
  d.pad_top = s.pad_top, d.pad_left = s.pad_left;
  d.out_h = int(s.out_h()), d.out_w = int(s.out_w());
  d.out_pixels = int(s.out_pixels());
  d.filter_k = int(s.gemm_k());
  return d;
}

// One output phase of backward-data along one axis (see the top).
struct AxisPhase {
  int first_tap, taps;  // r0 and the count of taps r0, r0 + s, ...
  int base;             // ho of a = 0, i = 0
  int pixels;           // h = ph, ph + s, ... < H
};
__host__ __device__ inline AxisPhase axis_phase(int ph, int pad, int kernel, int stride,
                                                int extent) {
  AxisPhase a;
  a.first_tap = (ph + pad) % stride;
  a.taps = a.first_tap < kernel ? (kernel - a.first_tap + stride - 1) / stride : 0;
  a.base = (ph + pad - a.first_tap) / stride;
  a.pixels = ph < extent ? (extent - ph + stride - 1) / stride : 0;
  return a;
}
struct Phase {
  int ph, pw;
  AxisPhase h, w;
  __host__ __device__ int pixels() const { return h.pixels * w.pixels; }
};
__host__ __device__ inline Phase phase_of(const Dims& d, int z) {
  const int ph = z / d.stride, pw = z % d.stride;
  return {ph, pw, axis_phase(ph, d.pad_top, d.kernel_h, d.stride, d.in_h),
          axis_phase(pw, d.pad_left, d.kernel_w, d.stride, d.in_w)};
}

// ------------------------------------------------------------------ sources
//
// The interface kernels/conv2d_bf16_mainloop.cuh stages from: fixed(i) for a
// row index (reduction-contiguous sources) or a chunk's first row (the
// others), step(k) for a reduction index (a multiple of 8 for reduction-
// contiguous sources), chunk(fixed, step) the 8 contiguous bf16 or null
// (zeros) on the vector path, element(i, k) any element (0 outside) on the
// scalar path.

// im2col(x) at output pixel p, filter index k = (r S + s) C + c.
struct Im2col {
  const uint16_t* data;
  Dims d;
  struct Pixel {
    int image_base, h0, w0;  // n H W; the window's top-left input pixel
    bool valid;
  };
  struct Tap {
    int r, s, c;
    bool valid;
  };
  __device__ Pixel pixel(int p) const {
    const int hw = d.out_h * d.out_w, n = p / hw, rem = p - n * hw, ho = rem / d.out_w;
    const int wo = rem - ho * d.out_w;
    return {n * d.in_h * d.in_w, ho * d.stride - d.pad_top, wo * d.stride - d.pad_left,
            p < d.out_pixels};
  }
  __device__ Tap tap(int k) const {
    const int t = k / d.in_c, r = t / d.kernel_w;
    return {r, t - r * d.kernel_w, k - t * d.in_c, k < d.filter_k};
  }
  __device__ const uint16_t* at(const Pixel& p, const Tap& t) const {
    const int h = p.h0 + t.r, w = p.w0 + t.s;
    if (!p.valid || !t.valid || unsigned(h) >= unsigned(d.in_h) || unsigned(w) >= unsigned(d.in_w))
      return nullptr;
    return data + (p.image_base + h * d.in_w + w) * d.in_c + t.c;
  }
  __device__ uint16_t element(int p, int k) const {
    const uint16_t* e = at(pixel(p), tap(k));
    return e ? *e : uint16_t(0);
  }
};

// Forward A: im2col(x) [p][k].
struct Im2colByPixel : Im2col {
  static constexpr bool kReductionContiguous = true;
  bool vec;
  using Fixed = Pixel;
  using Step = Tap;
  __device__ Fixed fixed(int p) const { return pixel(p); }
  __device__ Step step(int k) const { return tap(k); }
  __device__ const uint16_t* chunk(const Fixed& f, const Step& s) const { return at(f, s); }
};

// Backward-filter B: im2col(x) as [k][p].
struct Im2colByFilterIndex : Im2col {
  static constexpr bool kReductionContiguous = false;
  bool vec;
  using Fixed = Tap;
  using Step = Pixel;
  __device__ Fixed fixed(int k) const { return tap(k); }
  __device__ Step step(int p) const { return pixel(p); }
  __device__ const uint16_t* chunk(const Fixed& f, const Step& s) const { return at(s, f); }
  __device__ uint16_t element(int k, int p) const { return Im2col::element(p, k); }
};

// Forward B: w [o][k], rows of K.
struct FilterByOutChannel {
  static constexpr bool kReductionContiguous = true;
  const uint16_t* data;
  Dims d;
  bool vec;
  struct Fixed {
    int base;
    bool valid;
  };
  struct Step {
    int k;
    bool valid;
  };
  __device__ Fixed fixed(int o) const { return {o * d.filter_k, o < d.out_c}; }
  __device__ Step step(int k) const { return {k, k < d.filter_k}; }
  __device__ const uint16_t* chunk(const Fixed& f, const Step& s) const {
    return f.valid && s.valid ? data + f.base + s.k : nullptr;
  }
  __device__ uint16_t element(int o, int k) const {
    return o < d.out_c && k < d.filter_k ? data[o * d.filter_k + k] : uint16_t(0);
  }
};

// Backward-data A: dy gathered for the phase's pixel m at k' = (i S_ph + j) O
// + o: dy[n, base_h + a - i, base_w + b - j, o] (see the top), zero outside.
struct OutGradByPhasePixel {
  static constexpr bool kReductionContiguous = true;
  const uint16_t* data;
  Dims d;
  bool vec;
  Phase phase;
  struct Fixed {
    int image_base, hb, wb;  // n Ho Wo; base_h + a; base_w + b
    bool valid;
  };
  struct Step {
    int i, j, o;
    bool valid;
  };
  __device__ Fixed fixed(int m) const {
    const int n = m / phase.pixels(), rem = m - n * phase.pixels(), a = rem / phase.w.pixels;
    const int b = rem - a * phase.w.pixels;
    return {n * d.out_h * d.out_w, phase.h.base + a, phase.w.base + b,
            m < d.batch * phase.pixels()};
  }
  __device__ Step step(int k) const {
    const int t = k / d.out_c, i = t / phase.w.taps;
    return {i, t - i * phase.w.taps, k - t * d.out_c, k < phase.h.taps * phase.w.taps * d.out_c};
  }
  __device__ const uint16_t* chunk(const Fixed& f, const Step& s) const {
    const int ho = f.hb - s.i, wo = f.wb - s.j;
    if (!f.valid || !s.valid || unsigned(ho) >= unsigned(d.out_h) ||
        unsigned(wo) >= unsigned(d.out_w))
      return nullptr;
    return data + (f.image_base + ho * d.out_w + wo) * d.out_c + s.o;
  }
  __device__ uint16_t element(int m, int k) const {
    const uint16_t* e = chunk(fixed(m), step(k));
    return e ? *e : uint16_t(0);
  }
};

// Backward-data B: w[o][r][s][c] as [k'][c] for the phase's taps
// r = r0 + stride i, s = s0 + stride j.
struct FilterByInChannel {
  static constexpr bool kReductionContiguous = false;
  const uint16_t* data;
  Dims d;
  bool vec;
  Phase phase;
  struct Fixed {
    int c;
    bool valid;
  };
  struct Step {
    int base;  // w[o][r][s][0]
    bool valid;
  };
  __device__ Fixed fixed(int c) const { return {c, c < d.in_c}; }
  __device__ Step step(int k) const {
    const int t = k / d.out_c, i = t / phase.w.taps, j = t - i * phase.w.taps;
    const int o = k - t * d.out_c;
    const int r = phase.h.first_tap + d.stride * i, s = phase.w.first_tap + d.stride * j;
    return {((o * d.kernel_h + r) * d.kernel_w + s) * d.in_c,
            k < phase.h.taps * phase.w.taps * d.out_c};
  }
  __device__ const uint16_t* chunk(const Fixed& f, const Step& s) const {
    return f.valid && s.valid ? data + s.base + f.c : nullptr;
  }
  __device__ uint16_t element(int c, int k) const {
    const uint16_t* e = chunk(fixed(c), step(k));
    return e ? *e : uint16_t(0);
  }
};

// Backward-filter A: dy [p][o] as [o][p].
struct OutGradByOutChannel {
  static constexpr bool kReductionContiguous = false;
  const uint16_t* data;
  Dims d;
  bool vec;
  struct Fixed {
    int o;
    bool valid;
  };
  struct Step {
    int base;  // dy[p][0]
    bool valid;
  };
  __device__ Fixed fixed(int o) const { return {o, o < d.out_c}; }
  __device__ Step step(int p) const { return {p * d.out_c, p < d.out_pixels}; }
  __device__ const uint16_t* chunk(const Fixed& f, const Step& s) const {
    return f.valid && s.valid ? data + s.base + f.o : nullptr;
  }
  __device__ uint16_t element(int o, int p) const {
    return o < d.out_c && p < d.out_pixels ? data[p * d.out_c + o] : uint16_t(0);
  }
};

// ------------------------------------------------------------------ problems
//
// What conv_bf16_kernel asks of a problem: job(z) (sizes, stage range),
// source_a(z), source_b(z), and store(z, m, n, v0, v1) for the outputs (m, n)
// and (m, n + 1) (n even, m and n in range, n + 1 maybe not).

int ceil_div(int64_t a, int64_t b) {
  return int((a + b - 1) / b);
}

__device__ inline int stages_of(int reduction) {
  return (reduction + kBK - 1) / kBK;
}

struct ForwardProblem {
  using SourceA = Im2colByPixel;
  using SourceB = FilterByOutChannel;
  SourceA a;
  SourceB b;
  const float* bias;
  const uint16_t* residual;
  uint16_t* y;
  bool pairs;  // O even, y and residual 4-byte aligned: bf16x2 accesses

  __device__ Job job(int) const { return {a.d.out_pixels, a.d.out_c, 0, stages_of(a.d.filter_k)}; }
  __device__ SourceA source_a(int) const { return a; }
  __device__ SourceB source_b(int) const { return b; }
  __device__ void store(int, int m, int n, float v0, float v1) const {
    const int cols = a.d.out_c, at = m * cols + n;
    const bool second = n + 1 < cols;
    if (bias) {
      v0 += bias[n];
      if (second) v1 += bias[n + 1];
    }
    if (pairs) {  // residual may be y: read before the write, same thread
      if (residual) {
        const uint32_t r = *reinterpret_cast<const uint32_t*>(residual + at);
        v0 += bf16_to_float(uint16_t(r & 0xFFFFu)), v1 += bf16_to_float(uint16_t(r >> 16));
      }
      *reinterpret_cast<uint32_t*>(y + at) = mma::pack_bf16x2(v0, v1);
      return;
    }
    if (residual) {
      v0 += bf16_to_float(residual[at]);
      if (second) v1 += bf16_to_float(residual[at + 1]);
    }
    y[at] = float_to_bf16(v0);
    if (second) y[at + 1] = float_to_bf16(v1);
  }
};

struct BackwardDataProblem {
  using SourceA = OutGradByPhasePixel;
  using SourceB = FilterByInChannel;
  SourceA a;  // phase filled in by source_a(z)
  SourceB b;
  uint16_t* dx;
  bool accumulate, pairs;  // pairs: C even, dx 4-byte aligned

  __device__ Job job(int z) const {
    const Phase p = phase_of(a.d, z);
    return {a.d.batch * p.pixels(), a.d.in_c, 0, stages_of(p.h.taps * p.w.taps * a.d.out_c)};
  }
  __device__ SourceA source_a(int z) const {
    SourceA s = a;
    s.phase = phase_of(a.d, z);
    return s;
  }
  __device__ SourceB source_b(int z) const {
    SourceB s = b;
    s.phase = phase_of(b.d, z);
    return s;
  }
  __device__ void store(int z, int m, int n, float v0, float v1) const {
    const Dims& d = a.d;
    const Phase p = phase_of(d, z);
    const int img = m / p.pixels(), rem = m - img * p.pixels(), ai = rem / p.w.pixels;
    const int bi = rem - ai * p.w.pixels;
    const int h = p.ph + d.stride * ai, w = p.pw + d.stride * bi;
    const int at = ((img * d.in_h + h) * d.in_w + w) * d.in_c + n;
    const bool second = n + 1 < d.in_c;
    if (pairs) {
      if (accumulate) {
        const uint32_t old = *reinterpret_cast<const uint32_t*>(dx + at);
        v0 += bf16_to_float(uint16_t(old & 0xFFFFu)), v1 += bf16_to_float(uint16_t(old >> 16));
      }
      *reinterpret_cast<uint32_t*>(dx + at) = mma::pack_bf16x2(v0, v1);
      return;
    }
    if (accumulate) {
      v0 += bf16_to_float(dx[at]);
      if (second) v1 += bf16_to_float(dx[at + 1]);
    }
    dx[at] = float_to_bf16(v0);
    if (second) dx[at + 1] = float_to_bf16(v1);
  }
};

struct BackwardFilterProblem {
  using SourceA = OutGradByOutChannel;
  using SourceB = Im2colByFilterIndex;
  SourceA a;
  SourceB b;
  float* dw;        // one split: the output
  float* partials;  // several: [split][O][K]
  int splits, stages_per_split;
  bool accumulate;

  __device__ Job job(int z) const {
    const int stages = stages_of(a.d.out_pixels);
    return {a.d.out_c, a.d.filter_k, z * stages_per_split, min(stages, (z + 1) * stages_per_split)};
  }
  __device__ SourceA source_a(int) const { return a; }
  __device__ SourceB source_b(int) const { return b; }
  __device__ void store(int z, int m, int n, float v0, float v1) const {
    const int cols = a.d.filter_k;
    const bool second = n + 1 < cols;
    if (splits > 1) {
      float* p = partials + (int64_t(z) * a.d.out_c + m) * cols + n;
      p[0] = v0;
      if (second) p[1] = v1;
      return;
    }
    float* p = dw + m * cols + n;
    p[0] = accumulate ? p[0] + v0 : v0;
    if (second) p[1] = accumulate ? p[1] + v1 : v1;
  }
};

// ------------------------------------------------------------------ bias gradient, split sum

// db over the pixel splits: block (column group of 32, split); thread
// (column, lane of 8) sums rows lane, lane + 8, ... of its split, then lane 0
// adds the 8 lane sums in order. One split: db = or += the sum; several:
// partials [split][O].
constexpr int kColumnSumLanes = 8;
__global__ void __launch_bounds__(32 * kColumnSumLanes)
    column_sum_bf16_kernel(const uint16_t* dy, int rows, int cols, int rows_per_split, float* db,
                           float* partials, bool direct, bool accumulate) {
  __shared__ float lane_sums[kColumnSumLanes][32];
  const int col = int(blockIdx.x) * 32 + int(threadIdx.x) % 32, lane = int(threadIdx.x) / 32;
  const int first = int(blockIdx.y) * rows_per_split;
  const int last = min(rows, first + rows_per_split);
  float sum = 0.f;
  if (col < cols)
    for (int r = first + lane; r < last; r += kColumnSumLanes)
      sum += bf16_to_float(dy[r * cols + col]);
  lane_sums[lane][threadIdx.x % 32] = sum;
  __syncthreads();
  if (lane != 0 || col >= cols) return;
  float total = 0.f;
  for (int l = 0; l < kColumnSumLanes; ++l) total += lane_sums[l][threadIdx.x % 32];
  if (direct)
    db[col] = accumulate ? db[col] + total : total;
  else
    partials[int64_t(blockIdx.y) * cols + col] = total;
}

// out[i] = (accumulate ? out[i] : 0) + sum over s < parts of partials[s][i], s in order.
__global__ void split_sum_kernel(const float* partials, int parts, int count, float* out,
                                 bool accumulate) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= count) return;
  float sum = 0.f;
  for (int s = 0; s < parts; ++s) sum += partials[int64_t(s) * count + i];
  out[i] = accumulate ? out[i] + sum : sum;
}

// ------------------------------------------------------------------ choices

template <class T>
int64_t tile_count(int64_t m, int64_t n) {
  return int64_t(ceil_div(m, T::kBM)) * ceil_div(n, T::kBN);
}

// Big tiles where they fill a wave (forward, backward-data) or where the
// output is at least one big tile each way (backward-filter, whose splits
// fill the GPU); the test hook first.
bool use_large_tiles(int64_t m, int64_t n, bool splits_fill) {
  const int forced = detail::conv2d_bf16_forced_tile();
  if (forced == LargeTile::kBM) return true;
  if (forced == SmallTile::kBM) return false;
  if (splits_fill) return m >= LargeTile::kBM && n >= LargeTile::kBN;
  return tile_count<LargeTile>(m, n) >= kWaveBlocks;
}

struct Split {
  int splits, stages_per_split;
};

// About kFilterTargetBlocks blocks, at least kMinStagesPerSplit stages a
// split, no empty split.
template <class T>
Split filter_split(const Dims& d) {
  const int64_t stages = ceil_div(d.out_pixels, kBK);
  int64_t want = detail::conv2d_bf16_forced_splits();
  if (want <= 0) {
    const int64_t tiles = tile_count<T>(d.out_c, d.filter_k);
    const int64_t most = std::max<int64_t>(1, stages / kMinStagesPerSplit);
    want = std::clamp<int64_t>(ceil_div(kFilterTargetBlocks, tiles), 1, most);
  }
  want = std::clamp<int64_t>(want, 1, stages);
  const int per_split = ceil_div(stages, want);
  return {ceil_div(stages, per_split), per_split};
}

Split filter_split_of(const Dims& d) {
  return use_large_tiles(d.out_c, d.filter_k, true) ? filter_split<LargeTile>(d)
                                                    : filter_split<SmallTile>(d);
}

struct WorkspaceLayout {
  size_t dw_bytes, db_bytes;
};
WorkspaceLayout workspace_layout(const Dims& d) {
  const Split split = filter_split_of(d);
  if (split.splits == 1) return {0, 0};
  return {workspace_align(size_t(split.splits) * size_t(d.out_c) * size_t(d.filter_k) * 4),
          workspace_align(size_t(split.splits) * size_t(d.out_c) * 4)};
}

// ------------------------------------------------------------------ checks

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("conv2d_bf16: " + what);
}

void check_pointer(const char* name, const void* p, size_t alignment, bool required) {
  if (!p) {
    if (required) fail(std::string(name) + " is null");
    return;
  }
  if (reinterpret_cast<uintptr_t>(p) % alignment != 0)
    fail(std::string(name) + " is not " + std::to_string(alignment) + "-byte aligned");
}

bool aligned(const void* p, size_t alignment) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % alignment == 0;
}

const uint16_t* bits(const __nv_bfloat16* p) {
  return reinterpret_cast<const uint16_t*>(p);
}
uint16_t* bits(__nv_bfloat16* p) {
  return reinterpret_cast<uint16_t*>(p);
}

template <class T, class Problem>
void launch(const Problem& problem, int64_t blocks_x, int blocks_y, cudaStream_t stream) {
  DDPM_LAUNCH((conv_bf16_kernel<T, Problem>), dim3(unsigned(blocks_x), unsigned(blocks_y)),
              T::kThreads, 0, stream, problem);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void backward_filter(const BackwardFilterProblem& problem, cudaStream_t stream) {
  const Dims& d = problem.a.d;
  launch<T>(problem, tile_count<T>(d.out_c, d.filter_k), problem.splits, stream);
}

}  // namespace

void conv2d_bf16_validate(const Conv2dShape& s) {
  detail::check_conv2d_shape("conv2d_bf16", s);
}

size_t conv2d_bf16_workspace_bytes(const Conv2dShape& s) {
  conv2d_bf16_validate(s);
  if (s.batch == 0) return 0;
  const WorkspaceLayout layout = workspace_layout(dims_of(s));
  return layout.dw_bytes + layout.db_bytes;
}

void conv2d_bf16_forward(const __nv_bfloat16* x, const __nv_bfloat16* w, const float* bias,
                         const __nv_bfloat16* residual, __nv_bfloat16* y, const Conv2dShape& s,
                         cudaStream_t stream) {
  conv2d_bf16_validate(s);
  check_pointer("x", x, 2, true);
  check_pointer("w", w, 2, true);
  check_pointer("bias", bias, 4, false);
  check_pointer("residual", residual, 2, false);
  check_pointer("y", y, 2, true);
  if (s.batch == 0) return;
  const Dims d = dims_of(s);
  ForwardProblem problem;
  problem.a = {{bits(x), d}, d.in_c % kChunk == 0 && aligned(x, 16)};
  problem.b = {bits(w), d, d.filter_k % kChunk == 0 && aligned(w, 16)};
  problem.bias = bias;
  problem.residual = bits(residual);
  problem.y = bits(y);
  problem.pairs = d.out_c % 2 == 0 && aligned(y, 4) && aligned(residual, 4);
  if (use_large_tiles(d.out_pixels, d.out_c, false))
    launch<LargeTile>(problem, tile_count<LargeTile>(d.out_pixels, d.out_c), 1, stream);
  else
    launch<SmallTile>(problem, tile_count<SmallTile>(d.out_pixels, d.out_c), 1, stream);
}

void conv2d_bf16_backward_data(const __nv_bfloat16* dy, const __nv_bfloat16* w, __nv_bfloat16* dx,
                               const Conv2dShape& s, bool accumulate, cudaStream_t stream) {
  conv2d_bf16_validate(s);
  check_pointer("dy", dy, 2, true);
  check_pointer("w", w, 2, true);
  check_pointer("dx", dx, 2, true);
  if (s.batch == 0) return;
  const Dims d = dims_of(s);
  BackwardDataProblem problem;
  problem.a = {bits(dy), d, d.out_c % kChunk == 0 && aligned(dy, 16), {}};
  problem.b = {bits(w), d, d.in_c % kChunk == 0 && aligned(w, 16), {}};
  problem.dx = bits(dx);
  problem.accumulate = accumulate;
  problem.pairs = d.in_c % 2 == 0 && aligned(dx, 4);
  // Phase 0 has the most pixels: its tile count sizes the grid.
  const int64_t rows = int64_t(d.batch) * phase_of(d, 0).pixels();
  const int phases = d.stride * d.stride;
  if (use_large_tiles(rows, d.in_c, false))
    launch<LargeTile>(problem, tile_count<LargeTile>(rows, d.in_c), phases, stream);
  else
    launch<SmallTile>(problem, tile_count<SmallTile>(rows, d.in_c), phases, stream);
}

void conv2d_bf16_backward_filter(const __nv_bfloat16* x, const __nv_bfloat16* dy, float* dw,
                                 float* db, const Conv2dShape& s, bool accumulate, void* workspace,
                                 size_t workspace_bytes, cudaStream_t stream) {
  conv2d_bf16_validate(s);
  check_pointer("x", x, 2, true);
  check_pointer("dy", dy, 2, true);
  check_pointer("dw", dw, 4, true);
  check_pointer("db", db, 4, false);
  if (s.batch == 0) return;
  const Dims d = dims_of(s);
  const WorkspaceLayout layout = workspace_layout(d);
  if (workspace_bytes < layout.dw_bytes + layout.db_bytes)
    fail("workspace of " + std::to_string(workspace_bytes) + " bytes, this shape needs " +
         std::to_string(layout.dw_bytes + layout.db_bytes) + " (conv2d_bf16_workspace_bytes)");
  if (layout.dw_bytes) check_pointer("workspace", workspace, 256, true);
  const Split split = filter_split_of(d);
  float* const dw_partials = static_cast<float*>(workspace);
  float* const db_partials =
      layout.dw_bytes ? reinterpret_cast<float*>(static_cast<char*>(workspace) + layout.dw_bytes)
                      : nullptr;

  BackwardFilterProblem problem;
  problem.a = {bits(dy), d, d.out_c % kChunk == 0 && aligned(dy, 16)};
  problem.b = {{bits(x), d}, d.in_c % kChunk == 0 && aligned(x, 16)};
  problem.dw = dw;
  problem.partials = dw_partials;
  problem.splits = split.splits;
  problem.stages_per_split = split.stages_per_split;
  problem.accumulate = accumulate;
  if (use_large_tiles(d.out_c, d.filter_k, true))
    backward_filter<LargeTile>(problem, stream);
  else
    backward_filter<SmallTile>(problem, stream);
  const bool direct = split.splits == 1;
  const int count = d.out_c * d.filter_k;
  if (!direct) {
    DDPM_LAUNCH(split_sum_kernel, dim3(unsigned(ceil_div(count, 256))), 256, 0, stream, dw_partials,
                split.splits, count, dw, accumulate);
    DDPM_CUDA_CHECK(cudaGetLastError());
  }
  if (!db) return;
  DDPM_LAUNCH(column_sum_bf16_kernel, dim3(unsigned(ceil_div(d.out_c, 32)), unsigned(split.splits)),
              32 * kColumnSumLanes, 0, stream, bits(dy), d.out_pixels, d.out_c,
              split.stages_per_split * kBK, db, db_partials, direct, accumulate);
  DDPM_CUDA_CHECK(cudaGetLastError());
  if (!direct) {
    DDPM_LAUNCH(split_sum_kernel, dim3(unsigned(ceil_div(d.out_c, 256))), 256, 0, stream,
                db_partials, split.splits, d.out_c, db, accumulate);
    DDPM_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace ddpm::kernels
