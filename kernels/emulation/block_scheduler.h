// Runs one block at a time on the calling OS thread: its CUDA threads are
// fibers, and __syncthreads() and warp operations pass a baton between them.
// A waiting fiber switches straight to the next runnable one; the last to
// arrive checks that everyone it waited for is at the same barrier or warp
// operation, completes it, and carries on running. No runnable fiber while
// some have not exited means the block can never finish: that, and every
// inconsistency found on the way, aborts the block with a message naming the
// kernel, the block and the threads. Internal to the runtime.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "emulator.h"
#include "fiber.h"

namespace ddpm::emu::detail {

class BlockScheduler;

enum class ThreadState : std::uint8_t { kRunnable, kAtBarrier, kAtWarpOp, kExited };

// One cp.async a CUDA thread issued and has not yet performed (async_copy_model.cpp).
struct PendingAsyncCopy {
  void* dst;        // shared memory, poisoned until the copy is performed
  const void* src;  // global memory, read only when the copy is performed
  unsigned cp_size;
  unsigned src_size;  // bytes read from src; the rest of cp_size is zero-filled
};

// A CUDA thread's cp.async state: its committed groups, oldest first, then
// the copies issued since its last commit. Emptied at every block start and
// end: copies a block never waited for are dropped, as on a GPU, where they
// would land in shared memory that dies with the block.
struct AsyncCopyQueue {
  std::vector<PendingAsyncCopy> copies;  // committed groups' copies, then uncommitted ones
  std::vector<std::size_t> group_ends;   // per committed group: one past its last copy

  void clear() {
    copies.clear();
    group_ends.clear();
  }
};

// One CUDA thread: a fiber (kept across blocks) and its state in the block.
struct CudaThread {
  FiberContext context;
  std::unique_ptr<FiberStack> stack;
  BlockScheduler* scheduler = nullptr;
  bool named = false;  // for TSan's reports, once its fiber exists

  uint3 index{};        // its threadIdx
  unsigned linear = 0;  // x + y * blockDim.x + z * blockDim.x * blockDim.y
  ThreadState state = ThreadState::kRunnable;
  WarpRequest* request = nullptr;   // kAtWarpOp: what it waits with
  const char* wait_file = nullptr;  // kAtBarrier: where it waits
  unsigned wait_line = 0;

  // Addresses for TSan's happens-before edges (their contents are unused):
  // a thread releases `arrived` when it reaches a barrier, warp operation or
  // its end; the thread completing the operation acquires those and releases
  // each waiter's `woken`, which the waiter acquires when it resumes.
  char arrived = 0;
  char woken = 0;

  AsyncCopyQueue async_copies;
};

class BlockScheduler {
 public:
  explicit BlockScheduler(std::size_t stack_bytes);
  ~BlockScheduler();
  BlockScheduler(const BlockScheduler&) = delete;
  BlockScheduler& operator=(const BlockScheduler&) = delete;

  // Runs every CUDA thread of one block to its end. Returns "" or the message
  // of the error that aborted the block.
  std::string run_block(const KernelBody& body, uint3 block_index, dim3 block_dim, dim3 grid_dim);

  // The scheduler of the block running on this OS thread (null outside kernels).
  static BlockScheduler* current();

  // Entry points for kernel code (always on one of this scheduler's fibers).
  int barrier(BarrierKind kind, int predicate, const char* file, unsigned line);
  void warp_exchange(WarpRequest& request);
  unsigned active_lanes() const;
  CudaThread& running_thread() { return *running_; }
  // Records the error and unwinds the running fiber's frames to its start,
  // from where it returns to the worker; the block's other fibers are dropped.
  [[noreturn]] void abort_block(const std::string& message);

  std::uint64_t fiber_switches() const { return switches_; }

  // For the stack overflow report (async-signal-safe).
  bool is_guard_page(const void* address) const;
  const char* kernel_name() const;
  std::size_t stack_bytes() const { return stack_bytes_; }

 private:
  // Thrown by abort_block to unwind the running fiber's kernel frames; not a
  // std::exception, so kernel code does not catch it by accident.
  struct BlockAborted {};

  static void thread_main(void* cuda_thread);
  // Runs the kernel for one CUDA thread and retires it; false if the block was aborted.
  bool run_thread(CudaThread& self);
  void retire(CudaThread& self);
  [[noreturn]] void leave_exited(CudaThread& self);
  [[noreturn]] void leave_aborted();
  void set_error(const std::string& message);  // keeps the first

  CudaThread& thread(unsigned warp, unsigned lane) { return *threads_[warp * 32 + lane]; }
  CudaThread* next_runnable(unsigned after) const;
  // Gives the baton to the next runnable thread (or, once all have exited,
  // back to the worker); returns when `self` is resumed.
  void pass_baton(CudaThread& self);
  void resume(CudaThread& from, CudaThread& to, bool from_exits);

  bool try_complete_warp_op(unsigned warp, const WarpRequest& lead);
  void compute_warp_results(unsigned warp, unsigned participants);
  void check_no_warp_op_waits_for(const CudaThread& self, const char* file, unsigned line);

  std::string describe_threads(const std::vector<unsigned>& linear) const;
  std::string describe_deadlock() const;
  std::string threads_where(ThreadState state) const;
  std::string describe_threads_at_barrier() const;

  std::size_t stack_bytes_;
  std::vector<char> signal_stack_;  // where the overflow report runs
  FiberContext native_;             // the worker's own context, where a finished block returns
  std::vector<std::unique_ptr<CudaThread>> threads_;  // grown to the largest block seen

  // The running block.
  const KernelBody* body_ = nullptr;
  uint3 block_index_{};
  dim3 block_dim_{};
  unsigned count_ = 0;
  CudaThread* running_ = nullptr;
  unsigned exited_ = 0;
  std::vector<unsigned> live_lanes_;    // per warp: lanes that exist and have not exited
  std::vector<unsigned> warp_waiting_;  // per warp: lanes waiting at a warp operation
  unsigned barrier_arrived_ = 0;
  BarrierKind barrier_kind_{};
  const char* barrier_file_ = nullptr;
  unsigned barrier_line_ = 0;
  int barrier_true_ = 0;    // threads with a true predicate at this barrier
  int barrier_result_ = 0;  // what __syncthreads_count/and/or returns
  std::string error_;
  std::uint64_t switches_ = 0;
};

// Shared by the scheduler's sources (block_scheduler.cpp, warp_exchange.cpp,
// block_diagnostics.cpp).
BlockScheduler& running_scheduler(const char* intrinsic);  // throws outside a kernel
std::string site(const char* file, unsigned line);         // "file:line"
bool same_site(const char* file_a, unsigned line_a, const char* file_b, unsigned line_b);
std::string hex_mask(unsigned mask);                  // "0x0000ffff"
std::string describe_op(const WarpRequest& request);  // "__shfl_sync (file:line, mask ...)"
// Installs (once per process) the SIGSEGV handler that names a fiber stack
// overflow; each worker also needs an alternate signal stack.
void install_stack_overflow_report();

}  // namespace ddpm::emu::detail
