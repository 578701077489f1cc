// One arena for all activations (and, in training, their gradients), with
// offsets chosen from value lifetimes so that buffers whose lifetimes do not
// overlap share memory. Parameters and their gradients live in the flat
// buffers instead. In inference, a node that is an identity there (dropout)
// is elided: its output is its input's memory, kept alive as long as either
// is needed, and the executor does not run it.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/autodiff.h"
#include "engine/graph.h"

namespace ddpm {

enum class ExecMode : uint8_t {
  inference,  // forward only: a value dies after its last forward use
  training    // forward then backward: values a backward rule reads stay alive
};

struct MemoryPlan {
  static constexpr size_t kAlignment = 256;  // bytes, as cudaMalloc guarantees

  ExecMode mode = ExecMode::inference;
  std::vector<int64_t> value_offset;  // byte offset in the arena; -1 for parameters
  std::vector<int64_t> grad_offset;   // byte offset of an activation/input gradient; -1 if none
  std::vector<bool> elided;           // per node: not run, its output aliases its input
  size_t peak_bytes = 0;              // arena size
  size_t unshared_bytes = 0;          // what the same buffers take without reuse
  BackwardAnalysis backward;          // empty in inference mode
};

MemoryPlan plan_memory(const Graph& g, ExecMode mode);

// Whether `node` is an identity in `mode` whose output can alias its input:
// dropout in inference, on an activation or input (not a parameter).
bool elidable(const Graph& g, const Node& node, ExecMode mode);

}  // namespace ddpm
