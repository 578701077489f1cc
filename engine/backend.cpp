// Backend's device-independent defaults.
#include "engine/backend.h"

#include <cstring>
#include <vector>

#include "engine/checkpoint/half_float.h"

namespace ddpm {

namespace {

template <typename T>
T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <typename T>
void store(unsigned char* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

}  // namespace

void Backend::convert(const Tensor& src, const Tensor& dst) {
  if (src.numel() != dst.numel())
    throw std::invalid_argument("convert: " + std::to_string(src.numel()) + " elements into " +
                                std::to_string(dst.numel()));
  const auto n = static_cast<size_t>(src.numel());
  const size_t in_size = dtype_size(src.dtype), out_size = dtype_size(dst.dtype);
  std::vector<unsigned char> in(src.bytes()), out(dst.bytes());
  copy_to_host(in.data(), src.data, in.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char* e = in.data() + i * in_size;
    double x = 0;
    switch (src.dtype) {
      case DType::f32:
        x = load<float>(e);
        break;
      case DType::f64:
        x = load<double>(e);
        break;
      case DType::bf16:
        x = bf16_bits_to_f32(load<uint16_t>(e));
        break;
      case DType::f16:
        x = f16_bits_to_f32(load<uint16_t>(e));
        break;
    }
    unsigned char* o = out.data() + i * out_size;
    switch (dst.dtype) {
      case DType::f32:
        store(o, static_cast<float>(x));
        break;
      case DType::f64:
        store(o, x);
        break;
      case DType::bf16:
        store(o, f32_to_bf16_bits(static_cast<float>(x)));
        break;
      case DType::f16:
        store(o, f32_to_f16_bits(static_cast<float>(x)));
        break;
    }
  }
  copy_from_host(dst.data, out.data(), out.size());
}

}  // namespace ddpm
