// Shapes, dtypes and the Philox generator.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/random.h"
#include "engine/tensor.h"

namespace ddpm {
namespace {

TEST(Shape, BasicsAndErrors) {
  const Shape s{2, 5, 7, 3};
  EXPECT_EQ(s.rank(), 4);
  EXPECT_EQ(s.numel(), 210);
  EXPECT_EQ(s.rows(), 70);
  EXPECT_EQ(s.str(), "[2, 5, 7, 3]");
  EXPECT_EQ(Shape{}.numel(), 1);
  EXPECT_NE(s, (Shape{2, 5, 7}));
  EXPECT_THROW((Shape{1, 2, 3, 4, 5}), std::invalid_argument);
  EXPECT_THROW((Shape{1, -2}), std::invalid_argument);
}

TEST(Tensor, TypedAccessChecksDtype) {
  float x = 0;
  Tensor t{&x, Shape{1}, DType::f32, Device::cpu};
  EXPECT_EQ(t.ptr<float>(), &x);
  EXPECT_THROW(t.ptr<double>(), std::logic_error);
  EXPECT_EQ(t.bytes(), 4u);
}

// Known-answer vectors of Philox4x32-10 from the Random123 distribution
// (kat_vectors), which cuRAND's Philox_4x32_10 also implements.
TEST(Philox, KnownAnswerVectors) {
  struct Case {
    PhiloxBlock ctr;
    uint32_t k0, k1;
    PhiloxBlock want;
  };
  const Case cases[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
      {{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}},
       0xffffffff,
       0xffffffff,
       {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
      {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}},
       0xa4093822,
       0x299f31d0,
       {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
  };
  for (const Case& c : cases) {
    const PhiloxBlock got = philox4x32_10(c.ctr, c.k0, c.k1);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(got.v[i], c.want.v[i]) << "word " << i;
  }
}

TEST(Philox, StreamsAreReproducibleAndDistributed) {
  Philox a(42, 3), b(42, 3), c(42, 4);
  double sum = 0, sq = 0, usum = 0;
  bool differs = false;
  const int n = 40000;
  for (int i = 0; i < n; ++i) {
    const uint32_t x = a.next_u32();
    EXPECT_EQ(x, b.next_u32());
    differs = differs || x != c.next_u32();
  }
  EXPECT_TRUE(differs);
  for (int i = 0; i < n; ++i) {
    const double u = a.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    usum += u;
    const double z = a.normal();
    sum += z;
    sq += z * z;
  }
  // Means within 5 standard errors: uniform sd 0.289, normal sd 1.
  EXPECT_NEAR(usum / n, 0.5, 5 * 0.289 / std::sqrt(n));
  EXPECT_NEAR(sum / n, 0.0, 5 / std::sqrt(n));
  EXPECT_NEAR(sq / n, 1.0, 5 * std::sqrt(2.0 / n));
}

}  // namespace
}  // namespace ddpm
