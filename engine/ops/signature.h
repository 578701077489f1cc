// What shape inference tells the graph about one node: its output shapes, and
// which tensors its backward rule reads (so the memory plan keeps exactly those).
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace ddpm {

struct OpSignature {
  std::vector<Shape> outputs;
  uint32_t saved_inputs = 0;     // bit i: the backward rule reads input i
  uint32_t saved_outputs = 0;    // bit i: the backward rule reads output i
  uint32_t nondiff_outputs = 0;  // bit i: output i carries no gradient (saved statistics)
};

constexpr uint32_t bit(int i) {
  return 1u << i;
}

// Thrown for shapes or parameters an op cannot accept; the graph builder adds
// the node's name to the message.
class ShapeError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Helpers for the checks every op does.
void expect_inputs(const char* op, std::span<const Shape> in, size_t count);
void expect_rank(const char* op, const char* what, const Shape& s, int rank);
void expect_shape(const char* op, const char* what, const Shape& s, const Shape& want);

}  // namespace ddpm
