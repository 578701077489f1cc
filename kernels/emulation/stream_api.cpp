// Streams, events, host functions and synchronisation for emulated builds.
// Work runs when it is enqueued, so a stream or event is always complete and
// a synchronisation only counts (Stats::host_synchronizations). While streams
// capture (capture.h), work on a capturing stream is recorded instead, an
// event recorded there stands for captured work (forks and joins), and the
// synchronisations the driver refuses during capture are refused here.
#include <cuda_runtime.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "capture.h"
#include "runtime_state.h"

namespace ddpm::emu::detail {

namespace {

struct Event {
  std::chrono::steady_clock::time_point when;
  bool recorded = false;  // recorded outside capture at least once
};

struct StreamRegistry {
  std::mutex mutex;                          // taken after graph_mutex(), never before
  std::map<cudaStream_t, unsigned> streams;  // created streams and their flags
  std::map<cudaEvent_t, Event> events;
};

StreamRegistry& streams() {
  static auto* r = new StreamRegistry;  // never destroyed: usable from static destructors
  return *r;
}

bool known_event(cudaEvent_t event, bool* recorded = nullptr) {
  StreamRegistry& r = streams();
  std::lock_guard lock(r.mutex);
  auto it = r.events.find(event);
  if (it == r.events.end()) return false;
  if (recorded) *recorded = it->second.recorded;
  return true;
}

}  // namespace

bool is_known_stream(cudaStream_t stream) {
  if (stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread) return true;
  StreamRegistry& r = streams();
  std::lock_guard lock(r.mutex);
  return r.streams.count(stream) != 0;
}

bool is_blocking_stream(cudaStream_t stream) {
  if (stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread) return true;
  StreamRegistry& r = streams();
  std::lock_guard lock(r.mutex);
  auto it = r.streams.find(stream);
  return it == r.streams.end() || (it->second & cudaStreamNonBlocking) == 0;
}

}  // namespace ddpm::emu::detail

using ddpm::emu::detail::fail;

// ---- Streams ------------------------------------------------------------------------

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* pStream, unsigned int flags) {
  if (!pStream) return fail(cudaErrorInvalidValue, "cudaStreamCreate: null output pointer");
  if (flags & ~unsigned(cudaStreamNonBlocking))
    return fail(cudaErrorInvalidValue, "cudaStreamCreateWithFlags: unknown flags");
  // A distinct, never dereferenced address per stream.
  *pStream = reinterpret_cast<cudaStream_t>(new char);
  auto& r = ddpm::emu::detail::streams();
  std::lock_guard lock(r.mutex);
  r.streams.emplace(*pStream, flags);
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* pStream) {
  return cudaStreamCreateWithFlags(pStream, cudaStreamDefault);
}
cudaError_t cudaStreamCreateWithPriority(cudaStream_t* pStream, unsigned int flags, int) {
  return cudaStreamCreateWithFlags(pStream, flags);
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (cudaError_t e = ddpm::emu::detail::check_stream_destroy(stream)) return e;
  auto& r = ddpm::emu::detail::streams();
  bool known;
  {
    std::lock_guard lock(r.mutex);
    known = r.streams.erase(stream) != 0;
  }
  if (!known) return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: unknown stream");
  delete reinterpret_cast<char*>(stream);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  using namespace ddpm::emu::detail;
  if (!is_known_stream(stream))
    return fail(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize: unknown stream");
  if (cudaError_t e = check_stream_wait(stream, "cudaStreamSynchronize")) return e;
  if (cudaError_t e = check_unsafe_call("cudaStreamSynchronize")) return e;
  tally(Counter::kHostSynchronizations);
  return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t stream) {
  using namespace ddpm::emu::detail;
  if (!is_known_stream(stream))
    return fail(cudaErrorInvalidResourceHandle, "cudaStreamQuery: unknown stream");
  return check_stream_wait(stream, "cudaStreamQuery");  // all enqueued work is done
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  using namespace ddpm::emu::detail;
  if (!is_known_stream(stream))
    return fail(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: unknown stream");
  bool recorded = false;
  if (!known_event(event, &recorded))
    return fail(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: unknown event");
  return capture_stream_wait(stream, event, recorded, flags);
}
cudaError_t cudaDeviceSynchronize(void) {
  using namespace ddpm::emu::detail;
  if (cudaError_t e = check_device_synchronize("cudaDeviceSynchronize")) return e;
  tally(Counter::kHostSynchronizations);
  return cudaSuccess;
}
cudaError_t cudaDeviceReset(void) {
  return cudaSuccess;
}

// Runs `fn` now, or, on a capturing stream, records a host node.
cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* userData) {
  using namespace ddpm::emu::detail;
  if (!fn) return fail(cudaErrorInvalidValue, "cudaLaunchHostFunc: null function");
  if (!is_known_stream(stream))
    return fail(cudaErrorInvalidResourceHandle, "cudaLaunchHostFunc: unknown stream");
  const Routed routed = capture_or_run(stream, "cudaLaunchHostFunc", [&] {
    auto op = std::make_shared<NodeOp>();
    op->type = cudaGraphNodeTypeHost;
    op->what = "host node (cudaLaunchHostFunc)";
    op->fn = fn;
    op->user_data = userData;
    return op;
  });
  if (routed.error || routed.recorded) return routed.error;
  tally(Counter::kHostFunctions);
  fn(userData);
  return cudaSuccess;
}

// ---- Events ------------------------------------------------------------------------

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int) {
  if (!event) return fail(cudaErrorInvalidValue, "cudaEventCreate: null output pointer");
  *event = reinterpret_cast<cudaEvent_t>(new char);
  auto& r = ddpm::emu::detail::streams();
  std::lock_guard lock(r.mutex);
  r.events.emplace(*event, ddpm::emu::detail::Event{});
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  auto& r = ddpm::emu::detail::streams();
  bool known;
  {
    std::lock_guard lock(r.mutex);
    known = r.events.erase(event) != 0;
  }
  if (!known) return fail(cudaErrorInvalidResourceHandle, "cudaEventDestroy: unknown event");
  ddpm::emu::detail::forget_event(event);
  delete reinterpret_cast<char*>(event);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  using namespace ddpm::emu::detail;
  if (!known_event(event))
    return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: unknown event");
  if (!is_known_stream(stream))
    return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: unknown stream");
  bool captured = false;
  if (cudaError_t e = capture_event_record(event, stream, &captured)) return e;
  if (captured) return cudaSuccess;
  auto& r = streams();
  std::lock_guard lock(r.mutex);
  r.events[event] = {std::chrono::steady_clock::now(), true};
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  using namespace ddpm::emu::detail;
  if (!known_event(event))
    return fail(cudaErrorInvalidResourceHandle, "cudaEventSynchronize: unknown event");
  if (cudaError_t e = check_event_use(event, "cudaEventSynchronize")) return e;
  if (cudaError_t e = check_unsafe_call("cudaEventSynchronize")) return e;
  tally(Counter::kHostSynchronizations);
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  using namespace ddpm::emu::detail;
  if (!known_event(event))
    return fail(cudaErrorInvalidResourceHandle, "cudaEventQuery: unknown event");
  return check_event_use(event, "cudaEventQuery");  // recorded work is done
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  using namespace ddpm::emu::detail;
  if (cudaError_t e = check_event_use(start, "cudaEventElapsedTime")) return e;
  if (cudaError_t e = check_event_use(end, "cudaEventElapsedTime")) return e;
  auto& r = streams();
  bool recorded;
  {
    std::lock_guard lock(r.mutex);
    auto a = r.events.find(start), b = r.events.find(end);
    recorded =
        a != r.events.end() && b != r.events.end() && a->second.recorded && b->second.recorded;
    if (recorded)
      *ms = std::chrono::duration<float, std::milli>(b->second.when - a->second.when).count();
  }
  if (!recorded)
    return fail(cudaErrorInvalidResourceHandle,
                "cudaEventElapsedTime: unknown or unrecorded event");
  return cudaSuccess;
}
