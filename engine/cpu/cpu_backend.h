// The CPU backend: host memory and the reference ops of engine/cpu.
#pragma once

#include "engine/backend.h"

namespace ddpm {

class CpuBackend : public Backend {
 public:
  Device device() const override { return Device::cpu; }
  std::string name() const override { return "cpu"; }

  void* allocate(size_t bytes) override;
  size_t available_memory() const override;
  void deallocate(void* p) noexcept override;
  void fill_zero(void* p, size_t bytes) override;
  void copy_from_host(void* dst, const void* src, size_t bytes) override;
  void copy_to_host(void* dst, const void* src, size_t bytes) override;

  void forward(const Node& node, const ForwardArgs& args) override;
  void backward(const Node& node, const BackwardArgs& args) override;
};

}  // namespace ddpm
