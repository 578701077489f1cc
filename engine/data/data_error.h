// The one exception type of the dataset loaders. Its message names the file,
// what was wrong with it and, from load_dataset, how to get the data.
#pragma once

#include <stdexcept>
#include <string>

namespace ddpm {

class DataError : public std::runtime_error {
 public:
  explicit DataError(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace ddpm
