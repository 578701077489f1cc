// Implemented in a later change; see optimizer.cuh for the contract.
#include "kernels/optimizer.cuh"
