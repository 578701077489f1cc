// Launchers for the warp_mma tests: one warp runs one m16n8k16 of
// kernels/warp_mma.cuh on host matrices, through the default path (the PTX
// instruction on an sm_80+ GPU, the portable path under the emulator) or the
// portable path. The probe packs A and B into fragments with the header's
// fragment_row / fragment_col and pack_bf16x2 (so A and B are rounded to bf16
// on the way in) and unpacks D the same way.
#pragma once

namespace ddpm::testing {

enum class MmaPath { default_path, portable };

// d[16x8] = a[16x16] * b[16x8] + c[16x8], all row-major host arrays (b's rows
// are k). Throws std::runtime_error on a CUDA error.
void run_warp_mma_probe(const float* a, const float* b, const float* c, float* d, MmaPath path);

// Whether the default path of the device code is the PTX instruction (false
// under the emulator). Runs a one-thread kernel.
bool warp_mma_default_is_ptx();

}  // namespace ddpm::testing
