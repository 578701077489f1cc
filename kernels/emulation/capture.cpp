// Stream capture under the emulator: cudaStreamBeginCapture(ToGraph),
// cudaStreamEndCapture, IsCapturing, GetCaptureInfo,
// UpdateCaptureDependencies, cudaThreadExchangeStreamCaptureMode, forks and
// joins through events, and the rules the driver enforces while streams
// capture (capture.h). Where the CUDA documentation gives the error, it is
// used; the rest follows what users report from real drivers:
//   - "potentially unsafe" calls are refused by the thread's capture mode
//     (cudaThreadExchangeStreamCaptureMode's rules) with
//     cudaErrorStreamCaptureUnsupported, and invalidate the capture;
//   - synchronising or querying a capturing stream, and cudaDeviceSynchronize
//     while anything captures, are refused in every mode;
//   - legacy-stream work while a blocking stream captures is
//     cudaErrorStreamCaptureImplicit (a synchronous cudaMemcpy then reports
//     this rather than cudaErrorStreamCaptureUnsupported);
//   - invalid arguments (a bad pointer, a bad launch configuration) are
//     reported without invalidating the capture.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "capture.h"
#include "graph.h"
#include "runtime_state.h"

namespace ddpm::emu::detail {

namespace {

struct CaptureSequence {
  unsigned long long id = 0;
  CUgraph_st* graph = nullptr;
  bool owns_graph = false;  // cudaStreamBeginCapture made it: destroyed if the capture fails
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::thread::id thread;            // that began it
  const void* origin = nullptr;      // the stream it began on (a key)
  std::vector<const void*> streams;  // every stream in it, origin first
  bool invalidated = false;
  bool ended = false;
  std::string why;  // the first reason it was invalidated
};

struct StreamCapture {
  std::shared_ptr<CaptureSequence> sequence;
  cudaStream_t stream = nullptr;
  std::vector<CUgraphNode_st*> dependencies;  // of the next node captured on this stream
  std::vector<cudaGraphEdgeData> edge_data;   // all default, parallel to dependencies
};

struct EventCapture {
  std::weak_ptr<CaptureSequence> sequence;
  std::vector<CUgraphNode_st*> nodes;
};

struct CaptureState {
  std::map<const void*, StreamCapture> streams;  // the capturing streams, by key
  std::map<cudaEvent_t, EventCapture> events;    // events last recorded in a capture
  unsigned long long next_id = 1;
};

// Guarded by graph_mutex().
CaptureState& state() {
  static auto* s = new CaptureState;
  return *s;
}

thread_local cudaStreamCaptureMode t_mode = cudaStreamCaptureModeGlobal;
thread_local char t_per_thread_stream;  // its address: this thread's cudaStreamPerThread

// Streams by identity: cudaStreamPerThread is a different stream in each thread.
const void* stream_key(cudaStream_t stream) {
  return stream == cudaStreamPerThread ? static_cast<const void*>(&t_per_thread_stream) : stream;
}

std::string stream_text(cudaStream_t stream) {
  if (stream == nullptr) return "stream 0 (the legacy stream)";
  if (stream == cudaStreamLegacy) return "cudaStreamLegacy";
  if (stream == cudaStreamPerThread) return "cudaStreamPerThread";
  char text[40];
  std::snprintf(text, sizeof text, "stream %p", static_cast<const void*>(stream));
  return text;
}

const char* mode_text(cudaStreamCaptureMode mode) {
  switch (mode) {
    case cudaStreamCaptureModeGlobal:
      return "global";
    case cudaStreamCaptureModeThreadLocal:
      return "thread-local";
    case cudaStreamCaptureModeRelaxed:
      return "relaxed";
  }
  return "unknown";
}

std::string describe(const CaptureSequence& s) {
  return "capture " + std::to_string(s.id) + " (" + mode_text(s.mode) + " mode, begun by " +
         (s.thread == std::this_thread::get_id() ? "this thread" : "another thread") + ")";
}

StreamCapture* find(cudaStream_t stream) {
  auto it = state().streams.find(stream_key(stream));
  return it == state().streams.end() ? nullptr : &it->second;
}

std::vector<CaptureSequence*> live_sequences() {
  std::vector<CaptureSequence*> out;
  for (auto& [key, sc] : state().streams)
    if (std::find(out.begin(), out.end(), sc.sequence.get()) == out.end())
      out.push_back(sc.sequence.get());
  return out;
}

void invalidate(CaptureSequence& sequence, const std::string& why) {
  if (sequence.invalidated) return;
  sequence.invalidated = true;
  sequence.why = why;
}

// Invalidates `culprits` and reports `code` with `detail`.
cudaError_t refuse(cudaError_t code, const std::string& detail,
                   const std::vector<CaptureSequence*>& culprits) {
  for (CaptureSequence* s : culprits) invalidate(*s, detail);
  return fail(code, detail);
}

void set_dependencies(StreamCapture& sc, std::vector<CUgraphNode_st*> nodes) {
  sc.dependencies = std::move(nodes);
  sc.edge_data.assign(sc.dependencies.size(), cudaGraphEdgeData{});
}

void add_dependencies(StreamCapture& sc, const std::vector<CUgraphNode_st*>& nodes) {
  std::vector<CUgraphNode_st*> merged = sc.dependencies;
  for (CUgraphNode_st* n : nodes)
    if (std::find(merged.begin(), merged.end(), n) == merged.end()) merged.push_back(n);
  set_dependencies(sc, std::move(merged));
}

// Legacy-stream work while blocking streams capture: those captures would
// depend on it. Caller holds graph_mutex().
cudaError_t legacy_conflict(const std::string& call) {
  std::vector<CaptureSequence*> culprits;
  std::string blocking;
  for (auto& [key, sc] : state().streams)
    if (is_blocking_stream(sc.stream)) {
      if (std::find(culprits.begin(), culprits.end(), sc.sequence.get()) == culprits.end())
        culprits.push_back(sc.sequence.get());
      if (blocking.empty()) blocking = stream_text(sc.stream);
    }
  if (culprits.empty()) return cudaSuccess;
  return refuse(cudaErrorStreamCaptureImplicit,
                call + ": work on the legacy stream while " + blocking + " (a blocking stream) " +
                    "captures in " + describe(*culprits.front()) +
                    "; capture on a stream made with cudaStreamNonBlocking, and keep synchronous "
                    "and stream-0 work out of the capture",
                culprits);
}

// Caller holds graph_mutex(). Refuses `call` on a capturing stream.
cudaError_t refuse_on_capturing(StreamCapture& sc, const std::string& call,
                                const std::string& why) {
  return refuse(cudaErrorStreamCaptureUnsupported,
                call + " on " + stream_text(sc.stream) + ", which captures in " +
                    describe(*sc.sequence) + ": " + why,
                {sc.sequence.get()});
}

// Caller holds graph_mutex(). Ends the sequence: every stream in it stops
// capturing, its events forget it.
void end_sequence(CaptureSequence& sequence) {
  for (const void* key : sequence.streams) state().streams.erase(key);
  for (auto it = state().events.begin(); it != state().events.end();) {
    auto s = it->second.sequence.lock();
    if (!s || s.get() == &sequence)
      it = state().events.erase(it);
    else
      ++it;
  }
  sequence.ended = true;
  --sequence.graph->captures;
}

// Caller holds graph_mutex(). Why the capture has work not joined back into
// its origin stream, or "".
std::string unjoined_work(const CaptureSequence& sequence) {
  const StreamCapture& origin = state().streams.at(sequence.origin);
  for (const void* key : sequence.streams) {
    if (key == sequence.origin) continue;
    const StreamCapture& other = state().streams.at(key);
    for (const CUgraphNode_st* node : other.dependencies) {
      bool joined = false;
      for (const CUgraphNode_st* d : origin.dependencies) joined = joined || depends_on(d, node);
      if (!joined)
        return "the " + node->op->what + " captured on " + stream_text(other.stream) +
               " (forked from the origin stream through an event) was never joined back: record "
               "an event after it and make the origin stream wait on it";
    }
  }
  return "";
}

cudaError_t begin_capture(cudaStream_t stream, cudaGraph_t graph,
                          const cudaGraphNode_t* dependencies, std::size_t count,
                          cudaStreamCaptureMode mode, const char* call) {
  if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal &&
      mode != cudaStreamCaptureModeRelaxed)
    return fail(cudaErrorInvalidValue, std::string(call) + ": unknown capture mode");
  if (is_legacy_stream(stream))
    return fail(cudaErrorStreamCaptureUnsupported,
                std::string(call) + ": the legacy stream cannot capture; use a created stream");
  if (!is_known_stream(stream))
    return fail(cudaErrorInvalidResourceHandle, std::string(call) + ": unknown stream");
  std::lock_guard lock(graph_mutex());
  if (find(stream))
    return fail(cudaErrorIllegalState,
                std::string(call) + ": " + stream_text(stream) + " is already capturing");
  std::vector<CUgraphNode_st*> initial;
  if (graph) {
    if (!is_live_graph(graph))
      return fail(cudaErrorInvalidValue, std::string(call) + ": not a graph");
    if (count > 0 && !dependencies)
      return fail(cudaErrorInvalidValue, std::string(call) + ": dependencies missing");
    for (std::size_t i = 0; i < count; ++i) {
      if (!is_live_node(dependencies[i]) || dependencies[i]->graph != graph)
        return fail(cudaErrorInvalidValue, std::string(call) + ": dependency " + std::to_string(i) +
                                               " is not a node of the graph");
      initial.push_back(dependencies[i]);
    }
  }
  auto sequence = std::make_shared<CaptureSequence>();
  sequence->id = state().next_id++;
  sequence->owns_graph = graph == nullptr;
  sequence->graph = graph ? graph : create_graph();
  sequence->mode = mode;
  sequence->thread = std::this_thread::get_id();
  sequence->origin = stream_key(stream);
  sequence->streams.push_back(sequence->origin);
  ++sequence->graph->captures;
  StreamCapture& sc = state().streams[sequence->origin];
  sc.sequence = std::move(sequence);
  sc.stream = stream;
  set_dependencies(sc, std::move(initial));
  return cudaSuccess;
}

}  // namespace

Routed capture_or_run(cudaStream_t stream, const char* call,
                      const std::function<std::shared_ptr<const NodeOp>()>& make_op) {
  std::lock_guard lock(graph_mutex());
  if (is_legacy_stream(stream)) return {legacy_conflict(call), false};
  StreamCapture* sc = find(stream);
  if (!sc) return {};
  if (sc->sequence->invalidated)
    return {fail(cudaErrorStreamCaptureInvalidated,
                 std::string(call) + " on " + stream_text(stream) + ": its " +
                     describe(*sc->sequence) + " was invalidated earlier: " + sc->sequence->why),
            false};
  CUgraphNode_st* node = add_node(sc->sequence->graph, sc->dependencies, make_op());
  set_dependencies(*sc, {node});
  return {cudaSuccess, true};
}

cudaError_t refuse_if_capturing(cudaStream_t stream, const char* call, const char* what) {
  std::lock_guard lock(graph_mutex());
  if (is_legacy_stream(stream)) return legacy_conflict(call);
  StreamCapture* sc = find(stream);
  if (!sc) return cudaSuccess;
  return refuse_on_capturing(*sc, call, std::string(what) + " is not emulated in stream capture");
}

cudaError_t check_unsafe_call(const char* call) {
  std::lock_guard lock(graph_mutex());
  const std::thread::id self = std::this_thread::get_id();
  std::vector<CaptureSequence*> culprits;
  for (CaptureSequence* s : live_sequences()) {
    const bool own = s->thread == self && s->mode != cudaStreamCaptureModeRelaxed &&
                     t_mode != cudaStreamCaptureModeRelaxed;
    const bool others = s->thread != self && s->mode == cudaStreamCaptureModeGlobal &&
                        t_mode == cudaStreamCaptureModeGlobal;
    if (own || others) culprits.push_back(s);
  }
  if (culprits.empty()) return cudaSuccess;
  return refuse(cudaErrorStreamCaptureUnsupported,
                std::string(call) + " while " + describe(*culprits.front()) +
                    " is going on: the driver refuses potentially unsafe calls (allocation, "
                    "freeing, synchronous copies and sets, synchronisation) then; do them before "
                    "cudaStreamBeginCapture, or use stream-ordered forms on the capturing stream",
                culprits);
}

cudaError_t check_legacy_stream_use(cudaStream_t stream, const char* call) {
  if (!is_legacy_stream(stream)) return cudaSuccess;
  std::lock_guard lock(graph_mutex());
  return legacy_conflict(call);
}

cudaError_t check_stream_wait(cudaStream_t stream, const char* call) {
  std::lock_guard lock(graph_mutex());
  if (is_legacy_stream(stream)) return legacy_conflict(call);
  StreamCapture* sc = find(stream);
  if (!sc) return cudaSuccess;
  return refuse_on_capturing(*sc, call,
                             "nothing captured has run, so there is nothing to wait for or query");
}

cudaError_t check_device_synchronize(const char* call) {
  std::lock_guard lock(graph_mutex());
  std::vector<CaptureSequence*> all = live_sequences();
  if (all.empty()) return cudaSuccess;
  return refuse(cudaErrorStreamCaptureUnsupported,
                std::string(call) + " while " + describe(*all.front()) +
                    " is going on: it would wait for a capturing stream (refused in every mode)",
                all);
}

cudaError_t check_stream_destroy(cudaStream_t stream) {
  std::lock_guard lock(graph_mutex());
  StreamCapture* sc = find(stream);
  if (!sc) return cudaSuccess;
  return refuse_on_capturing(*sc, "cudaStreamDestroy", "end the capture first");
}

cudaError_t capture_event_record(cudaEvent_t event, cudaStream_t stream, bool* captured) {
  *captured = false;
  std::lock_guard lock(graph_mutex());
  if (is_legacy_stream(stream)) {
    if (cudaError_t e = legacy_conflict("cudaEventRecord")) return e;
  }
  StreamCapture* sc = is_legacy_stream(stream) ? nullptr : find(stream);
  if (!sc) {
    state().events.erase(event);
    return cudaSuccess;
  }
  if (sc->sequence->invalidated)
    return fail(cudaErrorStreamCaptureInvalidated,
                "cudaEventRecord on " + stream_text(stream) + ": its " + describe(*sc->sequence) +
                    " was invalidated earlier: " + sc->sequence->why);
  state().events[event] = EventCapture{sc->sequence, sc->dependencies};
  *captured = true;
  return cudaSuccess;
}

cudaError_t capture_stream_wait(cudaStream_t stream, cudaEvent_t event, bool event_recorded,
                                unsigned flags) {
  std::lock_guard lock(graph_mutex());
  const bool legacy = is_legacy_stream(stream);
  StreamCapture* sc = legacy ? nullptr : find(stream);
  std::shared_ptr<CaptureSequence> source;
  std::vector<CUgraphNode_st*> event_nodes;
  if (auto it = state().events.find(event); it != state().events.end()) {
    source = it->second.sequence.lock();
    event_nodes = it->second.nodes;
  }
  if (source && !source->ended) {
    if (source->invalidated) {
      if (sc)
        return fail(cudaErrorStreamCaptureInvalidated,
                    "cudaStreamWaitEvent: the event's " + describe(*source) +
                        " was invalidated earlier: " + source->why);
      return fail(cudaErrorInvalidValue,
                  "cudaStreamWaitEvent: the event was recorded in a capture that was "
                  "invalidated: " +
                      source->why);
    }
    if (sc && sc->sequence == source) {  // a join (or a wait within one stream)
      add_dependencies(*sc, event_nodes);
      return cudaSuccess;
    }
    if (sc)
      return refuse(cudaErrorStreamCaptureMerge,
                    "cudaStreamWaitEvent: " + stream_text(stream) + " captures in " +
                        describe(*sc->sequence) + " and the event was recorded in " +
                        describe(*source) + "; the driver does not merge separate captures",
                    {sc->sequence.get(), source.get()});
    if (legacy)
      return refuse(cudaErrorStreamCaptureImplicit,
                    "cudaStreamWaitEvent: the legacy stream cannot join " + describe(*source),
                    {source.get()});
    // A fork: the stream joins the capture, after the event's nodes.
    StreamCapture& joined = state().streams[stream_key(stream)];
    joined.sequence = source;
    joined.stream = stream;
    set_dependencies(joined, event_nodes);
    source->streams.push_back(stream_key(stream));
    return cudaSuccess;
  }
  if (sc) {
    if (!event_recorded) return cudaSuccess;  // waiting for nothing
    if (sc->sequence->invalidated)
      return fail(cudaErrorStreamCaptureInvalidated,
                  "cudaStreamWaitEvent on " + stream_text(stream) + ": its " +
                      describe(*sc->sequence) + " was invalidated earlier: " + sc->sequence->why);
    if (flags & cudaEventWaitExternal)
      return refuse_on_capturing(*sc, "cudaStreamWaitEvent",
                                 "external event wait nodes (cudaEventWaitExternal) are not "
                                 "emulated");
    return refuse(cudaErrorStreamCaptureIsolation,
                  "cudaStreamWaitEvent: " + stream_text(stream) + " captures in " +
                      describe(*sc->sequence) +
                      " and waits on an event recorded outside any capture; record the event "
                      "before cudaStreamBeginCapture and wait on it there, or pass "
                      "cudaEventWaitExternal",
                  {sc->sequence.get()});
  }
  if (legacy) return legacy_conflict("cudaStreamWaitEvent");
  return cudaSuccess;
}

cudaError_t check_event_use(cudaEvent_t event, const char* call) {
  std::lock_guard lock(graph_mutex());
  auto it = state().events.find(event);
  if (it == state().events.end()) return cudaSuccess;
  std::shared_ptr<CaptureSequence> source = it->second.sequence.lock();
  if (!source || source->ended) return cudaSuccess;
  return refuse(cudaErrorCapturedEvent,
                std::string(call) + " of an event last recorded in " + describe(*source) +
                    ": it stands for captured work that has not run",
                {source.get()});
}

void forget_event(cudaEvent_t event) {
  std::lock_guard lock(graph_mutex());
  state().events.erase(event);
}

}  // namespace ddpm::emu::detail

using ddpm::emu::detail::fail;
using ddpm::emu::detail::graph_mutex;

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  return ddpm::emu::detail::begin_capture(stream, nullptr, nullptr, 0, mode,
                                          "cudaStreamBeginCapture");
}

cudaError_t cudaStreamBeginCaptureToGraph(cudaStream_t stream, cudaGraph_t graph,
                                          const cudaGraphNode_t* dependencies,
                                          const cudaGraphEdgeData* dependencyData,
                                          size_t numDependencies, cudaStreamCaptureMode mode) {
  if (!graph) return fail(cudaErrorInvalidValue, "cudaStreamBeginCaptureToGraph: null graph");
  if (dependencyData)
    for (size_t i = 0; i < numDependencies; ++i)
      if (dependencyData[i].from_port || dependencyData[i].to_port || dependencyData[i].type)
        return fail(cudaErrorNotSupported,
                    "cudaStreamBeginCaptureToGraph: programmatic or port edges are not emulated");
  return ddpm::emu::detail::begin_capture(stream, graph, dependencies, numDependencies, mode,
                                          "cudaStreamBeginCaptureToGraph");
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* pGraph) {
  using namespace ddpm::emu::detail;
  if (!pGraph) return fail(cudaErrorInvalidValue, "cudaStreamEndCapture: null output pointer");
  std::lock_guard lock(graph_mutex());
  StreamCapture* sc = is_legacy_stream(stream) ? nullptr : find(stream);
  if (!sc)
    return fail(cudaErrorIllegalState,
                "cudaStreamEndCapture: " + stream_text(stream) + " is not capturing");
  std::shared_ptr<CaptureSequence> sequence = sc->sequence;
  if (stream_key(stream) != sequence->origin)
    return refuse(cudaErrorStreamCaptureUnmatched,
                  "cudaStreamEndCapture on " + stream_text(stream) + ", which joined " +
                      describe(*sequence) + " through an event; end it on the stream it began on",
                  {sequence.get()});
  if (sequence->mode != cudaStreamCaptureModeRelaxed &&
      sequence->thread != std::this_thread::get_id())
    return fail(cudaErrorStreamCaptureWrongThread,
                "cudaStreamEndCapture: " + describe(*sequence) +
                    " must be ended by the thread that began it (only relaxed captures may not)");
  std::string failure = sequence->invalidated ? sequence->why : std::string();
  const cudaError_t code =
      sequence->invalidated ? cudaErrorStreamCaptureInvalidated : cudaErrorStreamCaptureUnjoined;
  if (failure.empty()) failure = unjoined_work(*sequence);
  end_sequence(*sequence);
  *pGraph = nullptr;
  if (!failure.empty()) {
    // A graph the capture made is destroyed, unless a stream still captures
    // into one of its conditional bodies: then it is only marked (and leaks).
    if (sequence->owns_graph && !capture_in_progress(sequence->graph))
      destroy_graph(sequence->graph);
    else
      sequence->graph->invalidated = failure;
    return fail(code, "cudaStreamEndCapture: " + describe(*sequence) + " failed: " + failure);
  }
  *pGraph = sequence->graph;
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* pCaptureStatus) {
  using namespace ddpm::emu::detail;
  if (!pCaptureStatus) return fail(cudaErrorInvalidValue, "cudaStreamIsCapturing: null status");
  if (!is_known_stream(stream))
    return fail(cudaErrorInvalidResourceHandle, "cudaStreamIsCapturing: unknown stream");
  std::lock_guard lock(graph_mutex());
  if (is_legacy_stream(stream)) {
    for (auto& [key, sc] : state().streams)
      if (is_blocking_stream(sc.stream))  // the capture is not invalidated (documented)
        return fail(cudaErrorStreamCaptureImplicit,
                    "cudaStreamIsCapturing of the legacy stream while " + stream_text(sc.stream) +
                        " (a blocking stream) captures");
    *pCaptureStatus = cudaStreamCaptureStatusNone;
    return cudaSuccess;
  }
  const StreamCapture* sc = find(stream);
  *pCaptureStatus = !sc                         ? cudaStreamCaptureStatusNone
                    : sc->sequence->invalidated ? cudaStreamCaptureStatusInvalidated
                                                : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

cudaError_t cudaStreamGetCaptureInfo(cudaStream_t stream,
                                     cudaStreamCaptureStatus* captureStatus_out,
                                     unsigned long long* id_out, cudaGraph_t* graph_out,
                                     const cudaGraphNode_t** dependencies_out,
                                     const cudaGraphEdgeData** edgeData_out,
                                     size_t* numDependencies_out) {
  using namespace ddpm::emu::detail;
  if (!captureStatus_out)
    return fail(cudaErrorInvalidValue, "cudaStreamGetCaptureInfo: null captureStatus_out");
  if (edgeData_out && !dependencies_out)
    return fail(cudaErrorInvalidValue,
                "cudaStreamGetCaptureInfo: edgeData_out without dependencies_out");
  cudaStreamCaptureStatus status;
  if (cudaError_t e = cudaStreamIsCapturing(stream, &status)) return e;
  *captureStatus_out = status;
  if (status != cudaStreamCaptureStatusActive) return cudaSuccess;
  std::lock_guard lock(graph_mutex());
  StreamCapture* sc = find(stream);
  if (!sc) {  // ended in between by another thread
    *captureStatus_out = cudaStreamCaptureStatusNone;
    return cudaSuccess;
  }
  if (id_out) *id_out = sc->sequence->id;
  if (graph_out) *graph_out = sc->sequence->graph;
  if (dependencies_out) *dependencies_out = sc->dependencies.data();
  if (edgeData_out) *edgeData_out = sc->edge_data.data();
  if (numDependencies_out) *numDependencies_out = sc->dependencies.size();
  return cudaSuccess;
}

cudaError_t cudaStreamUpdateCaptureDependencies(cudaStream_t stream, cudaGraphNode_t* dependencies,
                                                const cudaGraphEdgeData* dependencyData,
                                                size_t numDependencies, unsigned int flags) {
  using namespace ddpm::emu::detail;
  if (flags != cudaStreamAddCaptureDependencies && flags != cudaStreamSetCaptureDependencies)
    return fail(cudaErrorInvalidValue, "cudaStreamUpdateCaptureDependencies: unknown flags");
  if (numDependencies > 0 && !dependencies)
    return fail(cudaErrorInvalidValue, "cudaStreamUpdateCaptureDependencies: null dependencies");
  if (dependencyData)
    for (size_t i = 0; i < numDependencies; ++i)
      if (dependencyData[i].from_port || dependencyData[i].to_port || dependencyData[i].type)
        return fail(cudaErrorNotSupported,
                    "cudaStreamUpdateCaptureDependencies: programmatic or port edges are not "
                    "emulated");
  std::lock_guard lock(graph_mutex());
  StreamCapture* sc = is_legacy_stream(stream) ? nullptr : find(stream);
  if (!sc)
    return fail(cudaErrorIllegalState, "cudaStreamUpdateCaptureDependencies: " +
                                           stream_text(stream) + " is not capturing");
  if (sc->sequence->invalidated)
    return fail(cudaErrorStreamCaptureInvalidated,
                "cudaStreamUpdateCaptureDependencies: the " + describe(*sc->sequence) +
                    " was invalidated earlier: " + sc->sequence->why);
  std::vector<CUgraphNode_st*> nodes;
  for (size_t i = 0; i < numDependencies; ++i) {
    if (!is_live_node(dependencies[i]) || dependencies[i]->graph != sc->sequence->graph)
      return fail(cudaErrorInvalidValue, "cudaStreamUpdateCaptureDependencies: dependency " +
                                             std::to_string(i) +
                                             " is not a node of the graph being captured");
    nodes.push_back(dependencies[i]);
  }
  if (flags == cudaStreamSetCaptureDependencies) set_dependencies(*sc, {});
  add_dependencies(*sc, nodes);
  return cudaSuccess;
}

cudaError_t cudaThreadExchangeStreamCaptureMode(cudaStreamCaptureMode* mode) {
  if (!mode || (*mode != cudaStreamCaptureModeGlobal && *mode != cudaStreamCaptureModeThreadLocal &&
                *mode != cudaStreamCaptureModeRelaxed))
    return fail(cudaErrorInvalidValue, "cudaThreadExchangeStreamCaptureMode: invalid mode");
  std::swap(*mode, ddpm::emu::detail::t_mode);
  return cudaSuccess;
}
