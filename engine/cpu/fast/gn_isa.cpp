// GroupNorm's passes over one sample's [pixels, c] map for one instruction
// set (isa.h), channels in vectors. Sums go per channel into f32 partials
// over blocks of kBlock pixels, each block then added to the double sums:
// the statistics keep (nearly) the reference's double accumulation while the
// inner loop stays in f32. The element-wise formulas are the reference's
// (engine/cpu/group_norm.cpp), operation for operation.
#include "engine/cpu/fast/isa.h"
#include "engine/cpu/fast/scratch.h"
#include "engine/cpu/fast/simd.h"

namespace ddpm::cpu::fast::DDPM_CPU_NS {

namespace {

constexpr int64_t kBlock = 64;

// d[i] += v[i] for the first n lanes, in double.
void add_to_double_n(double* d, V v, int n) {
  if (n == L) return Simd::add_to_double(d, v);
  alignas(64) float f[L];
  Simd::store(f, v);
  for (int i = 0; i < n; ++i) d[i] += double(f[i]);
}

// Channel j's vector of a row (the last one ragged: only n lanes valid).
struct Lanes {
  int64_t c;
  int n(int64_t j) const { return c - j < L ? int(c - j) : L; }
  V load(const float* p, int64_t j) const { return n(j) == L ? Simd::load(p + j) : Simd::load_n(p + j, n(j)); }
  void store(float* p, int64_t j, V v) const {
    if (n(j) == L)
      Simd::store(p + j, v);
    else
      Simd::store_n(p + j, v, n(j));
  }
};

V sigmoid(V z) {
  const V one = Simd::set1(1.0f);
  return Simd::div(one, Simd::add(one, exp(Simd::sub(Simd::zero(), z))));
}

float* partials(size_t n) {
  return scratch(Slot::isa_partials, n);
}

void gn_channel_sums(const float* x, const float* bias, int64_t pixels, int64_t c,
                     const float* mean, double* sums) {
  const Lanes ln{c};
  const int64_t cv = (c + L - 1) / L * L;
  float* part = partials(size_t(cv));
  for (int64_t p0 = 0; p0 < pixels; p0 += kBlock) {
    for (int64_t j = 0; j < cv; j += L) Simd::store(part + j, Simd::zero());
    for (int64_t p = p0, p1 = p0 + kBlock < pixels ? p0 + kBlock : pixels; p < p1; ++p)
      for (int64_t j = 0; j < c; j += L) {
        V h = ln.load(x + p * c, j);
        if (bias) h = Simd::add(h, ln.load(bias, j));
        if (mean) {
          const V d = Simd::sub(h, ln.load(mean, j));
          h = Simd::mul(d, d);
        }
        Simd::store(part + j, Simd::add(Simd::load(part + j), h));
      }
    for (int64_t j = 0; j < c; j += L) add_to_double_n(sums + j, Simd::load(part + j), ln.n(j));
  }
}

void gn_apply(const float* x, const float* bias, int64_t pixels, int64_t c, const float* mean,
              const float* rstd, const float* gamma, const float* beta, bool silu, float* y) {
  const Lanes ln{c};
  for (int64_t p = 0; p < pixels; ++p)
    for (int64_t j = 0; j < c; j += L) {
      V h = ln.load(x + p * c, j);
      if (bias) h = Simd::add(h, ln.load(bias, j));
      V z = Simd::mul(Simd::sub(h, ln.load(mean, j)), ln.load(rstd, j));
      if (gamma) z = Simd::add(Simd::mul(z, ln.load(gamma, j)), ln.load(beta, j));
      if (silu) z = Simd::mul(z, sigmoid(z));
      ln.store(y + p * c, j, z);
    }
}

void gn_backward_sums(const float* x, const float* bias, const float* dy, int64_t pixels, int64_t c,
                      const float* mean, const float* rstd, const float* gamma, const float* beta,
                      bool silu, float* dz_out, double* s_dz_xhat, double* s_dz, double* s_dxhat,
                      double* s_dxhat_xhat) {
  const Lanes ln{c};
  const int64_t cv = (c + L - 1) / L * L;
  float* part = partials(size_t(4 * cv));
  float* p_dz_xhat = part;
  float* p_dz = part + cv;
  float* p_dxhat = part + 2 * cv;
  float* p_dxhat_xhat = part + 3 * cv;
  const V one = Simd::set1(1.0f);
  for (int64_t p0 = 0; p0 < pixels; p0 += kBlock) {
    for (int64_t j = 0; j < 4 * cv; j += L) Simd::store(part + j, Simd::zero());
    for (int64_t p = p0, p1 = p0 + kBlock < pixels ? p0 + kBlock : pixels; p < p1; ++p)
      for (int64_t j = 0; j < c; j += L) {
        V h = ln.load(x + p * c, j);
        if (bias) h = Simd::add(h, ln.load(bias, j));
        const V xhat = Simd::mul(Simd::sub(h, ln.load(mean, j)), ln.load(rstd, j));
        V dz = ln.load(dy + p * c, j);
        if (silu) {
          V z = xhat;
          if (gamma)
            z = Simd::add(Simd::mul(xhat, ln.load(gamma, j)), beta ? ln.load(beta, j) : Simd::zero());
          const V s = sigmoid(z);
          dz = Simd::mul(dz, Simd::mul(s, Simd::add(one, Simd::mul(z, Simd::sub(one, s)))));
        }
        ln.store(dz_out + p * c, j, dz);
        const V dxhat = gamma ? Simd::mul(dz, ln.load(gamma, j)) : dz;
        Simd::store(p_dz_xhat + j, Simd::add(Simd::load(p_dz_xhat + j), Simd::mul(dz, xhat)));
        Simd::store(p_dz + j, Simd::add(Simd::load(p_dz + j), dz));
        Simd::store(p_dxhat + j, Simd::add(Simd::load(p_dxhat + j), dxhat));
        Simd::store(p_dxhat_xhat + j,
                    Simd::add(Simd::load(p_dxhat_xhat + j), Simd::mul(dxhat, xhat)));
      }
    for (int64_t j = 0; j < c; j += L) {
      const int n = ln.n(j);
      add_to_double_n(s_dz_xhat + j, Simd::load(p_dz_xhat + j), n);
      add_to_double_n(s_dz + j, Simd::load(p_dz + j), n);
      add_to_double_n(s_dxhat + j, Simd::load(p_dxhat + j), n);
      add_to_double_n(s_dxhat_xhat + j, Simd::load(p_dxhat_xhat + j), n);
    }
  }
}

void gn_backward_apply(const float* x, const float* bias, const float* dz, int64_t pixels,
                       int64_t c, const float* mean, const float* rstd, const float* gamma,
                       const float* m1, const float* m2, float* dx, bool accumulate,
                       double* dbias_sums) {
  const Lanes ln{c};
  const int64_t cv = (c + L - 1) / L * L;
  float* part = partials(size_t(cv));
  for (int64_t p0 = 0; p0 < pixels; p0 += kBlock) {
    for (int64_t j = 0; j < cv; j += L) Simd::store(part + j, Simd::zero());
    for (int64_t p = p0, p1 = p0 + kBlock < pixels ? p0 + kBlock : pixels; p < p1; ++p)
      for (int64_t j = 0; j < c; j += L) {
        V h = ln.load(x + p * c, j);
        if (bias) h = Simd::add(h, ln.load(bias, j));
        const V r = ln.load(rstd, j);
        const V xhat = Simd::mul(Simd::sub(h, ln.load(mean, j)), r);
        const V d = ln.load(dz + p * c, j);
        const V dxhat = gamma ? Simd::mul(d, ln.load(gamma, j)) : d;
        const V dh = Simd::mul(r, Simd::sub(Simd::sub(dxhat, ln.load(m1, j)),
                                            Simd::mul(xhat, ln.load(m2, j))));
        if (dx) ln.store(dx + p * c, j, accumulate ? Simd::add(ln.load(dx + p * c, j), dh) : dh);
        if (dbias_sums) Simd::store(part + j, Simd::add(Simd::load(part + j), dh));
      }
    if (dbias_sums)
      for (int64_t j = 0; j < c; j += L) add_to_double_n(dbias_sums + j, Simd::load(part + j), ln.n(j));
  }
}

}  // namespace

void fill_group_norm(Kernels& k) {
  k.gn_channel_sums = &gn_channel_sums;
  k.gn_apply = &gn_apply;
  k.gn_backward_sums = &gn_backward_sums;
  k.gn_backward_apply = &gn_backward_apply;
}

}  // namespace ddpm::cpu::fast::DDPM_CPU_NS
