// Forward rules of the CPU backend against naive formulas written
// independently here (direct loops, no BLAS, no im2col). Each op runs in f64,
// where only the algorithm can differ from the formula (tolerance 1e-12), and
// in f32, with a tolerance derived from fp32 rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "op_harness.h"

namespace ddpm {
namespace {

using testing::OpRun;

constexpr double kF32Eps = 5.96e-8;  // unit roundoff of fp32, 2^-24

// Runs the op in f64 and f32 on the same random inputs; checks both against
// `reference` (computed in double from the f64 inputs). The f32 bound is
// K * u * scale per element: K terms, each adding at most one rounding, plus
// the rounding of the inputs themselves to f32.
void expect_matches(const OpParams& p, const std::vector<Shape>& shapes,
                    const std::function<std::vector<double>(const OpRun&)>& reference,
                    double f32_terms, uint64_t seed = 3,
                    const std::function<double(Philox&, int)>& gen = {}) {
  OpRun r64(p, shapes, DType::f64);
  r64.randomize(seed, gen);
  const std::vector<double> y64 = r64.forward();
  const std::vector<double> want = reference(r64);
  ASSERT_EQ(y64.size(), want.size());
  double scale = 1;
  for (double v : want) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_NEAR(y64[i], want[i], 1e-12 * scale) << op_name(p) << " f64 element " << i;

  OpRun r32(p, shapes, DType::f32);
  r32.randomize(seed, gen);
  const std::vector<double> y32 = r32.forward();
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_NEAR(y32[i], want[i], 4 * (f32_terms + 1) * kF32Eps * scale)
        << op_name(p) << " f32 element " << i;
}

double at(const OpRun& r, int input, int64_t i) {
  return r.inputs[size_t(input)].get(i);
}

TEST(Conv2dForward, MatchesDirectLoops) {
  for (const auto& [k, stride, pad] :
       std::vector<std::tuple<int, int, Padding2d>>{{3, 1, Padding2d::same(1)},
                                                    {3, 2, {0, 1, 0, 1}},
                                                    {3, 2, Padding2d::same(1)},
                                                    {1, 1, {}},
                                                    {1, 2, {}}}) {
    Conv2dParams p;
    p.out_channels = 5;
    p.kernel_h = p.kernel_w = k;
    p.stride = stride;
    p.pad = pad;
    const int64_t n = 2, h = 5, w = 7, c = 3;
    const std::vector<Shape> shapes{{n, h, w, c}, {5, k, k, c}, {5}};
    auto ref = [&](const OpRun& r) {
      const Shape ys = r.outputs[0].shape;
      std::vector<double> y(size_t(ys.numel()));
      for (int64_t b = 0; b < n; ++b)
        for (int64_t oy = 0; oy < ys[1]; ++oy)
          for (int64_t ox = 0; ox < ys[2]; ++ox)
            for (int64_t o = 0; o < 5; ++o) {
              double s = at(r, 2, o);
              for (int ky = 0; ky < k; ++ky)
                for (int kx = 0; kx < k; ++kx) {
                  const int64_t iy = oy * stride + ky - pad.top, ix = ox * stride + kx - pad.left;
                  if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                  for (int64_t ci = 0; ci < c; ++ci)
                    s += at(r, 0, ((b * h + iy) * w + ix) * c + ci) *
                         at(r, 1, ((o * k + ky) * k + kx) * c + ci);
                }
              y[size_t(((b * ys[1] + oy) * ys[2] + ox) * 5 + o)] = s;
            }
      return y;
    };
    SCOPED_TRACE("kernel " + std::to_string(k) + " stride " + std::to_string(stride));
    expect_matches(p, shapes, ref, k * k * c + 1);
  }
}

TEST(Conv2dForward, OutputShapeFollowsPadding) {
  Conv2dParams p;
  p.out_channels = 4;
  p.stride = 2;
  p.pad = {0, 1, 0, 1};
  // diffusers' Downsample2D on 32x32: pad to 33x33, 3x3 stride 2 -> 16x16.
  const OpSignature s = signature(p, std::vector<Shape>{{1, 32, 32, 3}, {4, 3, 3, 3}, {4}});
  EXPECT_EQ(s.outputs[0], (Shape{1, 16, 16, 4}));
}

TEST(GroupNormForward, MatchesFormula) {
  for (bool silu : {false, true}) {
    const GroupNormParams p{3, 1e-6, true, silu};
    const int64_t n = 2, pix = 35, c = 6, cpg = 2;
    auto ref = [&](const OpRun& r) {
      std::vector<double> y(size_t(n * pix * c));
      for (int64_t b = 0; b < n; ++b)
        for (int64_t g = 0; g < 3; ++g) {
          double mean = 0, var = 0;
          for (int64_t i = 0; i < pix; ++i)
            for (int64_t ch = g * cpg; ch < (g + 1) * cpg; ++ch)
              mean += at(r, 0, (b * pix + i) * c + ch);
          mean /= pix * cpg;
          for (int64_t i = 0; i < pix; ++i)
            for (int64_t ch = g * cpg; ch < (g + 1) * cpg; ++ch)
              var += std::pow(at(r, 0, (b * pix + i) * c + ch) - mean, 2);
          var /= pix * cpg;
          for (int64_t i = 0; i < pix; ++i)
            for (int64_t ch = g * cpg; ch < (g + 1) * cpg; ++ch) {
              const int64_t e = (b * pix + i) * c + ch;
              double z = (at(r, 0, e) - mean) / std::sqrt(var + 1e-6) * at(r, 1, ch) + at(r, 2, ch);
              y[size_t(e)] = silu ? z / (1 + std::exp(-z)) : z;
            }
        }
      return y;
    };
    // Sums of 70 terms for the statistics, then a few flops per element.
    expect_matches(p, {{n, 5, 7, c}, {c}, {c}}, ref, 16);
  }
}

TEST(LinearForward, MatchesFormula) {
  const int64_t rows = 2 * 5 * 7, in = 6, out = 5;
  auto ref = [&](const OpRun& r) {
    std::vector<double> y(size_t(rows * out));
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t o = 0; o < out; ++o) {
        double s = at(r, 2, o);
        for (int64_t k = 0; k < in; ++k) s += at(r, 0, i * in + k) * at(r, 1, o * in + k);
        y[size_t(i * out + o)] = s;
      }
    return y;
  };
  expect_matches(LinearParams{out}, {{2, 5, 7, in}, {out, in}, {out}}, ref, in + 1);
}

TEST(AttentionForward, MatchesNaiveSoftmax) {
  const int64_t n = 2, t = 35, heads = 2, d = 3, c = heads * d;
  const double scale = 1 / std::sqrt(double(d));
  auto ref = [&](const OpRun& r) {
    std::vector<double> y(size_t(n * t * c));
    for (int64_t b = 0; b < n; ++b)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < t; ++i) {
          std::vector<double> s(static_cast<size_t>(t));
          double mx = -1e300, sum = 0;
          for (int64_t j = 0; j < t; ++j) {
            double dot = 0;
            for (int64_t e = 0; e < d; ++e)
              dot += at(r, 0, (b * t + i) * c + h * d + e) * at(r, 1, (b * t + j) * c + h * d + e);
            s[size_t(j)] = dot * scale;
            mx = std::max(mx, s[size_t(j)]);
          }
          for (double& v : s) sum += v = std::exp(v - mx);
          for (int64_t e = 0; e < d; ++e) {
            double o = 0;
            for (int64_t j = 0; j < t; ++j)
              o += s[size_t(j)] / sum * at(r, 2, (b * t + j) * c + h * d + e);
            y[size_t((b * t + i) * c + h * d + e)] = o;
          }
        }
    return y;
  };
  const Shape s{n, 5, 7, c};
  // Scores of d terms, exp, a sum of T terms, and T products per output.
  expect_matches(AttentionParams{heads, d}, {s, s, s}, ref, 2 * t + d);
}

TEST(AttentionForward, LogSumExpIsSaved) {
  const Shape s{1, 3, 3, 4};
  OpRun r(AttentionParams{1, 4}, {s, s, s});
  r.randomize(5);
  r.forward();
  for (int64_t i = 0; i < 9; ++i) {
    double sum = 0;
    for (int64_t j = 0; j < 9; ++j) {
      double dot = 0;
      for (int64_t e = 0; e < 4; ++e) dot += at(r, 0, i * 4 + e) * at(r, 1, j * 4 + e);
      sum += std::exp(dot / 2);
    }
    EXPECT_NEAR(r.outputs[1].get(i), std::log(sum), 1e-12);
  }
}

TEST(SiluForward, MatchesFormula) {
  auto ref = [](const OpRun& r) {
    std::vector<double> y(size_t(r.inputs[0].numel()));
    for (size_t i = 0; i < y.size(); ++i)
      y[i] = at(r, 0, int64_t(i)) / (1 + std::exp(-at(r, 0, int64_t(i))));
    return y;
  };
  expect_matches(SiluParams{}, {{2, 5, 7, 3}}, ref, 4);
}

TEST(AddForward, BroadcastsPerSampleChannel) {
  auto ref = [](const OpRun& r) {
    std::vector<double> y(3 * 35 * 5);
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t i = 0; i < 35; ++i)
        for (int64_t c = 0; c < 5; ++c) {
          const int64_t e = (b * 35 + i) * 5 + c;
          y[size_t(e)] = 0.5 * (at(r, 0, e) + at(r, 1, b * 5 + c));
        }
    return y;
  };
  expect_matches(AddParams{0.5}, {{3, 5, 7, 5}, {3, 5}}, ref, 2);
}

TEST(ConcatForward, StacksChannels) {
  auto ref = [](const OpRun& r) {
    std::vector<double> y(35 * 5);
    for (int64_t i = 0; i < 35; ++i)
      for (int64_t c = 0; c < 5; ++c)
        y[size_t(i * 5 + c)] = c < 2 ? at(r, 0, i * 2 + c) : at(r, 1, i * 3 + c - 2);
    return y;
  };
  expect_matches(ConcatParams{}, {{1, 5, 7, 2}, {1, 5, 7, 3}}, ref, 0);
}

TEST(Upsample2xForward, RepeatsPixels) {
  auto ref = [](const OpRun& r) {
    std::vector<double> y(2 * 10 * 14 * 3);
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t oy = 0; oy < 10; ++oy)
        for (int64_t ox = 0; ox < 14; ++ox)
          for (int64_t c = 0; c < 3; ++c)
            y[size_t(((b * 10 + oy) * 14 + ox) * 3 + c)] =
                at(r, 0, ((b * 5 + oy / 2) * 7 + ox / 2) * 3 + c);
    return y;
  };
  expect_matches(Upsample2xParams{}, {{2, 5, 7, 3}}, ref, 0);
}

TEST(TimestepEmbeddingForward, KnownValuesOfDiffusersFormula) {
  // dim 4, freq_shift 1: half 2, f_i = exp(-ln(1e4) i / (2 - 1)) = {1, 1e-4};
  // emb = [sin(t f0), sin(t f1), cos(t f0), cos(t f1)], flipped = [cos.., sin..].
  for (bool flip : {false, true}) {
    OpRun r(TimestepEmbeddingParams{4, flip, 1.0}, {{2}});
    r.inputs[0].set(0, 0);
    r.inputs[0].set(1, 3);
    const std::vector<double> y = r.forward();
    const std::vector<double> s0{0, 0}, c0{1, 1}, s3{std::sin(3.0), std::sin(3e-4)},
        c3{std::cos(3.0), std::cos(3e-4)};
    auto row = [&](const std::vector<double>& s, const std::vector<double>& c) {
      return flip ? std::vector<double>{c[0], c[1], s[0], s[1]}
                  : std::vector<double>{s[0], s[1], c[0], c[1]};
    };
    const std::vector<double> r0 = row(s0, c0), r3 = row(s3, c3);
    for (int i = 0; i < 4; ++i) {
      EXPECT_NEAR(y[size_t(i)], r0[size_t(i)], 1e-15);
      EXPECT_NEAR(y[size_t(4 + i)], r3[size_t(i)], 1e-12);
    }
  }
}

TEST(TimestepEmbeddingForward, OddDimPadsZeroAndMatchesFormula) {
  const TimestepEmbeddingParams p{7, false, 0.0};
  auto ref = [](const OpRun& r) {
    std::vector<double> y(3 * 7, 0.0);
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t i = 0; i < 3; ++i) {
        const double f = std::exp(-std::log(10000.0) * double(i) / 3.0);
        y[size_t(b * 7 + i)] = std::sin(at(r, 0, b) * f);
        y[size_t(b * 7 + 3 + i)] = std::cos(at(r, 0, b) * f);
      }
    return y;
  };
  // t up to 1000: f carries ~3 roundings in fp32 (multiply, divide, exp), so
  // the argument t*f is off by up to ~3000 u; sin and cos have slope at most 1.
  expect_matches(p, {{3}}, ref, 3000, 3,
                 [](Philox& g, int) { return std::floor(g.uniform() * 1000); });
}

TEST(DropoutForward, InferenceIsIdentityTrainingDropsAFractionP) {
  const int64_t n = 20000;
  OpRun r(DropoutParams{0.25, 0}, {{n}});
  r.randomize(9);
  r.ctx.training = false;
  std::vector<double> y = r.forward();
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[size_t(i)], at(r, 0, i));

  r.ctx.training = true;
  y = r.forward();
  int64_t dropped = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (y[size_t(i)] == 0)
      ++dropped;
    else
      ASSERT_NEAR(y[size_t(i)], at(r, 0, i) / 0.75, 1e-15);
  }
  // Binomial(n, 0.25): standard deviation sqrt(n p (1-p)) ~ 61; allow 5 sigma.
  EXPECT_NEAR(double(dropped), 0.25 * n, 5 * std::sqrt(n * 0.25 * 0.75));

  // The mask is a function of (seed, step, salt): same again, another for a new step.
  EXPECT_EQ(r.forward(), y);
  r.ctx.step += 1;
  EXPECT_NE(r.forward(), y);
  r.ctx.step -= 1;
  r.node.params = DropoutParams{0.25, 1};
  EXPECT_NE(r.forward(), y);
}

TEST(MseLossForward, MeanOfSquares) {
  auto ref = [](const OpRun& r) {
    double s = 0;
    for (int64_t i = 0; i < r.inputs[0].numel(); ++i) s += std::pow(at(r, 0, i) - at(r, 1, i), 2);
    return std::vector<double>{s / double(r.inputs[0].numel())};
  };
  expect_matches(MseLossParams{}, {{2, 5, 7, 3}, {2, 5, 7, 3}}, ref, 4);
}

// ---- the fused forms: each equals the composition of the unfused ops it
// replaces, computed by those ops on the same inputs. Bitwise: the fused CPU
// rules perform the same operations in the same order (the GEMM parts and the
// packed attention read strided views of the same numbers).

// Runs `p` on `values` (one vector per input) in `dtype`; returns output 0.
std::vector<double> run_on(const OpParams& p, const std::vector<Shape>& shapes,
                           const std::vector<std::vector<double>>& values, DType dtype) {
  OpRun r(p, shapes, dtype);
  for (size_t i = 0; i < values.size(); ++i)
    for (size_t e = 0; e < values[i].size(); ++e) r.inputs[i].set(int64_t(e), values[i][e]);
  return r.forward();
}

std::vector<double> normals(int64_t n, uint64_t stream) {
  Philox g(41, stream);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = g.normal();
  return v;
}

// The values as a dtype stores them (f32 rounds), so the composed path
// starts from the numbers the fused op saw.
std::vector<double> stored(std::vector<double> v, DType dtype) {
  if (dtype == DType::f32)
    for (double& x : v) x = double(float(x));
  return v;
}

TEST(FusedForward, ConvWithResidualIsConvThenAdd) {
  for (DType dtype : {DType::f64, DType::f32}) {
    for (bool bias : {true, false}) {
      Conv2dParams p{5, 3, 3, 1, Padding2d::same(1), bias};
      const Shape xs{2, 5, 7, 3}, ws{5, 3, 3, 3}, ys{2, 5, 7, 5};
      const auto x = stored(normals(xs.numel(), 1), dtype),
                 w = stored(normals(ws.numel(), 2), dtype), b = stored(normals(5, 3), dtype),
                 r = stored(normals(ys.numel(), 4), dtype);
      std::vector<Shape> shapes{xs, ws};
      std::vector<std::vector<double>> values{x, w};
      if (bias) shapes.push_back({5}), values.push_back(b);
      const auto conv = stored(run_on(p, shapes, values, dtype), dtype);
      const auto composed = run_on(AddParams{}, {ys, ys}, {r, conv}, dtype);
      p.residual = true;
      shapes.push_back(ys);
      values.push_back(r);
      EXPECT_EQ(run_on(p, shapes, values, dtype), composed) << dtype_name(dtype) << bias;
    }
  }
}

TEST(FusedForward, GroupNormWithChannelAddIsAddThenGroupNorm) {
  for (DType dtype : {DType::f64, DType::f32}) {
    for (bool affine : {true, false}) {
      GroupNormParams p{3, 1e-6, affine, true};
      const Shape xs{2, 5, 7, 6};
      const auto x = stored(normals(xs.numel(), 1), dtype), add = stored(normals(12, 2), dtype),
                 gamma = stored(normals(6, 3), dtype), beta = stored(normals(6, 4), dtype);
      const auto h = stored(run_on(AddParams{}, {xs, {2, 6}}, {x, add}, dtype), dtype);
      std::vector<Shape> shapes{xs};
      std::vector<std::vector<double>> composed_in{h}, fused_in{x};
      if (affine) {
        shapes.insert(shapes.end(), {Shape{6}, Shape{6}});
        composed_in.insert(composed_in.end(), {gamma, beta});
        fused_in.insert(fused_in.end(), {gamma, beta});
      }
      const auto composed = run_on(p, shapes, composed_in, dtype);
      p.channel_add = true;
      shapes.push_back({2, 6});
      fused_in.push_back(add);
      EXPECT_EQ(run_on(p, shapes, fused_in, dtype), composed) << dtype_name(dtype) << affine;
    }
  }
}

// Three weight parts and a residual: the stacked weight's product, plus r.
TEST(FusedForward, LinearInPartsWithResidualIsOneLinearThenAdd) {
  for (DType dtype : {DType::f64, DType::f32}) {
    const Shape xs{2, 5, 7, 4}, ys{2, 5, 7, 9};
    const auto x = stored(normals(xs.numel(), 1), dtype), r = stored(normals(ys.numel(), 2), dtype);
    std::vector<double> w, b;
    std::vector<std::vector<double>> parts_in{x};
    for (int i = 0; i < 3; ++i) {
      const auto wi = stored(normals(12, 10 + uint64_t(i)), dtype);
      w.insert(w.end(), wi.begin(), wi.end());
      parts_in.push_back(wi);
    }
    for (int i = 0; i < 3; ++i) {
      const auto bi = stored(normals(3, 20 + uint64_t(i)), dtype);
      b.insert(b.end(), bi.begin(), bi.end());
      parts_in.push_back(bi);
    }
    const auto lin = stored(run_on(LinearParams{9}, {xs, {9, 4}, {9}}, {x, w, b}, dtype), dtype);
    const auto composed = run_on(AddParams{}, {ys, ys}, {lin, r}, dtype);
    parts_in.push_back(r);
    LinearParams p{9, true, true, 3};
    EXPECT_EQ(run_on(p, {xs, {3, 4}, {3, 4}, {3, 4}, {3}, {3}, {3}, ys}, parts_in, dtype), composed)
        << dtype_name(dtype);
  }
}

TEST(FusedForward, PackedAttentionIsAttentionOnTheThreeColumnBlocks) {
  for (DType dtype : {DType::f64, DType::f32}) {
    const int64_t c = 6;
    const Shape s{2, 5, 7, c}, packed{2, 5, 7, 3 * c};
    const auto qkv = stored(normals(packed.numel(), 1), dtype);
    std::vector<std::vector<double>> split(3);
    for (int64_t row = 0; row < packed.rows(); ++row)
      for (int part = 0; part < 3; ++part)
        for (int64_t e = 0; e < c; ++e)
          split[size_t(part)].push_back(qkv[size_t(row * 3 * c + part * c + e)]);
    const auto composed = run_on(AttentionParams{2, 3}, {s, s, s}, split, dtype);
    EXPECT_EQ(run_on(AttentionParams{2, 3, 0, true}, {packed}, {qkv}, dtype), composed)
        << dtype_name(dtype);
  }
}

TEST(OpSignatures, FusedInputsAreChecked) {
  auto message = [](const OpParams& p, std::vector<Shape> in) -> std::string {
    try {
      op_signature(p, in);
    } catch (const ShapeError& e) {
      return e.what();
    }
    return "no error";
  };
  Conv2dParams conv{4, 3, 3, 1, Padding2d::same(1), true, true};
  EXPECT_NE(message(conv, {{1, 5, 5, 3}, {4, 3, 3, 3}, {4}, {1, 5, 5, 3}}).find("residual"),
            std::string::npos);
  EXPECT_NE(message(conv, {{1, 5, 5, 3}, {4, 3, 3, 3}, {4}}).find("expected 4 inputs"),
            std::string::npos);
  GroupNormParams gn{2, 1e-6, true, false, true};
  EXPECT_NE(message(gn, {{2, 3, 3, 4}, {4}, {4}, {1, 4}}).find("channel_add"), std::string::npos);
  EXPECT_NE(message(LinearParams{9, true, false, 2}, {{3, 4}, {4, 4}, {4, 4}, {4}, {4}})
                .find("not divisible into 2"),
            std::string::npos);
  EXPECT_NE(message(LinearParams{8, true, true, 2}, {{3, 4}, {4, 4}, {4, 4}, {4}, {4}, {3, 4}})
                .find("residual"),
            std::string::npos);
  EXPECT_NE(message(AttentionParams{2, 4, 0, true}, {{1, 4, 8}}).find("3 x heads"),
            std::string::npos);
  EXPECT_EQ(message(AttentionParams{2, 4, 0, true}, {{1, 4, 24}}), "no error");
}

TEST(OpSignatures, RejectBadShapesWithClearMessages) {
  auto message = [](const OpParams& p, std::vector<Shape> in) -> std::string {
    try {
      op_signature(p, in);
    } catch (const ShapeError& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(message(GroupNormParams{4}, {{1, 2, 2, 6}, {6}, {6}}).find("not divisible"),
            std::string::npos);
  Conv2dParams conv;
  conv.out_channels = 4;
  EXPECT_NE(message(conv, {{1, 5, 5, 3}, {4, 3, 3, 2}, {4}}).find("weight has shape"),
            std::string::npos);
  EXPECT_NE(message(AttentionParams{2, 4}, {{1, 4, 6}, {1, 4, 6}, {1, 4, 6}}).find("head_dim"),
            std::string::npos);
  EXPECT_NE(message(AddParams{}, {{2, 3, 3, 4}, {2, 3}}).find("per-channel"), std::string::npos);
  EXPECT_NE(message(ConcatParams{}, {{1, 2, 2, 3}, {1, 2, 3, 3}}).find("outside the channel"),
            std::string::npos);
  EXPECT_NE(message(Conv2dParams{4, 3, 3, 1, {}}, {{1, 2, 2, 3}, {4, 3, 3, 3}, {4}})
                .find("smaller than the kernel"),
            std::string::npos);
  EXPECT_NE(message(DropoutParams{1.0}, {{3}}).find("[0, 1)"), std::string::npos);
}

}  // namespace
}  // namespace ddpm
