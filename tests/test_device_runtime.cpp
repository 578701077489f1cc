// Devices by name (engine/device_runtime.h): what each name gives on this
// machine, and that "cuda" where CUDA cannot start is an error with the reason.
#include <gtest/gtest.h>

#include <sstream>
#include <stdexcept>

#include "engine/device_runtime.h"

namespace ddpm {
namespace {

TEST(DeviceRuntime, CpuByName) {
  std::ostringstream log;
  const DeviceRuntime r = make_device_runtime("cpu", log);
  EXPECT_EQ(r.device, Device::cpu);
  ASSERT_NE(r.backend, nullptr);
  EXPECT_EQ(r.backend->device(), Device::cpu);
  EXPECT_FALSE(r.make_training_step);  // the Trainer's CPU default
  EXPECT_EQ(log.str(), "device: cpu (requested)\n");
}

TEST(DeviceRuntime, UnknownNameIsAnError) {
  std::ostringstream log;
  try {
    make_device_runtime("tpu", log);
    FAIL() << "accepted --device tpu";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "--device 'tpu': expected auto, cpu or cuda");
  }
}

// Both outcomes are checked: on a machine with a usable GPU "cuda" and "auto"
// give the CUDA backend; elsewhere "cuda" throws with the reason and "auto"
// falls back to the CPU, saying why.
TEST(DeviceRuntime, CudaOrTheReasonItCannotStart) {
  const std::string why_not = cuda_unavailable_reason();
  std::ostringstream log;
  if (why_not.empty()) {
    const DeviceRuntime r = make_device_runtime("cuda", log);
    EXPECT_EQ(r.device, Device::cuda);
    EXPECT_EQ(r.backend->device(), Device::cuda);
    EXPECT_TRUE(r.make_training_step);
    EXPECT_EQ(make_device_runtime("auto", log).device, Device::cuda);
    return;
  }
  try {
    make_device_runtime("cuda", log);
    FAIL() << "--device cuda ran without CUDA";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "--device cuda: CUDA cannot start: " + why_not);
  }
  std::ostringstream auto_log;
  const DeviceRuntime r = make_device_runtime("auto", auto_log);
  EXPECT_EQ(r.device, Device::cpu);
  EXPECT_EQ(auto_log.str(), "device: cpu (auto: " + why_not + ")\n");
}

}  // namespace
}  // namespace ddpm
