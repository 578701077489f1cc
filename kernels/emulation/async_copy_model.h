// The emulator's model of cp.async (PTX ISA "cp.async", "cp.async.commit_group",
// "cp.async.wait_group"), called by kernels/async_copy.cuh under the emulator.
// It makes the asynchrony visible rather than hiding it behind an immediate copy:
//   - issue: checks the destination lies in the block's shared memory (where
//     that can be told: see classify_shared in shared_memory.h) and that both
//     addresses are aligned to the copy size, failing the launch with a
//     KernelError naming kernel, block, thread and addresses otherwise; then
//     POISONS the destination with 0xFF bytes (NaN as bf16 or fp32, -1 as an
//     integer), so reading it before the wait shows; the source is not read.
//   - commit: closes this CUDA thread's copies issued since its last commit into
//     a group (groups are per thread, as in PTX).
//   - wait(n): performs, oldest first, every committed group but the n most
//     recent (memcpy of src_size bytes from the source, zeros for the rest of
//     the copy). Copies not yet committed are left pending, as
//     cp.async.wait_group leaves them; cp.async.wait_all is commit + wait(0).
// The copy is performed by the waiting thread: under TSan it is that thread's
// write of the destination (and read of the source), so another thread
// reading the data without a barrier after the wait is reported as a race.
// Copies still pending when the block ends are dropped. Called only from
// kernel code (a CUDA thread of an emulated block).
#pragma once

namespace ddpm::emu {

// cp.async.{ca,cg}.shared.global [smem_dst], [gmem_src], cp_size, src_size:
// cp_size is 4, 8 or 16; src_size <= cp_size bytes are read, the rest zero-filled.
void async_copy_issue(void* smem_dst, const void* gmem_src, unsigned cp_size, unsigned src_size);
// cp.async.commit_group.
void async_copy_commit();
// cp.async.wait_group n: at most the n most recent committed groups stay pending.
void async_copy_wait(int n);

}  // namespace ddpm::emu
