// Mean squared error on the CPU, summed in double.
#include "engine/cpu/common.h"
#include "engine/cpu/ops.h"

namespace ddpm::cpu {

void forward(const MseLossParams&, const ForwardArgs& a) {
  dispatch_float(a.inputs[0].dtype, "mse_loss", [&]<typename T>() {
    const T* x = a.inputs[0].ptr<T>();
    const T* t = a.inputs[1].ptr<T>();
    const int64_t n = a.inputs[0].numel();
    double sum = 0;
#pragma omp parallel for reduction(+ : sum)
    for (int64_t i = 0; i < n; ++i) {
      const double d = double(x[i]) - double(t[i]);
      sum += d * d;
    }
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
    for (int64_t i = 0; i < n; ++i) {
      const T d = g * (x[i] - t[i]);
      if (dx) dx[i] += d;
      if (dt) dt[i] -= d;
    }
  });
}

}  // namespace ddpm::cpu
