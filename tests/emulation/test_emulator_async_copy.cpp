// The emulator's cp.async model (kernels/emulation/async_copy_model.h) through
// kernels/async_copy.cuh: data lands at the wait and not before (the stage
// reads as 0xFF poison until then), wait_group<N> lands exactly the groups
// older than the N most recent, uncommitted copies wait for wait_all, invalid
// copies zero-fill without reading, misuse fails the launch with a message,
// copies never waited for do not leak into the next block, and a 3-stage
// pipeline written as the tensor-core kernels write it gets every chunk right.
// The ASan and TSan flavours run the same tests (the invalid copies' null
// source must not be read; the pipeline must be race-free).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/emulation/emulator_api.h"
#include "tests/emulation/device_buffer.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {
namespace {

constexpr uint4 kPoison{~0u, ~0u, ~0u, ~0u};  // the model's in-flight destination bytes
constexpr uint4 kZero{0, 0, 0, 0};

// Distinct words per chunk, none all-ones or zero.
std::vector<uint4> chunks(int count) {
  std::vector<uint4> v(count);
  for (int i = 0; i < count; ++i) {
    const unsigned base = 0x10000000u + 16u * unsigned(i);
    v[i] = uint4{base + 1, base + 2, base + 3, base + 4};
  }
  return v;
}

bool same(const uint4& a, const uint4& b) {
  return a.x == b.x && a.y == b.y && a.z == b.z && a.w == b.w;
}

std::string show(const uint4& v) {
  char text[64];
  std::snprintf(text, sizeof text, "{%08x %08x %08x %08x}", v.x, v.y, v.z, v.w);
  return text;
}

#define EXPECT_CHUNK(actual, expected, what) \
  EXPECT_TRUE(same(actual, expected)) << what << ": " << show(actual) << " != " << show(expected)

// Runs one case on `threads` threads with 3 * threads output chunks zeroed.
std::vector<uint4> run_case(AsyncCopyCase which, const std::vector<uint4>& src, int threads) {
  DeviceBuffer<uint4> dsrc(src), dout(3 * size_t(threads));
  dout.set_bytes(0);
  async_copy_case(which, dsrc.get(), dout.get(), threads, nullptr);
  return dout.download();
}

std::string kernel_error(const std::vector<uint4>& src, AsyncCopyCase which) {
  DeviceBuffer<uint4> dsrc(src), dout(3 * src.size());
  try {
    async_copy_case(which, dsrc.get(), dout.get(), int(src.size()), nullptr);
  } catch (const ddpm::emu::KernelError& e) {
    std::printf("[  caught  ] %s\n", e.what());
    return e.what();
  }
  ADD_FAILURE() << "the launch did not fail";
  return "";
}

void expect_contains(const std::string& text, const std::vector<std::string>& parts) {
  for (const std::string& part : parts)
    EXPECT_NE(text.find(part), std::string::npos) << "missing \"" << part << "\" in: " << text;
}

TEST(EmulatedAsyncCopy, DataLandsAtWaitZero) {
  const int n = 40;  // a full and a partial warp
  const auto src = chunks(n);
  const auto out = run_case(AsyncCopyCase::kWaitAll, src, n);
  for (int t = 0; t < n; ++t) EXPECT_CHUNK(out[t], src[t], "thread " << t);
}

TEST(EmulatedAsyncCopy, WaitOneLandsExactlyTheOlderOfTwoGroups) {
  const int n = 33;
  const auto src = chunks(2 * n);
  const auto out = run_case(AsyncCopyCase::kWaitOneOfTwo, src, n);
  for (int t = 0; t < n; ++t) {
    EXPECT_CHUNK(out[t], src[t], "first group after wait<1>, thread " << t);
    EXPECT_CHUNK(out[n + t], kPoison, "second group after wait<1> (in flight), thread " << t);
    EXPECT_CHUNK(out[2 * n + t], src[n + t], "second group after wait<0>, thread " << t);
  }
}

TEST(EmulatedAsyncCopy, InvalidCopiesZeroFillWithoutReadingTheSource) {
  const int n = 16;
  const auto src = chunks(n);
  const auto out = run_case(AsyncCopyCase::kZeroFill, src, n);  // odd threads: null source
  for (int t = 0; t < n; ++t) EXPECT_CHUNK(out[t], t % 2 ? kZero : src[t], "thread " << t);
}

TEST(EmulatedAsyncCopy, WaitGroupLeavesUncommittedCopiesToWaitAll) {
  const int n = 8;
  const auto src = chunks(2 * n);
  const auto out = run_case(AsyncCopyCase::kUncommitted, src, n);
  for (int t = 0; t < n; ++t) {
    EXPECT_CHUNK(out[t], src[t], "committed copy after wait<0>, thread " << t);
    EXPECT_CHUNK(out[n + t], kPoison, "uncommitted copy after wait<0>, thread " << t);
    EXPECT_CHUNK(out[2 * n + t], src[n + t], "uncommitted copy after wait_all, thread " << t);
  }
}

TEST(EmulatedAsyncCopy, ShortSourceZeroFillsTheRestOfTheCopy) {
  const int n = 34;  // source sizes 0..16 twice
  const auto src = chunks(n);
  const auto out = run_case(AsyncCopyCase::kPartialSource, src, n);
  for (int t = 0; t < n; ++t) {
    unsigned char expected[16] = {};
    std::memcpy(expected, &src[t], size_t(t % 17));
    EXPECT_EQ(std::memcmp(&out[t], expected, 16), 0)
        << "thread " << t << " (" << t % 17 << " source bytes): " << show(out[t]);
  }
}

TEST(EmulatedAsyncCopy, MisalignedAddressesFailTheLaunch) {
  const auto src = chunks(8);
  expect_contains(kernel_error(src, AsyncCopyCase::kMisalignedDestination),
                  {"async_copy_case_kernel", "block (0,0,0)", "cp.async", "thread (3,0,0)",
                   "the shared destination is not 16-byte aligned"});
  expect_contains(
      kernel_error(src, AsyncCopyCase::kMisalignedSource),
      {"async_copy_case_kernel", "thread (3,0,0)", "the global source is not 16-byte aligned"});
  // The emulator works on afterwards.
  const auto out = run_case(AsyncCopyCase::kWaitAll, src, 8);
  EXPECT_CHUNK(out[7], src[7], "after the failed launches");
}

TEST(EmulatedAsyncCopy, DestinationOutsideSharedMemoryFailsTheLaunch) {
  const auto src = chunks(4);
  expect_contains(kernel_error(src, AsyncCopyCase::kGlobalDestination),
                  {"async_copy_case_kernel", "thread (2,0,0)",
                   "the destination is not in the block's shared memory"});
}

TEST(EmulatedAsyncCopy, CopiesNeverWaitedForDoNotLeakIntoTheNextBlock) {
  const int workers = ddpm::emu::worker_count();
  ddpm::emu::set_worker_count(1);  // blocks 0, 1, 2 in order on one worker, one TLS
  const int n = 32, blocks = 3;
  const auto src = chunks(n);
  DeviceBuffer<uint4> dsrc(src), dout(size_t(blocks) * n);
  dout.set_bytes(0);
  async_copy_leak(dsrc.get(), dout.get(), blocks, n, nullptr);
  ddpm::emu::set_worker_count(workers);
  const auto out = dout.download();
  for (int t = 0; t < n; ++t) EXPECT_CHUNK(out[t], kZero, "block 0 writes nothing, thread " << t);
  for (int b = 1; b < blocks; ++b)
    for (int t = 0; t < n; ++t)
      EXPECT_CHUNK(out[b * n + t], kPoison, "block " << b << " stage, thread " << t);
}

TEST(EmulatedAsyncCopy, BarrierAfterTheWaitPublishesOtherThreadsCopies) {
  const int n = 48;
  const auto src = chunks(n);
  DeviceBuffer<uint4> dsrc(src), dout(n);
  async_copy_neighbour_read(dsrc.get(), dout.get(), n, /*barrier_after_wait=*/true, nullptr);
  const auto out = dout.download();
  for (int t = 0; t < n; ++t) EXPECT_CHUNK(out[t], src[(t + 1) % n], "thread " << t);
}

TEST(EmulatedAsyncCopy, ThreeStagePipelineWithTail) {
  for (const int count : {75, 32, 5}) {  // 3 tiles with a tail, one full tile, one partial
    const int padded = (count + 31) / 32 * 32;
    const auto src = chunks(count);
    DeviceBuffer<uint4> dsrc(src), dout(padded);
    async_copy_pipeline(dsrc.get(), count, dout.get(), nullptr);
    const auto out = dout.download();
    for (int i = 0; i < padded; ++i) {
      const int c = i / 32 * 32 + (i % 32 + 5) % 32;
      EXPECT_CHUNK(out[i], c < count ? src[c] : kZero, count << " chunks, out[" << i << "]");
    }
  }
}

}  // namespace
}  // namespace ddpm::emu_test
