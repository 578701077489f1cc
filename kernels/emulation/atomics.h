// CUDA atomics and fences for the emulator. Blocks run on several OS threads,
// so atomics are real: std::atomic_ref with relaxed order (CUDA's atomics are
// relaxed; a relaxed order also keeps TSan from inventing happens-before edges
// that would hide shared-memory races). 16-bit and paired types (__half,
// __nv_bfloat16, __half2, __nv_bfloat162) add by compare-and-swap on the raw
// bits, rounding the sum once as the GPU does. Included by cuda_emulation.h.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace ddpm::emu::detail {

template <class T>
std::atomic_ref<T> atomic_at(T* address) {
  return std::atomic_ref<T>(*address);
}

constexpr auto kRelaxed = std::memory_order_relaxed;

// Applies `update(old) -> new` atomically to a value of type T stored as the
// same-sized unsigned integer Bits; returns the old value.
template <class Bits, class T, class Update>
T atomic_update_bits(T* address, Update update) {
  static_assert(sizeof(Bits) == sizeof(T));
  std::atomic_ref<Bits> bits(*reinterpret_cast<Bits*>(address));
  Bits expected = bits.load(kRelaxed);
  for (;;) {
    // void* casts: CUDA's half types are bitwise copyable but declare their own
    // copy assignment, which -Wclass-memaccess would flag.
    T old;
    std::memcpy(static_cast<void*>(&old), &expected, sizeof(T));
    const T desired_value = update(old);
    Bits desired;
    std::memcpy(&desired, static_cast<const void*>(&desired_value), sizeof(T));
    if (bits.compare_exchange_weak(expected, desired, kRelaxed, kRelaxed)) return old;
  }
}

template <class T>
T atomic_max(T* address, T value) {
  auto a = atomic_at(address);
  T old = a.load(kRelaxed);
  while (old < value && !a.compare_exchange_weak(old, value, kRelaxed, kRelaxed)) {
  }
  return old;
}

template <class T>
T atomic_min(T* address, T value) {
  auto a = atomic_at(address);
  T old = a.load(kRelaxed);
  while (value < old && !a.compare_exchange_weak(old, value, kRelaxed, kRelaxed)) {
  }
  return old;
}

template <class T>
T atomic_cas(T* address, T compare, T value) {
  atomic_at(address).compare_exchange_strong(compare, value, kRelaxed, kRelaxed);
  return compare;  // holds the old value whether or not the swap happened
}

}  // namespace ddpm::emu::detail

// clang-format off
// ---- Add, subtract, exchange ---------------------------------------------------
#define DDPM_EMU_ATOMIC_FETCH(name, T, method)                        \
  inline T name(T* address, T value) {                                \
    return ddpm::emu::detail::atomic_at(address).method(value,        \
                                                        ddpm::emu::detail::kRelaxed); \
  }
DDPM_EMU_ATOMIC_FETCH(atomicAdd, int, fetch_add)
DDPM_EMU_ATOMIC_FETCH(atomicAdd, unsigned, fetch_add)
DDPM_EMU_ATOMIC_FETCH(atomicAdd, unsigned long long, fetch_add)
DDPM_EMU_ATOMIC_FETCH(atomicAdd, float, fetch_add)
DDPM_EMU_ATOMIC_FETCH(atomicAdd, double, fetch_add)
DDPM_EMU_ATOMIC_FETCH(atomicSub, int, fetch_sub)
DDPM_EMU_ATOMIC_FETCH(atomicSub, unsigned, fetch_sub)
DDPM_EMU_ATOMIC_FETCH(atomicExch, int, exchange)
DDPM_EMU_ATOMIC_FETCH(atomicExch, unsigned, exchange)
DDPM_EMU_ATOMIC_FETCH(atomicExch, unsigned long long, exchange)
DDPM_EMU_ATOMIC_FETCH(atomicExch, float, exchange)
DDPM_EMU_ATOMIC_FETCH(atomicAnd, int, fetch_and)
DDPM_EMU_ATOMIC_FETCH(atomicAnd, unsigned, fetch_and)
DDPM_EMU_ATOMIC_FETCH(atomicAnd, unsigned long long, fetch_and)
DDPM_EMU_ATOMIC_FETCH(atomicOr, int, fetch_or)
DDPM_EMU_ATOMIC_FETCH(atomicOr, unsigned, fetch_or)
DDPM_EMU_ATOMIC_FETCH(atomicOr, unsigned long long, fetch_or)
DDPM_EMU_ATOMIC_FETCH(atomicXor, int, fetch_xor)
DDPM_EMU_ATOMIC_FETCH(atomicXor, unsigned, fetch_xor)
DDPM_EMU_ATOMIC_FETCH(atomicXor, unsigned long long, fetch_xor)
#undef DDPM_EMU_ATOMIC_FETCH

inline __half atomicAdd(__half* address, __half value) {
  return ddpm::emu::detail::atomic_update_bits<std::uint16_t>(
      address,
      [value](__half old) { return __float2half_rn(__half2float(old) + __half2float(value)); });
}
inline __nv_bfloat16 atomicAdd(__nv_bfloat16* address, __nv_bfloat16 value) {
  return ddpm::emu::detail::atomic_update_bits<std::uint16_t>(
      address, [value](__nv_bfloat16 old) {
        return __float2bfloat16_rn(__bfloat162float(old) + __bfloat162float(value));
      });
}
// The paired forms are atomic per 16-bit half on the GPU; atomic as a whole here.
inline __half2 atomicAdd(__half2* address, __half2 value) {
  return ddpm::emu::detail::atomic_update_bits<std::uint32_t>(
      address, [value](__half2 old) { return __hadd2(old, value); });
}
inline __nv_bfloat162 atomicAdd(__nv_bfloat162* address, __nv_bfloat162 value) {
  return ddpm::emu::detail::atomic_update_bits<std::uint32_t>(
      address, [value](__nv_bfloat162 old) { return __hadd2(old, value); });
}

// ---- Min, max, compare-and-swap, wrapping increment ----------------------------
#define DDPM_EMU_ATOMIC_MINMAX(T)                          \
  inline T atomicMax(T* address, T value) {                \
    return ddpm::emu::detail::atomic_max(address, value);  \
  }                                                        \
  inline T atomicMin(T* address, T value) {                \
    return ddpm::emu::detail::atomic_min(address, value);  \
  }
DDPM_EMU_ATOMIC_MINMAX(int)
DDPM_EMU_ATOMIC_MINMAX(unsigned)
DDPM_EMU_ATOMIC_MINMAX(long long)
DDPM_EMU_ATOMIC_MINMAX(unsigned long long)
#undef DDPM_EMU_ATOMIC_MINMAX

inline int atomicCAS(int* address, int compare, int value) {
  return ddpm::emu::detail::atomic_cas(address, compare, value);
}
inline unsigned atomicCAS(unsigned* address, unsigned compare, unsigned value) {
  return ddpm::emu::detail::atomic_cas(address, compare, value);
}
inline unsigned long long atomicCAS(unsigned long long* address, unsigned long long compare,
                                    unsigned long long value) {
  return ddpm::emu::detail::atomic_cas(address, compare, value);
}
inline unsigned short atomicCAS(unsigned short* address, unsigned short compare,
                                unsigned short value) {
  return ddpm::emu::detail::atomic_cas(address, compare, value);
}

// ((old >= limit) ? 0 : old + 1) and ((old == 0 || old > limit) ? limit : old - 1).
inline unsigned atomicInc(unsigned* address, unsigned limit) {
  return ddpm::emu::detail::atomic_update_bits<unsigned>(
      address, [limit](unsigned old) { return old >= limit ? 0u : old + 1; });
}
inline unsigned atomicDec(unsigned* address, unsigned limit) {
  return ddpm::emu::detail::atomic_update_bits<unsigned>(
      address, [limit](unsigned old) { return (old == 0 || old > limit) ? limit : old - 1; });
}

// Block- and system-scoped variants: every emulated atomic is process-wide.
#define DDPM_EMU_ATOMIC_SCOPED(name)                                    \
  template <class T, class... Rest>                                     \
  T name##_block(T* address, Rest... rest) { return name(address, rest...); } \
  template <class T, class... Rest>                                     \
  T name##_system(T* address, Rest... rest) { return name(address, rest...); }
DDPM_EMU_ATOMIC_SCOPED(atomicAdd)
DDPM_EMU_ATOMIC_SCOPED(atomicSub)
DDPM_EMU_ATOMIC_SCOPED(atomicExch)
DDPM_EMU_ATOMIC_SCOPED(atomicMax)
DDPM_EMU_ATOMIC_SCOPED(atomicMin)
DDPM_EMU_ATOMIC_SCOPED(atomicCAS)
DDPM_EMU_ATOMIC_SCOPED(atomicAnd)
DDPM_EMU_ATOMIC_SCOPED(atomicOr)
DDPM_EMU_ATOMIC_SCOPED(atomicXor)
#undef DDPM_EMU_ATOMIC_SCOPED

// clang-format on

// ---- Fences ---------------------------------------------------------------------
// Threads of one block share an OS thread, so only cross-block ordering needs a
// fence. ThreadSanitizer cannot model standalone fences (g++ warns under
// -fsanitize=thread), so there they are compiler barriers only, and a
// fence-then-flag handshake between blocks may be reported as a race.
inline void __threadfence() {
#if defined(__SANITIZE_THREAD__)
  std::atomic_signal_fence(std::memory_order_seq_cst);
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}
inline void __threadfence_block() {
  std::atomic_signal_fence(std::memory_order_seq_cst);
}
inline void __threadfence_system() {
  __threadfence();
}
