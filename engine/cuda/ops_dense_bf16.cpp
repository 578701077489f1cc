// The CUDA backend's bf16 rules for the compute-bound ops and GroupNorm: a
// node whose activations are bf16 (conv2d_bf16.cuh, gemm_bf16.cuh,
// attention_bf16.cuh, group_norm_bf16.cuh), the same contracts as the fp32
// rules in ops_dense.cpp. Weights are the bf16 copy of the fp32 master;
// biases, GroupNorm's gamma/beta and its per-channel add stay fp32; every
// parameter gradient is fp32 (the master's). Conventions in cuda_ops.h.
#include <algorithm>
#include <array>

#include "engine/cuda/cuda_ops.h"
#include "engine/cuda/op_shapes.h"
#include "kernels/attention_bf16.cuh"
#include "kernels/check.cuh"
#include "kernels/conv2d_bf16.cuh"
#include "kernels/elementwise_bf16.cuh"
#include "kernels/gemm_bf16.cuh"
#include "kernels/group_norm_bf16.cuh"
#include "kernels/reduce.cuh"

namespace ddpm::cuda::bf16 {

namespace {

// The gradient of an added input (a fused residual): dr (+)= dy.
void residual_backward(const Tensor& dy, const GradTensor& g, cudaStream_t stream) {
  if (!g.tensor.defined()) return;
  kernels::add_backward_bf16(in_bf16(dy), grad_bf16(g), nullptr, dy.numel(), dy.shape.back(), 0,
                             1.0f, g.accumulate, false, stream);
}

}  // namespace

// ---- conv2d -----------------------------------------------------------------------

size_t workspace_bytes(const Conv2dParams& p, std::span<const Shape> inputs, bool training,
                       const OpEnv&) {
  if (!training) return 0;
  const kernels::Conv2dShape s = conv_shape(p, inputs[0]);
  size_t bytes = kernels::conv2d_bf16_workspace_bytes(s);
  if (p.bias)
    bytes =
        std::max(bytes, kernels::column_sum_bf16_workspace_bytes(s.out_pixels(), s.out_channels));
  return bytes;
}

void forward(const Conv2dParams& p, const ForwardArgs& a, OpEnv& env) {
  kernels::conv2d_bf16_forward(
      in_bf16(a.inputs[0]), in_bf16(a.inputs[1]), p.bias ? in(a.inputs[2]) : nullptr,
      p.residual ? in_bf16(a.inputs.back()) : nullptr, out_bf16(a.outputs[0]),
      conv_shape(p, a.inputs[0].shape), env.stream());
}

void backward(const Conv2dParams& p, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  const kernels::Conv2dShape s = conv_shape(p, a.inputs[0].shape);
  const __nv_bfloat16* dy = in_bf16(a.grad_outputs[0]);
  if (a.grad_inputs[0].tensor.defined())
    kernels::conv2d_bf16_backward_data(dy, in_bf16(a.inputs[1]), grad_bf16(a.grad_inputs[0]), s,
                                       a.grad_inputs[0].accumulate, env.stream());
  // dw and db are fp32; zeroed here when overwritten, so the kernel adds.
  float* dw = begin_adding_grad(a.grad_inputs[1], env.stream());
  float* db = p.bias ? begin_adding_grad(a.grad_inputs[2], env.stream()) : nullptr;
  if (dw) {
    const size_t bytes = kernels::conv2d_bf16_workspace_bytes(s);
    kernels::conv2d_bf16_backward_filter(in_bf16(a.inputs[0]), dy, dw, db, s, /*accumulate=*/true,
                                         env.workspace(bytes), bytes, env.stream());
  } else if (db) {
    const int64_t rows = s.out_pixels();
    kernels::column_sum_add_bf16(
        dy, db, rows, s.out_channels,
        env.workspace(kernels::column_sum_bf16_workspace_bytes(rows, s.out_channels)),
        env.stream());
  }
  if (p.residual) residual_backward(a.grad_outputs[0], a.grad_inputs.back(), env.stream());
}

// ---- linear -----------------------------------------------------------------------

size_t workspace_bytes(const LinearParams& p, std::span<const Shape> inputs, bool training,
                       const OpEnv&) {
  const int64_t rows = inputs[0].rows(), in_f = inputs[0].back(), out_f = p.out_features;
  size_t bytes = kernels::gemm_bf16_workspace_bytes(rows, out_f, in_f);
  if (training) {
    bytes = std::max({bytes, kernels::gemm_bf16_workspace_bytes(rows, in_f, out_f),
                      kernels::gemm_bf16_workspace_bytes(out_f, in_f, rows)});
    if (p.bias) bytes = std::max(bytes, kernels::column_sum_bf16_workspace_bytes(rows, out_f));
  }
  return bytes;
}

// y [rows, out] = x W^T + b (+ r): with a residual, y starts as a copy of r
// and the GEMM adds to it (in fp32, one bf16 rounding).
void forward(const LinearParams& p, const ForwardArgs& a, OpEnv& env) {
  const Shape& xs = a.inputs[0].shape;
  const int64_t rows = xs.rows(), in_f = xs.back();
  const int64_t part = p.out_features / p.weight_parts * in_f;
  const __nv_bfloat16* w = stacked(p, linear_weight_slot(p, 0), part, "weight",
                                   [&](size_t s) { return in_bf16(a.inputs[s]); });
  const float* b = p.bias ? stacked(p, linear_bias_slot(p, 0), p.out_features / p.weight_parts,
                                    "bias", [&](size_t s) { return in(a.inputs[s]); })
                          : nullptr;
  __nv_bfloat16* y = out_bf16(a.outputs[0]);
  if (p.residual) {
    const __nv_bfloat16* r = in_bf16(a.inputs.back());
    if (r != y)
      DDPM_CUDA_CHECK(
          cudaMemcpyAsync(y, r, a.outputs[0].bytes(), cudaMemcpyDeviceToDevice, env.stream()));
  }
  kernels::gemm_bf16(
      false, true, rows, p.out_features, in_f, in_bf16(a.inputs[0]), w, b, y, p.residual,
      env.workspace(kernels::gemm_bf16_workspace_bytes(rows, p.out_features, in_f)), env.stream());
}

// dx (+)= dy W (bf16); dW (+)= dy^T x (fp32); db += column sums of dy (fp32);
// dr (+)= dy.
void backward(const LinearParams& p, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  const Shape& xs = a.inputs[0].shape;
  const int64_t rows = xs.rows(), in_f = xs.back(), out_f = p.out_features;
  const int64_t part_out = out_f / p.weight_parts;
  const __nv_bfloat16* dy = in_bf16(a.grad_outputs[0]);
  if (a.grad_inputs[0].tensor.defined()) {
    const __nv_bfloat16* w = stacked(p, linear_weight_slot(p, 0), part_out * in_f, "weight",
                                     [&](size_t s) { return in_bf16(a.inputs[s]); });
    kernels::gemm_bf16(false, false, rows, in_f, out_f, dy, w, nullptr, grad_bf16(a.grad_inputs[0]),
                       a.grad_inputs[0].accumulate,
                       env.workspace(kernels::gemm_bf16_workspace_bytes(rows, in_f, out_f)),
                       env.stream());
  }
  const size_t w0 = linear_weight_slot(p, 0);
  if (float* dw = stacked(p, w0, part_out * in_f, "weight gradient",
                          [&](size_t s) { return grad(a.grad_inputs[s]); }))
    kernels::gemm_bf16(true, false, out_f, in_f, rows, dy, in_bf16(a.inputs[0]), nullptr, dw,
                       a.grad_inputs[w0].accumulate,
                       env.workspace(kernels::gemm_bf16_workspace_bytes(out_f, in_f, rows)),
                       env.stream());
  if (p.bias) {
    const size_t b0 = linear_bias_slot(p, 0);
    float* db =
        stacked(p, b0, part_out, "bias gradient", [&](size_t s) { return grad(a.grad_inputs[s]); });
    if (db) {
      for (int64_t i = 0; i < p.weight_parts; ++i)
        begin_adding_grad(a.grad_inputs[b0 + size_t(i)], env.stream());
      kernels::column_sum_add_bf16(
          dy, db, rows, out_f, env.workspace(kernels::column_sum_bf16_workspace_bytes(rows, out_f)),
          env.stream());
    }
  }
  if (p.residual) residual_backward(a.grad_outputs[0], a.grad_inputs.back(), env.stream());
}

// ---- attention --------------------------------------------------------------------

namespace {

std::array<const __nv_bfloat16*, 3> qkv_inputs(const AttentionParams& p,
                                               std::span<const Tensor> inputs) {
  if (p.packed_qkv) return qkv_blocks<const __nv_bfloat16>(p, in_bf16(inputs[0]));
  return {in_bf16(inputs[0]), in_bf16(inputs[1]), in_bf16(inputs[2])};
}

__nv_bfloat16* maybe_grad(const GradTensor& g) {
  return g.tensor.defined() ? grad_bf16(g) : nullptr;
}

}  // namespace

size_t workspace_bytes(const AttentionParams& p, std::span<const Shape> inputs, bool training,
                       const OpEnv&) {
  return training ? kernels::attention_bf16_workspace_bytes(attention_shape(p, inputs[0])) : 0;
}

void forward(const AttentionParams& p, const ForwardArgs& a, OpEnv& env) {
  const auto qkv = qkv_inputs(p, a.inputs);
  kernels::attention_bf16_forward(qkv[0], qkv[1], qkv[2], out_bf16(a.outputs[0]), out(a.outputs[1]),
                                  attention_shape(p, a.inputs[0].shape), float(attention_scale(p)),
                                  env.stream());
}

void backward(const AttentionParams& p, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  const kernels::AttentionShape s = attention_shape(p, a.inputs[0].shape);
  void* ws = env.workspace(kernels::attention_bf16_workspace_bytes(s));
  const auto qkv = qkv_inputs(p, a.inputs);
  const size_t k_slot = p.packed_qkv ? 0 : 1, v_slot = p.packed_qkv ? 0 : 2;
  const std::array<__nv_bfloat16*, 3> g =
      p.packed_qkv ? qkv_blocks<__nv_bfloat16>(p, maybe_grad(a.grad_inputs[0]))
                   : std::array<__nv_bfloat16*, 3>{maybe_grad(a.grad_inputs[0]),
                                                   maybe_grad(a.grad_inputs[1]),
                                                   maybe_grad(a.grad_inputs[2])};
  const bool acc[3] = {a.grad_inputs[0].accumulate, a.grad_inputs[k_slot].accumulate,
                       a.grad_inputs[v_slot].accumulate};
  auto run = [&](__nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv) {
    kernels::attention_bf16_backward(
        qkv[0], qkv[1], qkv[2], in_bf16(a.outputs[0]), in(a.outputs[1]), in_bf16(a.grad_outputs[0]),
        dq, dk, dv, s, float(attention_scale(p)), acc[0], acc[1], acc[2], ws, env.stream());
  };
  auto same = [](const void* x, const void* y) { return x != nullptr && x == y; };
  if (!same(g[0], g[1]) && !same(g[0], g[2]) && !same(g[1], g[2])) {
    run(g[0], g[1], g[2]);
    return;
  }
  // q, k and v share a value: one launch per gradient, in slot order.
  if (g[0]) run(g[0], nullptr, nullptr);
  if (g[1]) run(nullptr, g[1], nullptr);
  if (g[2]) run(nullptr, nullptr, g[2]);
}

// ---- group_norm -------------------------------------------------------------------

size_t workspace_bytes(const GroupNormParams& p, std::span<const Shape> inputs, bool,
                       const OpEnv&) {
  return kernels::group_norm_bf16_workspace_bytes(group_norm_shape(p, inputs[0]));
}

void forward(const GroupNormParams& p, const ForwardArgs& a, OpEnv& env) {
  const kernels::GroupNormShape s = group_norm_shape(p, a.inputs[0].shape);
  const float* add = p.channel_add ? in(a.inputs[group_norm_channel_add_slot(p)]) : nullptr;
  kernels::group_norm_forward_bf16(in_bf16(a.inputs[0]), add, p.affine ? in(a.inputs[1]) : nullptr,
                                   p.affine ? in(a.inputs[2]) : nullptr, out_bf16(a.outputs[0]),
                                   out(a.outputs[1]), out(a.outputs[2]), s, float(p.eps), p.silu,
                                   env.workspace(kernels::group_norm_bf16_workspace_bytes(s)),
                                   env.stream());
}

void backward(const GroupNormParams& p, const BackwardArgs& a, OpEnv& env) {
  if (no_upstream_gradient(a, env.stream())) return;
  const kernels::GroupNormShape s = group_norm_shape(p, a.inputs[0].shape);
  void* ws = env.workspace(kernels::group_norm_bf16_workspace_bytes(s));
  const float* gamma = p.affine ? in(a.inputs[1]) : nullptr;
  const float* beta = p.affine ? in(a.inputs[2]) : nullptr;
  const size_t add_slot = group_norm_channel_add_slot(p);
  const float* add = p.channel_add ? in(a.inputs[add_slot]) : nullptr;
  __nv_bfloat16* dx = a.grad_inputs[0].tensor.defined() ? grad_bf16(a.grad_inputs[0]) : nullptr;
  float* dgamma = p.affine ? begin_adding_grad(a.grad_inputs[1], env.stream()) : nullptr;
  float* dbeta = p.affine ? begin_adding_grad(a.grad_inputs[2], env.stream()) : nullptr;
  float* dadd = p.channel_add ? grad(a.grad_inputs[add_slot]) : nullptr;
  const bool acc_add = p.channel_add && a.grad_inputs[add_slot].accumulate;
  auto run = [&](__nv_bfloat16* dx_part, float* dgamma_part, float* dbeta_part, float* dadd_part) {
    kernels::group_norm_backward_bf16(in_bf16(a.inputs[0]), add, gamma, beta, in(a.outputs[1]),
                                      in(a.outputs[2]), in_bf16(a.grad_outputs[0]), dx_part,
                                      dadd_part, dgamma_part, dbeta_part, s, p.silu,
                                      a.grad_inputs[0].accumulate, acc_add, ws, env.stream());
  };
  // dx (bf16) and dadd (fp32) never share memory; gamma and beta can (one
  // value in both slots): then one launch each, in slot order.
  if (same_memory(dgamma, dbeta)) {
    if (dx || dadd) run(dx, nullptr, nullptr, dadd);
    run(nullptr, dgamma, nullptr, nullptr);
    run(nullptr, nullptr, dbeta, nullptr);
  } else {
    run(dx, dgamma, dbeta, dadd);
  }
}

}  // namespace ddpm::cuda::bf16
