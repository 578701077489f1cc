// linear on the CPU: y [R, out] = x [R, in] W^T + b (+ r), R = all leading
// dims. A weight in P parts is P GEMMs, each writing its column block of y
// (leading dimension out), so the parts need not be adjacent in memory here.
// The residual is added after the GEMM: y = (b + x W^T) + r, the order of the
// unfused linear followed by add.
#include <vector>

#include "engine/cpu/common.h"
#include "engine/cpu/fast/ops.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/ops.h"

namespace ddpm::cpu {

void forward(const LinearParams& p, const ForwardArgs& a) {
  if (fast::try_fast(p, a, a.inputs[0].dtype)) return;
  dispatch_float(a.inputs[0].dtype, "linear", [&]<typename T>() {
    const Shape& xs = a.inputs[0].shape;
    const int64_t rows = xs.rows(), in = xs.back(), out = p.out_features;
    const int64_t part_out = out / p.weight_parts;
    T* y = a.outputs[0].ptr<T>();
    for (int64_t part = 0; part < p.weight_parts; ++part) {
      const T* b = p.bias ? a.inputs[linear_bias_slot(p, part)].ptr<T>() : nullptr;
      T* yp = y + part * part_out;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t o = 0; o < part_out; ++o) yp[r * out + o] = b ? b[o] : T(0);
      gemm<T>(false, true, int(rows), int(part_out), int(in), T(1), a.inputs[0].ptr<T>(), int(in),
              a.inputs[linear_weight_slot(p, part)].ptr<T>(), int(in), T(1), yp, int(out));
    }
    if (p.residual) {
      const T* res = a.inputs.back().ptr<T>();
      for (int64_t i = 0; i < rows * out; ++i) y[i] += res[i];
    }
  });
}

// dX += sum_parts dY_part W_part; dW_part += dY_part^T X; db_part += column
// sums of dY_part; dr += dY. Every destination is prepared (an overwritten one
// zeroed) before anything is added, so a value feeding two slots gets both
// contributions.
void backward(const LinearParams& p, const BackwardArgs& a) {
  if (fast::try_fast(p, a, a.inputs[0].dtype)) return;
  dispatch_float(a.inputs[0].dtype, "linear", [&]<typename T>() {
    const Shape& xs = a.inputs[0].shape;
    const int64_t rows = xs.rows(), in = xs.back(), out = p.out_features;
    const int64_t part_out = out / p.weight_parts;
    const T* dy = a.grad_outputs[0].ptr<T>();
    std::vector<T*> grads;
    for (const GradTensor& g : a.grad_inputs) grads.push_back(begin_grad<T>(g));
    T* dx = grads[0];
    for (int64_t part = 0; part < p.weight_parts; ++part) {
      const T* dyp = dy + part * part_out;
      if (dx)
        gemm<T>(false, false, int(rows), int(in), int(part_out), T(1), dyp, int(out),
                a.inputs[linear_weight_slot(p, part)].ptr<T>(), int(in), T(1), dx, int(in));
      if (T* dw = grads[linear_weight_slot(p, part)])
        gemm<T>(true, false, int(part_out), int(in), int(rows), T(1), dyp, int(out),
                a.inputs[0].ptr<T>(), int(in), T(1), dw, int(in));
      if (T* db = p.bias ? grads[linear_bias_slot(p, part)] : nullptr)
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t o = 0; o < part_out; ++o) db[o] += dyp[r * out + o];
    }
    if (T* dr = p.residual ? grads.back() : nullptr)
      for (int64_t i = 0; i < rows * out; ++i) dr[i] += dy[i];
  });
}

}  // namespace ddpm::cpu
