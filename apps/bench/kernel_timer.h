// Times a GPU operation with CUDA events: warm-up launches first (cuDNN's and
// cuBLAS's first calls load kernels; caches warm), then each repeat between
// its own pair of events, and the median taken (robust to a stray slow run).
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "kernels/check.cuh"

namespace ddpm::bench {

struct Timing {
  double median_ms = 0, min_ms = 0, max_ms = 0;
};

inline Timing time_on_stream(const std::function<void()>& launch, int warmup, int repeats,
                             cudaStream_t stream) {
  for (int i = 0; i < warmup; ++i) launch();
  std::vector<cudaEvent_t> events(size_t(repeats) + 1);
  for (auto& e : events) DDPM_CUDA_CHECK(cudaEventCreate(&e));
  DDPM_CUDA_CHECK(cudaEventRecord(events[0], stream));
  for (int i = 0; i < repeats; ++i) {
    launch();
    DDPM_CUDA_CHECK(cudaEventRecord(events[size_t(i) + 1], stream));
  }
  DDPM_CUDA_CHECK(cudaEventSynchronize(events.back()));
  std::vector<double> ms(static_cast<size_t>(repeats));
  for (int i = 0; i < repeats; ++i) {
    float t = 0;
    DDPM_CUDA_CHECK(cudaEventElapsedTime(&t, events[size_t(i)], events[size_t(i) + 1]));
    ms[size_t(i)] = t;
  }
  for (auto& e : events) cudaEventDestroy(e);
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.front(), ms.back()};
}

}  // namespace ddpm::bench
