// Device-side test helpers that need a kernel (declared in cuda_test_util.h).
#include <cuda_bf16.h>

#include "common/cuda_test_util.h"

namespace moekit::test {
namespace {

__global__ void fill_hashed_bf16_kernel(__nv_bfloat16* p, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ uint32_t(i >> 32) * 40503u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    p[i] = __float2bfloat16(float(h & 0xffffu) / 32768.f - 1.f);
  }
}

}  // namespace

void fill_hashed_bf16(void* data, int64_t n) {
  fill_hashed_bf16_kernel<<<1024, 256>>>(static_cast<__nv_bfloat16*>(data), n);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace moekit::test
