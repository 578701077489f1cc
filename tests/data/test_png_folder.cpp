// Folders of PNG images: written with our writer (and libpng's simplified API
// for the other colour types), read back; corrupt and mismatched files.
#include <gtest/gtest.h>
#include <png.h>

#include "engine/data/png_decode.h"
#include "engine/data/png_folder.h"
#include "engine/image/png_writer.h"
#include "engine/random.h"
#include "tests/data/temp_dir.h"

namespace ddpm {
namespace {

using testing_data::read_file;
using testing_data::TempDir;
using testing_data::write_file;

std::vector<uint8_t> ramp(size_t n, int start) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(start + 3 * static_cast<int>(i));
  return v;
}

// Writes with libpng's simplified API, for layouts our writer does not make.
void write_simplified(const std::filesystem::path& path, uint32_t format, int w, int h,
                      const void* pixels, const void* colormap = nullptr, int colors = 0) {
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  img.width = static_cast<png_uint_32>(w);
  img.height = static_cast<png_uint_32>(h);
  img.format = format;
  img.colormap_entries = static_cast<png_uint_32>(colors);
  ASSERT_TRUE(png_image_write_to_file(&img, path.c_str(), 0, pixels, 0, colormap)) << img.message;
}

TEST(DataPngFolder, RgbRoundTripInNameOrder) {
  TempDir dir;
  const auto a = ramp(4 * 5 * 3, 0), b = ramp(4 * 5 * 3, 100);
  write_png(dir / "b.png", b.data(), 4, 5, 3);
  write_png(dir / "a.png", a.data(), 4, 5, 3);
  write_file(dir / "notes.txt", {'x'});
  const ImageDataset ds = load_png_folder(dir.path());
  EXPECT_EQ(ds.count, 2);
  EXPECT_EQ(ds.height, 4);
  EXPECT_EQ(ds.width, 5);
  EXPECT_EQ(ds.channels, 3);
  EXPECT_TRUE(ds.labels.empty());
  std::vector<uint8_t> want = a;
  want.insert(want.end(), b.begin(), b.end());
  EXPECT_EQ(ds.pixels, want);
}

TEST(DataPngFolder, GreyRoundTrip) {
  TempDir dir;
  const auto a = ramp(7 * 3, 5);
  write_png(dir / "x.PNG", a.data(), 7, 3, 1);
  const ImageDataset ds = load_png_folder(dir.path());
  EXPECT_EQ(ds.count, 1);
  EXPECT_EQ(ds.height, 7);
  EXPECT_EQ(ds.width, 3);
  EXPECT_EQ(ds.channels, 1);
  EXPECT_EQ(ds.pixels, a);
}

TEST(DataPngFolder, AlphaPaletteAnd16BitAreConverted) {
  TempDir dir;
  const uint8_t rgba[] = {10, 20, 30, 0, 40, 50, 60, 255};
  write_simplified(dir / "rgba.png", PNG_FORMAT_RGBA, 2, 1, rgba);
  EXPECT_EQ(read_png(dir / "rgba.png").pixels, (std::vector<uint8_t>{10, 20, 30, 40, 50, 60}));

  const uint8_t ga[] = {7, 0, 200, 128};
  write_simplified(dir / "ga.png", PNG_FORMAT_GA, 2, 1, ga);
  const DecodedImage g = read_png(dir / "ga.png");
  EXPECT_EQ(g.channels, 1);
  EXPECT_EQ(g.pixels, (std::vector<uint8_t>{7, 200}));

  const uint16_t grey16[] = {0, 0xffff, 0x8080};
  write_simplified(dir / "grey16.png", PNG_FORMAT_LINEAR_Y, 3, 1, grey16);
  EXPECT_EQ(read_png(dir / "grey16.png").pixels, (std::vector<uint8_t>{0, 255, 128}));

  // A two-colour palette: libpng writes it with 1-bit indices.
  const uint8_t palette[] = {255, 0, 0, 0, 0, 255};
  const uint8_t indices[] = {0, 1, 1, 0};
  write_simplified(dir / "palette.png", PNG_FORMAT_RGB_COLORMAP, 4, 1, indices, palette, 2);
  const DecodedImage p = read_png(dir / "palette.png");
  EXPECT_EQ(p.channels, 3);
  EXPECT_EQ(p.pixels, (std::vector<uint8_t>{255, 0, 0, 0, 0, 255, 0, 0, 255, 255, 0, 0}));
}

TEST(DataPngFolder, RandomBytesNamedPng) {
  TempDir dir;
  Philox rng(7);
  std::vector<uint8_t> junk(500);
  for (auto& b : junk) b = static_cast<uint8_t>(rng.next_u32());
  write_file(dir / "junk.png", junk);
  EXPECT_THROW_WITH(load_png_folder(dir.path()), DataError, (dir / "junk.png").string(),
                    "not a PNG file");
  // A PNG signature followed by junk reaches libpng, whose complaint is passed on.
  junk.erase(junk.begin(), junk.begin() + 8);
  const uint8_t sig[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  junk.insert(junk.begin(), sig, sig + 8);
  write_file(dir / "junk.png", junk);
  EXPECT_THROW_WITH(load_png_folder(dir.path()), DataError, (dir / "junk.png").string(),
                    "corrupt PNG: ");
}

TEST(DataPngFolder, TruncatedAndDamagedPng) {
  TempDir dir;
  Philox rng(3);
  std::vector<uint8_t> noise(32 * 32 * 3);  // incompressible, so IDAT is large
  for (auto& b : noise) b = static_cast<uint8_t>(rng.next_u32());
  write_png(dir / "full.png", noise.data(), 32, 32, 3);
  std::vector<uint8_t> bytes = read_file(dir / "full.png");
  ASSERT_GT(bytes.size(), 3000u);

  std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + 1500);
  write_file(dir / "cut.png", cut);
  EXPECT_THROW_WITH(read_png(dir / "cut.png"), DataError, (dir / "cut.png").string(),
                    "corrupt PNG: file ends early (truncated PNG)");

  std::vector<uint8_t> damaged = bytes;
  damaged[16] ^= 0x01;  // inside IHDR's width: its CRC no longer matches
  write_file(dir / "damaged.png", damaged);
  EXPECT_THROW_WITH(read_png(dir / "damaged.png"), DataError, (dir / "damaged.png").string(),
                    "corrupt PNG: ", "CRC");
}

TEST(DataPngFolder, MismatchedSizeOrChannels) {
  TempDir dir;
  const auto px = ramp(8 * 8 * 3, 0);
  write_png(dir / "a.png", px.data(), 8, 8, 3);
  write_png(dir / "b.png", px.data(), 4, 8, 3);
  EXPECT_THROW_WITH(load_png_folder(dir.path()), DataError,
                    (dir / "b.png").string() + ": 8x4 RGB, but " + (dir / "a.png").string() +
                        " is 8x8 RGB; every image in the folder must share one size");
  write_png(dir / "b.png", px.data(), 8, 8, 1);
  EXPECT_THROW_WITH(load_png_folder(dir.path()), DataError, (dir / "b.png").string(),
                    "8x8 grey, but");
}

TEST(DataPngFolder, EmptyMissingOrNotAFolder) {
  TempDir dir;
  write_file(dir / "readme.txt", {'x'});
  EXPECT_THROW_WITH(load_png_folder(dir.path()), DataError, dir.path().string(),
                    "no *.png files in the folder");
  EXPECT_THROW_WITH(load_png_folder(dir / "nope"), DataError, (dir / "nope").string(),
                    "no such folder");
  EXPECT_THROW_WITH(load_png_folder(dir / "readme.txt"), DataError, "not a folder");
}

}  // namespace
}  // namespace ddpm
