// Device-side CUDA runtime calls that emulated kernels may make. CUDA declares
// them for nvcc only (cuda_device_runtime_api.h, under __CUDACC__); g++ builds
// of kernel sources get these declarations, with the same signatures, from
// cuda_emulation.h, and the emulator runtime defines them (graph_exec.cpp).
#pragma once

#include <driver_types.h>

extern "C" {

// Sets the value of a conditional node's handle (cudaGraphConditionalHandleCreate),
// as the device function does: a WHILE node runs its body again while the value
// is non-zero. Callable from emulated kernels and from host code; an unknown
// handle throws, and inside a kernel that becomes a KernelError from the launch.
void cudaGraphSetConditional(cudaGraphConditionalHandle handle, unsigned int value);

}  // extern "C"
