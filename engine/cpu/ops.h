// The CPU reference backend's forward and backward rule for every op: plain,
// obviously-correct C++ (BLAS for the GEMM-shaped work, OpenMP for loops).
// These are the ground truth the CUDA kernels are tested against.
#pragma once

#include "engine/backend.h"

namespace ddpm::cpu {

#define DDPM_CPU_OP(Params)                            \
  void forward(const Params& p, const ForwardArgs& a); \
  void backward(const Params& p, const BackwardArgs& a);

DDPM_CPU_OP(Conv2dParams)
DDPM_CPU_OP(GroupNormParams)
DDPM_CPU_OP(LinearParams)
DDPM_CPU_OP(AttentionParams)
DDPM_CPU_OP(SiluParams)
DDPM_CPU_OP(AddParams)
DDPM_CPU_OP(ConcatParams)
DDPM_CPU_OP(Upsample2xParams)
DDPM_CPU_OP(TimestepEmbeddingParams)
DDPM_CPU_OP(DropoutParams)
DDPM_CPU_OP(MseLossParams)

#undef DDPM_CPU_OP

}  // namespace ddpm::cpu
