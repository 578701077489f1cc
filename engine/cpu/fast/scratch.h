// Per-thread scratch memory for the CPU backend's ops: grown on demand and
// kept, so an op reuses the same pages call after call instead of allocating
// (and page-faulting) tens of megabytes per convolution. Each use has its own
// slot, so an op's buffers (on the calling thread) and its tasks' buffers
// (on whichever thread runs them) never overlap. Contents are not preserved
// between uses and start uninitialised.
#pragma once

#include <cstddef>

namespace ddpm::cpu::fast {

enum class Slot {
  // Held by an op on the thread that called it, across its parallel loops.
  op_input,     // a padded copy of the input (or of dy)
  op_weights,   // packed weight panels
  op_partials,  // per-task partial sums of a reduction
  op_misc,      // small per-op tables (gathered biases, per-channel stats)
  // Held by one task for its duration.
  task_a,
  task_b,
  task_c,
  task_panel,
  isa_partials,  // inside a primitive kernel (isa.h)
  count
};

float* scratch(Slot slot, size_t floats);
double* scratch_doubles(Slot slot, size_t doubles);

}  // namespace ddpm::cpu::fast
