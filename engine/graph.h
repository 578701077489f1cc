// A static graph of op nodes over values. Nodes are appended only after their
// inputs exist, so the order of `nodes` is a topological order, and the
// executor runs it as is; backward walks it in reverse.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/op.h"

namespace ddpm {

using ValueId = int32_t;

enum class ValueKind : uint8_t {
  input,      // written by the caller before forward (images, timesteps, targets)
  parameter,  // lives in the flat parameter buffer
  activation  // produced by a node, lives in the arena
};

// How a parameter starts: a constant, or uniform in [-bound, bound]
// (PyTorch's default for conv and linear layers: bound = fan_in^-1/2).
struct ParamInit {
  enum class Kind : uint8_t { constant, uniform } kind = Kind::constant;
  double value = 0;
  static ParamInit constant(double v) { return {Kind::constant, v}; }
  static ParamInit uniform(double bound) { return {Kind::uniform, bound}; }
};

struct Consumer {
  int node;
  int slot;
};

struct Value {
  std::string name;
  Shape shape;
  ValueKind kind = ValueKind::activation;
  int producer = -1;  // node index, activations only
  int producer_slot = 0;
  std::vector<Consumer> consumers;
  bool requires_grad = false;  // leaves only: parameters (trainable) and chosen inputs
  bool is_output = false;      // kept alive to the end of a run so the caller can read it
  // The element type the ops see: activations and inputs are stored in it
  // (so are their gradients); a parameter's is its compute type, the
  // master copy and its gradient being Graph::dtype (a conv or linear
  // weight read by a bf16 op is bf16 here, a copy of the fp32 master).
  DType dtype = DType::f32;
  int64_t param_offset = -1;  // element offset in the flat parameter buffer
  ParamInit init;
};

struct Node {
  std::string name;
  OpParams params;
  std::vector<ValueId> inputs;
  std::vector<ValueId> outputs;
  OpSignature signature;
};

struct Graph {
  DType dtype = DType::f32;             // parameters (master weights), their gradients
  DType activation_dtype = DType::f32;  // what GraphBuilder::input defaults to for images
  // Whether some parameter is read in another dtype than its master (the
  // executor then keeps a copy of the parameter buffer in bf16).
  bool has_parameter_copy() const;
  std::vector<Value> values;
  std::vector<Node> nodes;
  ValueId loss = -1;
  int64_t param_buffer_elements = 0;  // flat buffer length, parameters aligned
  int64_t num_parameters = 0;         // true count, without alignment padding

  // Throws std::out_of_range naming the value when absent.
  ValueId find(const std::string& name) const;
  bool contains(const std::string& name) const { return by_name.count(name) != 0; }
  std::vector<ValueId> parameters() const;
  std::vector<ValueId> inputs() const;

  std::unordered_map<std::string, ValueId> by_name;
};

class GraphBuilder {
 public:
  // dtype: parameters, their gradients, and every value of an f32/f64
  // graph. activations = bf16 (with dtype f32) makes a mixed-precision graph:
  // an op's outputs take its first input's dtype, so bf16 flows from the
  // inputs created in it through convolutions, norms, attention and the
  // linear layers they feed, while values computed from f32 inputs (the
  // timestep embedding and its MLP) stay f32; the statistics outputs
  // (GroupNorm's mean/rstd, attention's log-sum-exp) and the loss are f32.
  explicit GraphBuilder(DType dtype = DType::f32);
  GraphBuilder(DType dtype, DType activations);

  // dtype: the graph's activation dtype when absent (images), else as given
  // (Graph::dtype for timesteps and targets).
  ValueId input(const std::string& name, Shape shape, bool requires_grad = false,
                std::optional<DType> dtype = std::nullopt);
  ValueId parameter(const std::string& name, Shape shape, ParamInit init, bool trainable = true);
  // Adds a node; checks shapes (errors name the node) and returns its outputs.
  std::vector<ValueId> add_node(const std::string& name, OpParams params,
                                std::vector<ValueId> inputs);

  // One call per op, creating "<name>.weight" / "<name>.bias" parameters where
  // the op has them (PyTorch's names and default initialisation). The fused
  // inputs are optional values: a residual added to a conv's or a linear's
  // output, a [N, C] channel_add added before a GroupNorm (the params' flags
  // follow whether one is given).
  ValueId conv2d(const std::string& name, ValueId x, Conv2dParams p, ValueId residual = -1);
  ValueId group_norm(const std::string& name, ValueId x, GroupNormParams p,
                     ValueId channel_add = -1);
  ValueId linear(const std::string& name, ValueId x, LinearParams p, ValueId residual = -1);
  ValueId attention(const std::string& name, ValueId q, ValueId k, ValueId v,
                    const AttentionParams& p);
  // A conv's parameters alone, for a caller that creates them before the
  // node's other inputs (to keep the parameter order of the model it mirrors):
  // {weight, bias} or {weight}. Pass them to add_node with x first.
  std::vector<ValueId> conv2d_parameters(const std::string& name, int64_t in_channels,
                                         const Conv2dParams& p);
  // One linear layer over several separately named layers with the same
  // input (diffusers' to_q, to_k, to_v): parameters "<part>.weight" and
  // "<part>.bias" in the order given, initialised and counted as separate
  // layers, but laid out back to back in the flat buffer (weights, then
  // biases), so the node reads them as one stacked [parts * out, in] weight.
  // p.out_features is the total; p.weight_parts is set from `parts`.
  ValueId linear_stacked(const std::string& name, ValueId x, const std::vector<std::string>& parts,
                         LinearParams p);
  // Attention reading q, k and v from one [N, ..., 3C] value (packed_qkv).
  ValueId attention_packed(const std::string& name, ValueId qkv, AttentionParams p);
  ValueId silu(const std::string& name, ValueId x);
  ValueId add(const std::string& name, ValueId a, ValueId b, double scale = 1.0);
  ValueId concat(const std::string& name, std::vector<ValueId> xs);
  ValueId upsample2x(const std::string& name, ValueId x);
  ValueId timestep_embedding(const std::string& name, ValueId t, const TimestepEmbeddingParams& p);
  ValueId dropout(const std::string& name, ValueId x, double p);
  ValueId mse_loss(const std::string& name, ValueId pred, ValueId target);

  void mark_output(ValueId v);
  void set_loss(ValueId v);
  const Shape& shape(ValueId v) const;
  DType dtype(ValueId v) const;
  DType activation_dtype() const { return g_.activation_dtype; }
  const Graph& graph() const { return g_; }
  Graph finish();

 private:
  ValueId new_value(const std::string& name, Shape shape, ValueKind kind);
  // The next aligned run of `elements` in the flat parameter buffer.
  int64_t reserve_parameters(int64_t elements);
  // Each of the `outputs` outputs' dtype (see the constructor), checking that the inputs'
  // dtypes fit the op; sets the compute dtype of the weights a bf16 conv or
  // linear reads. Errors name the node.
  std::vector<DType> output_dtypes(const std::string& name, const OpParams& params,
                                   const std::vector<ValueId>& inputs, size_t outputs);
  ValueId parameter_at(const std::string& name, Shape shape, ParamInit init, bool trainable,
                       int64_t offset);

  Graph g_;
  uint32_t dropout_count_ = 0;
};

}  // namespace ddpm
