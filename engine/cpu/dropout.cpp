// Dropout on the CPU. Element i keeps when its Philox uniform is >= p; the
// draw is keyed on (seed; i/4, salt, step) so forward and backward, and the
// CUDA kernel, agree on the mask without storing it.
#include "engine/cpu/common.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/thread_pool.h"
#include "engine/random.h"

namespace ddpm::cpu {

namespace {

bool keep(const DropoutParams& p, const RunContext& ctx, int64_t i) {
  const auto block = static_cast<uint64_t>(i) / 4;
  const PhiloxBlock r =
      philox4x32_10(PhiloxBlock{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                                 p.salt, static_cast<uint32_t>(ctx.step)}},
                    static_cast<uint32_t>(ctx.seed), static_cast<uint32_t>(ctx.seed >> 32));
  return uniform_from_bits(r.v[i % 4]) >= p.p;
}

bool active(const DropoutParams& p, const RunContext& ctx) {
  return ctx.training && p.p > 0;
}

}  // namespace

void forward(const DropoutParams& p, const ForwardArgs& a) {
  dispatch_float(a.outputs[0].dtype, "dropout", [&]<typename T>() {
    const T* x = a.inputs[0].ptr<T>();
    T* y = a.outputs[0].ptr<T>();
    const int64_t n = a.inputs[0].numel();
    const bool on = active(p, a.ctx);
    const T inv_keep = T(1.0 / (1.0 - p.p));
    parallel_for_chunks(n, kGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        y[i] = !on ? x[i] : keep(p, a.ctx, i) ? x[i] * inv_keep : T(0);
    });
  });
}

void backward(const DropoutParams& p, const BackwardArgs& a) {
  dispatch_float(a.grad_outputs[0].dtype, "dropout", [&]<typename T>() {
    T* dx = begin_grad<T>(a.grad_inputs[0]);
    if (!dx) return;
    const T* dy = a.grad_outputs[0].ptr<T>();
    const int64_t n = a.grad_outputs[0].numel();
    const bool on = active(p, a.ctx);
    const T inv_keep = T(1.0 / (1.0 - p.p));
    parallel_for_chunks(n, kGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        dx[i] += !on ? dy[i] : keep(p, a.ctx, i) ? dy[i] * inv_keep : T(0);
    });
  });
}

}  // namespace ddpm::cpu
