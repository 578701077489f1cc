// The one interface between the graph executor and a device: memory, and the
// forward and backward rule of every op. The CPU backend implements it with
// plain C++; the CUDA backend with the kernels in kernels/.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>

#include "engine/graph.h"

namespace ddpm {

// A model, batch or buffer that does not fit in the device's memory; the
// message says what was planned and what is available.
class OutOfMemoryError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What a step needs besides tensors. `seed` and `step` key every random draw
// (dropout masks), so a step replays identically.
struct RunContext {
  uint64_t seed = 0;
  uint64_t step = 0;
  bool training = false;
  // Where a device backend's kernels read the step instead of `step` (its low
  // 32 bits, in device memory), so that a captured training step keys each
  // replay on the current step. Null: `step`. The CPU backend ignores it.
  const uint32_t* device_step = nullptr;
};

// A gradient destination: absent (data == nullptr) when no gradient is wanted;
// `accumulate` false means overwrite (the first contribution), true means add.
struct GradTensor {
  Tensor tensor;
  bool accumulate = true;
};

struct ForwardArgs {
  std::span<const Tensor> inputs;
  std::span<const Tensor> outputs;
  const RunContext& ctx;
};

// Inputs and outputs the backward rule does not read (OpSignature's saved_*
// bits) may be passed undefined. A grad_output that is undefined is zero.
struct BackwardArgs {
  std::span<const Tensor> inputs;
  std::span<const Tensor> outputs;
  std::span<const Tensor> grad_outputs;
  std::span<const GradTensor> grad_inputs;
  const RunContext& ctx;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual std::string name() const = 0;

  virtual void* allocate(size_t bytes) = 0;
  // Bytes an allocation can still get now (the CPU: MemAvailable; a GPU:
  // cudaMemGetInfo's free), or SIZE_MAX when unknown. For clear errors.
  virtual size_t available_memory() const { return SIZE_MAX; }
  virtual void deallocate(void* p) noexcept = 0;
  virtual void fill_zero(void* p, size_t bytes) = 0;
  virtual void copy_from_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void synchronize() {}
  // Sets the one-element tensor `t` (the loss gradient backward starts from)
  // to 1, in order with the ops. A device backend does it without a host
  // synchronisation, so a captured training step replays it; this default
  // copies from the host.
  virtual void set_to_one(const Tensor& t) {
    const double one64 = 1;
    const float one32 = 1;
    if (t.dtype == DType::f64)
      copy_from_host(t.data, &one64, sizeof one64);
    else
      copy_from_host(t.data, &one32, sizeof one32);
  }

  // dst = src rounded to dst's dtype (nearest even), both `n` elements of
  // this device's memory: the bf16 copy of fp32 master weights. This
  // default goes through the host (with a synchronisation); a device backend
  // overrides it with a kernel in stream order.
  virtual void convert(const Tensor& src, const Tensor& dst);

  virtual void forward(const Node& node, const ForwardArgs& args) = 0;
  virtual void backward(const Node& node, const BackwardArgs& args) = 0;
};

// Device memory owned by one allocation of a backend.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Backend& backend, size_t bytes)
      : backend_(&backend), bytes_(bytes), data_(bytes ? backend.allocate(bytes) : nullptr) {}
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    reset();
    backend_ = o.backend_;
    bytes_ = o.bytes_;
    data_ = o.data_;
    o.data_ = nullptr;
    o.bytes_ = 0;
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { reset(); }

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  void reset() noexcept {
    if (data_) backend_->deallocate(data_);
    data_ = nullptr;
  }
  Backend* backend_ = nullptr;
  size_t bytes_ = 0;
  void* data_ = nullptr;
};

}  // namespace ddpm
