// NVTX v3 ranges (header-only, <nvtx3/nvToolsExt.h> of the CUDA toolkit) for
// Nsight Systems and Nsight Compute: what the CUDA backend, the device
// training step and the device sampling loop push, in the "ddpm" domain, one
// colour per phase so a timeline reads at a glance.
//
// Cost: with no tool attached, NVTX's first call finds no injection library
// (NVTX_INJECTION64_PATH unset) and turns every entry point into a null
// function pointer; a range is then a static-local check, a load and a branch
// per push and pop. Defining NVTX_DISABLE compiles them out altogether.
//
// Capture: push and pop are host calls, allowed while a stream is being
// captured; a CUDA graph records only the device work, so the ranges appear
// once, around the capture, and not in the graph's replays (Nsight shows a
// replay as one cudaGraphLaunch).
#pragma once

#include <nvtx3/nvToolsExt.h>

#include <cstdint>

namespace ddpm::nvtx {

// ARGB colours, one per phase (Matplotlib's tab10, readable on nsys's light
// and dark themes).
enum class Phase : uint32_t {
  data = 0xFF2CA02C,       // green: the batch's upload and preparation
  forward = 0xFF1F77B4,    // blue: the model's forward, and each op in it
  backward = 0xFFD62728,   // red: the backward pass, and each op in it
  optimizer = 0xFFFF7F0E,  // orange: clipping, AdamW, EMA
  sampling = 0xFF9467BD,   // purple: a sampling step, or a whole loop launch
};

// The "ddpm" domain: Nsight groups our ranges under it, apart from the
// runtime's and other libraries'. Created at the first range.
inline nvtxDomainHandle_t domain() {
  static const nvtxDomainHandle_t d = nvtxDomainCreateA("ddpm");
  return d;
}

inline void push(const char* name, Phase phase) noexcept {
  nvtxEventAttributes_t a{};
  a.version = NVTX_VERSION;
  a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
  a.colorType = NVTX_COLOR_ARGB;
  a.color = static_cast<uint32_t>(phase);
  a.messageType = NVTX_MESSAGE_TYPE_ASCII;
  a.message.ascii = name;
  nvtxDomainRangePushEx(domain(), &a);
}

inline void pop() noexcept {
  nvtxDomainRangePop(domain());
}

// A range for the lifetime of the object (popped on exceptions too). The
// name is copied by the tool at the push: it need not outlive the range.
class Range {
 public:
  Range(const char* name, Phase phase) noexcept { push(name, phase); }
  ~Range() { pop(); }
  Range(const Range&) = delete;
  Range& operator=(const Range&) = delete;
};

}  // namespace ddpm::nvtx
