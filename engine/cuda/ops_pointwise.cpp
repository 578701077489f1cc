// The CUDA backend's memory-bound ops: silu, add (with the [N, C] broadcast),
// concat, upsample2x and timestep_embedding (elementwise.cuh), dropout
// (dropout.cuh) and mse_loss (mse_loss.cuh). Conventions in cuda_ops.h.
#include <stdexcept>

#include "engine/cuda/cuda_ops.h"
#include "engine/cuda/op_shapes.h"
#include "kernels/dropout.cuh"
#include "kernels/elementwise.cuh"
#include "kernels/mse_loss.cuh"

namespace ddpm::cuda {

// ---- silu -------------------------------------------------------------------------

size_t workspace_bytes(const SiluParams&, std::span<const Shape>, bool, const OpEnv&) {
  return 0;
}

void forward(const SiluParams&, const ForwardArgs& a, OpEnv& env) {
  kernels::silu_forward(in(a.inputs[0]), out(a.outputs[0]), a.inputs[0].numel(), env.stream());
}

void backward(const SiluParams&, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  if (float* dx = grad(a.grad_inputs[0]))
    kernels::silu_backward(in(a.inputs[0]), in(a.grad_outputs[0]), dx, a.inputs[0].numel(),
                           a.grad_inputs[0].accumulate, env.stream());
}

// ---- add --------------------------------------------------------------------------

size_t workspace_bytes(const AddParams&, std::span<const Shape> inputs, bool training,
                       const OpEnv&) {
  if (!training) return 0;
  const AddLayout l = add_layout(inputs[0], inputs[1]);
  return kernels::add_backward_workspace_bytes(l.n, l.channels, l.per_sample);
}

void forward(const AddParams& p, const ForwardArgs& a, OpEnv& env) {
  const AddLayout l = add_layout(a.inputs[0].shape, a.inputs[1].shape);
  kernels::add_forward(in(a.inputs[0]), in(a.inputs[1]), out(a.outputs[0]), l.n, l.channels,
                       l.per_sample, float(p.scale), env.stream());
}

void backward(const AddParams& p, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  const AddLayout l = add_layout(a.inputs[0].shape, a.inputs[1].shape);
  const size_t ws_bytes = kernels::add_backward_workspace_bytes(l.n, l.channels, l.per_sample);
  void* ws = env.workspace(ws_bytes);
  float* da = grad(a.grad_inputs[0]);
  float* db = grad(a.grad_inputs[1]);
  auto run = [&](float* da_part, float* db_part) {
    kernels::add_backward(in(a.grad_outputs[0]), da_part, db_part, l.n, l.channels, l.per_sample,
                          float(p.scale), a.grad_inputs[0].accumulate, a.grad_inputs[1].accumulate,
                          ws, ws_bytes, env.stream());
  };
  if (same_memory(da, db)) {  // x + x: one launch per slot, in slot order
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
    kernels::concat_channels_forward(in(x), out(a.outputs[0]), rows, x.shape.back(), cy, offset,
                                     env.stream());
    offset += x.shape.back();
  }
}

void backward(const ConcatParams&, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  const int64_t rows = a.grad_outputs[0].shape.rows(), cy = a.grad_outputs[0].shape.back();
  int64_t offset = 0;
  for (size_t s = 0; s < a.inputs.size(); ++s) {
    const int64_t cx = a.inputs[s].shape.back();
    if (float* dx = grad(a.grad_inputs[s]))
      kernels::concat_channels_backward(in(a.grad_outputs[0]), dx, rows, cx, cy, offset,
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
  kernels::upsample2x_forward(in(a.inputs[0]), out(a.outputs[0]), x[0], x[1], x[2], x[3],
                              env.stream());
}

void backward(const Upsample2xParams&, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  const Shape& x = a.inputs[0].shape;  // the shape is passed even when the data is not
  if (float* dx = grad(a.grad_inputs[0]))
    kernels::upsample2x_backward(in(a.grad_outputs[0]), dx, x[0], x[1], x[2], x[3],
                                 a.grad_inputs[0].accumulate, env.stream());
}

// ---- timestep_embedding -----------------------------------------------------------

size_t workspace_bytes(const TimestepEmbeddingParams&, std::span<const Shape>, bool, const OpEnv&) {
  return 0;
}

void forward(const TimestepEmbeddingParams& p, const ForwardArgs& a, OpEnv& env) {
  kernels::timestep_embedding_forward(in(a.inputs[0]), out(a.outputs[0]), a.inputs[0].shape[0],
                                      p.dim, p.flip_sin_to_cos, float(p.freq_shift),
                                      float(p.max_period), float(p.scale), env.stream());
}

// Timesteps are data, never trained: a gradient to them is not implemented
// here (the CPU backend has one, for its gradient checks).
void backward(const TimestepEmbeddingParams&, const BackwardArgs& a, OpEnv& env) {
  if (!a.grad_inputs[0].tensor.defined()) return;
  if (no_upstream_gradient(a, env.stream())) return;
  throw std::invalid_argument(
      "the gradient with respect to the timesteps is not implemented on the CUDA backend "
      "(create the timesteps input without requires_grad)");
}

// ---- dropout ----------------------------------------------------------------------

size_t workspace_bytes(const DropoutParams&, std::span<const Shape>, bool, const OpEnv&) {
  return 0;
}

void forward(const DropoutParams& p, const ForwardArgs& a, OpEnv& env) {
  kernels::dropout_forward(in(a.inputs[0]), out(a.outputs[0]), a.inputs[0].numel(),
                           dropout_active_p(p, a.ctx), dropout_key(p, a.ctx), env.stream());
}

void backward(const DropoutParams& p, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  if (float* dx = grad(a.grad_inputs[0]))
    kernels::dropout_backward(in(a.grad_outputs[0]), dx, a.grad_outputs[0].numel(),
                              dropout_active_p(p, a.ctx), dropout_key(p, a.ctx),
                              a.grad_inputs[0].accumulate, env.stream());
}

// ---- mse_loss ---------------------------------------------------------------------

size_t workspace_bytes(const MseLossParams&, std::span<const Shape> inputs, bool, const OpEnv&) {
  return kernels::mse_loss_workspace_bytes(inputs[0].numel());
}

void forward(const MseLossParams&, const ForwardArgs& a, OpEnv& env) {
  const int64_t n = a.inputs[0].numel();
  kernels::mse_loss_forward(in(a.inputs[0]), in(a.inputs[1]), out(a.outputs[0]), n,
                            env.workspace(kernels::mse_loss_workspace_bytes(n)), env.stream());
}

void backward(const MseLossParams&, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  float* dpred = grad(a.grad_inputs[0]);
  float* dtarget = grad(a.grad_inputs[1]);
  auto run = [&](float* dpred_part, float* dtarget_part) {
    kernels::mse_loss_backward(in(a.inputs[0]), in(a.inputs[1]), in(a.grad_outputs[0]), dpred_part,
                               dtarget_part, a.inputs[0].numel(), a.grad_inputs[0].accumulate,
                               a.grad_inputs[1].accumulate, env.stream());
  };
  if (same_memory(dpred, dtarget)) {  // mse(x, x): one launch per slot, in slot order
    run(dpred, nullptr);
    run(nullptr, dtarget);
  } else {
    run(dpred, dtarget);
  }
}

}  // namespace ddpm::cuda
