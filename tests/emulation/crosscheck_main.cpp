// One program, two builds: linked with the emulator (g++), or with cudart and
// the kernels built by nvcc (gpu/CMakeLists.txt), it runs the test kernels and
// prints what must be identical on both: integers, bit patterns, launch error
// names, exactly representable sums. Both builds' output is compared with
// crosscheck_expected.txt, recorded on a GPU (see that file's first line).
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "tests/emulation/device_buffer.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {
namespace {

std::string hex_words(const std::vector<unsigned>& words) {
  std::string text;
  char word[16];
  for (unsigned w : words) {
    std::snprintf(word, sizeof word, " %08x", w);
    text += word;
  }
  return text;
}

void print_philox() {
  DeviceBuffer<unsigned> raw(8);
  philox_raw(0, 0, 0, raw.get(), 8, nullptr);
  std::printf("philox curand(seed 0, subsequence 0, offset 0):%s\n",
              hex_words(raw.download()).c_str());
  philox_raw(1234, 5, 6, raw.get(), 8, nullptr);
  std::printf("philox curand(seed 1234, subsequence 5, offset 6):%s\n",
              hex_words(raw.download()).c_str());

  DeviceBuffer<float> uniform(8);
  philox_uniform(1234, 7, 3, uniform.get(), 1, 8, nullptr);
  std::printf("philox curand_uniform(1234, 7, 3):");
  for (float v : uniform.download()) std::printf(" %a", double(v));  // exact bits
  std::printf("\n");

  DeviceBuffer<float> normal(4 * 4);
  philox_normal4(42, normal.get(), 4, nullptr);
  std::printf("philox curand_normal4(42), 4 decimals:");
  for (float v : normal.download()) std::printf(" %.4f", double(v));
  std::printf("\n");
}

void print_launch_errors() {
  const auto error_of = [](dim3 grid, dim3 block, size_t shmem) {
    DeviceBuffer<ThreadRecord> out(size_t(block.x) * block.y * block.z * grid.x * grid.y * grid.z);
    launch_with_shared(out.get(), grid, block, shmem, nullptr);
    const cudaError_t launch = cudaGetLastError();
    const cudaError_t sync = cudaDeviceSynchronize();
    return std::string(cudaGetErrorName(launch)) + "/" + cudaGetErrorName(sync);
  };
  std::printf("launch block 1024: %s\n", error_of(dim3(1), dim3(1024), 0).c_str());
  std::printf("launch block 1025: %s\n", error_of(dim3(1), dim3(1025), 0).c_str());
  std::printf("launch block (1,1,65): %s\n", error_of(dim3(1), dim3(1, 1, 65), 0).c_str());
  std::printf("launch grid (1,65536,1): %s\n", error_of(dim3(1, 65536), dim3(1), 0).c_str());
  std::printf("launch block 0: %s\n", error_of(dim3(1), dim3(0), 0).c_str());
  std::printf("launch 48 KB dynamic shared: %s\n", error_of(dim3(1), dim3(32), 48 * 1024).c_str());
  std::printf("launch 48 KB + 1 without opt-in: %s\n",
              error_of(dim3(1), dim3(32), 48 * 1024 + 1).c_str());
  const void* kernel = record_indices_kernel_address();
  std::printf("opt-in 100 KB: %s\n",
              cudaGetErrorName(cudaFuncSetAttribute(
                  kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024)));
  std::printf("launch 100 KB after opt-in: %s\n", error_of(dim3(1), dim3(32), 100 * 1024).c_str());
  std::printf("launch 100 KB + 1 after opt-in: %s\n",
              error_of(dim3(1), dim3(32), 100 * 1024 + 1).c_str());
  std::printf("opt-in 232449 bytes: %s\n",
              cudaGetErrorName(cudaFuncSetAttribute(
                  kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 232449)));
  (void)cudaGetLastError();
  std::printf("opt-in 232448 bytes: %s\n",
              cudaGetErrorName(cudaFuncSetAttribute(
                  kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 232448)));
  std::printf("launch 232448 after opt-in: %s\n", error_of(dim3(1), dim3(32), 232448).c_str());
}

void print_warp_results() {
  const int threads = 100;  // a partial last warp of 4 lanes
  std::vector<int> x(threads), predicate(threads);
  std::iota(x.begin(), x.end(), 1);
  for (int i = 0; i < threads; ++i) predicate[i] = (i % 3 == 0) || (i >= 64 && i < 96);
  DeviceBuffer<int> dx(x), scan(threads);
  warp_inclusive_scan(dx.get(), scan.get(), threads, nullptr);
  const std::vector<int> s = scan.download();
  std::printf("warp scan on 100 threads, last of each warp: %d %d %d %d\n", s[31], s[63], s[95],
              s[99]);

  DeviceBuffer<int> dp(predicate), any(4), all(4), counts(3);
  DeviceBuffer<unsigned> ballots(4);
  warp_votes(dp.get(), ballots.get(), any.get(), all.get(), counts.get(), threads, nullptr);
  const auto a = any.download(), l = all.download(), c = counts.download();
  std::printf("votes on 100 threads: ballots%s any %d %d %d %d all %d %d %d %d counts %d %d %d\n",
              hex_words(ballots.download()).c_str(), a[0], a[1], a[2], a[3], l[0], l[1], l[2], l[3],
              c[0], c[1], c[2]);

  std::vector<int> key(32);
  for (int i = 0; i < 32; ++i) key[i] = i % 3 - 1;
  DeviceBuffer<int> dkey(key), sums(32), maxes(32);
  DeviceBuffer<unsigned> match(32);
  warp_match_and_reduce(dkey.get(), match.get(), sums.get(), maxes.get(), nullptr);
  const auto m = match.download();
  std::printf("match_any lanes 0-2:%s reduce_add %d reduce_max %d\n",
              hex_words({m[0], m[1], m[2]}).c_str(), sums.download()[0], maxes.download()[0]);

  std::vector<float> values(1000);
  for (int i = 0; i < 1000; ++i) values[i] = float(i % 17) - 8.0f;  // exact sums in fp32
  DeviceBuffer<float> dv(values), block_sums(4);
  for (bool use_xor : {true, false}) {
    block_sum(dv.get(), block_sums.get(), 1000, 4, 128, use_xor, nullptr);
    const auto b = block_sums.download();
    std::printf("block sums (%s): %g %g %g %g\n", use_xor ? "xor" : "down", double(b[0]),
                double(b[1]), double(b[2]), double(b[3]));
  }
}

void print_memory_results() {
  DeviceBuffer<unsigned> counter(std::vector<unsigned>{0});
  atomic_count(counter.get(), 50, 8, 128, nullptr);
  std::printf("atomic count: %u\n", counter.download()[0]);

  const int n = 200;
  std::vector<int> x(n);
  for (int i = 0; i < n; ++i) x[i] = (i * 37) % 101 - 50;
  DeviceBuffer<int> dx(x),
      results(std::vector<int>{std::numeric_limits<int>::min(), std::numeric_limits<int>::max(), 0,
                               0, -1, 0, 1000});
  DeviceBuffer<double> dsum(std::vector<double>{0.0});
  DeviceBuffer<__half> hsum(std::vector<__half>{__float2half(0.0f)});
  DeviceBuffer<__nv_bfloat16> bsum(std::vector<__nv_bfloat16>{__float2bfloat16(0.0f)});
  atomic_mix(dx.get(), n, results.get(), dsum.get(), hsum.get(), bsum.get(), nullptr);
  const auto r = results.download();
  std::printf("atomics max %d min %d cas %d wins %d inc %d sub %d double %g half %g bf16 %g\n",
              r[0], r[1], r[2], r[3], r[5], r[6], dsum.download()[0],
              double(__half2float(hsum.download()[0])),
              double(__bfloat162float(bsum.download()[0])));

  std::vector<float> ramp(1000);
  std::iota(ramp.begin(), ramp.end(), 0.0f);
  DeviceBuffer<float> dramp(ramp), reversed(1000);
  reverse_in_blocks(dramp.get(), reversed.get(), 1000, 96, nullptr);
  const auto y = reversed.download();
  std::printf("dynamic shared reverse: y[0] %g y[95] %g y[960] %g y[999] %g\n", double(y[0]),
              double(y[95]), double(y[960]), double(y[999]));
}

void print_matmul_result() {
  const int m = 37, n = 29, k = 45;
  std::vector<float> a(m * k), b(k * n);
  for (int i = 0; i < m * k; ++i) a[i] = float(i % 7) - 3.0f;
  for (int i = 0; i < k * n; ++i) b[i] = float(i % 5) - 2.0f;
  DeviceBuffer<float> da(a), db(b), dc(m * n);
  tiled_matmul(da.get(), db.get(), dc.get(), m, n, k, nullptr);
  const auto c = dc.download();
  long long checksum = 0;  // small integers: every product and sum is exact in fp32
  for (float v : c) checksum += static_cast<long long>(v);
  std::printf("tiled matmul 37x29x45 checksum: %lld c[0] %g c[last] %g\n", checksum, double(c[0]),
              double(c.back()));
}

// ldmatrix forms on four 8x8 matrices of 16-bit 0x0mrc (matrix m, row r,
// column c), each row in its own permuted 16-byte slot, and a 3-stage
// cp.async pipeline with a zero-filled tail (ldmatrix_kernels.cu).
void print_tile_primitives() {
  std::vector<uint4> image(32);
  std::vector<int> lane_slot(32);
  for (int m = 0; m < 4; ++m)
    for (int r = 0; r < 8; ++r) {
      const int slot = (13 * (8 * m + r) + 7) % 32;
      uint16_t row[8];
      for (int c = 0; c < 8; ++c) row[c] = uint16_t((m << 8) | (r << 4) | c);
      std::memcpy(&image[slot], row, sizeof row);
      lane_slot[8 * m + r] = slot;
    }
  DeviceBuffer<uint4> dimage(image);
  DeviceBuffer<int> dslots(lane_slot);
  DeviceBuffer<uint32_t> out(32 * 4);
  const std::pair<LdsmForm, const char*> forms[] = {{LdsmForm::kX1, "x1"},
                                                    {LdsmForm::kX2, "x2"},
                                                    {LdsmForm::kX4, "x4"},
                                                    {LdsmForm::kX1Trans, "x1.trans"},
                                                    {LdsmForm::kX2Trans, "x2.trans"},
                                                    {LdsmForm::kX4Trans, "x4.trans"}};
  for (const auto& [form, name] : forms) {
    ldmatrix_load(form, dimage.get(), dslots.get(), out.get(), nullptr);
    const std::vector<uint32_t> r = out.download();
    std::vector<unsigned> words;
    for (int lane : {0, 5, 14, 31})
      for (int j = 0; j < ldsm_registers(form); ++j) words.push_back(r[4 * lane + j]);
    std::printf("ldmatrix %s lanes 0 5 14 31:%s\n", name, hex_words(words).c_str());
  }

  const int chunks = 75;  // 3 tiles of 32, the last 11 chunks short
  std::vector<uint4> src(chunks);
  for (int i = 0; i < chunks; ++i)
    src[i] = uint4{unsigned(i), 0x100u + unsigned(i), 0x200u + unsigned(i), 0x300u + unsigned(i)};
  DeviceBuffer<uint4> dsrc(src), dout(96);
  async_copy_pipeline(dsrc.get(), chunks, dout.get(), nullptr);
  const std::vector<uint4> o = dout.download();
  unsigned sum = 0;
  for (const uint4& v : o) sum += v.x + v.y + v.z + v.w;
  std::printf("cp.async 3-stage pipeline, 75 chunks: word sum %08x out[0]%s out[70]%s out[95]%s\n",
              sum, hex_words({o[0].x, o[0].y, o[0].z, o[0].w}).c_str(),
              hex_words({o[70].x, o[70].y, o[70].z, o[70].w}).c_str(),
              hex_words({o[95].x, o[95].y, o[95].z, o[95].w}).c_str());
}

}  // namespace
}  // namespace ddpm::emu_test

int main() {
  using namespace ddpm::emu_test;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: the GPU cross-check is skipped\n");
    return 0;
  }
  print_philox();
  print_launch_errors();
  print_warp_results();
  print_memory_results();
  print_matmul_result();
  print_tile_primitives();
  return 0;
}
