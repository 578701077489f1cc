// Warp operations for the emulator's block scheduler: lanes of a mask meet at
// the same intrinsic, the last to arrive checks the meeting and computes every
// lane's result (shuffles, votes, match, reduce). See block_scheduler.h.
#include <bit>
#include <cstring>
#include <string>

#include "block_scheduler.h"
#include "sanitizer_hooks.h"

namespace ddpm::emu::detail {

namespace {

bool is_shuffle(WarpOp op) {
  return op <= WarpOp::kShflXor;
}

bool same_warp_op(const WarpRequest& a, const WarpRequest& b) {
  return a.op == b.op && a.mask == b.mask && a.width == b.width && a.value_bytes == b.value_bytes &&
         same_site(a.file, a.line, b.file, b.line);
}

// The lane a shuffle reads, as CUDA defines it for each variant; a lane whose
// source falls outside its width segment keeps its own value.
unsigned source_lane(const WarpRequest& r, unsigned lane) {
  const unsigned width = static_cast<unsigned>(r.width);
  const unsigned segment_start = lane & ~(width - 1);
  const unsigned in_segment = lane & (width - 1);
  switch (r.op) {
    case WarpOp::kShflIdx:
      return segment_start | (static_cast<unsigned>(r.lane_arg) & (width - 1));
    case WarpOp::kShflUp:
      return in_segment < static_cast<unsigned>(r.lane_arg) ? lane : lane - r.lane_arg;
    case WarpOp::kShflDown:
      return in_segment + static_cast<unsigned>(r.lane_arg) >= width ? lane : lane + r.lane_arg;
    case WarpOp::kShflXor: {
      // Earlier segments may be read, later ones not.
      const unsigned source = lane ^ static_cast<unsigned>(r.lane_arg);
      return source >= segment_start + width ? lane : source;
    }
    default:
      return lane;
  }
}

template <class T>
T value_as(const WarpRequest& r) {
  T v;
  std::memcpy(&v, r.value, sizeof(T));
  return v;
}

template <class T>
void reduce_into(WarpOp op, T& acc, T v) {
  switch (op) {
    case WarpOp::kReduceAdd:
      acc = static_cast<T>(acc + v);
      break;
    case WarpOp::kReduceMin:
      acc = v < acc ? v : acc;
      break;
    case WarpOp::kReduceMax:
      acc = v > acc ? v : acc;
      break;
    case WarpOp::kReduceAnd:
      acc &= v;
      break;
    case WarpOp::kReduceOr:
      acc |= v;
      break;
    case WarpOp::kReduceXor:
      acc ^= v;
      break;
    default:
      break;
  }
}

}  // namespace

void BlockScheduler::check_no_warp_op_waits_for(const CudaThread& self, const char* file,
                                                unsigned line) {
  const unsigned warp = self.linear / 32, lane_bit = 1u << (self.linear % 32);
  for (unsigned bits = warp_waiting_[warp]; bits != 0; bits &= bits - 1) {
    const CudaThread& t = thread(warp, std::countr_zero(bits));
    if (t.request->mask & lane_bit)
      abort_block("divergent warp: " + describe_threads({self.linear}) +
                  " went to __syncthreads at " + site(file, line) + " while " +
                  describe_threads({t.linear}) + " of its warp waits for it at " +
                  describe_op(*t.request));
  }
}

void BlockScheduler::warp_exchange(WarpRequest& request) {
  CudaThread& self = *running_;
  const unsigned warp = self.linear / 32, lane = self.linear % 32;
  if (((request.mask >> lane) & 1u) == 0)
    abort_block(std::string(request.name) + " at " + site(request.file, request.line) + ": " +
                describe_threads({self.linear}) + " (lane " + std::to_string(lane) +
                ") calls it with mask " + hex_mask(request.mask) +
                ", which does not include its own lane");
  if (is_shuffle(request.op) &&
      (request.width < 1 || request.width > 32 || (request.width & (request.width - 1)) != 0))
    abort_block(std::string(request.name) + " at " + site(request.file, request.line) + ": width " +
                std::to_string(request.width) + " is not a power of 2 between 1 and 32");
  self.state = ThreadState::kAtWarpOp;
  self.request = &request;
  warp_waiting_[warp] |= 1u << lane;
  san::release(&self.arrived);
  if (try_complete_warp_op(warp, request)) return;
  pass_baton(self);
}

unsigned BlockScheduler::active_lanes() const {
  return live_lanes_[running_->linear / 32];
}

bool BlockScheduler::try_complete_warp_op(unsigned warp, const WarpRequest& lead) {
  // Lanes named in the mask that have exited (or do not exist) take no part.
  const unsigned participants = lead.mask & live_lanes_[warp];
  bool all_arrived = true;
  for (unsigned bits = participants; bits != 0; bits &= bits - 1) {
    const CudaThread& t = thread(warp, std::countr_zero(bits));
    switch (t.state) {
      case ThreadState::kAtWarpOp:
        if (!same_warp_op(*t.request, lead))
          abort_block("divergent warp operation: a thread waits at " + describe_op(lead) +
                      ", whose mask names " + describe_threads({t.linear}) + ", which waits at " +
                      describe_op(*t.request));
        break;
      case ThreadState::kAtBarrier:
        abort_block("divergent warp: " + describe_threads({t.linear}) +
                    " waits at __syncthreads (" + site(t.wait_file, t.wait_line) +
                    ") while lanes of its warp wait for it at " + describe_op(lead));
      case ThreadState::kRunnable:
        all_arrived = false;
        break;
      case ThreadState::kExited:
        break;
    }
  }
  if (!all_arrived) return false;

  // Every lane's arrival (its value written) happens before the results are
  // computed, which happens before any lane resumes.
  if constexpr (san::kTsan) {
    for (unsigned bits = participants; bits != 0; bits &= bits - 1)
      san::acquire(&thread(warp, std::countr_zero(bits)).arrived);
  }
  compute_warp_results(warp, participants);
  for (unsigned bits = participants; bits != 0; bits &= bits - 1) {
    CudaThread& t = thread(warp, std::countr_zero(bits));
    t.state = ThreadState::kRunnable;
    if (&t != running_) san::release(&t.woken);
  }
  warp_waiting_[warp] &= ~participants;
  return true;
}

void BlockScheduler::compute_warp_results(unsigned warp, unsigned participants) {
  const auto request = [&](unsigned lane) -> WarpRequest& { return *thread(warp, lane).request; };
  const WarpOp op = request(std::countr_zero(participants)).op;

  if (is_shuffle(op)) {
    for (unsigned bits = participants; bits != 0; bits &= bits - 1) {
      const unsigned lane = std::countr_zero(bits);
      WarpRequest& r = request(lane);
      const unsigned source = source_lane(r, lane);
      if (source != lane && ((participants >> source) & 1u) == 0) {
        const bool in_mask = (r.mask >> source) & 1u;
        const bool exists = warp * 32 + source < count_;
        abort_block(describe_op(r) + ": " + describe_threads({warp * 32 + lane}) + " (lane " +
                    std::to_string(lane) + ") reads lane " + std::to_string(source) +
                    (!in_mask ? ", which is not in the mask"
                     : exists ? ", which has exited"
                              : ", which does not exist (the block has " + std::to_string(count_) +
                                    " threads)"));
      }
      std::memcpy(r.result, request(source).value, r.value_bytes);
    }
    return;
  }

  switch (op) {
    case WarpOp::kBallot:
    case WarpOp::kAny:
    case WarpOp::kAll: {
      unsigned ballot = 0;
      for (unsigned bits = participants; bits != 0; bits &= bits - 1) {
        const unsigned lane = std::countr_zero(bits);
        if (value_as<int>(request(lane)) != 0) ballot |= 1u << lane;
      }
      const unsigned vote = op == WarpOp::kBallot ? ballot
                            : op == WarpOp::kAny  ? unsigned(ballot != 0)
                                                  : unsigned(ballot == participants);
      for (unsigned bits = participants; bits != 0; bits &= bits - 1)
        request(std::countr_zero(bits)).vote = vote;
      break;
    }
    case WarpOp::kMatchAny:
    case WarpOp::kMatchAll: {
      bool all_equal = true;
      for (unsigned bits = participants; bits != 0; bits &= bits - 1) {
        WarpRequest& r = request(std::countr_zero(bits));
        unsigned same = 0;
        for (unsigned others = participants; others != 0; others &= others - 1) {
          const unsigned other = std::countr_zero(others);
          if (std::memcmp(r.value, request(other).value, r.value_bytes) == 0) same |= 1u << other;
        }
        r.vote = same;
        all_equal = all_equal && same == participants;
      }
      if (op == WarpOp::kMatchAll) {
        for (unsigned bits = participants; bits != 0; bits &= bits - 1) {
          WarpRequest& r = request(std::countr_zero(bits));
          r.vote = all_equal ? participants : 0;
          r.predicate = all_equal;
        }
      }
      break;
    }
    case WarpOp::kReduceAdd:
    case WarpOp::kReduceMin:
    case WarpOp::kReduceMax:
    case WarpOp::kReduceAnd:
    case WarpOp::kReduceOr:
    case WarpOp::kReduceXor: {
      const WarpRequest& first = request(std::countr_zero(participants));
      unsigned result_bits = 0;
      if (first.is_signed) {
        int acc = value_as<int>(first);
        for (unsigned bits = participants & (participants - 1); bits != 0; bits &= bits - 1)
          reduce_into(op, acc, value_as<int>(request(std::countr_zero(bits))));
        std::memcpy(&result_bits, &acc, sizeof acc);
      } else {
        unsigned acc = value_as<unsigned>(first);
        for (unsigned bits = participants & (participants - 1); bits != 0; bits &= bits - 1)
          reduce_into(op, acc, value_as<unsigned>(request(std::countr_zero(bits))));
        result_bits = acc;
      }
      for (unsigned bits = participants; bits != 0; bits &= bits - 1)
        std::memcpy(request(std::countr_zero(bits)).result, &result_bits, sizeof result_bits);
      break;
    }
    default:  // __syncwarp: meeting is all it does
      break;
  }
}

// ---- Entry points declared in emulator.h ------------------------------------------

void warp_exchange(WarpRequest& request) {
  running_scheduler(request.name).warp_exchange(request);
}

unsigned active_lanes() {
  return running_scheduler("__activemask").active_lanes();
}

}  // namespace ddpm::emu::detail
