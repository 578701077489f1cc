// The UNet2DModel builder and its config.json: diffusers' structure and names,
// and clear errors for what is not supported.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

#include "engine/unet.h"
#include "golden_data.h"

namespace ddpm {
namespace {

TEST(UNetConfig, Cifar10HasDiffusersParameterCountAndNames) {
  const UNetGraph u = build_unet(UNetConfig::cifar10(), {2, 0, 0, true});
  EXPECT_EQ(u.graph.num_parameters, 35746307);
  // The 328 tensor names and shapes of google/ddpm-cifar10-32 (shapes OIHW there, OHWI here).
  std::ifstream f(testing::source_dir() / "tests/data/ddpm_cifar10_32_keys.txt");
  ASSERT_TRUE(f.good());
  std::string line;
  std::getline(f, line);  // header
  std::map<std::string, std::vector<int64_t>> want;
  while (std::getline(f, line)) {
    std::istringstream s(line);
    std::string name, dims;
    s >> name;
    std::getline(s, dims);
    std::vector<int64_t> shape;
    for (char& c : dims)
      if (c == '(' || c == ')' || c == ',') c = ' ';
    std::istringstream ds(dims);
    for (int64_t d; ds >> d;) shape.push_back(d);
    want[name] = shape;
  }
  EXPECT_EQ(want.size(), 328u);
  std::map<std::string, std::vector<int64_t>> got;
  for (ValueId id : u.graph.parameters()) {
    const Value& v = u.graph.values[size_t(id)];
    std::vector<int64_t> shape;
    for (int i = 0; i < v.shape.rank(); ++i) shape.push_back(v.shape[i]);
    if (shape.size() == 4) shape = {shape[0], shape[3], shape[1], shape[2]};
    got[v.name] = shape;
  }
  EXPECT_EQ(got, want);
}

TEST(UNetConfig, ParsesDiffusersConfigAndRoundTrips) {
  const UNetConfig c = load_unet_config(testing::golden_dir() / "unet_heads" / "config.json");
  EXPECT_EQ(c.block_out_channels, (std::vector<int64_t>{8, 16, 16}));
  EXPECT_EQ(c.attention_head_dim, 4);
  EXPECT_TRUE(c.flip_sin_to_cos);
  EXPECT_EQ(c.freq_shift, 0);
  EXPECT_EQ(c.in_channels, 1);
  EXPECT_EQ(c.mid_block_scale_factor, 1.5);
  const UNetConfig back = parse_unet_config(unet_config_to_json(c), "roundtrip");
  EXPECT_EQ(unet_config_to_json(back), unet_config_to_json(c));
}

std::string error_of(const std::string& json) {
  try {
    parse_unet_config(json, "config.json");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(UNetConfig, RejectsWhatItDoesNotSupportNamingTheKey) {
  EXPECT_NE(error_of(R"({"sample_size": 32, "colour": 3})")
                .find("unknown UNet2DModel config keys 'colour'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"act_fn": "gelu"})").find("key 'act_fn': value \"gelu\" is not supported"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"time_embedding_type": "fourier"})").find("'time_embedding_type'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"class_embed_type": "timestep"})").find("'class_embed_type'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"center_input_sample": true})").find("'center_input_sample'"),
            std::string::npos);
  EXPECT_NE(
      error_of(R"({"block_out_channels": [32, 64]})").find("'down_block_types': has 4 entries"),
      std::string::npos);
  EXPECT_NE(
      error_of(
          R"({"down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D"]})")
          .find("'CrossAttnDownBlock2D' is not supported"),
      std::string::npos);
  EXPECT_NE(error_of(R"({"norm_num_groups": 24})").find("do not divide"), std::string::npos);
  EXPECT_NE(error_of(R"({"layers_per_block": 0})").find("at least 1"), std::string::npos);
  EXPECT_NE(error_of(R"({"attention_head_dim": 100})").find("does not divide"), std::string::npos);
  EXPECT_NE(error_of("[1, 2]").find("expected a JSON object"), std::string::npos);
  EXPECT_NE(error_of("{not json").find("not valid JSON"), std::string::npos);
  EXPECT_THROW(load_unet_config("/nonexistent/config.json"), ConfigError);
}

TEST(UNetConfig, ImageSizeMustSurviveDownsampling) {
  UNetBuildOptions o;
  o.height = 30;
  o.width = 32;
  EXPECT_THROW(build_unet(UNetConfig::cifar10(), o), ConfigError);
}

}  // namespace
}  // namespace ddpm
