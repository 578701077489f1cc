#include "engine/unet.h"

#include <map>

namespace ddpm {

namespace {

// Mirrors diffusers' module structure (unet_2d.py, unet_2d_blocks.py,
// resnet.py, attention_processor.py) block by block.
class UNetBuilder {
 public:
  UNetBuilder(const UNetConfig& c, GraphBuilder& b, bool fuse) : c_(c), b_(b), fuse_(fuse) {}

  ValueId conv3x3(const std::string& name, ValueId x, int64_t out, int stride = 1,
                  Padding2d pad = Padding2d::same(1)) {
    Conv2dParams p;
    p.out_channels = out;
    p.stride = stride;
    p.pad = pad;
    return b_.conv2d(name, x, p);
  }

  // ResnetBlock2D (time_embedding_norm "default", pre-norm):
  // GN, SiLU, conv, + time_emb_proj(SiLU(temb)), GN, SiLU, dropout, conv,
  // + (1x1 shortcut of) the input, divided by output_scale_factor.
  // Fused: the time-embedding add inside norm2, the skip inside conv2.
  ValueId resnet(const std::string& name, ValueId x, int64_t out, double output_scale = 1) {
    const int64_t in = b_.shape(x).back();
    const GroupNormParams gn_silu{c_.norm_num_groups, c_.norm_eps, true, true};
    ValueId h = b_.group_norm(name + ".norm1", x, gn_silu);
    h = conv3x3(name + ".conv1", h, out);
    const ValueId proj = b_.linear(name + ".time_emb_proj", temb_act_, LinearParams{out});
    if (fuse_) {
      h = b_.group_norm(name + ".norm2", h, gn_silu, proj);
    } else {
      h = b_.add(name + ".temb_add", h, proj);
      h = b_.group_norm(name + ".norm2", h, gn_silu);
    }
    if (c_.dropout > 0) h = b_.dropout(name + ".dropout", h, c_.dropout);
    Conv2dParams conv2;
    conv2.out_channels = out;
    conv2.pad = Padding2d::same(1);
    // conv2's parameters before the shortcut's: diffusers' order, which also
    // fixes each parameter's initialisation stream.
    std::vector<ValueId> conv2_in{h};
    for (ValueId p : b_.conv2d_parameters(name + ".conv2", b_.shape(h).back(), conv2))
      conv2_in.push_back(p);
    ValueId skip = x;
    if (in != out) {
      Conv2dParams p;
      p.out_channels = out;
      p.kernel_h = p.kernel_w = 1;
      skip = b_.conv2d(name + ".conv_shortcut", x, p);
    }
    if (fuse_ && output_scale == 1) {
      conv2.residual = true;
      conv2_in.push_back(skip);
      return b_.add_node(name + ".conv2", conv2, conv2_in)[0];
    }
    h = b_.add_node(name + ".conv2", conv2, conv2_in)[0];
    return b_.add(name + ".residual", skip, h, 1.0 / output_scale);
  }

  // Attention (from the deprecated attention block): GN, q/k/v projections over
  // channels, softmax attention over the H*W tokens, output projection,
  // residual add, divided by rescale_output_factor.
  // Fused: q, k, v as one GEMM read in place; the skip inside to_out.0.
  ValueId attention(const std::string& name, ValueId x, double rescale = 1) {
    const int64_t ch = b_.shape(x).back();
    const int64_t head_dim = c_.attention_head_dim ? c_.attention_head_dim : ch;
    const AttentionParams heads{ch / head_dim, head_dim};
    ValueId h =
        b_.group_norm(name + ".group_norm", x, {c_.norm_num_groups, c_.norm_eps, true, false});
    if (fuse_) {
      const ValueId qkv =
          b_.linear_stacked(name + ".to_qkv", h, {name + ".to_q", name + ".to_k", name + ".to_v"},
                            LinearParams{3 * ch});
      h = b_.attention_packed(name + ".attention", qkv, heads);
    } else {
      const ValueId q = b_.linear(name + ".to_q", h, {ch});
      const ValueId k = b_.linear(name + ".to_k", h, {ch});
      const ValueId v = b_.linear(name + ".to_v", h, {ch});
      h = b_.attention(name + ".attention", q, k, v, heads);
    }
    if (fuse_ && rescale == 1) return b_.linear(name + ".to_out.0", h, {ch}, x);
    h = b_.linear(name + ".to_out.0", h, {ch});
    return b_.add(name + ".residual", h, x, 1.0 / rescale);
  }

  ValueId downsample(const std::string& name, ValueId x) {
    const Padding2d pad = c_.downsample_padding == 0 ? Padding2d{0, 1, 0, 1} : Padding2d::same(1);
    return conv3x3(name + ".conv", x, b_.shape(x).back(), 2, pad);
  }

  ValueId upsample(const std::string& name, ValueId x) {
    const ValueId up = b_.upsample2x(name + ".interpolate", x);
    return conv3x3(name + ".conv", up, b_.shape(x).back());
  }

  ValueId build(ValueId sample, ValueId timesteps) {
    const auto& ch = c_.block_out_channels;
    const size_t levels = ch.size();
    const int64_t temb_dim = c_.time_embed_dim();

    ValueId temb =
        b_.timestep_embedding("time_proj", timesteps, {ch[0], c_.flip_sin_to_cos, c_.freq_shift});
    temb = b_.linear("time_embedding.linear_1", temb, {temb_dim});
    temb = b_.silu("time_embedding.act", temb);
    temb = b_.linear("time_embedding.linear_2", temb, {temb_dim});
    // Every ResnetBlock2D applies SiLU to temb before its projection: once here.
    temb_act_ = b_.silu("time_embedding.silu_for_resnets", temb);

    ValueId h = conv3x3("conv_in", sample, ch[0]);
    std::vector<ValueId> skips{h};
    for (size_t i = 0; i < levels; ++i) {
      const std::string block = "down_blocks." + std::to_string(i);
      const bool attn = c_.down_block_types[i] == "AttnDownBlock2D";
      for (int64_t j = 0; j < c_.layers_per_block; ++j) {
        h = resnet(block + ".resnets." + std::to_string(j), h, ch[i]);
        if (attn) h = attention(block + ".attentions." + std::to_string(j), h);
        skips.push_back(h);
      }
      if (i + 1 < levels) {
        h = downsample(block + ".downsamplers.0", h);
        skips.push_back(h);
      }
    }

    const double mid_scale = c_.mid_block_scale_factor;
    h = resnet("mid_block.resnets.0", h, ch[levels - 1], mid_scale);
    if (c_.add_attention) h = attention("mid_block.attentions.0", h, mid_scale);
    h = resnet("mid_block.resnets.1", h, ch[levels - 1], mid_scale);

    for (size_t i = 0; i < levels; ++i) {
      const std::string block = "up_blocks." + std::to_string(i);
      const bool attn = c_.up_block_types[i] == "AttnUpBlock2D";
      const int64_t out = ch[levels - 1 - i];
      for (int64_t j = 0; j <= c_.layers_per_block; ++j) {
        const std::string r = block + ".resnets." + std::to_string(j);
        h = b_.concat(r + ".skip_concat", {h, skips.back()});
        skips.pop_back();
        h = resnet(r, h, out);
        if (attn) h = attention(block + ".attentions." + std::to_string(j), h);
      }
      if (i + 1 < levels) h = upsample(block + ".upsamplers.0", h);
    }

    h = b_.group_norm("conv_norm_out", h, {c_.norm_num_groups, c_.norm_eps, true, true});
    return conv3x3("conv_out", h, c_.out_channels);
  }

 private:
  const UNetConfig& c_;
  GraphBuilder& b_;
  bool fuse_;
  ValueId temb_act_ = -1;
};

}  // namespace

UNetGraph build_unet(const UNetConfig& config, const UNetBuildOptions& o) {
  const int64_t h = o.height ? o.height : config.sample_height;
  const int64_t w = o.width ? o.width : config.sample_width;
  const int64_t factor = int64_t(1) << (config.block_out_channels.size() - 1);
  if (h % factor || w % factor)
    throw ConfigError("image size " + std::to_string(h) + "x" + std::to_string(w) +
                      " is not divisible by " + std::to_string(factor) + ", which " +
                      std::to_string(config.block_out_channels.size()) +
                      " levels of downsampling need");
  if (o.batch <= 0) throw ConfigError("batch must be positive");
  const DType activations = o.activations.value_or(o.dtype);
  if (activations != o.dtype && !o.fuse)
    throw ConfigError(std::string("a UNet with ") + dtype_name(activations) +
                      " activations is built fused only (its time-embedding add is fp32 "
                      "inside GroupNorm)");
  GraphBuilder b(o.dtype, activations);
  UNetGraph u;
  u.sample = b.input("sample", Shape{o.batch, h, w, config.in_channels});
  u.timesteps = b.input("timesteps", Shape{o.batch}, false, o.dtype);
  UNetBuilder builder(config, b, o.fuse);
  u.prediction = builder.build(u.sample, u.timesteps);
  b.mark_output(u.prediction);
  if (o.with_loss) {
    u.target = b.input("target", Shape{o.batch, h, w, config.out_channels}, false, o.dtype);
    u.loss = b.mse_loss("loss", u.prediction, u.target);
    b.set_loss(u.loss);
  }
  u.graph = b.finish();
  return u;
}

std::vector<std::pair<std::string, int64_t>> parameters_per_block(const Graph& g) {
  std::vector<std::pair<std::string, int64_t>> out;
  for (ValueId id : g.parameters()) {
    const Value& v = g.values[size_t(id)];
    // "down_blocks.1.resnets.0.conv1.weight" -> "down_blocks.1"
    std::string block = v.name.substr(0, v.name.find('.'));
    if (block == "down_blocks" || block == "up_blocks") {
      const size_t second = v.name.find('.', block.size() + 1);
      block = v.name.substr(0, second);
    }
    if (out.empty() || out.back().first != block) out.emplace_back(block, 0);
    out.back().second += v.shape.numel();
  }
  return out;
}

}  // namespace ddpm
