// The kernel benchmark's inputs: the layer shapes it reads from the UNet graph
// (checked against torch's FLOP count of diffusers' model) and its markdown
// section replacement.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "apps/bench/markdown_section.h"
#include "apps/bench/model_shapes.h"

namespace ddpm::bench {
namespace {

int64_t forward_macs(const ModelShapes& m) {
  int64_t macs = 0;
  for (const auto& c : m.convs) macs += c.macs() * c.count;
  for (const auto& a : m.attentions) macs += a.macs() * a.count;
  for (const auto& l : m.linears) macs += l.macs() * l.count;
  return macs;
}

TEST(BenchShapes, Cifar10ForwardFlopsMatchTorchFlopCounter) {
  // torch.utils.flop_counter.FlopCounterMode on diffusers' UNet2DModel with
  // this config at batch 1 counts 12,443,713,536 FLOP (tools/PERFORMANCE.md):
  // every conv, linear and attention matmul, 2 FLOP per multiply-add.
  const ModelShapes m = model_shapes(UNetConfig::cifar10(), 1);
  EXPECT_EQ(2 * forward_macs(m), 12443713536);
  // Linear in the batch.
  EXPECT_EQ(forward_macs(model_shapes(UNetConfig::cifar10(), 128)), 128 * forward_macs(m));
}

TEST(BenchShapes, Cifar10LayersAndUses) {
  const ModelShapes m = model_shapes(UNetConfig::cifar10(), 128);
  ASSERT_FALSE(m.convs.empty());
  const ConvLayer& conv_in = m.convs.front();
  EXPECT_EQ(conv_in.first_name, "conv_in");
  EXPECT_EQ(conv_in.describe(), "3x3 s1 32x32 3->128 pad 1,1,1,1");
  EXPECT_EQ(conv_in.count, 1);
  EXPECT_EQ(conv_in.count_with_input_grad, 0);  // the image needs no gradient
  int convs = 0, downsamples = 0;
  for (const auto& c : m.convs) {
    convs += c.count;
    EXPECT_EQ(c.batch, 128);
    if (c.stride == 2) {
      ++downsamples;
      EXPECT_EQ(c.pad_top, 0);  // diffusers' downsample_padding=0: pad (0, 1, 0, 1)
      EXPECT_EQ(c.pad_bottom, 1);
      EXPECT_EQ(c.count, 1);
    }
  }
  EXPECT_EQ(downsamples, 3);  // 32->16, 16->8, 8->4
  // conv_in, conv_out, 22 ResBlocks (8 down, 2 mid, 12 up) x 2 convs, 3
  // downsamplers, 3 upsamplers, and the 1x1 shortcuts of the ResBlocks whose
  // channels change: the first of down block 1 (128->256) and all 12 up
  // ResBlocks (their input is a concat with a skip).
  EXPECT_EQ(convs, 1 + 1 + 44 + 3 + 3 + 13);
  // Attention at 16x16 in down block 1 (2) and up block 2 (3), and at 4x4 in the middle.
  ASSERT_EQ(m.attentions.size(), 2u);
  EXPECT_EQ(m.attentions[0].describe(), "T 256, 1 x 256");
  EXPECT_EQ(m.attentions[0].count, 2 + 3);
  EXPECT_EQ(m.attentions[1].describe(), "T 16, 1 x 256");
  EXPECT_EQ(m.attentions[1].count, 1);
}

TEST(BenchMarkdown, ReplacesOnlyTheMarkedSection) {
  const std::string doc = "# Title\nbefore\n" + std::string(kSectionBegin) + "\nold\ntable\n" +
                          kSectionEnd + "\nafter\n";
  EXPECT_EQ(with_marked_section(doc, "new"), "# Title\nbefore\n" + std::string(kSectionBegin) +
                                                 "\nnew\n" + kSectionEnd + "\nafter\n");
}

TEST(BenchMarkdown, AppendsMarkersWhenAbsentAndRejectsHalfAPair) {
  EXPECT_EQ(with_marked_section("text", "t\n"),
            "text\n\n" + std::string(kSectionBegin) + "\nt\n" + kSectionEnd + "\n");
  EXPECT_THROW(with_marked_section(std::string(kSectionEnd) + "\n" + kSectionBegin + "\n", "x"),
               std::invalid_argument);
  EXPECT_THROW(with_marked_section(std::string(kSectionBegin) + "\n", "x"), std::invalid_argument);
}

}  // namespace
}  // namespace ddpm::bench
