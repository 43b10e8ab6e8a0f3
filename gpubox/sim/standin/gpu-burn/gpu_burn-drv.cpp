// gpubox stand-in for gpu-burn's driver program: it parses no load, starts CUDA like gpu-burn
// and, without a GPU (a simulated node), stops the way gpu-burn does when CUDA cannot start.
#include <cstdio>
#include <cuda.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

int main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  std::printf("gpubox stand-in for gpu-burn (IS_JETSON=%s)\n", IS_JETSON ? "true" : "false");
  CUresult result = cuInit(0);
  if (result != CUDA_SUCCESS) {
    const char *text = "unknown";
    cuGetErrorString(result, &text);
    std::fprintf(stderr, "Couldn't init CUDA: %s\n", text);
    return 1;
  }
  cublasHandle_t handle;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "Couldn't create a cuBLAS handle\n");
    return 1;
  }
  return 0;
}
