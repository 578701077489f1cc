// The in-memory input file and the property check of the fuzz harnesses.
#include "fuzz_util.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace ddpm::fuzz {

InputFile::InputFile() {
  fd_ = memfd_create("ddpm_fuzz_input", MFD_CLOEXEC);
  if (fd_ < 0) {
    std::perror("memfd_create");
    std::abort();
  }
  path_ = "/proc/self/fd/" + std::to_string(fd_);
}

void InputFile::write(const uint8_t* data, size_t size) {
  if (ftruncate(fd_, 0) != 0) property_failed("ftruncate of the input file failed");
  size_t done = 0;
  while (done < size) {
    const ssize_t n = pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) property_failed("write of the input file failed");
    done += static_cast<size_t>(n);
  }
}

InputFile& input_file() {
  static InputFile file;
  return file;
}

void rejected(const std::exception& e) {
  static const bool verbose = std::getenv("DDPM_FUZZ_VERBOSE") != nullptr;
  static const bool expect_accept = std::getenv("DDPM_FUZZ_EXPECT_ACCEPT") != nullptr;
  if (verbose || expect_accept) std::fprintf(stderr, "rejected: %s\n", e.what());
  if (expect_accept) property_failed("a valid input was rejected (DDPM_FUZZ_EXPECT_ACCEPT)");
}

void property_failed(const char* what) {
  std::fprintf(stderr, "fuzz property failed: %s\n", what);
  std::abort();
}

}  // namespace ddpm::fuzz
