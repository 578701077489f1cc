// The emulator's own checks, each on a deliberately broken kernel: divergent
// barriers and warp operations, shuffles reading lanes outside their mask, and
// __trap() all make the launch throw ddpm::emu::KernelError naming the kernel,
// the block and the threads. The emulator keeps working afterwards.
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "kernels/emulation/emulator_api.h"
#include "tests/emulation/device_buffer.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {
namespace {

// Runs `launch`, expects a KernelError, and returns (and prints) its message.
std::string kernel_error(const std::function<void()>& launch) {
  std::string message;
  EXPECT_THROW(
      {
        try {
          launch();
        } catch (const ddpm::emu::KernelError& e) {
          message = e.what();
          throw;
        }
      },
      ddpm::emu::KernelError);
  std::printf("[  caught  ] %s\n", message.c_str());
  return message;
}

void expect_contains(const std::string& text, const std::vector<std::string>& parts) {
  for (const std::string& part : parts)
    EXPECT_NE(text.find(part), std::string::npos) << "missing \"" << part << "\" in: " << text;
}

TEST(EmulatorChecks, ThreadsReturningBeforeABarrierAreDivergent) {
  DeviceBuffer<float> x(64);
  const std::string message =
      kernel_error([&] { early_return_before_barrier(x.get(), 64, 40, nullptr); });
  expect_contains(message,
                  {"early_return_kernel", "block (0,0,0)", "divergent __syncthreads",
                   "thread (40,0,0) exited", "40 threads (0,0,0)-(39,0,0)", "bug_kernels.cu:"});
}

TEST(EmulatorChecks, BarriersInBothBranchesAreDivergent) {
  DeviceBuffer<float> x(32);
  const std::string message = kernel_error([&] { barrier_in_branches(x.get(), 32, nullptr); });
  expect_contains(message, {"barrier_in_branches_kernel", "divergent __syncthreads",
                            "thread (1,0,0) reached the barrier at", "bug_kernels.cu:"});
}

TEST(EmulatorChecks, WarpOperationWithMaskExcludingItsCaller) {
  DeviceBuffer<float> out(32);
  expect_contains(
      kernel_error([&] { warp_misuse(WarpMisuse::kMaskExcludesCaller, out.get(), nullptr); }),
      {"__shfl_sync", "lane 0", "mask 0xfffffffe", "does not include its own lane"});
}

TEST(EmulatorChecks, DifferentShufflesInOneWarpAreDivergent) {
  DeviceBuffer<float> out(32);
  expect_contains(
      kernel_error([&] { warp_misuse(WarpMisuse::kDivergentShuffles, out.get(), nullptr); }),
      {"divergent warp operation", "__shfl_down_sync", "__shfl_xor_sync"});
}

TEST(EmulatorChecks, ShuffleReadingALaneOutsideTheMask) {
  DeviceBuffer<float> out(32);
  expect_contains(
      kernel_error([&] { warp_misuse(WarpMisuse::kReadOutsideMask, out.get(), nullptr); }),
      {"__shfl_xor_sync", "mask 0x0000ffff", "reads lane 16", "not in the mask"});
}

TEST(EmulatorChecks, FullMaskShuffleOnAPartialWarpReadsMissingLanes) {
  DeviceBuffer<float> out(100);
  expect_contains(
      kernel_error([&] { warp_misuse(WarpMisuse::kShflPartialWarp, out.get(), nullptr); }),
      {"__shfl_down_sync", "thread (96,0,0)", "reads lane 16", "does not exist", "100 threads"});
}

TEST(EmulatorChecks, BarrierWhileTheWarpShufflesIsDivergent) {
  DeviceBuffer<float> out(32);
  expect_contains(
      kernel_error([&] { warp_misuse(WarpMisuse::kShuffleThenBarrier, out.get(), nullptr); }),
      {"divergent warp", "thread (0,0,0) waits at __syncthreads", "__shfl_xor_sync"});
}

TEST(EmulatorChecks, TrapAbortsTheKernel) {
  DeviceBuffer<float> out(32);
  expect_contains(kernel_error([&] { trap_in_kernel(out.get(), nullptr); }),
                  {"trap_kernel", "__trap() called at", "by thread (3,0,0)"});
}

// A fiber stack overrun faults on the guard page; the emulator names it before
// the process dies. Sanitizer builds report the SIGSEGV themselves instead.
TEST(EmulatorChecksDeathTest, FiberStackOverflowIsNamed) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "sanitizers install their own SIGSEGV handler";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // the worker threads make fork() unsafe
  if (ddpm::emu::fiber_stack_bytes() >= 128 * 1024) GTEST_SKIP() << "fiber stacks too large";
  DeviceBuffer<float> out(std::vector<float>(32, 1.0f));
  EXPECT_DEATH(stack_overflow_in_kernel(out.get(), nullptr),
               "ddpm emulator: a CUDA thread of kernel 'stack_hog_kernel' overflowed its [0-9]+ KB "
               "fiber stack");
}

TEST(EmulatorChecks, EmulatorKeepsWorkingAfterAnAbortedKernel) {
  DeviceBuffer<float> x(64);
  EXPECT_THROW(early_return_before_barrier(x.get(), 64, 10, nullptr), ddpm::emu::KernelError);
  EXPECT_THROW(warp_misuse(WarpMisuse::kDivergentShuffles, x.get(), nullptr),
               ddpm::emu::KernelError);
  // A correct kernel on the same workers and fibers.
  const int m = 20, n = 20, k = 20;
  DeviceBuffer<float> a(std::vector<float>(m * k, 1.0f)), b(std::vector<float>(k * n, 2.0f));
  DeviceBuffer<float> c(m * n);
  tiled_matmul(a.get(), b.get(), c.get(), m, n, k, nullptr);
  for (float v : c.download()) EXPECT_EQ(v, 2.0f * k);
}

}  // namespace
}  // namespace ddpm::emu_test
