// The model summary behind --print-model: parameters per top-level block, the
// total, and the arena peak the memory plan gives for a batch.
#pragma once

#include <string>

#include "engine/unet_config.h"

namespace ddpm {

std::string describe_model(const UNetConfig& config, int64_t batch);

}  // namespace ddpm
