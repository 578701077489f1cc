// The CUDA backend's forward and backward rule for every op (internal to
// engine/cuda): each unpacks the op's tensors into raw pointers and shapes and
// calls the launchers of kernels/. The three layers of ggml's CUDA backend:
// kernel (kernels/*.cu), launcher on raw pointers and a stream (kernels/*.cuh),
// and these entry points that read the graph node.
//
// Conventions shared by every rule:
//   - Tensors are f32 device memory, or bf16 in the bf16 rules (the backend
//     checked dtype and device before calling); an undefined tensor (data == nullptr) is one the
//     executor does not pass (not saved for backward, gradient not wanted).
//   - Activation gradients overwrite or add per GradTensor::accumulate, mapped
//     onto the kernels' accumulate flags. Weight-gradient kernels that always
//     add (conv2d_backward_filter, group_norm's dgamma/dbeta, column_sum_add)
//     get their destination zeroed first when it is to be overwritten (the
//     executor never asks that of parameters, whose flat buffer it zeroes once
//     a step, but a direct caller may).
//   - An undefined grad_output is zero: overwritten gradients are zero-filled,
//     accumulated ones left alone.
//   - Scratch comes from OpEnv::workspace, one buffer the backend owns and grows
//     to the largest request; workspace_bytes(...) says what a node will ask
//     for, so the backend can size it for a whole graph up front.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <span>

#include "engine/backend.h"
#include "kernels/conv2d.cuh"
#include "kernels/gemm.cuh"

namespace ddpm::cuda {

// What a rule needs from the backend besides its tensors.
class OpEnv {
 public:
  virtual ~OpEnv() = default;
  virtual cudaStream_t stream() const = 0;
  virtual kernels::ConvImpl conv_impl() const = 0;
  virtual kernels::GemmImpl gemm_impl() const = 0;
  // At least `bytes` of scratch, 256-byte aligned, valid until the next call;
  // nullptr for 0 bytes.
  virtual void* workspace(size_t bytes) = 0;
};

#define DDPM_CUDA_OP(Params)                                                            \
  void forward(const Params& p, const ForwardArgs& a, OpEnv& env);                      \
  void backward(const Params& p, const BackwardArgs& a, OpEnv& env);                    \
  size_t workspace_bytes(const Params& p, std::span<const Shape> inputs, bool training, \
                         const OpEnv& env);

// Every op, once: the rules below are declared for each.
#define DDPM_CUDA_FOR_EACH_OP(X) \
  X(Conv2dParams)                \
  X(GroupNormParams)             \
  X(LinearParams)                \
  X(AttentionParams)             \
  X(SiluParams)                  \
  X(AddParams)                   \
  X(ConcatParams)                \
  X(Upsample2xParams)            \
  X(TimestepEmbeddingParams)     \
  X(DropoutParams)               \
  X(MseLossParams)

DDPM_CUDA_FOR_EACH_OP(DDPM_CUDA_OP)

// The same rules for a node whose first input is bf16 (a mixed-precision
// graph: bf16 activations and activation gradients, fp32 parameters'
// gradients, statistics and loss; ops_dense_bf16.cpp, ops_pointwise_bf16.cpp).
namespace bf16 {
DDPM_CUDA_FOR_EACH_OP(DDPM_CUDA_OP)
}  // namespace bf16

#undef DDPM_CUDA_FOR_EACH_OP
#undef DDPM_CUDA_OP

// ---- helpers shared by the rule files ------------------------------------------

// The tensor's float data, nullptr when undefined.
inline const float* in(const Tensor& t) {
  return static_cast<const float*>(t.data);
}
inline float* out(const Tensor& t) {
  return static_cast<float*>(t.data);
}
inline float* grad(const GradTensor& g) {
  return static_cast<float*>(g.tensor.data);
}

// The same for bf16 tensors (a logic error when the tensor is not bf16: the
// dispatch sends a node to the bf16 rules by its first input's dtype, and
// the graph builder gives every tensor of such a node its expected dtype).
const __nv_bfloat16* in_bf16(const Tensor& t);
__nv_bfloat16* out_bf16(const Tensor& t);
__nv_bfloat16* grad_bf16(const GradTensor& g);

// For kernels that always add: zeroes the destination first when it is to be
// overwritten. Returns the destination (nullptr when not wanted).
float* begin_adding_grad(const GradTensor& g, cudaStream_t stream);

// When grad_outputs[0] is undefined (zero): zero-fills every gradient to be
// overwritten and returns true; the rule then has nothing more to do.
bool no_upstream_gradient(const BackwardArgs& a, cudaStream_t stream);

// Whether two wanted gradients share memory (the same value feeding two slots
// of one node): kernels that write both in one launch must then run once per
// slot, in slot order (the executor's accumulate flags assume that order).
inline bool same_memory(const float* a, const float* b) {
  return a != nullptr && a == b;
}

}  // namespace ddpm::cuda
