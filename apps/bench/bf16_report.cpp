// The bf16 rows' FLOPs, checks and table (bf16_report.h).
#include "apps/bench/bf16_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace ddpm::bench {

double conv_flops(const ConvLayer& c) {
  return 2.0 * double(c.macs());
}

double linear_flops(const LinearLayer& l) {
  return 2.0 * double(l.macs());
}

double attention_flops(const AttentionLayer& a, bool backward) {
  // AttentionLayer::macs() is the forward's two matmuls: 2 N H T^2 D.
  return (backward ? 2.0 : 1.0) * 2.0 * double(a.macs());
}

double Agreement::relative() const {
  if (max_ref > 0) return max_diff / max_ref;
  return max_diff > 0 ? std::numeric_limits<double>::infinity() : 0.0;
}

bool Agreement::ok() const {
  return !nonfinite && compared > 0 && relative() <= kBf16AgreementBound;
}

void accumulate_agreement(Agreement& a, const float* ours, const float* ref, size_t rows,
                          size_t width, size_t stride) {
  if (rows > 0 && width > stride)
    throw std::invalid_argument("accumulate_agreement: width " + std::to_string(width) +
                                " exceeds the row stride " + std::to_string(stride));
  for (size_t r = 0; r < rows; ++r)
    for (size_t j = 0; j < width; ++j) {
      const double o = ours[r * stride + j], f = ref[r * stride + j];
      if (!std::isfinite(o) || !std::isfinite(f)) {
        a.nonfinite = true;
        continue;
      }
      a.max_diff = std::max(a.max_diff, std::abs(o - f));
      a.max_ref = std::max(a.max_ref, std::abs(f));
    }
  a.compared += rows * width;
}

Agreement agreement(const std::vector<float>& ours, const std::vector<float>& ref) {
  if (ours.size() != ref.size())
    throw std::invalid_argument("agreement: " + std::to_string(ours.size()) + " values against " +
                                std::to_string(ref.size()));
  Agreement a;
  accumulate_agreement(a, ours.data(), ref.data(), 1, ours.size(), ours.size());
  return a;
}

Agreement worse(const Agreement& a, const Agreement& b) {
  if (a.ok() != b.ok()) return a.ok() ? b : a;
  if (a.nonfinite != b.nonfinite) return a.nonfinite ? a : b;
  return a.relative() >= b.relative() ? a : b;
}

int count_mismatches(const std::vector<Bf16Row>& rows) {
  return int(
      std::count_if(rows.begin(), rows.end(), [](const Bf16Row& r) { return r.mismatch(); }));
}

int count_failures(const std::vector<Bf16Row>& rows) {
  return int(
      std::count_if(rows.begin(), rows.end(), [](const Bf16Row& r) { return !r.ours.timed(); }));
}

namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// A table cell may not hold '|' or a newline; errors can be long.
std::string cell_text(std::string s, size_t max_chars = 80) {
  for (char& ch : s)
    if (ch == '|' || ch == '\n' || ch == '\r') ch = ' ';
  if (s.size() > max_chars) s = s.substr(0, max_chars - 3) + "...";
  return s;
}

std::string time_cell(const Measurement& m) {
  if (m.timed()) return fmt("%.4f", m.ms);
  if (m.note.rfind("n/a", 0) == 0) return "n/a";
  return "failed: " + cell_text(m.note);
}

std::string check_cell(const Bf16Row& r) {
  if (!r.check) return r.reference.empty() ? "no reference" : "not compared";
  const Agreement& a = *r.check;
  const std::string vs = " vs " + r.reference;
  if (a.nonfinite) return "**MISMATCH** (non-finite)" + vs;
  if (!a.ok()) return "**MISMATCH** " + fmt("%.1e", a.relative()) + vs;
  return "ok " + fmt("%.1e", a.relative()) + vs;
}

const char* kind_name(LayerKind k) {
  return k == LayerKind::conv ? "" : k == LayerKind::attention ? "attention " : "linear ";
}

}  // namespace

std::string render_bf16_section(const std::vector<Bf16Row>& rows, int64_t batch, int warmup,
                                int repeats, const std::string& fp32_conv) {
  std::ostringstream md;
  md << "\n### bf16 (issue 11): our bf16 tensor-core kernels against cuDNN / cuBLAS in bf16\n\n"
     << "Batch " << batch << ", median of " << repeats << " CUDA-event timings after " << warmup
     << " warm-up calls. bf16 tensors in memory and fp32 accumulation on every side: ours "
        "(kernels/conv2d_bf16.cuh, gemm_bf16.cuh, attention_bf16.cuh), cuDNN's BFLOAT16 "
        "configuration (NHWC, fp32 compute, tensor-op math, the heuristic's first supported "
        "algorithm, set up once per shape) and cublasGemmEx (CUDA_R_16BF, CUBLAS_COMPUTE_32F). "
        "The op alone: no bias, residual or bias gradient on either side; outputs overwritten. "
        "Weight gradients are fp32 in ours (master gradients), bf16 in cuDNN's. Attention runs "
        "on the packed q|k|v projection output the engine uses; its vendor column is a "
        "yardstick (cuBLAS doing the forward's two matmuls' MACs as two plain GEMMs), n/a for "
        "the backward. \"ours fp32\" is our fp32 kernel on the same shape (convolution: "
     << fp32_conv
     << ", the fp32 engine's default; GEMM: simt; attention: the fp32 fused kernel). "
        "ours/vendor = our bf16 ms / the vendor's (below 1: ours is faster). TFLOP/s: ours "
        "bf16, 2 FLOP per multiply-add (convolution 2 N Ho Wo O R S C for each op; linear 2 "
        "rows in out; attention forward 4 N H T^2 D, backward twice that). Check: our bf16 "
        "output against the vendor's (else against our fp32 kernel on the same bf16-valued "
        "inputs), passing when max |ours - ref| <= 2^-6 max |ref| (both round to bf16 and "
        "accumulate in fp32 in different orders: apps/bench/bf16_report.h derives the bound); "
        "a failing check is marked in bold, and the benchmark then exits non-zero (as it does "
        "when one of our bf16 kernels fails).\n\n";
  md << "| layer | uses | op | ours bf16 ms | vendor | vendor ms | ours fp32 ms | ours/vendor | "
        "ours TFLOP/s | check |\n";
  md << "| --- | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | --- |\n";
  for (const Bf16Row& r : rows) {
    md << "| " << kind_name(r.kind) << r.layer << " | " << r.uses << " | " << r.op << " | "
       << time_cell(r.ours) << " | " << (r.vendor_name.empty() ? "-" : r.vendor_name) << " | "
       << (r.vendor_name.empty() ? "n/a" : time_cell(r.vendor)) << " | " << time_cell(r.fp32)
       << " | " << (r.ours.timed() && r.vendor.timed() ? fmt("%.2f", r.ours.ms / r.vendor.ms) : "")
       << " | " << (r.ours.timed() ? fmt("%.1f", r.flops / (r.ours.ms * 1e9)) : "") << " | "
       << check_cell(r) << " |\n";
  }
  // The convolutions over their uses: a training step runs every conv's
  // forward and backward-filter, and the backward-data where the input needs
  // a gradient (the row's uses say how often); a sampling step the forwards.
  struct Total {
    double train = 0, sample = 0;
    bool complete = true;
  };
  const char* names[3] = {"ours bf16", "cuDNN bf16", nullptr};
  const std::string fp32_name = "ours fp32 (" + fp32_conv + ")";
  names[2] = fp32_name.c_str();
  Total totals[3];
  int conv_rows = 0;
  for (const Bf16Row& r : rows) {
    if (r.kind != LayerKind::conv) continue;
    ++conv_rows;
    const Measurement* m[3] = {&r.ours, &r.vendor, &r.fp32};
    for (int i = 0; i < 3; ++i) {
      if (!m[i]->timed()) {
        totals[i].complete = totals[i].complete && r.uses == 0;
        continue;
      }
      totals[i].train += r.uses * m[i]->ms;
      if (r.op == "fwd") totals[i].sample += r.uses * m[i]->ms;
    }
  }
  if (conv_rows > 0) {
    md << "\nbf16: all convolutions x their uses:\n\n"
       << "| implementation | conv ms per training step | conv-only train img/s | conv ms per "
          "sampling step | conv-only 1000-step sample img/s |\n| --- | ---: | ---: | ---: | ---: "
          "|\n";
    for (int i = 0; i < 3; ++i) {
      md << "| " << names[i] << " | ";
      if (!totals[i].complete || totals[i].train <= 0 || totals[i].sample <= 0) {
        md << "(some shapes not timed) | | | |\n";
        continue;
      }
      md << fmt("%.2f", totals[i].train) << " | "
         << fmt("%.0f", double(batch) / (totals[i].train * 1e-3)) << " | "
         << fmt("%.2f", totals[i].sample) << " | "
         << fmt("%.2f", double(batch) / (totals[i].sample * 1e-3 * 1000)) << " |\n";
    }
  }
  if (const int n = count_mismatches(rows))
    md << "\n**" << n << " bf16 row(s) MISMATCH their reference.**\n";
  if (const int n = count_failures(rows))
    md << "\n**Our bf16 kernels failed on " << n << " row(s).**\n";
  return md.str();
}

}  // namespace ddpm::bench
