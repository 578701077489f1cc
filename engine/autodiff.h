// Which values need a gradient, which nodes run a backward rule, and whether
// each gradient contribution overwrites or accumulates. Derived from the graph
// alone, so the memory plan and the executor agree on it.
#pragma once

#include <vector>

#include "engine/graph.h"

namespace ddpm {

struct BackwardAnalysis {
  // A value needs a gradient when it depends on a leaf that requires one and
  // the loss depends on it.
  std::vector<bool> needs_grad;     // per value
  std::vector<bool> runs_backward;  // per node
  // Per node and input slot: false for the first contribution to an
  // activation or input gradient in backward order (it overwrites), true
  // otherwise. Parameter gradients always accumulate into the flat buffer,
  // which is zeroed once per step.
  std::vector<std::vector<bool>> accumulate;
};

// Throws when the graph has no loss.
BackwardAnalysis analyze_backward(const Graph& g);

}  // namespace ddpm
