// The CUDA backend's bf16 rules for the memory-bound ops (elementwise_bf16.cuh,
// dropout.cuh and mse_loss.cuh's bf16 twins): the contracts of
// ops_pointwise.cpp with bf16 activations and gradients. The loss is fp32 and
// its target an fp32 graph input. Conventions in cuda_ops.h.
#include <stdexcept>

#include "engine/cuda/cuda_ops.h"
#include "engine/cuda/op_shapes.h"
#include "kernels/dropout.cuh"
#include "kernels/elementwise_bf16.cuh"
#include "kernels/mse_loss.cuh"

namespace ddpm::cuda::bf16 {

namespace {

__nv_bfloat16* maybe_grad(const GradTensor& g) {
  return g.tensor.defined() ? grad_bf16(g) : nullptr;
}

}  // namespace

// ---- silu -------------------------------------------------------------------------

size_t workspace_bytes(const SiluParams&, std::span<const Shape>, bool, const OpEnv&) {
  return 0;
}

void forward(const SiluParams&, const ForwardArgs& a, OpEnv& env) {
  kernels::silu_forward_bf16(in_bf16(a.inputs[0]), out_bf16(a.outputs[0]), a.inputs[0].numel(),
                             env.stream());
}

void backward(const SiluParams&, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  if (__nv_bfloat16* dx = maybe_grad(a.grad_inputs[0]))
    kernels::silu_backward_bf16(in_bf16(a.inputs[0]), in_bf16(a.grad_outputs[0]), dx,
                                a.inputs[0].numel(), a.grad_inputs[0].accumulate, env.stream());
}

// ---- add --------------------------------------------------------------------------

size_t workspace_bytes(const AddParams&, std::span<const Shape>, bool, const OpEnv&) {
  return 0;
}

void forward(const AddParams& p, const ForwardArgs& a, OpEnv& env) {
  const AddLayout l = add_layout(a.inputs[0].shape, a.inputs[1].shape);
  kernels::add_forward_bf16(in_bf16(a.inputs[0]), in_bf16(a.inputs[1]), out_bf16(a.outputs[0]), l.n,
                            l.channels, l.per_sample, float(p.scale), env.stream());
}

void backward(const AddParams& p, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  const AddLayout l = add_layout(a.inputs[0].shape, a.inputs[1].shape);
  __nv_bfloat16* da = maybe_grad(a.grad_inputs[0]);
  __nv_bfloat16* db = maybe_grad(a.grad_inputs[1]);
  auto run = [&](__nv_bfloat16* da_part, __nv_bfloat16* db_part) {
    kernels::add_backward_bf16(in_bf16(a.grad_outputs[0]), da_part, db_part, l.n, l.channels,
                               l.per_sample, float(p.scale), a.grad_inputs[0].accumulate,
                               a.grad_inputs[1].accumulate, env.stream());
  };
  if (da != nullptr && da == db) {  // x + x: one launch per slot, in slot order
    run(da, nullptr);
    run(nullptr, db);
  } else {
    run(da, db);
  }
}

// ---- concat -----------------------------------------------------------------------

size_t workspace_bytes(const ConcatParams&, std::span<const Shape>, bool, const OpEnv&) {
  return 0;
}

void forward(const ConcatParams&, const ForwardArgs& a, OpEnv& env) {
  const int64_t rows = a.outputs[0].shape.rows(), cy = a.outputs[0].shape.back();
  int64_t offset = 0;
  for (const Tensor& x : a.inputs) {
    kernels::concat_channels_forward_bf16(in_bf16(x), out_bf16(a.outputs[0]), rows, x.shape.back(),
                                          cy, offset, env.stream());
    offset += x.shape.back();
  }
}

void backward(const ConcatParams&, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  const int64_t rows = a.grad_outputs[0].shape.rows(), cy = a.grad_outputs[0].shape.back();
  int64_t offset = 0;
  for (size_t s = 0; s < a.inputs.size(); ++s) {
    const int64_t cx = a.inputs[s].shape.back();
    if (__nv_bfloat16* dx = maybe_grad(a.grad_inputs[s]))
      kernels::concat_channels_backward_bf16(in_bf16(a.grad_outputs[0]), dx, rows, cx, cy, offset,
                                             a.grad_inputs[s].accumulate, env.stream());
    offset += cx;
  }
}

// ---- upsample2x -------------------------------------------------------------------

size_t workspace_bytes(const Upsample2xParams&, std::span<const Shape>, bool, const OpEnv&) {
  return 0;
}

void forward(const Upsample2xParams&, const ForwardArgs& a, OpEnv& env) {
  const Shape& x = a.inputs[0].shape;
  kernels::upsample2x_forward_bf16(in_bf16(a.inputs[0]), out_bf16(a.outputs[0]), x[0], x[1], x[2],
                                   x[3], env.stream());
}

void backward(const Upsample2xParams&, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  const Shape& x = a.inputs[0].shape;
  if (__nv_bfloat16* dx = maybe_grad(a.grad_inputs[0]))
    kernels::upsample2x_backward_bf16(in_bf16(a.grad_outputs[0]), dx, x[0], x[1], x[2], x[3],
                                      a.grad_inputs[0].accumulate, env.stream());
}

// ---- timestep_embedding -----------------------------------------------------------

// The timesteps are an fp32 input and the time path computes in fp32
// (GraphBuilder), so no node reaches these.
size_t workspace_bytes(const TimestepEmbeddingParams&, std::span<const Shape>, bool, const OpEnv&) {
  return 0;
}

void forward(const TimestepEmbeddingParams&, const ForwardArgs&, OpEnv&) {
  throw std::logic_error("timestep_embedding takes fp32 timesteps, not bf16");
}

void backward(const TimestepEmbeddingParams&, const BackwardArgs&, OpEnv&) {
  throw std::logic_error("timestep_embedding takes fp32 timesteps, not bf16");
}

// ---- dropout ----------------------------------------------------------------------

size_t workspace_bytes(const DropoutParams&, std::span<const Shape>, bool, const OpEnv&) {
  return 0;
}

void forward(const DropoutParams& p, const ForwardArgs& a, OpEnv& env) {
  kernels::dropout_forward_bf16(in_bf16(a.inputs[0]), out_bf16(a.outputs[0]), a.inputs[0].numel(),
                                dropout_active_p(p, a.ctx), dropout_key(p, a.ctx), env.stream());
}

void backward(const DropoutParams& p, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  if (__nv_bfloat16* dx = maybe_grad(a.grad_inputs[0]))
    kernels::dropout_backward_bf16(in_bf16(a.grad_outputs[0]), dx, a.grad_outputs[0].numel(),
                                   dropout_active_p(p, a.ctx), dropout_key(p, a.ctx),
                                   a.grad_inputs[0].accumulate, env.stream());
}

// ---- mse_loss ---------------------------------------------------------------------

size_t workspace_bytes(const MseLossParams&, std::span<const Shape> inputs, bool, const OpEnv&) {
  return kernels::mse_loss_workspace_bytes(inputs[0].numel());
}

// pred bf16, target fp32 (GraphBuilder checks it), loss fp32.
void forward(const MseLossParams&, const ForwardArgs& a, OpEnv& env) {
  const int64_t n = a.inputs[0].numel();
  kernels::mse_loss_forward_bf16(in_bf16(a.inputs[0]), in(a.inputs[1]), out(a.outputs[0]), n,
                                 env.workspace(kernels::mse_loss_workspace_bytes(n)), env.stream());
}

void backward(const MseLossParams&, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  kernels::mse_loss_backward_bf16(in_bf16(a.inputs[0]), in(a.inputs[1]), in(a.grad_outputs[0]),
                                  maybe_grad(a.grad_inputs[0]), grad(a.grad_inputs[1]),
                                  a.inputs[0].numel(), a.grad_inputs[0].accumulate,
                                  a.grad_inputs[1].accumulate, env.stream());
}

}  // namespace ddpm::cuda::bf16
