// The mse_loss op's kernels (contract: mse_loss.cuh).
//
// Forward: a two-stage deterministic reduction.
//   mse_partial_kernel   grid-stride over quads (elements 4q..4q+3: one
//                        128-bit load of each input when 16-byte aligned, a
//                        short last quad element by element); each thread sums
//                        (pred - target)^2 in double in its fixed order, then
//                        block_sum (a fixed shuffle tree, block_reduce.cuh)
//                        gives the block's partial. With a single block it
//                        writes the loss itself and the second launch is skipped.
//   mse_finish_kernel    one block: each thread sums partials i = tid, tid +
//                        256, ... in order, block_sum, loss = float(sum / n).
//   The grid is min(ceil(quads / 256), kMaxBlocks), a function of n alone
//   (not of the device), so the partition, and the loss's bits, are the same
//   on every run and GPU. kMaxBlocks = 1024 is about one wave of 256-thread
//   blocks on a 132-SM H100 (8 resident per SM): enough loads in flight to
//   saturate DRAM, few enough partials that one block adds them in ~4 steps.
//   Double accumulation costs nothing here (H100's FP64 rate is half its
//   FP32; the kernel does 3 flops per 8 bytes) and makes the sum of up to
//   ~10^7 squares exact to float after one final rounding, as on the CPU.
// Backward: elementwise over quads, the same grid-stride shape:
//   g = dloss * 2 / n (read from device memory; the CPU's float operations),
//   d = g (pred - target) rounded on its own (__fmul_rn: not contracted into
//   the accumulating add), dpred (+)= d, dtarget (+)= -d.
//
// bf16 twins: the same kernels with pred (and dpred) stored as bf16 (a quad
// is one 8-byte access, quad_io.cuh), widened exactly, everything else as
// fp32: the same double sums and partition (workspace), and dpred's fp32
// value (accumulating: added in fp32 to the widened prior) rounded once.
//
// Bytes per element: forward 8 (+ 8 per block); backward 8 of inputs + 4 per
// wanted gradient (+4 when it accumulates). bf16 pred / dpred: 2 less each.
#include <stdexcept>
#include <string>

#include "kernels/bf16_io.cuh"
#include "kernels/block_reduce.cuh"
#include "kernels/check.cuh"
#include "kernels/emulation/launch.h"
#include "kernels/mse_loss.cuh"
#include "kernels/quad_io.cuh"
#include "kernels/reduce.cuh"
#include "kernels/vector_io.cuh"

namespace ddpm::kernels {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1024;

__host__ __device__ inline int64_t quads_of(int64_t n) {
  return (n + 3) / 4;
}

// Blocks of the partial-sum kernel: one quad per thread up to kMaxBlocks
// (lowered by the tests' grid_stride_block_cap, so that threads loop).
unsigned partial_blocks(int64_t n) {
  const int64_t need = (quads_of(n) + kThreads - 1) / kThreads;
  return capped_blocks(need < kMaxBlocks ? need : kMaxBlocks);
}

__device__ inline double squared_difference(float p, float t) {
  const double d = double(p) - double(t);
  return d * d;
}

// P: pred's storage (float, or __nv_bfloat16 for the bf16 twin), widened exactly.
template <bool kVector, class P>
__global__ void __launch_bounds__(kThreads)
    mse_partial_kernel(const P* __restrict__ pred, const float* __restrict__ target, int64_t n,
                       double* __restrict__ partials, float* __restrict__ single_block_loss) {
  const int64_t quads = quads_of(n);
  double sum = 0;
  for (int64_t q = grid_thread_index(); q < quads; q += grid_thread_count()) {
    const int64_t i0 = 4 * q;
    if (kVector && i0 + 4 <= n) {
      float p[4], t[4];
      quad_io::load4(pred + i0, p);
      quad_io::load4(target + i0, t);
      for (int k = 0; k < 4; ++k) sum += squared_difference(p[k], t[k]);
    } else {
      for (int64_t i = i0; i < n && i < i0 + 4; ++i)
        sum += squared_difference(bf16io::to_float(pred[i]), target[i]);
    }
  }
  sum = block_sum<kThreads>(sum);
  if (threadIdx.x != 0) return;
  if (single_block_loss)
    single_block_loss[0] = float(sum / double(n));
  else
    partials[blockIdx.x] = sum;
}

__global__ void __launch_bounds__(kThreads)
    mse_finish_kernel(const double* __restrict__ partials, int count, int64_t n,
                      float* __restrict__ loss) {
  double sum = 0;
  for (int i = int(threadIdx.x); i < count; i += kThreads) sum += partials[i];
  sum = block_sum<kThreads>(sum);
  if (threadIdx.x == 0) loss[0] = float(sum / double(n));
}

// P: the storage of pred and dpred (float, or __nv_bfloat16: dpred's value,
// the accumulating add included, in fp32, rounded once when stored).
template <bool kVector, class P>
__global__ void __launch_bounds__(kThreads)
    mse_backward_kernel(const P* __restrict__ pred, const float* __restrict__ target,
                        const float* __restrict__ dloss, P* __restrict__ dpred,
                        float* __restrict__ dtarget, int64_t n, bool accumulate_pred,
                        bool accumulate_target) {
  const float g = dloss[0] * 2.0f / float(n);
  const int64_t quads = quads_of(n);
  for (int64_t q = grid_thread_index(); q < quads; q += grid_thread_count()) {
    const int64_t i0 = 4 * q;
    if (kVector && i0 + 4 <= n) {
      float p[4], t[4], d[4];
      quad_io::load4(pred + i0, p);
      quad_io::load4(target + i0, t);
      for (int k = 0; k < 4; ++k) d[k] = __fmul_rn(g, p[k] - t[k]);
      if (dpred) {
        float v[4] = {d[0], d[1], d[2], d[3]};
        if (accumulate_pred) {
          float o[4];
          quad_io::load4(dpred + i0, o);
          for (int k = 0; k < 4; ++k) v[k] = o[k] + d[k];
        }
        quad_io::store4(dpred + i0, v);
      }
      if (dtarget) {
        float v[4] = {-d[0], -d[1], -d[2], -d[3]};
        if (accumulate_target) {
          float o[4];
          quad_io::load4(dtarget + i0, o);
          for (int k = 0; k < 4; ++k) v[k] = o[k] - d[k];
        }
        quad_io::store4(dtarget + i0, v);
      }
    } else {
      for (int64_t i = i0; i < n && i < i0 + 4; ++i) {
        const float d = __fmul_rn(g, bf16io::to_float(pred[i]) - target[i]);
        if (dpred)
          dpred[i] = bf16io::from_float<P>(accumulate_pred ? bf16io::to_float(dpred[i]) + d : d);
        if (dtarget) dtarget[i] = accumulate_target ? dtarget[i] - d : -d;
      }
    }
  }
}

void check_n(const char* launcher, int64_t n) {
  if (n < 1)
    throw std::invalid_argument(std::string(launcher) + ": n = " + std::to_string(n) +
                                ": the mean of no elements is undefined");
}

template <class P>
void forward(const char* who, const P* pred, const float* target, float* loss, int64_t n,
             void* workspace, cudaStream_t stream) {
  check_n(who, n);
  const unsigned blocks = partial_blocks(n);
  if (blocks > 1 && !workspace)
    throw std::invalid_argument(std::string(who) + ": a workspace of " +
                                std::to_string(workspace_align(size_t(blocks) * sizeof(double))) +
                                " bytes is needed (mse_loss_workspace_bytes), got null");
  double* partials = static_cast<double*>(workspace);
  float* single_block_loss = blocks == 1 ? loss : nullptr;
  if (all_aligned16(pred, target))
    DDPM_LAUNCH((mse_partial_kernel<true, P>), blocks, kThreads, 0, stream, pred, target, n,
                partials, single_block_loss);
  else
    DDPM_LAUNCH((mse_partial_kernel<false, P>), blocks, kThreads, 0, stream, pred, target, n,
                partials, single_block_loss);
  DDPM_CUDA_CHECK(cudaGetLastError());
  if (blocks == 1) return;
  DDPM_LAUNCH(mse_finish_kernel, 1, kThreads, 0, stream, partials, int(blocks), n, loss);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

template <class P>
void backward(const char* who, const P* pred, const float* target, const float* dloss, P* dpred,
              float* dtarget, int64_t n, bool accumulate_pred, bool accumulate_target,
              cudaStream_t stream) {
  check_n(who, n);
  if (!dpred && !dtarget) return;
  const unsigned blocks = grid_stride_blocks(quads_of(n), kThreads);
  if (all_aligned16(pred, target, dpred, dtarget))
    DDPM_LAUNCH((mse_backward_kernel<true, P>), blocks, kThreads, 0, stream, pred, target, dloss,
                dpred, dtarget, n, accumulate_pred, accumulate_target);
  else
    DDPM_LAUNCH((mse_backward_kernel<false, P>), blocks, kThreads, 0, stream, pred, target, dloss,
                dpred, dtarget, n, accumulate_pred, accumulate_target);
  DDPM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

size_t mse_loss_workspace_bytes(int64_t n) {
  check_n("mse_loss_workspace_bytes", n);
  const unsigned blocks = partial_blocks(n);
  return blocks == 1 ? 0 : workspace_align(size_t(blocks) * sizeof(double));
}

void mse_loss_forward(const float* pred, const float* target, float* loss, int64_t n,
                      void* workspace, cudaStream_t stream) {
  forward("mse_loss_forward", pred, target, loss, n, workspace, stream);
}

void mse_loss_backward(const float* pred, const float* target, const float* dloss, float* dpred,
                       float* dtarget, int64_t n, bool accumulate_pred, bool accumulate_target,
                       cudaStream_t stream) {
  backward("mse_loss_backward", pred, target, dloss, dpred, dtarget, n, accumulate_pred,
           accumulate_target, stream);
}

void mse_loss_forward_bf16(const __nv_bfloat16* pred, const float* target, float* loss, int64_t n,
                           void* workspace, cudaStream_t stream) {
  forward("mse_loss_forward_bf16", pred, target, loss, n, workspace, stream);
}

void mse_loss_backward_bf16(const __nv_bfloat16* pred, const float* target, const float* dloss,
                            __nv_bfloat16* dpred, float* dtarget, int64_t n, bool accumulate_pred,
                            bool accumulate_target, cudaStream_t stream) {
  backward("mse_loss_backward_bf16", pred, target, dloss, dpred, dtarget, n, accumulate_pred,
           accumulate_target, stream);
}

}  // namespace ddpm::kernels
