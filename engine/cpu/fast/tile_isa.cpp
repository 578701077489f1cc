// The micro-kernel (isa.h's TileArgs contract) for one instruction set: an
// R x V register tile of accumulators, B loaded as vectors, A broadcast.
//
// The accumulators are one array indexed only by constants (a fold over an
// index_sequence), which GCC keeps in registers. A masked load inside the
// k loop makes GCC keep them in memory instead (a store per FMA pair,
// measured 75 against 200-230 GFLOP/s on one Zen 5 core): so only the
// masked_b variant, for ragged direct operands, loads with a mask.
#include <utility>

#include "engine/cpu/fast/isa.h"
#include "engine/cpu/fast/simd.h"

namespace ddpm::cpu::fast::DDPM_CPU_NS {

namespace {

template <int R, int Vn, size_t... I>
inline void fma_tile(std::index_sequence<I...>, V* acc, const V* w, const float* a, int64_t a_rs) {
  ((acc[I] = Simd::fmadd(Simd::set1(a[int64_t(I / Vn) * a_rs]), w[I % Vn], acc[I])), ...);
}

template <int R, int Vn, bool MaskedB>
void tile(const TileArgs& t) {
  V acc[R * Vn];
  for (int i = 0; i < R * Vn; ++i) acc[i] = Simd::zero();
  const int last = t.last_lanes;
  for (int s = 0; s < t.nseg; ++s) {
    const float* a = t.segs[s].a + t.a_off;
    const float* b = t.segs[s].b + t.b_off;
    for (int64_t k = t.segs[s].len; k > 0; --k) {
      V w[Vn];
      for (int v = 0; v < Vn - 1; ++v) w[v] = Simd::load(b + v * L);
      if constexpr (MaskedB)
        w[Vn - 1] = Simd::load_n(b + (Vn - 1) * L, last);
      else
        w[Vn - 1] = Simd::load(b + (Vn - 1) * L);
      fma_tile<R, Vn>(std::make_index_sequence<R * Vn>(), acc, w, a, t.a_rs);
      a += t.a_ks;
      b += t.b_ks;
    }
  }
  const V alpha = Simd::set1(t.alpha);
  for (int r = 0; r < R; ++r) {
    float* out = t.out + r * t.out_rs;
    const float* add = t.add ? t.add + r * t.add_rs : nullptr;
    for (int v = 0; v < Vn; ++v) {
      const int n = v == Vn - 1 ? last : L;
      const int64_t o = int64_t(v) * L;
      V x = acc[r * Vn + v];
      if (t.alpha != 1) x = Simd::mul(alpha, x);
      if (n == L) {
        if (t.bias) x = Simd::add(Simd::load(t.bias + o), x);
        if (add) x = Simd::add(x, Simd::load(add + o));
        if (t.accumulate) x = Simd::add(Simd::load(out + o), x);
        Simd::store(out + o, x);
      } else {
        if (t.bias) x = Simd::add(Simd::load_n(t.bias + o, n), x);
        if (add) x = Simd::add(x, Simd::load_n(add + o, n));
        if (t.accumulate) x = Simd::add(Simd::load_n(out + o, n), x);
        Simd::store_n(out + o, x, n);
      }
    }
  }
}

// Register budget: R * V accumulators + V loaded vectors + a broadcast fit
// the register file (32 zmm; 16 ymm).
#if DDPM_CPU_ISA == 512
constexpr int kVectors = 4;
constexpr int kRows[kMaxVectors + 1] = {0, 16, 14, 9, 7};
#else
constexpr int kVectors = 3;
constexpr int kRows[kMaxVectors + 1] = {0, 12, 6, 4, 0};
#endif

template <int Vn, int... Rm1>
void fill_v(Kernels& k, std::integer_sequence<int, Rm1...>) {
  ((k.tile[Vn][Rm1 + 1][0] = &tile<Rm1 + 1, Vn, false>), ...);
  ((k.tile[Vn][Rm1 + 1][1] = &tile<Rm1 + 1, Vn, true>), ...);
}

}  // namespace

void fill_tiles(Kernels& k) {
  k.lanes = L;
  k.max_vectors = kVectors;
  for (int v = 0; v <= kMaxVectors; ++v) k.max_rows[v] = kRows[v];
  fill_v<1>(k, std::make_integer_sequence<int, kRows[1]>());
  fill_v<2>(k, std::make_integer_sequence<int, kRows[2]>());
  fill_v<3>(k, std::make_integer_sequence<int, kRows[3]>());
  if constexpr (kVectors >= 4) fill_v<4>(k, std::make_integer_sequence<int, kRows[4]>());
}

}  // namespace ddpm::cpu::fast::DDPM_CPU_NS

namespace ddpm::cpu::fast::DDPM_CPU_NS {

void fill_rows(Kernels& k);
void fill_group_norm(Kernels& k);

// This instruction set's table (isa.cpp picks one).
const Kernels& table() {
  static const Kernels k = [] {
    Kernels t;
    t.isa = DDPM_CPU_ISA == 512 ? Isa::avx512 : Isa::avx2;
    fill_tiles(t);
    fill_rows(t);
    fill_group_norm(t);
    return t;
  }();
  return k;
}

}  // namespace ddpm::cpu::fast::DDPM_CPU_NS
