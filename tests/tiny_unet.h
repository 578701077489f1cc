// The tiny UNet of the engine-level tests (trainer, CUDA backend training and
// sampling, NVTX ranges): every op of the real model at a size the emulator
// trains and samples in seconds.
#pragma once

#include <cstdint>

#include "engine/unet_config.h"

namespace ddpm::testing {

// Two levels (8 and 16 channels), one ResBlock each, GroupNorm of 4 groups
// (several channels per group), dropout 0.1 (folded away in inference), the
// mid block's attention; with `attention_in_level_2` the second level's
// attention blocks too. `head_dim` 0: one head of all channels.
inline UNetConfig tiny_unet(bool attention_in_level_2, int64_t head_dim) {
  UNetConfig c;
  c.sample_size = c.sample_height = c.sample_width = 8;
  c.in_channels = c.out_channels = 1;
  c.block_out_channels = {8, 16};
  c.layers_per_block = 1;
  if (attention_in_level_2) {
    c.down_block_types = {"DownBlock2D", "AttnDownBlock2D"};
    c.up_block_types = {"AttnUpBlock2D", "UpBlock2D"};
  } else {
    c.down_block_types = {"DownBlock2D", "DownBlock2D"};
    c.up_block_types = {"UpBlock2D", "UpBlock2D"};
  }
  c.norm_num_groups = 4;
  c.attention_head_dim = head_dim;
  c.dropout = 0.1;
  return c;
}

}  // namespace ddpm::testing
