// The timestep embedding against diffusers' get_timestep_embedding, in
// float32 (tests/golden/timestep_embedding.json, from tools/gen_golden.py).
#include <gtest/gtest.h>

#include "golden_data.h"
#include "op_harness.h"

namespace ddpm {
namespace {

TEST(EmbeddingParity, MatchesDiffusersFloat32) {
  const nlohmann::json g = testing::load_golden_json("timestep_embedding.json");
  const auto t = g["timesteps"].get<std::vector<double>>();
  for (const auto& c : g["cases"]) {
    TimestepEmbeddingParams p;
    p.dim = c["dim"].get<int64_t>();
    p.flip_sin_to_cos = c["flip_sin_to_cos"].get<bool>();
    p.freq_shift = c["freq_shift"].get<double>();
    testing::OpRun run(p, {Shape{int64_t(t.size())}}, DType::f32);
    for (size_t i = 0; i < t.size(); ++i) run.inputs[0].set(int64_t(i), t[i]);
    const std::vector<double> got = run.forward();
    const auto want = c["embedding"].get<std::vector<double>>();
    ASSERT_EQ(got.size(), want.size());
    // Both sides do the same float32 operations in the same order; only the
    // sin/cos implementations differ, by an ulp of an argument up to 999:
    // 999 * 2^-24 ~ 6e-5.
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_NEAR(got[i], want[i], 1e-4) << c.dump().substr(0, 60) << " element " << i;
  }
}

}  // namespace
}  // namespace ddpm
