// DeviceProbes of CUDA builds (e2e_bench.h): device memory from
// cudaMemGetInfo; the kernels of a UNet forward counted as the kernel nodes of
// one stream capture of it (what a GPU can say without a profiler). Compiled
// with DDPM_E2E_EMULATED for ddpm_cuda_bench_emulated: the emulator's counters
// give exact launches per step instead, and its cudaMemGetInfo describes the
// host, so memory is left out.
#include <cuda_runtime_api.h>

#include <vector>

#include "apps/bench/e2e_bench.h"
#include "engine/cuda/cuda_backend.h"
#include "kernels/check.cuh"

#if DDPM_E2E_EMULATED
#include "kernels/emulation/emulator_api.h"
#endif

namespace ddpm::bench {

namespace {

std::optional<int64_t> forward_kernel_nodes(Executor& ex) {
  auto* backend = dynamic_cast<CudaBackend*>(&ex.backend());
  if (!backend) return std::nullopt;
  const cudaStream_t stream = backend->stream();
  backend->reserve_workspace(ex.graph(), /*training=*/false);  // no allocation in the capture
  DDPM_CUDA_CHECK(cudaStreamSynchronize(stream));
  DDPM_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  cudaGraph_t graph = nullptr;
  try {
    ex.forward(RunContext{0, 0, false});
  } catch (...) {
    cudaStreamEndCapture(stream, &graph);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    throw;
  }
  DDPM_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  size_t count = 0;
  int64_t kernels = 0;
  cudaError_t e = cudaGraphGetNodes(graph, nullptr, &count);
  std::vector<cudaGraphNode_t> nodes(count);
  if (e == cudaSuccess && count) e = cudaGraphGetNodes(graph, nodes.data(), &count);
  for (size_t i = 0; e == cudaSuccess && i < count; ++i) {
    cudaGraphNodeType type{};
    e = cudaGraphNodeGetType(nodes[i], &type);
    kernels += type == cudaGraphNodeTypeKernel;
  }
  cudaGraphDestroy(graph);
  DDPM_CUDA_CHECK(e);
  return kernels;
}

}  // namespace

DeviceProbes device_probes() {
  DeviceProbes p;
  p.forward_kernel_nodes = forward_kernel_nodes;
#if DDPM_E2E_EMULATED
  p.launches_how = "the CUDA emulator's counters (exact)";
  p.emulated = true;
  p.reset_counts = [] { emu::reset_stats(); };
  p.counts = []() -> std::optional<LaunchCounts> {
    const emu::Stats s = emu::stats();
    return LaunchCounts{s.launches, s.launches - s.graph_kernel_launches + s.graph_launches,
                        s.graph_launches, s.host_synchronizations};
  };
#else
  p.memory_in_use_bytes = []() -> std::optional<double> {
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) {
      cudaGetLastError();
      return std::nullopt;
    }
    return double(total - free);
  };
#endif
  return p;
}

}  // namespace ddpm::bench
