// AddressSanitizer check of the emulator (built in the ASan flavour only): each
// of 64 threads writes dynamic shared tile[threadIdx.x + shift] of a 64-float
// tile. "in-bounds" (shift 0) must run clean; "one-past" (shift 1) makes the
// last thread write one float past the block's shared memory, which ASan must
// report (the emulator gives each block's dynamic shared memory an exact-size
// heap region).
#include <cstdio>
#include <cstring>

#include "tests/emulation/device_buffer.h"
#include "tests/emulation/test_kernels.cuh"

int main(int argc, char** argv) {
  using namespace ddpm::emu_test;
  const bool one_past = argc > 1 && std::strcmp(argv[1], "one-past") == 0;
  if (argc < 2 || (!one_past && std::strcmp(argv[1], "in-bounds") != 0)) {
    std::fprintf(stderr, "usage: %s in-bounds|one-past\n", argv[0]);
    return 2;
  }
  const int threads = 64;
  DeviceBuffer<float> out(threads);
  shared_tile_write(out.get(), threads, one_past ? 1 : 0, nullptr);
  std::printf("%s: out[5] = %g\n", argv[1], double(out.download()[5]));
  return 0;
}
