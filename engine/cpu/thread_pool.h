// The CPU backend's one pool of threads. Every parallel loop of the CPU
// backend runs here (BLAS is kept single-threaded, see gemm.cpp), so the
// engine never has two runtimes' threads competing for the same cores.
//
// parallel_for(n, fn) runs fn(i) for every i in [0, n) on the pool's threads,
// the caller included, handing out indices one at a time as threads come
// free. Which thread runs which index is not fixed, so results stay
// deterministic and independent of the thread count as long as fn(i) writes
// only what task i owns and a task's result does not depend on the thread
// running it (reductions: one partial per task, summed afterwards in task
// order). Work is split into tasks by the problem's shape, never by the
// number of threads.
#pragma once

#include <cstdint>
#include <functional>

namespace ddpm::cpu {

// Threads the pool runs loops on (the caller counts as one). Chosen at first
// use: DDPM_CPU_THREADS if set, else OMP_NUM_THREADS, else the CPUs this
// process may run on (sched_getaffinity).
int cpu_threads();

// Resizes the pool (n >= 1): tests run the same op at several thread counts.
// Must not be called while a loop runs.
void set_cpu_threads(int n);

// Runs fn(i) for i in [0, n). Nested calls (from inside a task) and calls
// while another thread's loop holds the pool run serially in the caller.
// The first exception thrown by a task is rethrown here after every started
// task has finished; tasks not yet started are skipped.
void parallel_for(int64_t n, const std::function<void(int64_t)>& fn);

// parallel_for over [0, n) in contiguous chunks of `grain` indices (the last
// shorter): fn(begin, end). The chunks depend only on n and grain.
void parallel_for_chunks(int64_t n, int64_t grain,
                         const std::function<void(int64_t, int64_t)>& fn);

}  // namespace ddpm::cpu
