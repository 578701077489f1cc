// The bf16 half of the kernel benchmark (issue 11): on every conv, attention
// and linear shape of the model, our bf16 tensor-core kernels, the vendor's
// bf16 path (cuDNN, cuBLAS: kernels/vendor_bf16.h) and our fp32 kernels timed
// on the current device, and our bf16 outputs checked against the vendor's,
// or against our fp32 kernel's where there is no vendor op (bf16_report.h).
// Runs on a GPU, or on the CPU emulator, whose times mean nothing but whose
// checks do.
#pragma once

#include <ostream>
#include <vector>

#include "apps/bench/bf16_report.h"
#include "apps/bench/kernel_bench.h"
#include "apps/bench/model_shapes.h"

namespace ddpm::bench {

// One row per (layer, op), in the order of `shapes`; progress gets a line
// per row as it is timed. A failing implementation fails only its cell.
std::vector<Bf16Row> run_bf16_bench(const ModelShapes& shapes, const BenchOptions& options,
                                    std::ostream& progress);

// The fp32 convolution the "ours fp32" column times (the fp32 engine's default).
const char* bf16_bench_fp32_conv_name();

}  // namespace ddpm::bench
