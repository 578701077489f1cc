// A process that starts the CPU backend's thread pool and exits at once:
// workers may not have been scheduled yet when the pool stops at exit (a
// worker that then read the stop's epoch as its start slept forever and hung
// the process). ctest runs it many times under a timeout (tests/CMakeLists.txt).
// argv[1] picks what happens before exit: "start" (the pool at its default
// size, no loop), "wide" (8 threads, more than the cores), "loop" (one short
// loop), "resize" (two resizes, then exit).
#include <cstdio>
#include <cstring>

#include "engine/cpu/thread_pool.h"

int main(int argc, char** argv) {
  using namespace ddpm::cpu;
  const char* mode = argc > 1 ? argv[1] : "start";
  if (!std::strcmp(mode, "start")) {
    (void)cpu_threads();
  } else if (!std::strcmp(mode, "wide")) {
    set_cpu_threads(8);
  } else if (!std::strcmp(mode, "loop")) {
    set_cpu_threads(4);
    parallel_for(16, [](int64_t) {});
  } else if (!std::strcmp(mode, "resize")) {
    set_cpu_threads(3);
    set_cpu_threads(6);
  } else {
    std::fprintf(stderr, "thread_pool_exit: unknown mode %s\n", mode);
    return 2;
  }
  return 0;
}
