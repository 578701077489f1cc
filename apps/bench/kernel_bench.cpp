#include "apps/bench/kernel_bench.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "apps/bench/device_buffer.h"
#include "apps/bench/kernel_bench_bf16.h"
#include "apps/bench/kernel_timer.h"
#include "kernels/attention.cuh"
#include "kernels/check.cuh"
#include "kernels/conv2d.cuh"
#include "kernels/gemm.cuh"
#include "kernels/reduce.cuh"

namespace ddpm::bench {

namespace {

// fp32 device memory of random values (device_buffer.h: uniform in [-1, 1)).
class Buffer {
 public:
  explicit Buffer(size_t floats, uint64_t seed = 0)
      : b_(random_buffer(floats, seed, Element::f32, /*bf16_values=*/false)) {}
  float* get() const { return b_.as<float>(); }

 private:
  DeviceBuffer b_;
};

using Workspace = DeviceBuffer;

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  return buf;
}

// One timed (layer, op, implementation); ms < 0 with `error` when it failed.
struct Result {
  Result(std::string layer_, std::string op_, std::string impl_, int uses_, double macs_)
      : layer(std::move(layer_)),
        op(std::move(op_)),
        impl(std::move(impl_)),
        uses(uses_),
        macs(macs_) {}
  std::string layer, op, impl;
  int uses = 0;
  double macs = 0;
  double ms = -1;
  std::string error;
  double tflops() const { return ms > 0 ? 2 * macs / (ms * 1e9) : 0; }
};

class Bench {
 public:
  Bench(const BenchOptions& o, std::ostream& progress) : o_(o), progress_(progress) {
    DDPM_CUDA_CHECK(cudaStreamCreate(&stream_));
  }
  ~Bench() { cudaStreamDestroy(stream_); }

  void time(Result r, const std::function<void()>& launch) {
    try {
      launch();  // a first call outside timing surfaces errors with their message
      DDPM_CUDA_CHECK(cudaStreamSynchronize(stream_));
      r.ms = time_on_stream(launch, o_.warmup, o_.repeats, stream_).median_ms;
    } catch (const std::exception& e) {
      r.error = e.what();
      cudaGetLastError();
    }
    progress_ << "  " << r.layer << " " << r.op << " " << r.impl << ": "
              << (r.ms > 0 ? fmt("%.4f ms", r.ms) + fmt(", %.1f TFLOP/s", r.tflops())
                           : "failed: " + r.error)
              << std::endl;
    results_.push_back(std::move(r));
  }

  void conv(const ConvLayer& c) {
    kernels::Conv2dShape s{c.batch,        c.in_h,       c.in_w,     c.in_channels,
                           c.out_channels, c.kernel_h,   c.kernel_w, c.stride,
                           c.pad_top,      c.pad_bottom, c.pad_left, c.pad_right};
    const size_t nx = size_t(s.in_pixels() * s.in_channels);
    const size_t ny = size_t(s.out_pixels() * s.out_channels);
    const size_t nw = size_t(s.out_channels * s.gemm_k());
    Buffer x(nx, 1), w(nw, 2), bias(size_t(s.out_channels), 3), y(ny, 4), dy(ny, 5), dx(nx, 6),
        dw(nw, 7), db(size_t(s.out_channels), 8);
    const std::string name = c.describe();
    for (const std::string& impl_name : o_.conv_impls) {
      const kernels::ConvImpl impl = kernels::parse_conv_impl(impl_name);
      std::string why;
      if (!kernels::conv_impl_available(impl, &why)) {
        progress_ << "  " << impl_name << " unavailable: " << why << std::endl;
        continue;
      }
      std::optional<Workspace> ws;
      try {
        ws.emplace(kernels::conv2d_workspace_bytes(s, impl));
      } catch (const std::exception& e) {
        Result failed(name, "fwd", impl_name, c.count, double(c.macs()));
        failed.error = e.what();
        results_.push_back(std::move(failed));
        continue;
      }
      void* wsp = ws->get();
      const float* biasp = c.bias ? bias.get() : nullptr;
      time({name, "fwd", impl_name, c.count, double(c.macs())}, [&] {
        kernels::conv2d_forward(x.get(), w.get(), biasp, nullptr, y.get(), s, impl, wsp, stream_);
      });
      time({name, "bwd_data", impl_name, c.count_with_input_grad, double(c.macs())}, [&] {
        kernels::conv2d_backward_data(dy.get(), w.get(), dx.get(), s, false, impl, wsp, stream_);
      });
      time({name, "bwd_filter", impl_name, c.count, double(c.macs())}, [&] {
        kernels::conv2d_backward_filter(x.get(), dy.get(), dw.get(), c.bias ? db.get() : nullptr, s,
                                        impl, wsp, stream_);
      });
    }
  }

  void attention(const AttentionLayer& a) {
    const kernels::AttentionShape s{a.batch, a.tokens, a.heads, a.head_dim};
    const size_t n = size_t(a.batch * a.tokens * a.heads * a.head_dim);
    const size_t rows = size_t(a.batch * a.heads * a.tokens);
    Buffer q(n, 21), k(n, 22), v(n, 23), o(n, 24), lse(rows, 25), dout(n, 26), dq(n, 27), dk(n, 28),
        dv(n, 29);
    const float scale = float(1 / std::sqrt(double(a.head_dim)));
    const std::string name = "attention " + a.describe();
    time({name, "fwd", "ours (fused)", a.count, double(a.macs())}, [&] {
      kernels::attention_forward(q.get(), k.get(), v.get(), o.get(), lse.get(), s, scale, stream_);
    });
    {
      Workspace ws(kernels::attention_workspace_bytes(s));
      // Backward: dS = P (dP - D) and four matmuls, 2x the forward's MACs.
      time({name, "bwd", "ours (fused)", a.count, 2.0 * double(a.macs())}, [&] {
        kernels::attention_backward(q.get(), k.get(), v.get(), o.get(), lse.get(), dout.get(),
                                    dq.get(), dk.get(), dv.get(), s, scale, false, false, false,
                                    ws.get(), stream_);
      });
    }
    // The yardstick: cuBLAS doing the forward's two matmuls' MACs as two plain
    // GEMMs ([rows x D] x [D x T], [rows x T] x [T x D]), no softmax, no batching.
    if (kernels::gemm_impl_available(kernels::GemmImpl::cublas)) {
      const int64_t m = a.batch * a.heads * a.tokens, t = a.tokens, d = a.head_dim;
      Buffer scores(size_t(m * t), 30), kt(size_t(t * d), 31), vt(size_t(t * d), 32);
      time({name, "fwd", "cublas 2 GEMMs, same MACs", a.count, double(a.macs())}, [&] {
        kernels::gemm(false, true, m, t, d, q.get(), kt.get(), nullptr, scores.get(), false,
                      kernels::GemmImpl::cublas, stream_);
        kernels::gemm(false, false, m, d, t, scores.get(), vt.get(), nullptr, o.get(), false,
                      kernels::GemmImpl::cublas, stream_);
      });
    }
  }

  void linear(const LinearLayer& l) {
    Buffer x(size_t(l.rows * l.in_features), 41), w(size_t(l.out_features * l.in_features), 42),
        b(size_t(l.out_features), 43), y(size_t(l.rows * l.out_features), 44);
    const std::string name = "linear " + l.describe();
    for (kernels::GemmImpl impl : {kernels::GemmImpl::simt, kernels::GemmImpl::cublas}) {
      if (!kernels::gemm_impl_available(impl)) continue;
      time({name, "fwd", kernels::gemm_impl_name(impl), l.count, double(l.macs())}, [&] {
        kernels::gemm(false, true, l.rows, l.out_features, l.in_features, x.get(), w.get(),
                      l.bias ? b.get() : nullptr, y.get(), false, impl, stream_);
      });
    }
  }

  const std::vector<Result>& results() const { return results_; }

 private:
  BenchOptions o_;
  std::ostream& progress_;
  cudaStream_t stream_ = nullptr;
  std::vector<Result> results_;
};

// The library result of the same layer and op, for the ratio column.
const Result* baseline_of(const std::vector<Result>& all, const Result& r) {
  for (const Result& b : all)
    if (b.layer == r.layer && b.op == r.op && b.ms > 0 &&
        (b.impl == "cudnn" || b.impl == "cublas" || b.impl.rfind("cublas", 0) == 0))
      return &b;
  return nullptr;
}

std::string render(const std::vector<Result>& all, const BenchOptions& o, const std::string& card,
                   const std::vector<ConvLayer>& convs) {
  std::ostringstream md;
  md << "Kernel benchmark: " << card << ", " << now_utc() << ", " << o.model << " at batch "
     << o.batch << "; `ddpm_cuda_bench --batch " << o.batch << " --warmup " << o.warmup
     << " --repeats " << o.repeats << "`. Median of " << o.repeats
     << " CUDA-event timings per row. TFLOP/s counts 2 FLOP per multiply-add of the layer's "
        "math (backward-data of a stride-2 conv skips no zeros in this count). \"vs lib\" = "
        "library time / our time (above 1: ours is faster); the library is cuDNN for "
        "convolutions (fp32, FMA math: no TF32) and cuBLAS for GEMMs (fp32, no TF32).\n\n";
  md << "| layer | uses | op | implementation | ms | TFLOP/s | vs lib |\n";
  md << "| --- | ---: | --- | --- | ---: | ---: | ---: |\n";
  for (const Result& r : all) {
    md << "| " << r.layer << " | " << r.uses << " | " << r.op << " | " << r.impl << " | ";
    if (r.ms <= 0) {
      md << "failed: " << r.error << " | | |\n";
      continue;
    }
    const Result* b = baseline_of(all, r);
    md << fmt("%.4f", r.ms) << " | " << fmt("%.1f", r.tflops()) << " | "
       << (b && b != &r ? fmt("%.2f", b->ms / r.ms) : std::string("")) << " |\n";
  }
  // Whole-model convolution time per implementation: one training step runs
  // every conv's forward, backward-filter, and backward-data where the input
  // needs a gradient; one sampling step runs the forwards.
  std::map<std::string, std::pair<double, double>> totals;  // impl -> (train ms, sample ms)
  std::map<std::string, int> timed;
  for (const Result& r : all) {
    if (r.ms <= 0 || r.layer.rfind("attention", 0) == 0 || r.layer.rfind("linear", 0) == 0)
      continue;
    for (const ConvLayer& c : convs)
      if (c.describe() == r.layer) {
        const int uses = r.op == "bwd_data" ? c.count_with_input_grad : c.count;
        totals[r.impl].first += uses * r.ms;
        if (r.op == "fwd") totals[r.impl].second += uses * r.ms;
        ++timed[r.impl];
      }
  }
  md << "\nAll " << convs.size() << " conv shapes x their uses:\n\n"
     << "| implementation | conv ms per training step | conv-only train img/s | conv ms per "
        "sampling step | conv-only 1000-step sample img/s |\n| --- | ---: | ---: | ---: | ---: |\n";
  for (const auto& [impl, t] : totals) {
    if (timed[impl] != int(3 * convs.size())) {
      md << "| " << impl << " | (some shapes failed) | | | |\n";
      continue;
    }
    md << "| " << impl << " | " << fmt("%.2f", t.first) << " | "
       << fmt("%.0f", double(o.batch) / (t.first * 1e-3)) << " | " << fmt("%.2f", t.second) << " | "
       << fmt("%.2f", double(o.batch) / (t.second * 1e-3 * 1000)) << " |\n";
  }
  return md.str();
}

}  // namespace

KernelBenchResult run_kernel_bench(const ModelShapes& shapes, const BenchOptions& options,
                                   std::ostream& progress) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    cudaGetLastError();
    throw std::runtime_error(
        "no CUDA device: ddpm_cuda_bench times GPU kernels (--list works without one)");
  }
  cudaDeviceProp prop{};
  DDPM_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const std::string card = prop.name;
  progress << "ddpm_cuda_bench: " << card << ", " << options.model << ", batch " << options.batch
           << std::endl;
  Bench bench(options, progress);
  for (const ConvLayer& c : shapes.convs) {
    progress << "conv " << c.describe() << " (x" << c.count << ")" << std::endl;
    bench.conv(c);
  }
  for (const AttentionLayer& a : shapes.attentions) bench.attention(a);
  for (const LinearLayer& l : shapes.linears) bench.linear(l);
  KernelBenchResult result;
  result.table = render(bench.results(), options, card, shapes.convs);
  if (options.bf16) {
    const std::vector<Bf16Row> rows = run_bf16_bench(shapes, options, progress);
    result.table += render_bf16_section(rows, options.batch, options.warmup, options.repeats,
                                        bf16_bench_fp32_conv_name());
    result.mismatches = count_mismatches(rows);
    result.failures = count_failures(rows);
  }
  progress << "\n" << result.table;
  return result;
}

}  // namespace ddpm::bench
