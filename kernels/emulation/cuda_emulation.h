// CUDA kernel emulation for g++: compile a kernel source (.cu) as C++ with this
// header force-included, and its __global__ kernels run on the CPU, so tests of
// the real kernel code run where there is no GPU (CI). See
// /work/shared/EMULATION.md for the design and its measured costs.
//
//   g++ -std=c++20 -x c++ -include kernels/emulation/cuda_emulation.h
//       -I<cuda>/include -I<cuda>/include/cccl -fstack-clash-protection -c kernel.cu
//   (CMake: ddpm_emulate_cuda_sources() in kernels/emulation/emulation.cmake)
//   and link the emulator runtime (the other .cpp files of this folder), not cudart.
//
// How it runs: each block on one OS thread, its CUDA threads as fibers on that
// thread (64 KB stacks with a guard page); the blocks of a grid spread over a
// few worker threads, in no fixed order. __syncthreads() and warp operations
// pass a baton between fibers. Launches are synchronous. Settings (environment
// or emulator_api.h): DDPM_EMU_WORKERS (default: hardware concurrency),
// DDPM_EMU_STACK_KB (64; 256 under ASan), DDPM_EMU_POISON_STATIC_SHARED=0.
// Code can test `#ifdef DDPM_CUDA_EMULATION`.
//
// Supported
//   - __global__ / __device__ / __host__ / __constant__ / __managed__ /
//     __launch_bounds__ / __forceinline__ / __restrict__; threadIdx, blockIdx,
//     blockDim, gridDim (real thread_local globals), warpSize.
//   - Launches through DDPM_LAUNCH (launch.h), 1-, 2- and 3-D grids and blocks.
//     Bad configurations (no threads, > 1024 threads or a dimension over its
//     limit, dynamic shared memory over 48 KB without the
//     cudaFuncAttributeMaxDynamicSharedMemorySize opt-in, or over 227 KB) are
//     reported by cudaGetLastError as on the GPU (cudaErrorInvalidValue, as an
//     H200 under CUDA 13 reports them all), with the reason on stderr and in
//     ddpm::emu::last_error_detail().
//   - __syncthreads, __syncthreads_count / _and / _or; __syncwarp,
//     __shfl[_up|_down|_xor]_sync (any bitwise-copyable type of <= 16 bytes:
//     int, float, double, __half, __half2, __nv_bfloat16, ...), __ballot_sync,
//     __any_sync, __all_sync, __activemask, __match_any/all_sync,
//     __reduce_{add,min,max,and,or,xor}_sync.
//   - Static __shared__ memory (thread_local: per block), filled with 0xFF bytes
//     at every block start (shared_memory.h: the worker's zero-initialized TLS);
//     dynamic shared memory through DDPM_DYNAMIC_SHARED (launch.h), a heap
//     region of exactly shmem_bytes, 0xFF-filled per block. Unwritten shared
//     memory reads as NaN (float) or -1 (int).
//   - Atomics (atomicAdd/Sub/Exch/Min/Max/CAS/And/Or/Xor/Inc/Dec, __half and
//     bf16 atomicAdd, _block/_system forms), __threadfence*.
//   - cuda_fp16.h / cuda_bf16.h, plus __hfma, hexp, hsqrt, hrsqrt, ... (intrinsics.h);
//     fast-math and rounded float intrinsics, bit intrinsics, min/max, __ldg.
//   - curand_kernel.h device API (Philox, XORWOW, MRG32k3a; not MTGP32).
//   - cp.async with commit and wait groups, through kernels/async_copy.cuh
//     (async_copy_model.h): per-thread groups; the destination is poisoned
//     (0xFF) at issue and written at the wait by the waiting thread (a read
//     before the wait sees NaN; TSan sees a read without a barrier after the
//     wait as a race); misaligned or non-shared destinations fail the launch.
//     ldmatrix (x1/x2/x4, .trans) through kernels/ldmatrix.cuh's shuffle twin,
//     and mma.sync m16n8k16 bf16 through kernels/warp_mma.cuh's.
//   - Runtime API on host memory (runtime_api.cpp, stream_api.cpp): cudaMalloc/
//     Free/Memcpy/Memset (+Async, +Host, +Symbol), streams and events (synchronous),
//     cudaLaunchHostFunc, cudaGetLastError, cudaFuncSetAttribute, device
//     properties of an H100-like device. cudaMalloc'd memory starts as 0xFF
//     bytes; a copy or set whose device side is not inside one cudaMalloc
//     block fails (cudaErrorInvalidValue).
//   - Stream capture (capture.cpp): cudaStreamBeginCapture (global,
//     thread-local, relaxed), cudaStreamBeginCaptureToGraph, EndCapture,
//     IsCapturing, GetCaptureInfo, UpdateCaptureDependencies,
//     cudaThreadExchangeStreamCaptureMode. Work on a capturing stream is
//     recorded, not run: kernel launches with their arguments copied at
//     capture time (a host variable changed afterwards is not seen by
//     replays), cudaMemcpyAsync, cudaMemsetAsync, cudaLaunchHostFunc.
//     cudaEventRecord / cudaStreamWaitEvent fork other streams into the
//     capture and join them back. Refused as the driver refuses them, with
//     its error codes, invalidating the capture (EndCapture then returns
//     cudaErrorStreamCaptureInvalidated and no graph): unsafe calls while the
//     thread's capture mode forbids them (cudaMalloc/Free/MallocHost/FreeHost,
//     cudaMemcpy, cudaMemset, cudaMemcpy{To,From}Symbol, cudaStreamSynchronize,
//     cudaEventSynchronize: cudaErrorStreamCaptureUnsupported); in any mode,
//     cudaDeviceSynchronize, synchronising or querying a capturing stream
//     (cudaErrorStreamCaptureUnsupported), legacy-stream work while a blocking
//     stream captures (cudaErrorStreamCaptureImplicit), querying or
//     synchronising an event recorded in a capture (cudaErrorCapturedEvent),
//     waiting on an uncaptured event (cudaErrorStreamCaptureIsolation).
//   - CUDA graphs (graph_api.cpp, graph_exec.cpp): cudaGraphCreate/Destroy,
//     GetNodes, NodeGetType, AddNode (conditional, empty, host and memset
//     nodes), cudaGraphConditionalHandleCreate (cudaGraphCondAssignDefault
//     re-assigns the default at every launch), conditional WHILE, IF (with
//     ELSE) and SWITCH nodes whose bodies are filled by
//     cudaStreamBeginCaptureToGraph, cudaGraphSetConditional from kernels
//     (device_runtime.h); cudaGraphInstantiate(WithFlags), ExecUpdate,
//     ExecDestroy, Upload, Launch (synchronous, nodes in a dependency order
//     that runs the newest ready node first, so a missing join shows). A host
//     node inside a conditional body fails instantiation (cudaErrorInvalidValue),
//     as does a second executable graph of a graph with conditional nodes.
//     A WHILE node stops after DDPM_EMU_MAX_WHILE_ITERATIONS (default 2^24)
//     iterations with a KernelError rather than hang.
//   - Counters (ddpm::emu::stats()): kernel launches, graph launches, captured
//     launches, conditional body runs, host synchronisations, copies, sets.
//
// Checked (ddpm::emu::KernelError thrown by the launch, naming kernel, block
// and threads): divergent __syncthreads (threads at different barriers, or some
// exited while others wait); warp operations whose mask excludes the caller,
// lanes of one mask at different operations, shuffles reading a lane outside
// the mask or an exited lane; __trap(); exceptions escaping a kernel. A fiber
// stack overflow is named on stderr before the SIGSEGV ends the process.
// Sanitizer builds: ASan sees dynamic shared memory overruns and global
// memory (cudaMalloc) overruns; TSan reports races on shared memory between
// CUDA threads of a block (barriers and warp operations are its only
// happens-before edges).
//
// Not supported: inline PTX (mma.sync, ldmatrix and cp.async only through the
// headers above; wgmma, TMA, mbarrier), cooperative groups, clusters and
// distributed shared memory, grid-wide sync or spinning on other blocks,
// textures and surfaces, dynamic parallelism, CUB/CCCL device internals,
// <mma.h> (WMMA), timing and occupancy; in graphs: kernel and memcpy nodes
// built by cudaGraphAddNode (capture them instead), child graph, event, memory
// allocation and external semaphore nodes, stream-ordered allocation
// (cudaMallocAsync) during capture, cudaGraphLaunch into a capturing stream,
// device-launched graphs (each is refused with an error naming it);
// __noinline__ (left undefined: defining it would break
// __attribute__((__noinline__)) in system headers). __CUDA_ARCH__ is not
// defined, so `#if __CUDA_ARCH__ >= ...` code takes its fallback branch. A raw
// `extern __shared__ T name[];` declaration compiles but does not link: use
// DDPM_DYNAMIC_SHARED. Static __shared__ arrays are thread_local storage, which
// has no ASan redzones: an index one past such an array is not reported (it is
// for dynamic shared memory). Device functions defined in headers must be
// `__device__ inline` (here __device__ expands to nothing). Results differ from
// the GPU in the last bits (no FMA contraction, exact "fast" intrinsics). Under
// TSan, __threadfence is not modelled: a fence-then-flag handshake between
// blocks is reported as a race.
#pragma once

#if defined(__CUDACC__)
#error "cuda_emulation.h is for g++ builds of kernel sources; nvcc compiles them natively"
#endif

#define DDPM_CUDA_EMULATION 1

// CUDA's headers first: host_defines.h defines the qualifiers as nothing for
// g++; we redefine them afterwards.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

// curand's MTGP32 header declares `extern const dim3 blockDim; extern const
// uint3 threadIdx;` for host calls; they would clash with the thread_local
// built-ins below. Rename them while it is included (MTGP32 is therefore not
// usable; Philox, XORWOW and MRG32k3a are). A later #include <curand_kernel.h>
// in the kernel source is then a no-op.
#define threadIdx ddpm_emu_curand_mtgp32_threadIdx
#define blockDim ddpm_emu_curand_mtgp32_blockDim
#include <curand_kernel.h>
#undef threadIdx
#undef blockDim

#undef __global__
#undef __device__
#undef __host__
#undef __constant__
#undef __managed__
#undef __shared__
#undef __launch_bounds__
#undef __grid_constant__
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __grid_constant__
#define __launch_bounds__(...)
// thread_local, not static thread_local: at block scope thread_local already
// implies static, and `extern __shared__` still parses. One OS thread runs one
// block at a time, so this storage is per block.
#define __shared__ thread_local
// __forceinline__ (inline + always_inline) and __restrict__ (a g++ keyword)
// keep their host_defines.h meanings.

#include "atomics.h"
#include "device_runtime.h"
#include "emulator.h"
#include "intrinsics.h"
#include "launch.h"
#include "warp_ops.h"
