// Launchers of the kernels the emulator's tests run. The kernels are real CUDA
// (*.cu in this folder): g++ builds them with the emulation header for these
// tests, and nvcc can build the very same files for a GPU. Device pointers,
// shapes and a stream in; each launcher checks its launch with DDPM_CUDA_CHECK.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace ddpm::emu_test {

// ---- matmul_kernels.cu ----
constexpr int kMatmulTile = 16;
// c[m x n] = a[m x k] * b[k x n], row-major, with 16x16 shared-memory tiles and
// two barriers per tile step.
void tiled_matmul(const float* a, const float* b, float* c, int m, int n, int k,
                  cudaStream_t stream);

// ---- warp_kernels.cu ----
// block_sums[blockIdx.x] = sum of x over the block's grid-stride share; warps
// reduce with __shfl_xor_sync (use_xor) or __shfl_down_sync.
void block_sum(const float* x, float* block_sums, int n, int blocks, int threads, bool use_xor,
               cudaStream_t stream);
// out[i] = inclusive prefix sum of x within i's warp (__shfl_up_sync on the
// lanes that exist, so a partial last warp works); one block of `threads`.
void warp_inclusive_scan(const int* x, int* out, int threads, cudaStream_t stream);
// Per warp w: ballots[w], any[w], all[w] of predicate[i] != 0 over the lanes
// that exist; counts[0] = __syncthreads_count, counts[1] = _and, counts[2] = _or.
void warp_votes(const int* predicate, unsigned* ballots, int* any, int* all, int* counts,
                int threads, cudaStream_t stream);
// y[i] = x[i ^ 1] through __shfl_xor_sync on each type; one warp.
void swap_pairs_half(const __half* x, __half* y, cudaStream_t stream);
void swap_pairs_bf16(const __nv_bfloat16* x, __nv_bfloat16* y, cudaStream_t stream);
void swap_pairs_double(const double* x, double* y, cudaStream_t stream);
// match[i] = __match_any_sync(full, key[i]); sums[i] = __reduce_add_sync(full, key[i]);
// maxes[i] = __reduce_max_sync(full, key[i]); one warp.
void warp_match_and_reduce(const int* key, unsigned* match, int* sums, int* maxes,
                           cudaStream_t stream);

// ---- memory_kernels.cu ----
// Every thread adds 1 to *counter `adds_per_thread` times (atomicAdd, unsigned).
void atomic_count(unsigned* counter, int adds_per_thread, int blocks, int threads,
                  cudaStream_t stream);
// *total += x[i] for all i, by atomicAdd on float.
void atomic_float_sum(const float* x, float* total, int n, cudaStream_t stream);
// The other atomics, one thread per x[i]: results[0] atomicMax and [1]
// atomicMin of x; [2] a flag claimed by atomicCAS and [3] how many claims won;
// [4] atomicExch of the thread index; [5] atomicInc modulo 10; [6] atomicSub
// of 2 per thread; *dsum (double), *hsum (__half), *bsum (bf16) atomicAdd 1.
void atomic_mix(const int* x, int n, int* results, double* dsum, __half* hsum, __nv_bfloat16* bsum,
                cudaStream_t stream);
// y = x reversed within each block, through dynamic shared memory.
void reverse_in_blocks(const float* x, float* y, int n, int threads, cudaStream_t stream);
// Each block records the bits of its static and dynamic shared memory before
// writing any (static_bits[block], dynamic_bits[block]), then scribbles on both.
void probe_shared_poison(unsigned* static_bits, unsigned* dynamic_bits, int blocks,
                         cudaStream_t stream);

// ---- rng_kernels.cu ----
// out[b * per_block + i] = i-th curand_uniform of thread 0 of block b after
// curand_init(seed, subsequence, offset) (identical in every block).
void philox_uniform(unsigned long long seed, unsigned long long subsequence,
                    unsigned long long offset, float* out, int blocks, int per_block,
                    cudaStream_t stream);
// out[0 .. count) = curand() draws of one thread.
void philox_raw(unsigned long long seed, unsigned long long subsequence, unsigned long long offset,
                unsigned* out, int count, cudaStream_t stream);
// out[4 * i ...] = curand_normal4 of thread i (subsequence i), n4 threads.
void philox_normal4(unsigned long long seed, float* out, int n4, cudaStream_t stream);

// ---- math_kernels.cu ----
// out[i * kMathResults + j] = the j-th intrinsic of x[i] (see math_kernels.cu).
constexpr int kMathResults = 21;
void math_intrinsics(const float* x, float* out, int n, cudaStream_t stream);

// ---- index_kernels.cu ----
// One record per CUDA thread: its threadIdx, blockIdx, blockDim, gridDim and warpSize.
struct ThreadRecord {
  unsigned thread[3], block[3], block_dim[3], grid_dim[3];
  int warp_size;
};
void record_indices(ThreadRecord* out, dim3 grid, dim3 block, cudaStream_t stream);
// Launches the index kernel with a given dynamic shared memory size and leaves
// cudaGetLastError to the caller (the launch-limit tests).
void launch_with_shared(ThreadRecord* out, dim3 grid, dim3 block, size_t shmem_bytes,
                        cudaStream_t stream);
const void* record_indices_kernel_address();

// ---- graph_kernels.cu: graphs and stream capture ----
// x[i] += value for i < n (several blocks when n > 128).
void add_scalar(float* x, int n, float value, cudaStream_t stream);
// The same, leaving cudaGetLastError to the caller (launches the capture rules refuse).
void add_scalar_unchecked(float* x, int n, float value, cudaStream_t stream);
// x[i] = x[i] * scale + shift for i < n; the struct is the kernel's by-value parameter.
struct AffineParams {
  float scale, shift;
  int n;
};
void affine(float* x, const AffineParams& params, cudaStream_t stream);
// *p = value (one thread).
void set_int(int* p, int value, cudaStream_t stream);
// One thread: ++*iterations; --*counter; at zero, cudaGraphSetConditional(handle, 0).
void count_down(int* counter, int* iterations, cudaGraphConditionalHandle handle,
                cudaStream_t stream);
// cudaGraphSetConditional(handle, *flag != 0).
void set_condition(const int* flag, cudaGraphConditionalHandle handle, cudaStream_t stream);

// ---- ldmatrix_kernels.cu: ldmatrix and a cp.async pipeline (GPU and emulator alike) ----
enum class LdsmForm { kX1, kX2, kX4, kX1Trans, kX2Trans, kX4Trans };
int ldsm_registers(LdsmForm form);  // 1, 2 or 4
bool ldsm_transposed(LdsmForm form);
// One warp: shared memory holds the 32 16-byte slots of image[32]; lane l
// passes the address of slot lane_slot[l] to the form; out[4 l + j] receives
// register j of lane l (0 for j >= ldsm_registers(form)).
void ldmatrix_load(LdsmForm form, const uint4* image, const int* lane_slot, uint32_t* out,
                   cudaStream_t stream);
// A 3-stage cp.async pipeline, one warp, tiles of 32 16-byte chunks:
// out[32 i + t] = chunk 32 i + (t + 5) % 32 of src, or zeros past `chunks`
// (out holds the chunks rounded up to a multiple of 32).
void async_copy_pipeline(const uint4* src, int chunks, uint4* out, cudaStream_t stream);

// ---- async_copy_kernels.cu: the emulator's cp.async model (emulated builds only) ----
// One block of `threads` (<= 64); thread t copies chunk t of src (and n + t).
enum class AsyncCopyCase {
  kWaitAll,                // one group, wait<0>: out[t] = src[t]
  kWaitOneOfTwo,           // groups A (src[t]) and B (src[n + t]); after wait<1>: out[t] = A's
                           // stage, out[n + t] = B's stage; after wait<0>: out[2n + t] = B's stage
  kZeroFill,               // odd threads copy with valid = false from a null source: out[t]
  kUncommitted,            // A committed, B not; after wait<0>: out[t] = A's stage, out[n + t] =
                           // B's stage; after wait_all: out[2n + t] = B's stage
  kPartialSource,          // 16-byte copies reading t % 17 source bytes: out[t]
  kMisalignedDestination,  // thread 3's destination is 8 bytes off a 16-byte boundary
  kMisalignedSource,       // thread 3's source is 4 bytes off
  kGlobalDestination,      // thread 2's destination is out[2], in global memory
};
void async_copy_case(AsyncCopyCase which, const uint4* src, uint4* out, int threads,
                     cudaStream_t stream);
// Block 0 issues copies of src[t] into its static shared stage (one group
// committed, one copy not) and exits without waiting; every later block waits
// (wait<0>, wait_all) without issuing and writes its stage to
// out[b * threads + t]: the block-start 0xFF fill unless a copy leaked.
void async_copy_leak(const uint4* src, uint4* out, int blocks, int threads, cudaStream_t stream);
// Thread t copies src[t] into a stage, all wait<0>, then read their
// neighbour's chunk: out[t] = src[(t + 1) % n] with the barrier after the
// wait; without it (a deliberate bug) a race TSan must report.
void async_copy_neighbour_read(const uint4* src, uint4* out, int threads, bool barrier_after_wait,
                               cudaStream_t stream);

// ---- bug_kernels.cu: deliberate bugs the emulator or a sanitizer must catch ----
// Threads >= live return before the block's __syncthreads.
void early_return_before_barrier(float* x, int threads, int live, cudaStream_t stream);
// Odd and even threads call __syncthreads at different lines.
void barrier_in_branches(float* x, int threads, cudaStream_t stream);
// The tiled matmul with the barrier after the tile's use removed: a race
// between reading a tile and overwriting it for the next step.
void tiled_matmul_missing_barrier(const float* a, const float* b, float* c, int m, int n, int k,
                                  cudaStream_t stream);
// Thread i writes dynamic shared tile[i + shift] (tile has `threads` floats).
void shared_tile_write(float* out, int threads, int shift, cudaStream_t stream);
// Warp misuse, one warp (or 100 threads for kShflPartialWarp).
enum class WarpMisuse {
  kMaskExcludesCaller,  // lane 0 passes a mask without bit 0
  kDivergentShuffles,   // even lanes __shfl_xor_sync, odd lanes __shfl_down_sync
  kReadOutsideMask,     // mask of lanes 0-15, xor 16 reads lanes 16-31
  kShflPartialWarp,     // full mask on a 4-lane last warp reads lanes that do not exist
  kShuffleThenBarrier,  // lane 0 goes to __syncthreads while lanes 1-31 shuffle
};
void warp_misuse(WarpMisuse which, float* out, cudaStream_t stream);
void trap_in_kernel(float* out, cudaStream_t stream);
// 32 threads with 128 KB of local arrays each: overflows a 64 KB fiber stack
// (out[0] must be set; the GPU itself runs it fine).
void stack_overflow_in_kernel(float* out, cudaStream_t stream);

}  // namespace ddpm::emu_test
