// Warp intrinsics for the emulator: shuffles, votes, match, reduce, __syncwarp.
// Each lane of the mask fills a request and passes the baton to the next lane;
// the last lane to arrive checks that all lanes of the mask are at the same
// operation (same intrinsic, mask and source line) and computes every lane's
// result. Checked: a lane calling with a mask that excludes itself, lanes of
// one mask at different operations, a shuffle reading a lane outside the mask
// or one that has exited. Included by cuda_emulation.h.
#pragma once

#include <cstring>
#include <source_location>
#include <type_traits>

#include "emulator.h"

namespace ddpm::emu::detail {

template <class T>
WarpRequest make_warp_request(WarpOp op, const char* name, unsigned mask, const T& value,
                              const std::source_location& at) {
  // Bitwise copyable is what counts: CUDA's __half2 declares its own copy
  // assignment, so it is not trivially copyable in the C++ sense.
  static_assert(std::is_trivially_destructible_v<T> && sizeof(T) <= 16,
                "warp operations move plain values of at most 16 bytes");
  WarpRequest r;
  r.op = op;
  r.mask = mask;
  r.name = name;
  r.file = at.file_name();
  r.line = at.line();
  r.value_bytes = sizeof(T);
  std::memcpy(r.value, static_cast<const void*>(&value), sizeof(T));
  return r;
}

template <class T>
T warp_shuffle(WarpOp op, const char* name, unsigned mask, const T& var, int lane_arg, int width,
               const std::source_location& at) {
  WarpRequest r = make_warp_request(op, name, mask, var, at);
  r.lane_arg = lane_arg;
  r.width = width;
  warp_exchange(r);
  T out;
  std::memcpy(static_cast<void*>(&out), r.result, sizeof(T));
  return out;
}

inline unsigned warp_vote(WarpOp op, const char* name, unsigned mask, int predicate,
                          const std::source_location& at) {
  WarpRequest r = make_warp_request(op, name, mask, predicate != 0 ? 1 : 0, at);
  warp_exchange(r);
  return r.vote;
}

template <class T>
T warp_reduce(WarpOp op, const char* name, unsigned mask, T value, const std::source_location& at) {
  static_assert(std::is_same_v<T, int> || std::is_same_v<T, unsigned>);
  WarpRequest r = make_warp_request(op, name, mask, value, at);
  r.is_signed = std::is_signed_v<T>;
  warp_exchange(r);
  T out;
  std::memcpy(&out, r.result, sizeof(T));
  return out;
}

}  // namespace ddpm::emu::detail

// Shuffles move any plain (bitwise copyable) value of up to 16 bytes (CUDA's
// overloads: int, unsigned, long long, float, double, __half, __half2,
// __nv_bfloat16, __nv_bfloat162, ...).
template <class T>
T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize,
              std::source_location at = std::source_location::current()) {
  using ddpm::emu::detail::WarpOp;
  return ddpm::emu::detail::warp_shuffle(WarpOp::kShflIdx, "__shfl_sync", mask, var, srcLane, width,
                                         at);
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                 std::source_location at = std::source_location::current()) {
  using ddpm::emu::detail::WarpOp;
  return ddpm::emu::detail::warp_shuffle(WarpOp::kShflUp, "__shfl_up_sync", mask, var,
                                         static_cast<int>(delta), width, at);
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                   std::source_location at = std::source_location::current()) {
  using ddpm::emu::detail::WarpOp;
  return ddpm::emu::detail::warp_shuffle(WarpOp::kShflDown, "__shfl_down_sync", mask, var,
                                         static_cast<int>(delta), width, at);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize,
                  std::source_location at = std::source_location::current()) {
  using ddpm::emu::detail::WarpOp;
  return ddpm::emu::detail::warp_shuffle(WarpOp::kShflXor, "__shfl_xor_sync", mask, var, laneMask,
                                         width, at);
}

inline unsigned __ballot_sync(unsigned mask, int predicate,
                              std::source_location at = std::source_location::current()) {
  using ddpm::emu::detail::WarpOp;
  return ddpm::emu::detail::warp_vote(WarpOp::kBallot, "__ballot_sync", mask, predicate, at);
}
inline int __any_sync(unsigned mask, int predicate,
                      std::source_location at = std::source_location::current()) {
  using ddpm::emu::detail::WarpOp;
  return static_cast<int>(
      ddpm::emu::detail::warp_vote(WarpOp::kAny, "__any_sync", mask, predicate, at));
}
inline int __all_sync(unsigned mask, int predicate,
                      std::source_location at = std::source_location::current()) {
  using ddpm::emu::detail::WarpOp;
  return static_cast<int>(
      ddpm::emu::detail::warp_vote(WarpOp::kAll, "__all_sync", mask, predicate, at));
}
inline void __syncwarp(unsigned mask = 0xffffffffu,
                       std::source_location at = std::source_location::current()) {
  using ddpm::emu::detail::WarpOp;
  ddpm::emu::detail::warp_vote(WarpOp::kSyncWarp, "__syncwarp", mask, 0, at);
}

// Fibers have no notion of converged lanes: the active mask is every lane of
// the warp that exists and has not exited.
inline unsigned __activemask() {
  return ddpm::emu::detail::active_lanes();
}

template <class T>
unsigned __match_any_sync(unsigned mask, T value,
                          std::source_location at = std::source_location::current()) {
  using ddpm::emu::detail::WarpOp;
  auto r =
      ddpm::emu::detail::make_warp_request(WarpOp::kMatchAny, "__match_any_sync", mask, value, at);
  ddpm::emu::detail::warp_exchange(r);
  return r.vote;
}
template <class T>
unsigned __match_all_sync(unsigned mask, T value, int* pred,
                          std::source_location at = std::source_location::current()) {
  using ddpm::emu::detail::WarpOp;
  auto r =
      ddpm::emu::detail::make_warp_request(WarpOp::kMatchAll, "__match_all_sync", mask, value, at);
  ddpm::emu::detail::warp_exchange(r);
  *pred = r.predicate;
  return r.vote;
}

#define DDPM_EMU_WARP_REDUCE(intrinsic, op, T)                                                    \
  inline T intrinsic(unsigned mask, T value,                                                      \
                     std::source_location at = std::source_location::current()) {                 \
    return ddpm::emu::detail::warp_reduce(ddpm::emu::detail::WarpOp::op, #intrinsic, mask, value, \
                                          at);                                                    \
  }
DDPM_EMU_WARP_REDUCE(__reduce_add_sync, kReduceAdd, unsigned)
DDPM_EMU_WARP_REDUCE(__reduce_add_sync, kReduceAdd, int)
DDPM_EMU_WARP_REDUCE(__reduce_min_sync, kReduceMin, unsigned)
DDPM_EMU_WARP_REDUCE(__reduce_min_sync, kReduceMin, int)
DDPM_EMU_WARP_REDUCE(__reduce_max_sync, kReduceMax, unsigned)
DDPM_EMU_WARP_REDUCE(__reduce_max_sync, kReduceMax, int)
DDPM_EMU_WARP_REDUCE(__reduce_and_sync, kReduceAnd, unsigned)
DDPM_EMU_WARP_REDUCE(__reduce_or_sync, kReduceOr, unsigned)
DDPM_EMU_WARP_REDUCE(__reduce_xor_sync, kReduceXor, unsigned)
#undef DDPM_EMU_WARP_REDUCE
