/* gpubox stand-in for cuBLAS (libcublas.so.12): without a GPU, cublasCreate fails with
 * CUBLAS_STATUS_NOT_INITIALIZED (1). No C library. */
typedef int cublasStatus_t;
#define CUBLAS_STATUS_SUCCESS 0
#define CUBLAS_STATUS_NOT_INITIALIZED 1

#ifndef STANDIN_CUBLAS_VERSION
#define STANDIN_CUBLAS_VERSION 120804
#endif

cublasStatus_t cublasCreate_v2(void **handle) {
  if (handle) *handle = 0;
  return CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t cublasDestroy_v2(void *handle) { (void)handle; return CUBLAS_STATUS_NOT_INITIALIZED; }

cublasStatus_t cublasGetVersion_v2(void *handle, int *version) {
  (void)handle;
  if (version) *version = STANDIN_CUBLAS_VERSION;
  return CUBLAS_STATUS_SUCCESS;
}
