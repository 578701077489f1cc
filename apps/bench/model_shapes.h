// The compute-bound layers of a UNet2DModel, read from the graph the engine
// builds for it (so the benchmark times exactly the shapes training runs):
// each distinct convolution, attention and linear shape, with how many times
// the model uses it and whether its input needs a gradient (conv_in's image
// does not, so it has no backward-data in training).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/unet_config.h"

namespace ddpm::bench {

struct ConvLayer {
  int64_t batch = 0, in_h = 0, in_w = 0, in_channels = 0, out_channels = 0;
  int kernel_h = 0, kernel_w = 0, stride = 1;
  int pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  bool bias = true;
  int count = 0;                  // uses in one forward
  int count_with_input_grad = 0;  // of those, how many need backward-data
  std::string first_name;         // e.g. "down_blocks.0.resnets.0.conv1"

  int64_t out_h() const { return (in_h + pad_top + pad_bottom - kernel_h) / stride + 1; }
  int64_t out_w() const { return (in_w + pad_left + pad_right - kernel_w) / stride + 1; }
  int64_t macs() const {
    return batch * out_h() * out_w() * out_channels * int64_t(kernel_h) * kernel_w * in_channels;
  }
  std::string describe() const;  // "3x3 s1 32x32 128->256 pad 1,1,1,1"
};

struct AttentionLayer {
  int64_t batch = 0, tokens = 0, heads = 0, head_dim = 0;
  int count = 0;
  std::string first_name;
  // Multiply-adds of the forward's two matmuls (Q K^T and P V).
  int64_t macs() const { return 2 * batch * heads * tokens * tokens * head_dim; }
  std::string describe() const;  // "T 256, 1 x 256"
};

struct LinearLayer {
  int64_t rows = 0, in_features = 0, out_features = 0;
  bool bias = true;
  int count = 0;
  std::string first_name;
  int64_t macs() const { return rows * in_features * out_features; }
  std::string describe() const;  // "32768 x 256 -> 256"
};

struct ModelShapes {
  std::vector<ConvLayer> convs;
  std::vector<AttentionLayer> attentions;
  std::vector<LinearLayer> linears;
};

// Distinct shapes in first-use order, at the given batch.
ModelShapes model_shapes(const UNetConfig& config, int64_t batch);

}  // namespace ddpm::bench
