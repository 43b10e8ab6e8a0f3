// gpubox stand-in for gpu-burn's compare kernel: the stand-in nvcc makes a placeholder
// compare.ptx from it (there is no device code in a simulated node).
#include <cuda_runtime.h>

extern "C" __global__ void compare(float *c, int *faulty, size_t iters) {
  (void)c;
  (void)faulty;
  (void)iters;
}
