// Runs a graph on a backend: forward in node order, backward by walking the
// nodes in reverse with each op's backward rule. Owns the arena, the flat
// parameter buffer and the flat gradient buffer.
#pragma once

#include <vector>

#include "engine/backend.h"
#include "engine/memory_plan.h"

namespace ddpm {

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
  // The flat buffers, [param_buffer_elements] each.
  Tensor parameters() const;
  Tensor gradients() const;

  // Fills parameters from their ParamInit, each drawn from its own Philox
  // stream keyed on (seed, parameter index), so the result does not depend on
  // the order of initialisation.
  void init_parameters(uint64_t seed);

  void forward(const RunContext& ctx);
  // Zeroes the parameter gradients (unless accumulating micro-batches), seeds
  // d loss = 1 and runs every backward rule. Training mode only.
  void backward(const RunContext& ctx, bool accumulate_param_grads = false);

  // Host conveniences: copies converted to and from the graph's dtype.
  template <typename T>
  void write(ValueId v, const std::vector<T>& data);
  template <typename T = float>
  std::vector<T> read(const Tensor& t) const;

 private:
  Tensor view(ValueId v, void* base, int64_t byte_offset) const;
  void check_value(ValueId v) const;

  const Graph& graph_;
  Backend& backend_;
  ExecMode mode_;
  MemoryPlan plan_;
  DeviceBuffer arena_, params_, grads_;
};

}  // namespace ddpm
