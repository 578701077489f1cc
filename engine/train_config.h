// The training recipe as one JSON file: the UNet2DModel config, the
// DDPMScheduler config (both in diffusers' keys), the dataset, the optimizer
// and the logging cadence. Unknown keys are errors that name them.
#pragma once

#include <filesystem>
#include <string>

#include "engine/ema_schedule.h"
#include "engine/scheduler.h"
#include "engine/tensor.h"
#include "engine/unet_config.h"

namespace ddpm {

struct TrainConfig {
  UNetConfig model;
  SchedulerConfig scheduler;
  struct Data {
    std::string kind = "fashion-mnist";  // fashion-mnist | idx | cifar10 | png-folder
    std::string path;                    // empty: the kind's default location
  } data;
  struct Training {
    int64_t batch_size = 128;
    int64_t steps = 800000;
    double learning_rate = 2e-4;
    double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_epsilon = 1e-8;
    double weight_decay = 0.0;
    int64_t warmup_steps = 5000;  // linear warmup of the learning rate
    double grad_clip_norm = 1.0;  // global-norm clipping; 0 disables
    // The EMA of the weights (engine/ema_schedule.h): the decay ceiling and
    // diffusers EMAModel's warmup. ema_warmup: "default" (diffusers' default,
    // min(decay, (1 + s) / (10 + s))), "power" (use_ema_warmup: 1 - (1 +
    // s / ema_inv_gamma)^-ema_power) or "none" (constant decay, the paper's).
    double ema_decay = 0.9999;
    std::string ema_warmup = "default";
    double ema_inv_gamma = 1.0, ema_power = 2.0 / 3.0;
    int64_t ema_update_after_step = 0;
    double ema_min_decay = 0.0;
    bool random_flip = true;
    uint64_t seed = 0;
    // "fp32", or "bf16": mixed precision (bf16 activations and activation
    // gradients, fp32 master weights, gradients, optimizer state and EMA;
    // UNetBuildOptions::activations), CUDA only. The apps' --precision
    // resolves "auto" before a Trainer sees it.
    std::string precision = "fp32";
  } training;
  struct Logging {
    int64_t log_every = 10;
    int64_t sample_every = 0;  // 0: only at the end
    int64_t sample_count = 16;
    int64_t sample_steps = 1000;
    std::string sample_scheduler = "ddpm";  // ddpm | ddim
    int64_t checkpoint_every = 0;           // 0: only at the end (and on Ctrl-C)
  } logging;
};

// The activations' dtype of the training section's precision.
DType activation_dtype(const TrainConfig::Training& t);

// The EMA schedule the training section describes (its warmup name parsed).
EmaSchedule ema_schedule(const TrainConfig::Training& t);

TrainConfig parse_train_config(const std::string& json_text, const std::string& source);
TrainConfig load_train_config(const std::filesystem::path& path);
std::string train_config_to_json(const TrainConfig& c);

}  // namespace ddpm
