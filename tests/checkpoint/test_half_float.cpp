// f16/bf16 <-> f32 conversions: widening checked against the definition of
// each format on all 65536 bit patterns, narrowing checked to invert widening
// on all of them, to round to nearest even on a million sampled floats, and
// on hand-picked ties and edges whose results PyTorch gives.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/checkpoint/half_float.h"
#include "engine/checkpoint/safetensors.h"
#include "tests/checkpoint/checkpoint_test_util.h"

namespace ddpm {
namespace {

// What a bit pattern means, straight from the format's definition. Patterns
// with an all-ones exponent and zero mantissa give 2^(emax+1), the value
// "infinity" stands for when rounding; NaN patterns give NaN.
double f16_value(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  double v;
  if (exp == 0x1F && mant != 0) return std::numeric_limits<double>::quiet_NaN();
  if (exp == 0) {
    v = std::ldexp(mant, -24);
  } else {
    v = std::ldexp(1024 + mant, exp - 25);
  }
  return sign ? -v : v;
}

double bf16_value(uint16_t b) {
  const int sign = b >> 15, exp = (b >> 7) & 0xFF, mant = b & 0x7F;
  double v;
  if (exp == 0xFF && mant != 0) return std::numeric_limits<double>::quiet_NaN();
  if (exp == 0) {
    v = std::ldexp(mant, -133);
  } else {
    v = std::ldexp(128 + mant, exp - 134);
  }
  return sign ? -v : v;
}

bool is_inf_pattern(uint16_t bits, uint16_t inf) {
  return (bits & 0x7FFF) == inf;
}

TEST(SafetensorsConvert, F16WideningIsExactForAllPatterns) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = static_cast<uint16_t>(i);
    const float f = f16_bits_to_f32(h);
    const double expected = f16_value(h);
    if (std::isnan(expected)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << i;
      ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << std::hex << i;
    } else if (is_inf_pattern(h, 0x7C00)) {
      ASSERT_TRUE(std::isinf(f) && std::signbit(f) == ((h & 0x8000) != 0)) << std::hex << i;
    } else {
      ASSERT_EQ(static_cast<double>(f), expected) << std::hex << i;
      ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << std::hex << i;  // -0 stays -0
    }
  }
}

TEST(SafetensorsConvert, Bf16WideningIsExactForAllPatterns) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t b = static_cast<uint16_t>(i);
    const float f = bf16_bits_to_f32(b);
    const double expected = bf16_value(b);
    if (std::isnan(expected)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << i;
    } else if (is_inf_pattern(b, 0x7F80)) {
      ASSERT_TRUE(std::isinf(f) && std::signbit(f) == ((b & 0x8000) != 0)) << std::hex << i;
    } else {
      ASSERT_EQ(static_cast<double>(f), expected) << std::hex << i;
      ASSERT_EQ(std::signbit(f), (b & 0x8000) != 0) << std::hex << i;
    }
  }
}

TEST(SafetensorsConvert, NarrowingInvertsWideningForAllPatterns) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = static_cast<uint16_t>(i);
    const uint16_t h2 = f32_to_f16_bits(f16_bits_to_f32(h));
    const uint16_t b2 = f32_to_bf16_bits(bf16_bits_to_f32(h));
    if (std::isnan(f16_value(h))) {
      // NaN stays NaN with its sign; the payload may gain the quiet bit.
      ASSERT_TRUE(std::isnan(f16_value(h2)) && (h2 & 0x8000) == (h & 0x8000)) << std::hex << i;
    } else {
      ASSERT_EQ(h2, h) << std::hex << i;
    }
    if (std::isnan(bf16_value(h))) {
      ASSERT_TRUE(std::isnan(bf16_value(b2)) && (b2 & 0x8000) == (h & 0x8000)) << std::hex << i;
    } else {
      ASSERT_EQ(b2, h) << std::hex << i;
    }
  }
}

// For a finite float x and the result r of narrowing it: no neighbour of r is
// nearer to x, and on a tie r is even. Infinity counts as 2^(emax+1) here,
// which is how IEEE rounding treats overflow.
template <typename Narrow, typename Value>
void expect_round_to_nearest_even(float x, Narrow narrow, Value value) {
  const uint16_t r = narrow(x);
  const double xd = x;
  const double vr = value(r);
  ASSERT_FALSE(std::isnan(vr)) << x;
  const double err = std::abs(xd - vr);
  const uint16_t mag = r & 0x7FFF;
  for (int step : {-1, 1}) {
    if (mag == 0 && step < 0) continue;
    const uint16_t nb = static_cast<uint16_t>((r & 0x8000) | (mag + step));
    const double vn = value(nb);
    if (std::isnan(vn)) continue;  // past infinity
    const double err_n = std::abs(xd - vn);
    ASSERT_LE(err, err_n) << "x=" << x << " r=" << std::hex << r << " neighbour " << nb;
    if (err == err_n) {
      ASSERT_EQ(r & 1, 0) << "tie not to even: x=" << x;
    }
  }
  // The sign is kept, also on underflow: -tiny gives -0, as PyTorch does.
  ASSERT_EQ((r & 0x8000) != 0, std::signbit(x)) << x;
}

TEST(SafetensorsConvert, NarrowingRoundsToNearestEvenOnSampledFloats) {
  // Every 4099th bit pattern (4099 is prime, so the low mantissa bits vary):
  // about a million floats over every exponent, sign and mantissa pattern.
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 4099) {
    const float x = std::bit_cast<float>(static_cast<uint32_t>(bits));
    if (!std::isfinite(x)) continue;
    expect_round_to_nearest_even(x, f32_to_f16_bits, f16_value);
    expect_round_to_nearest_even(x, f32_to_bf16_bits, bf16_value);
    if (testing::Test::HasFatalFailure()) return;
  }
}

TEST(SafetensorsConvert, F16TiesAndEdges) {
  struct Case {
    float x;
    uint16_t bits;
  };
  const Case cases[] = {
      {1.0f, 0x3C00},
      {2049.0f, 0x6800},  // tie between 2048 (even) and 2050: 2048
      {2051.0f, 0x6802},  // tie between 2050 and 2052 (even): 2052
      {2049.5f, 0x6801},  // above the tie
      {0.1f, 0x2E66},
      {65504.0f, 0x7BFF},  // largest finite
      {65519.0f, 0x7BFF},  // below the midpoint to 2^16
      {65520.0f, 0x7C00},  // the midpoint: ties to even, which is inf
      {-65520.0f, 0xFC00},
      {1e10f, 0x7C00},
      {std::ldexp(1.0f, -24), 0x0001},  // smallest subnormal
      {std::ldexp(1.0f, -25), 0x0000},  // half of it: tie to even, zero
      {std::ldexp(1.5f, -25), 0x0001},
      {std::ldexp(2.5f, -24), 0x0002},     // tie between 2 and 3 ulps: 2
      {std::ldexp(3.5f, -24), 0x0004},     // tie between 3 and 4 ulps: 4
      {std::ldexp(1023.5f, -24), 0x0400},  // largest subnormal + half: rounds up into the normals
      {-std::ldexp(1.0f, -30), 0x8000},    // underflow keeps the sign
      {1e-40f, 0x0000},                    // f32 subnormal
      {-0.0f, 0x8000},
      {std::numeric_limits<float>::infinity(), 0x7C00},
  };
  for (const Case& c : cases) EXPECT_EQ(f32_to_f16_bits(c.x), c.bits) << c.x;
  const uint16_t nan = f32_to_f16_bits(std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE((nan & 0x7C00) == 0x7C00 && (nan & 0x3FF) != 0);
  // A signalling NaN whose payload sits only in bits f16 drops stays a NaN.
  const uint16_t snan = f32_to_f16_bits(std::bit_cast<float>(0xFF800001u));
  EXPECT_TRUE((snan & 0x7C00) == 0x7C00 && (snan & 0x3FF) != 0 && (snan & 0x8000));
}

TEST(SafetensorsConvert, Bf16TiesAndEdges) {
  struct Case {
    float x;
    uint16_t bits;
  };
  const Case cases[] = {
      {1.0f, 0x3F80},
      {1.0f + std::ldexp(1.0f, -8), 0x3F80},  // tie: 1.0 is even
      {1.0f + std::ldexp(3.0f, -8), 0x3F82},  // tie: 1 + 2^-6 is even
      {1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20), 0x3F81},
      {-3.0f, 0xC040},
      {0.1f, 0x3DCD},
      {std::numeric_limits<float>::max(), 0x7F80},  // rounds past the largest bf16
      {std::bit_cast<float>(0x7F7F7FFFu), 0x7F7F},  // just below the midpoint
      {std::bit_cast<float>(0x7F7F8000u), 0x7F80},  // the midpoint, odd below: inf
      {std::bit_cast<float>(0x00000001u), 0x0000},  // f32 subnormal below bf16's half ulp
      {std::bit_cast<float>(0x00008000u), 0x0000},  // tie at bf16's smallest subnormal: even 0
      {std::bit_cast<float>(0x00018000u), 0x0002},  // tie between 1 and 2 ulps: 2
      {-0.0f, 0x8000},
      {-std::numeric_limits<float>::infinity(), 0xFF80},
  };
  for (const Case& c : cases) EXPECT_EQ(f32_to_bf16_bits(c.x), c.bits) << c.x;
  const uint16_t snan = f32_to_bf16_bits(std::bit_cast<float>(0x7F800001u));
  EXPECT_TRUE((snan & 0x7F80) == 0x7F80 && (snan & 0x7F) != 0);
}

TEST(SafetensorsConvert, TensorConversions) {
  const std::vector<float> v = {1.0f, -0.5f, 65504.0f, 1e-8f, 3.0e38f};
  const StTensor h = from_f32(v, {5}, DType::f16);
  EXPECT_EQ(h.dtype, DType::f16);
  EXPECT_EQ(h.data.size(), 10u);
  const std::vector<float> back = to_f32(h);
  EXPECT_EQ(back[0], 1.0f);
  EXPECT_EQ(back[1], -0.5f);
  EXPECT_EQ(back[2], 65504.0f);
  EXPECT_EQ(back[3], 0.0f);  // below half of f16's smallest subnormal
  EXPECT_TRUE(std::isinf(back[4]));
  EXPECT_EQ(to_f32(from_f32(v, {5}, DType::f32)), v);
  EXPECT_EQ(to_f32(from_f32(v, {5}, DType::f64)), v);
  EXPECT_EQ(to_f64(from_f32(v, {5}, DType::f64))[3], static_cast<double>(1e-8f));

  const std::vector<double> d = {0.1, 1e300, -2.0};
  const StTensor d64 = from_f64(d, {3}, DType::f64);
  EXPECT_EQ(to_f64(d64), d);
  const std::vector<float> d32 = to_f32(d64);  // rounds to nearest, overflows to inf
  EXPECT_EQ(d32[0], 0.1f);
  EXPECT_TRUE(std::isinf(d32[1]));
  EXPECT_EQ(to_f32(from_f64(d, {3}, DType::bf16))[2], -2.0f);
  EXPECT_EQ(from_f32({}, {0, 4}, DType::bf16).data.size(), 0u);
  EXPECT_EQ(from_f32(std::vector<float>{2.0f}, {}, DType::f32).numel(), 1);
}

TEST(SafetensorsConvert, CountMismatchIsAnError) {
  const std::vector<float> v(5, 1.0f);
  EXPECT_EQ(test::error_of([&] {
              from_f32(v, {2, 3}, DType::f16);
            }),
            "from_f32: 5 values do not fill shape [2, 3]");
  EXPECT_EQ(test::error_of([&] { from_f32(v, {-5}, DType::f16); }),
            "from_f32: 5 values do not fill shape [-5]");
  StTensor t{DType::f32, {2}, std::vector<uint8_t>(7)};
  EXPECT_EQ(test::error_of([&] { to_f32(t); }),
            "to_f32: tensor of dtype F32 and shape [2] holds 7 bytes but needs 8");
}

}  // namespace
}  // namespace ddpm
