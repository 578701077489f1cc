// ThreadSanitizer race check of the emulator (built in the TSan flavour only),
// on two kernels, each with its barriers (TSan must stay silent) or with one
// removed (TSan must report the shared-memory race):
//   with-barriers / missing-barrier: the tiled matmul, without the barrier
//     after a tile's use;
//   cp-async-with-barrier / cp-async-missing-barrier: threads read another
//     thread's cp.async chunk after their own wait, with or without the
//     __syncthreads after the wait (the emulator performs a copy at its
//     thread's wait, as that thread's write).
// main returns 0 either way; TSan makes the exit status its exitcode (66) when
// it reported, and ctest checks the status and the report together
// (tests/expect_run.sh).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tests/emulation/device_buffer.h"
#include "tests/emulation/test_kernels.cuh"

namespace {

using namespace ddpm::emu_test;

void run_matmul(bool missing, const char* mode) {
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
  std::printf("%s: %d of %d elements differ from the CPU product\n", mode, wrong, m * n);
}

void run_async_copy(bool missing, const char* mode) {
  const int n = 64;
  std::vector<uint4> src(n);
  for (int i = 0; i < n; ++i) src[i] = uint4{unsigned(i), 1u, 2u, 3u};
  DeviceBuffer<uint4> dsrc(src), dout(n);
  async_copy_neighbour_read(dsrc.get(), dout.get(), n, /*barrier_after_wait=*/!missing, nullptr);
  const std::vector<uint4> out = dout.download();
  int wrong = 0;
  for (int t = 0; t < n; ++t) wrong += out[t].x != unsigned((t + 1) % n);
  std::printf("%s: %d of %d chunks differ from the neighbour's source\n", mode, wrong, n);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "with-barriers" || mode == "missing-barrier") {
    run_matmul(mode == "missing-barrier", mode.c_str());
  } else if (mode == "cp-async-with-barrier" || mode == "cp-async-missing-barrier") {
    run_async_copy(mode == "cp-async-missing-barrier", mode.c_str());
  } else {
    std::fprintf(stderr,
                 "usage: %s with-barriers|missing-barrier|cp-async-with-barrier|"
                 "cp-async-missing-barrier\n",
                 argv[0]);
    return 2;
  }
  return 0;
}
