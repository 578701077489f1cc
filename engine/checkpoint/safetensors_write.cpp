// The safetensors writer. It reproduces the Python library's layout byte for
// byte (checked against a file that library wrote, tests/checkpoint/data):
//  - tensors ordered by dtype, widest first (F64, F32, BF16, F16: the reverse
//    of the library's dtype enum), then by name, bytewise; the data packed in
//    that order without gaps;
//  - the header is compact JSON with "__metadata__" first (omitted when there
//    is none), each entry's keys in the order dtype, shape, data_offsets;
//  - the header is padded with spaces to a multiple of 8 bytes, so the data
//    region starts 8-aligned and, with the widest dtypes first, every tensor
//    starts at a multiple of its element size.
// One difference: the library writes metadata keys in hash-map order (it
// changes from run to run); we write them sorted.
#include <algorithm>

#include <nlohmann/json.hpp>

#include "engine/checkpoint/atomic_file.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/checkpoint/safetensors_internal.h"

namespace ddpm {

using nlohmann::json;
using safetensors_detail::quoted;

namespace {

int dtype_order(DType t) {
  switch (t) {
    case DType::f64:
      return 0;
    case DType::f32:
      return 1;
    case DType::bf16:
      return 2;
    case DType::f16:
      return 3;
  }
  return 4;
}

std::string json_string(const std::string& s, const std::string& dest, const std::string& what) {
  try {
    return json(s).dump();
  } catch (const json::type_error&) {
    throw CheckpointError(dest + ": " + what + " is not valid UTF-8");
  }
}

struct Layout {
  std::string header;  // padded
  std::vector<std::pair<const std::string*, const StTensor*>> order;
  uint64_t data_bytes = 0;
};

Layout plan_layout(const StFile& file, const std::string& dest) {
  Layout layout;
  for (const auto& [name, t] : file.tensors) {
    if (name == "__metadata__") {
      throw CheckpointError(dest +
                            ": \"__metadata__\" cannot be a tensor name (it holds the "
                            "metadata)");
    }
    uint64_t need = 0;
    if (!safetensors_detail::byte_count(t.shape, t.dtype, &need)) {
      throw CheckpointError(dest + ": tensor " + quoted(name) + ": shape " + shape_string(t.shape) +
                            " has a negative dimension or too many elements");
    }
    if (t.data.size() != need) {
      throw CheckpointError(dest + ": tensor " + quoted(name) + ": data holds " +
                            std::to_string(t.data.size()) + " bytes but dtype " +
                            safetensors_dtype_name(t.dtype) + " and shape " +
                            shape_string(t.shape) + " need " + std::to_string(need));
    }
    layout.order.emplace_back(&name, &t);
  }
  // std::map already orders names bytewise; a stable sort by dtype keeps that.
  std::stable_sort(layout.order.begin(), layout.order.end(), [](const auto& a, const auto& b) {
    return dtype_order(a.second->dtype) < dtype_order(b.second->dtype);
  });

  std::string& h = layout.header;
  h = "{";
  if (!file.metadata.empty()) {
    h += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [key, value] : file.metadata) {
      if (!first) h += ',';
      first = false;
      h += json_string(key, dest, "metadata key " + quoted(key));
      h += ':';
      h += json_string(value, dest, "the value of metadata key " + quoted(key));
    }
    h += '}';
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : layout.order) {
    if (h.size() > 1) h += ',';
    h += json_string(*name, dest, "tensor name " + quoted(*name));
    h += ":{\"dtype\":\"";
    h += safetensors_dtype_name(t->dtype);
    h += "\",\"shape\":[";
    for (size_t i = 0; i < t->shape.size(); ++i) {
      if (i > 0) h += ',';
      h += std::to_string(t->shape[i]);
    }
    h += "],\"data_offsets\":[" + std::to_string(offset) + ",";
    offset += t->data.size();
    h += std::to_string(offset) + "]}";
  }
  h += '}';
  h.append((8 - h.size() % 8) % 8, ' ');
  if (h.size() > kSafetensorsMaxHeaderBytes) {
    throw CheckpointError(dest + ": the header would be " + std::to_string(h.size()) +
                          " bytes, over the " + std::to_string(kSafetensorsMaxHeaderBytes) +
                          "-byte limit of safetensors readers");
  }
  layout.data_bytes = offset;
  return layout;
}

void write_layout(std::ostream& out, const Layout& layout) {
  uint8_t prefix[8];
  uint64_t n = layout.header.size();
  for (uint8_t& b : prefix) {
    b = static_cast<uint8_t>(n & 0xFF);
    n >>= 8;
  }
  out.write(reinterpret_cast<const char*>(prefix), 8);
  out.write(layout.header.data(), static_cast<std::streamsize>(layout.header.size()));
  for (const auto& [name, t] : layout.order) {
    out.write(reinterpret_cast<const char*>(t->data.data()),
              static_cast<std::streamsize>(t->data.size()));
  }
}

}  // namespace

void write_safetensors(const std::filesystem::path& path, const StFile& file) {
  const Layout layout = plan_layout(file, path.string());  // every check before touching the disk
  write_file_atomically(path, [&](std::ostream& out) { write_layout(out, layout); });
}

std::vector<uint8_t> serialize_safetensors(const StFile& file, const std::string& dest_name) {
  const Layout layout = plan_layout(file, dest_name);
  std::vector<uint8_t> bytes;
  bytes.reserve(8 + layout.header.size() + layout.data_bytes);
  for (int i = 0; i < 8; ++i)
    bytes.push_back(static_cast<uint8_t>(layout.header.size() >> (8 * i)));
  bytes.insert(bytes.end(), layout.header.begin(), layout.header.end());
  for (const auto& [name, t] : layout.order)
    bytes.insert(bytes.end(), t->data.begin(), t->data.end());
  return bytes;
}

}  // namespace ddpm
