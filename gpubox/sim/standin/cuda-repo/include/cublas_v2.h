/* gpubox stand-in: the cuBLAS declarations the stand-in gpu-burn uses (the stand-in
 * libcublas-dev package's header; not NVIDIA's cublas_v2.h). */
#ifndef GPUBOX_STANDIN_CUBLAS_V2_H
#define GPUBOX_STANDIN_CUBLAS_V2_H
#ifdef __cplusplus
extern "C" {
#endif
typedef int cublasStatus_t;
typedef void *cublasHandle_t;
enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_NOT_INITIALIZED = 1 };
cublasStatus_t cublasCreate_v2(cublasHandle_t *handle);
cublasStatus_t cublasDestroy_v2(cublasHandle_t handle);
cublasStatus_t cublasGetVersion_v2(cublasHandle_t handle, int *version);
#define cublasCreate cublasCreate_v2
#define cublasDestroy cublasDestroy_v2
#define cublasGetVersion cublasGetVersion_v2
#ifdef __cplusplus
}
#endif
#endif
