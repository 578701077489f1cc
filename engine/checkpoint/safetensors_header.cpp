// The safetensors header: the JSON text checked (syntax, depth, duplicate
// keys), each entry checked (dtype, shape, offsets, byte count), and the
// entries' byte ranges checked to tile the data region.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "engine/checkpoint/safetensors.h"
#include "engine/checkpoint/safetensors_internal.h"

namespace ddpm::safetensors_detail {

using nlohmann::json;

namespace {

constexpr const char* kSupported = "F32, F16, BF16, F64";

// Dtypes the format defines that the engine does not hold: named, so that the
// message can say "not supported" rather than "unknown".
constexpr const char* kKnownUnsupported[] = {
    "BOOL", "U8",      "I8",      "I16",     "U16",         "I32",
    "U32",  "I64",     "U64",     "F8_E4M3", "F8_E5M2",     "F8_E8M0",
    "F4",   "F6_E2M3", "F6_E3M2", "C64",     "F8_E4M3FNUZ", "F8_E5M2FNUZ"};

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw CheckpointError(source + ": " + what);
}

[[noreturn]] void fail_tensor(const std::string& source, const std::string& name,
                              const std::string& what) {
  throw CheckpointError(source + ": tensor " + quoted(name) + ": " + what);
}

// Appends j as compact JSON, stopping once `out` reaches `limit` bytes. It
// recurses only while it still writes, so a value nested a million levels
// deep costs at most `limit` levels (json::dump would recurse all the way).
void append_brief(const json& j, std::string& out, size_t limit) {
  if (out.size() >= limit) return;
  if (j.is_array() || j.is_object()) {
    out += j.is_array() ? '[' : '{';
    bool first = true;
    for (auto it = j.begin(); it != j.end() && out.size() < limit; ++it) {
      if (!first) out += ',';
      first = false;
      if (j.is_object()) out.append(json(it.key()).dump()).append(":");
      append_brief(it.value(), out, limit);
    }
    out += j.is_array() ? ']' : '}';
  } else if (j.is_string()) {
    const std::string& s = j.get_ref<const std::string&>();
    out += json(s.substr(0, limit)).dump(-1, ' ', false, json::error_handler_t::replace);
  } else {
    out += j.dump();
  }
}

// A JSON value as it appears in a message, cut short.
std::string brief(const json& j) {
  constexpr size_t kMax = 80;
  std::string s;
  append_brief(j, s, kMax);
  return safetensors_detail::printable(s, kMax);
}

std::optional<DType> dtype_from_name(const std::string& name) {
  if (name == "F32") return DType::f32;
  if (name == "F16") return DType::f16;
  if (name == "BF16") return DType::bf16;
  if (name == "F64") return DType::f64;
  return std::nullopt;
}

// A first, SAX pass over the header: checks the syntax, the nesting depth,
// and that no object has a key twice. nlohmann (like most JSON parsers) would
// silently keep the last of two equal keys, so a file naming a tensor twice
// would load whichever came last without a word. (nlohmann's parser callback
// could see the keys too, but its DOM builder then rescans the parent object
// at every object's end: quadratic in the number of tensors.)
class HeaderSyntaxCheck : public nlohmann::json_sax<json> {
 public:
  // serde_json's limit, so the Python library refuses deeper headers too.
  static constexpr size_t kMaxDepth = 128;

  std::string problem;  // empty while all is well

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t value, const string_t& text) override {
    if (std::isfinite(value)) return true;
    problem = "header is not valid JSON: number overflow parsing " + quoted(text);
    return false;
  }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return push(true); }
  bool start_array(std::size_t) override { return push(false); }
  bool end_object() override { return pop(); }
  bool end_array() override { return pop(); }

  bool key(string_t& key) override {
    Frame& frame = stack_.back();
    if (!frame.keys.insert(key).second) {
      problem = describe_duplicate(key);
      return false;
    }
    frame.last_key = key;
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const json::exception& e) override {
    // Drop nlohmann's "[json.exception.parse_error.101] " tag; keep the position and reason.
    std::string what = e.what();
    if (const size_t tag = what.find("] ");
        what.rfind("[json.exception", 0) == 0 && tag != std::string::npos) {
      what = what.substr(tag + 2);
    }
    problem = "header is not valid JSON: " + safetensors_detail::printable(what, 300);
    return false;
  }

 private:
  struct Frame {
    bool is_object;
    std::string name_in_parent;  // the key under which this object or array sits
    std::set<std::string> keys;
    std::string last_key;
  };

  bool push(bool is_object) {
    if (stack_.size() == kMaxDepth) {
      problem = "header is not valid JSON: nested more than " + std::to_string(kMaxDepth) +
                " levels deep";
      return false;
    }
    std::string parent;
    if (!stack_.empty()) {
      parent = stack_.back().is_object ? stack_.back().last_key : stack_.back().name_in_parent;
    }
    stack_.push_back({is_object, std::move(parent), {}, {}});
    return true;
  }

  bool pop() {
    stack_.pop_back();
    return true;
  }

  std::string describe_duplicate(const std::string& key) const {
    if (stack_.size() == 1) {
      if (key == "__metadata__") return "\"__metadata__\" appears twice in the header";
      return "tensor " + quoted(key) + " appears twice in the header";
    }
    if (stack_.size() == 2) {
      const std::string& parent = stack_[1].name_in_parent;
      if (parent == "__metadata__") return "\"__metadata__\" has key " + quoted(key) + " twice";
      return "tensor " + quoted(parent) + ": key " + quoted(key) + " appears twice";
    }
    return "key " + quoted(key) + " appears twice in a nested object";
  }

  std::vector<Frame> stack_;
};

json parse_header_json(std::span<const uint8_t> text, const std::string& source) {
  // nlohmann stops at a NUL byte as at the end of input, so "{}\0<anything>"
  // would parse; raw NUL is never valid JSON, so refuse it first.
  if (const auto nul = std::find(text.begin(), text.end(), uint8_t{0}); nul != text.end()) {
    fail(source, "header is not valid JSON: NUL byte at offset " +
                     std::to_string(nul - text.begin()) +
                     " (safetensors pads the header with spaces)");
  }
  HeaderSyntaxCheck check;
  if (!json::sax_parse(text.begin(), text.end(), &check) || !check.problem.empty()) {
    fail(source, check.problem.empty() ? "header is not valid JSON" : check.problem);
  }
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {  // not expected after the check
    fail(source, "header is not valid JSON: " + safetensors_detail::printable(e.what(), 300));
  }
}

std::map<std::string, std::string> parse_metadata(const json& j, const std::string& source) {
  if (!j.is_object()) {
    fail(source,
         std::string("\"__metadata__\" must be an object mapping strings to strings, got ") +
             j.type_name());
  }
  std::map<std::string, std::string> metadata;
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string()) {
      fail(source, "\"__metadata__\" key " + quoted(key) + " must map to a string, got " +
                       value.type_name() + " " + brief(value));
    }
    metadata.emplace(key, value.get<std::string>());
  }
  return metadata;
}

HeaderEntry parse_entry(const std::string& name, const json& j, uint64_t data_size,
                        const std::string& source) {
  if (!j.is_object()) {
    fail_tensor(source, name,
                std::string("entry must be an object with \"dtype\", \"shape\" and "
                            "\"data_offsets\", got ") +
                    j.type_name());
  }
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!j.contains(field)) fail_tensor(source, name, std::string("missing \"") + field + "\"");
  }
  HeaderEntry e;
  e.name = name;

  const json& dtype = j["dtype"];
  if (!dtype.is_string()) {
    fail_tensor(source, name, std::string("\"dtype\" must be a string, got ") + dtype.type_name());
  }
  const std::string dtype_name = dtype.get<std::string>();
  const std::optional<DType> parsed = dtype_from_name(dtype_name);
  if (!parsed) {
    for (const char* known : kKnownUnsupported) {
      if (dtype_name == known) {
        fail_tensor(source, name, "dtype " + dtype_name + " is not supported (" + kSupported + ")");
      }
    }
    fail_tensor(source, name,
                "unknown dtype " + quoted(dtype_name) + " (supported: " + kSupported + ")");
  }
  e.dtype = *parsed;

  const json& shape = j["shape"];
  if (!shape.is_array()) {
    fail_tensor(source, name,
                std::string("\"shape\" must be an array of non-negative integers, got ") +
                    shape.type_name());
  }
  for (size_t i = 0; i < shape.size(); ++i) {
    const json& d = shape[i];
    if (!d.is_number_unsigned() ||
        d.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail_tensor(source, name,
                  "\"shape\" " + brief(shape) + ": dimension " + std::to_string(i) + " is " +
                      brief(d) + "; expected a non-negative integer below 2^63");
    }
    e.shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
  }

  const json& offsets = j["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    fail_tensor(
        source, name,
        "\"data_offsets\" must be two non-negative integers [begin, end], got " + brief(offsets));
  }
  e.begin = offsets[0].get<uint64_t>();
  e.end = offsets[1].get<uint64_t>();
  const std::string range =
      "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
  if (e.begin > e.end) fail_tensor(source, name, range + ": begin is after end");

  uint64_t need = 0;
  if (!safetensors_detail::byte_count(e.shape, e.dtype, &need)) {
    fail_tensor(source, name,
                "dtype " + dtype_name + " and shape " + shape_string(e.shape) +
                    " need more bytes than fit in 64 bits");
  }
  if (e.end - e.begin != need) {
    fail_tensor(source, name,
                range + " hold " + std::to_string(e.end - e.begin) + " bytes but dtype " +
                    dtype_name + " and shape " + shape_string(e.shape) + " need " +
                    std::to_string(need));
  }
  if (e.end > data_size) {
    fail_tensor(source, name,
                range + " run past the end of the data region (" + std::to_string(data_size) +
                    " bytes; truncated file?)");
  }
  return e;
}

// Byte ranges must tile the data region exactly: no overlaps, no gaps, no
// trailing bytes. The Python library (the format's reference implementation)
// rejects gaps and trailing bytes too ("invalid offset", "file not fully
// covered"), so such a file is not one diffusers would load; accepting it
// would let a corrupted offset pass silently. An empty tensor may sit at any
// boundary, but not inside another tensor's range.
void check_layout(std::vector<HeaderEntry>& entries, uint64_t data_size,
                  const std::string& source) {
  std::sort(entries.begin(), entries.end(), [](const HeaderEntry& a, const HeaderEntry& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.end != b.end) return a.end < b.end;
    return a.name < b.name;
  });
  auto range = [](const HeaderEntry& e) {
    std::string r = "[";
    return r.append(std::to_string(e.begin)).append(", ").append(std::to_string(e.end)).append("]");
  };
  uint64_t covered = 0;
  const HeaderEntry* last = nullptr;  // the entry that reached `covered`
  for (const HeaderEntry& e : entries) {
    if (e.begin < covered) {
      fail(source, "tensors " + quoted(last->name) + " " + range(*last) + " and " + quoted(e.name) +
                       " " + range(e) + " overlap in the data region");
    }
    if (e.begin > covered) {
      fail(source, "bytes [" + std::to_string(covered) + ", " + std::to_string(e.begin) +
                       ") of the data region belong to no tensor (a safetensors file has no "
                       "gaps; corrupt offsets?)");
    }
    if (e.end > e.begin || last == nullptr) last = &e;
    covered = e.end;
  }
  if (covered != data_size) {
    fail(source, "bytes [" + std::to_string(covered) + ", " + std::to_string(data_size) +
                     ") of the data region belong to no tensor (the file has " +
                     std::to_string(data_size - covered) + " trailing bytes)");
  }
}

}  // namespace

Header parse_header(std::span<const uint8_t> text, uint64_t data_size, const std::string& source) {
  const json root = parse_header_json(text, source);
  if (!root.is_object()) {
    fail(source, std::string("header must be a JSON object, got ") + root.type_name());
  }
  Header header;
  for (const auto& [name, value] : root.items()) {
    if (name == "__metadata__") {
      header.metadata = parse_metadata(value, source);
    } else {
      header.entries.push_back(parse_entry(name, value, data_size, source));
    }
  }
  check_layout(header.entries, data_size, source);
  return header;
}

}  // namespace ddpm::safetensors_detail
