// Tensor views: a shape, an element type, a device and a pointer into memory
// owned elsewhere (an arena, the flat parameter buffer, or a test's vector).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace ddpm {

// f32 is the compute type of the product. f64 exists for the CPU backend only,
// so that gradient checks can run in double precision; bf16/f16 are storage
// types for checkpoints and the later mixed-precision path.
enum class DType : uint8_t { f32, f64, bf16, f16 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);

enum class Device : uint8_t { cpu, cuda };
const char* device_name(Device d);

// Up to four dimensions; activations are NHWC, linear operands [..., features].
class Shape {
 public:
  static constexpr int kMaxRank = 4;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);

  // Appends one dimension (throws past four).
  void push_back(int64_t d);
  int rank() const { return rank_; }
  int64_t operator[](int i) const { return dims_[static_cast<size_t>(i)]; }
  int64_t& operator[](int i) { return dims_[static_cast<size_t>(i)]; }
  int64_t back() const { return dims_[static_cast<size_t>(rank_ - 1)]; }
  int64_t numel() const;
  // Product of all dims but the last: the rows of a channels-last tensor.
  int64_t rows() const { return rank_ == 0 ? 1 : numel() / back(); }
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const;

 private:
  std::array<int64_t, kMaxRank> dims_{};
  int rank_ = 0;
};

struct Tensor {
  void* data = nullptr;
  Shape shape;
  DType dtype = DType::f32;
  Device device = Device::cpu;

  int64_t numel() const { return shape.numel(); }
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  bool defined() const { return data != nullptr; }

  template <typename T>
  T* ptr() const;
};

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::f32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::f64;
}

template <typename T>
T* Tensor::ptr() const {
  if (dtype != dtype_of<T>()) {
    throw std::logic_error(std::string("tensor of dtype ") + dtype_name(dtype) + " read as " +
                           dtype_name(dtype_of<T>()));
  }
  return static_cast<T*>(data);
}

}  // namespace ddpm
