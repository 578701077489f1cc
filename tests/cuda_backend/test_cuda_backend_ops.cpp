// The CUDA backend op by op: small graphs that together use every op, every
// rule's optional inputs and gradients, and the awkward cases (odd channel
// counts, unaligned channel offsets, asymmetric padding, a value feeding two
// slots of one node), run through the executor and compared with the CPU
// backend (backend_compare.h has the tolerance). Plus the backend's own
// duties: memory, errors, zero upstream gradients, overwritten parameter
// gradients, the workspace.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/executor.h"
#include "tests/cuda_backend/backend_compare.h"
#include "tests/kernels/kernel_test_util.h"

namespace ddpm {
namespace {

using testing::compare_backends;
using testing::CompareOptions;

std::vector<double> timesteps(const std::string& name, int64_t n) {
  std::vector<double> t;
  if (name == "t" || name == "timesteps")
    for (int64_t i = 0; i < n; ++i) t.push_back(double(37 * i + 11));
  return t;
}

// conv2d: 3x3 "same" with bias, a stride-2 downsample with diffusers'
// (0, 1, 0, 1) padding, a 1x1 without bias, a 1x3 with one-sided padding;
// odd channel counts (3, 5) and a 5x7 map; the input and the target need
// gradients (conv's dx, mse's dtarget).
Graph conv_graph(DType dtype) {
  GraphBuilder b(dtype);
  const ValueId x = b.input("x", Shape{2, 5, 7, 3}, true);
  ValueId h = b.conv2d("same", x, Conv2dParams{8, 3, 3, 1, Padding2d::same(1)});
  h = b.conv2d("down", h, Conv2dParams{8, 3, 3, 2, Padding2d{0, 1, 0, 1}});
  h = b.conv2d("pointwise", h, Conv2dParams{5, 1, 1, 1, {}, false});
  h = b.conv2d("wide", h, Conv2dParams{4, 1, 3, 1, Padding2d{0, 0, 2, 0}});
  const ValueId target = b.input("target", b.shape(h), true);
  b.set_loss(b.mse_loss("loss", h, target));
  return b.finish();
}

// group_norm in its three forms (affine + SiLU, affine, neither; 6 channels:
// no float4 path), silu, upsample2x, concat at an unaligned channel offset,
// the broadcast add with a scale, x + x, and dropout.
Graph pointwise_graph(DType dtype, double dropout) {
  GraphBuilder b(dtype);
  const ValueId x = b.input("x", Shape{3, 4, 5, 6}, true);
  const ValueId emb = b.input("emb", Shape{3, 12}, true);
  ValueId h = b.group_norm("gn_silu", x, GroupNormParams{3, 1e-5, true, true});
  h = b.group_norm("gn_affine", h, GroupNormParams{2, 1e-5, true, false});
  h = b.group_norm("gn_plain", h, GroupNormParams{6, 1e-5, false, true});
  h = b.silu("silu", h);
  const ValueId up = b.upsample2x("up", h);
  const ValueId cat = b.concat("cat", {up, b.upsample2x("up_x", x)});
  h = b.add("add_emb", cat, emb, 0.5);
  h = b.add("twice", h, h);
  if (dropout > 0) h = b.dropout("drop", h, dropout);
  b.mark_output(h);
  const ValueId target = b.input("target", b.shape(h));
  b.set_loss(b.mse_loss("loss", h, target));
  return b.finish();
}

// linear on rank-4 and rank-2 inputs, with and without bias; attention with
// two heads, and with q = k = v one value (one gradient fed by three slots);
// the timestep embedding (odd dim, flipped) through an MLP into a broadcast add.
Graph attention_graph(DType dtype) {
  GraphBuilder b(dtype);
  const ValueId x = b.input("x", Shape{2, 3, 4, 8}, true);
  const ValueId t = b.input("t", Shape{2});
  ValueId h = b.linear("in_proj", x, LinearParams{8});
  const ValueId q = b.linear("to_q", h, LinearParams{8});
  const ValueId k = b.linear("to_k", h, LinearParams{8, false});
  const ValueId v = b.linear("to_v", h, LinearParams{8});
  h = b.attention("attn", q, k, v, AttentionParams{2, 4});
  h = b.attention("self", h, h, h, AttentionParams{1, 8, 0.5});
  ValueId temb = b.timestep_embedding("temb", t, TimestepEmbeddingParams{7, true, 0.0});
  temb = b.linear("temb_1", temb, LinearParams{6});
  temb = b.silu("temb_act", temb);
  temb = b.linear("temb_2", temb, LinearParams{8});
  h = b.add("add_temb", h, temb);
  h = b.linear("out_proj", h, LinearParams{5});
  b.mark_output(h);
  const ValueId target = b.input("target", b.shape(h));
  b.set_loss(b.mse_loss("loss", h, target));
  return b.finish();
}

// The fused forms (the UNet's; engine/unet.h). Every fused input is fed to
// two fused nodes, so its gradient is both overwritten (by the later node's
// backward, which runs first) and accumulated (by the earlier one's):
// conv2d + residual with and without bias and a residual that is the conv's
// own input (one value in two slots); group_norm + channel_add, affine with
// SiLU, plain, and on an [N, C] value added to itself. 6 channels: no float4
// path (the UNet tests take it).
Graph fused_conv_norm_graph(DType dtype) {
  GraphBuilder b(dtype);
  const ValueId x = b.input("x", Shape{2, 5, 7, 3}, true);
  const ValueId r = b.input("r", Shape{2, 5, 7, 6}, true);
  const ValueId emb = b.input("emb", Shape{2, 6}, true);
  ValueId h = b.conv2d("conv_res", x, Conv2dParams{6, 3, 3, 1, Padding2d::same(1)}, r);
  h = b.group_norm("gn_add", h, GroupNormParams{3, 1e-5, true, true}, emb);
  h = b.conv2d("conv_res_no_bias", h, Conv2dParams{6, 3, 3, 1, Padding2d::same(1), false}, r);
  h = b.group_norm("gn_add_plain", h, GroupNormParams{2, 1e-5, false, false}, emb);
  h = b.conv2d("conv_self_res", h, Conv2dParams{6, 1, 1, 1, {}}, h);
  const ValueId e = b.group_norm("gn_self_add", emb, GroupNormParams{2, 1e-5, true, true}, emb);
  h = b.add("add_e", h, e);
  b.mark_output(h);
  const ValueId target = b.input("target", b.shape(h));
  b.set_loss(b.mse_loss("loss", h, target));
  return b.finish();
}

// The fused attention block: stacked q/k/v weights as one GEMM (with and
// without bias), packed attention read in place (two attentions on one qkv:
// its gradient overwritten and accumulated), linear + residual (x fed as the
// residual twice). c channels in `heads` heads: 8 in 2 takes the float4
// paths (rows 3c = 24 floats apart), 6 in 2 (head_dim 3) the scalar ones.
Graph fused_attention_graph(DType dtype, int64_t c, int64_t heads) {
  GraphBuilder b(dtype);
  const ValueId x = b.input("x", Shape{2, 3, 4, c}, true);
  const ValueId h = b.linear("in_proj", x, LinearParams{c});
  const ValueId qkv = b.linear_stacked("to_qkv", h, {"to_q", "to_k", "to_v"}, LinearParams{3 * c});
  const ValueId a1 = b.attention_packed("attn_a", qkv, AttentionParams{heads, c / heads});
  const ValueId a2 = b.attention_packed("attn_b", qkv, AttentionParams{1, c, 0.5});
  const ValueId y1 = b.linear("out_a", a1, LinearParams{c}, x);
  const ValueId y2 = b.linear("out_b", a2, LinearParams{c}, x);
  const ValueId kv =
      b.linear_stacked("kv", b.add("sum", y1, y2), {"p0", "p1"}, LinearParams{2 * c, false});
  b.mark_output(kv);
  const ValueId target = b.input("target", b.shape(kv));
  b.set_loss(b.mse_loss("loss", kv, target));
  return b.finish();
}

TEST(CudaBackendOps, FusedConvAndGroupNormMatchCpu) {
  DDPM_REQUIRE_DEVICE();
  compare_backends(fused_conv_norm_graph);
}

TEST(CudaBackendOps, FusedAttentionBlockMatchesCpu) {
  DDPM_REQUIRE_DEVICE();
  compare_backends([](DType t) { return fused_attention_graph(t, 8, 2); });
  compare_backends([](DType t) { return fused_attention_graph(t, 6, 2); });
}

TEST(CudaBackendOps, FusedInferenceForwardMatchesCpu) {
  DDPM_REQUIRE_DEVICE();
  CompareOptions o;
  o.mode = ExecMode::inference;
  compare_backends(fused_conv_norm_graph, o);
  compare_backends([](DType t) { return fused_attention_graph(t, 8, 2); }, o);
}

// The CUDA linear reads stacked parts as one matrix, so they must be
// adjacent (GraphBuilder::linear_stacked places them so); hand-made separate
// tensors are refused with a message saying why.
TEST(CudaBackend, StackedLinearNeedsAdjacentParts) {
  DDPM_REQUIRE_DEVICE();
  GraphBuilder b;
  const ValueId x = b.input("x", Shape{4, 3});
  const ValueId w0 = b.parameter("w0", Shape{2, 3}, ParamInit::constant(1));
  const ValueId w1 = b.parameter("w1", Shape{2, 3}, ParamInit::constant(1));  // 16-aligned: a gap
  b.mark_output(b.add_node("split", LinearParams{4, false, false, 2}, {x, w0, w1})[0]);
  const Graph g = b.finish();
  CudaBackend gpu;
  Executor ex(g, gpu, ExecMode::inference);
  try {
    ex.forward({});
    FAIL() << "non-adjacent parts ran";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("back to back"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'split'"), std::string::npos) << e.what();
  }
}

TEST(CudaBackendOps, Conv2dMatchesCpu) {
  DDPM_REQUIRE_DEVICE();
  compare_backends(conv_graph);
}

TEST(CudaBackendOps, GroupNormAndPointwiseOpsMatchCpu) {
  DDPM_REQUIRE_DEVICE();
  compare_backends([](DType t) { return pointwise_graph(t, 0.0); });
}

// Two rounds: a fresh mask each step, and nothing carried over between steps.
TEST(CudaBackendOps, DropoutInTrainingMatchesCpu) {
  DDPM_REQUIRE_DEVICE();
  CompareOptions o;
  o.rounds = 2;
  compare_backends([](DType t) { return pointwise_graph(t, 0.3); }, o);
}

TEST(CudaBackendOps, LinearAttentionAndTimestepEmbeddingMatchCpu) {
  DDPM_REQUIRE_DEVICE();
  CompareOptions o;
  o.input_values = timesteps;
  compare_backends(attention_graph, o);
}

TEST(CudaBackendOps, InferenceForwardMatchesCpu) {
  DDPM_REQUIRE_DEVICE();
  CompareOptions o;
  o.mode = ExecMode::inference;
  o.input_values = timesteps;
  compare_backends([](DType t) { return pointwise_graph(t, 0.5); }, o);  // dropout off
  compare_backends(attention_graph, o);
}

// ---- the backend's own duties ----------------------------------------------------

TEST(CudaBackend, MemoryRoundTripsAndFillsZero) {
  DDPM_REQUIRE_DEVICE();
  CudaBackend gpu;
  EXPECT_EQ(gpu.device(), Device::cuda);
  EXPECT_EQ(gpu.allocate(0), nullptr);
  DeviceBuffer buffer(gpu, 64 * sizeof(float));
  std::vector<float> host(64), back(64);
  for (int i = 0; i < 64; ++i) host[size_t(i)] = float(i) + 0.5f;
  gpu.copy_from_host(buffer.data(), host.data(), buffer.bytes());
  gpu.fill_zero(static_cast<float*>(buffer.data()) + 8, 8 * sizeof(float));
  gpu.copy_to_host(back.data(), buffer.data(), buffer.bytes());
  for (int i = 0; i < 64; ++i)
    EXPECT_EQ(back[size_t(i)], i >= 8 && i < 16 ? 0.0f : host[size_t(i)]) << i;
}

TEST(CudaBackend, RejectsF64GraphsAndHostTensorsNamingTheNode) {
  DDPM_REQUIRE_DEVICE();
  CudaBackend gpu;
  const Graph g64 = conv_graph(DType::f64);
  Executor ex(g64, gpu, ExecMode::inference);
  try {
    ex.forward({});
    FAIL() << "an f64 graph ran";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'same'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("f32"), std::string::npos) << e.what();
  }
  EXPECT_THROW(gpu.reserve_workspace(g64, true), std::invalid_argument);

  const Graph g = conv_graph(DType::f32);
  std::vector<float> x(2 * 5 * 7 * 3), y(2 * 5 * 7 * 8);
  const Node& node = g.nodes[0];
  const std::vector<Tensor> ins{Tensor{x.data(), Shape{2, 5, 7, 3}, DType::f32, Device::cpu},
                                Tensor{x.data(), Shape{8, 3, 3, 3}, DType::f32, Device::cpu},
                                Tensor{x.data(), Shape{8}, DType::f32, Device::cpu}};
  const std::vector<Tensor> outs{Tensor{y.data(), Shape{2, 5, 7, 8}, DType::f32, Device::cpu}};
  const RunContext ctx;
  EXPECT_THROW(gpu.forward(node, ForwardArgs{ins, outs, ctx}), std::invalid_argument);
}

// A gradient with nothing upstream is zero: overwritten destinations become
// 0, accumulated ones keep their contents.
TEST(CudaBackend, UndefinedUpstreamGradientIsZero) {
  DDPM_REQUIRE_DEVICE();
  CudaBackend gpu;
  GraphBuilder b;
  const ValueId x = b.input("x", Shape{2, 3, 3, 4}, true);
  b.mark_output(b.conv2d("conv", x, Conv2dParams{4, 3, 3, 1, Padding2d::same(1)}));
  const Graph g = b.finish();
  const Node& node = g.nodes[0];
  const size_t n = 2 * 3 * 3 * 4;
  DeviceBuffer xs(gpu, n * 4), dx(gpu, n * 4), w(gpu, 4 * 9 * 4 * 4), dw(gpu, 4 * 9 * 4 * 4),
      bias(gpu, 16), db(gpu, 16);
  const std::vector<float> nan(n, std::numeric_limits<float>::quiet_NaN()), prior(144, 2.5f);
  gpu.copy_from_host(dx.data(), nan.data(), dx.bytes());
  gpu.copy_from_host(dw.data(), prior.data(), dw.bytes());
  gpu.copy_from_host(db.data(), prior.data(), db.bytes());
  auto t = [](const DeviceBuffer& d, Shape s) {
    return Tensor{d.data(), s, DType::f32, Device::cuda};
  };
  const std::vector<Tensor> ins{t(xs, Shape{2, 3, 3, 4}), t(w, Shape{4, 3, 3, 4}),
                                t(bias, Shape{4})};
  const std::vector<Tensor> outs{Tensor{nullptr, Shape{2, 3, 3, 4}, DType::f32, Device::cuda}};
  const std::vector<Tensor> gouts = outs;
  const std::vector<GradTensor> gins{{t(dx, Shape{2, 3, 3, 4}), false},
                                     {t(dw, Shape{4, 3, 3, 4}), true},
                                     {t(db, Shape{4}), false}};
  const RunContext ctx{0, 0, true};
  gpu.backward(node, BackwardArgs{ins, outs, gouts, gins, ctx});
  std::vector<float> got(n);
  gpu.copy_to_host(got.data(), dx.data(), dx.bytes());
  for (float v : got) ASSERT_EQ(v, 0.0f);
  got.resize(144);
  gpu.copy_to_host(got.data(), dw.data(), dw.bytes());
  for (float v : got) ASSERT_EQ(v, 2.5f);
  got.resize(4);
  gpu.copy_to_host(got.data(), db.data(), db.bytes());
  for (float v : got) ASSERT_EQ(v, 0.0f);
}

// The executor always accumulates parameter gradients into its zeroed flat
// buffer; a caller asking to overwrite them (accumulate false) must get the
// same numbers over a poisoned buffer. Replays the executor's backward walk
// with that one change, for conv (weight, bias; with a residual), linear
// (one part and three stacked), group_norm (with a channel add).
TEST(CudaBackend, OverwrittenParameterGradientsEqualAccumulatedFromZero) {
  DDPM_REQUIRE_DEVICE();
  GraphBuilder b;
  const ValueId x = b.input("x", Shape{2, 4, 4, 4});
  const ValueId emb = b.input("emb", Shape{2, 8});
  ValueId h = b.conv2d("conv", x, Conv2dParams{8, 3, 3, 1, Padding2d::same(1)});
  h = b.group_norm("norm", h, GroupNormParams{4, 1e-5, true, true}, emb);
  h = b.conv2d("conv_res", h, Conv2dParams{8, 1, 1, 1, {}}, h);
  h = b.linear_stacked("qkv", h, {"q", "k", "v"}, LinearParams{12});
  h = b.linear("proj", h, LinearParams{4});
  const ValueId target = b.input("target", b.shape(h));
  b.set_loss(b.mse_loss("loss", h, target));
  const Graph g = b.finish();
  CudaBackend gpu;
  Executor ex(g, gpu, ExecMode::training);
  ex.init_parameters(3);
  ex.write(x, testing::to_double(testing::random_floats(2 * 4 * 4 * 4, 5)));
  ex.write(emb, testing::to_double(testing::random_floats(2 * 8, 7)));
  ex.write(target, testing::to_double(testing::random_floats(2 * 4 * 4 * 4, 6)));
  const RunContext ctx{1, 1, true};
  ex.forward(ctx);
  ex.backward(ctx);
  const std::vector<float> accumulated = ex.read(ex.gradients());

  // Forward again: the first backward reused the arena of activations it had
  // finished with; then the walk, over a poisoned gradient buffer.
  ex.forward(ctx);
  const std::vector<float> nan(accumulated.size(), std::numeric_limits<float>::quiet_NaN());
  gpu.copy_from_host(ex.gradients().data, nan.data(), nan.size() * sizeof(float));
  const float one = 1;
  gpu.copy_from_host(ex.grad(g.loss).data, &one, sizeof one);
  const BackwardAnalysis& a = ex.plan().backward;
  for (size_t i = g.nodes.size(); i-- > 0;) {
    if (!a.runs_backward[i]) continue;
    const Node& n = g.nodes[i];
    std::vector<Tensor> ins, outs, gouts;
    std::vector<GradTensor> gins;
    for (size_t s = 0; s < n.inputs.size(); ++s) {
      const ValueId v = n.inputs[s];
      ins.push_back(ex.value(v));
      const bool is_param = g.values[size_t(v)].kind == ValueKind::parameter;
      gins.push_back(a.needs_grad[size_t(v)]
                         ? GradTensor{ex.grad(v), is_param ? false : bool(a.accumulate[i][s])}
                         : GradTensor{});
    }
    for (ValueId v : n.outputs) {
      outs.push_back(ex.value(v));
      gouts.push_back(a.needs_grad[size_t(v)]
                          ? ex.grad(v)
                          : Tensor{nullptr, g.values[size_t(v)].shape, DType::f32, Device::cuda});
    }
    gpu.backward(n, BackwardArgs{ins, outs, gouts, gins, ctx});
  }
  const std::vector<float> overwritten = ex.read(ex.gradients());
  ASSERT_EQ(overwritten.size(), accumulated.size());
  for (ValueId p : g.parameters()) {
    const Value& val = g.values[size_t(p)];
    for (int64_t e = 0; e < val.shape.numel(); ++e) {
      const size_t i = size_t(val.param_offset + e);
      ASSERT_EQ(overwritten[i], accumulated[i]) << val.name << " element " << e;
    }
  }
}

TEST(CudaBackend, ReservedWorkspaceCoversAWholeStep) {
  DDPM_REQUIRE_DEVICE();
  const Graph g = attention_graph(DType::f32);
  CudaBackend gpu;
  gpu.reserve_workspace(g, true);
  const size_t reserved = gpu.workspace_capacity();
  Executor ex(g, gpu, ExecMode::training);
  ex.init_parameters(1);
  for (ValueId in : g.inputs())
    ex.write(in, testing::to_double(
                     testing::random_floats(size_t(g.values[size_t(in)].shape.numel()), 9)));
  ex.forward({2, 2, true});
  ex.backward({2, 2, true});
  EXPECT_EQ(gpu.workspace_capacity(), reserved);
}

TEST(CudaBackend, TimestepGradientIsRefused) {
  DDPM_REQUIRE_DEVICE();
  GraphBuilder b;
  const ValueId t = b.input("t", Shape{2}, true);
  const ValueId e = b.timestep_embedding("temb", t, TimestepEmbeddingParams{4});
  b.set_loss(b.mse_loss("loss", e, b.input("target", Shape{2, 4})));
  const Graph g = b.finish();
  CudaBackend gpu;
  Executor ex(g, gpu, ExecMode::training);
  ex.write(t, std::vector<double>{1, 2});
  ex.write(g.find("target"), std::vector<double>(8, 0.0));
  ex.forward({});
  EXPECT_THROW(ex.backward({}), std::invalid_argument);
}

}  // namespace
}  // namespace ddpm
