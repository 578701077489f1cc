#include "engine/checkpoint/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <streambuf>
#include <string>
#include <vector>

namespace ddpm {
namespace {

std::string os_error(int err) {
  return std::strerror(err);
}

// A write-only streambuf on a file descriptor that remembers the first OS
// error (std::ofstream would lose errno, and with it the reason for a failure).
class FdWriteBuffer : public std::streambuf {
 public:
  explicit FdWriteBuffer(int fd) : fd_(fd), buffer_(size_t{1} << 16) { reset_put_area(); }

  int error() const { return error_; }

 protected:
  int_type overflow(int_type ch) override {
    if (!flush_buffer()) return traits_type::eof();
    if (!traits_type::eq_int_type(ch, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(ch);
      pbump(1);
    }
    return traits_type::not_eof(ch);
  }

  std::streamsize xsputn(const char* s, std::streamsize n) override {
    // Large blocks (tensor data) go straight to the file instead of through the buffer.
    if (n < static_cast<std::streamsize>(buffer_.size())) return std::streambuf::xsputn(s, n);
    if (!flush_buffer() || !write_all(s, static_cast<size_t>(n))) return 0;
    return n;
  }

  int sync() override { return flush_buffer() ? 0 : -1; }

 private:
  void reset_put_area() { setp(buffer_.data(), buffer_.data() + buffer_.size()); }

  bool flush_buffer() {
    const size_t n = static_cast<size_t>(pptr() - pbase());
    const bool ok = write_all(pbase(), n);
    reset_put_area();
    return ok;
  }

  bool write_all(const char* p, size_t n) {
    if (error_ != 0) return false;
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        error_ = errno;
        return false;
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }

  int fd_;
  std::vector<char> buffer_;
  int error_ = 0;
};

std::filesystem::path temporary_path_for(const std::filesystem::path& path) {
  // The pid keeps processes apart, the counter threads of one process.
  static std::atomic<unsigned> counter{0};
  std::string name = ".";
  name.append(path.filename().string()).append(".tmp-").append(std::to_string(::getpid()));
  name.append("-").append(std::to_string(counter++));
  return path.parent_path() / name;
}

// Makes the rename durable. Some filesystems cannot fsync a directory
// (EINVAL); the rename has happened either way, so that is not an error.
void fsync_directory(const std::filesystem::path& dir, const std::filesystem::path& target) {
  const std::filesystem::path d = dir.empty() ? std::filesystem::path(".") : dir;
  const int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    throw CheckpointError(target.string() + ": written, but cannot open its directory " +
                          d.string() + " to fsync it: " + os_error(errno));
  }
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL && err != ENOTSUP) {
    throw CheckpointError(target.string() + ": written, but fsync of its directory " + d.string() +
                          " failed: " + os_error(err));
  }
}

}  // namespace

void write_file_atomically(const std::filesystem::path& path,
                           const std::function<void(std::ostream&)>& writer) {
  if (path.filename().empty()) {
    throw CheckpointError(path.string() + ": not a file name (the path ends in a separator)");
  }
  const std::filesystem::path tmp = temporary_path_for(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) {
    throw CheckpointError("cannot write " + path.string() + ": cannot create temporary file " +
                          tmp.string() + ": " + os_error(errno));
  }
  // From here on every exit but success closes the descriptor and removes
  // the temporary file.
  auto fail = [&]() {
    if (fd >= 0) ::close(fd);
    fd = -1;
    ::unlink(tmp.c_str());
  };
  try {
    FdWriteBuffer buffer(fd);
    std::ostream out(&buffer);
    writer(out);
    out.flush();
    if (buffer.error() != 0) {
      throw CheckpointError("cannot write " + path.string() + ": writing " + tmp.string() +
                            " failed: " + os_error(buffer.error()));
    }
    if (!out) {
      throw CheckpointError("cannot write " + path.string() +
                            ": the writer left its stream in a failed state");
    }
    if (::fsync(fd) != 0) {
      throw CheckpointError("cannot write " + path.string() + ": fsync of " + tmp.string() +
                            " failed: " + os_error(errno));
    }
    const int rc = ::close(fd);
    fd = -1;
    if (rc != 0) {
      throw CheckpointError("cannot write " + path.string() + ": closing " + tmp.string() +
                            " failed: " + os_error(errno));
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      throw CheckpointError("cannot write " + path.string() + ": renaming " + tmp.string() +
                            " over it failed: " + os_error(errno));
    }
  } catch (...) {
    fail();
    throw;
  }
  fsync_directory(path.parent_path(), path);
}

void write_file_atomically(const std::filesystem::path& path, std::span<const uint8_t> bytes) {
  write_file_atomically(path, [bytes](std::ostream& out) {
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  });
}

void write_file_atomically(const std::filesystem::path& path, std::string_view text) {
  write_file_atomically(path, [text](std::ostream& out) {
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
  });
}

}  // namespace ddpm
