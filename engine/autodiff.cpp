#include "engine/autodiff.h"

#include <stdexcept>

namespace ddpm {

BackwardAnalysis analyze_backward(const Graph& g) {
  if (g.loss < 0) throw std::invalid_argument("backward: the graph has no loss (set_loss)");
  const size_t nv = g.values.size(), nn = g.nodes.size();

  std::vector<bool> depends(nv, false);
  for (size_t v = 0; v < nv; ++v)
    depends[v] = g.values[v].kind != ValueKind::activation && g.values[v].requires_grad;
  for (const Node& n : g.nodes) {
    bool any = false;
    for (ValueId in : n.inputs) any = any || depends[static_cast<size_t>(in)];
    for (size_t s = 0; s < n.outputs.size(); ++s)
      if (!(n.signature.nondiff_outputs & bit(static_cast<int>(s))))
        depends[static_cast<size_t>(n.outputs[s])] = any;
  }

  std::vector<bool> reaches(nv, false);
  reaches[static_cast<size_t>(g.loss)] = true;
  for (size_t i = nn; i-- > 0;) {
    const Node& n = g.nodes[i];
    bool any = false;
    for (size_t s = 0; s < n.outputs.size(); ++s)
      any = any || (!(n.signature.nondiff_outputs & bit(static_cast<int>(s))) &&
                    reaches[static_cast<size_t>(n.outputs[s])]);
    if (any)
      for (ValueId in : n.inputs) reaches[static_cast<size_t>(in)] = true;
  }

  BackwardAnalysis a;
  a.needs_grad.resize(nv);
  for (size_t v = 0; v < nv; ++v) a.needs_grad[v] = depends[v] && reaches[v];
  a.runs_backward.assign(nn, false);
  a.accumulate.resize(nn);
  std::vector<bool> written(nv, false);
  for (size_t i = nn; i-- > 0;) {
    const Node& n = g.nodes[i];
    for (ValueId out : n.outputs)
      a.runs_backward[i] = a.runs_backward[i] || a.needs_grad[static_cast<size_t>(out)];
    a.accumulate[i].assign(n.inputs.size(), true);
    if (!a.runs_backward[i]) continue;
    for (size_t s = 0; s < n.inputs.size(); ++s) {
      const auto v = static_cast<size_t>(n.inputs[s]);
      if (!a.needs_grad[v] || g.values[v].kind == ValueKind::parameter) continue;
      a.accumulate[i][s] = written[v];
      written[v] = true;
    }
  }
  return a;
}

}  // namespace ddpm
