#include "engine/unet_config.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <utility>

#include "engine/json_config.h"

namespace ddpm {

using nlohmann::json;

UNetConfig UNetConfig::cifar10() {
  UNetConfig c;
  c.dropout = 0.1;
  return c;
}

namespace {

void validate(const UNetConfig& c, const std::string& source) {
  const size_t levels = c.block_out_channels.size();
  auto fail = [&](const std::string& key, const std::string& what) {
    throw ConfigError(source + ": key '" + key + "': " + what);
  };
  // Sizes far beyond any model (diffusers' largest UNets have 1280 channels)
  // would overflow the 64-bit size arithmetic below and in the model builder
  // (4 * block_out_channels[0] was signed overflow; found by tests/fuzz).
  constexpr int64_t kMaxSize = int64_t{1} << 20;
  const std::pair<const char*, int64_t> sizes[] = {{"sample_size", c.sample_height},
                                                   {"sample_size", c.sample_width},
                                                   {"in_channels", c.in_channels},
                                                   {"out_channels", c.out_channels},
                                                   {"layers_per_block", c.layers_per_block},
                                                   {"norm_num_groups", c.norm_num_groups},
                                                   {"attention_head_dim", c.attention_head_dim},
                                                   {"time_embedding_dim", c.time_embedding_dim}};
  for (const auto& [key, value] : sizes)
    if (value > kMaxSize)
      fail(key, std::to_string(value) + " is over the limit of " + std::to_string(kMaxSize));
  for (int64_t ch : c.block_out_channels)
    if (ch > kMaxSize)
      fail("block_out_channels",
           std::to_string(ch) + " channels is over the limit of " + std::to_string(kMaxSize));
  if (c.down_block_types.size() != levels)
    fail("down_block_types", "has " + std::to_string(c.down_block_types.size()) +
                                 " entries but block_out_channels has " + std::to_string(levels));
  if (c.up_block_types.size() != levels)
    fail("up_block_types", "has " + std::to_string(c.up_block_types.size()) +
                               " entries but block_out_channels has " + std::to_string(levels));
  for (const std::string& t : c.down_block_types)
    if (t != "DownBlock2D" && t != "AttnDownBlock2D")
      fail("down_block_types",
           "block type '" + t + "' is not supported (DownBlock2D, AttnDownBlock2D)");
  for (const std::string& t : c.up_block_types)
    if (t != "UpBlock2D" && t != "AttnUpBlock2D")
      fail("up_block_types", "block type '" + t + "' is not supported (UpBlock2D, AttnUpBlock2D)");
  for (int64_t ch : c.block_out_channels)
    if (ch % c.norm_num_groups)
      fail("norm_num_groups", std::to_string(c.norm_num_groups) + " groups do not divide " +
                                  std::to_string(ch) + " channels of block_out_channels");
  if (c.attention_head_dim)
    for (size_t i = 0; i < levels; ++i) {
      const bool attn = c.down_block_types[i] == "AttnDownBlock2D" ||
                        c.up_block_types[levels - 1 - i] == "AttnUpBlock2D" ||
                        (i + 1 == levels && c.add_attention);
      if (attn && c.block_out_channels[i] % c.attention_head_dim)
        fail("attention_head_dim", std::to_string(c.attention_head_dim) + " does not divide " +
                                       std::to_string(c.block_out_channels[i]) + " channels");
    }
  if (c.time_embed_dim() <= 0) fail("time_embedding_dim", "must be positive");
  if (!(c.dropout >= 0 && c.dropout < 1)) fail("dropout", "must be in [0, 1)");
  if (!(c.norm_eps > 0)) fail("norm_eps", "must be positive");
  if (c.mid_block_scale_factor == 0) fail("mid_block_scale_factor", "must not be zero");
  if (c.block_out_channels[0] / 2 - c.freq_shift == 0)
    fail("freq_shift", "equals half of block_out_channels[0] (division by zero in the embedding)");
}

}  // namespace

UNetConfig parse_unet_config(const std::string& text, const std::string& source) {
  const json j = parse_json_object(text, source);
  JsonSection r(j, "", source);
  UNetConfig c;
  r.only("_class_name", {"UNet2DModel"});
  if (const json* s = r.get("sample_size")) {
    if (s->is_number_integer() && s->get<int64_t>() > 0) {
      c.sample_size = c.sample_height = c.sample_width = s->get<int64_t>();
    } else if (s->is_array() && s->size() == 2 && (*s)[0].is_number_integer() &&
               (*s)[1].is_number_integer() && (*s)[0].get<int64_t>() > 0 &&
               (*s)[1].get<int64_t>() > 0) {
      c.sample_height = (*s)[0].get<int64_t>();
      c.sample_width = (*s)[1].get<int64_t>();
      c.sample_size = c.sample_height;
    } else {
      r.fail("sample_size", "expected a positive integer or [height, width], got " + s->dump());
    }
  }
  r.read_at_least("in_channels", c.in_channels, 1);
  r.read_at_least("out_channels", c.out_channels, 1);
  r.read_list("block_out_channels", c.block_out_channels);
  r.read_at_least("layers_per_block", c.layers_per_block, 1);
  r.read_list("down_block_types", c.down_block_types);
  r.read_list("up_block_types", c.up_block_types);
  r.read_at_least("norm_num_groups", c.norm_num_groups, 1);
  r.read("norm_eps", c.norm_eps);
  if (const json* v = r.get("attention_head_dim")) {
    if (!v->is_number_integer() || v->get<int64_t>() <= 0)
      r.fail("attention_head_dim", "expected null or a positive integer, got " + v->dump());
    c.attention_head_dim = v->get<int64_t>();
  }
  r.read("flip_sin_to_cos", c.flip_sin_to_cos);
  r.read("freq_shift", c.freq_shift);
  r.read_at_least("downsample_padding", c.downsample_padding, 0);
  if (c.downsample_padding > 1)
    r.fail("downsample_padding",
           "values above 1 are not supported (0 pads (0,1,0,1), 1 pads all sides)");
  r.read("dropout", c.dropout);
  r.read("mid_block_scale_factor", c.mid_block_scale_factor);
  r.read("add_attention", c.add_attention);
  if (const json* v = r.get("time_embedding_dim")) {
    if (!v->is_number_integer() || v->get<int64_t>() <= 0)
      r.fail("time_embedding_dim", "expected null or a positive integer, got " + v->dump());
    c.time_embedding_dim = v->get<int64_t>();
  }
  if (const json* v = r.get("attn_norm_num_groups");
      v && !v->is_null() && *v != json(c.norm_num_groups))
    r.fail("attn_norm_num_groups",
           "only null (the same as norm_num_groups) is supported, got " + v->dump());
  r.only("act_fn", {"silu"});
  r.only("time_embedding_type", {"positional"});
  r.only("center_input_sample", {false});
  r.only("class_embed_type", {});
  r.only("num_class_embeds", {});
  r.only("resnet_time_scale_shift", {"default"});
  r.only("downsample_type", {"conv"});
  r.only("upsample_type", {"conv"});
  r.only("mid_block_type", {"UNetMidBlock2D"});
  // Only the "learned" time embedding type reads it; positional ignores it,
  // but it must still be what diffusers allows (null or a positive integer).
  if (const json* v = r.get("num_train_timesteps");
      v && (!v->is_number_integer() || v->get<int64_t>() <= 0))
    r.fail("num_train_timesteps", "expected null or a positive integer, got " + v->dump());
  r.reject_unknown("UNet2DModel config keys",
                   " (not a UNet2DModel config, or a feature this engine does not have)");
  validate(c, source);
  return c;
}

UNetConfig load_unet_config(const std::filesystem::path& path) {
  std::ifstream f(path);
  if (!f) throw ConfigError("cannot open model config " + path.string());
  std::stringstream s;
  s << f.rdbuf();
  return parse_unet_config(s.str(), path.string());
}

std::string unet_config_to_json(const UNetConfig& c) {
  json j;
  j["_class_name"] = "UNet2DModel";
  j["_diffusers_version"] = "0.31.0";
  j["sample_size"] = c.sample_height == c.sample_width
                         ? json(c.sample_height)
                         : json::array({c.sample_height, c.sample_width});
  j["in_channels"] = c.in_channels;
  j["out_channels"] = c.out_channels;
  j["center_input_sample"] = false;
  j["time_embedding_type"] = "positional";
  j["time_embedding_dim"] = c.time_embedding_dim ? json(c.time_embedding_dim) : json(nullptr);
  // Whole numbers are written as integers, as diffusers writes them; the
  // range test comes first because converting a double outside int64's range
  // is undefined (freq_shift 1e308; found by tests/fuzz).
  const bool whole = std::abs(c.freq_shift) < 0x1p53 && c.freq_shift == std::trunc(c.freq_shift);
  j["freq_shift"] = whole ? json(int64_t(c.freq_shift)) : json(c.freq_shift);
  j["flip_sin_to_cos"] = c.flip_sin_to_cos;
  j["down_block_types"] = c.down_block_types;
  j["up_block_types"] = c.up_block_types;
  j["block_out_channels"] = c.block_out_channels;
  j["layers_per_block"] = c.layers_per_block;
  j["mid_block_scale_factor"] = c.mid_block_scale_factor;
  j["downsample_padding"] = c.downsample_padding;
  j["downsample_type"] = "conv";
  j["upsample_type"] = "conv";
  j["dropout"] = c.dropout;
  j["act_fn"] = "silu";
  j["attention_head_dim"] = c.attention_head_dim ? json(c.attention_head_dim) : json(nullptr);
  j["norm_num_groups"] = c.norm_num_groups;
  j["attn_norm_num_groups"] = nullptr;
  j["norm_eps"] = c.norm_eps;
  j["resnet_time_scale_shift"] = "default";
  j["add_attention"] = c.add_attention;
  j["class_embed_type"] = nullptr;
  j["num_class_embeds"] = nullptr;
  j["num_train_timesteps"] = nullptr;
  return j.dump(2) + "\n";
}

}  // namespace ddpm
