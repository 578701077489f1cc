// The emulator's core as kernel code sees it: the built-in index variables, the
// block barrier, the warp exchange the warp intrinsics are built on, dynamic
// shared memory, and the launch. Included by cuda_emulation.h after CUDA's own
// headers (it needs uint3, dim3 and cudaStream_t); not meant to be included alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <source_location>
#include <tuple>
#include <type_traits>

#include "emulator_api.h"

// Built-in variables: real thread_local globals (macros would clash with names
// in CUDA's headers). One OS thread runs one block at a time, so blockIdx,
// blockDim and gridDim are per block; the scheduler sets threadIdx at every
// fiber switch. Inline definitions with constant initializers: accessing them
// costs one %fs-relative load, no TLS wrapper call.
inline thread_local uint3 threadIdx{};
inline thread_local uint3 blockIdx{};
inline thread_local dim3 blockDim{};
inline thread_local dim3 gridDim{};
inline constexpr int warpSize = 32;

namespace ddpm::emu {

namespace detail {

enum class BarrierKind : std::uint8_t { kSync, kCount, kAnd, kOr };

// Waits until every thread of the block reaches this barrier (the same source
// line); returns the count / and / or of `predicate` over the block.
int block_barrier(BarrierKind kind, int predicate, const char* file, unsigned line);

enum class WarpOp : std::uint8_t {
  kShflIdx,
  kShflUp,
  kShflDown,
  kShflXor,
  kBallot,
  kAny,
  kAll,
  kMatchAny,
  kMatchAll,
  kReduceAdd,
  kReduceMin,
  kReduceMax,
  kReduceAnd,
  kReduceOr,
  kReduceXor,
  kSyncWarp,
};

// One lane's part in a warp operation. Each lane of the mask fills one, then
// waits in warp_exchange; the last lane to arrive computes every lane's result.
struct WarpRequest {
  WarpOp op;
  bool is_signed = false;  // reductions: compare as int rather than unsigned
  unsigned mask;
  int width = 32;    // shuffles: the segment width
  int lane_arg = 0;  // shuffles: srcLane, delta or laneMask
  unsigned value_bytes = 0;
  const char* name;  // the intrinsic, for messages
  const char* file;
  unsigned line;
  alignas(16) unsigned char value[16];
  alignas(16) unsigned char result[16];
  unsigned vote = 0;  // ballot, any, all, match results
  int predicate = 0;  // match_all_sync's *pred
};

void warp_exchange(WarpRequest& request);

// Lanes of the caller's warp that exist and have not exited.
unsigned active_lanes();

// The block's dynamic shared memory (the launch's shmem_bytes, 0xFF-filled at
// block start; a heap region of exactly that size, so ASan sees overruns).
void* dynamic_shared_base();

[[noreturn]] void trap(const char* what, const char* file, unsigned line);

// A kernel and its bound arguments, type-erased for the runtime.
struct KernelBody {
  void (*invoke)(const void* bound);  // runs the kernel for the current CUDA thread
  const void* bound;
  const char* name;
  const void* kernel;  // the kernel's address (cudaFuncSetAttribute key)
  // A heap copy of *bound, and its deleter: stream capture records the
  // arguments by value at capture time, as the driver does.
  void* (*copy_bound)(const void* bound);
  void (*delete_bound)(void* bound);
};

// Validates the configuration (errors go to cudaGetLastError), then runs every
// block, or, on a capturing stream, records the launch into the capture's
// graph; throws KernelError if a kernel check fails.
void launch_grid(const KernelBody& body, dim3 grid, dim3 block, std::size_t shmem_bytes,
                 cudaStream_t stream);

template <class Bound>
void invoke_bound(const void* bound) {
  const Bound& b = *static_cast<const Bound*>(bound);
  // Each CUDA thread gets its own copy of the parameters, as on the GPU.
  std::apply([&b](auto... params) { b.kernel(params...); }, b.args);
}

template <class Bound>
void* copy_bound(const void* bound) {
  return new Bound(*static_cast<const Bound*>(bound));
}

template <class Bound>
void delete_bound(void* bound) {
  delete static_cast<Bound*>(bound);
}

}  // namespace detail

// The emulated form of kernel<<<grid, block, shmem_bytes, stream>>>(args...).
// The arguments convert to the kernel's parameter types as in a call (so a
// literal 0 may bind to a pointer), are copied, and each CUDA thread receives
// its own copy. Runs synchronously on the worker threads; on a stream that is
// capturing a CUDA graph, the launch and a copy of its arguments are recorded
// instead, and run when the graph is launched.
template <class... Params>
void launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block,
            std::size_t shmem_bytes, cudaStream_t stream, std::type_identity_t<Params>... args) {
  static_assert(!(std::is_reference_v<Params> || ...), "kernel parameters cannot be references");
  struct Bound {
    void (*kernel)(Params...);
    std::tuple<std::remove_cv_t<Params>...> args;
  };
  const Bound bound{kernel, {args...}};
  const detail::KernelBody body{&detail::invoke_bound<Bound>,
                                &bound,
                                name,
                                reinterpret_cast<const void*>(kernel),
                                &detail::copy_bound<Bound>,
                                &detail::delete_bound<Bound>};
  detail::launch_grid(body, grid, block, shmem_bytes, stream);
}

// Typed view of the block's dynamic shared memory (see DDPM_DYNAMIC_SHARED).
template <class T>
T* dynamic_shared_memory() {
  return static_cast<T*>(detail::dynamic_shared_base());
}

}  // namespace ddpm::emu

// ---- Block synchronization ----------------------------------------------------
// The source location identifies the barrier: threads of a block meeting at
// different __syncthreads calls is reported as divergence.

inline void __syncthreads(std::source_location at = std::source_location::current()) {
  ddpm::emu::detail::block_barrier(ddpm::emu::detail::BarrierKind::kSync, 0, at.file_name(),
                                   at.line());
}
inline int __syncthreads_count(int predicate,
                               std::source_location at = std::source_location::current()) {
  return ddpm::emu::detail::block_barrier(ddpm::emu::detail::BarrierKind::kCount, predicate != 0,
                                          at.file_name(), at.line());
}
inline int __syncthreads_and(int predicate,
                             std::source_location at = std::source_location::current()) {
  return ddpm::emu::detail::block_barrier(ddpm::emu::detail::BarrierKind::kAnd, predicate != 0,
                                          at.file_name(), at.line());
}
inline int __syncthreads_or(int predicate,
                            std::source_location at = std::source_location::current()) {
  return ddpm::emu::detail::block_barrier(ddpm::emu::detail::BarrierKind::kOr, predicate != 0,
                                          at.file_name(), at.line());
}

[[noreturn]] inline void __trap(std::source_location at = std::source_location::current()) {
  ddpm::emu::detail::trap("__trap()", at.file_name(), at.line());
}
