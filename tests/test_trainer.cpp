// The DDPM trainer, sampler and model folders end to end on the CPU: the loss
// falls, a resumed run continues bitwise, checkpoints round-trip and reject
// what does not fit, and sampling is deterministic per image.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "engine/checkpoint/errors.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/model_io.h"
#include "engine/sampler.h"
#include "engine/trainer.h"
#include "tests/synthetic_images.h"
#include "tests/tiny_unet.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  const fs::path d =
      fs::temp_directory_path() / ("ddpm_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

using testing::squares;

TrainConfig tiny_config() {
  TrainConfig c;
  c.model = testing::tiny_unet(/*attention_in_level_2=*/true, /*head_dim=*/0);
  c.training.batch_size = 4;
  c.training.learning_rate = 2e-3;
  c.training.warmup_steps = 5;
  c.training.ema_decay = 0.9;
  c.training.seed = 17;
  return c;
}

TEST(Trainer, LossFallsOnSyntheticImages) {
  const ImageDataset data = squares(64);
  TrainConfig c = tiny_config();
  c.training.batch_size = 8;
  CpuBackend cpu;
  Trainer t(c, data, cpu);
  double first = 0, last = 0;
  for (int i = 0; i < 120; ++i) {
    const StepMetrics m = t.train_step();
    ASSERT_TRUE(std::isfinite(m.loss)) << "step " << m.step;
    if (i < 10) first += m.loss / 10;
    if (i >= 110) last += m.loss / 10;
  }
  // The noise-prediction loss starts near 1 (predicting zero) and must fall clearly.
  EXPECT_LT(last, 0.6 * first) << "first " << first << " last " << last;
}

TEST(Trainer, ResumeContinuesBitwise) {
  const ImageDataset data = squares(10);  // batches cross epoch boundaries
  const TrainConfig c = tiny_config();
  CpuBackend cpu;
  Trainer straight(c, data, cpu);
  for (int i = 0; i < 6; ++i) straight.train_step();

  const fs::path dir = fresh_dir("resume") / "checkpoint";
  {
    Trainer first(c, data, cpu);
    for (int i = 0; i < 3; ++i) first.train_step();
    first.save_checkpoint(dir);
  }
  Trainer resumed(c, data, cpu);
  resumed.resume(dir);
  EXPECT_EQ(resumed.step(), 3);
  for (int i = 0; i < 3; ++i) resumed.train_step();
  EXPECT_EQ(resumed.parameters(), straight.parameters());
  EXPECT_EQ(resumed.ema(), straight.ema());
  EXPECT_EQ(resumed.train_step().loss, straight.train_step().loss);
  fs::remove_all(dir.parent_path());
}

// A v1 training state (before the fusions: each attention projection's
// weight and bias together, the unfused graph's layout) still resumes: the
// buffers are moved by parameter name into the fused layout. The v1 file is
// made here from a v2 one by placing every parameter at its unfused offset.
TEST(Trainer, ResumesAVersion1StateInTheUnfusedLayout) {
  const ImageDataset data = squares(8);
  const TrainConfig c = tiny_config();
  CpuBackend cpu;
  const fs::path dir = fresh_dir("v1") / "checkpoint";
  Trainer t(c, data, cpu);
  for (int i = 0; i < 2; ++i) t.train_step();
  t.save_checkpoint(dir);

  UNetBuildOptions o;
  o.fuse = false;
  const Graph unfused = build_unet(c.model, o).graph;
  const Graph& fused = t.unet().graph;
  StFile state = read_safetensors(dir / "training_state.safetensors");
  bool moved = false;  // the test needs a layout that differs
  for (auto& [name, tensor] : state.tensors) {
    const std::vector<float> v2 = to_f32(tensor);
    std::vector<float> v1(size_t(unfused.param_buffer_elements), 0.0f);
    for (ValueId id : fused.parameters()) {
      const Value& p = fused.values[size_t(id)];
      const Value& q = unfused.values[size_t(unfused.find(p.name))];
      moved |= p.param_offset != q.param_offset;
      std::copy_n(v2.begin() + p.param_offset, p.shape.numel(), v1.begin() + q.param_offset);
    }
    tensor = from_f32(v1, {int64_t(v1.size())}, DType::f32);
  }
  ASSERT_TRUE(moved) << "the fused and unfused layouts are the same: nothing is tested";
  state.metadata["format"] = "ddpm_cuda.training_state.v1";
  write_safetensors(dir / "training_state.safetensors", state);

  Trainer resumed(c, data, cpu);
  resumed.resume(dir);
  EXPECT_EQ(resumed.parameters(), t.parameters());
  EXPECT_EQ(resumed.ema(), t.ema());
  EXPECT_EQ(resumed.train_step().loss, t.train_step().loss);  // Adam moments too
  state.metadata["format"] = "ddpm_cuda.training_state.v0";
  write_safetensors(dir / "training_state.safetensors", state);
  Trainer rejected(c, data, cpu);
  EXPECT_THROW(rejected.resume(dir), CheckpointError);
  fs::remove_all(dir.parent_path());
}

// enqueue_step + collect_metrics (how the app drives a device that runs
// ahead) is train_step, bit for bit; metrics are handed out once.
TEST(Trainer, EnqueuedStepsAreCollectedInOrder) {
  const ImageDataset data = squares(10);
  const TrainConfig c = tiny_config();
  CpuBackend cpu;
  Trainer one_by_one(c, data, cpu), ahead(c, data, cpu);
  std::vector<StepMetrics> want;
  for (int i = 0; i < 3; ++i) want.push_back(one_by_one.train_step());
  for (int i = 0; i < 3; ++i) ahead.enqueue_step();
  EXPECT_EQ(ahead.step(), 3);
  const std::vector<StepMetrics> got = ahead.collect_metrics();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].step, int64_t(i) + 1);
    EXPECT_EQ(got[i].step, want[i].step);
    EXPECT_EQ(got[i].loss, want[i].loss);
    EXPECT_EQ(got[i].grad_norm, want[i].grad_norm);
    EXPECT_EQ(got[i].learning_rate, want[i].learning_rate);
    EXPECT_EQ(got[i].ema_decay, want[i].ema_decay);
  }
  EXPECT_GT(got[1].learning_rate, got[0].learning_rate);  // the warmup: lr filled per step
  EXPECT_TRUE(ahead.collect_metrics().empty());
  EXPECT_EQ(ahead.parameters(), one_by_one.parameters());
  EXPECT_EQ(ahead.ema(), one_by_one.ema());
}

TEST(Trainer, CheckpointIsADiffusersPipelineWithEmaWeights) {
  const ImageDataset data = squares(8);
  const TrainConfig c = tiny_config();
  CpuBackend cpu;
  Trainer t(c, data, cpu);
  for (int i = 0; i < 2; ++i) t.train_step();
  const fs::path dir = fresh_dir("pipeline") / "ckpt";
  t.save_checkpoint(dir);
  for (const char* f :
       {"model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json", "training_state.safetensors", "train_config.json"})
    EXPECT_TRUE(fs::exists(dir / f)) << f;
  EXPECT_FALSE(fs::exists(dir.string() + ".tmp"));
  const ModelFolder m = find_model(dir);
  ASSERT_TRUE(m.scheduler.has_value());
  std::vector<float> loaded;
  unet_weights_from_safetensors(read_safetensors(m.weights), "ckpt", t.unet().graph, loaded);
  EXPECT_EQ(loaded, t.ema());
  // Saving again replaces the folder in place.
  t.train_step();
  t.save_checkpoint(dir);
  unet_weights_from_safetensors(read_safetensors(m.weights), "ckpt", t.unet().graph, loaded);
  EXPECT_EQ(loaded, t.ema());
  fs::remove_all(dir.parent_path());
}

TEST(Trainer, ResumeRejectsAnotherModelOrDamage) {
  const ImageDataset data = squares(8);
  CpuBackend cpu;
  const fs::path root = fresh_dir("reject");
  Trainer t(tiny_config(), data, cpu);
  t.train_step();
  t.save_checkpoint(root / "ckpt");

  TrainConfig other = tiny_config();
  other.model.block_out_channels = {8, 8};
  Trainer u(other, data, cpu);
  EXPECT_THROW(u.resume(root / "ckpt"), CheckpointError);
  EXPECT_THROW(u.resume(root / "missing"), CheckpointError);
  // A truncated state file is a clear error, not a crash.
  fs::resize_file(root / "ckpt" / "training_state.safetensors", 100);
  Trainer v(tiny_config(), data, cpu);
  EXPECT_THROW(v.resume(root / "ckpt"), CheckpointError);
  fs::remove_all(root);
}

TEST(Trainer, DatasetMustFitTheModel) {
  ImageDataset data = squares(8);
  data.channels = 3;
  data.pixels.resize(size_t(8 * 64 * 3));
  CpuBackend cpu;
  try {
    Trainer t(tiny_config(), data, cpu);
    FAIL() << "expected an error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("8x8x3 images, but the model config expects"),
              std::string::npos)
        << e.what();
  }
}

TEST(ModelFolder, WeightsRoundTripAndMismatchesAreNamed) {
  const TrainConfig c = tiny_config();
  UNetBuildOptions o;
  const UNetGraph u = build_unet(c.model, o);
  CpuBackend cpu;
  Executor ex(u.graph, cpu, ExecMode::inference);
  ex.init_parameters(3);
  const std::vector<float> params = ex.read(ex.parameters());
  const fs::path dir = fresh_dir("folder");
  save_pipeline(dir, c.model, c.scheduler, u.graph, params);
  const ModelFolder m = find_model(dir);
  std::vector<float> back;
  StFile f = read_safetensors(m.weights);
  unet_weights_from_safetensors(f, "w", u.graph, back);
  EXPECT_EQ(back, params);

  // Legacy attention names load to the same weights.
  StFile legacy = f;
  for (const char* part : {"to_q", "to_k", "to_v"}) {
    const std::string from = std::string("down_blocks.1.attentions.0.") + part + ".weight";
    auto node = legacy.tensors.extract(from);
    node.key() = std::string("down_blocks.1.attentions.0.") +
                 (part == std::string("to_q")   ? "query"
                  : part == std::string("to_k") ? "key"
                                                : "value") +
                 ".weight";
    legacy.tensors.insert(std::move(node));
  }
  unet_weights_from_safetensors(legacy, "legacy", u.graph, back);
  EXPECT_EQ(back, params);

  // Half-precision weights load, rounded.
  StFile half = unet_weights_to_safetensors(u.graph, params, DType::bf16);
  unet_weights_from_safetensors(half, "bf16", u.graph, back);
  EXPECT_NEAR(back[size_t(u.graph.values[size_t(u.graph.find("conv_in.weight"))].param_offset)],
              params[size_t(u.graph.values[size_t(u.graph.find("conv_in.weight"))].param_offset)],
              1e-2);

  StFile broken = f;
  broken.tensors.erase("conv_in.bias");
  broken.tensors["extra.weight"] = f.tensors.at("conv_out.bias");
  broken.tensors["conv_out.bias"].shape = {1, 1};
  try {
    unet_weights_from_safetensors(broken, "broken.safetensors", u.graph, back);
    FAIL() << "expected an error";
  } catch (const CheckpointError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("missing tensor 'conv_in.bias' [8]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected tensor 'extra.weight'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("tensor 'conv_out.bias' has shape [1, 1], the config needs [1]"),
              std::string::npos)
        << msg;
  }
  EXPECT_THROW(find_model(dir / "nope"), ConfigError);
  fs::remove(dir / "unet" / "diffusion_pytorch_model.safetensors");
  EXPECT_THROW(find_model(dir), CheckpointError);
  fs::remove_all(dir);
}

TEST(Sampler, ImagesDependOnSeedAndIndexNotOnBatch) {
  const TrainConfig c = tiny_config();
  CpuBackend cpu;
  auto run = [&](int64_t batch, int64_t first, uint64_t seed) {
    UNetBuildOptions o;
    o.batch = batch;
    const UNetGraph u = build_unet(c.model, o);
    Executor ex(u.graph, cpu, ExecMode::inference);
    ex.init_parameters(4);
    SamplerOptions so;
    so.steps = 5;
    so.seed = seed;
    so.first_image = first;
    std::vector<float> out;
    SchedulerConfig sc = c.scheduler;
    sample_batch(ex, u, Scheduler(sc), so, out);
    return out;
  };
  const std::vector<float> three = run(3, 0, 9), single = run(1, 2, 9), other = run(1, 2, 10);
  ASSERT_EQ(single.size() * 3, three.size());
  // The noise is the same; the UNet's arithmetic may differ in the last bits
  // because BLAS blocks a GEMM differently for another number of rows: five
  // steps of fp32 rounding stay far below 1e-4, while another seed differs by O(1).
  double same = 0, different = 0;
  for (size_t i = 0; i < single.size(); ++i) {
    same = std::max(same, double(std::abs(single[i] - three[2 * 64 + i])));
    different = std::max(different, double(std::abs(single[i] - other[i])));
  }
  EXPECT_LT(same, 1e-4);
  EXPECT_GT(different, 0.1);
  for (float v : three) ASSERT_TRUE(std::isfinite(v));
}

TEST(TrainConfig, UnknownKeysAndBadValuesAreNamed) {
  auto error = [](const std::string& text) -> std::string {
    try {
      parse_train_config(text, "train.json");
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(error(R"({"model": {}, "training": {"lr": 1}})").find("unknown keys 'training.lr'"),
            std::string::npos);
  EXPECT_NE(error(R"({"model": {}, "trainng": {}})").find("unknown keys 'trainng'"),
            std::string::npos);
  EXPECT_NE(error(R"({"training": {}})").find("key 'model': missing"), std::string::npos);
  EXPECT_NE(error(R"({"model": {}, "training": {"batch_size": 0}})").find("training.batch_size"),
            std::string::npos);
  EXPECT_NE(error(R"({"model": {}, "data": {"kind": "imagenet"}})").find("'data.kind'"),
            std::string::npos);
  EXPECT_NE(error(R"({"model": {"act_fn": "relu"}})").find("act_fn"), std::string::npos);
  EXPECT_NE(
      error(R"({"model": {}, "logging": {"sample_scheduler": "euler"}})").find("sample_scheduler"),
      std::string::npos);
  const TrainConfig c = tiny_config();
  EXPECT_EQ(train_config_to_json(parse_train_config(train_config_to_json(c), "x")),
            train_config_to_json(c));
}

}  // namespace
}  // namespace ddpm
