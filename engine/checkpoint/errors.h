// The one exception type of the checkpoint layer (safetensors files, atomic
// writes). Its message names the file, the tensor or field where there is one,
// and what was expected; apps print it and exit non-zero.
#pragma once

#include <stdexcept>

namespace ddpm {

class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace ddpm
