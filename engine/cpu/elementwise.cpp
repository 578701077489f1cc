// SiLU, add, concat and nearest upsampling on the CPU.
#include <algorithm>
#include <cmath>

#include "engine/cpu/common.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/thread_pool.h"

namespace ddpm::cpu {

void forward(const SiluParams&, const ForwardArgs& a) {
  dispatch_float(a.inputs[0].dtype, "silu", [&]<typename T>() {
    const T* x = a.inputs[0].ptr<T>();
    T* y = a.outputs[0].ptr<T>();
    const int64_t n = a.inputs[0].numel();
    parallel_for_chunks(n, kGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) y[i] = x[i] / (T(1) + std::exp(-x[i]));
    });
  });
}

// d/dx x s(x) = s (1 + x (1 - s)).
void backward(const SiluParams&, const BackwardArgs& a) {
  dispatch_float(a.inputs[0].dtype, "silu", [&]<typename T>() {
    T* dx = begin_grad<T>(a.grad_inputs[0]);
    if (!dx) return;
    const T* x = a.inputs[0].ptr<T>();
    const T* dy = a.grad_outputs[0].ptr<T>();
    const int64_t n = a.inputs[0].numel();
    parallel_for_chunks(n, kGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const T s = T(1) / (T(1) + std::exp(-x[i]));
        dx[i] += dy[i] * s * (T(1) + x[i] * (T(1) - s));
      }
    });
  });
}

void forward(const AddParams& p, const ForwardArgs& a) {
  dispatch_float(a.outputs[0].dtype, "add", [&]<typename T>() {
    const Shape& as = a.inputs[0].shape;
    const T* x = a.inputs[0].ptr<T>();
    const T* b = a.inputs[1].ptr<T>();
    T* y = a.outputs[0].ptr<T>();
    const T scale = T(p.scale);
    const int64_t n = as.numel();
    if (add_is_broadcast(as, a.inputs[1].shape)) {
      const int64_t c = as.back(), per_sample = n / as[0];
      parallel_for_chunks(n, kGrain, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) y[i] = scale * (x[i] + b[(i / per_sample) * c + i % c]);
      });
    } else {
      parallel_for_chunks(n, kGrain, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) y[i] = scale * (x[i] + b[i]);
      });
    }
  });
}

void backward(const AddParams& p, const BackwardArgs& a) {
  dispatch_float(a.grad_outputs[0].dtype, "add", [&]<typename T>() {
    const Shape& as = a.inputs[0].shape;
    const T* dy = a.grad_outputs[0].ptr<T>();
    const T scale = T(p.scale);
    const int64_t n = as.numel();
    // Both destinations are prepared before either is added to: x and b may
    // be one value.
    T* da = begin_grad<T>(a.grad_inputs[0]);
    T* db = begin_grad<T>(a.grad_inputs[1]);
    if (da)
      parallel_for_chunks(n, kGrain, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) da[i] += scale * dy[i];
      });
    if (db) {
      if (add_is_broadcast(as, a.inputs[1].shape)) {
        // Sample s owns db[s, :]; its pixels are added in order.
        const int64_t c = as.back(), per_sample = n / as[0];
        parallel_for(as[0], [&](int64_t s) {
          for (int64_t i = s * per_sample; i < (s + 1) * per_sample; ++i)
            db[s * c + i % c] += scale * dy[i];
        });
      } else {
        parallel_for_chunks(n, kGrain, [&](int64_t i0, int64_t i1) {
          for (int64_t i = i0; i < i1; ++i) db[i] += scale * dy[i];
        });
      }
    }
  });
}

void forward(const ConcatParams&, const ForwardArgs& a) {
  dispatch_float(a.outputs[0].dtype, "concat", [&]<typename T>() {
    const int64_t rows = a.outputs[0].shape.rows(), cy = a.outputs[0].shape.back();
    T* y = a.outputs[0].ptr<T>();
    int64_t c0 = 0;
    for (const Tensor& x : a.inputs) {
      const int64_t cx = x.shape.back();
      const T* xp = x.ptr<T>();
      parallel_for_chunks(rows, std::max<int64_t>(1, kGrain / cy), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = 0; c < cx; ++c) y[r * cy + c0 + c] = xp[r * cx + c];
      });
      c0 += cx;
    }
  });
}

void backward(const ConcatParams&, const BackwardArgs& a) {
  dispatch_float(a.grad_outputs[0].dtype, "concat", [&]<typename T>() {
    const int64_t rows = a.grad_outputs[0].shape.rows(), cy = a.grad_outputs[0].shape.back();
    const T* dy = a.grad_outputs[0].ptr<T>();
    int64_t c0 = 0;
    for (size_t s = 0; s < a.inputs.size(); ++s) {
      const int64_t cx = a.inputs[s].shape.back();
      if (T* dx = begin_grad<T>(a.grad_inputs[s]))
        parallel_for_chunks(rows, std::max<int64_t>(1, kGrain / cy), [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r)
            for (int64_t c = 0; c < cx; ++c) dx[r * cx + c] += dy[r * cy + c0 + c];
        });
      c0 += cx;
    }
  });
}

void forward(const Upsample2xParams&, const ForwardArgs& a) {
  dispatch_float(a.outputs[0].dtype, "upsample_nearest2x", [&]<typename T>() {
    const Shape& xs = a.inputs[0].shape;
    const int64_t n = xs[0], h = xs[1], w = xs[2], c = xs[3];
    const T* x = a.inputs[0].ptr<T>();
    T* y = a.outputs[0].ptr<T>();
    parallel_for(n * 2 * h, [&](int64_t row) {
      const int64_t b = row / (2 * h), oy = row % (2 * h);
      for (int64_t ox = 0; ox < 2 * w; ++ox)
        for (int64_t ci = 0; ci < c; ++ci)
          y[((b * 2 * h + oy) * 2 * w + ox) * c + ci] = x[((b * h + oy / 2) * w + ox / 2) * c + ci];
    });
  });
}

void backward(const Upsample2xParams&, const BackwardArgs& a) {
  dispatch_float(a.grad_outputs[0].dtype, "upsample_nearest2x", [&]<typename T>() {
    T* dx = begin_grad<T>(a.grad_inputs[0]);
    if (!dx) return;
    const Shape& xs = a.inputs[0].shape;
    const int64_t n = xs[0], h = xs[1], w = xs[2], c = xs[3];
    const T* dy = a.grad_outputs[0].ptr<T>();
    // Input row (b, iy) owns its dx row; its four sources are added in the
    // order of the output's rows and columns.
    parallel_for(n * h, [&](int64_t row) {
      const int64_t b = row / h, iy = row % h;
      for (int64_t oy = 2 * iy; oy < 2 * iy + 2; ++oy)
        for (int64_t ox = 0; ox < 2 * w; ++ox)
          for (int64_t ci = 0; ci < c; ++ci)
            dx[((b * h + iy) * w + ox / 2) * c + ci] += dy[((b * 2 * h + oy) * 2 * w + ox) * c + ci];
    });
  });
}

}  // namespace ddpm::cpu
