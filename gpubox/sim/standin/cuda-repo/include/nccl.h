/* gpubox stand-in: the NCCL declarations the stand-in nccl-tests uses (the stand-in
 * libnccl-dev package's header; not NVIDIA's nccl.h). */
#ifndef GPUBOX_STANDIN_NCCL_H
#define GPUBOX_STANDIN_NCCL_H
#define NCCL_MAJOR @NCCL_MAJOR@
#define NCCL_MINOR @NCCL_MINOR@
#define NCCL_PATCH @NCCL_PATCH@
#define NCCL_VERSION_CODE (NCCL_MAJOR * 10000 + NCCL_MINOR * 100 + NCCL_PATCH)
#ifdef __cplusplus
extern "C" {
#endif
typedef enum { ncclSuccess = 0, ncclUnhandledCudaError = 1 } ncclResult_t;
ncclResult_t ncclGetVersion(int *version);
const char *ncclGetErrorString(ncclResult_t result);
#ifdef __cplusplus
}
#endif
#endif
