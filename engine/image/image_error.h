// The exception type of image output: its message names the file and the fault.
#pragma once

#include <stdexcept>
#include <string>

namespace ddpm {

class ImageError : public std::runtime_error {
 public:
  explicit ImageError(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace ddpm
