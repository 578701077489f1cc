// The CPU backend's f32 fast path (engine/cpu/fast) against its f64
// reference (engine/cpu/*.cpp, itself checked by finite differences in
// test_op_gradients.cpp), on the same inputs, for every instruction set this
// CPU has (AVX-512, AVX2, and "none": the reference code run in f32, what
// other CPUs get); the fast ops must actually run (fast::fast_runs counts
// them) and give the same bits at 1, 2 and 3 threads (results must not
// depend on the thread count). Shapes are chosen to reach the tails: channels that
// are not a multiple of the vector width, rows that split into uneven tiles,
// several column blocks, strided and asymmetric padding, several partials in
// the reductions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "engine/cpu/fast/isa.h"
#include "engine/cpu/fast/ops.h"
#include "engine/cpu/thread_pool.h"
#include "op_harness.h"

namespace ddpm {
namespace {

using testing::OpRun;
namespace fast = cpu::fast;

constexpr double kF32Eps = 5.96e-8;  // unit roundoff of fp32, 2^-24

// One op on fixed shapes. `terms[i]` bounds how many rounded f32 operations
// feed one element of output i (forward outputs first, then one entry per
// input gradient). The tolerance is
//   4 (terms + 1) u max(1, max |reference|),  u = 2^-24.
// Where it comes from: the f32 run sees inputs rounded to f32 (relative u
// each: the "+ 1") and sums `terms` rounded products. Higham's worst-case
// bound for such a sum is terms * u * sum |products|; with the N(0, 1)
// inputs drawn here the rounding errors are independent, so the error
// actually grows like sqrt(terms) u |products| ~ u sqrt(terms) |y|, well
// inside terms u max|y| (the 4 is margin for the products' own rounding and
// for outputs smaller than the largest). The inputs are fixed (seeded), so
// the test is deterministic; a wrong index, a dropped or doubled term or a
// missed tail lane errs by O(|product|) ~ |y| / sqrt(terms), 100x or more
// above the tolerance for every case here.
struct Case {
  std::string name;
  OpParams params;
  std::vector<Shape> shapes;
  std::vector<double> terms;
};

struct Result {
  std::vector<std::vector<double>> values;       // forward outputs, then input gradients
  uint64_t forward_fast = 0, backward_fast = 0;  // fast ops run in each
};

// Random gradients for the differentiable outputs, as check_gradients draws them.
std::vector<std::vector<double>> grad_outputs(const OpRun& run) {
  std::vector<std::vector<double>> r(run.outputs.size());
  for (size_t i = 0; i < r.size(); ++i) {
    Philox rng(99, i);
    r[i].resize(size_t(run.outputs[i].numel()));
    if (!(run.node.signature.nondiff_outputs & bit(int(i))))
      for (double& x : r[i]) x = rng.normal();
  }
  return r;
}

Result run(const Case& c, DType dtype, bool accumulate) {
  OpRun r(c.params, c.shapes, dtype);
  r.randomize(5);
  Result out;
  const uint64_t before = fast::fast_runs();
  for (size_t i = 0; i < r.outputs.size(); ++i) out.values.push_back(r.forward(int(i)));
  const uint64_t after_forward = fast::fast_runs();
  for (auto& g : r.backward(grad_outputs(r), accumulate, accumulate ? 0.25 : 0))
    out.values.push_back(std::move(g));
  out.forward_fast = after_forward - before;
  out.backward_fast = fast::fast_runs() - after_forward;
  return out;
}

bool bitwise_equal(const Result& a, const Result& b) {
  if (a.values.size() != b.values.size()) return false;
  for (size_t i = 0; i < a.values.size(); ++i)
    if (a.values[i].size() != b.values[i].size() ||
        std::memcmp(a.values[i].data(), b.values[i].data(), a.values[i].size() * sizeof(double)))
      return false;
  return true;
}

// The fast kernel tables this CPU and build have (none: the reference code).
std::vector<fast::Isa> isas() {
  std::vector<fast::Isa> v;
  for (fast::Isa i : {fast::Isa::avx2, fast::Isa::avx512}) {
    try {
      fast::set_isa(i);
      v.push_back(i);
    } catch (const std::invalid_argument&) {
    }
  }
  return v;
}

// Restores the thread count and instruction set a test changed.
class FastPathTest : public ::testing::Test {
 protected:
  void TearDown() override {
    cpu::set_cpu_threads(threads_);
    fast::set_isa(isa_);
  }
  int threads_ = cpu::cpu_threads();
  fast::Isa isa_ = fast::active_isa();
};

// f32 results (overwrite and accumulate mode) within the case's tolerance of
// the f64 reference.
void expect_near(const Case& c, const Result& ref, const Result& got, const Result& got_acc) {
  const size_t outputs = ref.values.size() - c.shapes.size();
  for (size_t t = 0; t < ref.values.size(); ++t) {
    double scale = 1;
    for (double v : ref.values[t]) scale = std::max(scale, std::abs(v));
    const double tol = 4 * (c.terms[t] + 1) * kF32Eps * scale;
    const bool is_grad = t >= outputs;
    for (size_t e = 0; e < ref.values[t].size(); ++e) {
      ASSERT_NEAR(got.values[t][e], ref.values[t][e], tol)
          << (is_grad ? "gradient of input " : "output ") << (is_grad ? t - outputs : t)
          << " element " << e;
      // Accumulate mode adds to the 0.25 already there: one more rounding
      // of a value up to 0.25 + |gradient|.
      if (is_grad) {
        ASSERT_NEAR(got_acc.values[t][e] - 0.25, ref.values[t][e],
                    tol + 2 * kF32Eps * (0.25 + scale))
            << "accumulated gradient of input " << t - outputs << " element " << e;
      }
    }
  }
}

void check(const Case& c) {
  SCOPED_TRACE(c.name);
  const Result ref = run(c, DType::f64, false);
  ASSERT_EQ(ref.values.size(), c.terms.size()) << "terms per output and input gradient";
  // The scalar reference code in f32 (what CPUs without AVX2 run) meets the
  // same bound and never enters the fast path.
  fast::set_isa(fast::Isa::none);
  {
    SCOPED_TRACE("isa none");
    const Result plain = run(c, DType::f32, false);
    EXPECT_EQ(plain.forward_fast + plain.backward_fast, 0u);
    expect_near(c, ref, plain, run(c, DType::f32, true));
  }
  const auto available = isas();
  if (available.empty()) GTEST_SKIP() << "no fast kernels on this CPU or build";
  for (fast::Isa isa : available) {
    SCOPED_TRACE(std::string("isa ") + fast::isa_name(isa));
    fast::set_isa(isa);
    cpu::set_cpu_threads(1);
    const Result one = run(c, DType::f32, false);
    const Result one_acc = run(c, DType::f32, true);
    // The fast path ran, forward and backward, rather than falling back.
    EXPECT_GT(one.forward_fast, 0u);
    EXPECT_GT(one.backward_fast, 0u);
    expect_near(c, ref, one, one_acc);
    for (int threads : {2, 3}) {
      cpu::set_cpu_threads(threads);
      EXPECT_TRUE(bitwise_equal(run(c, DType::f32, false), one)) << threads << " threads";
      EXPECT_TRUE(bitwise_equal(run(c, DType::f32, true), one_acc))
          << threads << " threads, accumulate";
    }
  }
}

Conv2dParams conv(int64_t o, int k, int stride, Padding2d pad, bool bias = true,
                  bool residual = false) {
  Conv2dParams p;
  p.out_channels = o;
  p.kernel_h = p.kernel_w = k;
  p.stride = stride;
  p.pad = pad;
  p.bias = bias;
  p.residual = residual;
  return p;
}

// Conv terms: forward taps*C products (+ bias, residual); dx taps*O; dw and
// db one per output pixel; the residual's gradient is a copy.
Case conv_case(const std::string& name, const Conv2dParams& p, int64_t n, int64_t h, int64_t w,
               int64_t c) {
  const int64_t k = p.kernel_h;
  // The output shape from the op's signature without the optional inputs
  // (the signature checks the input count against bias and residual).
  Conv2dParams bare = p;
  bare.bias = bare.residual = false;
  std::vector<Shape> shapes{{n, h, w, c}, {p.out_channels, k, k, c}};
  const Shape out = signature(bare, shapes).outputs[0];
  std::vector<double> terms{double(k * k * c + 2), double(k * k * p.out_channels),
                            double(out[0] * out[1] * out[2])};
  if (p.bias) {
    shapes.push_back({p.out_channels});
    terms.push_back(double(out[0] * out[1] * out[2]));
  }
  if (p.residual) {
    shapes.push_back(out);
    terms.push_back(0);
  }
  return {name, p, shapes, terms};
}

TEST_F(FastPathTest, Conv3x3SamePadRaggedChannels) {
  check(conv_case("c3 o5", conv(5, 3, 1, Padding2d::same(1)), 2, 5, 7, 3));
}

TEST_F(FastPathTest, Conv3x3SeveralBlocksWithResidual) {
  check(conv_case("c20 o37 residual", conv(37, 3, 1, Padding2d::same(1), true, true), 2, 6, 9, 20));
}

TEST_F(FastPathTest, Conv3x3WideRowsFourVectorBlocks) {
  check(conv_case("c64 o128 w40", conv(128, 3, 1, Padding2d::same(1)), 1, 3, 40, 64));
}

TEST_F(FastPathTest, Conv3x3Stride2AsymmetricPad) {
  check(conv_case("downsample", conv(24, 3, 2, {0, 1, 0, 1}), 2, 8, 8, 16));
}

TEST_F(FastPathTest, Conv3x3Stride2SymmetricPadNoBias) {
  check(conv_case("s2 same", conv(16, 3, 2, Padding2d::same(1), false), 2, 7, 9, 8));
}

TEST_F(FastPathTest, Conv1x1Pointwise) {
  check(conv_case("1x1", conv(70, 1, 1, {}), 2, 4, 5, 40));
}

TEST_F(FastPathTest, Conv1x1Stride2) {
  check(conv_case("1x1 s2", conv(12, 1, 2, {}, true, true), 1, 6, 7, 9));
}

TEST_F(FastPathTest, ConvOneInputAndOneOutputChannel) {
  check(conv_case("conv_in", conv(32, 3, 1, Padding2d::same(1)), 2, 6, 6, 1));
  check(conv_case("conv_out", conv(1, 3, 1, Padding2d::same(1)), 2, 6, 6, 32));
}

TEST_F(FastPathTest, ConvWeightGradientOverSeveralChunks) {
  // 2 x 24 x 24 = 1152 output pixels: more than one partial of the weight
  // gradient (1024 pixels each).
  check(conv_case("chunks", conv(8, 3, 1, Padding2d::same(1)), 2, 24, 24, 8));
}

LinearParams linear(int64_t out, bool bias, bool residual, int64_t parts) {
  LinearParams p;
  p.out_features = out;
  p.bias = bias;
  p.residual = residual;
  p.weight_parts = parts;
  return p;
}

// Linear terms: forward `in` products (+ bias, residual); dx `out`; dw and db
// one per row; the residual's gradient a copy.
Case linear_case(const std::string& name, const LinearParams& p, Shape x) {
  const int64_t rows = x.rows(), in = x.back(), part_out = p.out_features / p.weight_parts;
  std::vector<Shape> shapes{x};
  std::vector<double> terms{double(in + 2), double(p.out_features)};
  for (int64_t i = 0; i < p.weight_parts; ++i) {
    shapes.push_back({part_out, in});
    terms.push_back(double(rows));
  }
  if (p.bias)
    for (int64_t i = 0; i < p.weight_parts; ++i) {
      shapes.push_back({part_out});
      terms.push_back(double(rows));
    }
  if (p.residual) {
    Shape y = x;
    y[y.rank() - 1] = p.out_features;
    shapes.push_back(y);
    terms.push_back(0);
  }
  return {name, p, shapes, terms};
}

TEST_F(FastPathTest, LinearRaggedWidths) {
  check(linear_case("37x20 -> 45", linear(45, true, false, 1), {37, 20}));
}

TEST_F(FastPathTest, LinearInPartsWithResidualOverAMap) {
  check(linear_case("qkv parts", linear(48, false, true, 3), {2, 5, 7, 33}));
}

TEST_F(FastPathTest, LinearWeightGradientOverSeveralChunks) {
  // 600 rows: two partials of the weight gradient (512 rows each).
  check(linear_case("600 rows", linear(8, true, false, 1), {600, 8}));
}

AttentionParams attention(int64_t heads, int64_t d, bool packed) {
  AttentionParams p;
  p.heads = heads;
  p.head_dim = d;
  p.packed_qkv = packed;
  return p;
}

// Attention terms: the scores sum d products, the softmax T exponentials
// (2 ulp each) and their log, the output T products: T + d + 16 for the
// outputs; the gradients chain two more such products: 2 (T + d) + 32.
Case attention_case(const std::string& name, const AttentionParams& p, int64_t n, int64_t h,
                    int64_t w) {
  const int64_t c = p.heads * p.head_dim, t = h * w;
  const double fwd = double(t + p.head_dim + 16), bwd = double(2 * (t + p.head_dim) + 32);
  if (p.packed_qkv) return {name, p, {{n, h, w, 3 * c}}, {fwd, fwd, bwd}};
  return {name, p, {{n, h, w, c}, {n, h, w, c}, {n, h, w, c}}, {fwd, fwd, bwd, bwd, bwd}};
}

TEST_F(FastPathTest, AttentionOneHead) {
  check(attention_case("1 head d16", attention(1, 16, false), 2, 5, 7));
}

TEST_F(FastPathTest, AttentionPackedTwoRaggedHeads) {
  check(attention_case("2 heads d12 packed", attention(2, 12, true), 2, 6, 5));
}

TEST_F(FastPathTest, AttentionDemoShape) {
  check(attention_case("14x14 d64 packed", attention(1, 64, true), 1, 14, 14));
}

// GroupNorm terms: the statistics sum pixels x channels-per-group values in
// f32 blocks of 64 pixels before double (64 roundings), then a handful per
// element (h, xhat, affine, SiLU's exp within 2 ulp and division): 64 + 16
// for the outputs; the backward's group sums and two passes: 2 x 64 + 32;
// dgamma, dbeta and the channel add's gradient sum 64-pixel f32 blocks: 64 + 16.
Case group_norm_case(const std::string& name, const GroupNormParams& p, Shape x) {
  const int64_t n = x[0], c = x.back();
  std::vector<Shape> shapes{x};
  std::vector<double> terms{80, 80, 80, 160};
  if (p.affine) {
    shapes.insert(shapes.end(), {{c}, {c}});
    terms.insert(terms.end(), {80, 80});
  }
  if (p.channel_add) {
    shapes.push_back({n, c});
    terms.push_back(80);
  }
  return {name, p, shapes, terms};
}

TEST_F(FastPathTest, GroupNormAffineSilu) {
  check(group_norm_case("g3 c6", {3, 1e-6, true, true}, {2, 5, 7, 6}));
}

TEST_F(FastPathTest, GroupNormChannelAddRaggedChannelsSeveralChunks) {
  // 17 x 17 = 289 pixels: two chunks of the statistics (256 pixels each);
  // 40 channels: a ragged vector.
  check(group_norm_case("add c40", {8, 1e-6, true, true, true}, {2, 17, 17, 40}));
}

TEST_F(FastPathTest, GroupNormPlainTokens) {
  check(group_norm_case("tokens", {4, 1e-5, false, false}, {3, 10, 32}));
}

}  // namespace
}  // namespace ddpm
