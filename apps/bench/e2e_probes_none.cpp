// DeviceProbes of builds without CUDA (e2e_bench.h): the CPU has nothing to
// count, so every probe is empty.
#include "apps/bench/e2e_bench.h"

namespace ddpm::bench {

DeviceProbes device_probes() {
  return {};
}

}  // namespace ddpm::bench
