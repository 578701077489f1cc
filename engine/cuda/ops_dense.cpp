// The CUDA backend's compute-bound ops and GroupNorm: conv2d (conv2d.cuh, the
// residual in its epilogue), linear (gemm.cuh + reduce.cuh's column sums for
// the bias; stacked weight parts as one GEMM, the residual through the GEMM's
// accumulate), attention (attention.cuh, q/k/v read in place from a packed
// projection) and group_norm (+SiLU, + the per-channel add: group_norm.cuh).
// Conventions in cuda_ops.h.
#include <algorithm>
#include <array>
#include <stdexcept>
#include <string>

#include "engine/cuda/cuda_ops.h"
#include "engine/cuda/op_shapes.h"
#include "kernels/attention.cuh"
#include "kernels/check.cuh"
#include "kernels/elementwise.cuh"
#include "kernels/group_norm.cuh"
#include "kernels/reduce.cuh"

namespace ddpm::cuda {

// ---- conv2d -----------------------------------------------------------------------

namespace {

// The gradient of an added input (a fused residual): dr (+)= dy.
void residual_backward(const Tensor& dy, const GradTensor& g, cudaStream_t stream) {
  if (float* dr = grad(g)) {
    const int64_t n = dy.numel();
    kernels::add_backward(in(dy), dr, nullptr, n, dy.shape.back(), 0, 1.0f, g.accumulate, false,
                          stream);
  }
}

}  // namespace

size_t workspace_bytes(const Conv2dParams& p, std::span<const Shape> inputs, bool training,
                       const OpEnv& env) {
  const kernels::Conv2dShape s = conv_shape(p, inputs[0]);
  size_t bytes = kernels::conv2d_workspace_bytes(s, env.conv_impl());
  // A bias gradient without a weight gradient (frozen weight) is a column sum.
  if (training && p.bias)
    bytes = std::max(bytes, kernels::column_sum_workspace_bytes(s.out_pixels(), s.out_channels));
  return bytes;
}

void forward(const Conv2dParams& p, const ForwardArgs& a, OpEnv& env) {
  const kernels::Conv2dShape s = conv_shape(p, a.inputs[0].shape);
  void* ws = env.workspace(kernels::conv2d_workspace_bytes(s, env.conv_impl()));
  kernels::conv2d_forward(in(a.inputs[0]), in(a.inputs[1]), p.bias ? in(a.inputs[2]) : nullptr,
                          p.residual ? in(a.inputs.back()) : nullptr, out(a.outputs[0]), s,
                          env.conv_impl(), ws, env.stream());
}

void backward(const Conv2dParams& p, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  const kernels::Conv2dShape s = conv_shape(p, a.inputs[0].shape);
  const float* dy = in(a.grad_outputs[0]);
  const size_t conv_ws = kernels::conv2d_workspace_bytes(s, env.conv_impl());
  if (float* dx = grad(a.grad_inputs[0]))
    kernels::conv2d_backward_data(dy, in(a.inputs[1]), dx, s, a.grad_inputs[0].accumulate,
                                  env.conv_impl(), env.workspace(conv_ws), env.stream());
  float* dw = begin_adding_grad(a.grad_inputs[1], env.stream());
  float* db = p.bias ? begin_adding_grad(a.grad_inputs[2], env.stream()) : nullptr;
  if (dw) {
    kernels::conv2d_backward_filter(in(a.inputs[0]), dy, dw, db, s, env.conv_impl(),
                                    env.workspace(conv_ws), env.stream());
  } else if (db) {
    const int64_t rows = s.out_pixels();
    kernels::column_sum_add(
        dy, db, rows, s.out_channels,
        env.workspace(kernels::column_sum_workspace_bytes(rows, s.out_channels)), env.stream());
  }
  // Last, in slot order: a residual that is x itself adds to dx (its flag says so).
  if (p.residual) residual_backward(a.grad_outputs[0], a.grad_inputs.back(), env.stream());
}

// ---- linear -----------------------------------------------------------------------

size_t workspace_bytes(const LinearParams& p, std::span<const Shape> inputs, bool training,
                       const OpEnv&) {
  return training && p.bias ? kernels::column_sum_workspace_bytes(inputs[0].rows(), p.out_features)
                            : 0;
}

// y [rows, out] = x [rows, in] W^T + b (+ r), W stored [out, in] (its parts
// stacked); with a residual, y starts as a copy of r and the GEMM adds to it.
void forward(const LinearParams& p, const ForwardArgs& a, OpEnv& env) {
  const Shape& xs = a.inputs[0].shape;
  const int64_t part = p.out_features / p.weight_parts * xs.back();
  const float* w = stacked(p, linear_weight_slot(p, 0), part, "weight",
                           [&](size_t s) { return in(a.inputs[s]); });
  const float* b = p.bias ? stacked(p, linear_bias_slot(p, 0), p.out_features / p.weight_parts,
                                    "bias", [&](size_t s) { return in(a.inputs[s]); })
                          : nullptr;
  float* y = out(a.outputs[0]);
  if (p.residual) {
    const float* r = in(a.inputs.back());
    if (r != y)
      DDPM_CUDA_CHECK(
          cudaMemcpyAsync(y, r, a.outputs[0].bytes(), cudaMemcpyDeviceToDevice, env.stream()));
  }
  kernels::gemm(false, true, xs.rows(), p.out_features, xs.back(), in(a.inputs[0]), w, b, y,
                p.residual, env.gemm_impl(), env.stream());
}

// dx (+)= dy W; dW (+)= dy^T x; db += column sums of dy; dr (+)= dy. The
// stacked parts are one GEMM each way (their gradients are as adjacent as
// the parameters).
void backward(const LinearParams& p, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  const Shape& xs = a.inputs[0].shape;
  const int64_t rows = xs.rows(), in_features = xs.back(), out_features = p.out_features;
  const int64_t part_out = out_features / p.weight_parts;
  const float* dy = in(a.grad_outputs[0]);
  const float* w = stacked(p, linear_weight_slot(p, 0), part_out * in_features, "weight",
                           [&](size_t s) { return in(a.inputs[s]); });
  if (float* dx = grad(a.grad_inputs[0]))
    kernels::gemm(false, false, rows, in_features, out_features, dy, w, nullptr, dx,
                  a.grad_inputs[0].accumulate, env.gemm_impl(), env.stream());
  // The parts share one accumulate flag (the executor's is always true for parameters).
  const size_t w0 = linear_weight_slot(p, 0);
  if (float* dw = stacked(p, w0, part_out * in_features, "weight gradient",
                          [&](size_t s) { return grad(a.grad_inputs[s]); }))
    kernels::gemm(true, false, out_features, in_features, rows, dy, in(a.inputs[0]), nullptr, dw,
                  a.grad_inputs[w0].accumulate, env.gemm_impl(), env.stream());
  if (p.bias) {
    const size_t b0 = linear_bias_slot(p, 0);
    float* db =
        stacked(p, b0, part_out, "bias gradient", [&](size_t s) { return grad(a.grad_inputs[s]); });
    if (db) {
      for (int64_t i = 0; i < p.weight_parts; ++i)
        begin_adding_grad(a.grad_inputs[b0 + size_t(i)], env.stream());
      kernels::column_sum_add(
          dy, db, rows, out_features,
          env.workspace(kernels::column_sum_workspace_bytes(rows, out_features)), env.stream());
    }
  }
  if (p.residual) residual_backward(a.grad_outputs[0], a.grad_inputs.back(), env.stream());
}

// ---- attention --------------------------------------------------------------------

size_t workspace_bytes(const AttentionParams& p, std::span<const Shape> inputs, bool training,
                       const OpEnv&) {
  return training ? kernels::attention_workspace_bytes(attention_shape(p, inputs[0])) : 0;
}

// The tensors of q, k, v (blocks of input 0 when packed).
std::array<const float*, 3> qkv_inputs(const AttentionParams& p, std::span<const Tensor> inputs) {
  if (p.packed_qkv) return qkv_blocks<const float>(p, in(inputs[0]));
  return {in(inputs[0]), in(inputs[1]), in(inputs[2])};
}

void forward(const AttentionParams& p, const ForwardArgs& a, OpEnv& env) {
  const auto qkv = qkv_inputs(p, a.inputs);
  kernels::attention_forward(qkv[0], qkv[1], qkv[2], out(a.outputs[0]), out(a.outputs[1]),
                             attention_shape(p, a.inputs[0].shape), float(attention_scale(p)),
                             env.stream());
}

void backward(const AttentionParams& p, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  const kernels::AttentionShape s = attention_shape(p, a.inputs[0].shape);
  void* ws = env.workspace(kernels::attention_workspace_bytes(s));
  const auto qkv = qkv_inputs(p, a.inputs);
  // Packed: one gradient tensor, its three blocks written by the one launch
  // under its one accumulate flag.
  const size_t k_slot = p.packed_qkv ? 0 : 1, v_slot = p.packed_qkv ? 0 : 2;
  const std::array<float*, 3> g =
      p.packed_qkv ? qkv_blocks<float>(p, grad(a.grad_inputs[0]))
                   : std::array<float*, 3>{grad(a.grad_inputs[0]), grad(a.grad_inputs[1]),
                                           grad(a.grad_inputs[2])};
  const bool acc[3] = {a.grad_inputs[0].accumulate, a.grad_inputs[k_slot].accumulate,
                       a.grad_inputs[v_slot].accumulate};
  auto run = [&](float* dq, float* dk, float* dv) {
    kernels::attention_backward(qkv[0], qkv[1], qkv[2], in(a.outputs[0]), in(a.outputs[1]),
                                in(a.grad_outputs[0]), dq, dk, dv, s, float(attention_scale(p)),
                                acc[0], acc[1], acc[2], ws, env.stream());
  };
  if (!same_memory(g[0], g[1]) && !same_memory(g[0], g[2]) && !same_memory(g[1], g[2])) {
    run(g[0], g[1], g[2]);
    return;
  }
  // q, k and v share a value (self-attention without projections): one
  // launch per gradient, in slot order, each adding to what the last wrote.
  if (g[0]) run(g[0], nullptr, nullptr);
  if (g[1]) run(nullptr, g[1], nullptr);
  if (g[2]) run(nullptr, nullptr, g[2]);
}

// ---- group_norm -------------------------------------------------------------------

size_t workspace_bytes(const GroupNormParams& p, std::span<const Shape> inputs, bool,
                       const OpEnv&) {
  return kernels::group_norm_workspace_bytes(group_norm_shape(p, inputs[0]));
}

void forward(const GroupNormParams& p, const ForwardArgs& a, OpEnv& env) {
  const kernels::GroupNormShape s = group_norm_shape(p, a.inputs[0].shape);
  const float* add = p.channel_add ? in(a.inputs[group_norm_channel_add_slot(p)]) : nullptr;
  kernels::group_norm_forward(in(a.inputs[0]), add, p.affine ? in(a.inputs[1]) : nullptr,
                              p.affine ? in(a.inputs[2]) : nullptr, out(a.outputs[0]),
                              out(a.outputs[1]), out(a.outputs[2]), s, float(p.eps), p.silu,
                              env.workspace(kernels::group_norm_workspace_bytes(s)), env.stream());
}

void backward(const GroupNormParams& p, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  const kernels::GroupNormShape s = group_norm_shape(p, a.inputs[0].shape);
  void* ws = env.workspace(kernels::group_norm_workspace_bytes(s));
  // beta is saved (defined) only with SiLU, the one case the kernel reads it.
  const float* gamma = p.affine ? in(a.inputs[1]) : nullptr;
  const float* beta = p.affine ? in(a.inputs[2]) : nullptr;
  const size_t add_slot = group_norm_channel_add_slot(p);
  const float* add = p.channel_add ? in(a.inputs[add_slot]) : nullptr;
  float* dx = grad(a.grad_inputs[0]);
  float* dgamma = p.affine ? begin_adding_grad(a.grad_inputs[1], env.stream()) : nullptr;
  float* dbeta = p.affine ? begin_adding_grad(a.grad_inputs[2], env.stream()) : nullptr;
  float* dadd = p.channel_add ? grad(a.grad_inputs[add_slot]) : nullptr;
  const bool acc_add = p.channel_add && a.grad_inputs[add_slot].accumulate;
  auto run = [&](float* dx_part, float* dgamma_part, float* dbeta_part, float* dadd_part) {
    kernels::group_norm_backward(in(a.inputs[0]), add, gamma, beta, in(a.outputs[1]),
                                 in(a.outputs[2]), in(a.grad_outputs[0]), dx_part, dadd_part,
                                 dgamma_part, dbeta_part, s, p.silu, a.grad_inputs[0].accumulate,
                                 acc_add, ws, env.stream());
  };
  if (same_memory(dgamma, dbeta) || same_memory(dx, dadd)) {
    // One value in two slots (gamma and beta; x and an [N, C] add): one
    // launch per gradient, in slot order, each adding to what the last wrote.
    if (dx) run(dx, nullptr, nullptr, nullptr);
    if (dgamma) run(nullptr, dgamma, nullptr, nullptr);
    if (dbeta) run(nullptr, nullptr, dbeta, nullptr);
    if (dadd) run(nullptr, nullptr, nullptr, dadd);
  } else {
    run(dx, dgamma, dbeta, dadd);
  }
}

}  // namespace ddpm::cuda
