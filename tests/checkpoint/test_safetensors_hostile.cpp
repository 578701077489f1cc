// Hostile and randomly corrupted safetensors input: the reader must end in a
// CheckpointError (or a valid file), never a crash, another exception type, an
// out-of-bounds read (run under ASan to see those) or a huge allocation.
#include <gtest/gtest.h>

#include <random>

#include "engine/checkpoint/safetensors.h"
#include "tests/checkpoint/checkpoint_test_util.h"

namespace ddpm {
namespace {

using test::contains;
using test::error_of;
using test::file_bytes;

std::string parse_error(const std::string& header, size_t data_bytes = 0) {
  return error_of([&] { parse_safetensors(file_bytes(header, data_bytes), "t.safetensors"); });
}

std::string nested(size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

TEST(SafetensorsHostile, NumberTooLargeForADouble) {
  // nlohmann reports this one as out_of_range, not parse_error.
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "shape": [1e999], "data_offsets": [0, 4]}})", 4),
            "t.safetensors: header is not valid JSON: number overflow parsing '1e999'");
}

TEST(SafetensorsHostile, DeepNestingIsRefused) {
  // Past 128 levels (serde_json's limit, so Python refuses these too),
  // wherever it is, before anything recurses over it.
  const std::string too_deep =
      "t.safetensors: header is not valid JSON: nested more than 128 levels deep";
  const std::string deep = nested(1'000'000);
  EXPECT_EQ(parse_error(deep), too_deep);
  EXPECT_EQ(parse_error(
                R"({"a": {"dtype": "F32", "shape": )" + deep + R"(, "data_offsets": [0, 4]}})", 4),
            too_deep);
  EXPECT_EQ(parse_error(R"({"__metadata__": {"k": )" + nested(127) + "}}"), too_deep);
  // 128 levels are fine; the value in the message is shortened.
  const std::string e = parse_error(R"({"__metadata__": {"k": )" + nested(126) + "}}");
  EXPECT_EQ(e, "t.safetensors: \"__metadata__\" key 'k' must map to a string, got array " +
                   std::string(80, '[') + "...");
}

TEST(SafetensorsHostile, ManyTensorsAreFine) {
  // 20000 empty tensors at one offset and one real one: a big header, no data.
  // (Parsing must stay linear in the number of tensors.)
  std::string h = "{";
  for (int i = 0; i < 20000; ++i) {
    h +=
        "\"t" + std::to_string(i) + R"(": {"dtype": "F16", "shape": [0], "data_offsets": [0, 0]},)";
  }
  h += R"("w": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}})";
  EXPECT_EQ(parse_safetensors(file_bytes(h, 4), "t.safetensors").tensors.size(), 20001u);
}

// Random corruptions of a valid file: byte flips in the header and length
// field, truncations, and random header lengths. Every outcome must be a
// parsed file or a CheckpointError.
TEST(SafetensorsHostile, RandomCorruptionOnlyThrowsCheckpointError) {
  StFile f;
  f.tensors["conv.weight"] = from_f32(std::vector<float>(24, 0.5f), {2, 3, 2, 2}, DType::f32);
  f.tensors["conv.bias"] = from_f32(std::vector<float>(2, 1.0f), {2}, DType::bf16);
  f.tensors["s"] = from_f32(std::vector<float>(1, 2.0f), {}, DType::f16);
  f.metadata["format"] = "pt";
  const std::vector<uint8_t> good = serialize_safetensors(f, "mem");
  const size_t header_end = 8 + good[0] + (size_t{good[1]} << 8);

  std::mt19937_64 rng(12345);
  int parsed = 0, refused = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    std::vector<uint8_t> bytes = good;
    switch (trial % 4) {
      case 0:
      case 1: {  // flip 1-3 bytes of the length field or header to random or JSON-ish bytes
        static const char kJsonish[] = "{}[]\",:0123456789-.eE \\ntfu";
        const int flips = 1 + static_cast<int>(rng() % 3);
        for (int k = 0; k < flips; ++k) {
          const size_t at = rng() % header_end;
          bytes[at] = rng() % 2 ? static_cast<uint8_t>(rng())
                                : static_cast<uint8_t>(kJsonish[rng() % (sizeof(kJsonish) - 1)]);
        }
        break;
      }
      case 2:  // truncate
        bytes.resize(rng() % bytes.size());
        break;
      case 3: {  // random header length, small or huge
        const uint64_t n = rng() % 2 ? rng() % (bytes.size() + 16) : rng();
        for (int i = 0; i < 8; ++i)
          bytes[static_cast<size_t>(i)] = static_cast<uint8_t>(n >> (8 * i));
        break;
      }
    }
    try {
      parse_safetensors(bytes, "fuzz");
      ++parsed;
    } catch (const CheckpointError&) {
      ++refused;
    } catch (const std::exception& e) {
      FAIL() << "trial " << trial << " threw a non-CheckpointError: " << e.what();
    }
  }
  EXPECT_GT(refused, 10000);
  EXPECT_GT(parsed, 0);  // some flips land in harmless places (metadata text, spaces)
}

}  // namespace
}  // namespace ddpm
