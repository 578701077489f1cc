// The CUDA backend's compute-bound ops and GroupNorm: conv2d (conv2d.cuh),
// linear (gemm.cuh + reduce.cuh's column sums for the bias), attention
// (attention.cuh) and group_norm (+SiLU; group_norm.cuh without its fused
// bias). Conventions in cuda_ops.h.
#include <algorithm>

#include "engine/cuda/cuda_ops.h"
#include "kernels/attention.cuh"
#include "kernels/check.cuh"
#include "kernels/group_norm.cuh"
#include "kernels/reduce.cuh"

namespace ddpm::cuda {

// ---- conv2d -----------------------------------------------------------------------

namespace {

// x [N, H, W, C] and the op's parameters as the kernels' shape.
kernels::Conv2dShape conv_shape(const Conv2dParams& p, const Shape& x) {
  kernels::Conv2dShape s;
  s.batch = x[0];
  s.in_h = x[1];
  s.in_w = x[2];
  s.in_channels = x[3];
  s.out_channels = p.out_channels;
  s.kernel_h = p.kernel_h;
  s.kernel_w = p.kernel_w;
  s.stride = p.stride;
  s.pad_top = p.pad.top;
  s.pad_bottom = p.pad.bottom;
  s.pad_left = p.pad.left;
  s.pad_right = p.pad.right;
  return s;
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
                          nullptr, out(a.outputs[0]), s, env.conv_impl(), ws, env.stream());
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
}

// ---- linear -----------------------------------------------------------------------

size_t workspace_bytes(const LinearParams& p, std::span<const Shape> inputs, bool training,
                       const OpEnv&) {
  return training && p.bias ? kernels::column_sum_workspace_bytes(inputs[0].rows(), p.out_features)
                            : 0;
}

// y [rows, out] = x [rows, in] W^T + b, W stored [out, in].
void forward(const LinearParams& p, const ForwardArgs& a, OpEnv& env) {
  const Shape& xs = a.inputs[0].shape;
  kernels::gemm(false, true, xs.rows(), p.out_features, xs.back(), in(a.inputs[0]), in(a.inputs[1]),
                p.bias ? in(a.inputs[2]) : nullptr, out(a.outputs[0]), false, env.gemm_impl(),
                env.stream());
}

// dx (+)= dy W; dW (+)= dy^T x; db += column sums of dy.
void backward(const LinearParams& p, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  const Shape& xs = a.inputs[0].shape;
  const int64_t rows = xs.rows(), in_features = xs.back(), out_features = p.out_features;
  const float* dy = in(a.grad_outputs[0]);
  if (float* dx = grad(a.grad_inputs[0]))
    kernels::gemm(false, false, rows, in_features, out_features, dy, in(a.inputs[1]), nullptr, dx,
                  a.grad_inputs[0].accumulate, env.gemm_impl(), env.stream());
  if (float* dw = grad(a.grad_inputs[1]))
    kernels::gemm(true, false, out_features, in_features, rows, dy, in(a.inputs[0]), nullptr, dw,
                  a.grad_inputs[1].accumulate, env.gemm_impl(), env.stream());
  if (float* db = p.bias ? begin_adding_grad(a.grad_inputs[2], env.stream()) : nullptr)
    kernels::column_sum_add(dy, db, rows, out_features,
                            env.workspace(kernels::column_sum_workspace_bytes(rows, out_features)),
                            env.stream());
}

// ---- attention --------------------------------------------------------------------

namespace {

kernels::AttentionShape attention_shape(const AttentionParams& p, const Shape& q) {
  return {q[0], attention_tokens(q), p.heads, p.head_dim};
}

}  // namespace

size_t workspace_bytes(const AttentionParams& p, std::span<const Shape> inputs, bool training,
                       const OpEnv&) {
  return training ? kernels::attention_workspace_bytes(attention_shape(p, inputs[0])) : 0;
}

void forward(const AttentionParams& p, const ForwardArgs& a, OpEnv& env) {
  kernels::attention_forward(in(a.inputs[0]), in(a.inputs[1]), in(a.inputs[2]), out(a.outputs[0]),
                             out(a.outputs[1]), attention_shape(p, a.inputs[0].shape),
                             float(attention_scale(p)), env.stream());
}

void backward(const AttentionParams& p, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  const kernels::AttentionShape s = attention_shape(p, a.inputs[0].shape);
  void* ws = env.workspace(kernels::attention_workspace_bytes(s));
  float* g[3] = {grad(a.grad_inputs[0]), grad(a.grad_inputs[1]), grad(a.grad_inputs[2])};
  const bool acc[3] = {a.grad_inputs[0].accumulate, a.grad_inputs[1].accumulate,
                       a.grad_inputs[2].accumulate};
  auto run = [&](float* dq, float* dk, float* dv) {
    kernels::attention_backward(in(a.inputs[0]), in(a.inputs[1]), in(a.inputs[2]), in(a.outputs[0]),
                                in(a.outputs[1]), in(a.grad_outputs[0]), dq, dk, dv, s,
                                float(attention_scale(p)), acc[0], acc[1], acc[2], ws,
                                env.stream());
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

namespace {

kernels::GroupNormShape group_norm_shape(const GroupNormParams& p, const Shape& x) {
  const int64_t n = x[0], c = x.back();
  return {n, x.numel() / (n * c), c, p.groups};
}

}  // namespace

size_t workspace_bytes(const GroupNormParams& p, std::span<const Shape> inputs, bool,
                       const OpEnv&) {
  return kernels::group_norm_workspace_bytes(group_norm_shape(p, inputs[0]));
}

void forward(const GroupNormParams& p, const ForwardArgs& a, OpEnv& env) {
  const kernels::GroupNormShape s = group_norm_shape(p, a.inputs[0].shape);
  kernels::group_norm_forward(in(a.inputs[0]), nullptr, p.affine ? in(a.inputs[1]) : nullptr,
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
  float* dx = grad(a.grad_inputs[0]);
  float* dgamma = p.affine ? begin_adding_grad(a.grad_inputs[1], env.stream()) : nullptr;
  float* dbeta = p.affine ? begin_adding_grad(a.grad_inputs[2], env.stream()) : nullptr;
  auto run = [&](float* dx_part, float* dgamma_part, float* dbeta_part) {
    kernels::group_norm_backward(in(a.inputs[0]), nullptr, gamma, beta, in(a.outputs[1]),
                                 in(a.outputs[2]), in(a.grad_outputs[0]), dx_part, nullptr,
                                 dgamma_part, dbeta_part, s, p.silu, a.grad_inputs[0].accumulate,
                                 false, ws, env.stream());
  };
  if (same_memory(dgamma, dbeta)) {  // gamma and beta are one value
    run(dx, dgamma, nullptr);
    run(nullptr, nullptr, dbeta);
  } else {
    run(dx, dgamma, dbeta);
  }
}

}  // namespace ddpm::cuda
