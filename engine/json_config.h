// Reading JSON configs strictly: every key is either consumed or reported as
// unknown, every type is checked, and each error names the file and the key
// ("train.json: key 'training.lr': ..."). Shared by the UNet, scheduler and
// training configs. Keys starting with '_' (diffusers' "_class_name",
// "_diffusers_version", a "_comment") are metadata and never unknown.
#pragma once

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "engine/unet_config.h"  // ConfigError

namespace ddpm {

// Parses text that must hold a JSON object; ConfigError otherwise.
nlohmann::json parse_json_object(const std::string& text, const std::string& source);

class JsonSection {
 public:
  // `path` prefixes key names in messages ("training" -> "training.lr").
  JsonSection(const nlohmann::json& j, std::string path, const std::string& source);

  [[noreturn]] void fail(const std::string& key, const std::string& what) const;
  // The value of a key, marking it consumed; nullptr when absent or null.
  const nlohmann::json* get(const std::string& key);

  // Typed reads that leave `out` unchanged when the key is absent or null.
  template <typename T>
  void read(const std::string& key, T& out);
  void read_at_least(const std::string& key, int64_t& out, int64_t min);
  template <typename T>
  void read_list(const std::string& key, std::vector<T>& out);  // non-empty; ints positive
  // A key that may only hold one of `supported` (absent or null is fine).
  void only(const std::string& key, const std::vector<nlohmann::json>& supported);
  // Throws ConfigError listing the keys nobody consumed: "unknown <what> 'a', 'b'<hint>".
  void reject_unknown(const std::string& what, const std::string& hint = "") const;

 private:
  const nlohmann::json& j_;
  std::string path_;
  const std::string& source_;
  std::set<std::string> seen_;
};

template <typename T>
void JsonSection::read(const std::string& key, T& out) {
  const nlohmann::json* v = get(key);
  if (!v) return;
  if constexpr (std::is_same_v<T, bool>) {
    if (!v->is_boolean()) fail(key, "expected true or false, got " + v->dump());
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v->is_string()) fail(key, "expected a string, got " + v->dump());
  } else if constexpr (std::is_integral_v<T>) {
    if (!v->is_number_integer() || (std::is_unsigned_v<T> && v->get<int64_t>() < 0))
      fail(key, std::string("expected ") + (std::is_unsigned_v<T> ? "a non-negative " : "an ") +
                    "integer, got " + v->dump());
  } else {
    if (!v->is_number()) fail(key, "expected a number, got " + v->dump());
  }
  out = v->get<T>();
}

template <typename T>
void JsonSection::read_list(const std::string& key, std::vector<T>& out) {
  const nlohmann::json* v = get(key);
  if (!v) return;
  if (!v->is_array() || v->empty()) fail(key, "expected a non-empty list, got " + v->dump());
  out.clear();
  for (const nlohmann::json& e : *v) {
    if constexpr (std::is_same_v<T, std::string>) {
      if (!e.is_string()) fail(key, "expected a list of strings, got " + v->dump());
    } else if constexpr (std::is_integral_v<T>) {
      if (!e.is_number_integer() || e.get<int64_t>() <= 0)
        fail(key, "expected a list of positive integers, got " + v->dump());
    } else {
      if (!e.is_number()) fail(key, "expected a list of numbers, got " + v->dump());
    }
    out.push_back(e.get<T>());
  }
}

}  // namespace ddpm
