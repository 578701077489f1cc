// The whole UNet on the CUDA backend against the CPU backend: forward
// (prediction, loss) and backward (every parameter gradient), in training with
// and without dropout and in inference; and the determinism the kernels
// promise (a step twice gives the same bits). Tolerance: backend_compare.h.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/executor.h"
#include "engine/unet.h"
#include "tests/cuda_backend/backend_compare.h"
#include "tests/kernels/kernel_test_util.h"

#if DDPM_KERNEL_TESTS_EMULATED
#include "kernels/emulation/emulator_api.h"
#endif

namespace ddpm {
namespace {

using testing::compare_backends;
using testing::CompareOptions;

// Two levels (8x8 and 4x4, 8 and 16 channels), one ResBlock per level, one
// attention block (the mid block's, two heads), GroupNorm in 4 groups: every
// op of the real model at a size the emulator runs in seconds.
UNetConfig tiny_config(double dropout) {
  UNetConfig c;
  c.sample_size = c.sample_height = c.sample_width = 8;
  c.in_channels = 3;
  c.out_channels = 3;
  c.block_out_channels = {8, 16};
  c.layers_per_block = 1;
  c.down_block_types = {"DownBlock2D", "DownBlock2D"};
  c.up_block_types = {"UpBlock2D", "UpBlock2D"};
  c.norm_num_groups = 4;
  c.attention_head_dim = 8;
  c.dropout = dropout;
  return c;
}

std::function<Graph(DType)> unet_builder(const UNetConfig& c, int64_t batch) {
  return [c, batch](DType dtype) {
    UNetBuildOptions o;
    o.batch = batch;
    o.with_loss = true;
    o.dtype = dtype;
    return build_unet(c, o).graph;
  };
}

std::vector<double> unet_inputs(const std::string& name, int64_t n) {
  std::vector<double> v;
  if (name == "timesteps")
    for (int64_t i = 0; i < n; ++i) v.push_back(double(113 + 401 * i));
  return v;
}

CompareOptions unet_options() {
  CompareOptions o;
  o.input_values = unet_inputs;
  return o;
}

TEST(CudaBackendUNet, TrainingStepMatchesCpu) {
  DDPM_REQUIRE_DEVICE();
  const auto comparisons = compare_backends(unet_builder(tiny_config(0.0), 2), unet_options());
  EXPECT_GT(comparisons.size(), 40u);  // prediction, loss and every parameter gradient
}

// Channel counts off the float4 paths (6 and 10, in 2 groups), a 12x12
// image at batch 3, attention in the down and up blocks too (one head of all
// channels: head_dim 6 and 10).
TEST(CudaBackendUNet, OddWidthsWithAttentionAtEveryLevelMatchCpu) {
  DDPM_REQUIRE_DEVICE();
  UNetConfig c = tiny_config(0.0);
  c.sample_size = c.sample_height = c.sample_width = 12;
  c.block_out_channels = {6, 10};
  c.norm_num_groups = 2;
  c.attention_head_dim = 0;
  c.down_block_types = {"AttnDownBlock2D", "AttnDownBlock2D"};
  c.up_block_types = {"AttnUpBlock2D", "AttnUpBlock2D"};
  compare_backends(unet_builder(c, 3), unet_options());
}

TEST(CudaBackendUNet, TrainingStepWithDropoutMatchesCpu) {
  DDPM_REQUIRE_DEVICE();
  CompareOptions o = unet_options();
  o.ctx = RunContext{0x5EED5EED1234ull, 41, true};
  compare_backends(unet_builder(tiny_config(0.1), 1), o);
}

TEST(CudaBackendUNet, InferenceMatchesCpu) {
  DDPM_REQUIRE_DEVICE();
  CompareOptions o = unet_options();
  o.mode = ExecMode::inference;
  compare_backends(unet_builder(tiny_config(0.1), 3), o);
}

// Same inputs, same step: the same loss and gradients, bit for bit (the
// kernels reduce in fixed orders, without atomics).
TEST(CudaBackendUNet, StepIsBitwiseReproducible) {
  DDPM_REQUIRE_DEVICE();
  const Graph g = unet_builder(tiny_config(0.1), 2)(DType::f32);
  CudaBackend gpu;
  Executor ex(g, gpu, ExecMode::training);
  ex.init_parameters(7);
  for (ValueId in : g.inputs()) {
    const auto n = size_t(g.values[size_t(in)].shape.numel());
    ex.write(in, testing::to_double(testing::random_floats(n, 100 + uint64_t(in))));
  }
  const RunContext ctx{3, 9, true};
  std::vector<float> loss[2], grads[2];
  for (int run = 0; run < 2; ++run) {
    ex.forward(ctx);
    ex.backward(ctx);
    loss[run] = ex.read(ex.value(g.loss));
    grads[run] = ex.read(ex.gradients());
  }
  EXPECT_EQ(loss[0], loss[1]);
  EXPECT_EQ(grads[0], grads[1]);
}

// The tensor-core convolution (the emulator runs its portable branch, with
// the same bf16 rounding of the operands). bf16 keeps 8 significant bits, so
// rounding an operand is up to 2^-8 relative (round to nearest) instead of
// fp32's u = 2^-24: to first order the convolutions' errors grow by 2^16
// against the fp32 scale of backend_compare.h. F = 2^16, times 2 because
// tensor cores have been measured to truncate when they add (the factor
// test_conv2d.cpp applies), times 2 of margin = 2^18 (measured with
// DDPM_COMPARE_VERBOSE=1: the worst tensor at 0.10 F = 0.4 x 2^16 under the
// emulator; earlier kernels reached 0.17 F). At the 4 u floor that
// is F 4 u = 2^-4, about 6% of a tensor's largest value: a sanity bound on
// the wiring, still far below the error of a wrong index or a dropped tile
// (errors the size of the values); test_conv2d_tensor_core.cpp bounds the
// kernel itself element by element.
TEST(CudaBackendUNet, TensorCoreConvolutionWithinBf16Bound) {
  DDPM_REQUIRE_DEVICE();
  CompareOptions o = unet_options();
  o.cuda.conv = kernels::ConvImpl::tensor_core;
  o.factor = 0x1p16 * 2 * 2;  // bf16 operands, truncating adds, margin: see above
  compare_backends(unet_builder(tiny_config(0.0), 2), o);
}

#if DDPM_KERNEL_TESTS_EMULATED
// Kernel launches of one UNet step, counted by the emulator (launches only:
// copies and memsets are not kernels). The launch count of an op does not
// depend on its sizes, so the google/ddpm-cifar10-32 structure (4 levels, 2
// ResBlocks each, attention at level 1 and in the middle, dropout) at tiny
// widths and 8x8 has the CIFAR-10 model's counts, at a size the emulator runs
// in seconds.
struct Launches {
  uint64_t inference_forward = 0, training_forward = 0, backward = 0;
};

Launches count_launches(bool fuse) {
  UNetConfig c = UNetConfig::cifar10();
  c.sample_size = c.sample_height = c.sample_width = 8;
  c.block_out_channels = {8, 16, 16, 16};
  c.norm_num_groups = 4;
  Launches n;
  for (ExecMode mode : {ExecMode::inference, ExecMode::training}) {
    UNetBuildOptions o;
    o.batch = 1;
    o.with_loss = mode == ExecMode::training;
    o.fuse = fuse;
    const UNetGraph u = build_unet(c, o);
    CudaBackend gpu;
    gpu.reserve_workspace(u.graph, mode == ExecMode::training);
    Executor ex(u.graph, gpu, mode);
    ex.init_parameters(1);
    const RunContext ctx{1, 1, mode == ExecMode::training};
    emu::reset_stats();
    ex.forward(ctx);
    gpu.synchronize();
    (mode == ExecMode::inference ? n.inference_forward : n.training_forward) =
        emu::stats().launches;
    if (mode == ExecMode::training) {
      emu::reset_stats();
      ex.backward(ctx);
      gpu.synchronize();
      n.backward = emu::stats().launches;
    }
  }
  return n;
}

// Measured on the emulated CudaBackend at batch 1, before the fused forms
// were used (one op per diffusers operation, dropout run as a copy in
// inference): inference forward 374, training forward (with the loss) 375,
// backward 610. With them: 290, 313, 552. The forward saves per ResBlock the
// time-embedding add and the residual add (22 ResBlocks: 44), per attention
// block two of the three q/k/v GEMMs and the residual add (6 blocks: 18),
// and in inference the 22 dropout copies; the backward the broadcast add's
// launch (22) and two of three launches for each of dx, dW, db of the q/k/v
// projections (36). The residual adds' backward launch stays (the fused
// op's residual gradient is a copy of dy).
// The fused graph must launch fewer kernels than the unfused one recorded
// here, in every phase, and than the unfused graph built today (fuse = false,
// whose inference forward already skips the dropout nodes: 352).
TEST(CudaBackendUNet, FusedGraphLaunchesFewerKernels) {
  constexpr uint64_t kUnfusedInferenceForward = 374, kUnfusedTrainingForward = 375,
                     kUnfusedBackward = 610;
  const Launches fused = count_launches(true), unfused = count_launches(false);
  RecordProperty("fused_inference_forward_launches", std::to_string(fused.inference_forward));
  RecordProperty("fused_training_forward_launches", std::to_string(fused.training_forward));
  RecordProperty("fused_backward_launches", std::to_string(fused.backward));
  EXPECT_LT(fused.inference_forward, kUnfusedInferenceForward);
  EXPECT_LT(fused.training_forward, kUnfusedTrainingForward);
  EXPECT_LT(fused.backward, kUnfusedBackward);
  EXPECT_LT(fused.inference_forward, unfused.inference_forward);
  EXPECT_LT(fused.training_forward, unfused.training_forward);
  EXPECT_LT(fused.backward, unfused.backward);
  std::printf(
      "launches per UNet step (fused / unfused): inference forward %llu / %llu, "
      "training forward %llu / %llu, backward %llu / %llu\n",
      (unsigned long long)fused.inference_forward, (unsigned long long)unfused.inference_forward,
      (unsigned long long)fused.training_forward, (unsigned long long)unfused.training_forward,
      (unsigned long long)fused.backward, (unsigned long long)unfused.backward);
}
#endif

#if !DDPM_KERNEL_TESTS_EMULATED
// The google/ddpm-cifar10-32 model at batch 2 with the paper's dropout, and
// the vendor implementations (fp32, no TF32: the same tolerance).
TEST(CudaBackendUNet, Cifar10ModelTrainingStepMatchesCpu) {
  DDPM_REQUIRE_DEVICE();
  CompareOptions o = unet_options();
  compare_backends(unet_builder(UNetConfig::cifar10(), 2), o);
}

TEST(CudaBackendUNet, VendorLibrariesMatchCpu) {
  DDPM_REQUIRE_DEVICE();
  CompareOptions o = unet_options();
  o.cuda.conv = kernels::ConvImpl::cudnn;
  o.cuda.gemm = kernels::GemmImpl::cublas;
  if (!kernels::conv_impl_available(o.cuda.conv) || !kernels::gemm_impl_available(o.cuda.gemm))
    GTEST_SKIP() << "cuDNN or cuBLAS cannot be loaded";
  compare_backends(unet_builder(tiny_config(0.1), 2), o);
}

#endif

}  // namespace
}  // namespace ddpm
