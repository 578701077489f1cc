// Device intrinsics and math functions that CUDA's headers leave undeclared for
// g++: fast-math float intrinsics, explicitly rounded arithmetic, bit tricks,
// min/max overloads, cache-hinted loads, and the fp16/bf16 math (__hfma, hexp,
// hsqrt, hrsqrt, ...) missing from cuda_fp16.h / cuda_bf16.h host code.
// The fast intrinsics are computed exactly here, so results differ from the
// GPU's approximations in the last bits: tests compare with tolerances.
// Included by cuda_emulation.h.
#pragma once

#include <math.h>

#include <bit>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

// One-liners stay one line each: these are tables to scan, not code to read.
// clang-format off

// ---- Fast-math float intrinsics (exact here) -----------------------------------
inline float __expf(float x) { return std::exp(x); }
inline float __exp10f(float x) { return std::pow(10.0f, x); }
inline float __logf(float x) { return std::log(x); }
inline float __log2f(float x) { return std::log2(x); }
inline float __log10f(float x) { return std::log10(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __tanf(float x) { return std::tan(x); }
inline float __tanhf(float x) { return std::tanh(x); }
inline void __sincosf(float x, float* s, float* c) { *s = std::sin(x); *c = std::cos(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN -> 0

// ---- Explicitly rounded arithmetic (round-to-nearest is the host default) -------
inline float __fadd_rn(float x, float y) { return x + y; }
inline float __fsub_rn(float x, float y) { return x - y; }
inline float __fmul_rn(float x, float y) { return x * y; }
inline float __fdiv_rn(float x, float y) { return x / y; }
inline float __fmaf_rn(float x, float y, float z) { return std::fma(x, y, z); }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __frsqrt_rn(float x) { return 1.0f / std::sqrt(x); }
inline double __dadd_rn(double x, double y) { return x + y; }
inline double __dmul_rn(double x, double y) { return x * y; }
inline double __fma_rn(double x, double y, double z) { return std::fma(x, y, z); }

// ---- CUDA math functions libm lacks ---------------------------------------------
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float rcbrtf(float x) { return 1.0f / std::cbrt(x); }
inline double rcbrt(double x) { return 1.0 / std::cbrt(x); }
inline float sinpif(float x) { return static_cast<float>(std::sin(M_PI * double(x))); }
inline float cospif(float x) { return static_cast<float>(std::cos(M_PI * double(x))); }
inline void sincospif(float x, float* s, float* c) { *s = sinpif(x); *c = cospif(x); }
inline double normcdf(double x) { return 0.5 * std::erfc(-x * M_SQRT1_2); }
inline float normcdff(float x) { return static_cast<float>(normcdf(x)); }
inline float rhypotf(float x, float y) { return 1.0f / std::hypot(x, y); }
inline float norm3df(float x, float y, float z) {
  return static_cast<float>(std::sqrt(double(x) * x + double(y) * y + double(z) * z));
}
inline float rnorm3df(float x, float y, float z) { return 1.0f / norm3df(x, y, z); }

namespace ddpm::emu::detail {
// erfinv by Newton's method on erf from a coarse start (Giles' approximation).
inline double erfinv(double y) {
  if (!(y > -1.0 && y < 1.0)) {
    if (y == 1.0) return std::numeric_limits<double>::infinity();
    if (y == -1.0) return -std::numeric_limits<double>::infinity();
    return std::numeric_limits<double>::quiet_NaN();
  }
  const double w = -std::log((1.0 - y) * (1.0 + y));
  double x = w < 5.0 ? y * (1.0 + w * (0.14 + 0.007 * w)) * 0.886
                     : std::copysign(std::sqrt(w) - 0.3, y);
  for (int i = 0; i < 6; ++i) x -= (std::erf(x) - y) / (M_2_SQRTPI * std::exp(-x * x));
  return x;
}
// erfcinv(y) = erfinv(1 - y), with Newton on erfc to keep precision near y = 0.
inline double erfcinv(double y) {
  if (y > 0.0625 && y < 1.9375) return erfinv(1.0 - y);
  if (y <= 0.0) return y == 0.0 ? std::numeric_limits<double>::infinity()
                                : std::numeric_limits<double>::quiet_NaN();
  if (y >= 2.0) return y == 2.0 ? -std::numeric_limits<double>::infinity()
                                : std::numeric_limits<double>::quiet_NaN();
  const double t = y < 1.0 ? y : 2.0 - y;
  double x = std::sqrt(-std::log(t / 2.0));  // coarse tail start
  for (int i = 0; i < 50; ++i) {
    const double step = (std::erfc(x) - t) / (-M_2_SQRTPI * std::exp(-x * x));
    x -= step;
    if (std::fabs(step) < 1e-15 * std::fabs(x)) break;
  }
  return y < 1.0 ? x : -x;
}
}  // namespace ddpm::emu::detail

inline float erfinvf(float y) { return static_cast<float>(ddpm::emu::detail::erfinv(y)); }
inline double erfinv(double y) { return ddpm::emu::detail::erfinv(y); }
inline float erfcinvf(float y) { return static_cast<float>(ddpm::emu::detail::erfcinv(y)); }
inline double erfcinv(double y) { return ddpm::emu::detail::erfcinv(y); }
inline float normcdfinvf(float p) {
  return static_cast<float>(-M_SQRT2 * ddpm::emu::detail::erfcinv(2.0 * p));
}
inline double normcdfinv(double p) { return -M_SQRT2 * ddpm::emu::detail::erfcinv(2.0 * p); }

// ---- Conversions and reinterpretation ---------------------------------------------
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline double __longlong_as_double(long long x) { return std::bit_cast<double>(x); }
inline long long __double_as_longlong(double x) { return std::bit_cast<long long>(x); }

namespace ddpm::emu::detail {
// The GPU's float-to-integer conversions saturate and map NaN to 0.
template <class Int>
Int saturating_convert(double rounded) {
  if (std::isnan(rounded)) return 0;
  if (rounded <= double(std::numeric_limits<Int>::min())) return std::numeric_limits<Int>::min();
  if (rounded >= double(std::numeric_limits<Int>::max())) return std::numeric_limits<Int>::max();
  return static_cast<Int>(rounded);
}
}  // namespace ddpm::emu::detail

inline int __float2int_rn(float x) {
  return ddpm::emu::detail::saturating_convert<int>(std::nearbyint(x));
}
inline int __float2int_rz(float x) {
  return ddpm::emu::detail::saturating_convert<int>(std::trunc(x));
}
inline int __float2int_rd(float x) {
  return ddpm::emu::detail::saturating_convert<int>(std::floor(x));
}
inline int __float2int_ru(float x) {
  return ddpm::emu::detail::saturating_convert<int>(std::ceil(x));
}
inline unsigned __float2uint_rn(float x) {
  return ddpm::emu::detail::saturating_convert<unsigned>(std::nearbyint(x));
}
inline unsigned __float2uint_rz(float x) {
  return ddpm::emu::detail::saturating_convert<unsigned>(std::trunc(x));
}
inline long long __float2ll_rn(float x) {
  return ddpm::emu::detail::saturating_convert<long long>(std::nearbyint(x));
}
inline int __double2int_rn(double x) {
  return ddpm::emu::detail::saturating_convert<int>(std::nearbyint(x));
}
inline float __int2float_rn(int x) { return static_cast<float>(x); }
inline float __uint2float_rn(unsigned x) { return static_cast<float>(x); }
inline float __double2float_rn(double x) { return static_cast<float>(x); }

// ---- Integer and bit intrinsics ---------------------------------------------------
inline int __popc(unsigned x) { return std::popcount(x); }
inline int __popcll(unsigned long long x) { return std::popcount(x); }
inline int __clz(int x) { return std::countl_zero(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return std::countl_zero(static_cast<unsigned long long>(x)); }
inline int __ffs(int x) { return x == 0 ? 0 : std::countr_zero(static_cast<unsigned>(x)) + 1; }
inline int __ffsll(long long x) {
  return x == 0 ? 0 : std::countr_zero(static_cast<unsigned long long>(x)) + 1;
}
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline unsigned long long __brevll(unsigned long long x) {
  return (static_cast<unsigned long long>(__brev(static_cast<unsigned>(x))) << 32) |
         __brev(static_cast<unsigned>(x >> 32));
}
inline unsigned __umulhi(unsigned x, unsigned y) {
  return static_cast<unsigned>((static_cast<std::uint64_t>(x) * y) >> 32);
}
inline int __mulhi(int x, int y) {
  return static_cast<int>((static_cast<std::int64_t>(x) * y) >> 32);
}
inline unsigned long long __umul64hi(unsigned long long x, unsigned long long y) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(x) * y) >> 64);
}
inline long long __mul64hi(long long x, long long y) {
  return static_cast<long long>((static_cast<__int128>(x) * y) >> 64);
}
inline int __mul24(int x, int y) {
  // Sign-extend the low 24 bits of each operand.
  const auto low24 = [](int v) { return static_cast<int>(static_cast<unsigned>(v) << 8) >> 8; };
  return static_cast<int>(static_cast<unsigned>(low24(x)) * static_cast<unsigned>(low24(y)));
}
inline unsigned __umul24(unsigned x, unsigned y) { return (x & 0xffffffu) * (y & 0xffffffu); }
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
  const std::uint64_t both = (std::uint64_t(hi) << 32) | lo;
  return static_cast<unsigned>((both << (shift & 31)) >> 32);
}
inline unsigned __funnelshift_lc(unsigned lo, unsigned hi, unsigned shift) {
  const std::uint64_t both = (std::uint64_t(hi) << 32) | lo;
  return static_cast<unsigned>((both << (shift < 32 ? shift : 32)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
  const std::uint64_t both = (std::uint64_t(hi) << 32) | lo;
  return static_cast<unsigned>(both >> (shift & 31));
}
inline unsigned __funnelshift_rc(unsigned lo, unsigned hi, unsigned shift) {
  const std::uint64_t both = (std::uint64_t(hi) << 32) | lo;
  return static_cast<unsigned>(both >> (shift < 32 ? shift : 32));
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned selector) {
  const std::uint64_t bytes = (std::uint64_t(y) << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) {
    const unsigned which = (selector >> (4 * i)) & 7u;
    r |= static_cast<unsigned>((bytes >> (8 * which)) & 0xffu) << (8 * i);
  }
  return r;
}

// ---- min / max, as CUDA overloads them for device code ----------------------------
#define DDPM_EMU_MINMAX(R, A, B)                                  \
  inline R min(A a, B b) {                                        \
    const R x = static_cast<R>(a), y = static_cast<R>(b);         \
    return y < x ? y : x;                                         \
  }                                                               \
  inline R max(A a, B b) {                                        \
    const R x = static_cast<R>(a), y = static_cast<R>(b);         \
    return x < y ? y : x;                                         \
  }
DDPM_EMU_MINMAX(int, int, int)
DDPM_EMU_MINMAX(unsigned, unsigned, unsigned)
DDPM_EMU_MINMAX(unsigned, int, unsigned)
DDPM_EMU_MINMAX(unsigned, unsigned, int)
DDPM_EMU_MINMAX(long, long, long)
DDPM_EMU_MINMAX(unsigned long, unsigned long, unsigned long)
DDPM_EMU_MINMAX(unsigned long, long, unsigned long)
DDPM_EMU_MINMAX(unsigned long, unsigned long, long)
DDPM_EMU_MINMAX(long long, long long, long long)
DDPM_EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
DDPM_EMU_MINMAX(unsigned long long, long long, unsigned long long)
DDPM_EMU_MINMAX(unsigned long long, unsigned long long, long long)
#undef DDPM_EMU_MINMAX
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
inline double min(float a, double b) { return std::fmin(double(a), b); }
inline double max(float a, double b) { return std::fmax(double(a), b); }
inline double min(double a, float b) { return std::fmin(a, double(b)); }
inline double max(double a, float b) { return std::fmax(a, double(b)); }

// ---- Cache-hinted loads and stores: plain accesses here -----------------------------
template <class T> T __ldg(const T* p) { return *p; }
template <class T> T __ldcg(const T* p) { return *p; }
template <class T> T __ldca(const T* p) { return *p; }
template <class T> T __ldcs(const T* p) { return *p; }
template <class T> T __ldlu(const T* p) { return *p; }
template <class T> T __ldcv(const T* p) { return *p; }
template <class T> void __stcg(T* p, T v) { *p = v; }
template <class T> void __stcs(T* p, T v) { *p = v; }
template <class T> void __stwb(T* p, T v) { *p = v; }
template <class T> void __stwt(T* p, T v) { *p = v; }

// ---- Timing: meaningless under emulation, but present ------------------------------
inline long long clock64() {
  return std::chrono::steady_clock::now().time_since_epoch().count();
}
inline void __nanosleep(unsigned) {}

// ---- fp16 / bf16 math: through float (fma through double: one rounding) ------------
#define DDPM_EMU_HALF_MATH(H, to_float, from_float)                                     \
  inline H __hfma(H a, H b, H c) {                                                       \
    return from_float(static_cast<float>(std::fma(double(to_float(a)), double(to_float(b)), \
                                                  double(to_float(c)))));                \
  }                                                                                      \
  inline H __hfma_sat(H a, H b, H c) {                                                   \
    return from_float(__saturatef(to_float(__hfma(a, b, c))));                           \
  }                                                                                      \
  inline H __hfma_relu(H a, H b, H c) {                                                  \
    const float r = to_float(__hfma(a, b, c));                                           \
    return from_float(r > 0.0f || std::isnan(r) ? r : 0.0f);                             \
  }                                                                                      \
  inline H hexp(H x) { return from_float(std::exp(to_float(x))); }                       \
  inline H hexp2(H x) { return from_float(std::exp2(to_float(x))); }                     \
  inline H hexp10(H x) { return from_float(std::pow(10.0f, to_float(x))); }              \
  inline H hlog(H x) { return from_float(std::log(to_float(x))); }                       \
  inline H hlog2(H x) { return from_float(std::log2(to_float(x))); }                     \
  inline H hlog10(H x) { return from_float(std::log10(to_float(x))); }                   \
  inline H hsqrt(H x) { return from_float(std::sqrt(to_float(x))); }                     \
  inline H hrsqrt(H x) { return from_float(1.0f / std::sqrt(to_float(x))); }            \
  inline H hrcp(H x) { return from_float(1.0f / to_float(x)); }                          \
  inline H hsin(H x) { return from_float(std::sin(to_float(x))); }                       \
  inline H hcos(H x) { return from_float(std::cos(to_float(x))); }                       \
  inline H htanh(H x) { return from_float(std::tanh(to_float(x))); }                     \
  inline H hfloor(H x) { return from_float(std::floor(to_float(x))); }                   \
  inline H hceil(H x) { return from_float(std::ceil(to_float(x))); }                     \
  inline H htrunc(H x) { return from_float(std::trunc(to_float(x))); }                   \
  inline H hrint(H x) { return from_float(std::nearbyint(to_float(x))); }

#define DDPM_EMU_HALF2_MATH(H2, H, make2)                                               \
  inline H2 __hfma2(H2 a, H2 b, H2 c) {                                                  \
    return make2(__hfma(a.x, b.x, c.x), __hfma(a.y, b.y, c.y));                          \
  }                                                                                      \
  inline H2 h2exp(H2 v) { return make2(hexp(v.x), hexp(v.y)); }                          \
  inline H2 h2exp2(H2 v) { return make2(hexp2(v.x), hexp2(v.y)); }                       \
  inline H2 h2log(H2 v) { return make2(hlog(v.x), hlog(v.y)); }                          \
  inline H2 h2log2(H2 v) { return make2(hlog2(v.x), hlog2(v.y)); }                       \
  inline H2 h2sqrt(H2 v) { return make2(hsqrt(v.x), hsqrt(v.y)); }                       \
  inline H2 h2rsqrt(H2 v) { return make2(hrsqrt(v.x), hrsqrt(v.y)); }                    \
  inline H2 h2rcp(H2 v) { return make2(hrcp(v.x), hrcp(v.y)); }                          \
  inline H2 h2sin(H2 v) { return make2(hsin(v.x), hsin(v.y)); }                          \
  inline H2 h2cos(H2 v) { return make2(hcos(v.x), hcos(v.y)); }                          \
  inline H2 h2floor(H2 v) { return make2(hfloor(v.x), hfloor(v.y)); }                    \
  inline H2 h2ceil(H2 v) { return make2(hceil(v.x), hceil(v.y)); }                       \
  inline H2 h2trunc(H2 v) { return make2(htrunc(v.x), htrunc(v.y)); }                    \
  inline H2 h2rint(H2 v) { return make2(hrint(v.x), hrint(v.y)); }

DDPM_EMU_HALF_MATH(__half, __half2float, __float2half_rn)
DDPM_EMU_HALF_MATH(__nv_bfloat16, __bfloat162float, __float2bfloat16_rn)
DDPM_EMU_HALF2_MATH(__half2, __half, __halves2half2)
DDPM_EMU_HALF2_MATH(__nv_bfloat162, __nv_bfloat16, __halves2bfloat162)
#undef DDPM_EMU_HALF_MATH
#undef DDPM_EMU_HALF2_MATH

inline int __half2int_rn(__half h) { return __float2int_rn(__half2float(h)); }

// clang-format on
