// The safetensors reader: header length, header (safetensors_header.cpp),
// then the data region. Every check happens before anything it guards is
// allocated or read.
#include "engine/checkpoint/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "engine/checkpoint/safetensors_internal.h"

namespace ddpm {

namespace {

using safetensors_detail::Header;
using safetensors_detail::HeaderEntry;
using safetensors_detail::parse_header;

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw CheckpointError(source + ": " + what);
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Checks the header length N against the file's size; returns the size of
// the data region.
uint64_t check_header_length(uint64_t file_size, uint64_t n, const std::string& source) {
  if (n == 0) fail(source, "header length is 0; expected the length of a JSON object");
  if (n > kSafetensorsMaxHeaderBytes) {
    fail(source, "header length " + std::to_string(n) + " is over the " +
                     std::to_string(kSafetensorsMaxHeaderBytes) +
                     "-byte limit (not a safetensors file, or a corrupt one)");
  }
  if (n > file_size - 8) {
    fail(source, "header length " + std::to_string(n) + " runs past the end of the file (" +
                     std::to_string(file_size) + " bytes, so at most " +
                     std::to_string(file_size - 8) + " bytes of header; truncated file?)");
  }
  return file_size - 8 - n;
}

void check_file_size(uint64_t file_size, const std::string& source) {
  if (file_size < 8) {
    fail(source, "file is " + std::to_string(file_size) +
                     " bytes, too short for a safetensors file (the header length alone takes 8)");
  }
}

// An open file descriptor, closed on scope exit.
class ReadFile {
 public:
  explicit ReadFile(const std::filesystem::path& path) : path_(path.string()) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw CheckpointError("cannot open " + path_ + ": " + std::strerror(errno));
  }
  ~ReadFile() { ::close(fd_); }
  ReadFile(const ReadFile&) = delete;
  ReadFile& operator=(const ReadFile&) = delete;

  uint64_t size() const {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) fail(path_, std::string("cannot stat: ") + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) fail(path_, "not a regular file");
    return static_cast<uint64_t>(st.st_size);
  }

  // Reads exactly n bytes at the current position.
  void read_exact(uint8_t* dst, uint64_t n) {
    while (n > 0) {
      const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, uint64_t{1} << 30));
      const ssize_t r = ::read(fd_, dst, chunk);
      if (r < 0) {
        if (errno == EINTR) continue;
        fail(path_, std::string("read failed: ") + std::strerror(errno));
      }
      if (r == 0) fail(path_, "unexpected end of file (was it changed while being read?)");
      dst += r;
      n -= static_cast<uint64_t>(r);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace

StFile read_safetensors(const std::filesystem::path& path) {
  const std::string source = path.string();
  ReadFile file(path);
  const uint64_t file_size = file.size();
  check_file_size(file_size, source);
  uint8_t prefix[8];
  file.read_exact(prefix, 8);
  const uint64_t n = read_le64(prefix);
  const uint64_t data_size = check_header_length(file_size, n, source);

  Header header;
  {
    std::vector<uint8_t> text(n);
    file.read_exact(text.data(), n);
    header = parse_header(text, data_size, source);
  }
  // The entries tile the data region in order, so one sequential pass reads it.
  StFile out;
  out.metadata = std::move(header.metadata);
  for (HeaderEntry& e : header.entries) {
    StTensor t{e.dtype, std::move(e.shape), std::vector<uint8_t>(e.end - e.begin)};
    file.read_exact(t.data.data(), t.data.size());
    out.tensors.emplace(std::move(e.name), std::move(t));
  }
  return out;
}

StFile parse_safetensors(std::span<const uint8_t> bytes, const std::string& source_name) {
  check_file_size(bytes.size(), source_name);
  const uint64_t n = read_le64(bytes.data());
  const uint64_t data_size = check_header_length(bytes.size(), n, source_name);
  Header header = parse_header(bytes.subspan(8, n), data_size, source_name);
  const std::span<const uint8_t> data = bytes.subspan(8 + n);
  StFile out;
  out.metadata = std::move(header.metadata);
  for (HeaderEntry& e : header.entries) {
    const auto slice = data.subspan(e.begin, e.end - e.begin);
    out.tensors.emplace(std::move(e.name),
                        StTensor{e.dtype, std::move(e.shape), {slice.begin(), slice.end()}});
  }
  return out;
}

}  // namespace ddpm
