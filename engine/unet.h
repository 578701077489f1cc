// Builds diffusers' UNet2DModel as a graph of engine ops, with diffusers'
// parameter names, so checkpoints map one to one (conv weights are OHWI here,
// OIHW in diffusers; the checkpoint loader converts).
//
// By default the graph uses the fused forms of the ops: a ResBlock's
// time-embedding add is part of its second GroupNorm, its skip connection is
// the epilogue of its second convolution, an attention block's q, k and v
// come from one GEMM that the attention op reads in place, and its skip
// connection is added by the output projection. (Where diffusers divides
// the sum by an output scale factor other than 1, the add stays separate.)
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/graph.h"
#include "engine/unet_config.h"

namespace ddpm {

struct UNetGraph {
  Graph graph;
  ValueId sample = -1;      // x_t [N, H, W, in_channels], NHWC
  ValueId timesteps = -1;   // [N] float
  ValueId prediction = -1;  // the model output [N, H, W, out_channels]
  ValueId target = -1;      // training only: what the prediction is regressed on
  ValueId loss = -1;        // training only: mse(prediction, target)
};

struct UNetBuildOptions {
  int64_t batch = 1;
  int64_t height = 0, width = 0;  // 0: the config's sample size
  bool with_loss = false;         // add target input and MSE loss
  DType dtype = DType::f32;
  // bf16 (with dtype f32): mixed precision, as GraphBuilder(dtype, activations)
  // describes; the sample input and the prediction are bf16, the timesteps,
  // the target and the loss f32. Needs the fused graph.
  // Unset: dtype.
  std::optional<DType> activations;
  // false: one op per diffusers operation (no fused forms), the reference
  // the fused graph is tested against. The values named in UNetGraph and the
  // parameters (names, order, initialisation) are the same either way.
  bool fuse = true;
};

UNetGraph build_unet(const UNetConfig& config, const UNetBuildOptions& options);

// Parameter count per top-level block ("conv_in", "time_embedding",
// "down_blocks.0", ..., "mid_block", "up_blocks.0", ..., "conv_norm_out",
// "conv_out"), in model order.
std::vector<std::pair<std::string, int64_t>> parameters_per_block(const Graph& g);

}  // namespace ddpm
