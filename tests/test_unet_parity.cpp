// The whole UNet against the real diffusers UNet2DModel: the folders under
// tests/golden/ were saved by save_pretrained (tools/gen_golden.py), and the
// C++ loads that very folder. Forward output, MSE loss and every parameter
// gradient are compared with diffusers' float64 results.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/cpu/cpu_backend.h"
#include "engine/model_io.h"
#include "engine/sampler.h"
#include "engine/unet.h"
#include "golden_data.h"

namespace ddpm {
namespace {

struct Golden {
  StFile file;
  std::vector<double> get(const std::string& name) const { return to_f64(file.tensors.at(name)); }
  int64_t dim(const std::string& name, size_t i) const { return file.tensors.at(name).shape.at(i); }
};

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// Runs forward and backward of the golden model in `dtype` and compares with
// tolerance rel * (max |reference|) per tensor.
void check_against_diffusers(const std::string& model_name, DType dtype, double rel) {
  SCOPED_TRACE(model_name + (dtype == DType::f64 ? " f64" : " f32"));
  const ModelFolder m = find_model(testing::golden_dir() / model_name);
  Golden gold{read_safetensors(testing::golden_dir() / model_name / "golden.safetensors")};
  UNetBuildOptions o;
  o.batch = gold.dim("sample", 0);
  o.height = gold.dim("sample", 1);
  o.width = gold.dim("sample", 2);
  o.with_loss = true;
  o.dtype = dtype;
  const UNetGraph u = build_unet(m.config, o);
  CpuBackend cpu;
  Executor ex(u.graph, cpu, ExecMode::training);
  std::vector<float> params;
  unet_weights_from_safetensors(read_safetensors(m.weights), m.weights.string(), u.graph, params);
  if (dtype == DType::f64) {
    const std::vector<double> p(params.begin(), params.end());
    cpu.copy_from_host(ex.parameters().data, p.data(), ex.parameters().bytes());
  } else {
    cpu.copy_from_host(ex.parameters().data, params.data(), ex.parameters().bytes());
  }
  ex.write(u.sample, gold.get("sample"));
  ex.write(u.timesteps, gold.get("timesteps"));
  ex.write(u.target, gold.get("target"));
  ex.forward({});
  ex.backward({});

  // Gradients that vanish in exact arithmetic (the key bias: softmax ignores
  // the q.b it adds to a whole row of scores) are rounding noise on both
  // sides; they are held to the scale of the largest gradient instead.
  double grad_scale = 0;
  for (const auto& [name, t] : gold.file.tensors)
    if (name.rfind("grad.", 0) == 0) grad_scale = std::max(grad_scale, max_abs(to_f64(t)));
  auto compare = [&](const std::vector<double>& got, const std::vector<double>& want,
                     const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    const double tol = rel * std::max(max_abs(want), 1e-3 * grad_scale);
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(got[i], want[i], tol) << what << " element " << i;
  };
  compare(ex.read<double>(ex.value(u.prediction)), gold.get("prediction"), "prediction");
  compare(ex.read<double>(ex.value(u.loss)), gold.get("loss"), "loss");
  int grads = 0;
  for (ValueId id : u.graph.parameters()) {
    const Value& v = u.graph.values[size_t(id)];
    std::vector<double> g = ex.read<double>(ex.grad(id));
    if (v.shape.rank() == 4) {
      std::vector<double> oihw(g.size());
      ohwi_to_oihw(g.data(), oihw.data(), v.shape);
      g = oihw;
    }
    compare(g, gold.get("grad." + v.name), "gradient of " + v.name);
    ++grads;
  }
  EXPECT_EQ(grads, int(u.graph.parameters().size()));
}

// In float64 both sides compute the same function with different operation
// orders: agreement to ~1e-12 of each tensor's scale is expected; 1e-9 leaves
// room for the accumulated rounding of ~10^4-term sums (1e4 * 1e-16).
TEST(UNetParity, TinyMatchesDiffusersInFloat64) {
  check_against_diffusers("unet_tiny", DType::f64, 1e-9);
}
TEST(UNetParity, HeadsMatchesDiffusersInFloat64) {
  check_against_diffusers("unet_heads", DType::f64, 1e-9);
}

// In float32 the worst case of one op is K * 2^-24 relative for its longest
// sums (K ~ 600 terms here: 3.6e-5); errors of successive ops mostly do not
// add up coherently (measured: ~1e-5). 1e-4 of each tensor's scale.
TEST(UNetParity, TinyMatchesDiffusersInFloat32) {
  check_against_diffusers("unet_tiny", DType::f32, 1e-4);
}
TEST(UNetParity, HeadsMatchesDiffusersInFloat32) {
  check_against_diffusers("unet_heads", DType::f32, 1e-4);
}

}  // namespace
}  // namespace ddpm

namespace ddpm {
namespace {

// Whole sampling loops against diffusers' schedulers driving the same model
// with the engine's own noise (tools/gen_golden.py reproduces x_T and every z
// from the Philox keys in numpy): the sampler composes model, scheduler and
// noise exactly as DDPMPipeline / DDIMPipeline do.
TEST(SamplerParity, TenStepLoopsMatchDiffusers) {
  const ModelFolder m = find_model(testing::golden_dir() / "unet_tiny");
  const StFile gold = read_safetensors(testing::golden_dir() / "unet_tiny" / "sampler_runs.safetensors");
  UNetBuildOptions o;
  o.batch = 2;
  o.height = 8;
  o.width = 12;
  const UNetGraph u = build_unet(m.config, o);
  CpuBackend cpu;
  Executor ex(u.graph, cpu, ExecMode::inference);
  load_unet_weights(m, ex);
  for (const std::string kind : {"ddpm", "ddim"}) {
    SchedulerConfig sc;  // diffusers' defaults, as the golden run used
    sc.kind = kind;
    if (kind == "ddim") sc.eta = 0.5;
    SamplerOptions so;
    so.steps = 10;
    so.seed = 1234;
    std::vector<float> got;
    sample_batch(ex, u, Scheduler(sc), so, got);
    const std::vector<double> want = to_f64(gold.tensors.at(kind + ".images"));
    ASSERT_EQ(got.size(), want.size());
    // float32 engine against a float64 reference: each step's model output
    // carries ~1e-5 relative error (the UNet parity bound), which the update
    // scales by its coefficient on eps (at most sqrt(1 - abar) / sqrt(abar)
    // times the small x0 weight of that step) and ten steps accumulate: 1e-4
    // absolute on O(1) images (measured: 2e-6).
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-4) << kind << " element " << i;
  }
}

}  // namespace
}  // namespace ddpm
