// Image output: 8-bit conversion as diffusers does it, grids, .npy and PNG
// files written atomically.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/data/png_decode.h"
#include "engine/image/image_error.h"
#include "engine/image/npy_writer.h"
#include "engine/image/png_writer.h"
#include "tests/data/temp_dir.h"

namespace ddpm {
namespace {

using testing_data::read_file;
using testing_data::TempDir;

TEST(ImageToUint8, ClampsAndRoundsHalfToEven) {
  EXPECT_EQ(to_uint8(-1.0f), 0);
  EXPECT_EQ(to_uint8(1.0f), 255);
  EXPECT_EQ(to_uint8(-7.0f), 0);
  EXPECT_EQ(to_uint8(3.0f), 255);
  EXPECT_EQ(to_uint8(std::numeric_limits<float>::infinity()), 255);
  EXPECT_EQ(to_uint8(-std::numeric_limits<float>::infinity()), 0);
  EXPECT_EQ(to_uint8(std::nanf("")), 0);
  // Inputs whose float32 (x / 2 + 0.5) * 255 is exactly k + 0.5 (found by
  // emulating float32 arithmetic): numpy's round() takes the even neighbour.
  EXPECT_EQ(to_uint8(0.0f), 128);                               // 127.5
  EXPECT_EQ(to_uint8(std::bit_cast<float>(0xbc008060u)), 126);  // 126.5
  EXPECT_EQ(to_uint8(std::bit_cast<float>(0x3c00804fu)), 128);  // 128.5
  EXPECT_EQ(to_uint8(std::bit_cast<float>(0x3f7cfcfbu)), 254);  // 253.5
  EXPECT_EQ(to_uint8(std::bit_cast<float>(0x3f7efefeu)), 254);  // 254.5
  // And just past a half, up.
  EXPECT_EQ(to_uint8(std::nextafter(std::bit_cast<float>(0xbc008060u), 1.0f)), 127);
  EXPECT_EQ(to_uint8(-0.5f), 64);  // 63.75
}

TEST(ImageGrid, LayoutAndPadding) {
  // 5 grey 2x3 tiles in 3 columns, padding 1: 2 rows, 7 x 13 pixels.
  const int64_t n = 5, h = 2, w = 3;
  std::vector<float> images(static_cast<size_t>(n * h * w));
  // Tile t, pixel (y, x) maps to the byte 10 * t + 3 * y + x + 1 exactly: x = b / 127.5 - 1.
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < h * w; ++i)
      images[static_cast<size_t>(t * h * w + i)] =
          static_cast<float>(10 * t + i + 1) / 127.5f - 1.0f;
  const Image8 g = make_grid(images.data(), n, h, w, 1, 3, 1, 200);
  ASSERT_EQ(g.height, 7);
  ASSERT_EQ(g.width, 13);
  ASSERT_EQ(g.channels, 1);
  auto at = [&](int64_t y, int64_t x) { return g.pixels[static_cast<size_t>(y * g.width + x)]; };
  EXPECT_EQ(at(0, 0), 200);
  EXPECT_EQ(at(1, 0), 200);
  EXPECT_EQ(at(1, 1), 1);    // tile 0 (0, 0)
  EXPECT_EQ(at(2, 3), 6);    // tile 0 (1, 2)
  EXPECT_EQ(at(1, 4), 200);  // the column gap
  EXPECT_EQ(at(1, 5), 11);   // tile 1 (0, 0)
  EXPECT_EQ(at(2, 11), 26);  // tile 2 (1, 2)
  EXPECT_EQ(at(3, 1), 200);  // the row gap
  EXPECT_EQ(at(4, 1), 31);   // tile 3 (0, 0)
  EXPECT_EQ(at(5, 7), 46);   // tile 4 (1, 2)
  EXPECT_EQ(at(4, 9), 200);  // the empty cell after tile 4
  EXPECT_EQ(at(6, 12), 200);
}

TEST(ImageGrid, RgbFewerImagesThanColumnsAndNoPadding) {
  const float px[2 * 3] = {-1, 0, 1, 1, 1, -1};  // two 1x1 RGB images
  const Image8 g = make_grid(px, 2, 1, 1, 3, 8, 0);
  ASSERT_EQ(g.height, 1);
  ASSERT_EQ(g.width, 2);  // columns shrink to the image count
  EXPECT_EQ(g.pixels, (std::vector<uint8_t>{0, 128, 255, 255, 255, 0}));
  EXPECT_THROW(make_grid(px, 0, 1, 1, 3, 8, 0), std::invalid_argument);
  EXPECT_THROW(make_grid(px, 2, 1, 1, 3, 0, 0), std::invalid_argument);
}

TEST(ImageNpy, HeaderBytes) {
  const int64_t shape[] = {2, 3, 4, 1};
  const std::string h = npy_header_f32(shape);
  EXPECT_EQ(h.size() % 64, 0u);
  EXPECT_EQ(h.substr(0, 6), "\x93NUMPY");
  EXPECT_EQ(h[6], 1);
  EXPECT_EQ(h[7], 0);
  const size_t len = static_cast<uint8_t>(h[8]) | static_cast<size_t>(static_cast<uint8_t>(h[9]))
                                                      << 8;
  EXPECT_EQ(len, h.size() - 10);
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4, 1), }";
  EXPECT_EQ(h.substr(10, dict.size()), dict);
  EXPECT_EQ(h.back(), '\n');
  EXPECT_EQ(h.find_first_not_of(' ', 10 + dict.size()), h.size() - 1);

  const int64_t one[] = {5};
  EXPECT_NE(npy_header_f32(one).find("'shape': (5,), }"), std::string::npos);
  const int64_t bad[] = {2, -1};
  EXPECT_THROW(npy_header_f32(bad), ImageError);
}

TEST(ImageNpy, WritesHeaderThenLittleEndianData) {
  TempDir dir;
  const float data[6] = {1.0f, -2.5f, 0.0f, 3.25f, -0.0f, 1e-3f};
  const int64_t shape[] = {1, 2, 3, 1};
  write_npy(dir / "x.npy", data, shape);
  const std::vector<uint8_t> bytes = read_file(dir / "x.npy");
  const std::string header = npy_header_f32(shape);
  ASSERT_EQ(bytes.size(), header.size() + sizeof data);
  EXPECT_EQ(std::string(bytes.begin(), bytes.begin() + static_cast<long>(header.size())), header);
  EXPECT_EQ(bytes[header.size() + 4], 0x00);  // -2.5f = 0xc0200000, little-endian
  EXPECT_EQ(bytes[header.size() + 7], 0xc0);
  EXPECT_EQ(std::memcmp(bytes.data() + header.size(), data, sizeof data), 0);
}

TEST(ImagePng, WritesAtomicallyAndOverwrites) {
  TempDir dir;
  const uint8_t a[] = {1, 2, 3, 4, 5, 6}, b[] = {9, 8, 7, 6, 5, 4};
  write_png(dir / "img.png", a, 2, 1, 3);
  write_png(dir / "img.png", b, 2, 3, 1);
  const DecodedImage img = read_png(dir / "img.png");
  EXPECT_EQ(img.height, 2);
  EXPECT_EQ(img.width, 3);
  EXPECT_EQ(img.channels, 1);
  EXPECT_EQ(img.pixels, std::vector<uint8_t>(b, b + 6));
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    ++files;
    EXPECT_EQ(e.path().filename(), "img.png");  // no temporary left behind
  }
  EXPECT_EQ(files, 1);
}

TEST(ImagePng, Errors) {
  TempDir dir;
  const uint8_t px[8] = {};
  EXPECT_THROW_WITH(write_png(dir / "two.png", px, 2, 2, 2), ImageError, (dir / "two.png").string(),
                    "2 channels; only 1 (grey) and 3 (RGB)");
  EXPECT_THROW_WITH(write_png(dir / "empty.png", px, 0, 2, 1), ImageError, "image size 2x0");
  EXPECT_THROW_WITH(write_png(dir / "no" / "such.png", px, 2, 2, 1), ImageError,
                    "cannot write " + (dir / "no" / "such.png").string(),
                    "cannot create temporary file");
  EXPECT_FALSE(std::filesystem::exists(dir / "two.png"));
}

}  // namespace
}  // namespace ddpm
