// Chooses the f32 fast path's kernel table (isa.h) from what the CPU
// supports and what this build compiled (x86-64 builds compile the AVX-512
// and AVX2 tables; others use the reference code).
#include "engine/cpu/fast/isa.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace ddpm::cpu::fast {

#if DDPM_CPU_X86_KERNELS
namespace avx512 {
const Kernels& table();
}
namespace avx2 {
const Kernels& table();
}
#endif

namespace {

bool supported(Isa isa) {
  switch (isa) {
    case Isa::none:
      return true;
#if DDPM_CPU_X86_KERNELS
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("fma");
#endif
    default:
      return false;
  }
}

const Kernels* table(Isa isa) {
  switch (isa) {
#if DDPM_CPU_X86_KERNELS
    case Isa::avx2:
      return &avx2::table();
    case Isa::avx512:
      return &avx512::table();
#endif
    default:
      return nullptr;
  }
}

Isa parse(const std::string& name) {
  for (Isa i : {Isa::none, Isa::avx2, Isa::avx512})
    if (name == isa_name(i)) return i;
  throw std::invalid_argument("DDPM_CPU_ISA='" + name + "': expected none, avx2 or avx512");
}

Isa initial_isa() {
  const char* env = std::getenv("DDPM_CPU_ISA");
  if (!env || !*env) return best_isa();
  const Isa want = parse(env);
  if (!supported(want))
    throw std::invalid_argument(std::string("DDPM_CPU_ISA=") + env +
                                ": this CPU or build does not support it (best: " +
                                isa_name(best_isa()) + ")");
  return want;
}

std::atomic<const Kernels*>& current() {
  static std::atomic<const Kernels*> k{table(initial_isa())};
  return k;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::none:
      return "none";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
  }
  return "?";
}

Isa best_isa() {
  for (Isa i : {Isa::avx512, Isa::avx2})
    if (supported(i)) return i;
  return Isa::none;
}

const Kernels* kernels() {
  return current().load(std::memory_order_acquire);
}

void set_isa(Isa isa) {
  if (!supported(isa))
    throw std::invalid_argument(std::string("set_isa: this CPU or build lacks ") + isa_name(isa));
  current().store(table(isa), std::memory_order_release);
}

Isa active_isa() {
  const Kernels* k = kernels();
  return k ? k->isa : Isa::none;
}

}  // namespace ddpm::cpu::fast
