/* gpubox stand-in: the CUDA runtime declarations the stand-in tools use (the stand-in
 * cuda-cudart-dev package's header; not NVIDIA's cuda_runtime.h). CUDA's function qualifiers
 * expand to nothing: the stand-in nvcc compiles host C++ only. */
#ifndef GPUBOX_STANDIN_CUDA_RUNTIME_H
#define GPUBOX_STANDIN_CUDA_RUNTIME_H
#include <stddef.h>
#define CUDART_VERSION @CUDA_VERSION_CODE@
#define __global__
#define __device__
#define __host__
#define __shared__
#ifdef __cplusplus
extern "C" {
#endif
typedef enum cudaError { cudaSuccess = 0, cudaErrorNoDevice = 100 } cudaError_t;
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaMalloc(void **ptr, size_t size);
cudaError_t cudaMallocHost(void **ptr, size_t size);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaFreeHost(void *ptr);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaDeviceCanAccessPeer(int *can, int device, int peer);
cudaError_t cudaRuntimeGetVersion(int *version);
cudaError_t cudaDriverGetVersion(int *version);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorName(cudaError_t error);
const char *cudaGetErrorString(cudaError_t error);
#ifdef __cplusplus
}
#endif
#endif
