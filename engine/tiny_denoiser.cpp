#include "engine/tiny_denoiser.h"

namespace ddpm {

TinyDenoiser build_tiny_denoiser(const TinyDenoiserConfig& c, DType dtype) {
  GraphBuilder b(dtype);
  TinyDenoiser m;
  const int64_t w = c.width, temb_dim = 2 * w;
  m.x_t = b.input("x_t", Shape{c.batch, c.size, c.size, c.channels}, c.input_requires_grad);
  m.timesteps = b.input("timesteps", Shape{c.batch});
  m.target = b.input("target", Shape{c.batch, c.size, c.size, c.channels});

  ValueId temb = b.timestep_embedding("time_proj", m.timesteps, {w, false, 1.0});
  temb = b.linear("time_embedding.linear_1", temb, {temb_dim});
  temb = b.silu("time_embedding.act", temb);
  temb = b.linear("time_embedding.linear_2", temb, {temb_dim});
  const ValueId temb_act = b.silu("time_embedding.silu", temb);

  const Conv2dParams conv3{w, 3, 3, 1, Padding2d::same(1)};
  const GroupNormParams gn_silu{c.groups, 1e-6, true, true};
  const ValueId skip = b.conv2d("conv_in", m.x_t, conv3);

  // ResBlock: GN, SiLU, conv, + proj(temb) per channel, GN, SiLU, dropout, conv, + skip.
  ValueId h = b.group_norm("res.norm1", skip, gn_silu);
  h = b.conv2d("res.conv1", h, conv3);
  h = b.add("res.temb_add", h, b.linear("res.time_emb_proj", temb_act, {w}));
  h = b.group_norm("res.norm2", h, gn_silu);
  h = b.dropout("res.dropout", h, c.dropout);
  h = b.conv2d("res.conv2", h, conv3);
  const ValueId res = b.add("res.residual", skip, h);

  // Downsample with diffusers' asymmetric (0, 1, 0, 1) pad, then attention.
  const ValueId down = b.conv2d("down", res, {w, 3, 3, 2, {0, 1, 0, 1}});
  h = b.group_norm("attn.group_norm", down, {c.groups, 1e-6, true, false});
  const ValueId q = b.linear("attn.to_q", h, {w});
  const ValueId k = b.linear("attn.to_k", h, {w});
  const ValueId v = b.linear("attn.to_v", h, {w});
  h = b.attention("attn.attention", q, k, v, {1, w});
  h = b.linear("attn.to_out", h, {w});
  h = b.add("attn.residual", h, down);

  // Up: nearest x2, concat the full-resolution features, 1x1 then 3x3 convs.
  h = b.upsample2x("up.upsample", h);
  h = b.concat("up.concat", {h, res});
  h = b.conv2d("up.conv_shortcut", h, {w, 1, 1, 1, {}});
  h = b.group_norm("conv_norm_out", h, gn_silu);
  m.prediction = b.conv2d("conv_out", h, {c.channels, 3, 3, 1, Padding2d::same(1)});
  b.mark_output(m.prediction);
  m.loss = b.mse_loss("loss", m.prediction, m.target);
  b.set_loss(m.loss);
  m.graph = b.finish();
  return m;
}

}  // namespace ddpm
