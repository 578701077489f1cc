// The safetensors reader and writer: round trips through bytes and files,
// the writer's layout, and every malformed input the reader must refuse with
// a message naming the file, the tensor and what was expected.
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "engine/checkpoint/safetensors.h"
#include "tests/checkpoint/checkpoint_test_util.h"

namespace ddpm {
namespace {

using test::contains;
using test::error_of;
using test::file_bytes;

StTensor tensor_of(DType dtype, std::vector<int64_t> shape, uint8_t seed) {
  StTensor t{dtype, std::move(shape), {}};
  t.data.resize(static_cast<size_t>(t.numel()) * dtype_size(dtype));
  for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = static_cast<uint8_t>(seed + 31 * i);
  return t;
}

StFile sample_file() {
  StFile f;
  f.tensors["conv_in.weight"] = tensor_of(DType::f32, {4, 3, 3, 3}, 1);
  f.tensors["conv_in.bias"] = tensor_of(DType::f32, {4}, 2);
  f.tensors["half"] = tensor_of(DType::f16, {3, 5}, 3);
  f.tensors["brain"] = tensor_of(DType::bf16, {7}, 4);
  f.tensors["double"] = tensor_of(DType::f64, {2, 2}, 5);
  f.tensors["scalar"] = tensor_of(DType::f32, {}, 6);
  f.tensors["empty"] = tensor_of(DType::f16, {0, 8}, 7);
  f.tensors["also_empty"] = tensor_of(DType::f64, {3, 0}, 8);
  f.metadata = {{"format", "pt"}, {"unicode \xc3\xbc", "line\nbreak \"quoted\""}};
  return f;
}

void expect_same(const StFile& a, const StFile& b) {
  EXPECT_EQ(a.metadata, b.metadata);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    auto it = b.tensors.find(name);
    ASSERT_NE(it, b.tensors.end()) << name;
    EXPECT_EQ(t.dtype, it->second.dtype) << name;
    EXPECT_EQ(t.shape, it->second.shape) << name;
    EXPECT_EQ(t.data, it->second.data) << name;
  }
}

TEST(SafetensorsRoundTrip, BytesKeepEveryTensorAndTheMetadata) {
  const StFile f = sample_file();
  const std::vector<uint8_t> bytes = serialize_safetensors(f, "mem");
  expect_same(f, parse_safetensors(bytes, "mem"));
}

TEST(SafetensorsRoundTrip, FileKeepsEveryTensorAndTheMetadata) {
  test::ScratchDir dir;
  const StFile f = sample_file();
  write_safetensors(dir / "model.safetensors", f);
  expect_same(f, read_safetensors(dir / "model.safetensors"));
  EXPECT_EQ(test::read_bytes(dir / "model.safetensors"), serialize_safetensors(f, "mem"));
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.safetensors"});
}

TEST(SafetensorsRoundTrip, LargeTensorsAndNoMetadata) {
  // Bigger than the atomic writer's 64 KiB buffer, so data bypasses it.
  test::ScratchDir dir;
  StFile f;
  f.tensors["big"] = tensor_of(DType::f32, {300, 257}, 9);
  f.tensors["small"] = tensor_of(DType::bf16, {3}, 10);
  write_safetensors(dir / "big.safetensors", f);
  expect_same(f, read_safetensors(dir / "big.safetensors"));
}

TEST(SafetensorsRoundTrip, EmptyFile) {
  const std::vector<uint8_t> bytes = serialize_safetensors(StFile{}, "mem");
  EXPECT_EQ(bytes, file_bytes("{}      "));
  expect_same(StFile{}, parse_safetensors(bytes, "mem"));
}

TEST(SafetensorsRoundTrip, ValuesSurviveConversionToEachDtype) {
  const std::vector<float> values = {0.0f, -1.5f, 3.0f, 0.25f, 1024.0f, -0.125f};
  for (DType d : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    StFile f;
    f.tensors["w"] = from_f32(values, {2, 3}, d);
    const StFile back = parse_safetensors(serialize_safetensors(f, "mem"), "mem");
    EXPECT_EQ(to_f32(back.tensors.at("w")), values) << safetensors_dtype_name(d);
  }
}

// The writer's layout, checked on its header: what the Python library does
// (tests/checkpoint/test_safetensors_reference.cpp compares whole files).
TEST(SafetensorsWriter, OrdersByDtypeThenNameAlignsAndPads) {
  const std::vector<uint8_t> bytes = serialize_safetensors(sample_file(), "mem");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[static_cast<size_t>(i)];
  EXPECT_EQ(n % 8, 0u);
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(n));
  EXPECT_EQ(header.rfind("{\"__metadata__\":{\"format\":\"pt\",", 0), 0u) << header;
  const auto j = nlohmann::ordered_json::parse(header);
  std::vector<std::string> order;
  uint64_t expected_begin = 0;
  for (const auto& [name, entry] : j.items()) {
    if (name == "__metadata__") continue;
    order.push_back(name);
    const uint64_t begin = entry["data_offsets"][0];
    EXPECT_EQ(begin, expected_begin) << name;
    const size_t elem = entry["dtype"] == "F64" ? 8 : entry["dtype"] == "F32" ? 4 : 2;
    EXPECT_EQ((8 + n + begin) % elem, 0u) << name << " is not aligned to its element size";
    expected_begin = entry["data_offsets"][1];
    // Keys in the Python library's order.
    std::vector<std::string> keys;
    for (const auto& [k, v] : entry.items()) keys.push_back(k);
    EXPECT_EQ(keys, (std::vector<std::string>{"dtype", "shape", "data_offsets"}));
  }
  EXPECT_EQ(order,
            (std::vector<std::string>{"also_empty", "double", "conv_in.bias", "conv_in.weight",
                                      "scalar", "brain", "empty", "half"}));
  EXPECT_EQ(bytes.size(), 8 + n + expected_begin);
}

// ---- Malformed input: each case and its exact message. ----

std::string parse_error(const std::vector<uint8_t>& bytes) {
  return error_of([&] { parse_safetensors(bytes, "t.safetensors"); });
}
std::string parse_error(const std::string& header, size_t data_bytes = 0) {
  return parse_error(file_bytes(header, data_bytes));
}

TEST(SafetensorsMalformed, FileShorterThanTheLengthField) {
  EXPECT_EQ(parse_error(std::vector<uint8_t>{1, 2, 3}),
            "t.safetensors: file is 3 bytes, too short for a safetensors file (the header length "
            "alone takes 8)");
  EXPECT_EQ(parse_error(std::vector<uint8_t>{}),
            "t.safetensors: file is 0 bytes, too short for a safetensors file (the header length "
            "alone takes 8)");
}

TEST(SafetensorsMalformed, HeaderLengthPastTheEnd) {
  std::vector<uint8_t> bytes;
  test::append_le64(bytes, 100);
  bytes.resize(18, ' ');
  EXPECT_EQ(parse_error(bytes),
            "t.safetensors: header length 100 runs past the end of the file (18 bytes, so at "
            "most 10 bytes of header; truncated file?)");
}

TEST(SafetensorsMalformed, HeaderLengthZero) {
  EXPECT_EQ(parse_error(std::string()),
            "t.safetensors: header length is 0; expected the length of a JSON object");
}

TEST(SafetensorsMalformed, HeaderLengthAbsurd) {
  for (uint64_t n : {uint64_t{100'000'001}, uint64_t{1} << 62, ~uint64_t{0}}) {
    std::vector<uint8_t> bytes;
    test::append_le64(bytes, n);
    bytes.insert(bytes.end(), {'{', '}'});
    EXPECT_EQ(parse_error(bytes), "t.safetensors: header length " + std::to_string(n) +
                                      " is over the 100000000-byte limit (not a safetensors "
                                      "file, or a corrupt one)");
  }
}

TEST(SafetensorsMalformed, AbsurdHeaderLengthInAFileAllocatesNothing) {
  // read_safetensors checks N against the file's size before allocating.
  test::ScratchDir dir;
  std::vector<uint8_t> bytes;
  test::append_le64(bytes, uint64_t{1} << 40);
  bytes.insert(bytes.end(), {'{', '}'});
  test::write_bytes(dir / "x.safetensors", bytes);
  const std::string path = (dir / "x.safetensors").string();
  EXPECT_EQ(error_of([&] { read_safetensors(path); }),
            path +
                ": header length 1099511627776 is over the 100000000-byte limit (not a "
                "safetensors file, or a corrupt one)");
  // A plausible length, but past the end.
  bytes = std::vector<uint8_t>{50, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
  test::write_bytes(dir / "x.safetensors", bytes);
  EXPECT_EQ(error_of([&] { read_safetensors(path); }),
            path +
                ": header length 50 runs past the end of the file (10 bytes, so at most 2 "
                "bytes of header; truncated file?)");
}

TEST(SafetensorsMalformed, HeaderNotJson) {
  const std::string e = parse_error(R"({"a": {"dtype": "F32",)");
  EXPECT_EQ(e.rfind("t.safetensors: header is not valid JSON: parse error at line 1, column ", 0),
            0u)
      << e;
  // Padding with NUL instead of spaces (nlohmann alone would stop at the NUL).
  EXPECT_EQ(parse_error(std::string("{}\0\0\0\0\0\0", 8)),
            "t.safetensors: header is not valid JSON: NUL byte at offset 2 (safetensors pads the "
            "header with spaces)");
}

TEST(SafetensorsMalformed, HeaderNotUtf8) {
  const std::string e = parse_error("{\"a\xff\":{}}");
  EXPECT_TRUE(contains(e, "header is not valid JSON")) << e;
  EXPECT_TRUE(contains(e, "UTF-8")) << e;
  // The offending byte is escaped, so the message itself is valid UTF-8.
  EXPECT_TRUE(contains(e, "\\xff")) << e;
  EXPECT_FALSE(contains(e, "\xff")) << e;
}

TEST(SafetensorsMalformed, NamesAreEscapedInMessages) {
  EXPECT_EQ(parse_error("{\"a\\nb\\u0001\u00fc\": 5}"),
            "t.safetensors: tensor 'a\\nb\\x01\u00fc': entry must be an object with \"dtype\", "
            "\"shape\" and \"data_offsets\", got number");
}

TEST(SafetensorsMalformed, HeaderNotAnObject) {
  EXPECT_EQ(parse_error("[1, 2]"), "t.safetensors: header must be a JSON object, got array");
  EXPECT_EQ(parse_error("\"text\""), "t.safetensors: header must be a JSON object, got string");
}

TEST(SafetensorsMalformed, EntryNotAnObject) {
  EXPECT_EQ(parse_error(R"({"a": 5})"),
            "t.safetensors: tensor 'a': entry must be an object with \"dtype\", \"shape\" and "
            "\"data_offsets\", got number");
}

TEST(SafetensorsMalformed, EntryMissingAField) {
  EXPECT_EQ(parse_error(R"({"a": {"shape": [1], "data_offsets": [0, 4]}})", 4),
            "t.safetensors: tensor 'a': missing \"dtype\"");
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "data_offsets": [0, 4]}})", 4),
            "t.safetensors: tensor 'a': missing \"shape\"");
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "shape": [1]}})", 4),
            "t.safetensors: tensor 'a': missing \"data_offsets\"");
}

TEST(SafetensorsMalformed, DtypeNotAString) {
  EXPECT_EQ(parse_error(R"({"a": {"dtype": 32, "shape": [1], "data_offsets": [0, 4]}})", 4),
            "t.safetensors: tensor 'a': \"dtype\" must be a string, got number");
}

TEST(SafetensorsMalformed, UnknownAndUnsupportedDtypes) {
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}})", 4),
            "t.safetensors: tensor 'a': unknown dtype 'F33' (supported: F32, F16, BF16, F64)");
  EXPECT_EQ(parse_error(R"({"x": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}})", 8),
            "t.safetensors: tensor 'x': dtype I64 is not supported (F32, F16, BF16, F64)");
}

TEST(SafetensorsMalformed, ShapeWrongType) {
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "shape": "2x2", "data_offsets": [0, 16]}})", 16),
            "t.safetensors: tensor 'a': \"shape\" must be an array of non-negative integers, got "
            "string");
  EXPECT_EQ(
      parse_error(R"({"a": {"dtype": "F32", "shape": [2, -2], "data_offsets": [0, 16]}})", 16),
      "t.safetensors: tensor 'a': \"shape\" [2,-2]: dimension 1 is -2; expected a "
      "non-negative integer below 2^63");
  EXPECT_EQ(
      parse_error(R"({"a": {"dtype": "F32", "shape": [2.0, 2], "data_offsets": [0, 16]}})", 16),
      "t.safetensors: tensor 'a': \"shape\" [2.0,2]: dimension 0 is 2.0; expected a "
      "non-negative integer below 2^63");
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]}})", 8),
            "t.safetensors: tensor 'a': \"shape\" [\"2\"]: dimension 0 is \"2\"; expected a "
            "non-negative integer below 2^63");
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "shape": [9223372036854775808],
                               "data_offsets": [0, 8]}})",
                        8),
            "t.safetensors: tensor 'a': \"shape\" [9223372036854775808]: dimension 0 is "
            "9223372036854775808; expected a non-negative integer below 2^63");
}

TEST(SafetensorsMalformed, OffsetsWrongType) {
  const std::string expected =
      "t.safetensors: tensor 'a': \"data_offsets\" must be two non-negative integers [begin, "
      "end], got ";
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4]}})", 4),
            expected + "[4]");
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}})", 8),
            expected + "[0,4,8]");
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", 4),
            expected + "[-4,0]");
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4.5]}})", 4),
            expected + "[0,4.5]");
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": "0-4"}})", 4),
            expected + "\"0-4\"");
}

TEST(SafetensorsMalformed, OffsetsBeginAfterEnd) {
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", 8),
            "t.safetensors: tensor 'a': data_offsets [8, 4]: begin is after end");
}

TEST(SafetensorsMalformed, OffsetsPastTheDataRegion) {
  EXPECT_EQ(
      parse_error(R"({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}})", 12),
      "t.safetensors: tensor 'a': data_offsets [0, 16] run past the end of the data region (12 "
      "bytes; truncated file?)");
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "shape": [1],
                               "data_offsets": [18446744073709551611, 18446744073709551615]}})",
                        4),
            "t.safetensors: tensor 'a': data_offsets [18446744073709551611, "
            "18446744073709551615] run past the end of the data region (4 bytes; truncated "
            "file?)");
}

TEST(SafetensorsMalformed, ByteCountDoesNotMatchDtypeAndShape) {
  EXPECT_EQ(parse_error(R"({"conv_in.weight": {"dtype": "F32", "shape": [128, 3, 3, 3],
                                               "data_offsets": [0, 100]}})",
                        100),
            "t.safetensors: tensor 'conv_in.weight': data_offsets [0, 100] hold 100 bytes but "
            "dtype F32 and shape [128, 3, 3, 3] need 13824");
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "BF16", "shape": [], "data_offsets": [0, 4]}})", 4),
            "t.safetensors: tensor 'a': data_offsets [0, 4] hold 4 bytes but dtype BF16 and shape "
            "[] need 2");
}

TEST(SafetensorsMalformed, ElementCountOverflows) {
  // 2^32 * 2^32 elements: wraps to 0 in 64 bits, which would "match" [0, 0].
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296],
                               "data_offsets": [0, 0]}})"),
            "t.safetensors: tensor 'a': dtype F32 and shape [4294967296, 4294967296] need more "
            "bytes than fit in 64 bits");
  // Elements fit, bytes do not.
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F64", "shape": [4611686018427387904],
                               "data_offsets": [0, 0]}})"),
            "t.safetensors: tensor 'a': dtype F64 and shape [4611686018427387904] need more "
            "bytes than fit in 64 bits");
}

TEST(SafetensorsMalformed, OverlappingTensors) {
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                            "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                        12),
            "t.safetensors: tensors 'a' [0, 8] and 'b' [4, 12] overlap in the data region");
  // Two names for the same bytes.
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                            "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
                        8),
            "t.safetensors: tensors 'a' [0, 8] and 'b' [0, 8] overlap in the data region");
  // An empty tensor inside another's range (the Python library rejects it too).
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                            "b": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})",
                        8),
            "t.safetensors: tensors 'a' [0, 8] and 'b' [4, 4] overlap in the data region");
}

TEST(SafetensorsMalformed, BytesCoveredByNoTensor) {
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                            "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})",
                        12),
            "t.safetensors: bytes [4, 8) of the data region belong to no tensor (a safetensors "
            "file has no gaps; corrupt offsets?)");
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", 10),
            "t.safetensors: bytes [4, 10) of the data region belong to no tensor (the file has 6 "
            "trailing bytes)");
  EXPECT_EQ(parse_error(R"({})", 3),
            "t.safetensors: bytes [0, 3) of the data region belong to no tensor (the file has 3 "
            "trailing bytes)");
}

TEST(SafetensorsMalformed, EmptyTensorsAtBoundariesAreFine) {
  const StFile f =
      parse_safetensors(file_bytes(R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
                     "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                     "c": {"dtype": "F16", "shape": [2, 0], "data_offsets": [4, 4]}})",
                                   4),
                        "t.safetensors");
  EXPECT_EQ(f.tensors.size(), 3u);
  EXPECT_TRUE(f.tensors.at("a").data.empty());
  EXPECT_EQ(f.tensors.at("c").shape, (std::vector<int64_t>{2, 0}));
}

TEST(SafetensorsMalformed, MetadataNotStringToString) {
  EXPECT_EQ(parse_error(R"({"__metadata__": ["format", "pt"]})"),
            "t.safetensors: \"__metadata__\" must be an object mapping strings to strings, got "
            "array");
  EXPECT_EQ(parse_error(R"({"__metadata__": {"format": "pt", "epoch": 3}})"),
            "t.safetensors: \"__metadata__\" key 'epoch' must map to a string, got number 3");
  EXPECT_EQ(parse_error(R"({"__metadata__": {"nested": {"a": "b"}}})"),
            "t.safetensors: \"__metadata__\" key 'nested' must map to a string, got object "
            "{\"a\":\"b\"}");
}

TEST(SafetensorsMalformed, DuplicateKeys) {
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                            "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                        8),
            "t.safetensors: tensor 'a' appears twice in the header");
  EXPECT_EQ(parse_error(R"({"__metadata__": {"k": "1"}, "__metadata__": {"k": "2"}})"),
            "t.safetensors: \"__metadata__\" appears twice in the header");
  EXPECT_EQ(parse_error(R"({"__metadata__": {"k": "1", "k": "2"}})"),
            "t.safetensors: \"__metadata__\" has key 'k' twice");
  EXPECT_EQ(parse_error(R"({"a": {"dtype": "F32", "dtype": "F16", "shape": [1],
                                  "data_offsets": [0, 4]}})",
                        4),
            "t.safetensors: tensor 'a': key 'dtype' appears twice");
  // Same keys in different objects are not duplicates.
  EXPECT_NO_THROW(
      parse_safetensors(file_bytes(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                     "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                                   8),
                        "t.safetensors"));
}

TEST(SafetensorsMalformed, ExtraEntryKeysAndPaddingAreAccepted) {
  // As the Python library does: unknown keys in an entry are ignored, and the
  // header may carry whitespace on either side.
  const StFile f = parse_safetensors(
      file_bytes(" {\"a\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4], "
                 "\"note\": 1}}\n      ",
                 4),
      "t.safetensors");
  EXPECT_EQ(f.tensors.at("a").shape, (std::vector<int64_t>{2}));
}

TEST(SafetensorsMalformed, HostileNamesAreCutShortInMessages) {
  const std::string name(5000, 'n');
  const std::string e = parse_error(
      "{\"" + name + R"(": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}})", 8);
  EXPECT_LT(e.size(), 400u) << e;
  EXPECT_TRUE(contains(e, "...' (5000 bytes)")) << e;
}

TEST(SafetensorsMalformed, MissingFile) {
  test::ScratchDir dir;
  const std::string path = (dir / "nope.safetensors").string();
  EXPECT_EQ(error_of([&] { read_safetensors(path); }),
            "cannot open " + path + ": No such file or directory");
}

TEST(SafetensorsMalformed, DirectoryInsteadOfFile) {
  test::ScratchDir dir;
  EXPECT_EQ(error_of([&] { read_safetensors(dir.path()); }),
            dir.path().string() + ": not a regular file");
}

TEST(SafetensorsMalformed, TruncatedFileOnDisk) {
  test::ScratchDir dir;
  StFile f;
  f.tensors["w"] = tensor_of(DType::f32, {16}, 1);
  std::vector<uint8_t> bytes = serialize_safetensors(f, "mem");
  bytes.resize(bytes.size() - 3);
  test::write_bytes(dir / "cut.safetensors", bytes);
  const std::string path = (dir / "cut.safetensors").string();
  EXPECT_EQ(error_of([&] { read_safetensors(path); }),
            path +
                ": tensor 'w': data_offsets [0, 64] run past the end of the data region (61 "
                "bytes; truncated file?)");
}

// ---- The writer's own checks, all made before the disk is touched. ----

TEST(SafetensorsWriter, RejectsDataThatDoesNotMatchTheShape) {
  test::ScratchDir dir;
  StFile f;
  f.tensors["w"] = tensor_of(DType::f32, {3}, 1);
  f.tensors["w"].data.resize(10);
  const std::string path = (dir / "m.safetensors").string();
  EXPECT_EQ(error_of([&] { write_safetensors(path, f); }),
            path + ": tensor 'w': data holds 10 bytes but dtype F32 and shape [3] need 12");
  EXPECT_TRUE(dir.entries().empty());
}

TEST(SafetensorsWriter, RejectsNegativeDimensionsAndReservedOrInvalidNames) {
  StFile f;
  f.tensors["w"] = StTensor{DType::f32, {-1}, {}};
  EXPECT_EQ(error_of([&] { serialize_safetensors(f, "m"); }),
            "m: tensor 'w': shape [-1] has a negative dimension or too many elements");
  StFile g;
  g.tensors["__metadata__"] = tensor_of(DType::f32, {1}, 1);
  EXPECT_EQ(error_of([&] { serialize_safetensors(g, "m"); }),
            "m: \"__metadata__\" cannot be a tensor name (it holds the metadata)");
  StFile h;
  h.tensors["bad\xff"] = tensor_of(DType::f32, {1}, 1);
  EXPECT_EQ(error_of([&] { serialize_safetensors(h, "m"); }),
            "m: tensor name 'bad\\xff' is not valid UTF-8");
  StFile k;
  k.metadata["key"] = "\xc3";
  EXPECT_EQ(error_of([&] { serialize_safetensors(k, "m"); }),
            "m: the value of metadata key 'key' is not valid UTF-8");
}

TEST(SafetensorsWriter, TargetDirectoryMissing) {
  test::ScratchDir dir;
  const std::filesystem::path path = dir / "no_such_dir" / "m.safetensors";
  const std::string e = error_of([&] { write_safetensors(path, sample_file()); });
  EXPECT_EQ(e.rfind("cannot write " + path.string() + ": cannot create temporary file ", 0), 0u)
      << e;
  EXPECT_TRUE(contains(e, ": No such file or directory")) << e;
}

TEST(SafetensorsWriter, FailedWriteKeepsTheOldFile) {
  test::ScratchDir dir;
  const auto path = dir / "m.safetensors";
  write_safetensors(path, sample_file());
  const std::vector<uint8_t> before = test::read_bytes(path);
  StFile bad = sample_file();
  bad.tensors["half"].data.pop_back();
  EXPECT_FALSE(error_of([&] { write_safetensors(path, bad); }).empty());
  EXPECT_EQ(test::read_bytes(path), before);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"m.safetensors"});
}

}  // namespace
}  // namespace ddpm
