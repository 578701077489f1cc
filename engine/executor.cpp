#include "engine/executor.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "engine/checkpoint/half_float.h"
#include "engine/random.h"

namespace ddpm {

Executor::Executor(const Graph& graph, Backend& backend, ExecMode mode)
    : graph_(graph), backend_(backend), mode_(mode), plan_(plan_memory(graph, mode)) {
  const size_t elem = dtype_size(graph.dtype);
  const size_t param_bytes = static_cast<size_t>(graph.param_buffer_elements) * elem;
  const size_t copy_bytes =
      graph.has_parameter_copy()
          ? static_cast<size_t>(graph.param_buffer_elements) * dtype_size(DType::bf16)
          : 0;
  const size_t planned =
      plan_.peak_bytes + param_bytes * (mode == ExecMode::training ? 2 : 1) + copy_bytes;
  if (graph.activation_dtype != graph.dtype && backend.device() == Device::cpu)
    throw std::invalid_argument(std::string("the CPU backend computes in f32 and f64; a graph "
                                            "with ") +
                                dtype_name(graph.activation_dtype) +
                                " activations needs a CUDA device (or --precision fp32)");
  // Said before allocating: a CPU allocation past the memory may succeed
  // (overcommit) and be killed later instead of failing.
  auto too_big = [&](const std::string& cause) {
    return OutOfMemoryError(std::string(mode == ExecMode::training ? "training" : "inference") +
                            " with this model "
                            "and batch needs " +
                            std::to_string(planned >> 20) + " MiB of " + backend.name() +
                            " memory" + " (activations " + std::to_string(plan_.peak_bytes >> 20) +
                            " MiB, parameters" +
                            (mode == ExecMode::training ? " and gradients " : " ") +
                            std::to_string((planned - plan_.peak_bytes) >> 20) + " MiB): " + cause +
                            ". Use a smaller batch (--batch) or model");
  };
  const size_t available = backend.available_memory();
  if (planned > available)
    throw too_big("only " + std::to_string(available >> 20) + " MiB are available");
  try {
    arena_ = DeviceBuffer(backend, plan_.peak_bytes);
    params_ = DeviceBuffer(backend, param_bytes);
    if (mode == ExecMode::training) grads_ = DeviceBuffer(backend, params_.bytes());
    if (copy_bytes) params_copy_ = DeviceBuffer(backend, copy_bytes);
  } catch (const OutOfMemoryError& e) {
    throw too_big(e.what());
  } catch (const std::bad_alloc&) {
    throw too_big("the allocation failed");
  }
  if (grads_.bytes()) backend.fill_zero(grads_.data(), grads_.bytes());
  if (params_.bytes()) backend.fill_zero(params_.data(), params_.bytes());
  if (params_copy_.bytes()) backend.fill_zero(params_copy_.data(), params_copy_.bytes());
}

void Executor::check_value(ValueId v) const {
  if (v < 0 || static_cast<size_t>(v) >= graph_.values.size())
    throw std::out_of_range("executor: no value with id " + std::to_string(v));
}

Tensor Executor::view(ValueId v, void* base, int64_t byte_offset, DType dtype) const {
  const Value& val = graph_.values[static_cast<size_t>(v)];
  return Tensor{static_cast<char*>(base) + byte_offset, val.shape, dtype, backend_.device()};
}

Tensor Executor::master(ValueId v) const {
  const Value& val = graph_.values[static_cast<size_t>(v)];
  return view(v, params_.data(), val.param_offset * static_cast<int64_t>(dtype_size(graph_.dtype)),
              graph_.dtype);
}

Tensor Executor::value(ValueId v) const {
  check_value(v);
  const Value& val = graph_.values[static_cast<size_t>(v)];
  if (val.kind == ValueKind::parameter) {
    if (val.dtype == graph_.dtype) return master(v);
    return view(v, params_copy_.data(),
                val.param_offset * static_cast<int64_t>(dtype_size(val.dtype)), val.dtype);
  }
  return view(v, arena_.data(), plan_.value_offset[static_cast<size_t>(v)], val.dtype);
}

Tensor Executor::grad(ValueId v) const {
  check_value(v);
  if (mode_ != ExecMode::training)
    throw std::logic_error("executor: gradients exist only in training mode");
  const Value& val = graph_.values[static_cast<size_t>(v)];
  if (val.kind == ValueKind::parameter && val.requires_grad)
    return view(v, grads_.data(), val.param_offset * static_cast<int64_t>(dtype_size(graph_.dtype)),
                graph_.dtype);
  if (plan_.grad_offset[static_cast<size_t>(v)] < 0)
    throw std::logic_error("executor: value '" + val.name + "' has no gradient");
  return view(v, arena_.data(), plan_.grad_offset[static_cast<size_t>(v)], val.dtype);
}

Tensor Executor::parameters() const {
  return Tensor{params_.data(), Shape{graph_.param_buffer_elements}, graph_.dtype,
                backend_.device()};
}

Tensor Executor::gradients() const {
  if (mode_ != ExecMode::training)
    throw std::logic_error("executor: gradients exist only in training mode");
  return Tensor{grads_.data(), Shape{graph_.param_buffer_elements}, graph_.dtype,
                backend_.device()};
}

Tensor Executor::parameter_copy() const {
  return Tensor{params_copy_.data(), Shape{graph_.param_buffer_elements}, DType::bf16,
                backend_.device()};
}

void Executor::refresh_parameter_copy() {
  if (params_copy_.data()) backend_.convert(parameters(), parameter_copy());
}

void Executor::init_parameters(uint64_t seed) {
  const auto params = graph_.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const Value& val = graph_.values[static_cast<size_t>(params[i])];
    const auto n = static_cast<size_t>(val.shape.numel());
    std::vector<double> host(n, val.init.value);
    if (val.init.kind == ParamInit::Kind::uniform) {
      Philox rng(seed, /*stream=*/i);
      for (double& x : host) x = (2 * rng.uniform() - 1) * val.init.value;
    }
    write(params[i], host);
  }
}

void Executor::write_host(const Tensor& t, const std::vector<double>& data) const {
  if (t.dtype == DType::f32) {
    const std::vector<float> f(data.begin(), data.end());
    backend_.copy_from_host(t.data, f.data(), t.bytes());
  } else if (t.dtype == DType::f64) {
    backend_.copy_from_host(t.data, data.data(), t.bytes());
  } else if (t.dtype == DType::bf16) {
    std::vector<uint16_t> h(data.size());
    for (size_t i = 0; i < h.size(); ++i) h[i] = f32_to_bf16_bits(static_cast<float>(data[i]));
    backend_.copy_from_host(t.data, h.data(), t.bytes());
  } else {
    throw std::logic_error(std::string("executor: cannot write ") + dtype_name(t.dtype));
  }
}

template <typename T>
void Executor::write(ValueId v, const std::vector<T>& data) {
  const Tensor t = value(v);
  if (data.size() != static_cast<size_t>(t.numel()))
    throw std::invalid_argument("executor: writing " + std::to_string(data.size()) +
                                " numbers into '" + graph_.values[static_cast<size_t>(v)].name +
                                "' of shape " + t.shape.str());
  // Through float first in an f32 graph, so a double reaches a bf16 copy as
  // the master's float rounded once more (what refresh_parameter_copy gives).
  std::vector<double> d(data.size());
  for (size_t i = 0; i < d.size(); ++i)
    d[i] = graph_.dtype == DType::f32 ? double(float(data[i])) : double(data[i]);
  if (graph_.values[static_cast<size_t>(v)].kind == ValueKind::parameter && t.dtype != graph_.dtype)
    write_host(master(v), d);
  write_host(t, d);
}

template <typename T>
std::vector<T> Executor::read(const Tensor& t) const {
  const auto n = static_cast<size_t>(t.numel());
  if (t.dtype == DType::f32) {
    std::vector<float> f(n);
    backend_.copy_to_host(f.data(), t.data, t.bytes());
    return std::vector<T>(f.begin(), f.end());
  }
  if (t.dtype == DType::f64) {
    std::vector<double> d(n);
    backend_.copy_to_host(d.data(), t.data, t.bytes());
    return std::vector<T>(d.begin(), d.end());
  }
  if (t.dtype == DType::bf16) {
    std::vector<uint16_t> h(n);
    backend_.copy_to_host(h.data(), t.data, t.bytes());
    std::vector<T> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<T>(bf16_bits_to_f32(h[i]));
    return out;
  }
  throw std::logic_error(std::string("executor: cannot read ") + dtype_name(t.dtype));
}

template void Executor::write(ValueId, const std::vector<float>&);
template void Executor::write(ValueId, const std::vector<double>&);
template std::vector<float> Executor::read(const Tensor&) const;
template std::vector<double> Executor::read(const Tensor&) const;

void Executor::expect_finite(const Tensor& t, const std::string& what) const {
  if (!t.data || t.numel() == 0) return;
  const std::vector<double> v = read<double>(t);
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]))
      throw NumericsError("--check-numerics: " + what + " holds " + std::to_string(v[i]) +
                          " at element " + std::to_string(i) + " of " + std::to_string(v.size()) +
                          " (every value before it was finite)");
}

void Executor::forward(const RunContext& ctx_in) {
  RunContext ctx = ctx_in;
  ctx.training = mode_ == ExecMode::training;
  if (check_numerics_) {
    for (ValueId v : graph_.parameters())
      expect_finite(value(v), "parameter '" + graph_.values[size_t(v)].name + "'");
    for (ValueId v : graph_.inputs())
      expect_finite(value(v), "input '" + graph_.values[size_t(v)].name + "'");
  }
  std::vector<Tensor> ins, outs;
  for (size_t i = 0; i < graph_.nodes.size(); ++i) {
    if (plan_.elided[i]) continue;  // an identity whose output is its input's memory
    const Node& n = graph_.nodes[i];
    ins.clear();
    outs.clear();
    for (ValueId v : n.inputs) ins.push_back(value(v));
    for (ValueId v : n.outputs) outs.push_back(value(v));
    backend_.forward(n, ForwardArgs{ins, outs, ctx});
    if (check_numerics_)
      for (size_t s = 0; s < outs.size(); ++s)
        expect_finite(outs[s], "the forward of '" + n.name + "' (" + op_name(n.params) +
                                   ") wrote its output '" +
                                   graph_.values[size_t(n.outputs[s])].name + "', which");
  }
}

void Executor::backward(const RunContext& ctx_in, bool accumulate_param_grads) {
  if (mode_ != ExecMode::training) throw std::logic_error("executor: backward needs training mode");
  RunContext ctx = ctx_in;
  ctx.training = true;
  const BackwardAnalysis& a = plan_.backward;
  if (!accumulate_param_grads && grads_.bytes()) backend_.fill_zero(grads_.data(), grads_.bytes());
  if (!a.needs_grad[static_cast<size_t>(graph_.loss)]) return;  // nothing trainable reaches it

  backend_.set_to_one(grad(graph_.loss));  // d loss / d loss

  std::vector<Tensor> ins, outs, gouts;
  std::vector<GradTensor> gins;
  for (size_t i = graph_.nodes.size(); i-- > 0;) {
    if (!a.runs_backward[i]) continue;
    const Node& n = graph_.nodes[i];
    ins.clear();
    outs.clear();
    gouts.clear();
    gins.clear();
    for (size_t s = 0; s < n.inputs.size(); ++s) {
      const ValueId v = n.inputs[s];
      const bool saved = n.signature.saved_inputs & bit(static_cast<int>(s));
      const Value& val = graph_.values[static_cast<size_t>(v)];
      ins.push_back(saved ? value(v) : Tensor{nullptr, val.shape, val.dtype, backend_.device()});
      gins.push_back(a.needs_grad[static_cast<size_t>(v)] ? GradTensor{grad(v), a.accumulate[i][s]}
                                                          : GradTensor{});
    }
    for (size_t s = 0; s < n.outputs.size(); ++s) {
      const ValueId v = n.outputs[s];
      const bool saved = n.signature.saved_outputs & bit(static_cast<int>(s));
      const Value& val = graph_.values[static_cast<size_t>(v)];
      const Tensor undefined{nullptr, val.shape, val.dtype, backend_.device()};
      outs.push_back(saved ? value(v) : undefined);
      gouts.push_back(a.needs_grad[static_cast<size_t>(v)] ? grad(v) : undefined);
    }
    backend_.backward(n, BackwardArgs{ins, outs, gouts, gins, ctx});
    if (check_numerics_)
      for (size_t s = 0; s < gins.size(); ++s)
        expect_finite(gins[s].tensor, "the backward of '" + n.name + "' (" + op_name(n.params) +
                                          ") wrote the gradient of '" +
                                          graph_.values[size_t(n.inputs[s])].name + "', which");
  }
}

}  // namespace ddpm
