// Helpers shared by the CPU reference ops.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "engine/backend.h"

namespace ddpm::cpu {

// Elements per task of the element-wise loops run on the thread pool: large
// enough that a task's scheduling cost vanishes, small enough to balance two
// loaded cores.
constexpr int64_t kGrain = 16384;

// Calls fn.template operator()<T>() with T the C++ type of a float dtype; the
// CPU ops are written once as templates and run in f32 (the product) or f64
// (gradient checks).
template <typename Fn>
void dispatch_float(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::f32:
      fn.template operator()<float>();
      return;
    case DType::f64:
      fn.template operator()<double>();
      return;
    default:
      throw std::invalid_argument(std::string("cpu ") + op + ": dtype " + dtype_name(t) +
                                  " is not supported (f32, f64)");
  }
}

// Backward rules are written as +=; a gradient that must be overwritten is
// zeroed first. Returns the destination, or nullptr when none is wanted.
template <typename T>
T* begin_grad(const GradTensor& g) {
  if (!g.tensor.defined()) return nullptr;
  T* p = g.tensor.ptr<T>();
  if (!g.accumulate) std::memset(p, 0, g.tensor.bytes());
  return p;
}

template <typename T>
const T* maybe(const Tensor& t) {
  return t.defined() ? t.ptr<T>() : nullptr;
}

}  // namespace ddpm::cpu
