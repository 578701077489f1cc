// Implemented in a later change; see diffusion.cuh for the contract.
#include "kernels/diffusion.cuh"
