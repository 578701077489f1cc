// Interoperability with the Python `safetensors` library: data/
// reference_small.safetensors was written by it (tools/make_safetensors_reference.py).
// Our reader must read it, and our writer must produce it byte for byte from
// the same tensors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "engine/checkpoint/safetensors.h"
#include "tests/checkpoint/checkpoint_test_util.h"
#include "tests/golden_data.h"

namespace ddpm {
namespace {

const std::filesystem::path kReference =
    testing::source_dir() / "tests" / "checkpoint" / "data" / "reference_small.safetensors";

template <typename Bits>
StTensor from_bits(DType dtype, std::vector<int64_t> shape, std::vector<Bits> bits) {
  StTensor t{dtype, std::move(shape), std::vector<uint8_t>(bits.size() * sizeof(Bits))};
  for (size_t i = 0; i < bits.size(); ++i) {
    for (size_t b = 0; b < sizeof(Bits); ++b) {
      t.data[i * sizeof(Bits) + b] = static_cast<uint8_t>(bits[i] >> (8 * b));  // little-endian
    }
  }
  return t;
}

// The same tensors as tools/make_safetensors_reference.py, as bit patterns.
StFile reference_content() {
  StFile f;
  f.tensors["conv_in.weight"] = from_bits<uint32_t>(
      DType::f32, {2, 3}, {0x3F800000, 0x80000000, 0x40490FDB, 0xFF800000, 0x00000001, 0x7FC00001});
  f.tensors["time_embedding.linear_1.bias"] =
      from_bits<uint16_t>(DType::f16, {4}, {0x3C00, 0x0001, 0x7BFF, 0xFC00});
  f.tensors["mid_block.attentions.0.to_q.weight"] =
      from_bits<uint16_t>(DType::bf16, {2, 2}, {0x3F80, 0xC040, 0x0001, 0x7F7F});
  f.tensors["betas"] = from_bits<uint64_t>(
      DType::f64, {3}, {0x3FB999999999999Aull, 0xFE4E7E2C7B3D7A2Full, 0x0000000000000001ull});
  f.tensors["step"] = from_bits<uint64_t>(DType::f64, {}, {0x4004000000000000ull});
  f.tensors["empty"] = from_bits<uint32_t>(DType::f32, {0, 3}, {});
  f.tensors["odd \"name\"\t\xc3\xbc\x01"] = from_bits<uint16_t>(DType::f16, {1}, {0x8000});
  f.metadata = {{"format", "pt"}, {"note", "written by tools/make_safetensors_reference.py"}};
  return f;
}

TEST(SafetensorsReference, OurReaderReadsTheirFile) {
  const StFile got = read_safetensors(kReference);
  const StFile want = reference_content();
  EXPECT_EQ(got.metadata, want.metadata);
  ASSERT_EQ(got.tensors.size(), want.tensors.size());
  for (const auto& [name, t] : want.tensors) {
    ASSERT_TRUE(got.tensors.count(name)) << name;
    const StTensor& g = got.tensors.at(name);
    EXPECT_EQ(g.dtype, t.dtype) << name;
    EXPECT_EQ(g.shape, t.shape) << name;
    EXPECT_EQ(g.data, t.data) << name;
  }
  // And the values mean what the script meant.
  const std::vector<float> bias = to_f32(got.tensors.at("time_embedding.linear_1.bias"));
  EXPECT_EQ(bias[0], 1.0f);
  EXPECT_EQ(bias[1], std::ldexp(1.0f, -24));
  EXPECT_EQ(bias[2], 65504.0f);
  EXPECT_EQ(bias[3], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(to_f64(got.tensors.at("step")), std::vector<double>{2.5});
  EXPECT_EQ(to_f32(got.tensors.at("mid_block.attentions.0.to_q.weight"))[1], -3.0f);
}

TEST(SafetensorsReference, OurWriterProducesTheirBytes) {
  const std::vector<uint8_t> theirs = test::read_bytes(kReference);
  ASSERT_FALSE(theirs.empty()) << kReference;
  EXPECT_EQ(serialize_safetensors(reference_content(), "mem"), theirs);
  EXPECT_EQ(serialize_safetensors(parse_safetensors(theirs, kReference.string()), "mem"), theirs);

  test::ScratchDir dir;
  write_safetensors(dir / "ours.safetensors", reference_content());
  EXPECT_EQ(test::read_bytes(dir / "ours.safetensors"), theirs);
}

}  // namespace
}  // namespace ddpm
