// Runs a graph on a backend: forward in node order (skipping the nodes the
// plan elides: dropout in inference), backward by walking the nodes in
// reverse with each op's backward rule. Owns the arena, the flat parameter
// buffer and the flat gradient buffer.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/memory_plan.h"

namespace ddpm {

// --check-numerics found a non-finite value: the message names the first op
// (forward or backward) that wrote one, or the parameter or input holding one.
class NumericsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Executor {
 public:
  Executor(const Graph& graph, Backend& backend, ExecMode mode);

  const Graph& graph() const { return graph_; }
  const MemoryPlan& plan() const { return plan_; }
  Backend& backend() const { return backend_; }

  // A view of a value: inputs are written here and keep their contents until
  // written again; activations are valid while alive in the plan (outputs to
  // the end of the run).
  Tensor value(ValueId v) const;
  Tensor value(const std::string& name) const { return value(graph_.find(name)); }
  // The gradient of a value after backward (parameters, and inputs created
  // with requires_grad). Parameter gradients stay until the next backward;
  // input gradients share arena space with forward activations and are valid
  // only until the next forward.
  Tensor grad(ValueId v) const;
  Tensor grad(const std::string& name) const { return grad(graph_.find(name)); }
  // The flat buffers, [param_buffer_elements] each, in the graph's dtype
  // (fp32 master weights in a mixed-precision graph).
  Tensor parameters() const;
  Tensor gradients() const;
  // A mixed-precision graph's bf16 copy of the parameter buffer (same
  // offsets), where its bf16 ops read their weights; undefined (data null)
  // when the graph has none. It must follow the master: write() and
  // init_parameters() update it, a caller writing parameters() directly
  // calls refresh_parameter_copy() after, and the CUDA optimizer writes it
  // in its update.
  Tensor parameter_copy() const;
  void refresh_parameter_copy();

  // Fills parameters from their ParamInit, each drawn from its own Philox
  // stream keyed on (seed, parameter index), so the result does not depend on
  // the order of initialisation.
  void init_parameters(uint64_t seed);

  // Debugging divergence: after every op, read what it wrote back to the
  // host and throw NumericsError naming the op when a value is NaN or inf
  // (parameters and inputs are checked first). Synchronises after every op:
  // slow, and not for a run captured as a CUDA graph.
  void set_check_numerics(bool on) { check_numerics_ = on; }
  bool check_numerics() const { return check_numerics_; }

  void forward(const RunContext& ctx);
  // Zeroes the parameter gradients (unless accumulating micro-batches), seeds
  // d loss = 1 and runs every backward rule. Training mode only.
  void backward(const RunContext& ctx, bool accumulate_param_grads = false);

  // Host conveniences: copies converted to and from the value's dtype
  // (bf16 rounded to nearest even). Writing a parameter writes its master
  // and its bf16 copy.
  template <typename T>
  void write(ValueId v, const std::vector<T>& data);
  template <typename T = float>
  std::vector<T> read(const Tensor& t) const;

 private:
  Tensor view(ValueId v, void* base, int64_t byte_offset, DType dtype) const;
  // A parameter's master view (Graph::dtype), whatever its compute dtype.
  Tensor master(ValueId v) const;
  void write_host(const Tensor& t, const std::vector<double>& data) const;
  void check_value(ValueId v) const;
  // Throws NumericsError for the first non-finite element of `t`; `what`
  // says whose value it is.
  void expect_finite(const Tensor& t, const std::string& what) const;

  const Graph& graph_;
  Backend& backend_;
  ExecMode mode_;
  MemoryPlan plan_;
  DeviceBuffer arena_, params_, grads_, params_copy_;
  bool check_numerics_ = false;
};

}  // namespace ddpm
