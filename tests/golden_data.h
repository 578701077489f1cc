// Where the golden data written by tools/gen_golden.py lives.
#pragma once

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace ddpm::testing {

inline std::filesystem::path golden_dir() {
  return std::filesystem::path(DDPM_SOURCE_DIR) / "tests" / "golden";
}

inline nlohmann::json load_golden_json(const std::string& name) {
  std::ifstream f(golden_dir() / name);
  if (!f) throw std::runtime_error("missing golden file " + (golden_dir() / name).string());
  return nlohmann::json::parse(f);
}

}  // namespace ddpm::testing
