// Kernel tests of diffusion.cuh against the CPU backend (see kernel_test_util.h).
#include "tests/kernels/kernel_test_util.h"
