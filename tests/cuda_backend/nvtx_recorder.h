// A static NVTX injection for tests: linked into a test program, it makes
// NVTX's first call attach to it (InitializeInjectionNvtx2_fnptr, the
// statically linked form of the injection an Nsight tool loads) and records
// every domain range push and pop, with its name, colour and domain, so a
// test can check what a profiler would see.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ddpm::testing {

struct NvtxEvent {
  bool push = false;  // else a pop
  std::string name;   // pushes: the range's message
  uint32_t color = 0;
  std::string domain;  // the domain's name ("" for none)
};

// Everything recorded since the last clear, in order.
std::vector<NvtxEvent> nvtx_events();
void clear_nvtx_events();
// Whether NVTX attached to the recorder (false: no range can have been seen).
bool nvtx_recorder_attached();

}  // namespace ddpm::testing
