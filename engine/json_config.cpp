#include "engine/json_config.h"

namespace ddpm {

using nlohmann::json;

json parse_json_object(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    // parse_error, and out_of_range for a number too large for a double
    // ("1e400"; it escaped as a bare nlohmann exception, found by tests/fuzz).
    throw ConfigError(source + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw ConfigError(source + ": expected a JSON object");
  return j;
}

JsonSection::JsonSection(const json& j, std::string path, const std::string& source)
    : j_(j), path_(std::move(path)), source_(source) {
  if (!j_.is_object()) fail("", "expected a JSON object, got " + j_.dump());
}

void JsonSection::fail(const std::string& key, const std::string& what) const {
  const std::string where = key.empty() ? path_ : path_.empty() ? key : path_ + "." + key;
  throw ConfigError(source_ + ": " + (where.empty() ? "" : "key '" + where + "': ") + what);
}

const json* JsonSection::get(const std::string& key) {
  seen_.insert(key);
  auto it = j_.find(key);
  return it == j_.end() || it->is_null() ? nullptr : &*it;
}

void JsonSection::read_at_least(const std::string& key, int64_t& out, int64_t min) {
  read(key, out);
  if (out < min)
    fail(key, "must be at least " + std::to_string(min) + ", got " + std::to_string(out));
}

void JsonSection::only(const std::string& key, const std::vector<json>& supported) {
  const json* v = get(key);
  if (!v) return;
  for (const json& s : supported)
    if (*v == s) return;
  std::string list = "null";
  for (const json& s : supported) list += ", " + s.dump();
  fail(key, "value " + v->dump() + " is not supported (supported: " + list + ")");
}

void JsonSection::reject_unknown(const std::string& what, const std::string& hint) const {
  std::string unknown;
  for (const auto& [k, v] : j_.items())
    if (!seen_.count(k) && k.rfind('_', 0) != 0)
      unknown += (unknown.empty() ? "'" : ", '") + (path_.empty() ? k : path_ + "." + k) + "'";
  if (!unknown.empty()) throw ConfigError(source_ + ": unknown " + what + " " + unknown + hint);
}

}  // namespace ddpm
