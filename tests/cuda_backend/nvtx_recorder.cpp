// The static NVTX injection of nvtx_recorder.h. NVTX_NO_IMPL (NVTX's mode for
// tools): the types only, so this file does not carry the header's weak,
// empty InitializeInjectionNvtx2_fnptr, and the strong definition below is the
// one the NVTX instance in the backend's code finds.
#define NVTX_NO_IMPL
#include "tests/cuda_backend/nvtx_recorder.h"

#include <nvtx3/nvToolsExt.h>

#include <deque>
#include <mutex>

namespace ddpm::testing {

namespace {

struct Recorder {
  std::mutex mutex;
  std::vector<NvtxEvent> events;
  std::deque<std::string> domains;  // a domain handle points at its name here
  bool attached = false;
};

Recorder& recorder() {
  static Recorder* r = new Recorder;  // never destroyed: NVTX may call late
  return *r;
}

std::string domain_name(nvtxDomainHandle_t d) {
  return d ? *reinterpret_cast<const std::string*>(d) : std::string();
}

nvtxDomainHandle_t NVTX_API domain_create(const char* name) {
  Recorder& r = recorder();
  std::lock_guard lock(r.mutex);
  r.domains.emplace_back(name ? name : "");
  return reinterpret_cast<nvtxDomainHandle_t>(&r.domains.back());
}

int NVTX_API range_push(nvtxDomainHandle_t d, const nvtxEventAttributes_t* a) {
  NvtxEvent e;
  e.push = true;
  if (a && a->messageType == NVTX_MESSAGE_TYPE_ASCII && a->message.ascii) e.name = a->message.ascii;
  if (a && a->colorType == NVTX_COLOR_ARGB) e.color = a->color;
  e.domain = domain_name(d);
  Recorder& r = recorder();
  std::lock_guard lock(r.mutex);
  r.events.push_back(std::move(e));
  return 0;
}

int NVTX_API range_pop(nvtxDomainHandle_t d) {
  NvtxEvent e;
  e.domain = domain_name(d);
  Recorder& r = recorder();
  std::lock_guard lock(r.mutex);
  r.events.push_back(std::move(e));
  return 0;
}

int NVTX_API initialize(NvtxGetExportTableFunc_t get_export_table) {
  const auto* callbacks =
      static_cast<const NvtxExportTableCallbacks*>(get_export_table(NVTX_ETID_CALLBACKS));
  if (!callbacks || callbacks->struct_size < sizeof(NvtxExportTableCallbacks)) return 0;
  NvtxFunctionTable table = nullptr;
  unsigned int size = 0;
  if (!callbacks->GetModuleFunctionTable(NVTX_CB_MODULE_CORE2, &table, &size) || !table ||
      size < NVTX_CBID_CORE2_DomainCreateA)
    return 0;
  *table[NVTX_CBID_CORE2_DomainCreateA] = reinterpret_cast<NvtxFunctionPointer>(&domain_create);
  *table[NVTX_CBID_CORE2_DomainRangePushEx] = reinterpret_cast<NvtxFunctionPointer>(&range_push);
  *table[NVTX_CBID_CORE2_DomainRangePop] = reinterpret_cast<NvtxFunctionPointer>(&range_pop);
  recorder().attached = true;
  return 1;
}

}  // namespace

std::vector<NvtxEvent> nvtx_events() {
  Recorder& r = recorder();
  std::lock_guard lock(r.mutex);
  return r.events;
}

void clear_nvtx_events() {
  Recorder& r = recorder();
  std::lock_guard lock(r.mutex);
  r.events.clear();
}

bool nvtx_recorder_attached() {
  return recorder().attached;
}

}  // namespace ddpm::testing

extern "C" {
NvtxInitializeInjectionNvtxFunc_t InitializeInjectionNvtx2_fnptr = &ddpm::testing::initialize;
}
