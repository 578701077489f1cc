// Where the golden data written by tools/gen_golden.py lives.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace ddpm::testing {

// The source tree: $DDPM_SOURCE_DIR when set (a build carried to another
// machine, e.g. by tools/gpu_check.sh), else where this build was configured.
inline std::filesystem::path source_dir() {
  const char* env = std::getenv("DDPM_SOURCE_DIR");
  return env && *env ? std::filesystem::path(env) : std::filesystem::path(DDPM_SOURCE_DIR);
}

inline std::filesystem::path golden_dir() { return source_dir() / "tests" / "golden"; }

inline nlohmann::json load_golden_json(const std::string& name) {
  std::ifstream f(golden_dir() / name);
  if (!f) throw std::runtime_error("missing golden file " + (golden_dir() / name).string());
  return nlohmann::json::parse(f);
}

}  // namespace ddpm::testing
