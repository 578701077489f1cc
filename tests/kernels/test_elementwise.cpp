// Kernel tests of elementwise.cuh against the CPU backend (see kernel_test_util.h).
//
// Each case runs its kernel on fresh random inputs (never zeros) with poisoned
// (NaN) outputs placed `offset` floats into a poisoned allocation: offset 0
// takes the float4 path where the shape allows it, offset 1 forces the scalar
// path on the same shape. Every output element must be written and the floats
// around the output must stay poisoned. Gradients are checked in overwrite and
// in accumulate mode (random prefill). The oracle is the CPU backend in f64 on
// the very float inputs (f32 for the timestep embedding, whose float operation
// order the kernel reproduces), so a tolerance bounds the kernel's own fp32
// rounding: u = 2^-24 is the unit roundoff, and each bound is derived where
// it is used.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/ops/elementwise.h"
#include "engine/ops/timestep_embedding.h"
#include "kernels/elementwise.cuh"
#include "kernels/vector_io.cuh"
#include "tests/kernels/kernel_test_util.h"
#include "tests/op_harness.h"

namespace ddpm::testing {
namespace {

namespace k = ddpm::kernels;

constexpr double kU = 0x1p-24;  // fp32 unit roundoff

#if DDPM_KERNEL_TESTS_EMULATED
constexpr bool kEmulated = true;
#else
constexpr bool kEmulated = false;
#endif

// n floats at `offset` floats into a poisoned device allocation with one guard
// float after them; download() also checks that no float around them changed.
class Slice {
 public:
  Slice(size_t n, int offset) : mem_(n + size_t(offset) + 1), n_(n), offset_(size_t(offset)) {}
  float* get() const { return mem_.get() + offset_; }
  void upload(const std::vector<float>& v) {
    ASSERT_EQ(v.size(), n_);
    if (n_)
      check_cuda(cudaMemcpy(get(), v.data(), n_ * sizeof(float), cudaMemcpyHostToDevice), "upload");
  }
  std::vector<float> download() const {
    const std::vector<float> all = mem_.download();
    for (size_t i = 0; i < all.size(); ++i) {
      if (i >= offset_ && i < offset_ + n_) continue;
      uint32_t bits;
      std::memcpy(&bits, &all[i], sizeof bits);
      EXPECT_EQ(bits, 0xFFFFFFFFu) << "float " << i << " outside the output was written";
    }
    return {all.begin() + long(offset_), all.begin() + long(offset_ + n_)};
  }

 private:
  DeviceArray<float> mem_;
  size_t n_, offset_;
};

std::vector<double> randoms(size_t n, uint64_t seed, double scale = 1.0) {
  return to_double(random_floats(n, seed, scale));
}
std::vector<float> to_float(const std::vector<double>& v) {
  return {v.begin(), v.end()};
}

// |got - want| <= tol[i] for every element, every element finite (written).
void expect_within(const std::vector<float>& got, const std::vector<double>& want,
                   const std::vector<double>& tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_EQ(tol.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << what << ": element " << i << " not written";
    ASSERT_LE(std::abs(double(got[i]) - want[i]), tol[i])
        << what << ": element " << i << " is " << got[i] << ", expected " << want[i];
  }
}

std::vector<double> relative(const std::vector<double>& want, double rtol) {
  std::vector<double> tol(want.size());
  for (size_t i = 0; i < want.size(); ++i) tol[i] = rtol * std::abs(want[i]);
  return tol;
}

// A CPU-backend run of `params` on the given float values (as f64).
OpRun oracle(const OpParams& params, const std::vector<Shape>& shapes,
             const std::vector<std::vector<double>>& values, DType dtype = DType::f64) {
  OpRun run(params, shapes, dtype);
  for (size_t i = 0; i < values.size(); ++i)
    for (size_t e = 0; e < values[i].size(); ++e) run.inputs[i].set(int64_t(e), values[i][e]);
  return run;
}

// want + prefill in accumulate mode; the prefill's extra rounding is one u of
// the result, added to tol.
void accumulate_into(std::vector<double>& want, std::vector<double>& tol,
                     const std::vector<double>& prefill) {
  for (size_t i = 0; i < want.size(); ++i) {
    want[i] += prefill[i];
    tol[i] += kU * std::abs(want[i]);
  }
}

// Where the data sits and how many blocks a launch may use: offset 0 takes
// the float4 paths where the shape allows, offset 1 (one float into the
// allocation) the scalar paths; a cap of two blocks makes each thread loop
// over several units (and the db reduction's blocks over several samples),
// as one wave does on the GPU at large sizes (two, not one, so that a wrong
// grid stride shows).
struct Layout {
  int offset;
  unsigned cap;
};
const Layout kLayouts[] = {{0, 0}, {1, 0}, {0, 2}, {1, 2}};

class BlockCap {
 public:
  explicit BlockCap(unsigned cap) : old_(k::grid_stride_block_cap()) {
    k::grid_stride_block_cap() = cap;
  }
  ~BlockCap() { k::grid_stride_block_cap() = old_; }
  BlockCap(const BlockCap&) = delete;
  BlockCap& operator=(const BlockCap&) = delete;

 private:
  unsigned old_;
};

// Runs f(offset) once per layout, with its block cap in force.
template <class F>
void for_each_layout(F f) {
  for (const Layout& layout : kLayouts) {
    const BlockCap cap(layout.cap);
    SCOPED_TRACE("offset " + std::to_string(layout.offset) +
                 (layout.cap ? ", " + std::to_string(layout.cap) + " blocks" : ", full grid"));
    f(layout.offset);
  }
}

// Runs f(accumulate) for overwrite then accumulate mode.
template <class F>
void for_each_mode(F f) {
  for (bool accumulate : {false, true}) {
    SCOPED_TRACE(accumulate ? "accumulate" : "overwrite");
    f(accumulate);
  }
}

// ---- SiLU -------------------------------------------------------------------------

std::vector<int64_t> silu_sizes() {
  // 105 = 3 x 5 x 7; 4096 is float4 units only, 4099 adds a tail of 3.
  std::vector<int64_t> sizes = {1, 7, 105, 4096, 4099};
  if (!kEmulated) sizes.push_back((1 << 21) + 3);  // 2 x 2^19 float4 units: over one wave
  return sizes;
}

TEST(Elementwise, SiluForward) {
  DDPM_REQUIRE_DEVICE();
  for (int64_t n : silu_sizes()) {
    SCOPED_TRACE("n = " + std::to_string(n));
    // Scale 4 reaches |x| ~ 16, where exp(-x) is far from 1 both ways.
    const std::vector<double> x = randoms(size_t(n), 11 + n, 4.0);
    const std::vector<double> want = oracle(SiluParams{}, {Shape{n}}, {x}).forward();
    // y = x / (1 + expf(-x)): expf within 2 ulp (CUDA) <= 4u relative; the
    // sum 1 + e adds u (and shrinks e's share), the division u: <= 6u
    // relative; 8u leaves margin. A wrong formula is off by far more.
    const std::vector<double> tol = relative(want, 8 * kU);
    for_each_layout([&](int offset) {
      Slice xd(size_t(n), offset), yd(size_t(n), offset);
      xd.upload(to_float(x));
      k::silu_forward(xd.get(), yd.get(), n, nullptr);
      expect_within(yd.download(), want, tol, "silu_forward");
    });
  }
}

TEST(Elementwise, SiluBackward) {
  DDPM_REQUIRE_DEVICE();
  for (int64_t n : silu_sizes()) {
    SCOPED_TRACE("n = " + std::to_string(n));
    const std::vector<double> x = randoms(size_t(n), 21 + n, 4.0);
    const std::vector<double> g = randoms(size_t(n), 22 + n);
    const std::vector<double> prefill = randoms(size_t(n), 23 + n);
    const std::vector<double> grad = oracle(SiluParams{}, {Shape{n}}, {x}).backward({g})[0];
    // s = 1 / (1 + expf(-x)) carries <= 6u relative error (expf 4u, sum and
    // division u each); 1 - s then an absolute error <= 7u, x (1 - s) <=
    // (7|x| + 1)u, the bracket 1 + x (1 - s) <= (8|x| + 2)u absolute, the
    // products with dy and s add 2u + 6u of |dy s bracket| <= |dy| (1 + |x|).
    // In all <= |dy| (16|x| + 10)u; doubled for margin. Absolute, not
    // relative: the bracket crosses zero near x = -1.28.
    std::vector<double> grad_tol(grad.size());
    for (size_t i = 0; i < grad.size(); ++i)
      grad_tol[i] = 2 * (16 * std::abs(x[i]) + 10) * kU * std::abs(g[i]);
    for_each_layout([&](int offset) {
      for_each_mode([&](bool accumulate) {
        std::vector<double> want = grad, tol = grad_tol;
        if (accumulate) accumulate_into(want, tol, prefill);
        Slice xd(size_t(n), offset), dy(size_t(n), offset), dx(size_t(n), offset);
        xd.upload(to_float(x));
        dy.upload(to_float(g));
        if (accumulate) dx.upload(to_float(prefill));
        k::silu_backward(xd.get(), dy.get(), dx.get(), n, accumulate, nullptr);
        expect_within(dx.download(), want, tol, "silu_backward");
      });
    });
  }
}

// ---- Add ----------------------------------------------------------------------------

// a's shape; broadcast cases take b = [N, C]. 3 x 5 x 7 x 5 = 525 scalar
// units, 3 x 4 x 4 x 40 / 4 = 480 float4 units: the capped launches loop.
std::vector<Shape> add_shapes() {
  std::vector<Shape> shapes = {Shape{1, 5, 7, 3}, Shape{3, 5, 7, 5}, Shape{3, 4, 4, 40},
                               Shape{1, 1, 1, 4}};
  if (!kEmulated) shapes.push_back(Shape{4, 64, 64, 128});
  return shapes;
}

// An exactly representable scale: the kernel's float and the oracle's double agree.
constexpr float kScale = 0.71875f;

TEST(Elementwise, AddForward) {
  DDPM_REQUIRE_DEVICE();
  for (const Shape& as : add_shapes()) {
    for (bool broadcast : {false, true}) {
      SCOPED_TRACE(as.str() + (broadcast ? " + [N, C]" : " + same shape"));
      const int64_t n = as.numel(), c = as.back(), per_sample = n / as[0];
      const Shape bs = broadcast ? Shape{as[0], c} : as;
      const std::vector<double> a = randoms(size_t(n), 31 + n);
      const std::vector<double> b = randoms(size_t(bs.numel()), 32 + n);
      const std::vector<double> want = oracle(AddParams{kScale}, {as, bs}, {a, b}).forward();
      // scale * (a + b): two roundings, <= 2u relative (plus u^2).
      const std::vector<double> tol = relative(want, 2.5 * kU);
      for_each_layout([&](int offset) {
        Slice ad(size_t(n), offset), bd(size_t(bs.numel()), 0), yd(size_t(n), offset);
        ad.upload(to_float(a));
        bd.upload(to_float(b));
        k::add_forward(ad.get(), bd.get(), yd.get(), n, c, broadcast ? per_sample : 0, kScale,
                       nullptr);
        expect_within(yd.download(), want, tol, "add_forward");
      });
    }
  }
}

// Same-shape add backward: da and db both, or one of them, each mode.
TEST(Elementwise, AddBackwardSameShape) {
  DDPM_REQUIRE_DEVICE();
  for (const Shape& as : add_shapes()) {
    SCOPED_TRACE(as.str());
    const int64_t n = as.numel();
    const std::vector<double> g = randoms(size_t(n), 41 + n);
    const std::vector<double> prefill[2] = {randoms(size_t(n), 42 + n), randoms(size_t(n), 43)};
    const auto grads =
        oracle(AddParams{kScale}, {as, as}, {randoms(size_t(n), 44), g}).backward({g});
    for_each_layout([&](int offset) {
      for (int wanted = 1; wanted <= 3; ++wanted) {  // bit 0: da, bit 1: db
        SCOPED_TRACE("gradients " + std::to_string(wanted));
        for_each_mode([&](bool accumulate) {
          Slice dy(size_t(n), offset);
          Slice grad[2] = {Slice(size_t(n), offset), Slice(size_t(n), 0)};
          dy.upload(to_float(g));
          for (int which = 0; which < 2; ++which)
            if (accumulate && (wanted >> which & 1)) grad[which].upload(to_float(prefill[which]));
          k::add_backward(dy.get(), wanted & 1 ? grad[0].get() : nullptr,
                          wanted & 2 ? grad[1].get() : nullptr, n, as.back(), 0, kScale, accumulate,
                          accumulate, nullptr);
          for (int which = 0; which < 2; ++which) {
            const std::vector<float> got = grad[which].download();
            const char* name = which ? "db" : "da";
            if (!(wanted >> which & 1)) {
              for (float v : got) ASSERT_TRUE(std::isnan(v)) << name << " written though null";
              continue;
            }
            // scale * dy: one rounding, u relative (the scale is exact).
            std::vector<double> want = grads[size_t(which)], tol = relative(want, kU);
            if (accumulate) accumulate_into(want, tol, prefill[which]);
            expect_within(got, want, tol, name);
          }
        });
      }
    });
  }
}

struct BroadcastCase {
  Shape a;
  bool workspace;
};

// Broadcast add backward: db[s, c] = scale * sum over positions of dy, with
// da fused or not, with or without the split reduction's workspace.
TEST(Elementwise, AddBackwardBroadcast) {
  DDPM_REQUIRE_DEVICE();
  std::vector<BroadcastCase> cases;
  for (const Shape& s : add_shapes()) cases.push_back({s, false});
  // Enough positions that the workspace splits them (>= 2 x 128 per sample):
  // 576 positions of batch 1 (4 chunks), 256 of batch 3 (2 chunks), a
  // scalar-path channel count, each with and without a workspace.
  for (const Shape& s : {Shape{1, 24, 24, 8}, Shape{3, 16, 16, 8}, Shape{1, 24, 24, 5}})
    for (bool w : {false, true}) cases.push_back({s, w});
  if (!kEmulated)
    for (const Shape& s : {Shape{1, 128, 128, 128}, Shape{8, 32, 32, 256}, Shape{1, 64, 64, 36}})
      for (bool w : {false, true}) cases.push_back({s, w});
  for (const BroadcastCase& bc : cases) {
    const Shape& as = bc.a;
    SCOPED_TRACE(as.str() + (bc.workspace ? " with workspace" : " without workspace"));
    const int64_t n = as.numel(), c = as.back(), per_sample = n / as[0];
    const int64_t positions = per_sample / c;
    const Shape bs{as[0], c};
    const size_t ws_bytes = k::add_backward_workspace_bytes(n, c, per_sample);
    if (positions >= 2 * 128) {
      EXPECT_GT(ws_bytes, 0u) << "the reduction should split";
    }
    const std::vector<double> g = randoms(size_t(n), 51 + n + c);
    const std::vector<double> pa = randoms(size_t(n), 52), pb = randoms(size_t(bs.numel()), 53);
    const auto grads = oracle(AddParams{kScale}, {as, bs},
                              {randoms(size_t(n), 54), randoms(size_t(bs.numel()), 55)})
                           .backward({g});
    // db: the float sum of `positions` terms in any order errs by at most
    // (positions - 1) u sum|dy| (first order), the scaling by one more u of
    // the result; the bound holds for whatever partition the kernel picks. A
    // lost or doubled term (|dy| ~ 1) exceeds it: it is <= 578 u sum|dy| ~
    // 3.4e-5 sum|dy| at the largest emulated size.
    std::vector<double> db_tol(grads[1].size());
    for (int64_t s = 0; s < as[0]; ++s)
      for (int64_t ch = 0; ch < c; ++ch) {
        double abs_sum = 0;
        for (int64_t p = 0; p < positions; ++p)
          abs_sum += std::abs(g[size_t((s * positions + p) * c + ch)]);
        const size_t i = size_t(s * c + ch);
        db_tol[i] = (double(positions) + 1) * kU * kScale * abs_sum + kU * std::abs(grads[1][i]);
      }
    for_each_layout([&](int offset) {
      for (bool with_da : {false, true}) {
        SCOPED_TRACE(with_da ? "da and db" : "db only");
        for_each_mode([&](bool accumulate) {
          Slice dy(size_t(n), offset), ga(size_t(n), offset), gb(size_t(bs.numel()), 0);
          DeviceArray<float> ws(bc.workspace ? ws_bytes / sizeof(float) : 0);
          dy.upload(to_float(g));
          if (accumulate) {
            ga.upload(to_float(pa));
            gb.upload(to_float(pb));
          }
          k::add_backward(dy.get(), with_da ? ga.get() : nullptr, gb.get(), n, c, per_sample,
                          kScale, accumulate, accumulate, ws.get(), ws_bytes, nullptr);
          std::vector<double> want_b = grads[1], tol_b = db_tol;
          if (accumulate) accumulate_into(want_b, tol_b, pb);
          expect_within(gb.download(), want_b, tol_b, "db");
          if (with_da) {
            std::vector<double> want_a = grads[0], tol_a = relative(want_a, kU);
            if (accumulate) accumulate_into(want_a, tol_a, pa);
            expect_within(ga.download(), want_a, tol_a, "da");
          }
        });
      }
    });
  }
}

// The broadcast db is bitwise reproducible from run to run (no atomics).
TEST(Elementwise, AddBackwardBroadcastDeterministic) {
  DDPM_REQUIRE_DEVICE();
  const Shape as = kEmulated ? Shape{1, 24, 24, 8} : Shape{1, 128, 128, 128};
  const int64_t n = as.numel(), c = as.back(), per_sample = n;
  const size_t ws_bytes = k::add_backward_workspace_bytes(n, c, per_sample);
  ASSERT_GT(ws_bytes, 0u);
  DeviceArray<float> dy(random_floats(size_t(n), 61)), ws(ws_bytes / sizeof(float));
  std::vector<float> first;
  for (int run = 0; run < 3; ++run) {
    DeviceArray<float> db(static_cast<size_t>(c));
    k::add_backward(dy.get(), nullptr, db.get(), n, c, per_sample, 1.0f, false, false, ws.get(),
                    ws_bytes, nullptr);
    const std::vector<float> got = db.download();
    if (run == 0) {
      first = got;
    } else {
      ASSERT_EQ(std::memcmp(got.data(), first.data(), got.size() * sizeof(float)), 0)
          << "run " << run << " differs from run 0";
    }
  }
}

// ---- Upsample x2 ---------------------------------------------------------------------

std::vector<Shape> upsample_shapes() {
  // 3 x 5 x 7 x 5 = 525 scalar units and 2 x 9 x 9 x 16 / 4 = 648 float4
  // units: more than two blocks' threads, so the capped launches loop.
  std::vector<Shape> shapes = {Shape{1, 5, 7, 3}, Shape{3, 5, 7, 5}, Shape{2, 3, 4, 8},
                               Shape{2, 9, 9, 16}, Shape{1, 1, 1, 1}};
  if (!kEmulated) shapes.push_back(Shape{4, 64, 64, 128});
  return shapes;
}

TEST(Elementwise, Upsample2xForward) {
  DDPM_REQUIRE_DEVICE();
  for (const Shape& xs : upsample_shapes()) {
    SCOPED_TRACE(xs.str());
    const std::vector<double> x = randoms(size_t(xs.numel()), 71 + xs.numel());
    const std::vector<double> want = oracle(Upsample2xParams{}, {xs}, {x}).forward();
    for_each_layout([&](int offset) {
      Slice xd(x.size(), offset), yd(want.size(), offset);
      xd.upload(to_float(x));
      k::upsample2x_forward(xd.get(), yd.get(), xs[0], xs[1], xs[2], xs[3], nullptr);
      expect_within(yd.download(), want, relative(want, 0), "upsample2x_forward (a copy: exact)");
    });
  }
}

TEST(Elementwise, Upsample2xBackward) {
  DDPM_REQUIRE_DEVICE();
  for (const Shape& xs : upsample_shapes()) {
    SCOPED_TRACE(xs.str());
    const int64_t nx = xs.numel(), ny = 4 * nx, h = xs[1], w = xs[2], c = xs[3];
    const std::vector<double> g = randoms(size_t(ny), 72 + nx);
    const std::vector<double> prefill = randoms(size_t(nx), 73);
    const std::vector<double> grad =
        oracle(Upsample2xParams{}, {xs}, {randoms(size_t(nx), 74)}).backward({g})[0];
    // Four terms summed in float: three roundings, <= 3u of the sum of their
    // magnitudes.
    std::vector<double> grad_tol(grad.size());
    for (int64_t r = 0; r < xs[0] * h; ++r)
      for (int64_t j = 0; j < w; ++j)
        for (int64_t ch = 0; ch < c; ++ch) {
          double abs_sum = 0;
          for (int a = 0; a < 2; ++a)
            for (int b = 0; b < 2; ++b)
              abs_sum += std::abs(g[size_t(((2 * r + a) * 2 * w + 2 * j + b) * c + ch)]);
          grad_tol[size_t((r * w + j) * c + ch)] = 3 * kU * abs_sum;
        }
    for_each_layout([&](int offset) {
      for_each_mode([&](bool accumulate) {
        std::vector<double> want = grad, tol = grad_tol;
        if (accumulate) accumulate_into(want, tol, prefill);
        Slice dy(size_t(ny), offset), dx(size_t(nx), offset);
        dy.upload(to_float(g));
        if (accumulate) dx.upload(to_float(prefill));
        k::upsample2x_backward(dy.get(), dx.get(), xs[0], h, w, c, accumulate, nullptr);
        expect_within(dx.download(), want, tol, "upsample2x_backward");
      });
    });
  }
}

// ---- Concat / split --------------------------------------------------------------------

struct ConcatCase {
  Shape rows;  // leading dims (the channel count is appended per input)
  std::vector<int64_t> channels;
};

// 3 + 5 and 1 + 2 + 3 take the scalar path, 40 + 40 and 8 + 4 + 12 the float4
// path (105 rows x 10 units: the capped launches loop).
std::vector<ConcatCase> concat_cases() {
  std::vector<ConcatCase> cases = {{Shape{3, 5, 7}, {3, 5}},
                                   {Shape{3, 5, 7}, {40, 40}},
                                   {Shape{3, 5, 7}, {1, 2, 3}},
                                   {Shape{1, 3, 3}, {8, 4, 12}}};
  if (!kEmulated) cases.push_back({Shape{8, 32, 32}, {128, 256}});
  return cases;
}

Shape with_channels(const Shape& rows, int64_t c) {
  Shape s = rows;
  s.push_back(c);
  return s;
}

// The inputs' shapes and random values of a concat case, and y's channels.
struct ConcatInputs {
  std::vector<Shape> shapes;
  std::vector<std::vector<double>> values;
  int64_t y_channels = 0;
};

ConcatInputs concat_inputs(const ConcatCase& cc, uint64_t seed) {
  ConcatInputs in;
  for (int64_t c : cc.channels) {
    in.shapes.push_back(with_channels(cc.rows, c));
    in.values.push_back(randoms(size_t(cc.rows.numel() * c), seed + uint64_t(in.y_channels)));
    in.y_channels += c;
  }
  return in;
}

TEST(Elementwise, ConcatChannelsForward) {
  DDPM_REQUIRE_DEVICE();
  for (const ConcatCase& cc : concat_cases()) {
    SCOPED_TRACE(cc.rows.str() + ", " + std::to_string(cc.channels.size()) + " inputs");
    const int64_t rows = cc.rows.numel();
    const ConcatInputs in = concat_inputs(cc, 81);
    const std::vector<double> want = oracle(ConcatParams{}, in.shapes, in.values).forward();
    for_each_layout([&](int offset) {
      Slice y(size_t(rows * in.y_channels), offset);
      int64_t c0 = 0;
      for (size_t i = 0; i < in.values.size(); ++i) {
        Slice x(in.values[i].size(), offset);
        x.upload(to_float(in.values[i]));
        k::concat_channels_forward(x.get(), y.get(), rows, cc.channels[i], in.y_channels, c0,
                                   nullptr);
        c0 += cc.channels[i];
      }
      expect_within(y.download(), want, relative(want, 0), "concat_channels_forward (exact)");
    });
  }
}

TEST(Elementwise, ConcatChannelsBackward) {
  DDPM_REQUIRE_DEVICE();
  for (const ConcatCase& cc : concat_cases()) {
    SCOPED_TRACE(cc.rows.str() + ", " + std::to_string(cc.channels.size()) + " inputs");
    const int64_t rows = cc.rows.numel();
    const ConcatInputs in = concat_inputs(cc, 91);
    const std::vector<double> g = randoms(size_t(rows * in.y_channels), 92);
    const auto grads = oracle(ConcatParams{}, in.shapes, in.values).backward({g});
    for_each_layout([&](int offset) {
      for_each_mode([&](bool accumulate) {
        Slice dy(g.size(), offset);
        dy.upload(to_float(g));
        int64_t c0 = 0;
        for (size_t i = 0; i < in.values.size(); ++i) {
          // The split is a copy (exact); accumulating rounds once.
          std::vector<double> want = grads[i], tol = relative(want, 0);
          const std::vector<double> prefill = randoms(want.size(), 93 + i);
          if (accumulate) accumulate_into(want, tol, prefill);
          Slice dx(want.size(), offset);
          if (accumulate) dx.upload(to_float(prefill));
          k::concat_channels_backward(dy.get(), dx.get(), rows, cc.channels[i], in.y_channels, c0,
                                      accumulate, nullptr);
          expect_within(dx.download(), want, tol,
                        "concat_channels_backward input " + std::to_string(i));
          c0 += cc.channels[i];
        }
      });
    });
  }
}

// ---- Timestep embedding -------------------------------------------------------------------

TEST(Elementwise, TimestepEmbeddingForward) {
  DDPM_REQUIRE_DEVICE();
  // Timesteps over the schedule's range, the ends included, plus fractional ones.
  std::vector<double> t = {0.0, 999.0, 1.0, 500.5};
  Philox rng(101);
  for (int i = 0; i < (kEmulated ? 3 : 60); ++i) t.push_back(std::floor(rng.uniform() * 1000.0));
  const int64_t n = int64_t(t.size());
  for (int64_t dim : {7, 32, 128, 256}) {
    for (bool flip : {false, true}) {
      for (double shift : {0.0, 1.0}) {
        for (double scale : {1.0, 0.7}) {
          SCOPED_TRACE("dim = " + std::to_string(dim) + (flip ? ", cos first" : ", sin first") +
                       ", freq_shift = " + std::to_string(shift) +
                       ", scale = " + std::to_string(scale));
          TimestepEmbeddingParams p;
          p.dim = dim;
          p.flip_sin_to_cos = flip;
          p.freq_shift = shift;
          p.scale = scale;
          const std::vector<double> want = oracle(p, {Shape{n}}, {t}, DType::f32).forward();
          // The kernel does the oracle's float operations in its order. Under
          // the emulator both call the same libm: bitwise equal. On the GPU,
          // expf (2 ulp) and glibc's expf (< 1 ulp) make f differ by <= 3 ulp
          // (<= 6u relative); the two products then round from different
          // inputs (2 x 2u): the argument differs by <= 10u |arg|, up to
          // ~6e-4 at |arg| ~ 1000. sinf/cosf add 2 ulp (CUDA) + 1 ulp (glibc)
          // of a result below 1: <= 3u. So tol = 10u |arg| + 3u (with the
          // argument from the double formula; zero under the emulator).
          const int64_t half = dim / 2;
          std::vector<double> tol(want.size(), 0.0);
          if (!kEmulated)
            for (int64_t b = 0; b < n; ++b)
              for (int64_t i = 0; i < half; ++i) {
                const double f =
                    std::exp(-std::log(p.max_period) * double(i) / (double(half) - shift));
                const double arg = std::abs(scale * t[size_t(b)] * f);
                tol[size_t(b * dim + i)] = tol[size_t(b * dim + half + i)] = 10 * kU * arg + 3 * kU;
              }
          for_each_layout([&](int offset) {
            Slice dt(size_t(n), offset), y(size_t(n * dim), offset);
            dt.upload(to_float(t));
            k::timestep_embedding_forward(dt.get(), y.get(), n, dim, flip, float(shift),
                                          float(p.max_period), float(scale), nullptr);
            expect_within(y.download(), want, tol, "timestep_embedding_forward");
          });
        }
      }
    }
  }
}

// ---- Launcher checks -------------------------------------------------------------------------

TEST(Elementwise, LaunchersRejectBadShapes) {
  DDPM_REQUIRE_DEVICE();
  DeviceArray<float> a(64), b(64), y(64);
  EXPECT_THROW(k::silu_forward(a.get(), y.get(), -1, nullptr), std::invalid_argument);
  EXPECT_THROW(k::silu_backward(a.get(), b.get(), y.get(), -1, false, nullptr),
               std::invalid_argument);
  // per_sample not a multiple of channels; n not a multiple of per_sample.
  EXPECT_THROW(k::add_forward(a.get(), b.get(), y.get(), 60, 7, 30, 1.0f, nullptr),
               std::invalid_argument);
  EXPECT_THROW(k::add_forward(a.get(), b.get(), y.get(), 64, 4, 24, 1.0f, nullptr),
               std::invalid_argument);
  EXPECT_THROW(k::add_backward(a.get(), y.get(), b.get(), 64, 0, 16, 1.0f, false, false, nullptr),
               std::invalid_argument);
  // A workspace smaller than asked for.
  const size_t need = k::add_backward_workspace_bytes(4608, 8, 4608);
  ASSERT_GT(need, 0u);
  DeviceArray<float> big(4608), small(4);
  EXPECT_THROW(k::add_backward(big.get(), nullptr, b.get(), 4608, 8, 4608, 1.0f, false, false,
                               small.get(), need - 4, nullptr),
               std::invalid_argument);
  EXPECT_THROW(k::upsample2x_forward(a.get(), y.get(), 1, -2, 2, 4, nullptr),
               std::invalid_argument);
  EXPECT_THROW(k::upsample2x_backward(a.get(), y.get(), 1, 2, 2, -4, false, nullptr),
               std::invalid_argument);
  EXPECT_THROW(k::concat_channels_forward(a.get(), y.get(), 4, 5, 8, 4, nullptr),
               std::invalid_argument);
  EXPECT_THROW(k::concat_channels_backward(a.get(), y.get(), 4, 3, 8, -1, false, nullptr),
               std::invalid_argument);
  EXPECT_THROW(k::timestep_embedding_forward(a.get(), y.get(), 2, 1, false, 0, 1e4f, 1, nullptr),
               std::invalid_argument);
  // dim / 2 - freq_shift == 0.
  EXPECT_THROW(k::timestep_embedding_forward(a.get(), y.get(), 2, 2, false, 1, 1e4f, 1, nullptr),
               std::invalid_argument);
  try {
    k::concat_channels_forward(a.get(), y.get(), 4, 5, 8, 4, nullptr);
    ADD_FAILURE() << "concat_channels_forward accepted mismatched channels";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("concat_channels_forward"), std::string::npos) << e.what();
  }
}

// n == 0 (or no gradient wanted) launches nothing and writes nothing.
TEST(Elementwise, EmptyLaunchesWriteNothing) {
  DDPM_REQUIRE_DEVICE();
  DeviceArray<float> a(8), b(8), y(8);
  k::silu_forward(a.get(), y.get(), 0, nullptr);
  k::silu_backward(a.get(), b.get(), y.get(), 0, false, nullptr);
  k::add_forward(a.get(), b.get(), y.get(), 0, 4, 0, 1.0f, nullptr);
  k::add_backward(a.get(), y.get(), y.get(), 0, 4, 4, 1.0f, false, false, nullptr);
  k::add_backward(a.get(), nullptr, nullptr, 8, 4, 4, 1.0f, false, false, nullptr);
  k::upsample2x_forward(a.get(), y.get(), 0, 2, 2, 2, nullptr);
  k::upsample2x_backward(a.get(), y.get(), 1, 0, 2, 2, false, nullptr);
  k::concat_channels_forward(a.get(), y.get(), 0, 2, 4, 2, nullptr);
  k::concat_channels_backward(a.get(), y.get(), 2, 0, 4, 2, false, nullptr);
  k::timestep_embedding_forward(a.get(), y.get(), 0, 4, false, 1, 1e4f, 1, nullptr);
  check_cuda(cudaGetLastError(), "empty launches");
  for (float v : y.download()) EXPECT_TRUE(std::isnan(v));
}

}  // namespace
}  // namespace ddpm::testing
