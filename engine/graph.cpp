#include "engine/graph.h"

#include <cmath>
#include <stdexcept>
#include <type_traits>
#include <variant>

namespace ddpm {

namespace {
// Each parameter starts on a 64-byte boundary of the flat buffer, so vector
// loads in kernels never straddle two parameters.
constexpr int64_t kParamAlignElements = 16;
}  // namespace

ValueId Graph::find(const std::string& name) const {
  auto it = by_name.find(name);
  if (it == by_name.end()) throw std::out_of_range("graph has no value named '" + name + "'");
  return it->second;
}

std::vector<ValueId> Graph::parameters() const {
  std::vector<ValueId> out;
  for (ValueId i = 0; i < static_cast<ValueId>(values.size()); ++i)
    if (values[static_cast<size_t>(i)].kind == ValueKind::parameter) out.push_back(i);
  return out;
}

bool Graph::has_parameter_copy() const {
  for (const Value& v : values)
    if (v.kind == ValueKind::parameter && v.dtype != dtype) return true;
  return false;
}

std::vector<ValueId> Graph::inputs() const {
  std::vector<ValueId> out;
  for (ValueId i = 0; i < static_cast<ValueId>(values.size()); ++i)
    if (values[static_cast<size_t>(i)].kind == ValueKind::input) out.push_back(i);
  return out;
}

GraphBuilder::GraphBuilder(DType dtype) : GraphBuilder(dtype, dtype) {}

GraphBuilder::GraphBuilder(DType dtype, DType activations) {
  if (activations != dtype && !(dtype == DType::f32 && activations == DType::bf16))
    throw std::invalid_argument(std::string("graph: activations in ") + dtype_name(activations) +
                                " with " + dtype_name(dtype) +
                                " parameters; expected the same dtype, or bf16 with f32");
  g_.dtype = dtype;
  g_.activation_dtype = activations;
}

ValueId GraphBuilder::new_value(const std::string& name, Shape shape, ValueKind kind) {
  if (g_.by_name.count(name))
    throw std::invalid_argument("graph: duplicate value name '" + name + "'");
  const auto id = static_cast<ValueId>(g_.values.size());
  Value v;
  v.name = name;
  v.shape = shape;
  v.kind = kind;
  g_.values.push_back(std::move(v));
  g_.by_name.emplace(name, id);
  return id;
}

ValueId GraphBuilder::input(const std::string& name, Shape shape, bool requires_grad,
                            std::optional<DType> dtype) {
  const DType t = dtype.value_or(g_.activation_dtype);
  if (t != g_.dtype && t != g_.activation_dtype)
    throw std::invalid_argument("graph: input '" + name + "' in " + dtype_name(t) +
                                "; this graph's values are " + dtype_name(g_.dtype) + " or " +
                                dtype_name(g_.activation_dtype));
  ValueId id = new_value(name, shape, ValueKind::input);
  g_.values[static_cast<size_t>(id)].requires_grad = requires_grad;
  g_.values[static_cast<size_t>(id)].dtype = t;
  return id;
}

int64_t GraphBuilder::reserve_parameters(int64_t elements) {
  const int64_t offset = g_.param_buffer_elements;
  g_.param_buffer_elements +=
      (elements + kParamAlignElements - 1) / kParamAlignElements * kParamAlignElements;
  return offset;
}

ValueId GraphBuilder::parameter_at(const std::string& name, Shape shape, ParamInit init,
                                   bool trainable, int64_t offset) {
  ValueId id = new_value(name, shape, ValueKind::parameter);
  Value& v = g_.values[static_cast<size_t>(id)];
  v.requires_grad = trainable;
  v.init = init;
  v.param_offset = offset;
  v.dtype = g_.dtype;
  g_.num_parameters += shape.numel();
  return id;
}

ValueId GraphBuilder::parameter(const std::string& name, Shape shape, ParamInit init,
                                bool trainable) {
  return parameter_at(name, shape, init, trainable, reserve_parameters(shape.numel()));
}

const Shape& GraphBuilder::shape(ValueId v) const {
  if (v < 0 || static_cast<size_t>(v) >= g_.values.size())
    throw std::out_of_range("graph: no value with id " + std::to_string(v));
  return g_.values[static_cast<size_t>(v)].shape;
}

DType GraphBuilder::dtype(ValueId v) const {
  shape(v);
  return g_.values[static_cast<size_t>(v)].dtype;
}

std::vector<DType> GraphBuilder::output_dtypes(const std::string& name, const OpParams& params,
                                               const std::vector<ValueId>& inputs, size_t outputs) {
  const DType master = g_.dtype;
  if (g_.activation_dtype == master) return std::vector<DType>(outputs, master);

  auto fail = [&](const std::string& what) {
    throw std::invalid_argument("node '" + name + "' (" + op_name(params) + "): " + what);
  };
  auto expect = [&](size_t slot, DType want, const char* role) {
    const Value& v = g_.values[static_cast<size_t>(inputs[slot])];
    if (v.kind == ValueKind::parameter) return;  // compute dtype set below or master
    if (v.dtype != want)
      fail(std::string(role) + " '" + v.name + "' is " + dtype_name(v.dtype) + ", expected " +
           dtype_name(want));
  };
  // A weight read by an op computing in `x`: its compute dtype is x's.
  auto weight = [&](size_t slot, DType x) {
    Value& v = g_.values[static_cast<size_t>(inputs[slot])];
    if (v.kind != ValueKind::parameter) {
      expect(slot, x, "weight");
      return;
    }
    if (v.dtype == x) return;
    if (x == master || !v.consumers.empty())
      fail("parameter '" + v.name + "' would be read in both " + dtype_name(v.dtype) + " and " +
           dtype_name(x) + " (a weight shared by ops of different precision)");
    v.dtype = x;
  };
  auto master_param = [&](size_t slot, const char* role) {
    const Value& v = g_.values[static_cast<size_t>(inputs[slot])];
    if (v.dtype != master)
      fail(std::string(role) + " '" + v.name + "' is " + dtype_name(v.dtype) + ", expected " +
           dtype_name(master));
  };

  const DType x = inputs.empty() ? master : g_.values[static_cast<size_t>(inputs[0])].dtype;
  std::vector<DType> out(outputs, master);
  out[0] = x;
  std::visit(
      [&](const auto& p) {
        using P = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<P, Conv2dParams>) {
          weight(1, x);
          if (p.bias) master_param(2, "bias");
          if (p.residual) expect(inputs.size() - 1, x, "residual");
        } else if constexpr (std::is_same_v<P, LinearParams>) {
          for (int64_t i = 0; i < p.weight_parts; ++i) weight(linear_weight_slot(p, i), x);
          if (p.bias)
            for (int64_t i = 0; i < p.weight_parts; ++i)
              master_param(linear_bias_slot(p, i), "bias");
          if (p.residual) expect(inputs.size() - 1, x, "residual");
        } else if constexpr (std::is_same_v<P, GroupNormParams>) {
          if (p.affine) {
            master_param(1, "weight");
            master_param(2, "bias");
          }
          // The time-embedding add is an fp32 [N, C] (the kernels' contract).
          if (p.channel_add) expect(group_norm_channel_add_slot(p), master, "channel_add");
        } else if constexpr (std::is_same_v<P, TimestepEmbeddingParams>) {
          expect(0, master, "timesteps");
          out[0] = master;  // the time path computes in fp32
        } else if constexpr (std::is_same_v<P, MseLossParams>) {
          expect(1, master, "target");
          out[0] = master;
        } else {
          for (size_t s = 1; s < inputs.size(); ++s) expect(s, x, "input");
        }
      },
      params);
  if (x != master && x != g_.activation_dtype) fail("unsupported input dtype");
  return out;
}

std::vector<ValueId> GraphBuilder::add_node(const std::string& name, OpParams params,
                                            std::vector<ValueId> inputs) {
  std::vector<Shape> shapes;
  for (ValueId v : inputs) shapes.push_back(shape(v));
  Node n;
  n.name = name;
  n.params = std::move(params);
  try {
    n.signature = op_signature(n.params, shapes);
  } catch (const ShapeError& e) {
    throw ShapeError("node '" + name + "': " + e.what());
  }
  const std::vector<DType> dtypes =
      output_dtypes(name, n.params, inputs, n.signature.outputs.size());
  const int index = static_cast<int>(g_.nodes.size());
  for (size_t s = 0; s < inputs.size(); ++s)
    g_.values[static_cast<size_t>(inputs[s])].consumers.push_back({index, static_cast<int>(s)});
  for (size_t s = 0; s < n.signature.outputs.size(); ++s) {
    const std::string out_name = s == 0 ? name : name + ":" + std::to_string(s);
    ValueId id = new_value(out_name, n.signature.outputs[s], ValueKind::activation);
    g_.values[static_cast<size_t>(id)].producer = index;
    g_.values[static_cast<size_t>(id)].producer_slot = static_cast<int>(s);
    g_.values[static_cast<size_t>(id)].dtype = dtypes[s];
    n.outputs.push_back(id);
  }
  n.inputs = std::move(inputs);
  g_.nodes.push_back(std::move(n));
  return g_.nodes.back().outputs;
}

std::vector<ValueId> GraphBuilder::conv2d_parameters(const std::string& name, int64_t in_channels,
                                                     const Conv2dParams& p) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_channels * p.kernel_h * p.kernel_w));
  std::vector<ValueId> params{
      parameter(name + ".weight", conv2d_weight_shape(p, in_channels), ParamInit::uniform(bound))};
  if (p.bias)
    params.push_back(parameter(name + ".bias", Shape{p.out_channels}, ParamInit::uniform(bound)));
  return params;
}

ValueId GraphBuilder::conv2d(const std::string& name, ValueId x, Conv2dParams p, ValueId residual) {
  const int64_t in_ch = shape(x).rank() == 4 ? shape(x)[3] : 0;
  std::vector<ValueId> in{x};
  for (ValueId v : conv2d_parameters(name, in_ch, p)) in.push_back(v);
  p.residual = residual >= 0;
  if (p.residual) in.push_back(residual);
  return add_node(name, p, std::move(in))[0];
}

ValueId GraphBuilder::group_norm(const std::string& name, ValueId x, GroupNormParams p,
                                 ValueId channel_add) {
  std::vector<ValueId> in{x};
  if (p.affine) {
    const int64_t c = shape(x).back();
    in.push_back(parameter(name + ".weight", Shape{c}, ParamInit::constant(1)));
    in.push_back(parameter(name + ".bias", Shape{c}, ParamInit::constant(0)));
  }
  p.channel_add = channel_add >= 0;
  if (p.channel_add) in.push_back(channel_add);
  return add_node(name, p, std::move(in))[0];
}

ValueId GraphBuilder::linear(const std::string& name, ValueId x, LinearParams p, ValueId residual) {
  const int64_t in_f = shape(x).back();
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_f));
  p.weight_parts = 1;
  std::vector<ValueId> in{
      x, parameter(name + ".weight", Shape{p.out_features, in_f}, ParamInit::uniform(bound))};
  if (p.bias)
    in.push_back(parameter(name + ".bias", Shape{p.out_features}, ParamInit::uniform(bound)));
  p.residual = residual >= 0;
  if (p.residual) in.push_back(residual);
  return add_node(name, p, std::move(in))[0];
}

ValueId GraphBuilder::linear_stacked(const std::string& name, ValueId x,
                                     const std::vector<std::string>& parts, LinearParams p) {
  const auto count = static_cast<int64_t>(parts.size());
  if (count < 1 || p.out_features % count != 0)
    throw ShapeError("node '" + name + "': " + std::to_string(p.out_features) +
                     " out_features are not divisible into " + std::to_string(count) + " parts");
  const int64_t in_f = shape(x).back(), out_f = p.out_features / count;
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_f));
  const int64_t weights = reserve_parameters(count * out_f * in_f);
  const int64_t biases = p.bias ? reserve_parameters(count * out_f) : -1;
  std::vector<ValueId> w, b;
  for (int64_t i = 0; i < count; ++i) {
    const std::string& part = parts[static_cast<size_t>(i)];
    w.push_back(parameter_at(part + ".weight", Shape{out_f, in_f}, ParamInit::uniform(bound), true,
                             weights + i * out_f * in_f));
    if (p.bias)
      b.push_back(parameter_at(part + ".bias", Shape{out_f}, ParamInit::uniform(bound), true,
                               biases + i * out_f));
  }
  p.weight_parts = count;
  p.residual = false;
  std::vector<ValueId> in{x};
  in.insert(in.end(), w.begin(), w.end());
  in.insert(in.end(), b.begin(), b.end());
  return add_node(name, p, std::move(in))[0];
}

ValueId GraphBuilder::attention_packed(const std::string& name, ValueId qkv, AttentionParams p) {
  p.packed_qkv = true;
  return add_node(name, p, {qkv})[0];
}

ValueId GraphBuilder::attention(const std::string& name, ValueId q, ValueId k, ValueId v,
                                const AttentionParams& p) {
  return add_node(name, p, {q, k, v})[0];
}

ValueId GraphBuilder::silu(const std::string& name, ValueId x) {
  return add_node(name, SiluParams{}, {x})[0];
}

ValueId GraphBuilder::add(const std::string& name, ValueId a, ValueId b, double scale) {
  return add_node(name, AddParams{scale}, {a, b})[0];
}

ValueId GraphBuilder::concat(const std::string& name, std::vector<ValueId> xs) {
  return add_node(name, ConcatParams{}, std::move(xs))[0];
}

ValueId GraphBuilder::upsample2x(const std::string& name, ValueId x) {
  return add_node(name, Upsample2xParams{}, {x})[0];
}

ValueId GraphBuilder::timestep_embedding(const std::string& name, ValueId t,
                                         const TimestepEmbeddingParams& p) {
  return add_node(name, p, {t})[0];
}

ValueId GraphBuilder::dropout(const std::string& name, ValueId x, double p) {
  return add_node(name, DropoutParams{p, dropout_count_++}, {x})[0];
}

ValueId GraphBuilder::mse_loss(const std::string& name, ValueId pred, ValueId target) {
  return add_node(name, MseLossParams{}, {pred, target})[0];
}

void GraphBuilder::mark_output(ValueId v) {
  shape(v);
  g_.values[static_cast<size_t>(v)].is_output = true;
}

void GraphBuilder::set_loss(ValueId v) {
  if (shape(v).numel() != 1) throw std::invalid_argument("graph: the loss must be a single number");
  g_.loss = v;
  mark_output(v);
}

Graph GraphBuilder::finish() {
  return std::move(g_);
}

}  // namespace ddpm
