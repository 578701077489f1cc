// ldmatrix and a cp.async pipeline, as the bf16 tensor-core kernels use them
// (kernels/ldmatrix.cuh, kernels/async_copy.cuh). Correct programs only: the
// same results on a GPU (the PTX instructions) and under the emulator (the
// shuffle twin and the cp.async model), so crosscheck_main.cpp compares them.
#include "kernels/async_copy.cuh"
#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "kernels/ldmatrix.cuh"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {

namespace {

namespace ldsm = ddpm::kernels::ldsm;
namespace cp = ddpm::kernels::async_copy;

constexpr int kPipelineStages = 3;
constexpr int kPipelineThreads = 32;  // one 16-byte chunk per thread per stage

// One warp: the 32 16-byte slots of `image` go to shared memory; lane l gives
// slot lane_slot[l] as its row address; out[4 l + j] = register j of lane l
// (0 past the form's register count).
__global__ void ldmatrix_kernel(LdsmForm form, const uint4* __restrict__ image,
                                const int* __restrict__ lane_slot, uint32_t* __restrict__ out) {
  __shared__ uint4 slots[32];
  const int lane = threadIdx.x;
  slots[lane] = image[lane];
  __syncthreads();
  const void* row = &slots[lane_slot[lane]];
  uint32_t r[4] = {0, 0, 0, 0};
  switch (form) {
    case LdsmForm::kX1: {
      uint32_t v[1];
      ldsm::x1(v, row);
      r[0] = v[0];
      break;
    }
    case LdsmForm::kX2: {
      uint32_t v[2];
      ldsm::x2(v, row);
      r[0] = v[0], r[1] = v[1];
      break;
    }
    case LdsmForm::kX4:
      ldsm::x4(r, row);
      break;
    case LdsmForm::kX1Trans: {
      uint32_t v[1];
      ldsm::x1_trans(v, row);
      r[0] = v[0];
      break;
    }
    case LdsmForm::kX2Trans: {
      uint32_t v[2];
      ldsm::x2_trans(v, row);
      r[0] = v[0], r[1] = v[1];
      break;
    }
    case LdsmForm::kX4Trans:
      ldsm::x4_trans(r, row);
      break;
  }
  for (int j = 0; j < 4; ++j) out[4 * lane + j] = r[j];
}

// A 3-stage cp.async pipeline over tiles of 32 chunks: tile i lands in stage
// i % 3 and is consumed as out[32 i + t] = stage[(t + 5) % 32] (another
// thread's copy: needs the wait and the barrier). Chunks past `chunks` are
// zero-filled (valid = false with an in-bounds source pointer).
__global__ void async_copy_pipeline_kernel(const uint4* __restrict__ src, int chunks,
                                           uint4* __restrict__ out) {
  __shared__ uint4 stage[kPipelineStages][kPipelineThreads];
  const int t = threadIdx.x;
  const int tiles = (chunks + kPipelineThreads - 1) / kPipelineThreads;
  const auto issue = [&](int tile) {
    if (tile < tiles) {
      const int c = tile * kPipelineThreads + t;
      cp::copy16(&stage[tile % kPipelineStages][t], &src[c < chunks ? c : 0], c < chunks);
    }
    cp::commit();  // possibly empty: every iteration then waits for the same count
  };
  for (int s = 0; s < kPipelineStages - 1; ++s) issue(s);
  for (int i = 0; i < tiles; ++i) {
    cp::wait<kPipelineStages - 2>();  // this thread's copies of tile i have landed
    // Everyone's have (tile i readable), and everyone is done reading tile
    // i - 1, whose stage the issue below refills.
    __syncthreads();
    out[i * kPipelineThreads + t] = stage[i % kPipelineStages][(t + 5) % kPipelineThreads];
    issue(i + kPipelineStages - 1);
  }
  cp::wait_all();  // no copy outlives the kernel (the trailing groups are empty)
}

}  // namespace

int ldsm_registers(LdsmForm form) {
  switch (form) {
    case LdsmForm::kX1:
    case LdsmForm::kX1Trans:
      return 1;
    case LdsmForm::kX2:
    case LdsmForm::kX2Trans:
      return 2;
    case LdsmForm::kX4:
    case LdsmForm::kX4Trans:
      break;
  }
  return 4;
}

bool ldsm_transposed(LdsmForm form) {
  return form == LdsmForm::kX1Trans || form == LdsmForm::kX2Trans || form == LdsmForm::kX4Trans;
}

void ldmatrix_load(LdsmForm form, const uint4* image, const int* lane_slot, uint32_t* out,
                   cudaStream_t stream) {
  DDPM_LAUNCH(ldmatrix_kernel, 1, 32, 0, stream, form, image, lane_slot, out);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

void async_copy_pipeline(const uint4* src, int chunks, uint4* out, cudaStream_t stream) {
  DDPM_LAUNCH(async_copy_pipeline_kernel, 1, kPipelineThreads, 0, stream, src, chunks, out);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace ddpm::emu_test
