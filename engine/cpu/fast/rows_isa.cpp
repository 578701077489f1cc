// Row-wise kernels of attention for one instruction set (isa.h): softmax
// with its saved log-sum-exp, the probabilities recomputed from it, the
// softmax's backward, and a dot product. Ragged row ends use masked loads
// and stores, so every element goes through the same vector arithmetic.
#include <cmath>

#include "engine/cpu/fast/isa.h"
#include "engine/cpu/fast/simd.h"

namespace ddpm::cpu::fast::DDPM_CPU_NS {

namespace {

// Sum of the lanes in double, lane 0 first.
double lanes_sum(V v) {
  alignas(64) float f[L];
  Simd::store(f, v);
  double s = 0;
  for (int i = 0; i < L; ++i) s += double(f[i]);
  return s;
}

float row_max(const float* s, int64_t cols) {
  int64_t j = 0;
  float m = -INFINITY;
  if (cols >= L) {
    V vm = Simd::load(s);
    for (j = L; j + L <= cols; j += L) vm = Simd::max(vm, Simd::load(s + j));
    m = Simd::reduce_max(vm);
  }
  for (; j < cols; ++j) m = s[j] > m ? s[j] : m;
  return m;
}

// s = exp(s - shift) in place; returns the sum of the new values.
V exp_shift_row(float* s, int64_t cols, float shift) {
  const V sh = Simd::set1(shift);
  V sum = Simd::zero();
  int64_t j = 0;
  for (; j + L <= cols; j += L) {
    const V e = exp(Simd::sub(Simd::load(s + j), sh));
    Simd::store(s + j, e);
    sum = Simd::add(sum, e);
  }
  if (j < cols) {
    const int n = int(cols - j);
    const V e = Simd::keep_n(exp(Simd::sub(Simd::load_n(s + j, n), sh)), n);
    Simd::store_n(s + j, e, n);
    sum = Simd::add(sum, e);
  }
  return sum;
}

void softmax_rows(float* s, int64_t rows, int64_t cols, int64_t ld, float* lse) {
  for (int64_t i = 0; i < rows; ++i) {
    float* row = s + i * ld;
    const float mx = row_max(row, cols);
    // exp(s - max) is computed twice (for the sum, then for p = exp(s - lse))
    // so p is exactly what the backward recomputes from lse.
    V sum = Simd::zero();
    const V sh = Simd::set1(mx);
    int64_t j = 0;
    for (; j + L <= cols; j += L) sum = Simd::add(sum, exp(Simd::sub(Simd::load(row + j), sh)));
    if (j < cols) {
      const int n = int(cols - j);
      sum = Simd::add(sum, Simd::keep_n(exp(Simd::sub(Simd::load_n(row + j, n), sh)), n));
    }
    lse[i] = mx + float(std::log(lanes_sum(sum)));
    exp_shift_row(row, cols, lse[i]);
  }
}

void exp_rows(float* s, int64_t rows, int64_t cols, int64_t ld, const float* lse) {
  for (int64_t i = 0; i < rows; ++i) exp_shift_row(s + i * ld, cols, lse[i]);
}

void softmax_grad_rows(const float* p, float* dp, int64_t rows, int64_t cols, int64_t ld,
                       const float* d) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* pr = p + i * ld;
    float* dr = dp + i * ld;
    const V di = Simd::set1(d[i]);
    int64_t j = 0;
    for (; j + L <= cols; j += L)
      Simd::store(dr + j, Simd::mul(Simd::load(pr + j), Simd::sub(Simd::load(dr + j), di)));
    if (j < cols) {
      const int n = int(cols - j);
      Simd::store_n(dr + j, Simd::mul(Simd::load_n(pr + j, n), Simd::sub(Simd::load_n(dr + j, n), di)),
                    n);
    }
  }
}

float dot(const float* a, const float* b, int64_t n) {
  V acc = Simd::zero();
  int64_t i = 0;
  for (; i + L <= n; i += L) acc = Simd::fmadd(Simd::load(a + i), Simd::load(b + i), acc);
  if (i < n) acc = Simd::fmadd(Simd::load_n(a + i, int(n - i)), Simd::load_n(b + i, int(n - i)), acc);
  alignas(64) float f[L];
  Simd::store(f, acc);
  float s = 0;
  for (int l = 0; l < L; ++l) s += f[l];
  return s;
}

}  // namespace

void fill_rows(Kernels& k) {
  k.softmax_rows = &softmax_rows;
  k.exp_rows = &exp_rows;
  k.softmax_grad_rows = &softmax_grad_rows;
  k.dot = &dot;
}

}  // namespace ddpm::cpu::fast::DDPM_CPU_NS
