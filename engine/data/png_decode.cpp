// libpng reports errors by longjmp to a setjmp point. Nothing with a
// destructor may live in the frames that jump skips: the functions holding a
// setjmp below keep only trivial locals, the callbacks record the message in a
// plain struct and jump, and the C++ caller (vectors, RAII guard) sits outside
// them and turns a failed call into a DataError.
#include "engine/data/png_decode.h"

#include <png.h>

#include <cctype>
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "engine/data/data_error.h"
#include "engine/data/file_bytes.h"

namespace ddpm {

namespace {

constexpr uint32_t kMaxSide = 16384;

struct Source {  // trivially destructible: the callbacks' state
  const uint8_t* data;
  size_t size, offset;
  char error[256];
};

void on_error(png_structp png, png_const_charp message) {
  auto* src = static_cast<Source*>(png_get_error_ptr(png));
  std::snprintf(src->error, sizeof src->error, "%s", message);
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}

void on_read(png_structp png, png_bytep out, size_t n) {
  auto* src = static_cast<Source*>(png_get_io_ptr(png));
  if (src->size - src->offset < n) png_error(png, "file ends early (truncated PNG)");
  std::memcpy(out, src->data + src->offset, n);
  src->offset += n;
}

struct Layout {
  uint32_t width, height;
  int channels;
  size_t row_bytes;
  uint64_t stored_pixel_bytes;  // the pixel data as stored (before the transforms)
};

// Reads the header and sets the transforms to 8-bit grey or RGB.
bool read_layout(png_structp png, png_infop info, Layout* out) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_user_limits(png, kMaxSide, kMaxSide);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
  // The fuzz harness (tests/fuzz/fuzz_png.cpp) only: accept bad chunk CRCs so
  // that mutated inputs reach the chunk parsing instead of the CRC check.
  png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
#endif
  png_read_info(png, info);
  const int color = png_get_color_type(png, info);
  const int depth = png_get_bit_depth(png, info);
  out->stored_pixel_bytes = uint64_t{png_get_image_width(png, info)} *
                            png_get_image_height(png, info) * png_get_channels(png, info) *
                            static_cast<uint64_t>(depth) / 8;
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16) png_set_scale_16(png);
  // Palette images with a tRNS chunk expand to RGBA: strip that alpha too
  // (such files were refused as "4 channels" before; found while writing the
  // seeds of tests/fuzz).
  if ((color & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS))
    png_set_strip_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  out->width = png_get_image_width(png, info);
  out->height = png_get_image_height(png, info);
  out->channels = png_get_channels(png, info);
  out->row_bytes = png_get_rowbytes(png, info);
  return true;
}

bool read_rows(png_structp png, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  png_read_end(png, nullptr);
  return true;
}

// Walks the chunks up to IEND and refuses one whose claimed length runs past
// the end of the file. libpng allocates a chunk's claimed length before it
// reads the chunk: Debian's libpng asked for 1 GB for a 140-byte file (found
// by tests/fuzz). What follows IEND is ignored, as libpng ignores it.
void check_chunk_lengths(const uint8_t* data, size_t size, const std::string& name) {
  size_t at = 8;  // after the signature
  while (size - at >= 8) {
    const uint32_t length = uint32_t{data[at]} << 24 | uint32_t{data[at + 1]} << 16 |
                            uint32_t{data[at + 2]} << 8 | uint32_t{data[at + 3]};
    std::string type(reinterpret_cast<const char*>(data + at + 4), 4);
    for (char& c : type)
      if (!std::isalpha(static_cast<unsigned char>(c))) c = '?';
    const size_t left = size - at - 8;  // bytes after the chunk's length and type
    if (length > left || left - length < 4)
      throw DataError(name + ": corrupt PNG: file ends early (truncated PNG): chunk '" + type +
                      "' at byte " + std::to_string(at) + " claims " + std::to_string(length) +
                      " bytes of data, but the file ends " + std::to_string(left) + " bytes later");
    if (type == "IEND") return;
    at += 12 + size_t{length};
  }
  // A file that ends between chunks: libpng reports it as truncated.
}

}  // namespace

DecodedImage decode_png(const uint8_t* data, size_t size, const std::string& name) {
  if (size < 8 || png_sig_cmp(data, 0, 8) != 0)
    throw DataError(name + ": not a PNG file (no PNG signature)");
  check_chunk_lengths(data, size, name);
  Source src{data, size, 0, {}};
  struct Guard {
    png_structp png = nullptr;
    png_infop info = nullptr;
    ~Guard() { png_destroy_read_struct(&png, info ? &info : nullptr, nullptr); }
  } g;
  g.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, on_error, on_warning);
  if (!g.png) throw DataError(name + ": libpng could not start");
  g.info = png_create_info_struct(g.png);
  if (!g.info) throw DataError(name + ": libpng could not start");
  png_set_read_fn(g.png, &src, on_read);
  auto fail = [&] { return DataError(name + ": corrupt PNG: " + src.error); };

  Layout layout{};
  if (!read_layout(g.png, g.info, &layout)) throw fail();
  if ((layout.channels != 1 && layout.channels != 3) ||
      layout.row_bytes != size_t{layout.width} * static_cast<size_t>(layout.channels))
    throw DataError(name + ": unsupported PNG layout (" + std::to_string(layout.channels) +
                    " channels, " + std::to_string(layout.row_bytes) + " bytes a row)");
  // The pixels are allocated before they are read, so a header's size claim is
  // checked first: the zlib stream lies inside the file, and deflate expands
  // at most 1032:1, so a 70-byte file cannot hold a 16384x16384 image (it
  // would otherwise cost 805 MB before the error; found by tests/fuzz).
  constexpr uint64_t kMaxDeflateRatio = 1032;
  if (layout.stored_pixel_bytes > uint64_t{size} * kMaxDeflateRatio)
    throw DataError(name + ": corrupt PNG: the header claims " + std::to_string(layout.width) +
                    "x" + std::to_string(layout.height) + " pixels (" +
                    std::to_string(layout.stored_pixel_bytes) + " bytes), more than the file's " +
                    std::to_string(size) + " bytes can hold compressed (truncated file?)");
  DecodedImage img;
  img.height = layout.height;
  img.width = layout.width;
  img.channels = layout.channels;
  img.pixels.resize(layout.row_bytes * layout.height);
  std::vector<png_bytep> rows(layout.height);
  for (uint32_t y = 0; y < layout.height; ++y) rows[y] = img.pixels.data() + y * layout.row_bytes;
  if (!read_rows(g.png, rows.data())) throw fail();
  return img;
}

DecodedImage read_png(const std::filesystem::path& path) {
  const std::vector<uint8_t> bytes = read_file_raw(path);
  return decode_png(bytes.data(), bytes.size(), path.string());
}

}  // namespace ddpm
