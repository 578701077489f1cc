// The CPU backend's f32 fast path: the ops of engine/cpu/ops.h built on the
// primitive kernels of isa.h and the thread pool. Each returns false when
// it does not handle the case (then the reference code runs), so the f64
// path, CPUs without AVX2 and unusual shapes keep the reference.
//
// Every fast op is tested against the f64 reference (tests/test_op_fast.cpp),
// and its results are bitwise the same at every thread count.
#pragma once

#include <cstdint>

#include "engine/backend.h"
#include "engine/cpu/fast/isa.h"

namespace ddpm::cpu::fast {

bool forward(const Kernels& k, const Conv2dParams& p, const ForwardArgs& a);
bool backward(const Kernels& k, const Conv2dParams& p, const BackwardArgs& a);
bool forward(const Kernels& k, const LinearParams& p, const ForwardArgs& a);
bool backward(const Kernels& k, const LinearParams& p, const BackwardArgs& a);
bool forward(const Kernels& k, const AttentionParams& p, const ForwardArgs& a);
bool backward(const Kernels& k, const AttentionParams& p, const BackwardArgs& a);
bool forward(const Kernels& k, const GroupNormParams& p, const ForwardArgs& a);
bool backward(const Kernels& k, const GroupNormParams& p, const BackwardArgs& a);

// How many fast ops (forward or backward) have run in this process: tests
// check that a case took the fast path rather than falling back silently.
uint64_t fast_runs();
void count_fast_run();

// Runs the fast op when the dtype is f32, a kernel table is active and the
// op takes the case; true if it ran.
template <typename Params>
bool try_fast(const Params& p, const ForwardArgs& a, DType dtype) {
  const Kernels* k = dtype == DType::f32 ? kernels() : nullptr;
  if (!k || !forward(*k, p, a)) return false;
  count_fast_run();
  return true;
}
template <typename Params>
bool try_fast(const Params& p, const BackwardArgs& a, DType dtype) {
  const Kernels* k = dtype == DType::f32 ? kernels() : nullptr;
  if (!k || !backward(*k, p, a)) return false;
  count_fast_run();
  return true;
}

}  // namespace ddpm::cpu::fast
