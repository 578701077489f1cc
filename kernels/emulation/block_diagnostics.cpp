// What the emulator's block scheduler says when a block goes wrong: thread
// lists, warp operation and deadlock descriptions, and the report of a fiber
// stack overflow (see block_scheduler.h).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "block_scheduler.h"

namespace ddpm::emu::detail {

std::string hex_mask(unsigned mask) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", mask);
  return text;
}

std::string site(const char* file, unsigned line) {
  return std::string(file) + ":" + std::to_string(line);
}

std::string describe_op(const WarpRequest& r) {
  return std::string(r.name) + " (" + site(r.file, r.line) + ", mask " + hex_mask(r.mask) + ")";
}

bool same_site(const char* file_a, unsigned line_a, const char* file_b, unsigned line_b) {
  return line_a == line_b && (file_a == file_b || std::strcmp(file_a, file_b) == 0);
}

namespace {

// ---- A fiber stack overflow names itself instead of a bare SIGSEGV ----------------
// A kernel that runs off its fiber stack faults on the guard page below it
// (-fstack-clash-protection keeps big frames from jumping over). The handler,
// on an alternate signal stack since the fiber's own is exhausted, says what
// happened, restores the previous SIGSEGV disposition and returns: the fault
// repeats and ends the process as before. Sanitizer builds keep their reports.

struct sigaction previous_segv_action;

void write_text(const char* text) {
  for (std::size_t left = std::strlen(text); left > 0;) {
    const ssize_t n = write(STDERR_FILENO, text, left);
    if (n <= 0) return;
    text += n, left -= static_cast<std::size_t>(n);
  }
}

void on_segv(int, siginfo_t* info, void*) {
  const BlockScheduler* scheduler = BlockScheduler::current();
  if (scheduler && scheduler->is_guard_page(info->si_addr)) {
    char kb[24];
    std::size_t i = sizeof kb - 1, value = scheduler->stack_bytes() / 1024;
    kb[i] = '\0';
    do kb[--i] = static_cast<char>('0' + value % 10);
    while ((value /= 10) != 0);
    write_text("ddpm emulator: a CUDA thread of kernel '");
    write_text(scheduler->kernel_name());
    write_text("' overflowed its ");
    write_text(kb + i);
    write_text(
        " KB fiber stack; raise DDPM_EMU_STACK_KB or call ddpm::emu::set_fiber_stack_bytes\n");
  }
  sigaction(SIGSEGV, &previous_segv_action, nullptr);
}

}  // namespace

void install_stack_overflow_report() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action {};
    action.sa_sigaction = &on_segv;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, &previous_segv_action);
  });
}

bool BlockScheduler::is_guard_page(const void* address) const {
  for (unsigned i = 0; i < count_; ++i)
    if (threads_[i]->stack->guard_contains(address)) return true;
  return false;
}

const char* BlockScheduler::kernel_name() const {
  return body_ ? body_->name : "?";
}

std::string BlockScheduler::describe_threads(const std::vector<unsigned>& linear) const {
  // snprintf rather than "(" + std::to_string(...): g++ 12 warns falsely
  // (-Wrestrict) on a literal prepended to a std::string.
  const auto one = [this](unsigned i) {
    const uint3 t = threads_[i]->index;
    char text[48];
    std::snprintf(text, sizeof text, "(%u,%u,%u)", t.x, t.y, t.z);
    return std::string(text);
  };
  if (linear.size() == 1) return std::string("thread ").append(one(linear[0]));
  std::string text = std::to_string(linear.size()) + " threads";
  std::size_t ranges = 0;
  for (std::size_t i = 0; i < linear.size();) {
    std::size_t j = i;
    while (j + 1 < linear.size() && linear[j + 1] == linear[j] + 1) ++j;
    if (++ranges > 6) {
      text += " ...";
      break;
    }
    text.append(ranges == 1 ? " " : ", ").append(one(linear[i]));
    if (j > i) text.append("-").append(one(linear[j]));
    i = j + 1;
  }
  return text;
}

std::string BlockScheduler::threads_where(ThreadState state) const {
  std::vector<unsigned> linear;
  for (unsigned i = 0; i < count_; ++i)
    if (threads_[i]->state == state) linear.push_back(i);
  return describe_threads(linear);
}

std::string BlockScheduler::describe_threads_at_barrier() const {
  return threads_where(ThreadState::kAtBarrier);
}

std::string BlockScheduler::describe_deadlock() const {
  std::map<std::string, std::vector<unsigned>> groups;
  for (unsigned i = 0; i < count_; ++i) {
    const CudaThread& t = *threads_[i];
    switch (t.state) {
      case ThreadState::kAtBarrier:
        groups["wait at __syncthreads (" + site(t.wait_file, t.wait_line) + ")"].push_back(i);
        break;
      case ThreadState::kAtWarpOp:
        groups["wait at " + describe_op(*t.request)].push_back(i);
        break;
      case ThreadState::kExited:
        groups["have exited"].push_back(i);
        break;
      case ThreadState::kRunnable:
        groups["are runnable"].push_back(i);
        break;
    }
  }
  std::string text = "deadlock: no thread can proceed:";
  for (const auto& [what, linear] : groups)
    text.append(" ").append(describe_threads(linear)).append(" ").append(what).append(";");
  return text;
}

}  // namespace ddpm::emu::detail
