#include "apps/bench/model_shapes.h"

#include <tuple>
#include <variant>

#include "engine/unet.h"

namespace ddpm::bench {

namespace {

auto conv_key(const ConvLayer& c) {
  return std::tie(c.in_h, c.in_w, c.in_channels, c.out_channels, c.kernel_h, c.kernel_w, c.stride,
                  c.pad_top, c.pad_bottom, c.pad_left, c.pad_right, c.bias);
}

template <typename Layer, typename Key>
Layer& find_or_add(std::vector<Layer>& layers, const Layer& candidate, Key key) {
  for (Layer& l : layers)
    if (key(l) == key(candidate)) return l;
  layers.push_back(candidate);
  return layers.back();
}

// An activation's gradient is needed unless it is one of the graph's inputs
// (the noisy image, the timesteps): those are the only values without a producer.
bool needs_grad(const Graph& g, ValueId v) {
  return g.values[size_t(v)].producer >= 0;
}

}  // namespace

std::string ConvLayer::describe() const {
  auto s = std::to_string(kernel_h) + "x" + std::to_string(kernel_w) + " s" +
           std::to_string(stride) + " " + std::to_string(in_h) + "x" + std::to_string(in_w) + " " +
           std::to_string(in_channels) + "->" + std::to_string(out_channels);
  if (pad_top || pad_bottom || pad_left || pad_right)
    s += " pad " + std::to_string(pad_top) + "," + std::to_string(pad_bottom) + "," +
         std::to_string(pad_left) + "," + std::to_string(pad_right);
  return s;
}

std::string AttentionLayer::describe() const {
  return "T " + std::to_string(tokens) + ", " + std::to_string(heads) + " x " +
         std::to_string(head_dim);
}

std::string LinearLayer::describe() const {
  return std::to_string(rows) + " x " + std::to_string(in_features) + " -> " +
         std::to_string(out_features);
}

ModelShapes model_shapes(const UNetConfig& config, int64_t batch) {
  UNetBuildOptions options;
  options.batch = batch;
  const UNetGraph unet = build_unet(config, options);
  const Graph& g = unet.graph;
  ModelShapes shapes;
  for (const Node& node : g.nodes) {
    const Shape& x = g.values[size_t(node.inputs.at(0))].shape;
    if (const auto* p = std::get_if<Conv2dParams>(&node.params)) {
      ConvLayer c;
      c.batch = x[0], c.in_h = x[1], c.in_w = x[2], c.in_channels = x[3];
      c.out_channels = p->out_channels;
      c.kernel_h = p->kernel_h, c.kernel_w = p->kernel_w, c.stride = p->stride;
      c.pad_top = p->pad.top, c.pad_bottom = p->pad.bottom;
      c.pad_left = p->pad.left, c.pad_right = p->pad.right;
      c.bias = p->bias;
      c.first_name = node.name;
      ConvLayer& l = find_or_add(shapes.convs, c, conv_key);
      ++l.count;
      if (needs_grad(g, node.inputs[0])) ++l.count_with_input_grad;
    } else if (const auto* a = std::get_if<AttentionParams>(&node.params)) {
      AttentionLayer l{x[0], attention_tokens(x), a->heads, a->head_dim, 0, node.name};
      ++find_or_add(shapes.attentions, l, [](const AttentionLayer& v) {
          return std::tie(v.tokens, v.heads, v.head_dim);
        }).count;
    } else if (const auto* lin = std::get_if<LinearParams>(&node.params)) {
      const int64_t in = x[x.rank() - 1];
      LinearLayer l{x.numel() / in, in, lin->out_features, lin->bias, 0, node.name};
      ++find_or_add(shapes.linears, l, [](const LinearLayer& v) {
          return std::tie(v.rows, v.in_features, v.out_features, v.bias);
        }).count;
    }
  }
  return shapes;
}

}  // namespace ddpm::bench
