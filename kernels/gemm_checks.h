// The argument checks that gemm.cu (fp32) and gemm_bf16.cu share: the same
// limits (every dimension and operand under 2^31 elements, required pointers
// non-null and aligned to their element), the messages prefixed with the
// family's name ("gemm: ...", "gemm_bf16: ..."). Host-only and header-inline,
// so that each family's emulated tests build from its own source alone.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace ddpm::kernels::detail {

constexpr int64_t kGemmMaxElements = (int64_t(1) << 31) - 1;  // per operand, and any dimension

[[noreturn]] inline void gemm_bad_argument(const char* family, const std::string& what) {
  throw std::invalid_argument(std::string(family) + ": " + what);
}

inline void check_gemm_dimension(const char* family, const char* name, int64_t v) {
  if (v < 0 || v > kGemmMaxElements)
    gemm_bad_argument(family, std::string(name) + " is " + std::to_string(v) + ", expected 0.." +
                                  std::to_string(kGemmMaxElements));
}

// Null is aligned; `needed` pointers must not be null.
inline void check_gemm_pointer(const char* family, const char* name, const void* p, bool needed,
                               uintptr_t alignment) {
  if (needed && p == nullptr) gemm_bad_argument(family, std::string(name) + " is null");
  if (reinterpret_cast<uintptr_t>(p) % alignment != 0)
    gemm_bad_argument(family,
                      std::string(name) + " is not " + std::to_string(alignment) + "-byte aligned");
}

// C (m x n) = op(A) (m x k) op(B) (k x n) + bias (n): a and b are needed when
// the product has terms, c when the output has elements; a and b aligned to
// operand_alignment, bias to 4 (fp32), c to c_alignment.
inline void check_gemm_arguments(const char* family, int64_t m, int64_t n, int64_t k, const void* a,
                                 const void* b, const float* bias, const void* c,
                                 uintptr_t operand_alignment, uintptr_t c_alignment) {
  check_gemm_dimension(family, "m", m);
  check_gemm_dimension(family, "n", n);
  check_gemm_dimension(family, "k", k);
  auto check_size = [family](const char* what, int64_t rows, int64_t cols) {
    if (rows * cols > kGemmMaxElements)
      gemm_bad_argument(family, std::string(what) + " has 2^31 elements or more (" +
                                    std::to_string(rows) + " x " + std::to_string(cols) + ")");
  };
  check_size("A", m, k);
  check_size("B", k, n);
  check_size("C", m, n);
  const bool product = m > 0 && n > 0 && k > 0, output = m > 0 && n > 0;
  check_gemm_pointer(family, "a", a, product, operand_alignment);
  check_gemm_pointer(family, "b", b, product, operand_alignment);
  check_gemm_pointer(family, "bias", bias, false, 4);
  check_gemm_pointer(family, "c", c, output, c_alignment);
}

}  // namespace ddpm::kernels::detail
