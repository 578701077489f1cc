// ThreadSanitizer race check of the emulator (built in the TSan flavour only):
// runs the tiled matmul with its barriers ("with-barriers": TSan must stay
// silent) or with the barrier after the tile's use removed ("missing-barrier":
// TSan must report the shared-memory race). main returns 0 either way; TSan
// makes the exit status its exitcode (66) when it reported, and ctest checks
// the status and the report together (tests/expect_run.sh).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "tests/emulation/device_buffer.h"
#include "tests/emulation/test_kernels.cuh"

int main(int argc, char** argv) {
  using namespace ddpm::emu_test;
  const bool missing = argc > 1 && std::strcmp(argv[1], "missing-barrier") == 0;
  if (argc < 2 || (!missing && std::strcmp(argv[1], "with-barriers") != 0)) {
    std::fprintf(stderr, "usage: %s with-barriers|missing-barrier\n", argv[0]);
    return 2;
  }
  const int m = 32, n = 32, k = 48;  // 4 blocks of 16x16 threads, 3 tile steps: small for TSan
  std::vector<float> a(m * k), b(k * n);
  for (int i = 0; i < m * k; ++i) a[i] = float(i % 7) - 3.0f;
  for (int i = 0; i < k * n; ++i) b[i] = float(i % 5) - 2.0f;
  DeviceBuffer<float> da(a), db(b), dc(m * n);
  if (missing) {
    tiled_matmul_missing_barrier(da.get(), db.get(), dc.get(), m, n, k, nullptr);
  } else {
    tiled_matmul(da.get(), db.get(), dc.get(), m, n, k, nullptr);
  }
  const std::vector<float> c = dc.download();
  int wrong = 0;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      float ref = 0.0f;  // small integers: exact in fp32
      for (int p = 0; p < k; ++p) ref += a[i * k + p] * b[p * n + j];
      wrong += c[i * n + j] != ref;
    }
  std::printf("%s: %d of %d elements differ from the CPU product\n", argv[1], wrong, m * n);
  return 0;
}
