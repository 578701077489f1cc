// Fibers for the emulator runtime: a stack mmap'd with a guard page, and a
// saved machine context switched by a small x86-64 routine (callee-saved
// registers, MXCSR and the x87 control word; 40-80x cheaper than swapcontext,
// which makes a sigprocmask system call) or, with DDPM_EMU_FIBER_UCONTEXT=1 or
// off x86-64, by swapcontext. The sanitizer fiber annotations live here too, so
// the scheduler switches with one call. Internal to the runtime.
#pragma once

#include <cstddef>

#include "sanitizer_hooks.h"

#if !defined(DDPM_EMU_FIBER_UCONTEXT)
#if defined(__x86_64__)
#define DDPM_EMU_FIBER_UCONTEXT 0
#else
#define DDPM_EMU_FIBER_UCONTEXT 1
#endif
#endif

#if DDPM_EMU_FIBER_UCONTEXT
#include <ucontext.h>
#endif

namespace ddpm::emu::detail {

// A fiber stack: `usable_bytes` (rounded up to pages) above one PROT_NONE page,
// so running off the end faults instead of corrupting a neighbour.
class FiberStack {
 public:
  explicit FiberStack(std::size_t usable_bytes);
  ~FiberStack();
  FiberStack(const FiberStack&) = delete;
  FiberStack& operator=(const FiberStack&) = delete;

  void* bottom() const { return usable_; }  // lowest usable address
  std::size_t size() const { return usable_bytes_; }
  bool guard_contains(const void* address) const;

 private:
  void* mapping_ = nullptr;
  std::size_t mapping_bytes_ = 0;
  void* usable_ = nullptr;
  std::size_t usable_bytes_ = 0;
};

// A saved execution context: a fiber, or an OS thread's own ("native") one.
struct FiberContext {
#if DDPM_EMU_FIBER_UCONTEXT
  ucontext_t uc;
  void (*entry)(void*) = nullptr;  // makecontext cannot pass a pointer argument
  void* entry_arg = nullptr;
#else
  void* sp = nullptr;  // the stack pointer saved by the switch routine
#endif
  // Stack bounds, for ASan's switch annotations.
  const void* stack_bottom = nullptr;
  std::size_t stack_size = 0;
  void* asan_fake_stack = nullptr;
  void* tsan_fiber = nullptr;
  bool owns_tsan_fiber = false;

  FiberContext() = default;
  FiberContext(const FiberContext&) = delete;
  FiberContext& operator=(const FiberContext&) = delete;
  ~FiberContext();
};

// Makes `native` describe the calling OS thread (its stack, its TSan fiber).
void init_native_context(FiberContext& native);

// Prepares `context` to run entry(arg) from the top of `stack` when next
// switched to. Reusable: any earlier, abandoned frames on the stack are dropped.
void prepare_fiber(FiberContext& context, FiberStack& stack, void (*entry)(void*), void* arg);

// Switches from the running context `from` to `to`. With `from_exits`, `from`
// will never be resumed (lets ASan release its fake stack).
void switch_fiber(FiberContext& from, FiberContext& to, bool from_exits = false);

// The first call of every fiber entry function (completes ASan's switch).
void fiber_entered();

// Names a prepared fiber in TSan's reports ("cuda thread 37"); no-op elsewhere.
void name_fiber(FiberContext& context, const char* name);

}  // namespace ddpm::emu::detail
