// BatchUploader (batch_uploader.h): the pinned double buffer, its events and
// the gather thread.
#include "engine/cuda/batch_uploader.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "kernels/check.cuh"

namespace ddpm::cuda {

namespace {

void log_cuda_error(cudaError_t e, const char* call) {
  if (e != cudaSuccess)
    std::fprintf(stderr, "batch uploader: %s failed: %s (%s)\n", call, cudaGetErrorName(e),
                 cudaGetErrorString(e));
}

}  // namespace

BatchUploader::BatchUploader(CudaBackend& backend, const ImageDataset& data, int64_t batch)
    : backend_(backend),
      data_(data),
      batch_(batch),
      bytes_(size_t(batch) * size_t(data.image_size())),
      device_(backend, bytes_),
      pinned_{PinnedBuffer(bytes_), PinnedBuffer(bytes_)} {
  if (batch < 1) throw std::invalid_argument("batch uploader: batch must be >= 1");
  for (cudaEvent_t& e : copied_)
    DDPM_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  worker_ = std::thread([this] { run_worker(); });
}

BatchUploader::~BatchUploader() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  worker_.join();
  for (int b = 0; b < 2; ++b) {
    // A copy may still read the pinned buffer freed after this.
    if (recorded_[b]) log_cuda_error(cudaEventSynchronize(copied_[b]), "cudaEventSynchronize");
    log_cuda_error(cudaEventDestroy(copied_[b]), "cudaEventDestroy");
  }
}

void BatchUploader::gather(const std::vector<int64_t>& indices, int buffer) {
  // The copy of two steps back must have read this buffer.
  if (recorded_[buffer]) DDPM_CUDA_CHECK(cudaEventSynchronize(copied_[buffer]));
  auto* dst = static_cast<uint8_t*>(pinned_[buffer].data());
  const auto per_image = size_t(data_.image_size());
  for (size_t b = 0; b < indices.size(); ++b) {
    const int64_t i = indices[b];
    if (i < 0 || i >= data_.count)
      throw std::out_of_range("batch uploader: image " + std::to_string(i) + " of a dataset of " +
                              std::to_string(data_.count));
    std::memcpy(dst + b * per_image, data_.image(i), per_image);
  }
}

void BatchUploader::run_worker() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || job_.has_value(); });
    if (stop_) return;
    Job job = *job_;
    lock.unlock();
    std::exception_ptr error;
    try {
      gather(job.indices, job.buffer);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    if (error)
      error_ = error;
    else
      gathered_ = std::move(job);
    job_.reset();
    idle_.notify_all();
  }
}

void BatchUploader::wait_idle() {
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [&] { return !job_.has_value(); });
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void BatchUploader::upload(std::span<const int64_t> indices) {
  if (int64_t(indices.size()) != batch_)
    throw std::invalid_argument("batch uploader: " + std::to_string(indices.size()) +
                                " images for a batch of " + std::to_string(batch_));
  wait_idle();
  int buffer = last_ ^ 1;
  if (gathered_ && std::equal(indices.begin(), indices.end(), gathered_->indices.begin(),
                              gathered_->indices.end()))
    buffer = gathered_->buffer;
  else
    gather(std::vector<int64_t>(indices.begin(), indices.end()), buffer);
  gathered_.reset();
  const cudaStream_t stream = backend_.stream();
  DDPM_CUDA_CHECK(cudaMemcpyAsync(device_.data(), pinned_[buffer].data(), bytes_,
                                  cudaMemcpyHostToDevice, stream));
  DDPM_CUDA_CHECK(cudaEventRecord(copied_[buffer], stream));
  recorded_[buffer] = true;
  last_ = buffer;
}

void BatchUploader::prefetch(std::span<const int64_t> indices) {
  if (int64_t(indices.size()) != batch_)
    throw std::invalid_argument("batch uploader: " + std::to_string(indices.size()) +
                                " images to prefetch for a batch of " + std::to_string(batch_));
  wait_idle();
  {
    std::lock_guard lock(mutex_);
    gathered_.reset();
    job_ = Job{std::vector<int64_t>(indices.begin(), indices.end()), last_ ^ 1};
  }
  wake_.notify_one();
}

void BatchUploader::cancel() {
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [&] { return !job_.has_value(); });
  error_ = nullptr;  // a discarded gather's failure does not matter
  gathered_.reset();
}

}  // namespace ddpm::cuda
