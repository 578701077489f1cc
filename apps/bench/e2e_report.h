// The table ddpm_cuda_bench --e2e prints last, from its JSON result
// (e2e_bench.h): one row per graph mode for training, sampling and the
// batch-1 step, then whether the modes agreed bitwise.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace ddpm::bench {

std::string e2e_table(const nlohmann::json& result);

}  // namespace ddpm::bench
