#include "engine/data/file_bytes.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "engine/data/data_error.h"

namespace ddpm {

namespace fs = std::filesystem;

std::vector<uint8_t> read_file_raw(const fs::path& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) throw DataError(path.string() + ": no such file");
  if (!fs::is_regular_file(st)) throw DataError(path.string() + ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path.string() + ": cannot open: " + std::strerror(errno));
  const auto size = static_cast<size_t>(fs::file_size(path, ec));
  if (ec) throw DataError(path.string() + ": cannot read its size: " + ec.message());
  std::vector<uint8_t> bytes(size);
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
  if (static_cast<size_t>(in.gcount()) != size)
    throw DataError(path.string() + ": read " + std::to_string(in.gcount()) + " of " +
                    std::to_string(size) + " bytes");
  return bytes;
}

namespace {

// Inflates every gzip member in `in` (gzip allows several, concatenated).
std::vector<uint8_t> gunzip(const std::vector<uint8_t>& in, const fs::path& path) {
  std::vector<uint8_t> out;
  // ISIZE, the last four bytes, is the uncompressed size mod 2^32: a good first
  // guess. It is only a claim (a corrupt 20-byte file may say 4 GiB; found by
  // tests/fuzz), so it is capped at what the input could inflate to: deflate
  // expands at most 1032:1 (258 bytes from a 2-bit code).
  if (in.size() >= 18) {
    const size_t n = in.size();
    const uint32_t isize = uint32_t{in[n - 4]} | uint32_t{in[n - 3]} << 8 |
                           uint32_t{in[n - 2]} << 16 | uint32_t{in[n - 1]} << 24;
    constexpr size_t kMaxDeflateRatio = 1032;
    out.reserve(std::min({size_t{isize}, size_t{1} << 31, n * kMaxDeflateRatio}));
  }
  struct Inflater {
    z_stream z{};
    ~Inflater() { inflateEnd(&z); }
  } inflater;
  z_stream& z = inflater.z;
  if (inflateInit2(&z, 15 + 16) != Z_OK) throw DataError(path.string() + ": zlib init failed");
  size_t consumed = 0;
  uint8_t chunk[1 << 16];
  while (true) {
    // zlib counts in uInt; feed at most 1 GiB at a time.
    const size_t left = in.size() - consumed;
    z.avail_in = static_cast<uInt>(std::min<size_t>(left, size_t{1} << 30));
    z.next_in = const_cast<Bytef*>(in.data() + consumed);
    const uInt fed = z.avail_in;
    z.next_out = chunk;
    z.avail_out = sizeof chunk;
    const int rc = inflate(&z, Z_NO_FLUSH);
    consumed += fed - z.avail_in;
    out.insert(out.end(), chunk, chunk + (sizeof chunk - z.avail_out));
    if (rc == Z_STREAM_END) {
      // Another member may follow; anything else after the end is ignored, as gzip does.
      if (in.size() - consumed >= 2 && in[consumed] == 0x1f && in[consumed + 1] == 0x8b) {
        inflateReset(&z);
        continue;
      }
      break;
    }
    if (rc == Z_OK) continue;
    // Z_BUF_ERROR: no progress with fresh output space, so the input ran out.
    const std::string why = rc == Z_BUF_ERROR ? "the compressed stream ends early (truncated?)"
                            : z.msg           ? std::string("corrupt compressed data: ") + z.msg
                                              : "corrupt compressed data";
    throw DataError(path.string() + ": gzip: " + why + " after " + std::to_string(out.size()) +
                    " uncompressed bytes");
  }
  return out;
}

}  // namespace

bool is_gzip(const std::vector<uint8_t>& bytes) {
  return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

std::vector<uint8_t> read_file_bytes(const fs::path& path, bool* was_gzip) {
  std::vector<uint8_t> bytes = read_file_raw(path);
  const bool gz = is_gzip(bytes);
  if (was_gzip) *was_gzip = gz;
  return gz ? gunzip(bytes, path) : bytes;
}

}  // namespace ddpm
