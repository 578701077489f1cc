// The training batch's images on their way to the GPU. Only the gather is on
// the host: the images of the batch (the dataset's uint8 NHWC bytes, by
// index) are copied into pinned host memory on a worker thread while the GPU
// runs the step before, then uploaded with one asynchronous copy on the
// backend's stream, in order with the step that reads them. Flips, the
// conversion to [-1, 1], q_sample and the target happen on the device
// (kernels/training_batch.cuh).
//
// Two pinned buffers alternate. Before the worker writes one, it waits for
// the event recorded after that buffer's last copy (two steps back), so a
// copy never reads a buffer being rewritten; that wait is also what keeps the
// host at most about two steps ahead of the GPU. The worker touches CUDA only
// for that wait, and only between prefetch() and the next upload() or
// cancel(): a stream capture (which in global mode forbids synchronisation in
// every thread) must happen outside that window.
#pragma once

#include <cuda_runtime_api.h>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/pinned_buffer.h"
#include "engine/data/image_dataset.h"

namespace ddpm::cuda {

class BatchUploader {
 public:
  // Room for `batch` images of `data` in device memory and twice in pinned
  // host memory; starts the worker thread.
  BatchUploader(CudaBackend& backend, const ImageDataset& data, int64_t batch);
  ~BatchUploader();  // waits for the worker and for copies still reading pinned memory
  BatchUploader(const BatchUploader&) = delete;
  BatchUploader& operator=(const BatchUploader&) = delete;

  // [batch, height, width, channels] uint8: what the last upload() wrote.
  const uint8_t* device_images() const { return static_cast<const uint8_t*>(device_.data()); }

  // Enqueues the copy of the images `indices` (batch of them) to
  // device_images() on the backend's stream. Takes the batch prefetch()
  // gathered when it was these indices (waiting for the worker to finish it),
  // else gathers them now. Throws std::out_of_range for an index outside the
  // dataset, and whatever the worker's gather threw.
  void upload(std::span<const int64_t> indices);

  // Starts gathering `indices` into the other pinned buffer on the worker,
  // for the next upload().
  void prefetch(std::span<const int64_t> indices);

  // Waits for the worker and forgets what it gathered.
  void cancel();

 private:
  struct Job {
    std::vector<int64_t> indices;
    int buffer;
  };

  void gather(const std::vector<int64_t>& indices, int buffer);
  void wait_idle();  // rethrows the worker's error
  void run_worker();

  CudaBackend& backend_;
  const ImageDataset& data_;
  int64_t batch_;
  size_t bytes_;
  DeviceBuffer device_;
  PinnedBuffer pinned_[2];
  cudaEvent_t copied_[2] = {nullptr, nullptr};  // recorded after each buffer's last copy
  bool recorded_[2] = {false, false};
  int last_ = 1;  // the buffer of the last upload (the first gather takes buffer 0)

  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  std::optional<Job> job_;       // submitted, not yet finished
  std::optional<Job> gathered_;  // finished, not yet uploaded
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread worker_;  // last: started once everything above exists
};

}  // namespace ddpm::cuda
