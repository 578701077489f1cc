// Malformed configs, field by field: for every key the training config's
// writer (train_config_to_json) emits, across the UNet2DModel config, the
// scheduler config and the data, training and logging sections, a value of
// the wrong JSON type and a value out of range are rejected with a
// ConfigError that names the file and the key; for the model (and the
// scheduler), settings that are each valid but not together are too. The
// model and scheduler keys are also checked through their own readers
// (config.json, scheduler_config.json).
//
// The cases are one table (kFields) and a list of combined settings
// (kCombined). EveryWrittenKeyHasARow enumerates what the writer emits (with
// a DDPM and a DDIM scheduler, whose keys differ) and fails for a key with no
// row, so adding a field without its cases fails here; a row whose key the
// writer does not emit fails too, so the table cannot drift.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "engine/scheduler.h"
#include "engine/train_config.h"
#include "engine/unet_config.h"

namespace ddpm {
namespace {

using nlohmann::json;

// A small valid config: two levels, attention at level 1 only (its down
// block; the mid block's attention is on level 1 too), every key written.
TrainConfig base_config() {
  TrainConfig c;
  UNetConfig& m = c.model;
  m.sample_size = m.sample_height = m.sample_width = 8;
  m.in_channels = m.out_channels = 1;
  m.block_out_channels = {8, 16};
  m.layers_per_block = 1;
  m.down_block_types = {"DownBlock2D", "AttnDownBlock2D"};
  m.up_block_types = {"AttnUpBlock2D", "UpBlock2D"};
  m.norm_num_groups = 4;
  m.attention_head_dim = 4;
  m.time_embedding_dim = 32;  // written as a number (null when 0)
  c.training.batch_size = 2;
  c.training.steps = 3;
  c.logging.sample_steps = 2;
  return c;
}

json base_json() {
  return json::parse(train_config_to_json(base_config()));
}

// Far past any size a model or schedule has (2^40): the readers' upper
// limits, which keep the size arithmetic from overflowing (found by
// tests/fuzz), whatever their exact values.
constexpr const char* kHuge = "1099511627776";

// One key: values of the wrong JSON type, and values of the right type out
// of its range (JSON texts). A key without a range is listed in kNoRange.
struct Field {
  std::string key;  // "training.batch_size"; a section alone ("training")
  std::vector<std::string> wrong_type;
  std::vector<std::string> out_of_range;
};

const std::vector<Field> kFields = {
    // Sections.
    {"model", {"3", R"("config.json")", "[]"}, {}},
    {"scheduler", {"3", "[]"}, {}},
    {"data", {"3", R"("idx")", "[]"}, {}},
    {"training", {"3", "[]"}, {}},
    {"logging", {"true", "[]"}, {}},
    // UNet2DModel (diffusers' config.json keys).
    {"model._class_name", {"3", R"(["UNet2DModel"])"}, {R"("UNet2DConditionModel")"}},
    {"model.sample_size",
     {R"("8")", "8.5", "true", "[8]", R"([8, "8"])", "{}"},
     {"0", "-8", "[0, 8]", "[8, -8]", "[8, 8, 8]", kHuge, "[8, " + std::string(kHuge) + "]"}},
    {"model.in_channels", {R"("1")", "1.5", "true", "[1]"}, {"0", "-1", kHuge}},
    {"model.out_channels", {R"("1")", "1.5", "true", "[1]"}, {"0", "-1", kHuge}},
    {"model.center_input_sample", {"0", R"("false")"}, {"true"}},
    {"model.time_embedding_type", {"1", R"(["positional"])"}, {R"("fourier")"}},
    {"model.time_embedding_dim", {R"("32")", "32.5", "true"}, {"0", "-32", kHuge}},
    // Half of block_out_channels[0] divides by zero in the embedding.
    {"model.freq_shift", {R"("1")", "true", "[1]"}, {"4"}},
    {"model.flip_sin_to_cos", {"1", R"("true")"}, {}},
    {"model.down_block_types",
     {R"("DownBlock2D")", "[]", "[1, 2]", "{}"},
     {R"(["DownBlock2D", "CrossAttnDownBlock2D"])", R"(["DownBlock2D", "UpBlock2D"])"}},
    {"model.up_block_types",
     {R"("UpBlock2D")", "[]", "[1, 2]", "{}"},
     {R"(["CrossAttnUpBlock2D", "UpBlock2D"])", R"(["AttnUpBlock2D", "DownBlock2D"])"}},
    {"model.block_out_channels",
     {"8", "[]", R"([8, "16"])", "[8, 16.5]"},
     {"[8, 0]", "[8, -16]", "[8, " + std::string(kHuge) + "]"}},
    {"model.layers_per_block", {R"("1")", "1.5"}, {"0", "-1", kHuge}},
    {"model.mid_block_scale_factor", {R"("1")", "true"}, {"0"}},
    {"model.downsample_padding", {R"("0")", "0.5"}, {"-1", "2"}},
    {"model.downsample_type", {"0"}, {R"("resnet")"}},
    {"model.upsample_type", {"0"}, {R"("resnet")"}},
    {"model.dropout", {R"("0.1")", "true"}, {"-0.1", "1", "1.5"}},
    {"model.act_fn", {"1"}, {R"("gelu")"}},
    {"model.attention_head_dim", {R"("4")", "4.5", "true"}, {"0", "-4"}},
    {"model.norm_num_groups", {R"("4")", "4.5"}, {"0", "-4"}},
    {"model.attn_norm_num_groups", {R"("4")", "4.5"}, {"2"}},
    {"model.norm_eps", {R"("1e-6")", "true"}, {"0", "-1e-6"}},
    {"model.resnet_time_scale_shift", {"0"}, {R"("scale_shift")"}},
    {"model.add_attention", {"1", R"("true")"}, {}},
    {"model.class_embed_type", {"1"}, {R"("timestep")"}},
    {"model.num_class_embeds", {R"("10")"}, {"10"}},
    {"model.num_train_timesteps", {R"("1000")", "1000.5", "true"}, {"0", "-1"}},
    // DDPMScheduler / DDIMScheduler.
    {"scheduler._class_name", {"3"}, {R"("PNDMScheduler")"}},
    {"scheduler.num_train_timesteps", {R"("1000")", "1000.5", "true"}, {"0", "-1", kHuge}},
    {"scheduler.beta_schedule", {"1"}, {R"("cosine")"}},
    {"scheduler.beta_start", {R"("1e-4")", "true"}, {"0", "-1e-4", "1", "1.5"}},
    {"scheduler.beta_end", {R"("0.02")", "true"}, {"0", "-0.02", "1", "1.5"}},
    // Its values' range and count: kCombined (they need num_train_timesteps).
    {"scheduler.trained_betas", {"0.1", "[]", R"([0.1, "0.2"])", "{}"}, {}},
    {"scheduler.variance_type", {"1"}, {R"("learned")"}},
    {"scheduler.set_alpha_to_one", {"1", R"("true")"}, {}},
    {"scheduler.clip_sample", {"1", R"("true")"}, {}},
    {"scheduler.clip_sample_range", {R"("1")", "true"}, {"0", "-1"}},
    {"scheduler.prediction_type", {"1"}, {R"("x0")"}},
    {"scheduler.timestep_spacing", {"1"}, {R"("uniform")"}},
    {"scheduler.steps_offset", {R"("1")", "1.5"}, {"-1", "1000"}},
    {"scheduler.thresholding", {"0", R"("false")"}, {"true"}},
    {"scheduler.rescale_betas_zero_snr", {"0", R"("false")"}, {"true"}},
    // Data.
    {"data.kind", {"3", R"(["idx"])"}, {R"("mnist")", R"("")"}},
    {"data.path", {"3", "true", R"(["x"])"}, {}},
    // Training.
    {"training.batch_size", {R"("2")", "2.5", "true"}, {"0", "-1"}},
    {"training.steps", {R"("3")", "3.5"}, {"0", "-1"}},
    {"training.learning_rate", {R"("2e-4")", "true"}, {"0", "-2e-4"}},
    {"training.adam_beta1", {R"("0.9")", "true"}, {"-0.1", "1", "1.5"}},
    {"training.adam_beta2", {R"("0.999")", "true"}, {"-0.1", "1", "1.5"}},
    {"training.adam_epsilon", {R"("1e-8")", "true"}, {"0", "-1e-8"}},
    {"training.weight_decay", {R"("0.01")", "true"}, {"-0.01"}},
    {"training.warmup_steps", {R"("5")", "5.5"}, {"-1"}},
    {"training.grad_clip_norm", {R"("1")", "true"}, {"-1"}},
    {"training.ema_decay", {R"("0.9999")", "true"}, {"-0.1", "1", "1.5"}},
    {"training.ema_warmup", {"3", "true"}, {R"("linear")", R"("")"}},
    {"training.ema_inv_gamma", {R"("1")", "true"}, {"0", "-1"}},
    {"training.ema_power", {R"("0.75")", "true"}, {"0", "-0.75"}},
    {"training.ema_update_after_step", {R"("0")", "0.5"}, {"-1"}},
    {"training.ema_min_decay", {R"("0")", "true"}, {"-0.1", "1", "1.5"}},
    {"training.random_flip", {"1", R"("true")"}, {}},
    // Unsigned: a negative seed is both the wrong type and out of range.
    {"training.seed", {R"("1")", "1.5", "true"}, {"-1"}},
    {"training.precision", {"16", "true"}, {R"("fp16")", R"("auto")", R"("")"}},
    // Logging.
    {"logging.log_every", {R"("10")", "1.5"}, {"0", "-1"}},
    {"logging.sample_every", {R"("0")", "1.5"}, {"-1"}},
    {"logging.sample_count", {R"("16")", "1.5"}, {"0", "-1"}},
    {"logging.sample_steps", {R"("2")", "2.5"}, {"0", "1001"}},
    {"logging.sample_scheduler", {"1", "true"}, {R"("euler")"}},
    {"logging.checkpoint_every", {R"("0")", "1.5"}, {"-1"}},
};

// Keys with no out-of-range value, and why.
const std::map<std::string, std::string> kNoRange = {
    {"model", "a section: its keys have rows"},
    {"scheduler", "a section: its keys have rows"},
    {"data", "a section: its keys have rows"},
    {"training", "a section: its keys have rows"},
    {"logging", "a section: its keys have rows"},
    {"model.flip_sin_to_cos", "true or false"},
    {"model.add_attention", "true or false"},
    {"scheduler.set_alpha_to_one", "true or false"},
    {"scheduler.clip_sample", "true or false"},
    {"training.random_flip", "true or false"},
    {"data.path", "any path (empty: the kind's default); checked when the data is opened"},
    {"scheduler.trained_betas", "out of range only with num_train_timesteps: kCombined"},
};

// Written keys that are never read: metadata (JsonSection skips '_' keys).
const std::set<std::string> kNotRead = {"model._diffusers_version", "scheduler._diffusers_version"};

// Settings valid one by one but not together (or a value whose range needs
// another key): a JSON merge patch of the whole config and the key the error
// must name (as key() below spells it).
struct Combined {
  std::string patch;
  std::string names;  // "model.norm_num_groups"
};

const std::vector<Combined> kCombined = {
    // GroupNorm groups that do not divide a level's channels.
    {R"({"model": {"norm_num_groups": 3}})", "model.norm_num_groups"},
    {R"({"model": {"block_out_channels": [8, 18]}})", "model.norm_num_groups"},
    // Block type lists of another length than block_out_channels.
    {R"({"model": {"down_block_types": ["DownBlock2D"]}})", "model.down_block_types"},
    {R"({"model": {"up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"]}})",
     "model.up_block_types"},
    {R"({"model": {"block_out_channels": [8, 16, 16]}})", "model.down_block_types"},
    // Attention heads that do not divide the channels of a level with
    // attention: a down block's, and the mid block's alone.
    {R"({"model": {"attention_head_dim": 3}})", "model.attention_head_dim"},
    {R"({"model": {"down_block_types": ["DownBlock2D", "DownBlock2D"],
                   "up_block_types": ["UpBlock2D", "UpBlock2D"], "attention_head_dim": 32}})",
     "model.attention_head_dim"},
    // freq_shift equal to half of another block_out_channels[0].
    {R"({"model": {"block_out_channels": [12, 16], "freq_shift": 6}})", "model.freq_shift"},
    // trained_betas: the count must be num_train_timesteps, each in (0, 1).
    {R"({"scheduler": {"trained_betas": [0.1, 0.2]}})", "scheduler.trained_betas"},
    {R"({"scheduler": {"num_train_timesteps": 2, "trained_betas": [0.1, 1.5]}})",
     "scheduler.trained_betas"},
    {R"({"scheduler": {"num_train_timesteps": 2, "trained_betas": [0.0, 0.5]}})",
     "scheduler.trained_betas"},
    {R"({"scheduler": {"num_train_timesteps": 2, "trained_betas": [-0.5, 0.5]}})",
     "scheduler.trained_betas"},
    // steps_offset past the last timestep.
    {R"({"scheduler": {"num_train_timesteps": 2, "steps_offset": 2}})", "scheduler.steps_offset"},
    // More sampling steps than the scheduler has timesteps.
    {R"({"scheduler": {"num_train_timesteps": 10}, "logging": {"sample_steps": 11}})",
     "logging.sample_steps"},
};

// Near misses of kCombined that must be accepted (the checks are not broader
// than the rule).
const std::vector<std::string> kAccepted = {
    R"({"model": {"attention_head_dim": 16}})",  // level 0 (8 channels) has no attention
    R"({"model": {"attention_head_dim": null}})",
    R"({"model": {"attn_norm_num_groups": 4}})",  // the same as norm_num_groups
    R"({"model": {"sample_size": [8, 6]}})",
    R"({"model": {"num_train_timesteps": 1000}})",
    R"({"model": {"block_out_channels": [12, 16], "freq_shift": 5}})",
    R"({"scheduler": {"num_train_timesteps": 2, "trained_betas": [0.1, 0.5]}})",
    R"({"scheduler": {"num_train_timesteps": 2, "steps_offset": 1}})",
    R"({"scheduler": {"_class_name": "DDIMScheduler", "set_alpha_to_one": false}})",
    R"({"scheduler": {"num_train_timesteps": 10}, "logging": {"sample_steps": 10}})",
    R"({"training": {"weight_decay": 0, "grad_clip_norm": 0, "warmup_steps": 0}})",
    R"({"logging": {"sample_every": 0, "checkpoint_every": 0}})",
};

// "training.batch_size" -> {"training", "batch_size"}; a section -> {it, ""}.
std::pair<std::string, std::string> split(const std::string& key) {
  const size_t dot = key.find('.');
  if (dot == std::string::npos) return {key, ""};
  return {key.substr(0, dot), key.substr(dot + 1)};
}

// What the error must contain: the file and the key, as the readers spell
// them (the model and scheduler are read as files of their own, named after
// the training config).
std::string names(const std::string& key) {
  const auto [section, leaf] = split(key);
  if (!leaf.empty() && (section == "model" || section == "scheduler"))
    return "train.json (" + section + "): key '" + leaf + "': ";
  return "train.json: key '" + key + "': ";
}

json with_value(json config, const std::string& key, const json& value) {
  const auto [section, leaf] = split(key);
  if (leaf.empty())
    config[section] = value;
  else
    config[section][leaf] = value;
  return config;
}

// The ConfigError's message, or "" when the config is accepted.
template <typename Parse>
std::string rejection(Parse parse, const json& config, const std::string& source) {
  try {
    parse(config.dump(), source);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

std::string train_rejection(const json& config) {
  return rejection(parse_train_config, config, "train.json");
}

// Rejected through the training config naming the key, and (model and
// scheduler keys) through their own reader naming it too.
void expect_rejected(const std::string& key, const json& value) {
  SCOPED_TRACE(key + " = " + value.dump());
  const json config = with_value(base_json(), key, value);
  const std::string message = train_rejection(config);
  EXPECT_FALSE(message.empty()) << "accepted";
  EXPECT_NE(message.find(names(key)), std::string::npos)
      << "the error does not name " << names(key) << ": " << message;
  const auto [section, leaf] = split(key);
  if (leaf.empty()) return;
  std::string own;
  if (section == "model")
    own = rejection(parse_unet_config, config["model"], "config.json");
  else if (section == "scheduler")
    own = rejection(parse_scheduler_config, config["scheduler"], "scheduler_config.json");
  else
    return;
  const std::string file = section == "model" ? "config.json" : "scheduler_config.json";
  EXPECT_NE(own.find(file + ": key '" + leaf + "': "), std::string::npos)
      << "the " << section << " reader: " << (own.empty() ? "accepted" : own);
}

// Every key of the written config: sections, and "section.key" inside them.
std::set<std::string> written_keys(const TrainConfig& c) {
  std::set<std::string> keys;
  const json written = json::parse(train_config_to_json(c));  // outlives the loop
  for (const auto& [section, body] : written.items()) {
    keys.insert(section);
    for (const auto& [leaf, value] : body.items()) keys.insert(section + "." + leaf);
  }
  return keys;
}

TEST(ConfigFields, BaseConfigIsAccepted) {
  const json base = base_json();
  ASSERT_EQ(train_rejection(base), "");
  for (const std::string& patch : kAccepted) {
    json config = base;
    config.merge_patch(json::parse(patch));
    EXPECT_EQ(train_rejection(config), "") << patch;
  }
}

TEST(ConfigFields, EveryWrittenKeyHasARow) {
  TrainConfig ddim = base_config();
  ddim.scheduler.kind = "ddim";  // writes set_alpha_to_one instead of variance_type
  std::set<std::string> written = written_keys(base_config());
  written.merge(written_keys(ddim));
  std::set<std::string> with_range;
  for (const Combined& c : kCombined) with_range.insert(c.names);
  std::set<std::string> rows;
  for (const Field& f : kFields) {
    EXPECT_TRUE(rows.insert(f.key).second) << "two rows for " << f.key;
    EXPECT_TRUE(written.count(f.key)) << "a row for " << f.key << ", which is not written";
    EXPECT_FALSE(f.wrong_type.empty()) << f.key << " has no wrong-type case";
    if (!f.out_of_range.empty()) with_range.insert(f.key);
  }
  for (const std::string& key : written) {
    if (kNotRead.count(key)) continue;
    EXPECT_TRUE(rows.count(key)) << "the writer emits '" << key
                                 << "' but kFields has no row for it";
    EXPECT_TRUE(with_range.count(key) || kNoRange.count(key))
        << "'" << key << "' has no out-of-range case and is not in kNoRange";
  }
  for (const auto& [key, why] : kNoRange)
    EXPECT_TRUE(written.count(key)) << "kNoRange lists " << key << ", which is not written";
}

TEST(ConfigFields, WrongTypesAreRejectedNamingTheKey) {
  for (const Field& f : kFields)
    for (const std::string& v : f.wrong_type) expect_rejected(f.key, json::parse(v));
}

TEST(ConfigFields, OutOfRangeValuesAreRejectedNamingTheKey) {
  for (const Field& f : kFields)
    for (const std::string& v : f.out_of_range) expect_rejected(f.key, json::parse(v));
}

TEST(ConfigFields, InconsistentSettingsAreRejectedNamingTheKey) {
  for (const Combined& c : kCombined) {
    SCOPED_TRACE(c.patch);
    json config = base_json();
    config.merge_patch(json::parse(c.patch));
    const std::string message = train_rejection(config);
    EXPECT_FALSE(message.empty()) << "accepted";
    EXPECT_NE(message.find(names(c.names)), std::string::npos)
        << "the error does not name " << names(c.names) << ": " << message;
  }
}

TEST(ConfigFields, UnknownKeysAreRejectedNamingThem) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"colour": 3})", "unknown keys 'colour'"},
      {R"({"model": {"colour": 3}})", "unknown UNet2DModel config keys 'colour'"},
      {R"({"scheduler": {"colour": 3}})", "unknown scheduler config keys 'colour'"},
      {R"({"data": {"colour": 3}})", "unknown keys 'data.colour'"},
      {R"({"training": {"colour": 3}})", "unknown keys 'training.colour'"},
      {R"({"logging": {"colour": 3}})", "unknown keys 'logging.colour'"},
  };
  for (const auto& [patch, want] : cases) {
    json config = base_json();
    config.merge_patch(json::parse(patch));
    const std::string message = train_rejection(config);
    EXPECT_NE(message.find(want), std::string::npos) << patch << ": " << message;
  }
}

}  // namespace
}  // namespace ddpm
