// The bf16 rows of ddpm_cuda_bench (kernel_bench_bf16.h): per layer shape,
// our bf16 kernel, the vendor's bf16 path and our fp32 kernel, each timed by
// time_on_stream, then our output compared with a reference output.
//
// Inputs are uniform in [-1, 1) rounded to bf16, and the fp32 kernels read
// the same values in fp32, so the fp32 reference sees exactly what the bf16
// kernels see. Every output compared is overwritten by each call (no
// accumulate), so after the timed repeats it holds one call's result; our
// fp32 backward-filter always adds, so its reference is recomputed once into
// a zeroed buffer.
#include "apps/bench/kernel_bench_bf16.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "apps/bench/device_buffer.h"
#include "apps/bench/kernel_timer.h"
#include "kernels/attention.cuh"
#include "kernels/attention_bf16.cuh"
#include "kernels/check.cuh"
#include "kernels/conv2d.cuh"
#include "kernels/conv2d_bf16.cuh"
#include "kernels/gemm.cuh"
#include "kernels/gemm_bf16.cuh"
#include "kernels/vendor_bf16.h"

namespace ddpm::bench {

namespace {

using bf16 = __nv_bfloat16;

// The fp32 engine's convolution (CudaBackend's default): the fp32 column.
constexpr kernels::ConvImpl kFp32Conv = kernels::ConvImpl::simt;

// An output buffer and its element type.
struct Out {
  const DeviceBuffer* buffer = nullptr;  // null: not comparable with ours
  Element element = Element::bf16;
};

std::string fmt_ms(const Measurement& m) {
  if (m.timed()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4f ms", m.ms);
    return buf;
  }
  return m.note.rfind("n/a", 0) == 0 ? m.note : "failed: " + m.note;
}

class Bf16Bench {
 public:
  Bf16Bench(const BenchOptions& o, std::ostream& progress) : o_(o), progress_(progress) {
    DDPM_CUDA_CHECK(cudaStreamCreate(&stream_));
    std::string why;
    if (!kernels::cudnn_bf16_available(&why)) no_cudnn_ = "n/a: cuDNN unavailable (" + why + ")";
    if (!kernels::cublas_bf16_available(&why)) no_cublas_ = "n/a: cuBLAS unavailable (" + why + ")";
  }
  ~Bf16Bench() { cudaStreamDestroy(stream_); }
  Bf16Bench(const Bf16Bench&) = delete;
  Bf16Bench& operator=(const Bf16Bench&) = delete;

  void conv(const ConvLayer& c) {
    const kernels::Conv2dShape s{c.batch,        c.in_h,       c.in_w,     c.in_channels,
                                 c.out_channels, c.kernel_h,   c.kernel_w, c.stride,
                                 c.pad_top,      c.pad_bottom, c.pad_left, c.pad_right};
    const size_t nx = size_t(s.in_pixels() * s.in_channels);
    const size_t ny = size_t(s.out_pixels() * s.out_channels);
    const size_t nw = size_t(s.out_channels * s.gemm_k());
    const DeviceBuffer x = input(nx, 1, Element::bf16), w = input(nw, 2, Element::bf16),
                       dy = input(ny, 5, Element::bf16);
    const DeviceBuffer x32 = input(nx, 1, Element::f32), w32 = input(nw, 2, Element::f32),
                       dy32 = input(ny, 5, Element::f32);
    const DeviceBuffer y(ny * 2), dx(nx * 2), dw(nw * 4);              // ours: dw fp32
    const DeviceBuffer y_ref(ny * 2), dx_ref(nx * 2), dw_ref(nw * 2);  // cuDNN: dw bf16
    const DeviceBuffer y32(ny * 4), dx32(nx * 4), dw32(nw * 4);
    const size_t ws_bytes = kernels::conv2d_bf16_workspace_bytes(s);
    const DeviceBuffer ws(ws_bytes), ws32(kernels::conv2d_workspace_bytes(s, kFp32Conv));

    std::optional<kernels::CudnnConvBf16> cudnn;
    DeviceBuffer cudnn_ws;
    std::string no_vendor = no_cudnn_;
    if (no_vendor.empty()) {
      try {
        cudnn.emplace(s);
        cudnn_ws = DeviceBuffer(cudnn->workspace_bytes());
        progress_ << "  cuDNN bf16 algorithms: " << cudnn->algorithms() << std::endl;
      } catch (const std::exception& e) {
        no_vendor = e.what();
        cudnn.reset();
        cudaGetLastError();
      }
    }
    auto vendor = [&](const std::function<void()>& call) {
      return cudnn ? measure(call) : Measurement{-1, no_vendor};
    };
    const std::string layer = c.describe();
    const double flops = conv_flops(c);
    {
      Bf16Row r = row(LayerKind::conv, layer, "fwd", c.count, flops, "cudnn");
      r.ours = measure([&] {
        kernels::conv2d_bf16_forward(x.as<bf16>(), w.as<bf16>(), nullptr, nullptr, y.as<bf16>(), s,
                                     stream_);
      });
      r.vendor = vendor([&] {
        cudnn->forward(x.as<bf16>(), w.as<bf16>(), y_ref.as<bf16>(), cudnn_ws.get(), stream_);
      });
      r.fp32 = measure([&] {
        kernels::conv2d_forward(x32.as<float>(), w32.as<float>(), nullptr, nullptr, y32.as<float>(),
                                s, kFp32Conv, ws32.get(), stream_);
      });
      check(r, {&y, Element::bf16}, {&y_ref, Element::bf16}, {&y32, Element::f32}, ny);
      add(std::move(r));
    }
    {
      Bf16Row r = row(LayerKind::conv, layer, "bwd_data", c.count_with_input_grad, flops, "cudnn");
      r.ours = measure([&] {
        kernels::conv2d_bf16_backward_data(dy.as<bf16>(), w.as<bf16>(), dx.as<bf16>(), s, false,
                                           stream_);
      });
      r.vendor = vendor([&] {
        cudnn->backward_data(dy.as<bf16>(), w.as<bf16>(), dx_ref.as<bf16>(), cudnn_ws.get(),
                             stream_);
      });
      r.fp32 = measure([&] {
        kernels::conv2d_backward_data(dy32.as<float>(), w32.as<float>(), dx32.as<float>(), s, false,
                                      kFp32Conv, ws32.get(), stream_);
      });
      check(r, {&dx, Element::bf16}, {&dx_ref, Element::bf16}, {&dx32, Element::f32}, nx);
      add(std::move(r));
    }
    {
      Bf16Row r = row(LayerKind::conv, layer, "bwd_filter", c.count, flops, "cudnn");
      r.ours = measure([&] {
        kernels::conv2d_bf16_backward_filter(x.as<bf16>(), dy.as<bf16>(), dw.as<float>(), nullptr,
                                             s, false, ws.get(), ws_bytes, stream_);
      });
      r.vendor = vendor([&] {
        cudnn->backward_filter(x.as<bf16>(), dy.as<bf16>(), dw_ref.as<bf16>(), cudnn_ws.get(),
                               stream_);
      });
      auto fp32_call = [&] {
        kernels::conv2d_backward_filter(x32.as<float>(), dy32.as<float>(), dw32.as<float>(),
                                        nullptr, s, kFp32Conv, ws32.get(), stream_);
      };
      r.fp32 = measure(fp32_call);
      // conv2d_backward_filter adds into dw: one call into zeros for the reference.
      check(r, {&dw, Element::f32}, {&dw_ref, Element::bf16}, {&dw32, Element::f32}, nw, [&] {
        DDPM_CUDA_CHECK(cudaMemsetAsync(dw32.get(), 0, nw * 4, stream_));
        fp32_call();
      });
      add(std::move(r));
    }
  }

  void attention(const AttentionLayer& a) {
    const int64_t channels = a.heads * a.head_dim, rows = a.batch * a.tokens;
    // The engine's layout: q, k, v the column blocks of one [N, T, 3C] projection.
    const kernels::AttentionShape s{a.batch, a.tokens, a.heads, a.head_dim, 3 * channels};
    const size_t n_qkv = size_t(rows * 3 * channels), n_o = size_t(rows * channels);
    const size_t n_lse = size_t(a.batch * a.heads * a.tokens);
    const DeviceBuffer qkv = input(n_qkv, 21, Element::bf16), dout = input(n_o, 26, Element::bf16);
    const DeviceBuffer qkv32 = input(n_qkv, 21, Element::f32),
                       dout32 = input(n_o, 26, Element::f32);
    const DeviceBuffer o(n_o * 2), lse(n_lse * 4), dqkv(n_qkv * 2);
    const DeviceBuffer o32(n_o * 4), lse32(n_lse * 4), dqkv32(n_qkv * 4);
    const DeviceBuffer ws(kernels::attention_bf16_workspace_bytes(s)),
        ws32(kernels::attention_workspace_bytes(s));
    const float scale = float(1 / std::sqrt(double(a.head_dim)));
    const bf16* q = qkv.as<bf16>();
    const float* q32 = qkv32.as<float>();
    bf16* dq = dqkv.as<bf16>();
    float* dq32 = dqkv32.as<float>();
    const std::string layer = a.describe();
    {
      // The vendor column: cuBLAS doing the forward's two matmuls' MACs as
      // two plain GEMMs ([N H T x D] x [D x T], then [N H T x T] x [T x D]),
      // no softmax: a yardstick, not attention, so not a reference.
      Bf16Row r = row(LayerKind::attention, layer, "fwd", a.count, attention_flops(a, false),
                      "cuBLAS 2 GEMMs, same MACs");
      r.ours = measure([&] {
        kernels::attention_bf16_forward(q, q + channels, q + 2 * channels, o.as<bf16>(),
                                        lse.as<float>(), s, scale, stream_);
      });
      if (no_cublas_.empty()) {
        const int64_t m = a.batch * a.heads * a.tokens, t = a.tokens, d = a.head_dim;
        const DeviceBuffer lhs = input(size_t(m * d), 30, Element::bf16),
                           kt = input(size_t(t * d), 31, Element::bf16),
                           vt = input(size_t(t * d), 32, Element::bf16);
        const DeviceBuffer scores(size_t(m * t) * 2), out(size_t(m * d) * 2);
        r.vendor = measure([&] {
          kernels::gemm_cublas_bf16(false, true, m, t, d, lhs.as<bf16>(), kt.as<bf16>(),
                                    scores.as<bf16>(), stream_);
          kernels::gemm_cublas_bf16(false, false, m, d, t, scores.as<bf16>(), vt.as<bf16>(),
                                    out.as<bf16>(), stream_);
        });
      } else {
        r.vendor = {-1, no_cublas_};
      }
      r.fp32 = measure([&] {
        kernels::attention_forward(q32, q32 + channels, q32 + 2 * channels, o32.as<float>(),
                                   lse32.as<float>(), s, scale, stream_);
      });
      check(r, {&o, Element::bf16}, {}, {&o32, Element::f32}, n_o);
      add(std::move(r));
    }
    {
      // Each backward reads its own forward's o and lse (as in training).
      Bf16Row r = row(LayerKind::attention, layer, "bwd", a.count, attention_flops(a, true), "");
      r.ours = measure([&] {
        kernels::attention_bf16_backward(
            q, q + channels, q + 2 * channels, o.as<bf16>(), lse.as<float>(), dout.as<bf16>(), dq,
            dq + channels, dq + 2 * channels, s, scale, false, false, false, ws.get(), stream_);
      });
      r.fp32 = measure([&] {
        kernels::attention_backward(q32, q32 + channels, q32 + 2 * channels, o32.as<float>(),
                                    lse32.as<float>(), dout32.as<float>(), dq32, dq32 + channels,
                                    dq32 + 2 * channels, s, scale, false, false, false, ws32.get(),
                                    stream_);
      });
      if (r.ours.timed() && r.fp32.timed()) {
        // dq, dk and dv each against its own size: the worst of the three.
        const std::vector<float> ours = download(dqkv, n_qkv, Element::bf16),
                                 ref = download(dqkv32, n_qkv, Element::f32);
        std::optional<Agreement> worst;
        for (int64_t block = 0; block < 3; ++block) {
          Agreement part;
          accumulate_agreement(part, ours.data() + block * channels, ref.data() + block * channels,
                               size_t(rows), size_t(channels), size_t(3 * channels));
          worst = worst ? worse(*worst, part) : part;
        }
        r.reference = "ours fp32";
        r.check = worst;
      }
      add(std::move(r));
    }
  }

  void linear(const LinearLayer& l) {
    const int64_t rows = l.rows, in = l.in_features, out = l.out_features;
    const size_t nx = size_t(rows * in), nw = size_t(out * in), ny = size_t(rows * out);
    const DeviceBuffer x = input(nx, 41, Element::bf16), w = input(nw, 42, Element::bf16),
                       dy = input(ny, 45, Element::bf16);
    const DeviceBuffer x32 = input(nx, 41, Element::f32), w32 = input(nw, 42, Element::f32),
                       dy32 = input(ny, 45, Element::f32);
    const DeviceBuffer y(ny * 2), y_ref(ny * 2), y32(ny * 4);
    const DeviceBuffer dx(nx * 2), dx_ref(nx * 2), dx32(nx * 4);
    const DeviceBuffer dw(nw * 4), dw_ref(nw * 4), dw32(nw * 4);  // fp32 weight gradients
    const size_t ws_bytes = std::max({kernels::gemm_bf16_workspace_bytes(rows, out, in),
                                      kernels::gemm_bf16_workspace_bytes(rows, in, out),
                                      kernels::gemm_bf16_workspace_bytes(out, in, rows)});
    const DeviceBuffer ws(ws_bytes);
    const std::string layer = l.describe();
    const double flops = linear_flops(l);
    auto vendor = [&](const std::function<void()>& call) {
      return no_cublas_.empty() ? measure(call) : Measurement{-1, no_cublas_};
    };
    using kernels::GemmImpl;
    {  // y = x W^T
      Bf16Row r = row(LayerKind::linear, layer, "fwd", l.count, flops, "cublas");
      r.ours = measure([&] {
        kernels::gemm_bf16(false, true, rows, out, in, x.as<bf16>(), w.as<bf16>(), nullptr,
                           y.as<bf16>(), false, ws.get(), stream_);
      });
      r.vendor = vendor([&] {
        kernels::gemm_cublas_bf16(false, true, rows, out, in, x.as<bf16>(), w.as<bf16>(),
                                  y_ref.as<bf16>(), stream_);
      });
      r.fp32 = measure([&] {
        kernels::gemm(false, true, rows, out, in, x32.as<float>(), w32.as<float>(), nullptr,
                      y32.as<float>(), false, GemmImpl::simt, stream_);
      });
      check(r, {&y, Element::bf16}, {&y_ref, Element::bf16}, {&y32, Element::f32}, ny);
      add(std::move(r));
    }
    {  // dx = dy W
      Bf16Row r = row(LayerKind::linear, layer, "dx", l.count, flops, "cublas");
      r.ours = measure([&] {
        kernels::gemm_bf16(false, false, rows, in, out, dy.as<bf16>(), w.as<bf16>(), nullptr,
                           dx.as<bf16>(), false, ws.get(), stream_);
      });
      r.vendor = vendor([&] {
        kernels::gemm_cublas_bf16(false, false, rows, in, out, dy.as<bf16>(), w.as<bf16>(),
                                  dx_ref.as<bf16>(), stream_);
      });
      r.fp32 = measure([&] {
        kernels::gemm(false, false, rows, in, out, dy32.as<float>(), w32.as<float>(), nullptr,
                      dx32.as<float>(), false, GemmImpl::simt, stream_);
      });
      check(r, {&dx, Element::bf16}, {&dx_ref, Element::bf16}, {&dx32, Element::f32}, nx);
      add(std::move(r));
    }
    {  // dW = dy^T x (fp32 out)
      Bf16Row r = row(LayerKind::linear, layer, "dW", l.count, flops, "cublas");
      r.ours = measure([&] {
        kernels::gemm_bf16(true, false, out, in, rows, dy.as<bf16>(), x.as<bf16>(), nullptr,
                           dw.as<float>(), false, ws.get(), stream_);
      });
      r.vendor = vendor([&] {
        kernels::gemm_cublas_bf16(true, false, out, in, rows, dy.as<bf16>(), x.as<bf16>(),
                                  dw_ref.as<float>(), stream_);
      });
      r.fp32 = measure([&] {
        kernels::gemm(true, false, out, in, rows, dy32.as<float>(), x32.as<float>(), nullptr,
                      dw32.as<float>(), false, GemmImpl::simt, stream_);
      });
      check(r, {&dw, Element::f32}, {&dw_ref, Element::f32}, {&dw32, Element::f32}, nw);
      add(std::move(r));
    }
  }

  // A layer whose setup failed (an allocation, or every call after a kernel
  // left the context broken): one row saying why, with the layer's uses so
  // that the totals show the gap.
  void failed_layer(LayerKind kind, std::string layer, int uses, const std::string& what) {
    Bf16Row r = row(kind, std::move(layer), "all ops", uses, 0, "");
    r.ours = {-1, what};
    r.fp32 = {-1, what};
    cudaGetLastError();
    add(std::move(r));
  }

  std::vector<Bf16Row> take_rows() { return std::move(rows_); }

 private:
  static DeviceBuffer input(size_t count, uint64_t seed, Element e) {
    return random_buffer(count, seed, e, /*bf16_values=*/true);
  }

  static Bf16Row row(LayerKind kind, std::string layer, std::string op, int uses, double flops,
                     std::string vendor_name) {
    Bf16Row r;
    r.kind = kind;
    r.layer = std::move(layer);
    r.op = std::move(op);
    r.uses = uses;
    r.flops = flops;
    r.vendor_name = std::move(vendor_name);
    return r;
  }

  // The median ms of `launch`, or why there is none. A first call outside the
  // timing surfaces errors with their message.
  Measurement measure(const std::function<void()>& launch) {
    Measurement m;
    try {
      launch();
      DDPM_CUDA_CHECK(cudaStreamSynchronize(stream_));
      m.ms = time_on_stream(launch, o_.warmup, o_.repeats, stream_).median_ms;
      if (!m.timed()) m.note = "no time measured";
    } catch (const std::exception& e) {
      m.ms = -1;
      m.note = e.what();
      cudaGetLastError();  // a launch error is the cell's, not the next call's
    }
    return m;
  }

  // Our output against the vendor's when the vendor ran (and computes the
  // same op: vendor.buffer set), else against our fp32 kernel's;
  // `fp32_reference`, when given, recomputes the fp32 output first.
  void check(Bf16Row& r, Out ours, Out vendor, Out fp32, size_t count,
             const std::function<void()>& fp32_reference = {}) {
    if (!r.ours.timed()) return;
    try {
      Out ref;
      if (vendor.buffer && r.vendor.timed()) {
        ref = vendor;
        r.reference = r.vendor_name;
      } else if (r.fp32.timed()) {
        if (fp32_reference) fp32_reference();
        ref = fp32;
        r.reference = "ours fp32";
      } else {
        return;
      }
      DDPM_CUDA_CHECK(cudaStreamSynchronize(stream_));
      r.check = agreement(download(*ours.buffer, count, ours.element),
                          download(*ref.buffer, count, ref.element));
    } catch (const std::exception& e) {
      r.reference = std::string("(comparison failed: ") + e.what() + ")";
      r.check.reset();
      cudaGetLastError();
    }
  }

  void add(Bf16Row r) {
    progress_ << "  " << r.layer << " " << r.op << ": ours bf16 " << fmt_ms(r.ours);
    if (!r.vendor_name.empty()) progress_ << ", " << r.vendor_name << " " << fmt_ms(r.vendor);
    progress_ << ", ours fp32 " << fmt_ms(r.fp32);
    if (r.check)
      progress_ << (r.check->ok() ? ", ok " : ", MISMATCH ") << r.check->relative() << " vs "
                << r.reference;
    progress_ << std::endl;
    rows_.push_back(std::move(r));
  }

  BenchOptions o_;
  std::ostream& progress_;
  cudaStream_t stream_ = nullptr;
  std::string no_cudnn_, no_cublas_;  // empty: available
  std::vector<Bf16Row> rows_;
};

}  // namespace

const char* bf16_bench_fp32_conv_name() {
  return kernels::conv_impl_name(kFp32Conv);
}

std::vector<Bf16Row> run_bf16_bench(const ModelShapes& shapes, const BenchOptions& options,
                                    std::ostream& progress) {
  Bf16Bench bench(options, progress);
  // Each layer on its own: a failure outside the timed calls (an allocation)
  // costs that layer's rows, not the table.
  auto layer = [&](LayerKind kind, const std::string& name, int uses, auto&& run) {
    const char* word = kind == LayerKind::conv        ? "conv"
                       : kind == LayerKind::attention ? "attention"
                                                      : "linear";
    progress << "bf16 " << word << " " << name << " (x" << uses << ")" << std::endl;
    try {
      run();
    } catch (const std::exception& e) {
      bench.failed_layer(kind, name, uses, e.what());
    }
  };
  for (const ConvLayer& c : shapes.convs)
    layer(LayerKind::conv, c.describe(), c.count, [&] { bench.conv(c); });
  for (const AttentionLayer& a : shapes.attentions)
    layer(LayerKind::attention, a.describe(), a.count, [&] { bench.attention(a); });
  for (const LinearLayer& l : shapes.linears)
    layer(LayerKind::linear, l.describe(), l.count, [&] { bench.linear(l); });
  return bench.take_rows();
}

}  // namespace ddpm::bench
