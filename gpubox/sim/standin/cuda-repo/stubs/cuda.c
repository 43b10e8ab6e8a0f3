/* gpubox stand-in for the CUDA driver API (libcuda.so.1): no GPU, so cuInit fails with
 * CUDA_ERROR_NO_DEVICE (100) as the real library does on a node without one. No C library is
 * used, so the object loads on any x86-64 Linux whatever its glibc. */
typedef int CUresult;
#define CUDA_SUCCESS 0
#define CUDA_ERROR_NOT_INITIALIZED 3
#define CUDA_ERROR_NO_DEVICE 100

#ifndef STANDIN_CUDA_VERSION
#define STANDIN_CUDA_VERSION 12080
#endif

CUresult cuInit(unsigned int flags) { (void)flags; return CUDA_ERROR_NO_DEVICE; }

CUresult cuDriverGetVersion(int *version) {
  if (version) *version = STANDIN_CUDA_VERSION;
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetCount(int *count) {
  if (count) *count = 0;
  return CUDA_ERROR_NOT_INITIALIZED;
}

CUresult cuDeviceGet(int *device, int ordinal) {
  (void)device; (void)ordinal;
  return CUDA_ERROR_NOT_INITIALIZED;
}

CUresult cuGetErrorName(CUresult error, const char **name) {
  if (!name) return 1;
  *name = error == CUDA_SUCCESS ? "CUDA_SUCCESS"
        : error == CUDA_ERROR_NO_DEVICE ? "CUDA_ERROR_NO_DEVICE"
        : error == CUDA_ERROR_NOT_INITIALIZED ? "CUDA_ERROR_NOT_INITIALIZED" : "CUDA_ERROR_UNKNOWN";
  return CUDA_SUCCESS;
}

CUresult cuGetErrorString(CUresult error, const char **text) {
  if (!text) return 1;
  *text = error == CUDA_SUCCESS ? "no error"
        : error == CUDA_ERROR_NO_DEVICE ? "no CUDA-capable device is detected"
        : error == CUDA_ERROR_NOT_INITIALIZED ? "initialization error" : "unknown error";
  return CUDA_SUCCESS;
}
