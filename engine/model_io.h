// Models on disk in diffusers' layout. A UNet folder holds config.json and
// diffusion_pytorch_model.safetensors; a pipeline folder (DDPMPipeline's
// save_pretrained) holds model_index.json, unet/ and scheduler/. Weights map
// one to one onto the graph's parameters by name; conv weights are converted
// between diffusers' OIHW and the engine's OHWI here, and nowhere else.
#pragma once

#include <filesystem>
#include <optional>

#include "engine/checkpoint/safetensors.h"
#include "engine/executor.h"
#include "engine/scheduler.h"
#include "engine/unet_config.h"

namespace ddpm {

struct ModelFolder {
  std::filesystem::path unet_dir;  // holds config.json and the weights
  std::filesystem::path weights;   // diffusion_pytorch_model.safetensors
  UNetConfig config;
  std::optional<SchedulerConfig> scheduler;  // when the folder has one
};

// Accepts a UNet folder, or a pipeline folder with unet/ (and scheduler/).
// Throws ConfigError or CheckpointError naming what is missing.
ModelFolder find_model(const std::filesystem::path& dir);

// Graph parameters in diffusers' names and layout (OIHW convs), as F32 (or
// F16/BF16) tensors. `params` is the host copy of the flat parameter buffer.
StFile unet_weights_to_safetensors(const Graph& g, const std::vector<float>& params,
                                   DType dtype = DType::f32);

// The inverse: fills `params` (host copy of the flat buffer) from a file.
// Accepts F32/F16/BF16/F64 and the legacy attention names
// (query/key/value/proj_attn). Throws CheckpointError naming every missing,
// unexpected or mis-shaped tensor.
void unet_weights_from_safetensors(const StFile& file, const std::string& source, const Graph& g,
                                   std::vector<float>& params);

// Conv weight layouts: `ohwi` is the engine's shape [O, kh, kw, I].
template <typename T>
void ohwi_to_oihw(const T* src, T* dst, const Shape& ohwi);
template <typename T>
void oihw_to_ohwi(const T* src, T* dst, const Shape& ohwi);
// A parameter's shape as diffusers has it (OIHW for conv weights).
std::vector<int64_t> diffusers_shape(const Shape& engine_shape);

// Loads a model folder's weights into an executor of a graph built from its config.
void load_unet_weights(const ModelFolder& model, Executor& ex);

// Writes a DDPMPipeline folder: model_index.json, unet/{config.json,
// diffusion_pytorch_model.safetensors}, scheduler/scheduler_config.json.
// Each file is replaced atomically.
void save_pipeline(const std::filesystem::path& dir, const UNetConfig& config,
                   const SchedulerConfig& scheduler, const Graph& g,
                   const std::vector<float>& params);

}  // namespace ddpm
