#include "engine/model_io.h"

#include <map>
#include <nlohmann/json.hpp>

#include "engine/checkpoint/atomic_file.h"
#include "engine/checkpoint/errors.h"

namespace ddpm {

namespace fs = std::filesystem;

namespace {

constexpr const char* kWeightsName = "diffusion_pytorch_model.safetensors";

// Older diffusers uploads (google/ddpm-*) name the attention projections so.
std::string modern_name(const std::string& name) {
  static const std::pair<const char*, const char*> kLegacy[] = {{".query.", ".to_q."},
                                                                {".key.", ".to_k."},
                                                                {".value.", ".to_v."},
                                                                {".proj_attn.", ".to_out.0."}};
  for (const auto& [old_part, new_part] : kLegacy) {
    const size_t at = name.find(old_part);
    if (at != std::string::npos && name.find(".attentions.") != std::string::npos)
      return name.substr(0, at) + new_part + name.substr(at + std::string(old_part).size());
  }
  return name;
}

}  // namespace

std::vector<int64_t> diffusers_shape(const Shape& s) {
  if (s.rank() == 4) return {s[0], s[3], s[1], s[2]};
  std::vector<int64_t> out;
  for (int i = 0; i < s.rank(); ++i) out.push_back(s[i]);
  return out;
}

template <typename T>
void ohwi_to_oihw(const T* src, T* dst, const Shape& s) {
  const int64_t o = s[0], kh = s[1], kw = s[2], in = s[3];
  for (int64_t a = 0; a < o; ++a)
    for (int64_t y = 0; y < kh; ++y)
      for (int64_t x = 0; x < kw; ++x)
        for (int64_t c = 0; c < in; ++c)
          dst[((a * in + c) * kh + y) * kw + x] = src[((a * kh + y) * kw + x) * in + c];
}

template <typename T>
void oihw_to_ohwi(const T* src, T* dst, const Shape& s) {
  const int64_t o = s[0], kh = s[1], kw = s[2], in = s[3];
  for (int64_t a = 0; a < o; ++a)
    for (int64_t c = 0; c < in; ++c)
      for (int64_t y = 0; y < kh; ++y)
        for (int64_t x = 0; x < kw; ++x)
          dst[((a * kh + y) * kw + x) * in + c] = src[((a * in + c) * kh + y) * kw + x];
}

template void ohwi_to_oihw<float>(const float*, float*, const Shape&);
template void ohwi_to_oihw<double>(const double*, double*, const Shape&);
template void oihw_to_ohwi<float>(const float*, float*, const Shape&);
template void oihw_to_ohwi<double>(const double*, double*, const Shape&);

ModelFolder find_model(const fs::path& dir) {
  if (!fs::is_directory(dir))
    throw ConfigError(
        "model folder " + dir.string() +
        " does not exist (expected a diffusers UNet2DModel folder or a DDPMPipeline folder)");
  ModelFolder m;
  m.unet_dir = fs::exists(dir / "config.json") ? dir : dir / "unet";
  if (!fs::exists(m.unet_dir / "config.json"))
    throw ConfigError(dir.string() +
                      ": no config.json here or in unet/ (expected a diffusers "
                      "UNet2DModel folder or a DDPMPipeline folder)");
  m.weights = m.unet_dir / kWeightsName;
  if (!fs::exists(m.weights))
    throw CheckpointError(m.unet_dir.string() + ": no " + kWeightsName +
                          " (only safetensors weights are read; convert a .bin with diffusers' "
                          "save_pretrained(safe_serialization=True))");
  m.config = load_unet_config(m.unet_dir / "config.json");
  for (const fs::path& p : {dir / "scheduler" / "scheduler_config.json",
                            m.unet_dir.parent_path() / "scheduler" / "scheduler_config.json"})
    if (fs::exists(p)) {
      m.scheduler = load_scheduler_config(p);
      break;
    }
  return m;
}

StFile unet_weights_to_safetensors(const Graph& g, const std::vector<float>& params, DType dtype) {
  StFile f;
  f.metadata["format"] = "pt";
  for (ValueId id : g.parameters()) {
    const Value& v = g.values[size_t(id)];
    const int64_t n = v.shape.numel();
    std::vector<float> values(static_cast<size_t>(n));
    const float* src = params.data() + v.param_offset;
    if (v.shape.rank() == 4) {
      ohwi_to_oihw(src, values.data(), v.shape);
    } else {
      std::copy(src, src + n, values.begin());
    }
    f.tensors[v.name] = from_f32(values, diffusers_shape(v.shape), dtype);
  }
  return f;
}

void unet_weights_from_safetensors(const StFile& file, const std::string& source, const Graph& g,
                                   std::vector<float>& params) {
  params.assign(size_t(g.param_buffer_elements), 0.0f);
  std::map<std::string, const StTensor*> by_name;
  std::string problems;
  for (const auto& [name, t] : file.tensors) {
    const std::string modern = modern_name(name);
    if (!g.contains(modern) || g.values[size_t(g.find(modern))].kind != ValueKind::parameter) {
      problems += "\n  unexpected tensor '" + name + "'";
      continue;
    }
    if (!by_name.emplace(modern, &t).second)
      problems += "\n  tensor '" + modern + "' appears under two names";
  }
  for (ValueId id : g.parameters()) {
    const Value& v = g.values[size_t(id)];
    auto it = by_name.find(v.name);
    if (it == by_name.end()) {
      problems += "\n  missing tensor '" + v.name + "' " + shape_string(diffusers_shape(v.shape));
      continue;
    }
    const StTensor& t = *it->second;
    const std::vector<int64_t> want = diffusers_shape(v.shape);
    if (t.shape != want) {
      problems += "\n  tensor '" + v.name + "' has shape " + shape_string(t.shape) +
                  ", the config needs " + shape_string(want);
      continue;
    }
    const std::vector<float> values = to_f32(t);
    float* dst = params.data() + v.param_offset;
    if (v.shape.rank() == 4) {
      oihw_to_ohwi(values.data(), dst, v.shape);
    } else {
      std::copy(values.begin(), values.end(), dst);
    }
  }
  if (!problems.empty())
    throw CheckpointError(source + ": the weights do not match the model config:" + problems);
}

void load_unet_weights(const ModelFolder& model, Executor& ex) {
  const StFile file = read_safetensors(model.weights);
  std::vector<float> params;
  unet_weights_from_safetensors(file, model.weights.string(), ex.graph(), params);
  const Tensor p = ex.parameters();
  if (p.dtype != DType::f32) throw std::logic_error("load_unet_weights: the graph must be f32");
  ex.backend().copy_from_host(p.data, params.data(), p.bytes());
  ex.refresh_parameter_copy();
}

void save_pipeline(const fs::path& dir, const UNetConfig& config, const SchedulerConfig& scheduler,
                   const Graph& g, const std::vector<float>& params) {
  fs::create_directories(dir / "unet");
  fs::create_directories(dir / "scheduler");
  write_safetensors(dir / "unet" / kWeightsName, unet_weights_to_safetensors(g, params));
  write_file_atomically(dir / "unet" / "config.json", unet_config_to_json(config));
  SchedulerConfig s = scheduler;
  s.kind = "ddpm";
  write_file_atomically(dir / "scheduler" / "scheduler_config.json", scheduler_config_to_json(s));
  const nlohmann::json index = {{"_class_name", "DDPMPipeline"},
                                {"_diffusers_version", "0.31.0"},
                                {"scheduler", {"diffusers", "DDPMScheduler"}},
                                {"unet", {"diffusers", "UNet2DModel"}}};
  write_file_atomically(dir / "model_index.json", index.dump(2) + "\n");
}

}  // namespace ddpm
