#include "engine/ops/signature.h"

namespace ddpm {

void expect_inputs(const char* op, std::span<const Shape> in, size_t count) {
  if (in.size() != count)
    throw ShapeError(std::string(op) + ": expected " + std::to_string(count) + " inputs, got " +
                     std::to_string(in.size()));
}

void expect_rank(const char* op, const char* what, const Shape& s, int rank) {
  if (s.rank() != rank)
    throw ShapeError(std::string(op) + ": " + what + " must have rank " + std::to_string(rank) +
                     ", got shape " + s.str());
}

void expect_shape(const char* op, const char* what, const Shape& s, const Shape& want) {
  if (s != want)
    throw ShapeError(std::string(op) + ": " + what + " has shape " + s.str() + ", expected " +
                     want.str());
}

}  // namespace ddpm
