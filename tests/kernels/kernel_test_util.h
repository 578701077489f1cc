// Shared pieces of the kernel tests. The same test sources build twice: with
// the nvcc-built kernels and CUDA's runtime (label gpu, skipped without a
// device), and with the kernel sources compiled by g++ under the emulator
// (labels emulated / sanitize; DDPM_KERNEL_TESTS_EMULATED is defined), whose
// runtime implements cudaMalloc & co on host memory. The CPU backend is the
// oracle in both.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/random.h"

namespace ddpm::testing {

inline bool device_available() {
#if DDPM_KERNEL_TESTS_EMULATED
  return true;
#else
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return n > 0;
#endif
}

// Skips (visibly) a GPU test where there is no device; emulated tests always run.
#define DDPM_REQUIRE_DEVICE()               \
  if (!::ddpm::testing::device_available()) \
  GTEST_SKIP() << "no CUDA device: GPU kernel test skipped"

inline void check_cuda(cudaError_t e, const char* what) {
  ASSERT_EQ(e, cudaSuccess) << what << ": " << cudaGetErrorString(e);
}

// Device memory filled with 0xFF bytes (NaN for floats) so unwritten outputs show.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) {
    if (n_ && cudaMalloc(reinterpret_cast<void**>(&p_), n_ * sizeof(T)) != cudaSuccess)
      throw std::runtime_error("cudaMalloc of " + std::to_string(n_ * sizeof(T)) + " bytes failed");
    poison();
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() {
    if (p_) cudaFree(p_);
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }
  void poison() {
    if (n_) cudaMemset(p_, 0xFF, n_ * sizeof(T));
  }
  void upload(const std::vector<T>& host) {
    if (host.size() != n_) throw std::invalid_argument("DeviceArray::upload: size mismatch");
    if (n_) cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice);
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    cudaDeviceSynchronize();
    if (n_) cudaMemcpy(host.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
  }

 private:
  size_t n_ = 0;
  T* p_ = nullptr;
};

// n elements `offset` elements past kGuard guard elements of a poisoned
// (0xFF: NaN) allocation, with kGuard more after them: download() fails the
// test if a guard was written. kGuard floats keep 16-byte alignment, so offset
// 0 takes a kernel's vector path and offset 1 its scalar path.
template <typename T = float>
class GuardedSlice {
 public:
  static constexpr size_t kGuard = 8;
  GuardedSlice(size_t n, size_t offset = 0)
      : store_(n + offset + 2 * kGuard), n_(n), at_(kGuard + offset) {}
  GuardedSlice(const std::vector<T>& v, size_t offset) : GuardedSlice(v.size(), offset) {
    upload(v);
  }
  T* get() const { return store_.get() + at_; }
  void poison() { store_.poison(); }
  void upload(const std::vector<T>& v) {
    ASSERT_EQ(v.size(), n_);
    if (n_)
      check_cuda(cudaMemcpy(get(), v.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  std::vector<T> download() const {
    const std::vector<T> all = store_.download();
    for (size_t i = 0; i < all.size(); ++i) {
      if (i >= at_ && i < at_ + n_) continue;
      unsigned char bytes[sizeof(T)];
      std::memcpy(bytes, &all[i], sizeof(T));
      for (unsigned char byte : bytes)
        if (byte != 0xFF) {
          ADD_FAILURE() << "guard element " << i << " outside the output was written";
          break;
        }
    }
    return std::vector<T>(all.begin() + long(at_), all.begin() + long(at_ + n_));
  }

 private:
  DeviceArray<T> store_;
  size_t n_, at_;
};

// n draws of scale * N(0, 1) (never all zeros), reproducible from seed.
inline std::vector<float> random_floats(size_t n, uint64_t seed, double scale = 1.0) {
  Philox rng(seed, 77);
  std::vector<float> v(n);
  for (float& x : v) x = float(scale * rng.normal());
  return v;
}

// |got - want| <= atol + rtol * |want| for every element, and every element
// finite (a NaN left from the poison means an output was never written).
inline void expect_close(const std::vector<float>& got, const std::vector<double>& want,
                         double atol, double rtol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i]))
        << what << ": element " << i << " not written (or not finite)";
    ASSERT_NEAR(got[i], want[i], atol + rtol * std::abs(want[i])) << what << ": element " << i;
  }
}

// |got - want| <= tol elementwise, every element finite (a NaN left from the
// poison means an output was never written); records the worst error /
// tolerance ratio (how much of the derived bound is used). G: float or double.
template <typename G>
void expect_within(const std::vector<G>& got, const std::vector<double>& want,
                   const std::vector<double>& tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_EQ(tol.size(), want.size()) << what;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i]))
        << what << ": element " << i << " not written (or not finite)";
    ASSERT_LE(std::abs(double(got[i]) - want[i]), tol[i])
        << what << ": element " << i << " got " << got[i] << " want " << want[i];
    if (tol[i] > 0) worst = std::max(worst, std::abs(double(got[i]) - want[i]) / tol[i]);
  }
  ::testing::Test::RecordProperty(what + "_worst_error_over_tolerance", std::to_string(worst));
}

// f() throws std::invalid_argument whose message names `who` (the function)
// and contains `needle` (what was wrong); anything else fails the test.
template <typename F>
void expect_invalid_argument(const char* who, const char* needle, F&& f) {
  try {
    f();
    ADD_FAILURE() << "no error mentioning '" << needle << "'";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(who), std::string::npos) << what;
    EXPECT_NE(what.find(needle), std::string::npos) << what;
  }
}

// gtest's name of a test parameter that carries its own `name` (the last
// argument of INSTANTIATE_TEST_SUITE_P).
struct ParamName {
  template <typename P>
  std::string operator()(const ::testing::TestParamInfo<P>& i) const {
    return std::string(i.param.name);
  }
};

inline std::vector<double> to_double(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

}  // namespace ddpm::testing
