// The CPU backend's thread pool (thread_pool.h). Workers wait for a loop by
// spinning briefly (consecutive ops start microseconds apart), then sleep on
// a condition variable, so an idle engine takes no CPU from other processes.
// Not std::atomic::wait: GCC 12's libstdc++ lost a notify_all there (a worker
// slept through the pool's stop, hanging the process at exit).
#include "engine/cpu/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace ddpm::cpu {

namespace {

void relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// How long a thread spins before sleeping: longer than the gap between two
// ops of a step (a few microseconds of executor work), short enough that an
// idle pool costs nothing measurable on a loaded machine.
constexpr auto kSpin = std::chrono::microseconds(50);

// Spins until pred() or kSpin elapsed; true if pred() held.
template <typename Pred>
bool spin_until(Pred pred) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (pred()) return true;
      relax();
    }
    if (std::chrono::steady_clock::now() - start > kSpin) return pred();
  }
}

int env_threads(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return end && *end == '\0' && n >= 1 && n <= 1024 ? int(n) : 0;
}

int default_threads() {
  if (int n = env_threads("DDPM_CPU_THREADS")) return n;
  if (int n = env_threads("OMP_NUM_THREADS")) return n;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

thread_local bool in_task = false;

// A loop is a job: the caller publishes it (fn_, n_, next_), opens it in
// state_ and bumps epoch_ to wake the workers. A worker joins by counting
// itself into state_ while the job is open; the caller, out of tasks, closes
// it and waits only for the workers that joined. A worker that wakes late
// finds the job closed and goes back to waiting, so a descheduled worker
// never delays a loop it took no part in.
class Pool {
 public:
  explicit Pool(int threads) { start(threads); }
  ~Pool() { stop(); }

  int threads() const { return int(workers_.size()) + 1; }

  void resize(int threads) {
    std::lock_guard<std::mutex> lock(run_mutex_);
    stop();
    start(threads);
  }

  void run(int64_t n, const std::function<void(int64_t)>& fn) {
    if (n <= 0) return;
    std::unique_lock<std::mutex> lock(run_mutex_, std::try_to_lock);
    if (n == 1 || in_task || workers_.empty() || !lock.owns_lock()) {
      for (int64_t i = 0; i < n; ++i) fn(i);
      return;
    }
    fn_ = &fn;
    n_ = n;
    error_ = nullptr;
    next_.store(0, std::memory_order_relaxed);
    const uint32_t e = epoch_.load(std::memory_order_relaxed) + 1;
    state_.store(pack(e, true, 0), std::memory_order_release);
    epoch_.store(e, std::memory_order_release);
    wake_workers();
    work();
    const uint64_t s = state_.fetch_and(~kOpen, std::memory_order_acq_rel) & ~kOpen;
    const auto all_left = [&] { return count(state_.load(std::memory_order_acquire)) == 0; };
    if (count(s) != 0 && !spin_until(all_left)) {
      std::unique_lock<std::mutex> sleep(sleep_mutex_);
      done_.wait(sleep, all_left);
    }
    fn_ = nullptr;
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  static constexpr uint64_t kOpen = uint64_t(1) << 32;
  static uint64_t pack(uint32_t epoch, bool open, uint32_t joined) {
    return (uint64_t(epoch) << 33) | (open ? kOpen : 0) | joined;
  }
  static uint32_t count(uint64_t s) { return uint32_t(s); }

  void start(int threads) {
    stopping_ = false;
    // The epoch the workers start from is read here, not in the new thread:
    // a thread scheduled late would otherwise miss the loops (and the stop)
    // published before it ran, and sleep through them.
    const uint32_t epoch = epoch_.load(std::memory_order_acquire);
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, epoch] { worker(epoch); });
  }

  // The atomic changed before; taking the mutex orders this notify after a
  // sleeper's check of its predicate, so no wakeup is lost.
  void wake_workers() {
    { std::lock_guard<std::mutex> sleep(sleep_mutex_); }
    wake_.notify_all();
  }

  void stop() {
    stopping_ = true;
    epoch_.fetch_add(1, std::memory_order_release);
    wake_workers();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
  }

  // Claims indices until none is left.
  void work() {
    in_task = true;
    for (int64_t i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < n_;) {
      try {
        (*fn_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
        next_.store(n_, std::memory_order_relaxed);  // skip what has not started
      }
    }
    in_task = false;
  }

  // Counts this worker into job `e` if it is still open.
  bool join(uint32_t e) {
    const uint64_t open_e = pack(e, true, 0);
    uint64_t s = state_.load(std::memory_order_acquire);
    while ((s & ~uint64_t(0xffffffff)) == open_e)
      if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) return true;
    return false;
  }

  void worker(uint32_t seen) {
    for (;;) {
      const auto started = [&] { return epoch_.load(std::memory_order_acquire) != seen; };
      if (!spin_until(started)) {
        std::unique_lock<std::mutex> sleep(sleep_mutex_);
        wake_.wait(sleep, started);
      }
      seen = epoch_.load(std::memory_order_acquire);
      if (stopping_) return;
      if (!join(seen)) continue;
      work();
      const uint64_t s = state_.fetch_sub(1, std::memory_order_acq_rel) - 1;
      if (count(s) == 0 && !(s & kOpen)) {
        { std::lock_guard<std::mutex> sleep(sleep_mutex_); }
        done_.notify_one();
      }
    }
  }

  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one loop at a time
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<uint32_t> epoch_{0};  // bumped to start a loop, or to stop
  std::atomic<uint64_t> state_{0};  // the job's epoch, open bit, workers joined
  std::atomic<bool> stopping_{false};
  std::mutex sleep_mutex_;        // only for sleeping: wake_ and done_
  std::condition_variable wake_;  // epoch_ moved
  std::condition_variable done_;  // the last joined worker left a closed job
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool p(default_threads());
  return p;
}

}  // namespace

int cpu_threads() {
  return pool().threads();
}

void set_cpu_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_cpu_threads: " + std::to_string(n) + " < 1");
  pool().resize(n);
}

void parallel_for(int64_t n, const std::function<void(int64_t)>& fn) {
  pool().run(n, fn);
}

void parallel_for_chunks(int64_t n, int64_t grain,
                         const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t chunks = (n + grain - 1) / grain;
  parallel_for(chunks, [&](int64_t c) { fn(c * grain, std::min(n, (c + 1) * grain)); });
}

}  // namespace ddpm::cpu
