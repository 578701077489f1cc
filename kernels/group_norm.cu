// Implemented in a later change; see group_norm.cuh for the contract.
#include "kernels/group_norm.cuh"
