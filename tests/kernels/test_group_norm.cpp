// Kernel tests of group_norm.cuh against the CPU backend (see kernel_test_util.h).
#include "tests/kernels/kernel_test_util.h"
