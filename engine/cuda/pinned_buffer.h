// Page-locked host memory (cudaMallocHost), which the GPU copies to and from
// asynchronously: a cudaMemcpyAsync from pageable memory returns only once
// the copy is done (a host synchronisation), from pinned memory it does not.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdio>
#include <utility>

#include "kernels/check.cuh"

namespace ddpm::cuda {

class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes_) DDPM_CUDA_CHECK(cudaMallocHost(&data_, bytes_));
  }
  ~PinnedBuffer() { reset(); }
  PinnedBuffer(PinnedBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      data_ = std::exchange(o.data_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  // The owner makes sure no copy still reads or writes the memory.
  void reset() noexcept {
    if (data_) {
      const cudaError_t e = cudaFreeHost(data_);
      if (e != cudaSuccess)
        std::fprintf(stderr, "cudaFreeHost failed: %s\n", cudaGetErrorString(e));
    }
    data_ = nullptr;
    bytes_ = 0;
  }

  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace ddpm::cuda
