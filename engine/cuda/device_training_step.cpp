// DeviceTrainingStep (device_training_step.h): the device-resident training
// step, its graph, its metrics ring.
#include "engine/cuda/device_training_step.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>

#include "engine/cpu/diffusion.h"
#include "engine/cuda/batch_uploader.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_graph.h"
#include "engine/cuda/cuda_parameter_updater.h"
#include "engine/cuda/nvtx_ranges.h"
#include "engine/cuda/pinned_buffer.h"
#include "kernels/check.cuh"
#include "kernels/training_batch.cuh"

namespace ddpm {

namespace {

using kernels::TrainingMetrics;

kernels::TrainingBatchConfig batch_config(const TrainingStepContext& c) {
  kernels::TrainingBatchConfig k;
  k.batch = c.config.training.batch_size;
  k.height = c.data.height;
  k.width = c.data.width;
  k.channels = c.data.channels;
  k.seed = c.config.training.seed;
  k.num_train_timesteps = c.config.scheduler.num_train_timesteps;
  k.random_flip = c.config.training.random_flip;
  k.prediction =
      kernels::PredictionType(int(parse_prediction_type(c.config.scheduler.prediction_type)));
  return k;
}

int64_t checked_capacity(const TrainingStepOptions& o) {
  if (o.metrics_capacity < 1 || o.metrics_capacity > (int64_t(1) << 24))
    throw std::invalid_argument("cuda training step: metrics_capacity " +
                                std::to_string(o.metrics_capacity) + " outside [1, 2^24]");
  return o.metrics_capacity;
}

float* floats(const Tensor& t) {
  return static_cast<float*>(t.data);
}

class DeviceTrainingStep final : public TrainingStep {
 public:
  DeviceTrainingStep(const TrainingStepContext& c, CudaBackend& backend)
      : backend_(backend),
        ex_(c.executor),
        unet_(c.unet),
        batch_(batch_config(c)),
        use_graph_(c.options.graph),
        capacity_(checked_capacity(c.options)),
        updater_(backend, c.executor.parameters(), c.optimizer),
        uploader_(backend, c.data, c.config.training.batch_size),
        tables_(backend, 2 * size_t(batch_.num_train_timesteps) * sizeof(float)),
        draws_(backend, size_t(batch_.batch) * (sizeof(int32_t) + sizeof(uint8_t))),
        state_(backend, sizeof(DeviceState)),
        ring_(backend, size_t(capacity_) * sizeof(TrainingMetrics)),
        ring_host_(size_t(capacity_) * sizeof(TrainingMetrics)) {
    for (const auto& [value, name] : {std::pair{unet_.sample, "sample"},
                                      {unet_.timesteps, "timesteps"},
                                      {unet_.target, "target"},
                                      {unet_.loss, "loss"}}) {
      const Tensor t = ex_.value(value);
      const bool bf16_sample = value == unet_.sample && t.dtype == DType::bf16;
      if ((t.dtype != DType::f32 && !bf16_sample) || t.device != Device::cuda)
        throw std::invalid_argument(std::string("cuda training step: the graph's ") + name +
                                    " is not an f32 CUDA tensor (the sample may be bf16)");
    }
    if (ex_.value(unet_.sample).numel() != batch_.batch * c.data.image_size() ||
        ex_.value(unet_.timesteps).numel() != batch_.batch)
      throw std::invalid_argument("cuda training step: the graph's batch is not the config's");
    // The forward process's tables, rounded once from the scheduler's doubles.
    std::vector<float> tables;
    for (int64_t i = 0; i < batch_.num_train_timesteps; ++i)
      tables.push_back(float(c.scheduler.sqrt_alpha_cumprod(i)));
    for (int64_t i = 0; i < batch_.num_train_timesteps; ++i)
      tables.push_back(float(c.scheduler.sqrt_one_minus_alpha_cumprod(i)));
    backend_.copy_from_host(tables_.data(), tables.data(), tables.size() * sizeof(float));
    // Grown once here, so that no step (eager or captured) allocates.
    backend_.reserve_workspace(unet_.graph, /*training=*/true);
    const DeviceState zero{};
    backend_.copy_from_host(state_.data(), &zero, sizeof zero);
    DDPM_CUDA_CHECK(cudaEventCreateWithFlags(&metrics_copied_, cudaEventDisableTiming));
  }

  ~DeviceTrainingStep() override {
    // Steps in flight still use the buffers freed after this.
    const cudaError_t e = cudaStreamSynchronize(backend_.stream());
    if (e != cudaSuccess)
      std::fprintf(stderr, "cuda training step: cudaStreamSynchronize failed: %s\n",
                   cudaGetErrorString(e));
    cudaEventDestroy(metrics_copied_);
  }

  void enqueue(int64_t step, std::span<const int64_t> batch,
               std::span<const int64_t> next_batch) override {
    if (step != next_step_)
      throw std::logic_error("cuda training step: step " + std::to_string(step) +
                             " enqueued where step " + std::to_string(next_step_) + " comes next");
    if (step > int64_t(UINT32_MAX))
      throw std::invalid_argument("cuda training step: step " + std::to_string(step) +
                                  " beyond the device counter's 2^32 - 1");
    if (pending_ == capacity_) drain();  // the ring would overwrite uncollected steps
    {
      const nvtx::Range range("batch upload", nvtx::Phase::data);
      uploader_.upload(batch);
    }
    const cudaStream_t stream = backend_.stream();
    if (use_graph_ && eager_steps_ > 0) {
      // The graph holds the backend's scratch workspace by address. Another
      // graph on the same backend (sampling with the EMA weights at a larger
      // batch) may have grown it, i.e. reallocated it: then capture again.
      // The workspace only grows, so its capacity tells.
      backend_.reserve_workspace(unet_.graph, /*training=*/true);  // nothing inside may allocate
      const std::string key =
          "training step, workspace of " + std::to_string(backend_.workspace_capacity()) + " bytes";
      // The uploader's worker is idle here (upload() waited for it): nothing
      // synchronises in another thread while the capture runs.
      if (!graph_.matches(key))
        graph_.capture(
            stream, [this] { enqueue_step_body(); }, key);
    }
    if (!graph_.empty()) {
      graph_.launch(stream);
    } else {
      enqueue_step_body();
      ++eager_steps_;
    }
    ++pending_;
    ++next_step_;
    if (!next_batch.empty()) uploader_.prefetch(next_batch);
  }

  std::vector<StepMetrics> collect() override {
    if (pending_ > 0) drain();
    return std::exchange(collected_, {});
  }

  void restore(int64_t step) override {
    if (step < 0 || step >= int64_t(UINT32_MAX))
      throw std::invalid_argument("cuda training step: cannot continue from step " +
                                  std::to_string(step));
    uploader_.cancel();
    backend_.synchronize();  // steps in flight finish before the counter changes
    const auto step32 = uint32_t(step);
    backend_.copy_from_host(&state()->step, &step32, sizeof step32);
    next_step_ = step + 1;
    pending_ = 0;
    collected_.clear();
  }

  std::vector<float> read(ParameterUpdater::Slot slot) const override {
    return updater_.read(slot);
  }
  void write(ParameterUpdater::Slot slot, std::span<const float> values) override {
    updater_.write(slot, values);
  }

 private:
  // What the step keeps in device memory between launches.
  struct DeviceState {
    uint32_t step;  // the last step begun (begin_training_step advances it)
    float norm;     // the step's gradient norm (the optimizer writes it)
  };

  DeviceState* state() const { return static_cast<DeviceState*>(state_.data()); }

  // Everything between the upload and the next step: what the graph holds.
  // No allocation, no host copy, no synchronisation.
  void enqueue_step_body() {
    const cudaStream_t stream = backend_.stream();
    uint32_t* step = &state()->step;
    auto* t = static_cast<int32_t*>(draws_.data());
    auto* flip = reinterpret_cast<uint8_t*>(t + batch_.batch);
    const auto* sqrt_abar = static_cast<const float*>(tables_.data());
    const float* sqrt_one_minus_abar = sqrt_abar + batch_.num_train_timesteps;
    {
      const nvtx::Range range("batch: timesteps, flips, q_sample, target", nvtx::Phase::data);
      kernels::begin_training_step(step, t, floats(ex_.value(unet_.timesteps)), flip, batch_,
                                   stream);
      const Tensor sample = ex_.value(unet_.sample);
      if (sample.dtype == DType::bf16)  // a mixed-precision graph reads x_t in bf16
        kernels::prepare_training_batch(uploader_.device_images(), flip, t, sqrt_abar,
                                        sqrt_one_minus_abar, step,
                                        static_cast<__nv_bfloat16*>(sample.data),
                                        floats(ex_.value(unet_.target)), batch_, stream);
      else
        kernels::prepare_training_batch(uploader_.device_images(), flip, t, sqrt_abar,
                                        sqrt_one_minus_abar, step, floats(sample),
                                        floats(ex_.value(unet_.target)), batch_, stream);
    }
    // The kernels read the step from device memory (dropout masks): `step`
    // here is never used, so a replay is keyed on the current step.
    const RunContext ctx{batch_.seed, 0, true, step};
    {
      const nvtx::Range range("forward and loss", nvtx::Phase::forward);
      ex_.forward(ctx);
    }
    {
      const nvtx::Range range("backward", nvtx::Phase::backward);
      ex_.backward(ctx);
    }
    const nvtx::Range range("optimizer: clip, AdamW, EMA", nvtx::Phase::optimizer);
    updater_.enqueue(ex_.parameters(), ex_.gradients(), step, &state()->norm, ex_.parameter_copy());
    kernels::record_training_metrics(step, floats(ex_.value(unet_.loss)), &state()->norm,
                                     static_cast<TrainingMetrics*>(ring_.data()), capacity_,
                                     stream);
  }

  // Reads the pending steps' metrics from the ring into collected_: one or
  // two copies (the ring wraps) and one wait.
  void drain() {
    const int64_t first = next_step_ - pending_;  // the oldest pending step
    const int64_t slot = (first - 1) % capacity_;
    const int64_t head = std::min(pending_, capacity_ - slot);
    const cudaStream_t stream = backend_.stream();
    auto* host = static_cast<TrainingMetrics*>(ring_host_.data());
    const auto* device = static_cast<const TrainingMetrics*>(ring_.data());
    DDPM_CUDA_CHECK(cudaMemcpyAsync(host + slot, device + slot, size_t(head) * sizeof *host,
                                    cudaMemcpyDeviceToHost, stream));
    if (pending_ > head)
      DDPM_CUDA_CHECK(cudaMemcpyAsync(host, device, size_t(pending_ - head) * sizeof *host,
                                      cudaMemcpyDeviceToHost, stream));
    DDPM_CUDA_CHECK(cudaEventRecord(metrics_copied_, stream));
    DDPM_CUDA_CHECK(cudaEventSynchronize(metrics_copied_));
    for (int64_t s = first; s < next_step_; ++s) {
      const TrainingMetrics& m = host[(s - 1) % capacity_];
      StepMetrics out;
      out.step = s;
      out.loss = m.loss;
      out.grad_norm = m.grad_norm;
      collected_.push_back(out);
    }
    pending_ = 0;
  }

  CudaBackend& backend_;
  Executor& ex_;
  const UNetGraph& unet_;
  const kernels::TrainingBatchConfig batch_;
  const bool use_graph_;
  const int64_t capacity_;
  CudaParameterUpdater updater_;
  cuda::BatchUploader uploader_;
  DeviceBuffer tables_;  // sqrt_abar [T], then sqrt_one_minus_abar [T]
  DeviceBuffer draws_;   // the step's t [batch] (int32), then flips [batch] (uint8)
  DeviceBuffer state_;   // DeviceState
  DeviceBuffer ring_;    // TrainingMetrics [capacity]: step s in slot (s - 1) % capacity
  cuda::PinnedBuffer ring_host_;
  cudaEvent_t metrics_copied_ = nullptr;
  cuda::CapturedGraph graph_;
  int64_t eager_steps_ = 0;  // run by this process
  int64_t next_step_ = 1;
  int64_t pending_ = 0;  // steps enqueued whose metrics are still only in the ring
  std::vector<StepMetrics> collected_;
};

}  // namespace

std::unique_ptr<TrainingStep> make_cuda_training_step(const TrainingStepContext& c) {
  auto* cuda = dynamic_cast<CudaBackend*>(&c.backend);
  if (!cuda)
    throw std::invalid_argument("cuda training step: needs the CUDA backend, got " +
                                c.backend.name());
  if (&c.executor.backend() != &c.backend)
    throw std::invalid_argument("cuda training step: the executor runs on another backend");
  return std::make_unique<DeviceTrainingStep>(c, *cuda);
}

}  // namespace ddpm
