// Tests of conv2d.cuh's public entry points (the dispatcher kernels/conv2d.cu
// and every implementation behind it): names and their parsing, cuDNN's
// availability, validate()'s limits, batch 0, the workspace query, and each
// implementation through conv2d_forward / _backward_data / _backward_filter
// against the CPU backend's conv2d in f64 (conv2d_oracle.h) and, on a GPU,
// against cuDNN. The implementations' own families (test_conv2d_simt.cpp,
// test_conv2d_tensor_core.cpp) cover their tiles and paths in depth; here
// every implementation gets the same cases through the same door.
//
// Each case runs, per implementation: the forward plain, with bias and a
// residual, and with the residual already in y (aliased); backward-data
// overwriting and accumulating into a prefilled dx; backward-filter adding
// into prefilled dw and db, and with db null (db must stay untouched).
// Outputs start as NaN (DeviceArray's poison) or random prefills.
//
// Tolerances (conv2d_oracle.h). An output is a sum of `terms` products plus a
// few fp32 additions, each product rounded at most (terms + 4) times at
// u = 2^-24: |got - exact| <= (terms + 4) u mag, mag the same sum over
// absolute values (the oracle on |inputs|, plus |bias|, |residual|, |prior|).
//   forward          terms = R*S*C + 2         (+ bias, + residual)
//   backward-data    terms = R*S*O + 1         (+ the prior)
//   backward-filter  terms = P + 256 + 1       (P pixels; any split of them
//                                               into partial sums and the sum
//                                               of <= 256 partials; + prior)
// tensor_core rounds x, w and dy to bf16 when it stages them: its oracle runs
// on the rounded operands (round_to_bf16), and its bound is doubled (tensor
// cores have been measured to truncate when they add; see
// test_conv2d_tensor_core.cpp). Its db sums the unrounded dy.
// Against cuDNN (GPU): both results are within their bounds of their exact
// values, so |ours - cudnn| <= bound_ours + bound_cudnn; for tensor_core the
// exact values differ by the bf16 rounding of two factors of each product
// (bf16 keeps 8 significant bits: each rounding is up to 2^-8 relative),
// |a~ b~ - a b| <= (2 2^-8 + 2^-16) |a b|, adding (2^-7 + 2^-16) mag.
// Without cuDNN (a GPU build whose machine lacks it) the cross-check is
// reported as skipped, with the reason; emulated builds never have cuDNN
// (CudnnAvailability asserts it) and compare with the oracle only.
// One wrong term (size ~ mag / terms) exceeds the fp32 bound wherever
// terms^2 u << 1: all emulated cases and the GPU's forward and backward-data.
// The GPU's CIFAR backward-filter sums P = 2048 pixels: there the bound still
// catches any error of a whole tile, a tail or a channel, not one pixel.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/conv2d.cuh"
#include "kernels/conv2d_internal.cuh"
#include "tests/kernels/conv2d_oracle.h"
#include "tests/kernels/kernel_test_util.h"

namespace ddpm::testing {
namespace {

using kernels::Conv2dShape;
using kernels::ConvImpl;

constexpr ConvImpl kImpls[] = {ConvImpl::simt, ConvImpl::tensor_core, ConvImpl::cudnn};
constexpr int64_t kFilterSplitTerms = 256;
constexpr double kTensorCoreFactor = 2;            // see the top
constexpr double kBf16Product = 0x1p-7 + 0x1p-16;  // |a~ b~ - a b| / |a b|

Conv2dShape make_shape(int64_t n, int64_t h, int64_t w, int64_t c, int64_t o, int kh, int kw,
                       int stride, int pad_top, int pad_bottom, int pad_left, int pad_right) {
  Conv2dShape s;
  s.batch = n, s.in_h = h, s.in_w = w, s.in_channels = c, s.out_channels = o;
  s.kernel_h = kh, s.kernel_w = kw, s.stride = stride;
  s.pad_top = pad_top, s.pad_bottom = pad_bottom, s.pad_left = pad_left, s.pad_right = pad_right;
  return s;
}

// A valid shape to break one field of at a time.
Conv2dShape valid_shape() {
  return make_shape(2, 5, 7, 3, 4, 3, 3, 1, 1, 1, 1, 1);
}

// ------------------------------------------------------------------ names, limits

TEST(ConvApi, NamesRoundTrip) {
  for (ConvImpl impl : kImpls)
    EXPECT_EQ(kernels::parse_conv_impl(kernels::conv_impl_name(impl)), impl);
  EXPECT_STREQ(kernels::conv_impl_name(ConvImpl::tensor_core), "tensor_core");
  try {
    kernels::parse_conv_impl("winograd");
    ADD_FAILURE() << "parse_conv_impl accepted 'winograd'";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("'winograd'"), std::string::npos) << what;
    EXPECT_NE(what.find("simt, tensor_core or cudnn"), std::string::npos) << what;
  }
  EXPECT_THROW(kernels::parse_conv_impl(""), std::invalid_argument);
  EXPECT_THROW(kernels::parse_conv_impl("SIMT"), std::invalid_argument);
}

TEST(ConvApi, CudnnAvailability) {
  std::string reason;
  EXPECT_TRUE(kernels::conv_impl_available(ConvImpl::simt, &reason));
  EXPECT_TRUE(kernels::conv_impl_available(ConvImpl::tensor_core, &reason));
  const bool cudnn = kernels::conv_impl_available(ConvImpl::cudnn, &reason);
#if DDPM_KERNEL_TESTS_EMULATED
  EXPECT_FALSE(cudnn);
  EXPECT_NE(reason.find("no cuDNN"), std::string::npos) << reason;
  // Asking for it anyway names the implementation and the reason.
  DeviceArray<float> buf(1024);
  float* p = buf.get();
  const Conv2dShape s = valid_shape();
  auto expect_unavailable = [](const char* op, auto&& call) {
    try {
      call();
      ADD_FAILURE() << op << " ran cudnn in an emulated build";
    } catch (const std::invalid_argument& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("cudnn is not available"), std::string::npos) << op << ": " << what;
      EXPECT_NE(what.find("no cuDNN"), std::string::npos) << op << ": " << what;
    }
  };
  expect_unavailable("forward", [&] {
    kernels::conv2d_forward(p, p, nullptr, nullptr, p, s, ConvImpl::cudnn, nullptr, nullptr);
  });
  expect_unavailable("backward-data", [&] {
    kernels::conv2d_backward_data(p, p, p, s, false, ConvImpl::cudnn, nullptr, nullptr);
  });
  expect_unavailable("backward-filter", [&] {
    kernels::conv2d_backward_filter(p, p, p, p, s, ConvImpl::cudnn, nullptr, nullptr);
  });
  expect_unavailable("workspace", [&] { kernels::conv2d_workspace_bytes(s, ConvImpl::cudnn); });
#else
  if (!cudnn) {
    EXPECT_FALSE(reason.empty()) << "cudnn unavailable without a reason";
    RecordProperty("cudnn_unavailable", reason);
    GTEST_SKIP() << "cuDNN is not available (" << reason
                 << "): the cross-checks against it do not run";
  }
#endif
}

// Every limit of validate(), one field at a time; the message names the field.
TEST(ConvApi, ValidateRejectsEachLimit) {
  EXPECT_NO_THROW(kernels::validate(valid_shape()));
  struct Broken {
    const char* field;
    void (*edit)(Conv2dShape&);
  };
  const Broken broken[] = {
      {"batch", [](Conv2dShape& s) { s.batch = -1; }},
      {"in_h", [](Conv2dShape& s) { s.in_h = 0; }},
      {"in_w", [](Conv2dShape& s) { s.in_w = 0; }},
      {"in_channels", [](Conv2dShape& s) { s.in_channels = 0; }},
      {"out_channels", [](Conv2dShape& s) { s.out_channels = 0; }},
      {"kernel_h", [](Conv2dShape& s) { s.kernel_h = 8; }},
      {"kernel_h", [](Conv2dShape& s) { s.kernel_h = 0; }},
      {"kernel_w", [](Conv2dShape& s) { s.kernel_w = 8; }},
      {"stride", [](Conv2dShape& s) { s.stride = 0; }},
      {"stride", [](Conv2dShape& s) { s.stride = 5; }},
      {"pad_top", [](Conv2dShape& s) { s.pad_top = 3; }},
      {"pad_bottom", [](Conv2dShape& s) { s.pad_bottom = -1; }},
      {"pad_left", [](Conv2dShape& s) { s.pad_left = 3; }},
      {"pad_right", [](Conv2dShape& s) { s.pad_right = 3; }},
      // 1 row, no padding, a 3-row kernel: no output row.
      {"smaller than the 3x3 kernel",
       [](Conv2dShape& s) { s.in_h = 1, s.pad_top = s.pad_bottom = 0; }},
      // x: 2 x 32768 x 32768 x 1 = 2^31 elements.
      {"2^31 elements", [](Conv2dShape& s) { s.in_h = s.in_w = 32768, s.in_channels = 1; }},
      // w: 65536 x 3 x 3 x 4096 > 2^31.
      {"2^31 elements",
       [](Conv2dShape& s) { s.in_h = s.in_w = 3, s.in_channels = 4096, s.out_channels = 65536; }},
  };
  for (const Broken& b : broken) {
    Conv2dShape s = valid_shape();
    b.edit(s);
    try {
      kernels::validate(s);
      ADD_FAILURE() << "validate accepted a bad " << b.field;
    } catch (const std::invalid_argument& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("conv2d"), std::string::npos) << what;
      EXPECT_NE(what.find(b.field), std::string::npos) << what;
    }
    // Every entry point validates first (null pointers are never reached).
    for (ConvImpl impl : kImpls) {
      SCOPED_TRACE(std::string(b.field) + ", " + kernels::conv_impl_name(impl));
      EXPECT_THROW(kernels::conv2d_workspace_bytes(s, impl), std::invalid_argument);
      EXPECT_THROW(kernels::conv2d_forward(nullptr, nullptr, nullptr, nullptr, nullptr, s, impl,
                                           nullptr, nullptr),
                   std::invalid_argument);
      EXPECT_THROW(
          kernels::conv2d_backward_data(nullptr, nullptr, nullptr, s, true, impl, nullptr, nullptr),
          std::invalid_argument);
      EXPECT_THROW(kernels::conv2d_backward_filter(nullptr, nullptr, nullptr, nullptr, s, impl,
                                                   nullptr, nullptr),
                   std::invalid_argument);
    }
  }
  // The limits themselves are allowed: 7x7 kernels with pads of 6, stride 4.
  EXPECT_NO_THROW(kernels::validate(make_shape(1, 1, 1, 1, 1, 7, 7, 4, 6, 0, 0, 6)));
}

// Batch 0: workspace 0, and no entry point touches a pointer (all null here),
// whatever the implementation.
TEST(ConvApi, BatchZeroIsNoOp) {
  Conv2dShape s = valid_shape();
  s.batch = 0;
  for (ConvImpl impl : kImpls) {
    SCOPED_TRACE(kernels::conv_impl_name(impl));
    EXPECT_EQ(kernels::conv2d_workspace_bytes(s, impl), 0u);
    EXPECT_NO_THROW(kernels::conv2d_forward(nullptr, nullptr, nullptr, nullptr, nullptr, s, impl,
                                            nullptr, nullptr));
    EXPECT_NO_THROW(
        kernels::conv2d_backward_data(nullptr, nullptr, nullptr, s, true, impl, nullptr, nullptr));
    EXPECT_NO_THROW(kernels::conv2d_backward_filter(nullptr, nullptr, nullptr, nullptr, s, impl,
                                                    nullptr, nullptr));
  }
}

// The public query is the implementation's own.
TEST(ConvApi, WorkspaceBytes) {
  for (const Conv2dShape& s : {valid_shape(), make_shape(3, 16, 16, 40, 40, 3, 3, 1, 1, 1, 1, 1),
                               make_shape(3, 20, 20, 8, 12, 3, 3, 2, 0, 1, 0, 1)}) {
    EXPECT_EQ(kernels::conv2d_workspace_bytes(s, ConvImpl::simt),
              kernels::detail::conv2d_simt_workspace_bytes(s));
    EXPECT_EQ(kernels::conv2d_workspace_bytes(s, ConvImpl::tensor_core),
              kernels::detail::conv2d_tensor_core_workspace_bytes(s));
#if !DDPM_KERNEL_TESTS_EMULATED  // (conv2d_cudnn.cu is in the nvcc library only)
    if (kernels::conv_impl_available(ConvImpl::cudnn)) {
      EXPECT_EQ(kernels::conv2d_workspace_bytes(s, ConvImpl::cudnn),
                kernels::detail::conv2d_cudnn_workspace_bytes(s));
    }
#endif
  }
}

// ------------------------------------------------------------------ the operations

struct ConvCase {
  std::string name;
  Conv2dShape s;
  size_t x_size() const { return size_t(s.in_pixels() * s.in_channels); }
  size_t w_size() const { return size_t(s.out_channels * s.gemm_k()); }
  size_t y_size() const { return size_t(s.out_pixels() * s.out_channels); }
};

void PrintTo(const ConvCase& c, std::ostream* os) {
  *os << c.name;
}

struct Inputs {
  std::vector<float> x, w, bias, residual, dy, dx0, dw0, db0;
};

Inputs make_inputs(const ConvCase& c, uint64_t seed) {
  Inputs in;
  in.x = random_floats(c.x_size(), seed);
  in.w = random_floats(c.w_size(), seed + 1);
  in.bias = random_floats(size_t(c.s.out_channels), seed + 2);
  in.residual = random_floats(c.y_size(), seed + 3);
  in.dy = random_floats(c.y_size(), seed + 4);
  in.dx0 = random_floats(c.x_size(), seed + 5);
  in.dw0 = random_floats(c.w_size(), seed + 6);
  in.db0 = random_floats(size_t(c.s.out_channels), seed + 7);
  return in;
}

// Every output of one implementation on one case.
struct Outputs {
  std::vector<float> y_plain, y_full, y_aliased;  // conv; + bias + residual; residual in y
  std::vector<float> dx, dx_accumulated;          // from NaN; from dx0
  std::vector<float> dw, db;                      // from dw0, db0
  std::vector<float> dw_without_db, db_untouched;
};

Outputs run(ConvImpl impl, const ConvCase& c, const Inputs& in) {
  const Conv2dShape& s = c.s;
  DeviceArray<char> work(kernels::conv2d_workspace_bytes(s, impl));
  const DeviceArray<float> x(in.x), w(in.w), bias(in.bias), residual(in.residual), dy(in.dy);
  Outputs out;
  {
    DeviceArray<float> y(c.y_size());
    kernels::conv2d_forward(x.get(), w.get(), nullptr, nullptr, y.get(), s, impl, work.get(),
                            nullptr);
    out.y_plain = y.download();
    y.poison();
    work.poison();
    kernels::conv2d_forward(x.get(), w.get(), bias.get(), residual.get(), y.get(), s, impl,
                            work.get(), nullptr);
    out.y_full = y.download();
    y.upload(in.residual);
    kernels::conv2d_forward(x.get(), w.get(), bias.get(), y.get(), y.get(), s, impl, work.get(),
                            nullptr);
    out.y_aliased = y.download();
  }
  {
    DeviceArray<float> dx(c.x_size());
    work.poison();
    kernels::conv2d_backward_data(dy.get(), w.get(), dx.get(), s, false, impl, work.get(), nullptr);
    out.dx = dx.download();
    dx.upload(in.dx0);
    kernels::conv2d_backward_data(dy.get(), w.get(), dx.get(), s, true, impl, work.get(), nullptr);
    out.dx_accumulated = dx.download();
  }
  {
    DeviceArray<float> dw(in.dw0), db(in.db0);
    work.poison();
    kernels::conv2d_backward_filter(x.get(), dy.get(), dw.get(), db.get(), s, impl, work.get(),
                                    nullptr);
    out.dw = dw.download();
    out.db = db.download();
    dw.upload(in.dw0);
    db.upload(in.db0);
    kernels::conv2d_backward_filter(x.get(), dy.get(), dw.get(), nullptr, s, impl, work.get(),
                                    nullptr);
    out.dw_without_db = dw.download();
    out.db_untouched = db.download();
  }
  return out;
}

// An exact value per element, the sum of absolute terms behind it, and the
// number of terms (see the top).
struct Expected {
  std::vector<double> value, mag;
  int64_t terms = 0;

  std::vector<double> bound(double factor) const {
    std::vector<double> b = accumulation_bound(mag, terms);
    for (double& v : b) v *= factor;
    return b;
  }
};

std::vector<double> plus(std::vector<double> a, const std::vector<float>& b, bool absolute) {
  for (size_t i = 0; i < a.size(); ++i) a[i] += absolute ? std::abs(double(b[i])) : double(b[i]);
  return a;
}
// a[p, o] + b[o] for every row p.
std::vector<double> plus_row(std::vector<double> a, const std::vector<float>& b, bool absolute) {
  for (size_t i = 0; i < a.size(); ++i) {
    const double v = b[i % b.size()];
    a[i] += absolute ? std::abs(v) : v;
  }
  return a;
}

struct Truth {
  Expected y_plain, y_full, dx, dx_accumulated, dw, db;
};

// The f64 oracle on the operands an implementation multiplies (bf16-rounded
// for tensor_core), for every output of Outputs.
Truth truth(const ConvCase& c, const Inputs& in, bool bf16) {
  const Conv2dShape& s = c.s;
  auto operand = [&](const std::vector<float>& v) { return bf16 ? round_to_bf16(v) : v; };
  const std::vector<float> x = operand(in.x), w = operand(in.w), dy = operand(in.dy);
  ConvOracle oracle(s);
  Truth t;
  const int64_t forward_terms = s.gemm_k() + 2;
  t.y_plain = {oracle.forward(x, w, {}), oracle.forward(absolute(x), absolute(w), {}),
               forward_terms};
  t.y_full = {plus(plus_row(t.y_plain.value, in.bias, false), in.residual, false),
              plus(plus_row(t.y_plain.mag, in.bias, true), in.residual, true), forward_terms};
  const ConvOracle::Grads g = oracle.backward(x, w, dy);
  const ConvOracle::Grads g_mag = oracle.backward(absolute(x), absolute(w), absolute(dy));
  const int64_t data_terms = int64_t(s.kernel_h) * s.kernel_w * s.out_channels + 1;
  t.dx = {g.dx, g_mag.dx, data_terms};
  t.dx_accumulated = {plus(g.dx, in.dx0, false), plus(g_mag.dx, in.dx0, true), data_terms};
  const int64_t filter_terms = s.out_pixels() + kFilterSplitTerms + 1;
  t.dw = {plus(g.dw, in.dw0, false), plus(g_mag.dw, in.dw0, true), filter_terms};
  // db sums the unrounded dy in every implementation.
  const auto o_count = size_t(s.out_channels);
  t.db = {std::vector<double>(o_count), std::vector<double>(o_count), filter_terms};
  for (size_t i = 0; i < in.dy.size(); ++i) {
    t.db.value[i % o_count] += in.dy[i];
    t.db.mag[i % o_count] += std::abs(in.dy[i]);
  }
  t.db.value = plus(t.db.value, in.db0, false);
  t.db.mag = plus(t.db.mag, in.db0, true);
  return t;
}

// |got - want| <= bound element-wise, every element finite (a NaN left from
// the poison means an output was never written).
void expect_within(const std::vector<float>& got, const std::vector<double>& want,
                   const std::vector<double>& bound, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << what << ": element " << i << " not written";
    const double err = std::abs(double(got[i]) - want[i]);
    ASSERT_LE(err, bound[i]) << what << ": element " << i << " is " << got[i] << ", expected "
                             << want[i];
    if (bound[i] > 0) worst = std::max(worst, err / bound[i]);
  }
  ::testing::Test::RecordProperty(what + " worst error / bound", std::to_string(worst));
}

double factor_of(ConvImpl impl) {
  return impl == ConvImpl::tensor_core ? kTensorCoreFactor : 1.0;
}

// Every output of `got` against the oracle.
void check_against_oracle(ConvImpl impl, const Outputs& got, const Truth& t, const Inputs& in) {
  const double f = factor_of(impl);
  const std::string who = std::string(kernels::conv_impl_name(impl)) + " vs oracle: ";
  expect_within(got.y_plain, t.y_plain.value, t.y_plain.bound(f), who + "forward");
  expect_within(got.y_full, t.y_full.value, t.y_full.bound(f), who + "forward + bias + residual");
  expect_within(got.y_aliased, t.y_full.value, t.y_full.bound(f),
                who + "forward + bias + residual in y");
  expect_within(got.dx, t.dx.value, t.dx.bound(f), who + "backward-data");
  expect_within(got.dx_accumulated, t.dx_accumulated.value, t.dx_accumulated.bound(f),
                who + "backward-data, accumulate");
  expect_within(got.dw, t.dw.value, t.dw.bound(f), who + "backward-filter dw");
  expect_within(got.db, t.db.value, t.db.bound(f), who + "backward-filter db");
  expect_within(got.dw_without_db, t.dw.value, t.dw.bound(f), who + "backward-filter, db null");
  EXPECT_EQ(std::memcmp(got.db_untouched.data(), in.db0.data(), in.db0.size() * sizeof(float)), 0)
      << who << "db was written though null was passed";
}

// One implementation against cuDNN, output by output: bound_impl +
// bound_cudnn (+ the bf16 rounding of the products for tensor_core).
void check_against_cudnn(ConvImpl impl, const Outputs& got, const Outputs& cudnn,
                         const Truth& t_impl, const Truth& t_fp32) {
  const double f = factor_of(impl);
  const bool bf16 = impl == ConvImpl::tensor_core;
  const std::string who = std::string(kernels::conv_impl_name(impl)) + " vs cudnn: ";
  auto compare = [&](const std::vector<float>& a, const std::vector<float>& b,
                     const Expected& e_impl, const Expected& e_fp32, bool rounded,
                     const std::string& what) {
    std::vector<double> bound = e_impl.bound(f), b32 = e_fp32.bound(1);
    for (size_t i = 0; i < bound.size(); ++i)
      bound[i] += b32[i] + (rounded ? kBf16Product * e_fp32.mag[i] : 0);
    const std::vector<double> want(b.begin(), b.end());
    expect_within(a, want, bound, who + what);
  };
  compare(got.y_plain, cudnn.y_plain, t_impl.y_plain, t_fp32.y_plain, bf16, "forward");
  compare(got.y_full, cudnn.y_full, t_impl.y_full, t_fp32.y_full, bf16,
          "forward + bias + residual");
  compare(got.y_aliased, cudnn.y_aliased, t_impl.y_full, t_fp32.y_full, bf16,
          "forward + bias + residual in y");
  compare(got.dx, cudnn.dx, t_impl.dx, t_fp32.dx, bf16, "backward-data");
  compare(got.dx_accumulated, cudnn.dx_accumulated, t_impl.dx_accumulated, t_fp32.dx_accumulated,
          bf16, "backward-data, accumulate");
  compare(got.dw, cudnn.dw, t_impl.dw, t_fp32.dw, bf16, "backward-filter dw");
  compare(got.db, cudnn.db, t_impl.db, t_fp32.db, false, "backward-filter db");
}

class ConvThroughApi : public ::testing::TestWithParam<ConvCase> {};

// Every available implementation against the oracle, then (GPU) against cuDNN.
TEST_P(ConvThroughApi, MatchesOracleAndCudnn) {
  DDPM_REQUIRE_DEVICE();
  const ConvCase& c = GetParam();
  const Inputs in = make_inputs(c, 1000);
  const Truth t_fp32 = truth(c, in, false), t_bf16 = truth(c, in, true);
  std::vector<std::pair<ConvImpl, Outputs>> results;
  for (ConvImpl impl : kImpls) {
    if (!kernels::conv_impl_available(impl)) continue;  // cudnn: skipped below, with the reason
    SCOPED_TRACE(kernels::conv_impl_name(impl));
    results.emplace_back(impl, run(impl, c, in));
    check_against_oracle(impl, results.back().second,
                         impl == ConvImpl::tensor_core ? t_bf16 : t_fp32, in);
    if (HasFatalFailure()) return;
  }
  if (results.back().first != ConvImpl::cudnn) {
#if DDPM_KERNEL_TESTS_EMULATED
    return;  // no cuDNN under the emulator, by design: asserted by CudnnAvailability
#else
    std::string reason;
    kernels::conv_impl_available(ConvImpl::cudnn, &reason);
    GTEST_SKIP() << "the implementations match the oracle, but the cross-check against cuDNN "
                    "did not run: "
                 << reason;
#endif
  }
  const Outputs& cudnn = results.back().second;
  for (const auto& [impl, got] : results) {
    if (impl == ConvImpl::cudnn) continue;
    check_against_cudnn(impl, got, cudnn, impl == ConvImpl::tensor_core ? t_bf16 : t_fp32, t_fp32);
    if (HasFatalFailure()) return;
  }
}

std::string case_label(const ::testing::TestParamInfo<ConvCase>& info) {
  return info.param.name;
}

// Small shapes for the emulator: a 3x3 same-size conv with odd channels and
// map, and the downsample's stride 2 with pads (0, 1, 0, 1) at batch 3.
const std::vector<ConvCase> kSmallCases = {
    {"k3s1p1_n1_5x7_c5_o8", make_shape(1, 5, 7, 5, 8, 3, 3, 1, 1, 1, 1, 1)},
    {"k3s2_pad0101_n3_5x7_c8_o5", make_shape(3, 5, 7, 8, 5, 3, 3, 2, 0, 1, 0, 1)},
};
INSTANTIATE_TEST_SUITE_P(Small, ConvThroughApi, ::testing::ValuesIn(kSmallCases), case_label);

#if !DDPM_KERNEL_TESTS_EMULATED
// Odd shapes: channels 3, 5, 40; maps 5x7; batch 1 and 3; 1x1 outputs;
// asymmetric kernels; pads larger at the top or left (cuDNN's explicit
// padding on both sides), stride 3 and 4.
const std::vector<ConvCase> kOddCases = {
    {"k3s1p1_n3_5x7_c40_o40", make_shape(3, 5, 7, 40, 40, 3, 3, 1, 1, 1, 1, 1)},
    {"k1_n3_5x7_c40_o5", make_shape(3, 5, 7, 40, 5, 1, 1, 1, 0, 0, 0, 0)},
    {"k1s2_n1_5x7_c5_o40", make_shape(1, 5, 7, 5, 40, 1, 1, 2, 0, 0, 0, 0)},
    {"k7s1p3_n1_5x7_c3_o8", make_shape(1, 5, 7, 3, 8, 7, 7, 1, 3, 3, 3, 3)},
    {"k3x5s3_pad2011_n3_5x7_c5_o5", make_shape(3, 5, 7, 5, 5, 3, 5, 3, 2, 0, 1, 1)},
    {"k2_pad1010_n2_6x6_c8_o12", make_shape(2, 6, 6, 8, 12, 2, 2, 1, 1, 0, 1, 0)},
    {"out1x1_k3p0_n3_3x3_c40_o40", make_shape(3, 3, 3, 40, 40, 3, 3, 1, 0, 0, 0, 0)},
    {"out1x1_k7s4_n1_5x7_c5_o3", make_shape(1, 5, 7, 5, 3, 7, 7, 4, 1, 1, 0, 0)},
};
INSTANTIATE_TEST_SUITE_P(Odd, ConvThroughApi, ::testing::ValuesIn(kOddCases), case_label);

// The CIFAR-10 UNet's convolutions at batch 2 (it trains at 128; the oracle
// runs on the CPU): 3x3 s1 p1 at 32x32 (conv_in 3 -> 128, 128 -> 128, and
// 128 -> 256 as in a channel-doubling ResBlock), 16x16 at 256 channels, the
// 1x1 skip projection, the stride-2 downsample with pads (0, 1, 0, 1), and
// conv_out 128 -> 3.
const std::vector<ConvCase> kCifarCases = {
    {"cifar_conv_in_32x32_c3_o128", make_shape(2, 32, 32, 3, 128, 3, 3, 1, 1, 1, 1, 1)},
    {"cifar_k3_32x32_c128_o128", make_shape(2, 32, 32, 128, 128, 3, 3, 1, 1, 1, 1, 1)},
    {"cifar_k3_32x32_c128_o256", make_shape(2, 32, 32, 128, 256, 3, 3, 1, 1, 1, 1, 1)},
    {"cifar_k3_16x16_c256_o256", make_shape(2, 16, 16, 256, 256, 3, 3, 1, 1, 1, 1, 1)},
    {"cifar_skip_k1_16x16_c128_o256", make_shape(2, 16, 16, 128, 256, 1, 1, 1, 0, 0, 0, 0)},
    {"cifar_down_k3s2_32x32_c128", make_shape(2, 32, 32, 128, 128, 3, 3, 2, 0, 1, 0, 1)},
    {"cifar_conv_out_32x32_c128_o3", make_shape(2, 32, 32, 128, 3, 3, 3, 1, 1, 1, 1, 1)},
};
INSTANTIATE_TEST_SUITE_P(Cifar, ConvThroughApi, ::testing::ValuesIn(kCifarCases), case_label);
#endif

}  // namespace
}  // namespace ddpm::testing
