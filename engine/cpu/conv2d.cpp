// conv2d on the CPU: im2col per image, then one GEMM against the OHWI weight
// (which is already the [O, kh*kw*C] matrix the GEMM wants); the residual, when
// the op has one, is added after the GEMM (y = (bias + conv) + r, the order of
// the unfused conv followed by add).
#include <algorithm>
#include <vector>

#include "engine/cpu/common.h"
#include "engine/cpu/fast/ops.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/thread_pool.h"

namespace ddpm::cpu {

namespace {

struct ConvGeometry {
  int64_t n, h, w, c, ho, wo, o;
  int kh, kw, stride;
  Padding2d pad;
  int64_t k() const { return kh * kw * c; }
  int64_t pixels() const { return ho * wo; }
};

ConvGeometry geometry(const Conv2dParams& p, const Shape& x, const Shape& y) {
  return {x[0],           x[1],       x[2],       x[3],     y[1], y[2],
          p.out_channels, p.kernel_h, p.kernel_w, p.stride, p.pad};
}

// col[pixel, (ky, kx, ci)] = x[iy, ix, ci] or 0 outside the image.
template <typename T>
void im2col(const ConvGeometry& g, const T* x, T* col) {
  parallel_for(g.ho, [&](int64_t oy) {
    for (int64_t ox = 0; ox < g.wo; ++ox) {
      T* row = col + (oy * g.wo + ox) * g.k();
      for (int ky = 0; ky < g.kh; ++ky)
        for (int kx = 0; kx < g.kw; ++kx) {
          const int64_t iy = oy * g.stride + ky - g.pad.top, ix = ox * g.stride + kx - g.pad.left;
          T* dst = row + (ky * g.kw + kx) * g.c;
          if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) {
            for (int64_t ci = 0; ci < g.c; ++ci) dst[ci] = T(0);
          } else {
            const T* src = x + (iy * g.w + ix) * g.c;
            for (int64_t ci = 0; ci < g.c; ++ci) dst[ci] = src[ci];
          }
        }
    }
  });
}

// The adjoint of im2col: dx[iy, ix, ci] += dcol[pixel, (ky, kx, ci)]. Serial:
// overlapping windows write the same input pixel.
template <typename T>
void col2im_add(const ConvGeometry& g, const T* dcol, T* dx) {
  for (int64_t oy = 0; oy < g.ho; ++oy)
    for (int64_t ox = 0; ox < g.wo; ++ox) {
      const T* row = dcol + (oy * g.wo + ox) * g.k();
      for (int ky = 0; ky < g.kh; ++ky)
        for (int kx = 0; kx < g.kw; ++kx) {
          const int64_t iy = oy * g.stride + ky - g.pad.top, ix = ox * g.stride + kx - g.pad.left;
          if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
          const T* src = row + (ky * g.kw + kx) * g.c;
          T* dst = dx + (iy * g.w + ix) * g.c;
          for (int64_t ci = 0; ci < g.c; ++ci) dst[ci] += src[ci];
        }
    }
}

// A 1x1, stride-1, unpadded convolution reads x as the im2col matrix itself.
bool is_pointwise(const ConvGeometry& g) {
  return g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pad.top == 0 && g.pad.bottom == 0 &&
         g.pad.left == 0 && g.pad.right == 0;
}

}  // namespace

// Images are processed in chunks whose im2col matrix stays near 32 MB: one GEMM
// over chunk x pixels rows keeps BLAS efficient (a 28x28 image alone gives a
// GEMM too thin to reach the machine's FLOP rate), without a batch-sized buffer.
int64_t chunk_images(const ConvGeometry& g, size_t elem) {
  const int64_t per_image = g.pixels() * g.k() * int64_t(elem);
  return std::clamp<int64_t>((int64_t(32) << 20) / std::max<int64_t>(per_image, 1), 1, g.n);
}

template <typename T>
void im2col_chunk(const ConvGeometry& g, const T* x, int64_t count, T* col) {
  for (int64_t i = 0; i < count; ++i)
    im2col(g, x + i * g.h * g.w * g.c, col + i * g.pixels() * g.k());
}

void forward(const Conv2dParams& p, const ForwardArgs& a) {
  if (fast::try_fast(p, a, a.inputs[0].dtype)) return;
  dispatch_float(a.inputs[0].dtype, "conv2d", [&]<typename T>() {
    const ConvGeometry g = geometry(p, a.inputs[0].shape, a.outputs[0].shape);
    const T* x = a.inputs[0].ptr<T>();
    const T* w = a.inputs[1].ptr<T>();
    const T* b = p.bias ? a.inputs[2].ptr<T>() : nullptr;
    const T* r = p.residual ? a.inputs.back().ptr<T>() : nullptr;
    T* y = a.outputs[0].ptr<T>();
    const bool pointwise = is_pointwise(g);
    const int64_t chunk = pointwise ? g.n : chunk_images(g, sizeof(T));
    std::vector<T> col(pointwise ? 0 : static_cast<size_t>(chunk * g.pixels() * g.k()));
    for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
      const int64_t count = std::min(chunk, g.n - n0), rows = count * g.pixels();
      const T* xn = x + n0 * g.h * g.w * g.c;
      T* yn = y + n0 * g.pixels() * g.o;
      if (!pointwise) im2col_chunk(g, xn, count, col.data());
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t o = 0; o < g.o; ++o) yn[i * g.o + o] = b ? b[o] : T(0);
      gemm<T>(false, true, int(rows), int(g.o), int(g.k()), T(1), pointwise ? xn : col.data(),
              int(g.k()), w, int(g.k()), T(1), yn, int(g.o));
    }
    if (r)
      parallel_for_chunks(g.n * g.pixels() * g.o, kGrain, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) y[i] += r[i];
      });
  });
}

void backward(const Conv2dParams& p, const BackwardArgs& a) {
  if (fast::try_fast(p, a, a.inputs[1].dtype)) return;
  dispatch_float(a.inputs[1].dtype, "conv2d", [&]<typename T>() {
    const ConvGeometry g = geometry(p, a.inputs[0].shape, a.grad_outputs[0].shape);
    const T* dy = a.grad_outputs[0].ptr<T>();
    T* dx = begin_grad<T>(a.grad_inputs[0]);
    T* dw = begin_grad<T>(a.grad_inputs[1]);
    T* db = p.bias ? begin_grad<T>(a.grad_inputs[2]) : nullptr;
    // The residual's gradient is dy itself (added like every other one here,
    // so a residual that is x itself needs no special case).
    T* dr = p.residual ? begin_grad<T>(a.grad_inputs.back()) : nullptr;
    const T* w = a.inputs[1].ptr<T>();
    const bool pointwise = is_pointwise(g);
    const int64_t chunk = pointwise ? g.n : chunk_images(g, sizeof(T));
    std::vector<T> col(pointwise ? 0 : static_cast<size_t>(chunk * g.pixels() * g.k()));
    if (db)
      for (int64_t i = 0; i < g.n * g.pixels(); ++i)
        for (int64_t o = 0; o < g.o; ++o) db[o] += dy[i * g.o + o];
    for (int64_t n0 = 0; n0 < g.n; n0 += chunk) {
      const int64_t count = std::min(chunk, g.n - n0), rows = count * g.pixels();
      const T* dyn = dy + n0 * g.pixels() * g.o;
      if (dw) {
        // dW[O, K] += dY^T [O, rows] * col [rows, K]
        const T* xn = a.inputs[0].ptr<T>() + n0 * g.h * g.w * g.c;
        if (!pointwise) im2col_chunk(g, xn, count, col.data());
        gemm<T>(true, false, int(g.o), int(g.k()), int(rows), T(1), dyn, int(g.o),
                pointwise ? xn : col.data(), int(g.k()), T(1), dw, int(g.k()));
      }
      if (dx) {
        // dcol [rows, K] = dY [rows, O] * W [O, K], scattered back onto each image.
        T* dxn = dx + n0 * g.h * g.w * g.c;
        if (pointwise) {
          gemm<T>(false, false, int(rows), int(g.k()), int(g.o), T(1), dyn, int(g.o), w, int(g.k()),
                  T(1), dxn, int(g.k()));
        } else {
          gemm<T>(false, false, int(rows), int(g.k()), int(g.o), T(1), dyn, int(g.o), w, int(g.k()),
                  T(0), col.data(), int(g.k()));
          parallel_for(count, [&](int64_t i) {
            col2im_add(g, col.data() + i * g.pixels() * g.k(), dxn + i * g.h * g.w * g.c);
          });
        }
      }
    }
    if (dr)
      parallel_for_chunks(g.n * g.pixels() * g.o, kGrain, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) dr[i] += dy[i];
      });
  });
}

}  // namespace ddpm::cpu
