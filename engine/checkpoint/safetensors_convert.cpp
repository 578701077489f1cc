// Element conversions between a tensor's stored dtype and f32/f64 values.
#include <bit>
#include <cstring>

#include "engine/checkpoint/half_float.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/checkpoint/safetensors_internal.h"

namespace ddpm {

// StTensor::data holds the file's little-endian bytes; the conversions read
// and write them with memcpy, which is right on little-endian hosts only.
static_assert(std::endian::native == std::endian::little,
              "safetensors conversions assume a little-endian host");

namespace {

size_t checked_numel(std::span<const int64_t> shape, DType dtype, size_t have_bytes,
                     const char* what) {
  const std::string tensor = std::string(what) + ": tensor of dtype " +
                             safetensors_dtype_name(dtype) + " and shape " + shape_string(shape);
  uint64_t need = 0;
  if (!safetensors_detail::byte_count(shape, dtype, &need)) {
    throw CheckpointError(tensor + ": negative dimension or too many elements");
  }
  if (need != have_bytes) {
    throw CheckpointError(tensor + " holds " + std::to_string(have_bytes) + " bytes but needs " +
                          std::to_string(need));
  }
  return static_cast<size_t>(need / dtype_size(dtype));
}

template <typename Out>
std::vector<Out> widen(const StTensor& t, const char* what) {
  const size_t n = checked_numel(t.shape, t.dtype, t.data.size(), what);
  std::vector<Out> out(n);
  const uint8_t* p = t.data.data();
  for (size_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case DType::f32: {
        float v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = static_cast<Out>(v);
        break;
      }
      case DType::f64: {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        out[i] = static_cast<Out>(v);
        break;
      }
      case DType::f16:
      case DType::bf16: {
        uint16_t v;
        std::memcpy(&v, p + 2 * i, 2);
        out[i] = static_cast<Out>(t.dtype == DType::f16 ? f16_bits_to_f32(v) : bf16_bits_to_f32(v));
        break;
      }
    }
  }
  return out;
}

template <typename In>
StTensor narrow(std::span<const In> values, std::vector<int64_t> shape, DType target,
                const char* what) {
  uint64_t count = 0;
  if (!safetensors_detail::element_count(shape, &count) || count != values.size()) {
    throw CheckpointError(std::string(what) + ": " + std::to_string(values.size()) +
                          " values do not fill shape " + shape_string(shape));
  }
  StTensor t{target, std::move(shape), std::vector<uint8_t>(values.size() * dtype_size(target))};
  uint8_t* p = t.data.data();
  for (size_t i = 0; i < values.size(); ++i) {
    switch (target) {
      case DType::f32: {
        const float v = static_cast<float>(values[i]);
        std::memcpy(p + 4 * i, &v, 4);
        break;
      }
      case DType::f64: {
        const double v = static_cast<double>(values[i]);
        std::memcpy(p + 8 * i, &v, 8);
        break;
      }
      case DType::f16:
      case DType::bf16: {
        const float v = static_cast<float>(values[i]);
        const uint16_t h = target == DType::f16 ? f32_to_f16_bits(v) : f32_to_bf16_bits(v);
        std::memcpy(p + 2 * i, &h, 2);
        break;
      }
    }
  }
  return t;
}

}  // namespace

std::vector<float> to_f32(const StTensor& t) {
  return widen<float>(t, "to_f32");
}
std::vector<double> to_f64(const StTensor& t) {
  return widen<double>(t, "to_f64");
}

StTensor from_f32(std::span<const float> values, std::vector<int64_t> shape, DType target) {
  return narrow(values, std::move(shape), target, "from_f32");
}

StTensor from_f64(std::span<const double> values, std::vector<int64_t> shape, DType target) {
  return narrow(values, std::move(shape), target, "from_f64");
}

}  // namespace ddpm
