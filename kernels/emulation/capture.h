// Stream capture as the rest of the emulated runtime sees it: every
// stream-ordered operation is offered to capture first (recorded as a node if
// its stream captures), and every call the driver restricts during capture
// asks here whether it may run. Refusals follow the driver: the error code it
// returns, recorded as the thread's last error with a reason in
// ddpm::emu::last_error_detail(), and the capture sequences involved
// invalidated, so that cudaStreamEndCapture then fails. Internal to the runtime.
#pragma once

#include <cuda_runtime.h>

#include <functional>
#include <memory>

#include "graph.h"

namespace ddpm::emu::detail {

struct Routed {
  cudaError_t error = cudaSuccess;  // refused: already recorded as the last error
  bool recorded = false;            // captured as a node: do not run it now
};

// Work that `call` enqueues on `stream` (a kernel launch, an async copy or
// set, a host function). If the stream captures, make_op() is recorded after
// the stream's current dependencies. Refused: legacy-stream work while a
// blocking stream captures (cudaErrorStreamCaptureImplicit), work on a stream
// whose capture was invalidated (cudaErrorStreamCaptureInvalidated).
// Otherwise the caller runs it now.
Routed capture_or_run(cudaStream_t stream, const char* call,
                      const std::function<std::shared_ptr<const NodeOp>()>& make_op);

// Stream-ordered work the emulator cannot capture (`what` says which):
// cudaErrorStreamCaptureUnsupported if `stream` captures, invalidating it.
cudaError_t refuse_if_capturing(cudaStream_t stream, const char* call, const char* what);

// A "potentially unsafe" call (cudaMalloc, cudaFree, a synchronous copy or
// set, a stream or event synchronisation): cudaErrorStreamCaptureUnsupported
// if the calling thread's capture mode prohibits it, invalidating the capture
// sequences that prohibit it.
cudaError_t check_unsafe_call(const char* call);

// Work on the legacy stream that is not enqueued through capture_or_run (a
// synchronous copy or set uses it): cudaErrorStreamCaptureImplicit while a
// blocking stream captures, invalidating those captures.
cudaError_t check_legacy_stream_use(cudaStream_t stream, const char* call);

// cudaStreamSynchronize / cudaStreamQuery of `stream`: refused for a capturing
// stream in every mode (cudaErrorStreamCaptureUnsupported), and for the legacy
// stream while a blocking stream captures; invalidates the capture.
cudaError_t check_stream_wait(cudaStream_t stream, const char* call);

// cudaDeviceSynchronize: refused while any stream of any thread captures, in
// every mode, invalidating every capture.
cudaError_t check_device_synchronize(const char* call);

// cudaStreamDestroy of a capturing stream: refused, invalidating its capture.
cudaError_t check_stream_destroy(cudaStream_t stream);

// cudaEventRecord(event, stream): on a capturing stream the event remembers
// the stream's capture dependencies (*captured = true) and nothing runs.
cudaError_t capture_event_record(cudaEvent_t event, cudaStream_t stream, bool* captured);

// cudaStreamWaitEvent(stream, event, flags): joins `stream` to the capture the
// event was recorded in (a fork), or adds the event's nodes to its
// dependencies (a join). `event_recorded`: recorded outside capture at least once.
cudaError_t capture_stream_wait(cudaStream_t stream, cudaEvent_t event, bool event_recorded,
                                unsigned flags);

// cudaEventQuery / cudaEventSynchronize / cudaEventElapsedTime of an event
// last recorded in a capture still going on: cudaErrorCapturedEvent.
cudaError_t check_event_use(cudaEvent_t event, const char* call);

// cudaEventDestroy: forget what capture knew of the event.
void forget_event(cudaEvent_t event);

}  // namespace ddpm::emu::detail
