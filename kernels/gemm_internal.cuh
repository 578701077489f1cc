// The pieces of gemm.cuh's implementations that gemm.cu dispatches to, and
// the tile choice of our own kernel (for tests that cover every tile). The
// public entry point gemm() validates its arguments; these assume it did.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

namespace ddpm::kernels::detail {

// ------------------------------------------------------------------ simt (ours)
// Block tiles of the SIMT kernel (gemm.cu's header comment has the design).
// automatic: the choice gemm() makes, from the shape alone.
enum class GemmTile { automatic, tile128x128, tile64x64_split4, tile32x32_split4 };

const char* gemm_tile_name(GemmTile tile);
// The tile gemm() uses for an m x n output (never automatic).
GemmTile choose_gemm_tile(int64_t m, int64_t n);

void gemm_simt(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
               const float* b, const float* bias, float* c, bool accumulate, GemmTile tile,
               cudaStream_t stream);

// ------------------------------------------------------------- cuBLAS (reference)
// Defined in gemm_cublas.cu, built into the nvcc library only (DDPM_WITH_CUBLAS).
bool gemm_cublas_available(std::string* reason);
void gemm_cublas(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
                 const float* b, const float* bias, float* c, bool accumulate, cudaStream_t stream);

}  // namespace ddpm::kernels::detail
