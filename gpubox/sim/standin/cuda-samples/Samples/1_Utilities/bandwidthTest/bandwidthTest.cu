// gpubox stand-in for cuda-samples' bandwidthTest: it starts like the real one and, without a
// CUDA device (a simulated node), stops the way the real one does. It measures nothing.
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

#include "helper_cuda.h"

int main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  std::printf("[CUDA Bandwidth Test] - Starting...\n");
  std::printf("Running on...\n\n");
  int count = 0;
  cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    std::printf("cudaGetDeviceCount returned %d\n-> %s\n", static_cast<int>(error),
                cudaGetErrorString(error));
    std::printf("CUDA error at bandwidthTest.cu (gpubox stand-in)\n");
    return EXIT_FAILURE;
  }
  checkCudaErrors(cudaSetDevice(0));
  std::printf("gpubox stand-in for bandwidthTest: no measurement\n");
  return EXIT_FAILURE;
}
