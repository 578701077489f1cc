// Per-block poisoning of static and dynamic shared memory (see shared_memory.h).
#include "shared_memory.h"

#include <cuda_runtime.h>
#include <cxxabi.h>
#include <link.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>

#include "block_scheduler.h"
#include "emulator.h"

namespace ddpm::emu::detail {

namespace {

// Zero-initialized, so the static shared fill overwrites them; start_block sets
// them after the fill.
thread_local unsigned char* t_dynamic_shared = nullptr;
thread_local const BlockSharedMemory* t_block_shared = nullptr;

constexpr std::align_val_t kDynamicAlignment{128};

struct TlsSegment {
  bool found = false;
  std::size_t initialized_bytes = 0;  // .tdata
  std::size_t total_bytes = 0;        // .tdata + .tbss
  unsigned char* data = nullptr;      // the calling thread's copy
};

int find_main_program_tls(dl_phdr_info* info, std::size_t, void* out) {
  auto& segment = *static_cast<TlsSegment*>(out);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& header = info->dlpi_phdr[i];
    if (header.p_type != PT_TLS) continue;
    segment.found = true;
    segment.initialized_bytes = header.p_filesz;
    segment.total_bytes = header.p_memsz;
    segment.data = static_cast<unsigned char*>(info->dlpi_tls_data);
  }
  return 1;  // the main program is reported first: stop there
}

bool static_poisoning_requested() {
  const char* setting = std::getenv("DDPM_EMU_POISON_STATIC_SHARED");
  return !setting || std::strcmp(setting, "0") != 0;
}

void warn_once(const char* why) {
  static std::once_flag once;
  std::call_once(once, [why] {
    std::fprintf(stderr, "ddpm emulator: static __shared__ memory is not poisoned per block: %s\n",
                 why);
  });
}

bool contains(const unsigned char* begin, std::size_t bytes, const void* address) {
  const auto* a = static_cast<const unsigned char*>(address);
  return a >= begin && a < begin + bytes;
}

}  // namespace

BlockSharedMemory::BlockSharedMemory() {
  TlsSegment segment;
  dl_iterate_phdr(&find_main_program_tls, &segment);
  const bool poison = static_poisoning_requested();
  if (!segment.found || !segment.data || segment.total_bytes <= segment.initialized_bytes) {
    if (poison) warn_once("the main program has no zero-initialized thread_local storage");
    return;
  }
  unsigned char* begin = segment.data + segment.initialized_bytes;
  const std::size_t bytes = segment.total_bytes - segment.initialized_bytes;
  if (!contains(begin, bytes, &t_dynamic_shared)) {
    if (poison)
      warn_once("the emulator (and so probably the kernels) is not linked into the main program");
    return;
  }
  tbss_begin_ = begin;
  tbss_bytes_ = bytes;
  if (!poison) return;
  if (contains(begin, bytes, abi::__cxa_get_globals())) {
    warn_once("libstdc++ is linked statically; its exception state shares that storage");
    return;
  }
  static_begin_ = begin;
  static_bytes_ = bytes;
}

BlockSharedMemory::~BlockSharedMemory() {
  release_dynamic();
}

void BlockSharedMemory::release_dynamic() {
  if (dynamic_allocated_) ::operator delete(dynamic_, kDynamicAlignment);
  dynamic_ = nullptr;
  dynamic_allocated_ = false;
}

void BlockSharedMemory::prepare_launch(std::size_t dynamic_bytes) {
  if (dynamic_allocated_ && dynamic_bytes == dynamic_bytes_) return;
  release_dynamic();
  // Exactly the requested size (even 0): ASan's redzones then start where the
  // kernel's dynamic shared memory ends.
  dynamic_ = static_cast<unsigned char*>(::operator new(dynamic_bytes, kDynamicAlignment));
  dynamic_bytes_ = dynamic_bytes;
  dynamic_allocated_ = true;
}

void BlockSharedMemory::start_block() {
  if (static_bytes_ != 0) std::memset(static_begin_, 0xFF, static_bytes_);
  if (dynamic_bytes_ != 0) std::memset(dynamic_, 0xFF, dynamic_bytes_);
  t_dynamic_shared = dynamic_;
  t_block_shared = this;
}

SharedRange BlockSharedMemory::classify(const void* address, std::size_t bytes) const {
  const auto within = [&](const unsigned char* begin, std::size_t size) {
    const auto* a = static_cast<const unsigned char*>(address);
    return begin != nullptr && a >= begin && bytes <= size &&
           a - begin <= std::ptrdiff_t(size - bytes);
  };
  if (within(dynamic_, dynamic_bytes_) || within(tbss_begin_, tbss_bytes_))
    return SharedRange::kInside;
  return tbss_begin_ ? SharedRange::kOutside : SharedRange::kUnknown;
}

SharedRange classify_shared(const void* address, std::size_t bytes) {
  if (!BlockScheduler::current() || !t_block_shared) return SharedRange::kUnknown;
  return t_block_shared->classify(address, bytes);
}

void* dynamic_shared_base() {
  if (!BlockScheduler::current())
    throw std::logic_error("ddpm emulator: dynamic shared memory used outside an emulated kernel");
  return t_dynamic_shared;
}

}  // namespace ddpm::emu::detail
