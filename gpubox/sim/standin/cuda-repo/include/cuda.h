/* gpubox stand-in: the few CUDA driver API declarations the stand-in tools use (the stand-in
 * cuda-driver-dev package's header; not NVIDIA's cuda.h). */
#ifndef GPUBOX_STANDIN_CUDA_H
#define GPUBOX_STANDIN_CUDA_H
#define CUDA_VERSION @CUDA_VERSION_CODE@
#ifdef __cplusplus
extern "C" {
#endif
typedef int CUresult;
typedef int CUdevice;
enum { CUDA_SUCCESS = 0, CUDA_ERROR_NOT_INITIALIZED = 3, CUDA_ERROR_NO_DEVICE = 100 };
CUresult cuInit(unsigned int flags);
CUresult cuDriverGetVersion(int *version);
CUresult cuDeviceGetCount(int *count);
CUresult cuDeviceGet(CUdevice *device, int ordinal);
CUresult cuGetErrorName(CUresult error, const char **name);
CUresult cuGetErrorString(CUresult error, const char **text);
#ifdef __cplusplus
}
#endif
#endif
