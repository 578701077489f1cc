// CudaSamplingLoop: the reverse process of a batch on the device, eager or as
// CUDA graphs (device_sampler.h).
#include "engine/cuda/device_sampler.h"

#include <cuda_bf16.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_graph.h"
#include "engine/cuda/nvtx_ranges.h"
#include "engine/cuda/pinned_buffer.h"
#include "kernels/check.cuh"
#include "kernels/convert.cuh"
#include "kernels/diffusion.cuh"

namespace ddpm {

namespace {

namespace k = kernels;

using cuda::PinnedBuffer;

k::NoiseUpdateStep to_kernel(const StepCoefficients& c) {
  return k::NoiseUpdateStep{float(c.x0_from_x),       float(c.x0_from_model), float(c.clip_range),
                            int32_t(c.clip),          float(c.prev_from_x0),  float(c.prev_from_x),
                            float(c.prev_from_model), float(c.sigma),         int32_t(c.timestep)};
}

class CudaSamplingLoop final : public SamplingLoop {
 public:
  CudaSamplingLoop(Executor& ex, const UNetGraph& unet);

  SamplingGraph resolve(SamplingGraph requested, std::string* why) const override;
  void sample(const Scheduler& scheduler, const SamplerOptions& options,
              std::vector<float>& out) override;

 private:
  void upload(const std::vector<k::NoiseUpdateStep>& table, const SamplerOptions& o);
  void run(SamplingGraph mode, int64_t steps, const std::function<void(int64_t)>& before_step);
  void enqueue_prologue();
  void enqueue_step(std::optional<cudaGraphConditionalHandle> loop);
  void warm_up();

  Executor& ex_;
  CudaBackend& backend_;
  cudaStream_t stream_;
  int64_t batch_, per_image_;
  // x_t, updated in place: the UNet's `sample` input, or in a mixed-precision
  // graph an fp32 state (x_state_) whose bf16 rounding is the input, written
  // by each update (the trajectory accumulates in fp32, as PyTorch's
  // scheduler step does on a bf16 model's output).
  float* x_;
  __nv_bfloat16* x_model_ = nullptr;  // the bf16 `sample` input, or null
  float* timesteps_;                  // the UNet's `timesteps` input
  const void* model_out_;             // f32, or bf16 with x_model_
  DeviceBuffer x_state_;
  DeviceBuffer state_, table_;  // k::SamplingState; k::NoiseUpdateStep[table_capacity_]
  size_t table_capacity_ = 0;
  std::vector<k::NoiseUpdateStep> table_host_;  // what table_ holds
  PinnedBuffer state_staging_, table_staging_, readback_;
  bool warmed_up_ = false;
  bool loop_supported_ = false;
  std::string loop_unsupported_why_;
  cuda::CapturedGraph step_graph_, loop_graph_;
};

CudaBackend& cuda_backend_of(Executor& ex) {
  auto* backend = dynamic_cast<CudaBackend*>(&ex.backend());
  if (!backend)
    throw std::invalid_argument("device sampling loop: the executor runs on the " +
                                ex.backend().name() + " backend, not the CUDA backend");
  return *backend;
}

CudaSamplingLoop::CudaSamplingLoop(Executor& ex, const UNetGraph& unet)
    : ex_(ex), backend_(cuda_backend_of(ex)), stream_(backend_.stream()) {
  const Graph& g = ex.graph();
  if (g.dtype != DType::f32)
    throw std::invalid_argument(std::string("device sampling loop: the graph is ") +
                                dtype_name(g.dtype) + "; the CUDA backend runs f32");
  const Tensor sample = ex.value(unet.sample), prediction = ex.value(unet.prediction);
  if (sample.dtype != prediction.dtype)
    throw std::invalid_argument(std::string("device sampling loop: the model reads ") +
                                dtype_name(sample.dtype) + " and writes " +
                                dtype_name(prediction.dtype) + "; expected one dtype");
  if (ex.plan().mode != ExecMode::inference)
    throw std::invalid_argument("device sampling loop: the executor must be in inference mode");
  const Shape& shape = g.values[size_t(unet.sample)].shape;
  const Shape& out_shape = g.values[size_t(unet.prediction)].shape;
  if (out_shape.numel() != shape.numel())
    throw std::invalid_argument("device sampling loop: the model's output " + out_shape.str() +
                                " must have the shape of its input " + shape.str());
  batch_ = shape[0];
  per_image_ = batch_ ? shape.numel() / batch_ : 0;
  if (sample.dtype == DType::bf16) {
    x_state_ = DeviceBuffer(backend_, size_t(shape.numel()) * sizeof(float));
    x_ = static_cast<float*>(x_state_.data());
    x_model_ = static_cast<__nv_bfloat16*>(sample.data);
  } else {
    x_ = static_cast<float*>(sample.data);
  }
  timesteps_ = static_cast<float*>(ex.value(unet.timesteps).data);
  model_out_ = prediction.data;
  // Every op's scratch now, so that no op grows it (cudaMalloc + sync) in a capture.
  backend_.reserve_workspace(g, /*training=*/false);
  state_ = DeviceBuffer(backend_, sizeof(k::SamplingState));
  state_staging_ = PinnedBuffer(sizeof(k::SamplingState));
  readback_ = PinnedBuffer(size_t(shape.numel()) * sizeof(float));
  loop_supported_ = cuda::conditional_nodes_supported(&loop_unsupported_why_);
}

SamplingGraph CudaSamplingLoop::resolve(SamplingGraph requested, std::string* why) const {
  SamplingGraph mode = requested;
  std::string reason;
  if (requested == SamplingGraph::automatic) {
    mode = loop_supported_ ? SamplingGraph::loop : SamplingGraph::step;
    reason = loop_supported_ ? " (auto: this CUDA runtime and driver support conditional nodes)"
                             : " (auto: no loop graph: " + loop_unsupported_why_ + ")";
  } else if (requested == SamplingGraph::loop && !loop_supported_) {
    throw std::runtime_error("sampling graph mode 'loop' needs conditional graph nodes: " +
                             loop_unsupported_why_ + "; use 'step' or 'off'");
  }
  if (why) {
    switch (mode) {
      case SamplingGraph::off:
        *why = "device loop, graph off: each step's kernels launched eagerly";
        break;
      case SamplingGraph::step:
        *why =
            "device loop, graph step: one denoising step captured as a CUDA graph and "
            "launched once per step";
        break;
      default:
        *why =
            "device loop, graph loop: the whole loop one CUDA graph launch per batch (a "
            "conditional WHILE node)";
        break;
    }
    *why += reason;
  }
  return mode;
}

void CudaSamplingLoop::enqueue_prologue() {
  const auto* state = static_cast<const k::SamplingState*>(state_.data());
  k::initial_noise(state, x_, batch_, per_image_, stream_);
  if (x_model_) k::convert_f32_to_bf16(x_, x_model_, batch_ * per_image_, stream_);
  k::start_sampling(static_cast<const k::NoiseUpdateStep*>(table_.data()),
                    static_cast<k::SamplingState*>(state_.data()), timesteps_, batch_, stream_);
}

// One step. The executor's context is constant: in inference nothing reads
// it (dropout is elided), and a captured step must not depend on the host.
void CudaSamplingLoop::enqueue_step(std::optional<cudaGraphConditionalHandle> loop) {
  const auto* table = static_cast<const k::NoiseUpdateStep*>(table_.data());
  auto* state = static_cast<k::SamplingState*>(state_.data());
  ex_.forward(RunContext{0, 0, false});
  if (x_model_)
    k::noise_update_bf16(table, state, static_cast<const __nv_bfloat16*>(model_out_), x_, x_model_,
                         batch_, per_image_, stream_);
  else
    k::noise_update(table, state, static_cast<const float*>(model_out_), x_, batch_, per_image_,
                    stream_);
  k::advance_sampling_step(table, state, timesteps_, batch_, loop, stream_);
}

// One eager forward before the first capture: whatever an op sets up at its
// first use (a library handle, a kernel attribute) happens outside the
// capture. The prologue first, so the forward reads defined inputs.
void CudaSamplingLoop::warm_up() {
  if (warmed_up_) return;
  enqueue_prologue();
  ex_.forward(RunContext{0, 0, false});
  warmed_up_ = true;
}

void CudaSamplingLoop::upload(const std::vector<k::NoiseUpdateStep>& table,
                              const SamplerOptions& o) {
  const size_t bytes = table.size() * sizeof(k::NoiseUpdateStep);
  if (table.size() > table_capacity_) {  // a new address: the graphs' keys change
    table_ = DeviceBuffer(backend_, bytes);
    table_staging_ = PinnedBuffer(bytes);
    table_capacity_ = table.size();
    table_host_.clear();
  }
  if (table_host_.size() != table.size() ||
      std::memcmp(table_host_.data(), table.data(), bytes) != 0) {
    std::memcpy(table_staging_.data(), table.data(), bytes);
    DDPM_CUDA_CHECK(cudaMemcpyAsync(table_.data(), table_staging_.data(), bytes,
                                    cudaMemcpyHostToDevice, stream_));
    table_host_ = table;
  }
  const k::SamplingState state{o.seed, uint32_t(o.first_image), uint32_t(table.size()), 0, 0};
  std::memcpy(state_staging_.data(), &state, sizeof state);
  DDPM_CUDA_CHECK(cudaMemcpyAsync(state_.data(), state_staging_.data(), sizeof state,
                                  cudaMemcpyHostToDevice, stream_));
}

// Modes off and step: each step in an NVTX range named by its index and
// timestep (the ops' own ranges nest inside in mode off); `before_step`
// (SamplerOptions) between them. Mode loop: one range around the launch (a
// graph's replay shows no host ranges).
void CudaSamplingLoop::run(SamplingGraph mode, int64_t steps,
                           const std::function<void(int64_t)>& before_step) {
  // What the captures bake in: the shape (fixed per executor) and the buffers.
  const std::string key = "batch " + std::to_string(batch_) + " x " + std::to_string(per_image_) +
                          ", table " + std::to_string(reinterpret_cast<uintptr_t>(table_.data()));
  auto step_range_name = [&](int64_t i, char(&name)[64]) {
    std::snprintf(name, sizeof name, "sampling step %lld/%lld (t=%d)",
                  static_cast<long long>(i + 1), static_cast<long long>(steps),
                  int(table_host_[size_t(i)].timestep));
    return name;
  };
  char name[64];
  switch (mode) {
    case SamplingGraph::off:
      enqueue_prologue();
      for (int64_t i = 0; i < steps; ++i) {
        if (before_step) before_step(i);
        const nvtx::Range range(step_range_name(i, name), nvtx::Phase::sampling);
        enqueue_step(std::nullopt);
      }
      if (before_step) before_step(steps);
      warmed_up_ = true;
      break;
    case SamplingGraph::step:
      warm_up();
      enqueue_prologue();
      if (!step_graph_.matches(key)) {
        const nvtx::Range range("capture of one sampling step", nvtx::Phase::sampling);
        step_graph_.capture(
            stream_, [&] { enqueue_step(std::nullopt); }, key);
      }
      for (int64_t i = 0; i < steps; ++i) {
        if (before_step) before_step(i);
        const nvtx::Range range(step_range_name(i, name), nvtx::Phase::sampling);
        step_graph_.launch(stream_);
      }
      if (before_step) before_step(steps);
      break;
    case SamplingGraph::loop: {
      warm_up();
      if (!loop_graph_.matches(key)) {
        const nvtx::Range range("capture of the sampling loop", nvtx::Phase::sampling);
        loop_graph_.capture_while(
            stream_, [&] { enqueue_prologue(); },
            [&](cudaGraphConditionalHandle h) { enqueue_step(h); }, key);
      }
      std::snprintf(name, sizeof name, "sampling loop: %lld steps, one graph launch",
                    static_cast<long long>(steps));
      const nvtx::Range range(name, nvtx::Phase::sampling);
      loop_graph_.launch(stream_);
      break;
    }
    case SamplingGraph::automatic:
      throw std::logic_error("device sampling loop: unresolved graph mode");
  }
}

void CudaSamplingLoop::sample(const Scheduler& scheduler, const SamplerOptions& o,
                              std::vector<float>& out) {
  check_sampler_options(o, batch_);
  const SamplingGraph mode = resolve(o.graph, nullptr);
  std::vector<k::NoiseUpdateStep> table;
  for (const StepCoefficients& c : scheduler.plan(o.steps)) table.push_back(to_kernel(c));
  const size_t n = size_t(batch_ * per_image_);
  try {
    upload(table, o);
    run(mode, int64_t(table.size()), o.before_step);
    // The images, once: an async copy into pinned memory and one wait.
    DDPM_CUDA_CHECK(
        cudaMemcpyAsync(readback_.data(), x_, n * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    DDPM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  } catch (...) {
    // The staging buffers are reused by the next batch: let queued copies finish.
    cudaStreamSynchronize(stream_);
    cudaGetLastError();
    throw;
  }
  const auto* images = static_cast<const float*>(readback_.data());
  out.assign(images, images + n);
  if (o.progress) o.progress(int64_t(table.size()), int64_t(table.size()));
}

}  // namespace

std::unique_ptr<SamplingLoop> make_cuda_sampling_loop(Executor& ex, const UNetGraph& unet) {
  return std::make_unique<CudaSamplingLoop>(ex, unet);
}

}  // namespace ddpm
