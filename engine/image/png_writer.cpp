// libpng reports errors by longjmp. The function holding the setjmp keeps only
// trivial locals and the callbacks jump with nothing alive that has a
// destructor; the C++ caller outside turns a failed call into an ImageError.
#include "engine/image/png_writer.h"

#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <string>

#include "engine/checkpoint/atomic_file.h"
#include "engine/image/image_error.h"

namespace ddpm {

namespace {

struct Sink {  // the callbacks' state
  std::vector<uint8_t>* out;
  char error[256];
};

void on_error(png_structp png, png_const_charp message) {
  auto* sink = static_cast<Sink*>(png_get_error_ptr(png));
  std::snprintf(sink->error, sizeof sink->error, "%s", message);
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}

void on_write(png_structp png, png_bytep data, size_t n) {
  auto* sink = static_cast<Sink*>(png_get_io_ptr(png));
  bool ok = true;
  try {
    sink->out->insert(sink->out->end(), data, data + n);
  } catch (...) {
    ok = false;
  }
  if (!ok) png_error(png, "out of memory");  // after the catch: no exception is alive
}

void on_flush(png_structp) {}

// The shared atomic writer reports I/O errors as CheckpointError; image output
// reports ImageError, the same message.
void write_bytes_atomically(const std::filesystem::path& path, std::span<const uint8_t> bytes) {
  try {
    write_file_atomically(path, bytes);
  } catch (const CheckpointError& e) {
    throw ImageError(e.what());
  }
}

bool encode(png_structp png, png_infop info, uint32_t width, uint32_t height, int color,
            png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_IHDR(png, info, width, height, 8, color, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, info);
  return true;
}

}  // namespace

std::vector<uint8_t> encode_png(const uint8_t* hwc, int64_t height, int64_t width,
                                int64_t channels) {
  if (channels != 1 && channels != 3)
    throw ImageError("PNG: " + std::to_string(channels) +
                     " channels; only 1 (grey) and 3 (RGB) are written");
  if (height < 1 || width < 1 || height > 0x7fffffff || width > 0x7fffffff)
    throw ImageError("PNG: image size " + std::to_string(width) + "x" + std::to_string(height) +
                     " is not 1 to 2^31-1 on each side");
  std::vector<uint8_t> out;
  Sink sink{&out, {}};
  struct Guard {
    png_structp png = nullptr;
    png_infop info = nullptr;
    ~Guard() { png_destroy_write_struct(&png, info ? &info : nullptr); }
  } g;
  g.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, on_error, on_warning);
  if (!g.png) throw ImageError("PNG: libpng could not start");
  g.info = png_create_info_struct(g.png);
  if (!g.info) throw ImageError("PNG: libpng could not start");
  png_set_write_fn(g.png, &sink, on_write, on_flush);
  std::vector<png_bytep> rows(static_cast<size_t>(height));
  for (int64_t y = 0; y < height; ++y)
    rows[static_cast<size_t>(y)] = const_cast<png_bytep>(hwc + y * width * channels);
  if (!encode(g.png, g.info, static_cast<uint32_t>(width), static_cast<uint32_t>(height),
              channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, rows.data()))
    throw ImageError(std::string("PNG: libpng: ") + sink.error);
  return out;
}

void write_png(const std::filesystem::path& path, const uint8_t* hwc, int64_t height, int64_t width,
               int64_t channels) {
  std::vector<uint8_t> bytes;
  try {
    bytes = encode_png(hwc, height, width, channels);
  } catch (const ImageError& e) {
    throw ImageError(path.string() + ": " + e.what());
  }
  write_bytes_atomically(path, bytes);
}

void write_png(const std::filesystem::path& path, const Image8& image) {
  if (image.pixels.size() != static_cast<size_t>(image.height * image.width * image.channels))
    throw ImageError(path.string() + ": image holds " + std::to_string(image.pixels.size()) +
                     " bytes, not height x width x channels");
  write_png(path, image.pixels.data(), image.height, image.width, image.channels);
}

}  // namespace ddpm
