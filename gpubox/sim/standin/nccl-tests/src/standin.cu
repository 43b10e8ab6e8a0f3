// gpubox stand-in for an nccl-tests binary: it links NCCL and the CUDA runtime like the real
// tests, prints a header, and exits with CUDA's error when there is no GPU (as in a simulated
// node). It measures nothing.
#include <cstdio>
#include <cuda_runtime.h>
#include <nccl.h>
#ifdef MPI_SUPPORT
#include <mpi.h>
#endif

int main() {
  int version = 0;
  ncclGetVersion(&version);
  std::printf("# gpubox stand-in for nccl-tests %s_perf (not the real benchmark)\n", COLLECTIVE);
  std::printf("# NCCL version %d\n", version);
#ifdef MPI_SUPPORT
  char mpi[MPI_MAX_LIBRARY_VERSION_STRING];
  int length = 0;
  MPI_Get_library_version(mpi, &length);  // callable before MPI_Init (MPI-3)
  int line = 0;
  while (line < length && mpi[line] != '\n' && mpi[line] != ',') line++;
  std::printf("# built with MPI: %.*s\n", line, mpi);
#endif
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    std::printf("stand-in: Test CUDA failure '%s'\n", cudaGetErrorString(err));
    return 2;
  }
  std::printf("# %d CUDA device(s); a stand-in runs no collective\n", count);
  return 0;
}
