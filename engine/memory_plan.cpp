#include "engine/memory_plan.h"

#include <algorithm>
#include <variant>

namespace ddpm {

namespace {

struct Interval {
  int start, end;  // inclusive, in steps of the run's timeline
  size_t bytes;
  int64_t* offset;  // where the chosen offset goes
};

size_t align_up(size_t n) {
  return (n + MemoryPlan::kAlignment - 1) / MemoryPlan::kAlignment * MemoryPlan::kAlignment;
}

// Greedy placement, largest first: each buffer goes at the lowest offset
// where it overlaps no already-placed buffer that is alive at the same time.
size_t place(std::vector<Interval>& items) {
  std::sort(items.begin(), items.end(), [](const Interval& a, const Interval& b) {
    return a.bytes != b.bytes ? a.bytes > b.bytes : a.start < b.start;
  });
  std::vector<const Interval*> placed;
  size_t peak = 0;
  for (Interval& it : items) {
    std::vector<std::pair<size_t, size_t>> busy;  // [offset, offset+bytes) alive alongside
    for (const Interval* p : placed)
      if (p->start <= it.end && it.start <= p->end)
        busy.emplace_back(static_cast<size_t>(*p->offset),
                          static_cast<size_t>(*p->offset) + p->bytes);
    std::sort(busy.begin(), busy.end());
    size_t off = 0;
    for (const auto& [b, e] : busy) {
      if (off + it.bytes <= b) break;
      off = std::max(off, e);
    }
    *it.offset = static_cast<int64_t>(off);
    peak = std::max(peak, off + it.bytes);
    placed.push_back(&it);
  }
  return peak;
}

}  // namespace

bool elidable(const Graph& g, const Node& node, ExecMode mode) {
  return mode == ExecMode::inference && std::holds_alternative<DropoutParams>(node.params) &&
         g.values[static_cast<size_t>(node.inputs[0])].kind != ValueKind::parameter;
}

MemoryPlan plan_memory(const Graph& g, ExecMode mode) {
  const int nn = static_cast<int>(g.nodes.size());
  const size_t nv = g.values.size();
  MemoryPlan plan;
  plan.mode = mode;
  plan.value_offset.assign(nv, -1);
  plan.grad_offset.assign(nv, -1);
  const bool training = mode == ExecMode::training;
  if (training) plan.backward = analyze_backward(g);

  // storage[v]: the value whose buffer v lives in (itself, or the input of
  // the elided node that produced it, followed to the first real buffer).
  plan.elided.assign(static_cast<size_t>(nn), false);
  std::vector<size_t> storage(nv);
  for (size_t v = 0; v < nv; ++v) storage[v] = v;
  for (int i = 0; i < nn; ++i) {
    const Node& n = g.nodes[static_cast<size_t>(i)];
    if (!elidable(g, n, mode)) continue;
    plan.elided[static_cast<size_t>(i)] = true;
    storage[static_cast<size_t>(n.outputs[0])] = storage[static_cast<size_t>(n.inputs[0])];
  }

  // Timeline: forward of node i at time i; in training, backward of node i at
  // 2*nn - 1 - i. Inputs exist from time -1; outputs live to `end`.
  const int end = training ? 2 * nn : nn;
  auto backward_time = [nn](int node) { return 2 * nn - 1 - node; };

  // Each buffer lives from the first start to the last use of the values in
  // it (pass 1), then buffers and gradients are placed (pass 2).
  std::vector<int> buffer_start(nv, end), buffer_end(nv, -2);
  for (size_t v = 0; v < nv; ++v) {
    const Value& val = g.values[v];
    if (val.kind == ValueKind::parameter) continue;
    int start = val.kind == ValueKind::input ? -1 : val.producer;
    int last = start;
    for (const Consumer& c : val.consumers) {
      last = std::max(last, c.node);
      if (training && plan.backward.runs_backward[static_cast<size_t>(c.node)] &&
          (g.nodes[static_cast<size_t>(c.node)].signature.saved_inputs & bit(c.slot)))
        last = std::max(last, backward_time(c.node));
    }
    if (training && val.kind == ValueKind::activation &&
        plan.backward.runs_backward[static_cast<size_t>(val.producer)] &&
        (g.nodes[static_cast<size_t>(val.producer)].signature.saved_outputs &
         bit(val.producer_slot)))
      last = std::max(last, backward_time(val.producer));
    // Inputs keep what the caller wrote across runs (they are small: images,
    // timesteps, targets), so a forward can be repeated without rewriting them.
    if (val.is_output || val.kind == ValueKind::input) last = end;
    buffer_start[storage[v]] = std::min(buffer_start[storage[v]], start);
    buffer_end[storage[v]] = std::max(buffer_end[storage[v]], last);
  }

  std::vector<Interval> items;
  for (size_t v = 0; v < nv; ++v) {
    const Value& val = g.values[v];
    if (val.kind == ValueKind::parameter) continue;
    if (storage[v] == v)
      items.push_back({buffer_start[v], buffer_end[v],
                       align_up(static_cast<size_t>(val.shape.numel()) * dtype_size(val.dtype)),
                       &plan.value_offset[v]});
    if (!training || !plan.backward.needs_grad[v]) continue;
    // A gradient is born at its first contribution (the backward of its last
    // consumer; the loss's is seeded before backward starts) and dies after
    // its producer's backward; an input's is kept for the caller.
    int gstart = static_cast<int>(v) == g.loss ? nn : end;
    for (const Consumer& c : val.consumers)
      if (plan.backward.runs_backward[static_cast<size_t>(c.node)])
        gstart = std::min(gstart, backward_time(c.node));
    const int gend = val.kind == ValueKind::input ? end : backward_time(val.producer);
    items.push_back({gstart, gend,
                     align_up(static_cast<size_t>(val.shape.numel()) * dtype_size(val.dtype)),
                     &plan.grad_offset[v]});
  }
  for (const Interval& it : items) plan.unshared_bytes += it.bytes;
  plan.peak_bytes = place(items);
  for (size_t v = 0; v < nv; ++v)
    if (storage[v] != v) plan.value_offset[v] = plan.value_offset[storage[v]];
  return plan;
}

}  // namespace ddpm
