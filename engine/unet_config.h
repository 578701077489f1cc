// The UNet2DModel configuration, read from and written to diffusers'
// config.json. Every key diffusers writes is either supported or rejected
// with an error naming it; nothing is silently ignored.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace ddpm {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct UNetConfig {
  int64_t sample_size = 32;  // square images (diffusers also allows [h, w])
  int64_t sample_height = 32, sample_width = 32;
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  std::vector<int64_t> block_out_channels{128, 256, 256, 256};
  int64_t layers_per_block = 2;
  std::vector<std::string> down_block_types{"DownBlock2D", "AttnDownBlock2D", "DownBlock2D",
                                            "DownBlock2D"};
  std::vector<std::string> up_block_types{"UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"};
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-6;
  int64_t attention_head_dim = 0;  // 0: null, one head of all channels
  bool flip_sin_to_cos = false;
  double freq_shift = 1;
  int64_t downsample_padding = 0;  // 0: diffusers pads (0, 1, 0, 1)
  double dropout = 0.0;
  double mid_block_scale_factor = 1;
  bool add_attention = true;       // attention in the mid block
  int64_t time_embedding_dim = 0;  // 0: null, 4 * block_out_channels[0]

  int64_t time_embed_dim() const {
    return time_embedding_dim ? time_embedding_dim : 4 * block_out_channels.at(0);
  }

  // The google/ddpm-cifar10-32 model (the defaults above), with the paper's
  // dropout 0.1 for training.
  static UNetConfig cifar10();
};

// Parses config.json text; `source` names the file in errors.
UNetConfig parse_unet_config(const std::string& json_text, const std::string& source);
UNetConfig load_unet_config(const std::filesystem::path& path);
// diffusers' config.json for this model (all keys UNet2DModel writes).
std::string unet_config_to_json(const UNetConfig& c);

}  // namespace ddpm
