// The whole UNet on the CUDA backend against the CPU backend: forward
// (prediction, loss) and backward (every parameter gradient), in training with
// and without dropout and in inference; and the determinism the kernels
// promise (a step twice gives the same bits). Tolerance: backend_compare.h.
#include <gtest/gtest.h>

#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/executor.h"
#include "engine/unet.h"
#include "tests/cuda_backend/backend_compare.h"
#include "tests/kernels/kernel_test_util.h"

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
// the same bf16 rounding of the operands): each operand rounding is 2^-9
// relative instead of 2^-24, so to first order in the unit roundoff the
// errors grow by up to 2^15 against the fp32 bound; F = 8 x 2^15 (measured:
// the worst tensor at 0.17 of it under the emulator). About 3% of a tensor's
// largest value at the 4 u floor: a sanity bound, still far below the error
// of a wrong index or a dropped tile.
TEST(CudaBackendUNet, TensorCoreConvolutionWithinBf16Bound) {
  DDPM_REQUIRE_DEVICE();
  CompareOptions o = unet_options();
  o.cuda.conv = kernels::ConvImpl::tensor_core;
  o.factor = 8.0 * 32768.0;
  compare_backends(unet_builder(tiny_config(0.0), 2), o);
}

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
