// Block scheduling for the emulator: runs a block's CUDA threads as fibers,
// passes the baton at __syncthreads, checks barriers for divergence, and
// aborts a block cleanly (see block_scheduler.h). Warp operations are in
// warp_exchange.cpp, messages and the stack overflow report in
// block_diagnostics.cpp.
#include "block_scheduler.h"

#include <signal.h>

#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>

#include "sanitizer_hooks.h"

namespace ddpm::emu::detail {

namespace {

// Zero-initialized, so the per-block poisoning of static shared memory (every
// zero-initialized thread_local) overwrites it: run_block sets it every time.
thread_local BlockScheduler* t_scheduler = nullptr;

constexpr unsigned kFullWarp = 0xffffffffu;

// Sanitizers report a SIGSEGV themselves.
constexpr bool kReportOverflow = !san::kAsan && !san::kTsan;

}  // namespace

BlockScheduler& running_scheduler(const char* intrinsic) {
  if (!t_scheduler)
    throw std::logic_error(std::string("ddpm emulator: ") + intrinsic +
                           " called outside an emulated kernel");
  return *t_scheduler;
}

BlockScheduler::BlockScheduler(std::size_t stack_bytes) : stack_bytes_(stack_bytes) {
  init_native_context(native_);
  if (kReportOverflow) {
    install_stack_overflow_report();
    signal_stack_.resize(64 * 1024);
    stack_t alternate{};
    alternate.ss_sp = signal_stack_.data();
    alternate.ss_size = signal_stack_.size();
    sigaltstack(&alternate, nullptr);
  }
}

BlockScheduler::~BlockScheduler() {
  if (kReportOverflow) {
    stack_t disable{};
    disable.ss_flags = SS_DISABLE;
    sigaltstack(&disable, nullptr);
  }
}

BlockScheduler* BlockScheduler::current() {
  return t_scheduler;
}

std::string BlockScheduler::run_block(const KernelBody& body, uint3 block_index, dim3 block_dim,
                                      dim3 grid_dim) {
  t_scheduler = this;
  body_ = &body;
  block_index_ = block_index;
  block_dim_ = block_dim;
  count_ = block_dim.x * block_dim.y * block_dim.z;
  ::blockIdx = block_index;
  ::blockDim = block_dim;
  ::gridDim = grid_dim;

  while (threads_.size() < count_) {
    auto t = std::make_unique<CudaThread>();
    t->scheduler = this;
    t->stack = std::make_unique<FiberStack>(stack_bytes_);
    threads_.push_back(std::move(t));
  }
  const unsigned warps = (count_ + 31) / 32;
  live_lanes_.assign(warps, kFullWarp);
  if (count_ % 32 != 0) live_lanes_.back() = (1u << (count_ % 32)) - 1;
  warp_waiting_.assign(warps, 0);
  exited_ = 0;
  barrier_arrived_ = 0;
  error_.clear();

  for (unsigned i = 0; i < count_; ++i) {
    CudaThread& t = *threads_[i];
    t.linear = i;
    t.index =
        uint3{i % block_dim.x, (i / block_dim.x) % block_dim.y, i / (block_dim.x * block_dim.y)};
    t.state = ThreadState::kRunnable;
    t.request = nullptr;
    t.async_copies.clear();
    prepare_fiber(t.context, *t.stack, &thread_main, &t);
    if (san::kTsan && !t.named) {
      const std::string name = "cuda thread " + std::to_string(i);
      name_fiber(t.context, name.c_str());
      t.named = true;
    }
    // The worker's setup (poisoned shared memory, bound arguments) happens
    // before every thread of the block.
    san::release(&t.woken);
  }

  running_ = threads_[0].get();
  ::threadIdx = running_->index;
  ++switches_;
  switch_fiber(native_, running_->context);

  // Back here once every thread has exited, or the block was aborted. The
  // block's writes happen before whatever this worker runs next.
  for (unsigned i = 0; i < count_; ++i) {
    san::acquire(&threads_[i]->arrived);
    // Copies never waited for point into this block's shared memory: drop them.
    threads_[i]->async_copies.clear();
  }
  running_ = nullptr;
  t_scheduler = nullptr;
  return error_;
}

void BlockScheduler::thread_main(void* cuda_thread) {
  fiber_entered();
  CudaThread& self = *static_cast<CudaThread*>(cuda_thread);
  BlockScheduler& scheduler = *self.scheduler;
  san::acquire(&self.woken);
  // Nothing that owns memory may be alive in this frame when the fiber leaves:
  // its stack is abandoned, not unwound.
  if (scheduler.run_thread(self)) {
    scheduler.leave_exited(self);
  } else {
    scheduler.leave_aborted();
  }
}

bool BlockScheduler::run_thread(CudaThread& self) {
  // Handlers end before the fiber switches away: one left active would stay on
  // this OS thread's exception stack, which all its fibers share.
  try {
    body_->invoke(body_->bound);
    retire(self);
    return true;
  } catch (const BlockAborted&) {
    return false;  // the message is recorded; the kernel's frames are unwound
  } catch (const std::exception& e) {
    set_error("exception escaped the kernel in " + describe_threads({self.linear}) + ": " +
              e.what());
  } catch (...) {
    set_error("an exception of unknown type escaped the kernel in " +
              describe_threads({self.linear}));
  }
  return false;
}

void BlockScheduler::retire(CudaThread& self) {
  self.state = ThreadState::kExited;
  ++exited_;
  const unsigned warp = self.linear / 32;
  live_lanes_[warp] &= ~(1u << (self.linear % 32));
  san::release(&self.arrived);
  if (barrier_arrived_ > 0)
    abort_block("divergent __syncthreads: " + describe_threads({self.linear}) +
                " exited while the barrier at " + site(barrier_file_, barrier_line_) + " holds " +
                describe_threads_at_barrier() +
                " (every thread of a block must reach each barrier)");
  // Lanes that waited for this thread at a warp operation may now be complete.
  for (unsigned to_try = warp_waiting_[warp]; to_try != 0; to_try &= to_try - 1) {
    const unsigned lane = std::countr_zero(to_try);
    if ((warp_waiting_[warp] >> lane) & 1u) try_complete_warp_op(warp, *thread(warp, lane).request);
  }
}

void BlockScheduler::leave_exited(CudaThread& self) {
  if (CudaThread* next = next_runnable(self.linear)) {
    resume(self, *next, /*from_exits=*/true);
  } else if (exited_ == count_) {
    running_ = nullptr;
    switch_fiber(self.context, native_, /*from_exits=*/true);
  } else {
    set_error(describe_deadlock());
    leave_aborted();
  }
  std::abort();  // an exited fiber is never resumed
}

void BlockScheduler::leave_aborted() {
  CudaThread& self = *running_;
  san::release(&self.arrived);  // its last accesses (and the error) precede the worker's next steps
  running_ = nullptr;
  switch_fiber(self.context, native_, /*from_exits=*/true);
  std::abort();  // an aborted fiber is never resumed
}

CudaThread* BlockScheduler::next_runnable(unsigned after) const {
  for (unsigned i = after + 1; i < count_; ++i)
    if (threads_[i]->state == ThreadState::kRunnable) return threads_[i].get();
  for (unsigned i = 0; i < after; ++i)
    if (threads_[i]->state == ThreadState::kRunnable) return threads_[i].get();
  return nullptr;
}

void BlockScheduler::pass_baton(CudaThread& self) {
  CudaThread* next = next_runnable(self.linear);
  if (!next) abort_block(describe_deadlock());
  resume(self, *next, /*from_exits=*/false);
}

void BlockScheduler::resume(CudaThread& from, CudaThread& to, bool from_exits) {
  running_ = &to;
  ::threadIdx = to.index;
  ++switches_;
  switch_fiber(from.context, to.context, from_exits);
  // `from` runs again: whoever completed its operation released `woken`.
  san::acquire(&from.woken);
}

int BlockScheduler::barrier(BarrierKind kind, int predicate, const char* file, unsigned line) {
  CudaThread& self = *running_;
  if (exited_ > 0) {
    std::string message = "divergent __syncthreads: " + describe_threads({self.linear}) +
                          " reached the barrier at " + site(file, line) + " after " +
                          threads_where(ThreadState::kExited) + " had exited";
    if (barrier_arrived_ > 0)
      message += " (the barrier holds " + describe_threads_at_barrier() + ")";
    abort_block(message + " (every thread of a block must reach each barrier)");
  }
  if (barrier_arrived_ == 0) {
    barrier_kind_ = kind;
    barrier_file_ = file;
    barrier_line_ = line;
    barrier_true_ = 0;
  } else if (kind != barrier_kind_ || !same_site(file, line, barrier_file_, barrier_line_)) {
    abort_block("divergent __syncthreads: " + describe_threads({self.linear}) +
                " reached the barrier at " + site(file, line) + " while the barrier at " +
                site(barrier_file_, barrier_line_) + " holds " + describe_threads_at_barrier());
  }
  const unsigned warp = self.linear / 32;
  if (warp_waiting_[warp] != 0) check_no_warp_op_waits_for(self, file, line);

  barrier_true_ += predicate;
  self.state = ThreadState::kAtBarrier;
  self.wait_file = file;
  self.wait_line = line;
  san::release(&self.arrived);
  if (++barrier_arrived_ < count_) {
    pass_baton(self);
    return barrier_result_;
  }

  // The last to arrive: everyone is here. Wake them all and carry on.
  switch (kind) {
    case BarrierKind::kSync:
      barrier_result_ = 0;
      break;
    case BarrierKind::kCount:
      barrier_result_ = barrier_true_;
      break;
    case BarrierKind::kAnd:
      barrier_result_ = barrier_true_ == int(count_);
      break;
    case BarrierKind::kOr:
      barrier_result_ = barrier_true_ > 0;
      break;
  }
  barrier_arrived_ = 0;
  if constexpr (san::kTsan) {
    for (unsigned i = 0; i < count_; ++i) san::acquire(&threads_[i]->arrived);
  }
  for (unsigned i = 0; i < count_; ++i) {
    CudaThread& t = *threads_[i];
    t.state = ThreadState::kRunnable;
    if (&t != &self) san::release(&t.woken);
  }
  return barrier_result_;
}

void BlockScheduler::set_error(const std::string& message) {
  if (!error_.empty()) return;
  char where[96];
  std::snprintf(where, sizeof where, "' block (%u,%u,%u): ", block_index_.x, block_index_.y,
                block_index_.z);
  error_.append("kernel '").append(body_ ? body_->name : "?").append(where).append(message);
}

void BlockScheduler::abort_block(const std::string& message) {
  if (!running_) throw KernelError("ddpm emulator: " + message);
  set_error(message);
  throw BlockAborted{};
}

// ---- Entry points declared in emulator.h ------------------------------------------

int block_barrier(BarrierKind kind, int predicate, const char* file, unsigned line) {
  return running_scheduler("__syncthreads").barrier(kind, predicate, file, line);
}

void trap(const char* what, const char* file, unsigned line) {
  BlockScheduler& scheduler = running_scheduler(what);
  scheduler.abort_block(std::string(what) + " called at " + site(file, line) + " by thread (" +
                        std::to_string(threadIdx.x) + "," + std::to_string(threadIdx.y) + "," +
                        std::to_string(threadIdx.z) + ")");
}

}  // namespace ddpm::emu::detail
