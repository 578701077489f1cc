// Shared memory of the blocks a worker thread runs. Internal to the runtime.
//
// Static __shared__ variables are thread_local (cuda_emulation.h), so they live
// in the executable's TLS block of the worker thread and would carry one
// block's values into the next. At each block start the worker fills the
// zero-initialized part of that TLS block (.tbss: every static __shared__
// variable, with no initializer, lands there) with 0xFF bytes, so a read of
// shared memory the block has not written gives NaN / -1 as on no real GPU but
// visibly. Nothing else of the executable's zero-initialized thread_locals is
// used on a worker thread (the emulator resets its own after the fill); the C++
// runtime and sanitizers keep theirs in their own shared libraries. The fill
// is skipped, with one warning, if libstdc++ was linked statically (its
// exception state would then sit in that block), and can be turned off with
// DDPM_EMU_POISON_STATIC_SHARED=0.
//
// Dynamic shared memory (DDPM_DYNAMIC_SHARED) is a heap region of exactly the
// launch's shmem_bytes, 0xFF-filled at each block start: AddressSanitizer
// reports any access past its end.
#pragma once

#include <cstddef>

namespace ddpm::emu::detail {

enum class SharedRange : unsigned char { kInside, kOutside, kUnknown };

// Whether [address, address + bytes) lies in the shared memory of the block
// running on this worker thread: inside its dynamic region, or inside the
// main program's zero-initialized TLS (where every static __shared__ variable
// lives, together with a few of the emulator's own thread_locals, so a write
// to those passes: the check is for pointers into global or local memory).
// kUnknown when that TLS range could not be found (see below).
SharedRange classify_shared(const void* address, std::size_t bytes);

class BlockSharedMemory {
 public:
  BlockSharedMemory();  // on the worker thread it serves
  ~BlockSharedMemory();
  BlockSharedMemory(const BlockSharedMemory&) = delete;
  BlockSharedMemory& operator=(const BlockSharedMemory&) = delete;

  // Sizes the dynamic region for a launch.
  void prepare_launch(std::size_t dynamic_bytes);
  // Poisons static and dynamic shared memory for a new block and publishes the
  // dynamic region to dynamic_shared_base().
  void start_block();

  SharedRange classify(const void* address, std::size_t bytes) const;

 private:
  void release_dynamic();

  unsigned char* static_begin_ = nullptr;  // this thread's .tbss range, if poisoned
  std::size_t static_bytes_ = 0;
  unsigned char* tbss_begin_ = nullptr;  // this thread's .tbss range, if found (poisoned or not)
  std::size_t tbss_bytes_ = 0;
  unsigned char* dynamic_ = nullptr;
  std::size_t dynamic_bytes_ = 0;
  bool dynamic_allocated_ = false;
};

}  // namespace ddpm::emu::detail
