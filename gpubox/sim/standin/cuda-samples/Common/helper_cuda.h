// gpubox stand-in for cuda-samples' Common/helper_cuda.h: checkCudaErrors() as the samples use
// it (prints the CUDA error and exits with EXIT_FAILURE).
#ifndef GPUBOX_STANDIN_HELPER_CUDA_H
#define GPUBOX_STANDIN_HELPER_CUDA_H
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

#define checkCudaErrors(call) gpuboxCheck((call), #call, __FILE__, __LINE__)

inline void gpuboxCheck(cudaError_t result, const char *call, const char *file, int line) {
  if (result != cudaSuccess) {
    std::fprintf(stderr, "CUDA error at %s:%d code=%d(%s) \"%s\" \n", file, line,
                 static_cast<int>(result), cudaGetErrorName(result), call);
    std::exit(EXIT_FAILURE);
  }
}
#endif
