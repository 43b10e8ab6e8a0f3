// gpubox stand-in for cuda-samples' p2pBandwidthLatencyTest: it starts like the real one and,
// without a CUDA device (a simulated node), stops the way the real one does. It measures nothing.
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

#include "helper_cuda.h"

int main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  std::printf("[P2P (Peer-to-Peer) GPU Bandwidth Latency Test]\n");
  int count = 0;
  checkCudaErrors(cudaGetDeviceCount(&count));
  std::printf("gpubox stand-in for p2pBandwidthLatencyTest: %d device(s), no measurement\n", count);
  return EXIT_FAILURE;
}
