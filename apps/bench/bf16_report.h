// The bf16 rows of the kernel benchmark (issue 11) as data: each op's FLOPs
// from its layer's shape, the check of our bf16 output against a reference
// output, and the markdown table. Host code only (no CUDA), so the CPU tests
// cover it; apps/bench/kernel_bench_bf16.cpp fills the rows on a GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "apps/bench/model_shapes.h"

namespace ddpm::bench {

// FLOPs of one call, 2 per multiply-add of the op's math:
//   convolution, each of fwd, bwd_data, bwd_filter: 2 N Ho Wo O R S C (the
//     same count for all three; a stride-2 bwd_data is counted as the forward
//     although our kernel skips the zeros of the strided gather);
//   linear, each of fwd (y = x W^T), dx (= dy W), dW (= dy^T x): 2 rows in out;
//   attention fwd: 2 x 2 N H T^2 D (S = Q K^T and O = P V); bwd: twice that
//     (dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q; the recomputation of
//     S is not counted), as the fp32 table counts them.
double conv_flops(const ConvLayer& c);
double linear_flops(const LinearLayer& l);
double attention_flops(const AttentionLayer& a, bool backward);

// The agreement bound: max |ours - ref| <= 2^-6 max |ref|. Both sides read the
// same bf16 inputs, so products are exact in fp32 on both; they differ by
//   - the final rounding to bf16 (relative 2^-9 each, so up to 2^-8 |y|
//     between two bf16 outputs; one side only where an output is fp32: our
//     backward-filter and GEMM dW, an fp32 reference);
//   - fp32 accumulation in different orders (tiles, split-K, algorithms).
//     Worst case gamma_K sum |a_i b_i| would be vacuous for K = 131072 (the
//     32x32 backward-filter), but with random inputs of both signs the
//     rounding errors add like a random walk: about u sqrt(K) times the
//     partial sums' size, under 1e-5 of max |ref| at these shapes;
//   - for attention (reference: our fp32 kernel on the same inputs), the bf16
//     rounding of P before P V and of dS before dS K and dS^T Q: relative
//     2^-9 per term of sums of both signs, again well under 2^-8 of the max.
// So 2^-6 is 4x the largest expected term: a wrong tile, index or missing
// term moves the max difference to the size of the outputs themselves.
inline constexpr double kBf16AgreementBound = 1.0 / 64;

// max |ours - ref| and max |ref| over the elements compared; any non-finite
// value on either side fails the check.
struct Agreement {
  double max_diff = 0, max_ref = 0;
  size_t compared = 0;
  bool nonfinite = false;

  double relative() const;  // max_diff / max_ref (0 when both are 0, inf when only max_ref is)
  bool ok() const;          // finite, something compared, relative() <= kBf16AgreementBound
};

// Compares ours[r * stride + j] with ref[r * stride + j] for r < rows, j <
// width, into `a` (so several blocks of one buffer can be compared at once).
void accumulate_agreement(Agreement& a, const float* ours, const float* ref, size_t rows,
                          size_t width, size_t stride);
// The whole of two equally long arrays.
Agreement agreement(const std::vector<float>& ours, const std::vector<float>& ref);
// The worse of two (failed over passed, then the larger relative difference):
// an op with several outputs (attention's dq, dk, dv) reports its worst.
Agreement worse(const Agreement& a, const Agreement& b);

// One implementation's time for a row: ms > 0, or why there is none
// ("n/a: ..." when the implementation does not exist here, else the error).
struct Measurement {
  double ms = -1;
  std::string note;
  bool timed() const { return ms > 0; }
};

enum class LayerKind { conv, attention, linear };

struct Bf16Row {
  LayerKind kind = LayerKind::conv;
  std::string layer;  // ConvLayer::describe(), "attention T 256, 1 x 256", "linear ..."
  std::string op;     // fwd, bwd_data, bwd_filter / fwd, bwd / fwd, dx, dW
  int uses = 0;       // calls of the op per training step (fwd: also per sampling step)
  double flops = 0;
  Measurement ours, vendor, fp32;  // our bf16 kernel, the vendor's bf16 path, our fp32 kernel
  std::string vendor_name;         // "cudnn", "cublas", ...; empty: none for this op
  std::string reference;           // what the check compared with; empty: no check
  std::optional<Agreement> check;

  bool mismatch() const { return check && !check->ok(); }
};

int count_mismatches(const std::vector<Bf16Row>& rows);
// Rows where our bf16 kernel has no time (it threw, or its layer's setup did).
int count_failures(const std::vector<Bf16Row>& rows);

// The markdown section: a paragraph on what is measured, the per-op table
// (ours bf16, the vendor, ours fp32, ours / vendor, our TFLOP/s, the check;
// MISMATCH in bold where the check failed) and the convolutions summed over
// their uses per training and sampling step. The word MISMATCH appears only
// where a check failed (a grep for it finds failures). `fp32_conv` names our
// fp32 convolution timed in the fp32 column.
std::string render_bf16_section(const std::vector<Bf16Row>& rows, int64_t batch, int warmup,
                                int repeats, const std::string& fp32_conv);

}  // namespace ddpm::bench
