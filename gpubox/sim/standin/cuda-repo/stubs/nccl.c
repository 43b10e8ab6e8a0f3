/* gpubox stand-in for NCCL (libnccl.so.2): it reports its version (NCCL_VERSION_CODE, e.g.
 * 22602 for 2.26.2) and sets up nothing: without a GPU every communicator call fails with
 * ncclUnhandledCudaError (1). No C library. */
typedef int ncclResult_t;
#define ncclSuccess 0
#define ncclUnhandledCudaError 1

#ifndef STANDIN_NCCL_VERSION_CODE
#define STANDIN_NCCL_VERSION_CODE 22602
#endif

ncclResult_t ncclGetVersion(int *version) {
  if (version) *version = STANDIN_NCCL_VERSION_CODE;
  return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(void *id) { (void)id; return ncclUnhandledCudaError; }

ncclResult_t ncclCommInitAll(void **comms, int ndev, const int *devlist) {
  (void)comms; (void)ndev; (void)devlist;
  return ncclUnhandledCudaError;
}

const char *ncclGetErrorString(ncclResult_t result) {
  return result == ncclSuccess ? "no error" : "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
}
