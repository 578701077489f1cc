#include "engine/data/idx.h"

#include <cstdio>
#include <string>
#include <vector>

#include "engine/data/file_bytes.h"

namespace ddpm {

namespace fs = std::filesystem;

namespace {

uint32_t big_endian_u32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// An IDX file of unsigned bytes: its sizes and where its data starts.
struct IdxFile {
  std::vector<uint8_t> bytes;
  std::vector<int64_t> dims;
  size_t header_bytes = 0;
};

IdxFile read_idx(const fs::path& path, uint32_t want_magic, const char* what) {
  IdxFile f;
  bool gz = false;
  f.bytes = read_file_bytes(path, &gz);
  const std::string name = path.string() + (gz ? " (after gunzip)" : "");
  const int ndims = static_cast<int>(want_magic & 0xff);
  if (f.bytes.size() < 4)
    throw DataError(name + ": " + std::to_string(f.bytes.size()) +
                    " bytes, too short for an IDX file");
  const uint32_t magic = big_endian_u32(f.bytes.data());
  if (magic != want_magic)
    throw DataError(name + ": not an IDX " + what + " file: magic " + hex32(magic) + ", expected " +
                    hex32(want_magic) + " (unsigned bytes, " + std::to_string(ndims) +
                    (ndims == 1 ? " dimension)" : " dimensions)"));
  f.header_bytes = 4 + 4 * static_cast<size_t>(ndims);
  if (f.bytes.size() < f.header_bytes)
    throw DataError(name + ": truncated: " + std::to_string(f.bytes.size()) +
                    " bytes, shorter than its " + std::to_string(f.header_bytes) +
                    "-byte IDX header");
  uint64_t payload = 1;
  std::string dims_text;
  for (int d = 0; d < ndims; ++d) {
    const uint32_t n = big_endian_u32(f.bytes.data() + 4 + 4 * d);
    if (n == 0 || n > 0x7fffffffu)
      throw DataError(name + ": IDX dimension " + std::to_string(d) + " is " + std::to_string(n) +
                      "; expected 1 to 2^31-1");
    f.dims.push_back(n);
    dims_text += (d ? " x " : "") + std::to_string(n);
    if (__builtin_mul_overflow(payload, uint64_t{n}, &payload))
      throw DataError(name + ": IDX sizes " + dims_text + " overflow");
  }
  const uint64_t expected = f.header_bytes + payload, found = f.bytes.size();
  if (found != expected)
    throw DataError(name + ": expected " + std::to_string(expected) + " bytes (" +
                    std::to_string(f.header_bytes) + "-byte header + " + dims_text +
                    " bytes), found " + std::to_string(found) +
                    (found < expected ? " (truncated)" : " (trailing bytes)"));
  return f;
}

}  // namespace

ImageDataset load_idx(const fs::path& images_path, const fs::path& labels_path) {
  IdxFile images = read_idx(images_path, 0x00000803, "image");
  ImageDataset ds;
  ds.count = images.dims[0];
  ds.height = images.dims[1];
  ds.width = images.dims[2];
  ds.channels = 1;
  ds.source = images_path.string();
  ds.pixels.assign(images.bytes.begin() + static_cast<std::ptrdiff_t>(images.header_bytes),
                   images.bytes.end());
  images.bytes = {};
  if (!labels_path.empty()) {
    const IdxFile labels = read_idx(labels_path, 0x00000801, "label");
    if (labels.dims[0] != ds.count)
      throw DataError(labels_path.string() + ": holds " + std::to_string(labels.dims[0]) +
                      " labels, but " + images_path.string() + " holds " +
                      std::to_string(ds.count) + " images");
    ds.labels.assign(labels.bytes.begin() + static_cast<std::ptrdiff_t>(labels.header_bytes),
                     labels.bytes.end());
  }
  return ds;
}

fs::path idx_labels_for(const fs::path& images_path) {
  std::string name = images_path.filename().string();
  const std::string from = "images-idx3", to = "labels-idx1";
  const size_t at = name.find(from);
  if (at == std::string::npos) return {};
  name.replace(at, from.size(), to);
  const fs::path labels = images_path.parent_path() / name;
  std::error_code ec;
  return fs::is_regular_file(labels, ec) ? labels : fs::path{};
}

}  // namespace ddpm
