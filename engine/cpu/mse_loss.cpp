// Mean squared error on the CPU, summed in double: one partial per fixed
// chunk of elements, the partials added in chunk order, so the loss does not
// depend on the number of threads.
#include <vector>

#include "engine/cpu/common.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/thread_pool.h"

namespace ddpm::cpu {

void forward(const MseLossParams&, const ForwardArgs& a) {
  dispatch_float(a.inputs[0].dtype, "mse_loss", [&]<typename T>() {
    const T* x = a.inputs[0].ptr<T>();
    const T* t = a.inputs[1].ptr<T>();
    const int64_t n = a.inputs[0].numel();
    std::vector<double> parts(static_cast<size_t>((n + kGrain - 1) / kGrain));
    parallel_for_chunks(n, kGrain, [&](int64_t i0, int64_t i1) {
      double s = 0;
      for (int64_t i = i0; i < i1; ++i) {
        const double d = double(x[i]) - double(t[i]);
        s += d * d;
      }
      parts[static_cast<size_t>(i0 / kGrain)] = s;
    });
    double sum = 0;
    for (double s : parts) sum += s;
    a.outputs[0].ptr<T>()[0] = T(sum / double(n));
  });
}

// d/dpred = 2 (pred - target) / n, d/dtarget = its negative.
void backward(const MseLossParams&, const BackwardArgs& a) {
  dispatch_float(a.inputs[0].dtype, "mse_loss", [&]<typename T>() {
    const T* x = a.inputs[0].ptr<T>();
    const T* t = a.inputs[1].ptr<T>();
    const int64_t n = a.inputs[0].numel();
    const T g = a.grad_outputs[0].ptr<T>()[0] * T(2) / T(n);
    T* dx = begin_grad<T>(a.grad_inputs[0]);
    T* dt = begin_grad<T>(a.grad_inputs[1]);
    parallel_for_chunks(n, kGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const T d = g * (x[i] - t[i]);
        if (dx) dx[i] += d;
        if (dt) dt[i] -= d;
      }
    });
  });
}

}  // namespace ddpm::cpu
