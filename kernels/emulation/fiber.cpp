// Fiber stacks, context preparation and switching, with the ASan and TSan fiber
// annotations (see fiber.h).
#include "fiber.h"

#include "emulator_api.h"

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>

#if !DDPM_EMU_FIBER_UCONTEXT
// fiber_switch_x86_64.cpp
extern "C" void ddpm_emu_switch_stack(void** save_sp, void* load_sp);
extern "C" void ddpm_emu_fiber_trampoline();
#endif

namespace ddpm::emu::detail {

namespace {

std::size_t page_bytes() {
  static const std::size_t bytes = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return bytes;
}

}  // namespace

FiberStack::FiberStack(std::size_t usable_bytes) {
  const std::size_t page = page_bytes();
  usable_bytes_ = (usable_bytes + page - 1) / page * page;
  mapping_bytes_ = usable_bytes_ + page;
  // NORESERVE: only the pages a kernel actually touches cost memory.
  mapping_ = mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (mapping_ == MAP_FAILED) {
    mapping_ = nullptr;
    throw std::bad_alloc();
  }
  // Stacks grow down: the guard page is the lowest one.
  if (mprotect(mapping_, page, PROT_NONE) != 0) {
    munmap(mapping_, mapping_bytes_);
    throw std::runtime_error("ddpm emulator: cannot protect a fiber stack guard page");
  }
  usable_ = static_cast<char*>(mapping_) + page;
}

FiberStack::~FiberStack() {
  if (mapping_) munmap(mapping_, mapping_bytes_);
}

bool FiberStack::guard_contains(const void* address) const {
  const auto a = reinterpret_cast<std::uintptr_t>(address);
  const auto guard = reinterpret_cast<std::uintptr_t>(mapping_);
  return a >= guard && a < guard + page_bytes();
}

FiberContext::~FiberContext() {
#if DDPM_EMU_TSAN
  if (owns_tsan_fiber && tsan_fiber) __tsan_destroy_fiber(tsan_fiber);
#endif
}

void init_native_context(FiberContext& native) {
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void* bottom = nullptr;
    std::size_t size = 0;
    if (pthread_attr_getstack(&attr, &bottom, &size) == 0) {
      native.stack_bottom = bottom;
      native.stack_size = size;
    }
    pthread_attr_destroy(&attr);
  }
#if DDPM_EMU_TSAN
  native.tsan_fiber = __tsan_get_current_fiber();
  native.owns_tsan_fiber = false;
#endif
}

#if DDPM_EMU_FIBER_UCONTEXT
namespace {
// makecontext passes int arguments only: the context pointer goes in two halves.
void ucontext_start(unsigned low, unsigned high) {
  auto* context = reinterpret_cast<FiberContext*>((std::uintptr_t(high) << 32) | low);
  context->entry(context->entry_arg);
  std::abort();  // entry functions switch away for good; they never return
}
}  // namespace
#endif

void prepare_fiber(FiberContext& context, FiberStack& stack, void (*entry)(void*), void* arg) {
  context.stack_bottom = stack.bottom();
  context.stack_size = stack.size();
  // Frames abandoned by an aborted block may have left ASan stack redzones.
  san::asan_unpoison(stack.bottom(), stack.size());
#if DDPM_EMU_TSAN
  if (!context.tsan_fiber) {
    context.tsan_fiber = __tsan_create_fiber(0);
    context.owns_tsan_fiber = true;
  }
#endif
#if DDPM_EMU_FIBER_UCONTEXT
  context.entry = entry;
  context.entry_arg = arg;
  if (getcontext(&context.uc) != 0) throw std::runtime_error("ddpm emulator: getcontext failed");
  context.uc.uc_stack.ss_sp = stack.bottom();
  context.uc.uc_stack.ss_size = stack.size();
  context.uc.uc_link = nullptr;
  const auto bits = reinterpret_cast<std::uintptr_t>(&context);
  makecontext(&context.uc, reinterpret_cast<void (*)()>(&ucontext_start), 2,
              static_cast<unsigned>(bits & 0xffffffffu), static_cast<unsigned>(bits >> 32));
#else
  // The frame ddpm_emu_switch_stack pops: MXCSR and x87 control word, r15, r14,
  // r13 (arg), r12 (entry), rbx, rbp (0 ends frame-pointer walks), and the
  // return address: the trampoline, which calls entry(arg) on a 16-byte
  // aligned stack.
  auto top =
      (reinterpret_cast<std::uintptr_t>(stack.bottom()) + stack.size()) & ~std::uintptr_t{15};
  top -= 16;
  auto* frame = reinterpret_cast<std::uint64_t*>(top - 64);
  const std::uint32_t mxcsr = __builtin_ia32_stmxcsr();
  std::uint16_t x87_control = 0;
  asm volatile("fnstcw %0" : "=m"(x87_control));
  frame[0] = mxcsr | (std::uint64_t{x87_control} << 32);
  frame[1] = 0;
  frame[2] = 0;
  frame[3] = reinterpret_cast<std::uint64_t>(arg);
  frame[4] = reinterpret_cast<std::uint64_t>(entry);
  frame[5] = 0;
  frame[6] = 0;
  frame[7] = reinterpret_cast<std::uint64_t>(&ddpm_emu_fiber_trampoline);
  context.sp = frame;
#endif
}

void switch_fiber(FiberContext& from, FiberContext& to, bool from_exits) {
#if DDPM_EMU_ASAN
  __sanitizer_start_switch_fiber(from_exits ? nullptr : &from.asan_fake_stack, to.stack_bottom,
                                 to.stack_size);
#else
  (void)from_exits;
#endif
#if DDPM_EMU_TSAN
  __tsan_switch_to_fiber(to.tsan_fiber, __tsan_switch_to_fiber_no_sync);
#endif
#if DDPM_EMU_FIBER_UCONTEXT
  swapcontext(&from.uc, &to.uc);
#else
  ddpm_emu_switch_stack(&from.sp, to.sp);
#endif
  // Here `from` runs again, switched back to by someone.
#if DDPM_EMU_ASAN
  __sanitizer_finish_switch_fiber(from.asan_fake_stack, nullptr, nullptr);
#endif
}

void name_fiber(FiberContext& context, const char* name) {
#if DDPM_EMU_TSAN
  if (context.tsan_fiber) __tsan_set_fiber_name(context.tsan_fiber, name);
#else
  (void)context, (void)name;
#endif
}

void fiber_entered() {
#if DDPM_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
}

}  // namespace ddpm::emu::detail

const char* ddpm::emu::fiber_implementation() {
  return DDPM_EMU_FIBER_UCONTEXT ? "ucontext" : "x86-64 asm";
}
