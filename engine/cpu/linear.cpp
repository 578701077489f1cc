// linear on the CPU: y [R, out] = x [R, in] W^T + b, R = all leading dims.
#include "engine/cpu/common.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/ops.h"

namespace ddpm::cpu {

void forward(const LinearParams& p, const ForwardArgs& a) {
  dispatch_float(a.inputs[0].dtype, "linear", [&]<typename T>() {
    const Shape& xs = a.inputs[0].shape;
    const int64_t rows = xs.rows(), in = xs.back(), out = p.out_features;
    const T* b = p.bias ? a.inputs[2].ptr<T>() : nullptr;
    T* y = a.outputs[0].ptr<T>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < out; ++o) y[r * out + o] = b ? b[o] : T(0);
    gemm<T>(false, true, int(rows), int(out), int(in), T(1), a.inputs[0].ptr<T>(), int(in),
            a.inputs[1].ptr<T>(), int(in), T(1), y, int(out));
  });
}

void backward(const LinearParams& p, const BackwardArgs& a) {
  dispatch_float(a.inputs[0].dtype, "linear", [&]<typename T>() {
    const Shape& xs = a.inputs[0].shape;
    const int64_t rows = xs.rows(), in = xs.back(), out = p.out_features;
    const T* dy = a.grad_outputs[0].ptr<T>();
    if (T* dx = begin_grad<T>(a.grad_inputs[0]))  // dX += dY W
      gemm<T>(false, false, int(rows), int(in), int(out), T(1), dy, int(out), a.inputs[1].ptr<T>(),
              int(in), T(1), dx, int(in));
    if (T* dw = begin_grad<T>(a.grad_inputs[1]))  // dW += dY^T X
      gemm<T>(true, false, int(out), int(in), int(rows), T(1), dy, int(out), a.inputs[0].ptr<T>(),
              int(in), T(1), dw, int(in));
    if (T* db = p.bias ? begin_grad<T>(a.grad_inputs[2]) : nullptr)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t o = 0; o < out; ++o) db[o] += dy[r * out + o];
  });
}

}  // namespace ddpm::cpu
