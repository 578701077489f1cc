// A small noise-predicting network that uses every op of the engine once or
// more: timestep embedding and MLP, conv, GroupNorm+SiLU, a ResBlock with the
// per-channel time-embedding add and dropout, an asymmetric stride-2
// downsample, single-head attention, nearest upsampling, a skip concat, and
// the MSE loss. The smoke run trains it; tests differentiate it whole.
#pragma once

#include "engine/graph.h"

namespace ddpm {

struct TinyDenoiserConfig {
  int64_t batch = 4;
  int64_t size = 16;  // square images, even
  int64_t channels = 3;
  int64_t width = 32;  // feature channels
  int64_t groups = 8;
  double dropout = 0.1;
  bool input_requires_grad = false;  // for gradient checks with respect to x_t
};

struct TinyDenoiser {
  Graph graph;
  ValueId x_t, timesteps, target, prediction, loss;
};

// Graph dtype f32 for training, f64 for gradient checks.
TinyDenoiser build_tiny_denoiser(const TinyDenoiserConfig& c, DType dtype = DType::f32);

}  // namespace ddpm
