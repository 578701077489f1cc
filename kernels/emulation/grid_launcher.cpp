// Launching a grid under the emulator: the configuration is checked as a GPU
// checks it (failures go to cudaGetLastError); on a capturing stream the
// launch is recorded with a copy of its arguments (capture.h); otherwise the
// blocks are spread over a pool of worker threads, each running one block at
// a time with its own BlockScheduler, and the launch waits for them. A kernel
// error stops the grid and is thrown as KernelError. Also the configuration
// and counters of emulator_api.h.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "block_scheduler.h"
#include "capture.h"
#include "emulator.h"
#include "runtime_state.h"
#include "sanitizer_hooks.h"
#include "shared_memory.h"

namespace ddpm::emu {

namespace detail {
namespace {

int default_worker_count() {
  if (const char* setting = std::getenv("DDPM_EMU_WORKERS")) {
    const int n = std::atoi(setting);
    if (n >= 1) return n;
  }
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

std::size_t default_stack_bytes() {
  if (const char* setting = std::getenv("DDPM_EMU_STACK_KB")) {
    const long kb = std::atol(setting);
    if (kb >= 4) return static_cast<std::size_t>(kb) * 1024;
  }
  return san::kAsan ? 256 * 1024 : 64 * 1024;  // ASan frames carry redzones
}

struct GridJob {
  const KernelBody* body = nullptr;
  dim3 grid, block;
  std::size_t shmem_bytes = 0;
  std::uint64_t total_blocks = 0;
  std::atomic<std::uint64_t> next_block{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::string error;

  void fail(const std::string& message) {
    std::lock_guard lock(error_mutex);
    if (error.empty()) error = message;
    failed = true;
  }
};

class WorkerPool {
 public:
  WorkerPool(int workers, std::size_t stack_bytes) : stack_bytes_(stack_bytes), workers_(workers) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { worker_main(); });
  }
  ~WorkerPool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    work_ready_.notify_all();
    for (std::thread& t : threads_) t.join();
  }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  int workers() const { return workers_; }
  std::size_t stack_bytes() const { return stack_bytes_; }
  std::uint64_t fiber_switches() const { return switches_.load(); }

  // Returns when every block has run, or once one has failed.
  void run(GridJob& job) {
    std::unique_lock lock(mutex_);
    job_ = &job;
    ++generation_;
    busy_ = workers_;
    work_ready_.notify_all();
    work_done_.wait(lock, [this] { return busy_ == 0; });
    job_ = nullptr;
  }

 private:
  void worker_main() {
    // Blocks only ever run on these threads, never on a launching thread: the
    // static shared memory poisoning rewrites the running thread's TLS.
    BlockSharedMemory shared;
    BlockScheduler scheduler(stack_bytes_);
    std::uint64_t seen = 0;
    for (;;) {
      GridJob* job;
      {
        std::unique_lock lock(mutex_);
        work_ready_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
        job = job_;
      }
      const std::uint64_t switches_before = scheduler.fiber_switches();
      try {
        shared.prepare_launch(job->shmem_bytes);
        run_blocks(*job, shared, scheduler);
      } catch (const std::exception& e) {
        job->fail(std::string("kernel '") + job->body->name + "': " + e.what());
      }
      switches_ += scheduler.fiber_switches() - switches_before;
      {
        std::lock_guard lock(mutex_);
        if (--busy_ == 0) work_done_.notify_all();
      }
    }
  }

  static void run_blocks(GridJob& job, BlockSharedMemory& shared, BlockScheduler& scheduler) {
    const std::uint64_t plane = std::uint64_t{job.grid.x} * job.grid.y;
    while (!job.failed.load(std::memory_order_relaxed)) {
      const std::uint64_t b = job.next_block.fetch_add(1, std::memory_order_relaxed);
      if (b >= job.total_blocks) return;
      const uint3 index{static_cast<unsigned>(b % job.grid.x),
                        static_cast<unsigned>((b / job.grid.x) % job.grid.y),
                        static_cast<unsigned>(b / plane)};
      shared.start_block();
      const std::string error = scheduler.run_block(*job.body, index, job.block, job.grid);
      if (!error.empty()) job.fail(error);
    }
  }

  std::size_t stack_bytes_;
  int workers_;
  std::mutex mutex_;
  std::condition_variable work_ready_, work_done_;
  GridJob* job_ = nullptr;
  std::uint64_t generation_ = 0;
  int busy_ = 0;
  bool stopping_ = false;
  std::atomic<std::uint64_t> switches_{0};
  std::vector<std::thread> threads_;
};

// Counters kept outside the launch lock: capture and graph code may count
// while a grid runs.
struct Counters {
  std::atomic<std::uint64_t> graph_launches{0}, captured_launches{0}, conditional_bodies{0},
      host_synchronizations{0}, memcpys{0}, memsets{0}, host_functions{0};

  std::atomic<std::uint64_t>& operator[](Counter c) {
    switch (c) {
      case Counter::kGraphLaunches:
        return graph_launches;
      case Counter::kCapturedLaunches:
        return captured_launches;
      case Counter::kConditionalBodies:
        return conditional_bodies;
      case Counter::kHostSynchronizations:
        return host_synchronizations;
      case Counter::kMemcpys:
        return memcpys;
      case Counter::kMemsets:
        return memsets;
      case Counter::kHostFunctions:
        break;
    }
    return host_functions;
  }
  void copy_to(Stats& s) const {
    s.graph_launches = graph_launches;
    s.captured_launches = captured_launches;
    s.conditional_bodies = conditional_bodies;
    s.host_synchronizations = host_synchronizations;
    s.memcpys = memcpys;
    s.memsets = memsets;
    s.host_functions = host_functions;
  }
  void reset() {
    for (auto* c : {&graph_launches, &captured_launches, &conditional_bodies,
                    &host_synchronizations, &memcpys, &memsets, &host_functions})
      *c = 0;
  }
};

Counters& counters() {
  static auto* c = new Counters;
  return *c;
}

struct LaunchState {
  std::mutex mutex;  // one grid at a time; guards everything below
  std::unique_ptr<WorkerPool> pool;
  int workers = 0;              // 0: the default
  std::size_t stack_bytes = 0;  // 0: the default
  Stats stats;                  // launches, blocks, fiber switches (the rest: counters())
  std::uint64_t switches_at_reset = 0;

  int effective_workers() const { return workers > 0 ? workers : default_worker_count(); }
  std::size_t effective_stack_bytes() const {
    return stack_bytes > 0 ? stack_bytes : default_stack_bytes();
  }
  WorkerPool& current_pool() {
    const int w = effective_workers();
    const std::size_t s = effective_stack_bytes();
    if (!pool || pool->workers() != w || pool->stack_bytes() != s) {
      if (pool) stats.fiber_switches += pool->fiber_switches() - switches_at_reset;
      pool.reset();
      pool = std::make_unique<WorkerPool>(w, s);
      switches_at_reset = 0;
    }
    return *pool;
  }
};

LaunchState& launch_state() {
  static LaunchState state;  // its destructor joins the workers at exit
  return state;
}

std::string dims(dim3 d) {
  char text[48];  // not "(" + std::to_string(...): g++ 12 warns falsely (-Wrestrict)
  std::snprintf(text, sizeof text, "(%u,%u,%u)", d.x, d.y, d.z);
  return text;
}

struct ConfigError {
  cudaError_t code = cudaSuccess;
  std::string why;
};

// What a GPU refuses at launch time, with the code it gives: measured on an
// H200 with CUDA 13.0 (driver 580), every bad configuration, including a block
// of 1025 threads, is cudaErrorInvalidValue, not cudaErrorInvalidConfiguration.
ConfigError check_configuration(const KernelBody& body, dim3 grid, dim3 block,
                                std::size_t shmem_bytes, cudaStream_t stream) {
  const std::uint64_t threads = std::uint64_t{block.x} * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0)
    return {cudaErrorInvalidValue,
            "grid " + dims(grid) + " or block " + dims(block) + " has a zero dimension"};
  if (threads > 1024)
    return {cudaErrorInvalidValue, "block " + dims(block) + " has " + std::to_string(threads) +
                                       " threads; the limit is 1024"};
  if (block.x > 1024 || block.y > 1024 || block.z > 64)
    return {cudaErrorInvalidValue,
            "block " + dims(block) + " exceeds the per-dimension limits (1024,1024,64)"};
  if (grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
    return {cudaErrorInvalidValue,
            "grid " + dims(grid) + " exceeds the limits (2147483647,65535,65535)"};
  if (shmem_bytes > kMaxSharedBytesPerBlock)
    return {cudaErrorInvalidValue,
            std::to_string(shmem_bytes) + " bytes of dynamic shared memory exceed the " +
                std::to_string(kMaxSharedBytesPerBlock) + " bytes (227 KB) a block may have"};
  if (const std::size_t allowed = max_dynamic_shared_bytes(body.kernel); shmem_bytes > allowed)
    return {cudaErrorInvalidValue, std::to_string(shmem_bytes) +
                                       " bytes of dynamic shared memory exceed the " +
                                       std::to_string(allowed) +
                                       " allowed; above 48 KB call cudaFuncSetAttribute(kernel, "
                                       "cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) first"};
  if (!is_known_stream(stream))
    return {cudaErrorInvalidResourceHandle, "the stream was not created or was destroyed"};
  return {};
}

// The recorded form of a launch: the kernel and a heap copy of its bound
// arguments, made now, as the driver copies kernel parameters at capture time.
std::shared_ptr<const NodeOp> kernel_node(const KernelBody& body, dim3 grid, dim3 block,
                                          std::size_t shmem_bytes) {
  auto op = std::make_shared<NodeOp>();
  op->type = cudaGraphNodeTypeKernel;
  op->what = std::string("kernel '") + body.name + "'";
  op->bound = std::shared_ptr<void>(body.copy_bound(body.bound), body.delete_bound);
  op->kernel = body;
  op->kernel.bound = op->bound.get();
  op->grid = grid;
  op->block = block;
  op->shmem_bytes = shmem_bytes;
  return op;
}

}  // namespace

void launch_grid(const KernelBody& body, dim3 grid, dim3 block, std::size_t shmem_bytes,
                 cudaStream_t stream) {
  if (BlockScheduler::current())
    throw KernelError(std::string("ddpm emulator: kernel '") + body.name +
                      "' launched from inside a kernel (dynamic parallelism is not emulated)");
  if (const ConfigError e = check_configuration(body, grid, block, shmem_bytes, stream);
      e.code != cudaSuccess) {
    const std::string detail = std::string("launch of '") + body.name + "': " + e.why;
    record_launch_error(e.code, detail);
    std::fprintf(stderr, "ddpm emulator: %s (%s)\n", detail.c_str(), cudaGetErrorName(e.code));
    return;
  }
  const std::string call = std::string("launch of '") + body.name + "'";
  const Routed routed = capture_or_run(stream, call.c_str(),
                                       [&] { return kernel_node(body, grid, block, shmem_bytes); });
  if (routed.error) {
    std::fprintf(stderr, "ddpm emulator: %s (%s)\n", last_error_detail().c_str(),
                 cudaGetErrorName(routed.error));
    return;
  }
  if (routed.recorded) {
    tally(Counter::kCapturedLaunches);
    return;
  }
  run_grid(body, grid, block, shmem_bytes, /*in_graph=*/false);
}

void run_grid(const KernelBody& body, dim3 grid, dim3 block, std::size_t shmem_bytes,
              bool in_graph) {
  LaunchState& state = launch_state();
  std::lock_guard lock(state.mutex);
  GridJob job;
  job.body = &body;
  job.grid = grid;
  job.block = block;
  job.shmem_bytes = shmem_bytes;
  job.total_blocks = std::uint64_t{grid.x} * grid.y * grid.z;
  state.current_pool().run(job);
  ++state.stats.launches;
  if (in_graph) ++state.stats.graph_kernel_launches;
  state.stats.blocks += std::min(job.next_block.load(), job.total_blocks);
  if (job.failed) throw KernelError("ddpm emulator: " + job.error);
}

void tally(Counter counter) {
  ++counters()[counter];
}

}  // namespace detail

void set_worker_count(int count) {
  auto& state = detail::launch_state();
  std::lock_guard lock(state.mutex);
  state.workers = std::max(1, count);
}

int worker_count() {
  auto& state = detail::launch_state();
  std::lock_guard lock(state.mutex);
  return state.effective_workers();
}

void set_fiber_stack_bytes(std::size_t bytes) {
  auto& state = detail::launch_state();
  std::lock_guard lock(state.mutex);
  state.stack_bytes = std::max<std::size_t>(bytes, 4096);
}

std::size_t fiber_stack_bytes() {
  auto& state = detail::launch_state();
  std::lock_guard lock(state.mutex);
  return state.effective_stack_bytes();
}

Stats stats() {
  auto& state = detail::launch_state();
  std::lock_guard lock(state.mutex);
  Stats s = state.stats;
  if (state.pool) s.fiber_switches += state.pool->fiber_switches() - state.switches_at_reset;
  detail::counters().copy_to(s);
  return s;
}

void reset_stats() {
  auto& state = detail::launch_state();
  std::lock_guard lock(state.mutex);
  state.stats = {};
  state.switches_at_reset = state.pool ? state.pool->fiber_switches() : 0;
  detail::counters().reset();
}

}  // namespace ddpm::emu
