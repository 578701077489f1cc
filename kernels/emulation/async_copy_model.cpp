// The emulator's cp.async model (see async_copy_model.h): per CUDA thread
// queues of issued copies, poisoned destinations, copies at the wait.
#include "async_copy_model.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "block_scheduler.h"
#include "sanitizer_hooks.h"
#include "shared_memory.h"

namespace ddpm::emu {

namespace {

using detail::AsyncCopyQueue;
using detail::BlockScheduler;
using detail::PendingAsyncCopy;

std::string describe_copy(const char* problem, const void* dst, const void* src, unsigned cp_size,
                          unsigned src_size) {
  const uint3 thread = detail::running_scheduler("cp.async").running_thread().index;
  char text[320];
  std::snprintf(text, sizeof text,
                "cp.async (async_copy) by thread (%u,%u,%u): %s (shared destination %p, global "
                "source %p, %u bytes, %u read)",
                thread.x, thread.y, thread.z, problem, dst, src, cp_size, src_size);
  return text;
}

// `caller`: the wait's return address in kernel code, where TSan reports put
// the access.
void perform(const PendingAsyncCopy& copy, void* caller) {
  auto* dst = static_cast<unsigned char*>(copy.dst);
  // The waiting thread's accesses, for TSan (the runtime is not instrumented).
  detail::san::tsan_write(dst, copy.cp_size, caller);
  if (copy.src_size > 0) {
    detail::san::tsan_read(copy.src, copy.src_size, caller);
    std::memcpy(dst, copy.src, copy.src_size);
  }
  std::memset(dst + copy.src_size, 0, copy.cp_size - copy.src_size);
}

}  // namespace

void async_copy_issue(void* smem_dst, const void* gmem_src, unsigned cp_size, unsigned src_size) {
  BlockScheduler& scheduler = detail::running_scheduler("cp.async");
  if (cp_size != 4 && cp_size != 8 && cp_size != 16)
    scheduler.abort_block(describe_copy("the copy size must be 4, 8 or 16 bytes", smem_dst,
                                        gmem_src, cp_size, src_size));
  if (src_size > cp_size)
    scheduler.abort_block(describe_copy("the source size exceeds the copy size", smem_dst, gmem_src,
                                        cp_size, src_size));
  const auto misaligned = [cp_size](const void* p) {
    return reinterpret_cast<std::uintptr_t>(p) % cp_size != 0;
  };
  if (misaligned(smem_dst) || misaligned(gmem_src)) {
    const std::string what = std::string(misaligned(smem_dst) ? "the shared destination" : "") +
                             (misaligned(smem_dst) && misaligned(gmem_src) ? " and " : "") +
                             (misaligned(gmem_src) ? "the global source" : "") + " is not " +
                             std::to_string(cp_size) + "-byte aligned";
    scheduler.abort_block(describe_copy(what.c_str(), smem_dst, gmem_src, cp_size, src_size));
  }
  if (detail::classify_shared(smem_dst, cp_size) == detail::SharedRange::kOutside)
    scheduler.abort_block(describe_copy("the destination is not in the block's shared memory",
                                        smem_dst, gmem_src, cp_size, src_size));

  // In flight: the destination holds garbage until the wait (written by the
  // issuing thread, for TSan: overwriting a stage others still read is a race).
  detail::san::tsan_write(smem_dst, cp_size, __builtin_return_address(0));
  std::memset(smem_dst, 0xFF, cp_size);
  scheduler.running_thread().async_copies.copies.push_back(
      PendingAsyncCopy{smem_dst, gmem_src, cp_size, src_size});
}

void async_copy_commit() {
  AsyncCopyQueue& queue =
      detail::running_scheduler("cp.async.commit_group").running_thread().async_copies;
  // An empty group is allowed (PTX: it completes at once) and counts for wait_group.
  queue.group_ends.push_back(queue.copies.size());
}

void async_copy_wait(int n) {
  AsyncCopyQueue& queue =
      detail::running_scheduler("cp.async.wait_group").running_thread().async_copies;
  const std::size_t groups = queue.group_ends.size();
  if (n < 0 || groups <= std::size_t(n)) return;
  const std::size_t done_groups = groups - std::size_t(n);
  const std::size_t done_copies = queue.group_ends[done_groups - 1];
  void* const caller = __builtin_return_address(0);
  for (std::size_t i = 0; i < done_copies; ++i) perform(queue.copies[i], caller);
  queue.copies.erase(queue.copies.begin(), queue.copies.begin() + std::ptrdiff_t(done_copies));
  queue.group_ends.erase(queue.group_ends.begin(),
                         queue.group_ends.begin() + std::ptrdiff_t(done_groups));
  for (std::size_t& end : queue.group_ends) end -= done_copies;
}

}  // namespace ddpm::emu
