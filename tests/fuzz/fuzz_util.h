// Helpers shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>

namespace ddpm::fuzz {

// The readers that take a path get the current input through one in-memory
// file (memfd_create), reached as /proc/self/fd/N: no disk traffic, and
// nothing is left behind when the fuzzer stops.
class InputFile {
 public:
  InputFile();
  // Replaces the file's contents with data[0, size).
  void write(const uint8_t* data, size_t size);
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// The process-wide input file.
InputFile& input_file();

// Called with the reader's exception when an input is rejected. With
// DDPM_FUZZ_VERBOSE set in the environment it prints the message (to read a
// reproducer's outcome); with DDPM_FUZZ_EXPECT_ACCEPT set it fails the run
// (the fuzz.<harness>.valid tests: seeds that must load).
void rejected(const std::exception& e);

// Stops the run as a finding (libFuzzer saves the input) when a property the
// harness checks does not hold.
[[noreturn]] void property_failed(const char* what);

}  // namespace ddpm::fuzz
