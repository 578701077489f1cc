// The CUDA runtime API for emulated builds, defined over the declarations of
// cuda_runtime_api.h (so the same launcher and test code compiles; link this
// instead of cudart): errors, memory, device and function properties. Streams
// and events are in stream_api.cpp, stream capture in capture.cpp, graphs in
// graph_api.cpp and graph_exec.cpp. "Device" memory is host memory:
// cudaMalloc returns an exact-size, 256-byte aligned heap block filled with
// 0xFF (NaN), so reads of unwritten output show and ASan sees overruns. Copies
// and sets check that the device side lies inside one cudaMalloc allocation,
// as a GPU would refuse a host pointer. Everything runs synchronously; async
// copies and sets on a capturing stream are recorded instead. The device
// looks like an H100 (132 SMs, 227 KB opt-in shared memory). Functions not
// defined here fail to link: add them when a launcher needs one.
#include <cuda_runtime.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>

#include "capture.h"
#include "emulator_api.h"
#include "runtime_state.h"

namespace ddpm::emu {

namespace detail {
namespace {

constexpr std::align_val_t kDeviceAlignment{256};

// Zero-initialized: only host threads use it (worker threads' copies are
// overwritten by the static shared memory poisoning, which does not matter).
thread_local cudaError_t t_last_error = cudaSuccess;

struct Registry {
  std::mutex mutex;
  std::map<const unsigned char*, std::size_t> device;       // cudaMalloc / managed blocks
  std::map<const unsigned char*, std::size_t> pinned_host;  // cudaMallocHost / cudaHostAlloc
  std::map<const void*, std::size_t> max_dynamic_shared;    // per kernel
  std::string last_detail;
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: usable from static destructors
  return *r;
}

std::string pointer_text(const void* p) {
  char text[32];
  std::snprintf(text, sizeof text, "%p", p);
  return text;
}

// True if [p, p + bytes) lies inside one block of `blocks`. Caller holds the mutex.
bool inside_block(const std::map<const unsigned char*, std::size_t>& blocks, const void* p,
                  std::size_t bytes) {
  const auto* a = static_cast<const unsigned char*>(p);
  auto it = blocks.upper_bound(a);
  if (it == blocks.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second;
}

cudaError_t check_device_range(const void* p, std::size_t bytes, const char* call,
                               const char* role) {
  if (inside_device_allocation(p, bytes)) return cudaSuccess;
  return fail(cudaErrorInvalidValue, std::string(call) + ": " + role + " " + pointer_text(p) +
                                         " + " + std::to_string(bytes) +
                                         " bytes is not inside one cudaMalloc allocation");
}

cudaError_t allocate_device(void** out, std::size_t bytes, const char* call) {
  if (cudaError_t e = check_unsafe_call(call)) return e;
  if (!out) return fail(cudaErrorInvalidValue, std::string(call) + ": null output pointer");
  *out = nullptr;
  if (bytes == 0) return cudaSuccess;
  auto* p = static_cast<unsigned char*>(::operator new(bytes, kDeviceAlignment, std::nothrow));
  if (!p) return fail(cudaErrorMemoryAllocation, std::string(call) + ": out of host memory");
  std::memset(p, 0xFF, bytes);  // uninitialized device memory reads as NaN
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  r.device.emplace(p, bytes);
  *out = p;
  return cudaSuccess;
}

cudaError_t free_device(void* p, const char* call) {
  if (cudaError_t e = check_unsafe_call(call)) return e;
  if (!p) return cudaSuccess;
  Registry& r = registry();
  bool known;
  {
    std::lock_guard lock(r.mutex);
    known = r.device.erase(static_cast<const unsigned char*>(p)) != 0;
  }
  if (!known)
    return fail(cudaErrorInvalidValue,
                std::string(call) + ": " + pointer_text(p) + " was not returned by cudaMalloc");
  ::operator delete(p, kDeviceAlignment);
  return cudaSuccess;
}

// Which sides of a copy must be device memory (cudaMemcpyDefault: neither is checked).
struct CopySides {
  bool dst_device = false, src_device = false;
};

cudaError_t check_copy(void* dst, const void* src, std::size_t count, cudaMemcpyKind kind,
                       const char* call, CopySides* sides) {
  if (!dst || !src) return fail(cudaErrorInvalidValue, std::string(call) + ": null pointer");
  sides->dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  sides->src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind != cudaMemcpyHostToHost && kind != cudaMemcpyDefault && !sides->dst_device &&
      !sides->src_device)
    return fail(cudaErrorInvalidMemcpyDirection, std::string(call) + ": unknown copy kind");
  if (sides->dst_device) {
    if (cudaError_t e = check_device_range(dst, count, call, "destination")) return e;
  }
  if (sides->src_device) {
    if (cudaError_t e = check_device_range(src, count, call, "source")) return e;
  }
  return cudaSuccess;
}

void run_copy(void* dst, const void* src, std::size_t count) {
  std::memmove(dst, src, count);
  tally(Counter::kMemcpys);
}

// A synchronous API call: the legacy stream and the capture mode rules apply.
cudaError_t check_synchronous_call(const char* call) {
  if (cudaError_t e = check_legacy_stream_use(nullptr, call)) return e;
  return check_unsafe_call(call);
}

cudaError_t copy_synchronously(void* dst, const void* src, std::size_t count, cudaMemcpyKind kind,
                               const char* call) {
  if (cudaError_t e = check_synchronous_call(call)) return e;
  if (count == 0) return cudaSuccess;
  CopySides sides;
  if (cudaError_t e = check_copy(dst, src, count, kind, call, &sides)) return e;
  run_copy(dst, src, count);
  tally(Counter::kHostSynchronizations);
  return cudaSuccess;
}

cudaError_t copy_async(void* dst, const void* src, std::size_t count, cudaMemcpyKind kind,
                       cudaStream_t stream) {
  const char* call = "cudaMemcpyAsync";
  if (count == 0) return cudaSuccess;
  CopySides sides;
  if (cudaError_t e = check_copy(dst, src, count, kind, call, &sides)) return e;
  if (!is_known_stream(stream))
    return fail(cudaErrorInvalidResourceHandle, std::string(call) + ": unknown stream");
  const Routed routed = capture_or_run(stream, call, [&] {
    static const char* const kKinds[] = {"host to host", "host to device", "device to host",
                                         "device to device", "default"};
    auto op = std::make_shared<NodeOp>();
    op->type = cudaGraphNodeTypeMemcpy;
    op->what = std::string("copy (cudaMemcpyAsync of ") + std::to_string(count) + " bytes, " +
               (unsigned(kind) < 5 ? kKinds[kind] : "?") + ")";
    op->dst = dst;
    op->src = src;
    op->bytes = count;
    op->kind = kind;
    return op;
  });
  if (routed.error || routed.recorded) return routed.error;
  run_copy(dst, src, count);
  // Into pageable host memory, the call returns only once the copy is done.
  const bool to_host = kind == cudaMemcpyDeviceToHost ||
                       (kind == cudaMemcpyDefault && inside_device_allocation(src, count) &&
                        !inside_device_allocation(dst, count));
  if (to_host && !inside_pinned_host_allocation(dst, count)) tally(Counter::kHostSynchronizations);
  return cudaSuccess;
}

cudaError_t check_set(void* p, std::size_t count, const char* call) {
  return check_device_range(p, count, call, "destination");
}

void run_set(void* p, int value, std::size_t count) {
  std::memset(p, value, count);
  tally(Counter::kMemsets);
}

std::size_t host_memory_bytes() {
  return static_cast<std::size_t>(sysconf(_SC_PHYS_PAGES)) *
         static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

void record_launch_error(cudaError_t code, const std::string& detail) {
  t_last_error = code;
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  r.last_detail = detail;
}

cudaError_t fail(cudaError_t code, const std::string& detail) {
  record_launch_error(code, detail);
  return code;
}

std::size_t max_dynamic_shared_bytes(const void* kernel) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.max_dynamic_shared.find(kernel);
  return it == r.max_dynamic_shared.end() ? kDefaultDynamicSharedBytes : it->second;
}

bool inside_device_allocation(const void* p, std::size_t bytes) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  return inside_block(r.device, p, bytes);
}

bool inside_pinned_host_allocation(const void* p, std::size_t bytes) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  return inside_block(r.pinned_host, p, bytes);
}

}  // namespace detail

std::string last_error_detail() {
  detail::Registry& r = detail::registry();
  std::lock_guard lock(r.mutex);
  return r.last_detail;
}

}  // namespace ddpm::emu

using ddpm::emu::detail::fail;
using ddpm::emu::detail::registry;

// ---- Errors ------------------------------------------------------------------------

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = ddpm::emu::detail::t_last_error;
  ddpm::emu::detail::t_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) {
  return ddpm::emu::detail::t_last_error;
}

// The runtime's own names and texts for the codes the emulator returns.
#define DDPM_EMU_ERRORS(X)                                                                        \
  X(cudaSuccess, "no error")                                                                      \
  X(cudaErrorInvalidValue, "invalid argument")                                                    \
  X(cudaErrorMemoryAllocation, "out of memory")                                                   \
  X(cudaErrorInvalidConfiguration, "invalid configuration argument")                              \
  X(cudaErrorInvalidDevice, "invalid device ordinal")                                             \
  X(cudaErrorInvalidMemcpyDirection, "invalid copy direction for memcpy")                         \
  X(cudaErrorInvalidResourceHandle, "invalid resource handle")                                    \
  X(cudaErrorIllegalState, "the operation cannot be performed in the present state")              \
  X(cudaErrorLaunchFailure, "unspecified launch failure")                                         \
  X(cudaErrorNotReady, "device not ready")                                                        \
  X(cudaErrorNotPermitted, "operation not permitted")                                             \
  X(cudaErrorNotSupported, "operation not supported")                                             \
  X(cudaErrorInvalidDeviceFunction, "invalid device function")                                    \
  X(cudaErrorStreamCaptureUnsupported, "operation not permitted when stream is capturing")        \
  X(cudaErrorStreamCaptureInvalidated, "operation failed due to a previous error during capture") \
  X(cudaErrorStreamCaptureMerge,                                                                  \
    "operation would result in a merge of separate capture sequences")                            \
  X(cudaErrorStreamCaptureUnmatched, "capture was not ended in the same stream as it began")      \
  X(cudaErrorStreamCaptureUnjoined, "capturing stream has unjoined work")                         \
  X(cudaErrorStreamCaptureIsolation, "dependency created on uncaptured work in another stream")   \
  X(cudaErrorStreamCaptureImplicit,                                                               \
    "operation would make the legacy stream depend on a capturing blocking stream")               \
  X(cudaErrorCapturedEvent,                                                                       \
    "operation not permitted on an event last recorded in a capturing stream")                    \
  X(cudaErrorStreamCaptureWrongThread,                                                            \
    "attempt to terminate a thread-local capture sequence from another thread")                   \
  X(cudaErrorGraphExecUpdateFailure,                                                              \
    "the graph update was not performed because it included changes which violated "              \
    "constraints specific to instantiated graph update")

const char* cudaGetErrorName(cudaError_t error) {
#define DDPM_EMU_NAME(code, text) \
  if (error == code) return #code;
  DDPM_EMU_ERRORS(DDPM_EMU_NAME)
#undef DDPM_EMU_NAME
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t error) {
#define DDPM_EMU_TEXT(code, text) \
  if (error == code) return text;
  DDPM_EMU_ERRORS(DDPM_EMU_TEXT)
#undef DDPM_EMU_TEXT
  return "unknown error";
}
#undef DDPM_EMU_ERRORS

// ---- Memory --------------------------------------------------------------------------
// cudaMalloc, cudaFree and the synchronous copies and sets are "potentially
// unsafe" during stream capture (capture.h); the Async forms are captured.

cudaError_t cudaMalloc(void** devPtr, size_t size) {
  return ddpm::emu::detail::allocate_device(devPtr, size, "cudaMalloc");
}
cudaError_t cudaMallocManaged(void** devPtr, size_t size, unsigned int) {
  return ddpm::emu::detail::allocate_device(devPtr, size, "cudaMallocManaged");
}
cudaError_t cudaMallocAsync(void** devPtr, size_t size, cudaStream_t stream) {
  if (cudaError_t e = ddpm::emu::detail::refuse_if_capturing(
          stream, "cudaMallocAsync", "stream-ordered allocation (a memory allocation node)"))
    return e;
  return ddpm::emu::detail::allocate_device(devPtr, size, "cudaMallocAsync");
}
cudaError_t cudaFree(void* devPtr) {
  return ddpm::emu::detail::free_device(devPtr, "cudaFree");
}
cudaError_t cudaFreeAsync(void* devPtr, cudaStream_t stream) {
  if (cudaError_t e = ddpm::emu::detail::refuse_if_capturing(
          stream, "cudaFreeAsync", "stream-ordered freeing (a memory free node)"))
    return e;
  return ddpm::emu::detail::free_device(devPtr, "cudaFreeAsync");
}

cudaError_t cudaMallocHost(void** ptr, size_t size) {
  if (cudaError_t e = ddpm::emu::detail::check_unsafe_call("cudaMallocHost")) return e;
  if (!ptr) return fail(cudaErrorInvalidValue, "cudaMallocHost: null output pointer");
  *ptr = ::operator new(size == 0 ? 1 : size, std::nothrow);
  if (!*ptr) return fail(cudaErrorMemoryAllocation, "cudaMallocHost: out of host memory");
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  r.pinned_host.emplace(static_cast<const unsigned char*>(*ptr), size == 0 ? 1 : size);
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** pHost, size_t size, unsigned int) {
  return cudaMallocHost(pHost, size);
}
cudaError_t cudaFreeHost(void* ptr) {
  if (cudaError_t e = ddpm::emu::detail::check_unsafe_call("cudaFreeHost")) return e;
  if (!ptr) return cudaSuccess;
  auto& r = registry();
  bool known;
  {
    std::lock_guard lock(r.mutex);
    known = r.pinned_host.erase(static_cast<const unsigned char*>(ptr)) != 0;
  }
  if (!known)
    return fail(cudaErrorInvalidValue, "cudaFreeHost: pointer was not returned by cudaMallocHost");
  ::operator delete(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  return ddpm::emu::detail::copy_synchronously(dst, src, count, kind, "cudaMemcpy");
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  return ddpm::emu::detail::copy_async(dst, src, count, kind, stream);
}
cudaError_t cudaMemset(void* devPtr, int value, size_t count) {
  using namespace ddpm::emu::detail;
  if (cudaError_t e = check_synchronous_call("cudaMemset")) return e;
  if (count == 0) return cudaSuccess;
  if (cudaError_t e = check_set(devPtr, count, "cudaMemset")) return e;
  run_set(devPtr, value, count);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* devPtr, int value, size_t count, cudaStream_t stream) {
  using namespace ddpm::emu::detail;
  if (count == 0) return cudaSuccess;
  if (cudaError_t e = check_set(devPtr, count, "cudaMemsetAsync")) return e;
  if (!is_known_stream(stream))
    return fail(cudaErrorInvalidResourceHandle, "cudaMemsetAsync: unknown stream");
  const Routed routed = capture_or_run(stream, "cudaMemsetAsync", [&] {
    auto op = std::make_shared<NodeOp>();
    op->type = cudaGraphNodeTypeMemset;
    op->what = "set (cudaMemsetAsync of " + std::to_string(count) + " bytes)";
    op->dst = devPtr;
    op->value = static_cast<unsigned char>(value);
    op->element_size = 1;
    op->width = count;
    op->pitch = count;
    op->bytes = count;
    return op;
  });
  if (routed.error || routed.recorded) return routed.error;
  run_set(devPtr, value, count);
  return cudaSuccess;
}

// __device__ / __constant__ variables are ordinary globals here: a symbol is
// its address. The copies are synchronous, like cudaMemcpy.
cudaError_t cudaMemcpyToSymbol(const void* symbol, const void* src, size_t count, size_t offset,
                               cudaMemcpyKind) {
  using namespace ddpm::emu::detail;
  if (cudaError_t e = check_synchronous_call("cudaMemcpyToSymbol")) return e;
  std::memcpy(static_cast<char*>(const_cast<void*>(symbol)) + offset, src, count);
  tally(Counter::kMemcpys);
  tally(Counter::kHostSynchronizations);
  return cudaSuccess;
}
cudaError_t cudaMemcpyFromSymbol(void* dst, const void* symbol, size_t count, size_t offset,
                                 cudaMemcpyKind) {
  using namespace ddpm::emu::detail;
  if (cudaError_t e = check_synchronous_call("cudaMemcpyFromSymbol")) return e;
  std::memcpy(dst, static_cast<const char*>(symbol) + offset, count);
  tally(Counter::kMemcpys);
  tally(Counter::kHostSynchronizations);
  return cudaSuccess;
}
cudaError_t cudaGetSymbolAddress(void** devPtr, const void* symbol) {
  *devPtr = const_cast<void*>(symbol);
  return cudaSuccess;
}

// Free: the host's MemAvailable (what it can give without swapping; MemFree,
// _SC_AVPHYS_PAGES, leaves out the page cache and reads low on a busy machine).
cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  *total = ddpm::emu::detail::host_memory_bytes();
  *free =
      static_cast<size_t>(sysconf(_SC_AVPHYS_PAGES)) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (FILE* f = std::fopen("/proc/meminfo", "r")) {
    char key[64];
    unsigned long long kib = 0;
    while (std::fscanf(f, "%63s %llu kB", key, &kib) == 2)
      if (std::strcmp(key, "MemAvailable:") == 0) {
        *free = static_cast<size_t>(kib) * 1024;
        break;
      }
    std::fclose(f);
  }
  return cudaSuccess;
}

// ---- Device and function properties --------------------------------------------------------

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
// The emulator mirrors the toolkit it is compiled against, runtime and driver.
cudaError_t cudaRuntimeGetVersion(int* version) {
  if (!version) return fail(cudaErrorInvalidValue, "cudaRuntimeGetVersion: null pointer");
  *version = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* version) {
  if (!version) return fail(cudaErrorInvalidValue, "cudaDriverGetVersion: null pointer");
  *version = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device != 0) return fail(cudaErrorInvalidDevice, "cudaSetDevice: the emulator is device 0");
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0)
    return fail(cudaErrorInvalidDevice, "cudaGetDeviceProperties: the emulator is device 0");
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "ddpm CUDA emulator (CPU)");
  prop->totalGlobalMem = ddpm::emu::detail::host_memory_bytes();
  prop->sharedMemPerBlock = ddpm::emu::detail::kDefaultDynamicSharedBytes;
  prop->sharedMemPerBlockOptin = ddpm::emu::detail::kMaxSharedBytesPerBlock;
  prop->sharedMemPerMultiprocessor = 228 * 1024;
  prop->regsPerBlock = 65536;
  prop->regsPerMultiprocessor = 65536;
  prop->warpSize = 32;
  prop->memPitch = SIZE_MAX;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 0x7fffffff;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->totalConstMem = 65536;
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = ddpm::emu::detail::kMultiprocessors;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->maxBlocksPerMultiProcessor = 32;
  prop->l2CacheSize = 50 * 1024 * 1024;
  prop->unifiedAddressing = 1;
  prop->managedMemory = 1;
  prop->canMapHostMemory = 1;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0)
    return fail(cudaErrorInvalidDevice, "cudaDeviceGetAttribute: the emulator is device 0");
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock:
      *value = 1024;
      break;
    case cudaDevAttrMaxBlockDimX:
      *value = 1024;
      break;
    case cudaDevAttrMaxBlockDimY:
      *value = 1024;
      break;
    case cudaDevAttrMaxBlockDimZ:
      *value = 64;
      break;
    case cudaDevAttrMaxGridDimX:
      *value = 0x7fffffff;
      break;
    case cudaDevAttrMaxGridDimY:
      *value = 65535;
      break;
    case cudaDevAttrMaxGridDimZ:
      *value = 65535;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *value = 48 * 1024;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = static_cast<int>(ddpm::emu::detail::kMaxSharedBytesPerBlock);
      break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor:
      *value = 228 * 1024;
      break;
    case cudaDevAttrWarpSize:
      *value = 32;
      break;
    case cudaDevAttrMultiProcessorCount:
      *value = ddpm::emu::detail::kMultiprocessors;
      break;
    case cudaDevAttrMaxThreadsPerMultiProcessor:
      *value = 2048;
      break;
    case cudaDevAttrComputeCapabilityMajor:
      *value = 9;
      break;
    case cudaDevAttrComputeCapabilityMinor:
      *value = 0;
      break;
    case cudaDevAttrMaxRegistersPerBlock:
      *value = 65536;
      break;
    case cudaDevAttrL2CacheSize:
      *value = 50 * 1024 * 1024;
      break;
    default:
      return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: attribute " +
                                             std::to_string(int(attr)) + " is not emulated");
  }
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || std::size_t(value) > ddpm::emu::detail::kMaxSharedBytesPerBlock)
      return fail(cudaErrorInvalidValue,
                  "cudaFuncSetAttribute: " + std::to_string(value) +
                      " bytes of dynamic shared memory exceeds the 227 KB a block may have");
    auto& r = registry();
    std::lock_guard lock(r.mutex);
    r.max_dynamic_shared[func] = std::size_t(value);
    return cudaSuccess;
  }
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
  return fail(cudaErrorInvalidValue,
              "cudaFuncSetAttribute: attribute " + std::to_string(int(attr)) + " is not emulated");
}

cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void* func) {
  std::memset(attr, 0, sizeof *attr);
  attr->maxThreadsPerBlock = 1024;
  attr->maxDynamicSharedSizeBytes =
      static_cast<int>(ddpm::emu::detail::max_dynamic_shared_bytes(func));
  attr->binaryVersion = 90;
  attr->ptxVersion = 90;
  return cudaSuccess;
}

cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* numBlocks, const void*,
                                                          int blockSize, size_t) {
  if (blockSize <= 0 || blockSize > 1024)
    return fail(
        cudaErrorInvalidValue,
        "cudaOccupancyMaxActiveBlocksPerMultiprocessor: block size " + std::to_string(blockSize));
  const int by_threads = 2048 / blockSize;
  *numBlocks = by_threads < 32 ? by_threads : 32;
  return cudaSuccess;
}
