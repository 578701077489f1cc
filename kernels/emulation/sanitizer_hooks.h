// The sanitizer annotations the emulator runtime makes, as no-ops in plain
// builds. ASan: fiber-switch notices and (un)poisoning of reused stacks. TSan:
// fiber handles and the happens-before edges added at barriers, warp operations
// and launch turns only (fibers switch with `no_sync`), which turns TSan into a
// checker of shared-memory races between CUDA threads of a block.
// Internal to the runtime.
#pragma once

#include <cstddef>

#if defined(__SANITIZE_THREAD__)
// Instrumented runtime code would have its own bookkeeping (written by one
// fiber, read by another without an edge) reported as races.
#error "Build the emulator runtime without -fsanitize=thread, with DDPM_EMU_TSAN=1"
#endif

#if defined(__SANITIZE_ADDRESS__)
#define DDPM_EMU_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#else
#define DDPM_EMU_ASAN 0
#endif

#if !defined(DDPM_EMU_TSAN)
#define DDPM_EMU_TSAN 0
#endif
#if DDPM_EMU_TSAN
#include <sanitizer/tsan_interface.h>
// Exported by the TSan runtime, not declared by GCC 12's tsan_interface.h.
extern "C" void __tsan_read_range_pc(void* address, unsigned long bytes, void* pc);
extern "C" void __tsan_write_range_pc(void* address, unsigned long bytes, void* pc);
#endif

namespace ddpm::emu::detail::san {

constexpr bool kAsan = DDPM_EMU_ASAN;
constexpr bool kTsan = DDPM_EMU_TSAN;

// Happens-before: a release on `address` is seen by a later acquire on it.
inline void release(void* address) {
#if DDPM_EMU_TSAN
  __tsan_release(address);
#else
  (void)address;
#endif
}
inline void acquire(void* address) {
#if DDPM_EMU_TSAN
  __tsan_acquire(address);
#else
  (void)address;
#endif
}

// A read or write that the (uninstrumented) runtime makes on behalf of the
// running CUDA thread, so TSan checks it against the other threads' accesses;
// `pc` (a return address into kernel code) is where reports place it.
inline void tsan_read(const void* address, std::size_t bytes, void* pc) {
#if DDPM_EMU_TSAN
  __tsan_read_range_pc(const_cast<void*>(address), bytes, pc);
#else
  (void)address, (void)bytes, (void)pc;
#endif
}
inline void tsan_write(void* address, std::size_t bytes, void* pc) {
#if DDPM_EMU_TSAN
  __tsan_write_range_pc(address, bytes, pc);
#else
  (void)address, (void)bytes, (void)pc;
#endif
}

inline void asan_unpoison(const void* address, std::size_t bytes) {
#if DDPM_EMU_ASAN
  __asan_unpoison_memory_region(address, bytes);
#else
  (void)address, (void)bytes;
#endif
}

}  // namespace ddpm::emu::detail::san
