// The arena plan: lifetimes let buffers share memory, training keeps what
// backward reads, and the gradient bookkeeping (which values need one, which
// contribution overwrites) follows the graph.
#include <gtest/gtest.h>

#include "engine/memory_plan.h"
#include "engine/tiny_denoiser.h"
#include "engine/unet.h"

namespace ddpm {
namespace {

Graph silu_chain(int length, bool with_loss) {
  GraphBuilder b;
  ValueId x = b.input("x", Shape{4, 8, 8, 16});
  const ValueId w = b.parameter("w", Shape{4, 8, 8, 16}, ParamInit::constant(1));
  x = b.add("scale_in", x, w);
  for (int i = 0; i < length; ++i) x = b.silu("silu" + std::to_string(i), x);
  if (with_loss) {
    const ValueId target = b.input("target", Shape{4, 8, 8, 16});
    b.set_loss(b.mse_loss("loss", x, target));
  } else {
    b.mark_output(x);
  }
  return b.finish();
}

TEST(MemoryPlan, InferenceChainNeedsTwoBuffers) {
  const Graph g = silu_chain(10, false);
  const MemoryPlan plan = plan_memory(g, ExecMode::inference);
  const size_t buffer = 4 * 8 * 8 * 16 * sizeof(float);  // already 256-aligned
  // Input x, add output and ten silu outputs: 12 buffers without reuse, yet at
  // any node only the input (kept for the caller), the node's input and its
  // output are alive.
  EXPECT_EQ(plan.unshared_bytes, 12 * buffer);
  EXPECT_EQ(plan.peak_bytes, 3 * buffer);
}

TEST(MemoryPlan, TrainingKeepsWhatBackwardReads) {
  const Graph g = silu_chain(10, true);
  const MemoryPlan inference = plan_memory(g, ExecMode::inference);
  const MemoryPlan training = plan_memory(g, ExecMode::training);
  const size_t buffer = 4 * 8 * 8 * 16 * sizeof(float);
  // SiLU's backward reads its input, so the add output and the first nine
  // silu outputs stay alive into backward, plus the last output (read by the
  // loss backward), the target, and gradients in flight.
  EXPECT_GE(training.peak_bytes, 11 * buffer);
  EXPECT_LT(training.peak_bytes, training.unshared_bytes);
  EXPECT_LT(inference.peak_bytes, training.peak_bytes);
}

TEST(MemoryPlan, ReuseLowersPeakOfTheTinyDenoiser) {
  const TinyDenoiser m = build_tiny_denoiser({});
  for (ExecMode mode : {ExecMode::inference, ExecMode::training}) {
    const MemoryPlan plan = plan_memory(m.graph, mode);
    EXPECT_LT(plan.peak_bytes, plan.unshared_bytes);
    EXPECT_GT(plan.peak_bytes, 0u);
  }
  EXPECT_LT(plan_memory(m.graph, ExecMode::inference).peak_bytes,
            plan_memory(m.graph, ExecMode::training).peak_bytes);
}

// Buffers alive at the same node must not overlap: checked with a lifetime
// computed independently (and conservatively) from the node order.
TEST(MemoryPlan, InferenceBuffersAliveTogetherDoNotOverlap) {
  const TinyDenoiser m = build_tiny_denoiser({});
  const Graph& g = m.graph;
  const MemoryPlan plan = plan_memory(g, ExecMode::inference);
  const int nn = int(g.nodes.size());
  struct Live {
    int first, last;
    int64_t begin, end;
    std::string name;
    size_t storage;  // an elided node's output shares its input's buffer
  };
  std::vector<size_t> storage(g.values.size());
  for (size_t v = 0; v < storage.size(); ++v) storage[v] = v;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (plan.elided[i])
      storage[size_t(g.nodes[i].outputs[0])] = storage[size_t(g.nodes[i].inputs[0])];
  std::vector<Live> live;
  for (const Value& v : g.values) {
    if (v.kind == ValueKind::parameter) continue;
    int first = v.kind == ValueKind::input ? 0 : v.producer, last = first;
    for (const Consumer& c : v.consumers) last = std::max(last, c.node);
    if (v.is_output || v.kind == ValueKind::input) last = nn;
    const int64_t off = plan.value_offset[size_t(&v - g.values.data())];
    live.push_back({first, last, off, off + int64_t(v.shape.numel() * 4), v.name,
                    storage[size_t(&v - g.values.data())]});
  }
  for (size_t i = 0; i < live.size(); ++i)
    for (size_t j = i + 1; j < live.size(); ++j) {
      const Live &a = live[i], &b = live[j];
      const bool together = a.first <= b.last && b.first <= a.last;
      const bool overlap = a.begin < b.end && b.begin < a.end;
      if (a.storage == b.storage) continue;
      EXPECT_FALSE(together && overlap) << a.name << " and " << b.name;
    }
}

TEST(BackwardAnalysis, NeedsGradAndOverwriteOrder) {
  GraphBuilder b;
  const ValueId x = b.input("x", Shape{2, 3});
  const ValueId w = b.parameter("w", Shape{2, 3}, ParamInit::constant(1));
  const ValueId frozen = b.parameter("frozen", Shape{2, 3}, ParamInit::constant(1), false);
  const ValueId h = b.add("h", x, w);
  const ValueId u = b.add("u", h, h);       // fan-out: h used twice by one node
  const ValueId z = b.add("z", x, frozen);  // no trainable leaf upstream
  const ValueId s = b.silu("s", u);
  const ValueId unused = b.silu("unused", h);  // does not reach the loss
  b.mark_output(unused);
  b.set_loss(b.mse_loss("loss", s, z));
  const Graph g = b.finish();
  const BackwardAnalysis a = analyze_backward(g);
  EXPECT_FALSE(a.needs_grad[size_t(x)]);
  EXPECT_TRUE(a.needs_grad[size_t(w)]);
  EXPECT_FALSE(a.needs_grad[size_t(frozen)]);
  EXPECT_TRUE(a.needs_grad[size_t(h)]);
  EXPECT_FALSE(a.needs_grad[size_t(z)]);
  EXPECT_FALSE(a.needs_grad[size_t(unused)]);
  const int u_node = g.values[size_t(u)].producer;
  EXPECT_FALSE(a.accumulate[size_t(u_node)][0]);  // first contribution to dh overwrites
  EXPECT_TRUE(a.accumulate[size_t(u_node)][1]);   // the second adds
  EXPECT_FALSE(a.runs_backward[size_t(g.values[size_t(z)].producer)]);
  EXPECT_FALSE(a.runs_backward[size_t(g.values[size_t(unused)].producer)]);
  EXPECT_TRUE(a.accumulate[size_t(g.values[size_t(h)].producer)][1]);  // parameters always add
}

}  // namespace
}  // namespace ddpm

namespace ddpm {
namespace {

// Replays the executor's accesses against the plan, 256-byte chunk by chunk:
// every read must find the chunk still holding what it reads (nothing placed
// there since it was written). Independent of how the plan computes lifetimes.
void expect_plan_survives_replay(const Graph& g, ExecMode mode) {
  const MemoryPlan plan = plan_memory(g, mode);
  // An elided node's output is its input's memory: tag both with the input's
  // storage, and the node neither reads nor writes.
  std::vector<int64_t> storage(g.values.size());
  for (size_t v = 0; v < storage.size(); ++v) storage[v] = int64_t(v);
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (plan.elided[i])
      storage[size_t(g.nodes[i].outputs[0])] = storage[size_t(g.nodes[i].inputs[0])];
  const size_t chunk = MemoryPlan::kAlignment, elem = dtype_size(g.dtype);
  std::vector<int64_t> owner(plan.peak_bytes / chunk + 1,
                             -1);  // value id, or -2 - id for a gradient
  auto chunks = [&](int64_t offset, const Shape& s) {
    const size_t first = size_t(offset) / chunk;
    return std::pair<size_t, size_t>{first, first + (size_t(s.numel()) * elem + chunk - 1) / chunk};
  };
  auto write = [&](int64_t tag, int64_t offset, const Shape& s) {
    auto [a, b] = chunks(offset, s);
    for (size_t c = a; c < b; ++c) owner[c] = tag;
  };
  auto read = [&](int64_t tag, int64_t offset, const Shape& s, const std::string& what) {
    auto [a, b] = chunks(offset, s);
    for (size_t c = a; c < b; ++c) ASSERT_EQ(owner[c], tag) << what << " was overwritten";
  };
  for (size_t v = 0; v < g.values.size(); ++v)
    if (g.values[v].kind == ValueKind::input)
      write(int64_t(v), plan.value_offset[v], g.values[v].shape);
  // Forward twice without rewriting the inputs: a repeated run must see them.
  for (int pass = 0; pass < 2; ++pass)
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      if (plan.elided[i]) continue;
      const Node& n = g.nodes[i];
      for (ValueId in : n.inputs)
        if (g.values[size_t(in)].kind != ValueKind::parameter)
          read(storage[size_t(in)], plan.value_offset[size_t(in)], g.values[size_t(in)].shape,
               "forward input " + g.values[size_t(in)].name);
      for (ValueId out : n.outputs)
        write(storage[size_t(out)], plan.value_offset[size_t(out)], g.values[size_t(out)].shape);
    }
  for (size_t v = 0; v < g.values.size(); ++v)
    if (g.values[v].is_output)
      read(storage[v], plan.value_offset[v], g.values[v].shape, "output " + g.values[v].name);
  if (mode == ExecMode::inference) return;

  const BackwardAnalysis& a = plan.backward;
  write(-2 - g.loss, plan.grad_offset[size_t(g.loss)], Shape{1});
  for (size_t i = g.nodes.size(); i-- > 0;) {
    if (!a.runs_backward[i]) continue;
    const Node& n = g.nodes[i];
    for (size_t s = 0; s < n.inputs.size(); ++s)
      if ((n.signature.saved_inputs & bit(int(s))) &&
          g.values[size_t(n.inputs[s])].kind != ValueKind::parameter)
        read(n.inputs[s], plan.value_offset[size_t(n.inputs[s])],
             g.values[size_t(n.inputs[s])].shape, "saved input of " + n.name);
    for (size_t s = 0; s < n.outputs.size(); ++s) {
      const auto v = size_t(n.outputs[s]);
      if (n.signature.saved_outputs & bit(int(s)))
        read(int64_t(v), plan.value_offset[v], g.values[v].shape, "saved output of " + n.name);
      if (a.needs_grad[v])
        read(-2 - int64_t(v), plan.grad_offset[v], g.values[v].shape,
             "gradient of " + g.values[v].name);
    }
    for (size_t s = 0; s < n.inputs.size(); ++s) {
      const auto v = size_t(n.inputs[s]);
      if (!a.needs_grad[v] || g.values[v].kind == ValueKind::parameter) continue;
      if (a.accumulate[i][s])
        read(-2 - int64_t(v), plan.grad_offset[v], g.values[v].shape,
             "accumulated gradient of " + g.values[v].name);
      write(-2 - int64_t(v), plan.grad_offset[v], g.values[v].shape);
    }
  }
}

TEST(MemoryPlan, TinyDenoiserPlanSurvivesReplayOfEveryAccess) {
  TinyDenoiserConfig c;
  c.input_requires_grad = true;
  const TinyDenoiser m = build_tiny_denoiser(c);
  expect_plan_survives_replay(m.graph, ExecMode::inference);
  expect_plan_survives_replay(m.graph, ExecMode::training);
}

// The UNet in both forms, with dropout (elided in inference) and attention
// at both levels: the fused graph's conv2 and to_out read their skip
// connections from far back, which the plan must keep alive.
TEST(MemoryPlan, UNetPlansSurviveReplayOfEveryAccess) {
  UNetConfig c;
  c.sample_size = c.sample_height = c.sample_width = 8;
  c.block_out_channels = {8, 16};
  c.layers_per_block = 1;
  c.down_block_types = {"AttnDownBlock2D", "AttnDownBlock2D"};
  c.up_block_types = {"AttnUpBlock2D", "AttnUpBlock2D"};
  c.norm_num_groups = 4;
  c.dropout = 0.1;
  for (bool fuse : {true, false}) {
    SCOPED_TRACE(fuse ? "fused" : "unfused");
    UNetBuildOptions o;
    o.batch = 2;
    o.with_loss = true;
    o.fuse = fuse;
    const UNetGraph u = build_unet(c, o);
    expect_plan_survives_replay(u.graph, ExecMode::inference);
    expect_plan_survives_replay(u.graph, ExecMode::training);
  }
}

// Dropout is an identity in inference: elided (not run, the output is the
// input's memory, which lives as long as either is needed); not in training.
TEST(MemoryPlan, InferenceElidesDropoutIntoItsInput) {
  const TinyDenoiser m = build_tiny_denoiser({});
  const int drop = m.graph.values[size_t(m.graph.find("res.dropout"))].producer;
  const Node& node = m.graph.nodes[size_t(drop)];
  const auto in = size_t(node.inputs[0]), out = size_t(node.outputs[0]);
  const MemoryPlan infer = plan_memory(m.graph, ExecMode::inference);
  EXPECT_TRUE(infer.elided[size_t(drop)]);
  EXPECT_EQ(infer.value_offset[out], infer.value_offset[in]);
  int elided = 0;
  for (bool e : infer.elided) elided += e;
  EXPECT_EQ(elided, 1);
  const MemoryPlan train = plan_memory(m.graph, ExecMode::training);
  for (bool e : train.elided) EXPECT_FALSE(e);
  EXPECT_NE(train.value_offset[out], train.value_offset[in]);
}

}  // namespace
}  // namespace ddpm
