// Launches under the emulator: built-in index variables for 1-, 2- and 3-D
// grids and blocks, the configuration limits reported through cudaGetLastError
// (as a GPU reports them), streams, and the emulator's settings.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/emulation/emulator_api.h"
#include "tests/emulation/device_buffer.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {
namespace {

void expect_every_thread_recorded(dim3 grid, dim3 block) {
  const size_t per_block = size_t(block.x) * block.y * block.z;
  const size_t total = per_block * grid.x * grid.y * grid.z;
  DeviceBuffer<ThreadRecord> out(total);
  out.set_bytes(0xFF);
  record_indices(out.get(), grid, block, nullptr);
  const std::vector<ThreadRecord> records = out.download();
  size_t i = 0;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx)
        for (unsigned tz = 0; tz < block.z; ++tz)
          for (unsigned ty = 0; ty < block.y; ++ty)
            for (unsigned tx = 0; tx < block.x; ++tx, ++i) {
              const ThreadRecord& r = records[i];
              const std::vector<unsigned> got{r.thread[0],    r.thread[1],    r.thread[2],
                                              r.block[0],     r.block[1],     r.block[2],
                                              r.block_dim[0], r.block_dim[1], r.block_dim[2],
                                              r.grid_dim[0],  r.grid_dim[1],  r.grid_dim[2]};
              const std::vector<unsigned> want{tx,      ty,      tz,      bx,     by,     bz,
                                               block.x, block.y, block.z, grid.x, grid.y, grid.z};
              ASSERT_EQ(got, want) << "record " << i;
              ASSERT_EQ(r.warp_size, 32);
            }
}

TEST(EmulatedLaunch, IndicesOf1DGridAndOddBlock) {
  expect_every_thread_recorded(dim3(3), dim3(100));
}
TEST(EmulatedLaunch, IndicesOf2DGridAndBlock) {
  expect_every_thread_recorded(dim3(2, 3), dim3(8, 4));
}
TEST(EmulatedLaunch, IndicesOf3DGridAndBlock) {
  expect_every_thread_recorded(dim3(2, 2, 3), dim3(4, 3, 5));
}
TEST(EmulatedLaunch, IndicesOfLargestBlock) {
  expect_every_thread_recorded(dim3(2), dim3(32, 32));
}

// Launches the index kernel with a configuration and returns cudaGetLastError.
cudaError_t launch_error(dim3 grid, dim3 block, size_t shmem_bytes = 0) {
  DeviceBuffer<ThreadRecord> out(size_t(block.x) * block.y * block.z);
  launch_with_shared(out.get(), grid, block, shmem_bytes, nullptr);
  return cudaGetLastError();
}

// The codes are those an H200 gave under CUDA 13.0 (crosscheck_expected.txt):
// cudaErrorInvalidValue for every bad configuration.
TEST(EmulatedLaunch, BadConfigurationsAreReportedLikeOnTheGpu) {
  EXPECT_EQ(launch_error(dim3(1), dim3(1025)), cudaErrorInvalidValue);
  EXPECT_NE(ddpm::emu::last_error_detail().find("1025 threads"), std::string::npos)
      << ddpm::emu::last_error_detail();
  EXPECT_EQ(launch_error(dim3(1), dim3(1, 1, 65)), cudaErrorInvalidValue);
  EXPECT_EQ(launch_error(dim3(1), dim3(64, 32)), cudaErrorInvalidValue);  // 2048 threads
  EXPECT_EQ(launch_error(dim3(1, 65536), dim3(1)), cudaErrorInvalidValue);
  EXPECT_EQ(launch_error(dim3(0), dim3(32)), cudaErrorInvalidValue);
  EXPECT_EQ(launch_error(dim3(1), dim3(0)), cudaErrorInvalidValue);
  EXPECT_EQ(launch_error(dim3(1), dim3(1024)), cudaSuccess);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(EmulatedLaunch, DynamicSharedMemoryAbove48KbNeedsTheOptIn) {
  const void* kernel = record_indices_kernel_address();
  EXPECT_EQ(launch_error(dim3(1), dim3(32), 48 * 1024), cudaSuccess);
  EXPECT_EQ(launch_error(dim3(1), dim3(32), 48 * 1024 + 1), cudaErrorInvalidValue);
  EXPECT_NE(ddpm::emu::last_error_detail().find("cudaFuncSetAttribute"), std::string::npos)
      << ddpm::emu::last_error_detail();
  ASSERT_EQ(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024),
            cudaSuccess);
  EXPECT_EQ(launch_error(dim3(1), dim3(32), 100 * 1024), cudaSuccess);
  EXPECT_EQ(launch_error(dim3(1), dim3(32), 100 * 1024 + 1), cudaErrorInvalidValue);
  EXPECT_EQ(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 232449),
            cudaErrorInvalidValue)
      << "227 KB is the most a block may have";
  (void)cudaGetLastError();
  ASSERT_EQ(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 232448),
            cudaSuccess);
  EXPECT_EQ(launch_error(dim3(1), dim3(32), 232448), cudaSuccess);
  EXPECT_EQ(launch_error(dim3(1), dim3(32), 232449), cudaErrorInvalidValue);
}

TEST(EmulatedLaunch, StreamsAndEventsAreSynchronous) {
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  cudaEvent_t start, stop;
  ASSERT_EQ(cudaEventCreate(&start), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&stop), cudaSuccess);
  DeviceBuffer<ThreadRecord> out(64);
  ASSERT_EQ(cudaEventRecord(start, stream), cudaSuccess);
  record_indices(out.get(), dim3(2), dim3(32), stream);
  ASSERT_EQ(cudaEventRecord(stop, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  float ms = -1.0f;
  EXPECT_EQ(cudaEventElapsedTime(&ms, start, stop), cudaSuccess);
  EXPECT_GE(ms, 0.0f);
  EXPECT_EQ(out.download()[63].thread[0], 31u);
  EXPECT_EQ(cudaEventDestroy(start), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(stop), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
  launch_with_shared(out.get(), dim3(1), dim3(32), 0, stream);  // a destroyed stream
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidResourceHandle);
}

TEST(EmulatedLaunch, DevicePropertiesDescribeAnH100LikeDevice) {
  int count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  EXPECT_EQ(count, 1);
  cudaDeviceProp prop;
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  EXPECT_EQ(prop.warpSize, 32);
  EXPECT_EQ(prop.maxThreadsPerBlock, 1024);
  EXPECT_EQ(prop.sharedMemPerBlockOptin, size_t(232448));
  int sms = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), cudaSuccess);
  EXPECT_EQ(sms, prop.multiProcessorCount);
}

TEST(EmulatorSettings, WorkerCountAndFiberStackSize) {
  const int workers = ddpm::emu::worker_count();
  EXPECT_GE(workers, 1);
  const size_t stack = ddpm::emu::fiber_stack_bytes();
  EXPECT_GE(stack, size_t(64 * 1024));
  ddpm::emu::set_worker_count(1);
  ddpm::emu::set_fiber_stack_bytes(128 * 1024);
  EXPECT_EQ(ddpm::emu::worker_count(), 1);
  EXPECT_EQ(ddpm::emu::fiber_stack_bytes(), size_t(128 * 1024));
  expect_every_thread_recorded(dim3(4), dim3(64));  // runs with the new pool
  ddpm::emu::set_worker_count(workers);
  ddpm::emu::set_fiber_stack_bytes(stack);
}

}  // namespace
}  // namespace ddpm::emu_test
