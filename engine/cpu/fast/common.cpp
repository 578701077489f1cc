// Helpers shared by the f32 fast ops (common.h).
#include "engine/cpu/fast/common.h"

#include <atomic>
#include <cstring>

#include "engine/cpu/fast/ops.h"
#include "engine/cpu/thread_pool.h"

namespace ddpm::cpu::fast {

namespace {

// Elements per task of the memory-bound loops: large enough that a task's
// scheduling cost vanishes, small enough to balance two loaded cores.
constexpr int64_t kGrain = 16384;

bool overlaps(const Tensor& a, const Tensor& b) {
  const char* a0 = static_cast<const char*>(a.data);
  const char* b0 = static_cast<const char*>(b.data);
  return a0 < b0 + b.bytes() && b0 < a0 + a.bytes();
}

}  // namespace

std::vector<GradOut> grad_outputs(std::span<const GradTensor> grads) {
  std::vector<GradOut> out(grads.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    const GradTensor& g = grads[i];
    if (!g.tensor.defined()) continue;
    bool shared = false;
    for (size_t j = 0; j < grads.size(); ++j)
      if (j != i && grads[j].tensor.defined() && overlaps(g.tensor, grads[j].tensor)) shared = true;
    out[i].p = g.tensor.ptr<float>();
    out[i].accumulate = g.accumulate || shared;
    if (shared && !g.accumulate) std::memset(out[i].p, 0, g.tensor.bytes());
  }
  return out;
}

void copy_or_add(const float* src, float* dst, int64_t n, bool accumulate) {
  parallel_for_chunks(n, kGrain, [&](int64_t i0, int64_t i1) {
    if (accumulate)
      for (int64_t i = i0; i < i1; ++i) dst[i] += src[i];
    else
      std::memcpy(dst + i0, src + i0, size_t(i1 - i0) * sizeof(float));
  });
}

void reduce_partials(const float* parts, int64_t count, int64_t stride, int64_t n, float* dst,
                     bool accumulate) {
  if (!dst) return;
  constexpr int64_t kChunk = 4096;
  parallel_for_chunks(n, kChunk, [&](int64_t e0, int64_t e1) {
    float s[kChunk];
    const int64_t m = e1 - e0;
    for (int64_t i = 0; i < m; ++i) s[i] = count > 0 ? parts[e0 + i] : 0.0f;
    for (int64_t j = 1; j < count; ++j) {
      const float* pj = parts + j * stride + e0;
      for (int64_t i = 0; i < m; ++i) s[i] += pj[i];
    }
    float* d = dst + e0;
    if (accumulate)
      for (int64_t i = 0; i < m; ++i) d[i] += s[i];
    else
      std::memcpy(d, s, size_t(m) * sizeof(float));
  });
}

namespace {
std::atomic<uint64_t> runs{0};
}  // namespace

uint64_t fast_runs() {
  return runs.load(std::memory_order_relaxed);
}

void count_fast_run() {
  runs.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace ddpm::cpu::fast
