// Per-thread scratch buffers (scratch.h).
#include "engine/cpu/fast/scratch.h"

#include <cstdlib>
#include <memory>
#include <new>

namespace ddpm::cpu::fast {

namespace {

struct Buffer {
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<void, Free> data;
  size_t bytes = 0;

  void* get(size_t want) {
    if (want > bytes) {
      // 64-byte aligned, rounded up to a page multiple of growth so a buffer
      // that creeps up by a few bytes is not reallocated every call.
      const size_t size = (want + want / 4 + 4095) / 4096 * 4096;
      data.reset();
      void* p = std::aligned_alloc(64, size);
      if (!p) throw std::bad_alloc();
      data.reset(p);
      bytes = size;
    }
    return data.get();
  }
};

Buffer& buffer(Slot slot) {
  thread_local Buffer buffers[static_cast<size_t>(Slot::count)];
  return buffers[static_cast<size_t>(slot)];
}

}  // namespace

float* scratch(Slot slot, size_t floats) {
  return static_cast<float*>(buffer(slot).get(floats * sizeof(float)));
}

double* scratch_doubles(Slot slot, size_t doubles) {
  return static_cast<double*>(buffer(slot).get(doubles * sizeof(double)));
}

}  // namespace ddpm::cpu::fast
