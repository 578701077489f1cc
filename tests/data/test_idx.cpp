// IDX files (MNIST, Fashion-MNIST): plain and gzipped, and every error path.
#include <gtest/gtest.h>

#include "engine/data/idx.h"
#include "tests/data/temp_dir.h"

namespace ddpm {
namespace {

using testing_data::read_file;
using testing_data::TempDir;
using testing_data::write_file;
using testing_data::write_gzip;

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

// count images of rows x cols, pixel (n, y, x) = n * 100 + y * cols + x (mod 256).
std::vector<uint8_t> idx_images(uint32_t count, uint32_t rows, uint32_t cols) {
  std::vector<uint8_t> b;
  put_u32(b, 0x00000803);
  put_u32(b, count);
  put_u32(b, rows);
  put_u32(b, cols);
  for (uint32_t n = 0; n < count; ++n)
    for (uint32_t i = 0; i < rows * cols; ++i) b.push_back(static_cast<uint8_t>(n * 100 + i));
  return b;
}

std::vector<uint8_t> idx_labels(const std::vector<uint8_t>& labels) {
  std::vector<uint8_t> b;
  put_u32(b, 0x00000801);
  put_u32(b, static_cast<uint32_t>(labels.size()));
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

TEST(DataIdx, ReadsPlainImagesAndLabels) {
  TempDir dir;
  write_file(dir / "train-images-idx3-ubyte", idx_images(3, 2, 4));
  write_file(dir / "train-labels-idx1-ubyte", idx_labels({7, 0, 9}));
  const ImageDataset ds =
      load_idx(dir / "train-images-idx3-ubyte", dir / "train-labels-idx1-ubyte");
  EXPECT_EQ(ds.count, 3);
  EXPECT_EQ(ds.height, 2);
  EXPECT_EQ(ds.width, 4);
  EXPECT_EQ(ds.channels, 1);
  ASSERT_EQ(ds.pixels.size(), 24u);
  EXPECT_EQ(ds.pixels[0], 0);
  EXPECT_EQ(ds.pixels[8 + 5], 105);  // image 1, row 1, column 1
  EXPECT_EQ(ds.labels, (std::vector<int32_t>{7, 0, 9}));
  EXPECT_EQ(ds.source, (dir / "train-images-idx3-ubyte").string());
}

TEST(DataIdx, DetectsGzipByMagicNotName) {
  TempDir dir;
  write_gzip(dir / "images.idx", idx_images(2, 3, 3));  // gzipped, no .gz name
  write_file(dir / "labels.gz", idx_labels({1, 2}));    // plain, with a .gz name
  const ImageDataset ds = load_idx(dir / "images.idx", dir / "labels.gz");
  EXPECT_EQ(ds.count, 2);
  const std::vector<uint8_t> file = idx_images(2, 3, 3);
  EXPECT_EQ(ds.pixels, std::vector<uint8_t>(file.begin() + 16, file.end()));
  EXPECT_EQ(ds.labels, (std::vector<int32_t>{1, 2}));
}

TEST(DataIdx, LabelFileFoundByMnistNaming) {
  TempDir dir;
  write_gzip(dir / "t10k-images-idx3-ubyte.gz", idx_images(1, 1, 1));
  EXPECT_EQ(idx_labels_for(dir / "t10k-images-idx3-ubyte.gz"), std::filesystem::path{});
  write_gzip(dir / "t10k-labels-idx1-ubyte.gz", idx_labels({4}));
  EXPECT_EQ(idx_labels_for(dir / "t10k-images-idx3-ubyte.gz"), dir / "t10k-labels-idx1-ubyte.gz");
  EXPECT_EQ(idx_labels_for(dir / "other.idx"), std::filesystem::path{});
}

TEST(DataIdx, ToFloatScalesAndFlips) {
  TempDir dir;
  std::vector<uint8_t> b = idx_images(1, 1, 3);
  b[16] = 0, b[17] = 51, b[18] = 255;
  write_file(dir / "a", b);
  const ImageDataset ds = load_idx(dir / "a");
  float out[3];
  ds.to_float(0, out);
  EXPECT_EQ(out[0], -1.0f);
  EXPECT_FLOAT_EQ(out[1], -0.6f);
  EXPECT_EQ(out[2], 1.0f);
  ds.to_float(0, out, /*flip_horizontal=*/true);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_FLOAT_EQ(out[1], -0.6f);
  EXPECT_EQ(out[2], -1.0f);
  EXPECT_THROW(ds.to_float(1, out), DataError);
}

TEST(DataIdx, MissingFile) {
  TempDir dir;
  EXPECT_THROW_WITH(load_idx(dir / "nope"), DataError, (dir / "nope").string(), "no such file");
}

TEST(DataIdx, TruncatedPlain) {
  TempDir dir;
  std::vector<uint8_t> b = idx_images(3, 2, 4);  // 16 + 24 bytes
  b.resize(30);
  write_file(dir / "short", b);
  EXPECT_THROW_WITH(load_idx(dir / "short"), DataError, (dir / "short").string(),
                    "expected 40 bytes (16-byte header + 3 x 2 x 4 bytes), found 30 (truncated)");
}

TEST(DataIdx, TruncatedInsideGzip) {
  TempDir dir;
  std::vector<uint8_t> b = idx_images(3, 2, 4);
  b.resize(39);
  write_gzip(dir / "short.gz", b);
  EXPECT_THROW_WITH(load_idx(dir / "short.gz"), DataError,
                    (dir / "short.gz").string() + " (after gunzip)", "expected 40 bytes",
                    "found 39 (truncated)");
}

TEST(DataIdx, TruncatedGzipStream) {
  TempDir dir;
  write_gzip(dir / "full.gz", idx_images(20, 8, 8));
  std::vector<uint8_t> gz = read_file(dir / "full.gz");
  gz.resize(gz.size() / 2);
  write_file(dir / "cut.gz", gz);
  EXPECT_THROW_WITH(load_idx(dir / "cut.gz"), DataError, (dir / "cut.gz").string(),
                    "gzip: the compressed stream ends early");
}

TEST(DataIdx, TrailingBytes) {
  TempDir dir;
  std::vector<uint8_t> b = idx_images(1, 2, 2);
  b.push_back(0);
  write_file(dir / "long", b);
  EXPECT_THROW_WITH(load_idx(dir / "long"), DataError, "expected 20 bytes", "found 21",
                    "trailing bytes");
}

TEST(DataIdx, BadMagic) {
  TempDir dir;
  write_file(dir / "labels", idx_labels({1}));
  EXPECT_THROW_WITH(load_idx(dir / "labels"), DataError, (dir / "labels").string(),
                    "not an IDX image file: magic 0x00000801, expected 0x00000803");
  write_file(dir / "images", idx_images(1, 1, 1));
  EXPECT_THROW_WITH(load_idx(dir / "images", dir / "images"), DataError,
                    "not an IDX label file: magic 0x00000803, expected 0x00000801");
  write_file(dir / "text", {'h', 'e', 'l', 'l', 'o', '\n'});
  EXPECT_THROW_WITH(load_idx(dir / "text"), DataError, "magic 0x68656c6c");
}

TEST(DataIdx, ShortHeaderAndEmptyDimension) {
  TempDir dir;
  std::vector<uint8_t> b = idx_images(1, 2, 2);
  b.resize(10);
  write_file(dir / "header", b);
  EXPECT_THROW_WITH(load_idx(dir / "header"), DataError, "10 bytes, shorter than its 16-byte");
  write_file(dir / "tiny", {0, 0});
  EXPECT_THROW_WITH(load_idx(dir / "tiny"), DataError, "2 bytes, too short for an IDX file");
  write_file(dir / "zero", idx_images(0, 2, 2));
  EXPECT_THROW_WITH(load_idx(dir / "zero"), DataError, "IDX dimension 0 is 0");
}

TEST(DataIdx, LabelCountMismatch) {
  TempDir dir;
  write_file(dir / "images", idx_images(3, 2, 2));
  write_file(dir / "labels", idx_labels({1, 2}));
  EXPECT_THROW_WITH(load_idx(dir / "images", dir / "labels"), DataError,
                    (dir / "labels").string() + ": holds 2 labels, but " +
                        (dir / "images").string() + " holds 3 images");
}

}  // namespace
}  // namespace ddpm
