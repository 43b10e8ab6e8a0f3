/* gpubox stand-in for the CUDA runtime (libcudart.so.12 and libcudart_static.a): every device
 * query answers cudaErrorNoDevice (100), as the real runtime does without a GPU. No C library. */
typedef int cudaError_t;
#define cudaSuccess 0
#define cudaErrorNoDevice 100

#ifndef STANDIN_CUDART_VERSION
#define STANDIN_CUDART_VERSION 12080
#endif

static cudaError_t last_error = cudaSuccess;

static cudaError_t fail(void) { last_error = cudaErrorNoDevice; return cudaErrorNoDevice; }

cudaError_t cudaGetDeviceCount(int *count) { if (count) *count = 0; return fail(); }
cudaError_t cudaSetDevice(int device) { (void)device; return fail(); }
cudaError_t cudaGetDevice(int *device) { (void)device; return fail(); }
cudaError_t cudaMalloc(void **ptr, unsigned long size) { (void)ptr; (void)size; return fail(); }
cudaError_t cudaMallocHost(void **ptr, unsigned long size) { (void)ptr; (void)size; return fail(); }
cudaError_t cudaFree(void *ptr) { (void)ptr; return fail(); }
cudaError_t cudaFreeHost(void *ptr) { (void)ptr; return fail(); }
cudaError_t cudaDeviceSynchronize(void) { return fail(); }
cudaError_t cudaDeviceCanAccessPeer(int *can, int device, int peer) {
  (void)device; (void)peer;
  if (can) *can = 0;
  return fail();
}

cudaError_t cudaRuntimeGetVersion(int *version) {
  if (version) *version = STANDIN_CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *version) {
  if (version) *version = 0; /* "no driver installed", as the real runtime reports then */
  return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
  cudaError_t error = last_error;
  last_error = cudaSuccess;
  return error;
}

cudaError_t cudaPeekAtLastError(void) { return last_error; }

const char *cudaGetErrorName(cudaError_t error) {
  return error == cudaSuccess ? "cudaSuccess"
       : error == cudaErrorNoDevice ? "cudaErrorNoDevice" : "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t error) {
  return error == cudaSuccess ? "no error"
       : error == cudaErrorNoDevice ? "no CUDA-capable device is detected" : "unknown error";
}
