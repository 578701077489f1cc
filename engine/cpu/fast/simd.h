// Vector helpers for the per-ISA kernel sources (*_isa.cpp), compiled once
// with DDPM_CPU_ISA=512 (AVX-512) and once with 256 (AVX2+FMA). Include it
// after every other header: from here to the end of the file, functions are
// compiled for that instruction set (#pragma GCC target), and everything
// lands in namespace ddpm::cpu::fast::avx512 or ::avx2, so no inline function
// compiled for one ISA can be picked by the linker for another.
//
// Only the code after this include may use the ISA; the dispatcher
// (isa.cpp) calls it only on CPUs that have it.
#pragma once

#include <immintrin.h>

#include <cstdint>

// GCC 12 warns that the _mm512_undefined_* placeholders inside its own
// intrinsics (cvtps_pd, extractf64x4) "may be used uninitialized".
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#if DDPM_CPU_ISA == 512
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c,bmi,bmi2")
#define DDPM_CPU_NS avx512
#elif DDPM_CPU_ISA == 256
#pragma GCC target("avx2,fma,f16c,bmi,bmi2")
#define DDPM_CPU_NS avx2
#else
#error "DDPM_CPU_ISA must be 512 or 256"
#endif

namespace ddpm::cpu::fast::DDPM_CPU_NS {

#if DDPM_CPU_ISA == 512
struct Simd {
  using V = __m512;
  static constexpr int L = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float f) { return _mm512_set1_ps(f); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static __mmask16 mask(int n) { return __mmask16((1u << n) - 1); }
  // The first n lanes (1 <= n <= L); the others read as 0 and are not touched.
  static V load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static void store_n(float* p, V v, int n) { _mm512_mask_storeu_ps(p, mask(n), v); }
  // v with the lanes from n on set to 0.
  static V keep_n(V v, int n) { return _mm512_maskz_mov_ps(mask(n), v); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V fnmadd(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static V round(V a) {
    return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  // 2^n for integral n in [-126, 127].
  static V pow2(V n) {
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
  }
  static float reduce_max(V v) { return _mm512_reduce_max_ps(v); }
  // d[i] += v[i] for the L lanes, in double.
  static void add_to_double(double* d, V v) {
    const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    const __m512d hi = _mm512_cvtps_pd(
        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    _mm512_storeu_pd(d, _mm512_add_pd(_mm512_loadu_pd(d), lo));
    _mm512_storeu_pd(d + 8, _mm512_add_pd(_mm512_loadu_pd(d + 8), hi));
  }
};
#else
struct Simd {
  using V = __m256;
  static constexpr int L = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float f) { return _mm256_set1_ps(f); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static __m256i mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V load_n(const float* p, int n) { return _mm256_maskload_ps(p, mask(n)); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static void store_n(float* p, V v, int n) { _mm256_maskstore_ps(p, mask(n), v); }
  static V keep_n(V v, int n) { return _mm256_and_ps(v, _mm256_castsi256_ps(mask(n))); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static V round(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static V pow2(V n) {
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
  }
  static float reduce_max(V v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
  }
  static void add_to_double(double* d, V v) {
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    _mm256_storeu_pd(d, _mm256_add_pd(_mm256_loadu_pd(d), lo));
    _mm256_storeu_pd(d + 4, _mm256_add_pd(_mm256_loadu_pd(d + 4), hi));
  }
};
#endif

using V = Simd::V;
constexpr int L = Simd::L;

// e^x in float, within 2 ulp of the correctly rounded value over the clamped
// range: x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two for an exact
// product), e^r by a degree-6 minimax polynomial (Cephes' expf
// coefficients), times 2^n through the exponent bits. Inputs are clamped to
// [-87.3365, 88] so 2^n stays a normal float: below, e^x is returned as
// ~1.2e-38 instead of a subnormal or 0 (every caller adds it to 1 or
// multiplies it by a bounded value).
inline V exp(V x) {
  x = Simd::min(Simd::max(x, Simd::set1(-87.3365448f)), Simd::set1(88.0f));
  const V n = Simd::round(Simd::mul(x, Simd::set1(1.44269504088896341f)));
  V r = Simd::fnmadd(n, Simd::set1(0.693359375f), x);
  r = Simd::fnmadd(n, Simd::set1(-2.12194440e-4f), r);
  V p = Simd::set1(1.9875691500e-4f);
  p = Simd::fmadd(p, r, Simd::set1(1.3981999507e-3f));
  p = Simd::fmadd(p, r, Simd::set1(8.3334519073e-3f));
  p = Simd::fmadd(p, r, Simd::set1(4.1665795894e-2f));
  p = Simd::fmadd(p, r, Simd::set1(1.6666665459e-1f));
  p = Simd::fmadd(p, r, Simd::set1(5.0000001201e-1f));
  const V y = Simd::fmadd(p, Simd::mul(r, r), Simd::add(r, Simd::set1(1.0f)));
  return Simd::mul(y, Simd::pow2(n));
}

}  // namespace ddpm::cpu::fast::DDPM_CPU_NS
