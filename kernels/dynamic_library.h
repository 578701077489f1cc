// Optional vendor libraries (cuDNN, cuBLAS) are loaded with dlopen at first
// use rather than linked: our programs then start on machines without them
// (the CPU fallback must run everywhere), and the library is needed only where
// its implementation is asked for. Host code only.
#pragma once

#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <initializer_list>
#include <stdexcept>
#include <string>

namespace ddpm::kernels {

class DynamicLibrary {
 public:
  // Tries each soname in order; loaded() tells whether one opened, error()
  // what dlopen said for each.
  explicit DynamicLibrary(std::initializer_list<const char*> sonames) {
    for (const char* name : sonames) {
      handle_ = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (handle_) {
        name_ = name;
        return;
      }
      const char* e = dlerror();
      error_ += std::string(error_.empty() ? "" : "; ") + (e ? e : name);
    }
  }
  DynamicLibrary(const DynamicLibrary&) = delete;
  DynamicLibrary& operator=(const DynamicLibrary&) = delete;
  ~DynamicLibrary() = default;  // kept loaded: handles and callbacks may outlive us at exit

  bool loaded() const { return handle_ != nullptr; }
  const std::string& error() const { return error_; }
  const std::string& name() const { return name_; }

  // The symbol as a function pointer of type F; throws naming the symbol and
  // the library when it is missing (an older library than our headers).
  template <typename F>
  F symbol(const char* sym) const {
    if (!handle_) throw std::runtime_error(std::string("library not loaded: ") + error_);
    void* p = dlsym(handle_, sym);
    if (!p) throw std::runtime_error(std::string("symbol ") + sym + " not found in " + name_);
    return reinterpret_cast<F>(p);
  }

 private:
  void* handle_ = nullptr;
  std::string name_, error_;
};

// Whether an optional library can serve calls: it loaded (`load_error`, what
// loading it reported, is empty) and a CUDA device is visible. `reason`, when
// given, says why not.
inline bool vendor_library_usable(const std::string& load_error, std::string* reason) {
  if (!load_error.empty()) {
    if (reason) *reason = load_error;
    return false;
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    cudaGetLastError();  // the query's error is not the caller's
    if (reason) *reason = "no CUDA device";
    return false;
  }
  return true;
}

}  // namespace ddpm::kernels
