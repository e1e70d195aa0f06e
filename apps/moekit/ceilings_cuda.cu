// GPU ceilings (device 0): device-to-device copy bandwidth and the cuBLAS bf16 matmul peak.
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <vector>

#include "bench_backend.h"
#include "ceilings.h"
#include "common/cuda_check.h"
#include "device_buffer.h"

namespace moekit::bench {

namespace {

#define MOEKIT_CUBLAS_CHECK(expr)                                                                 \
  do {                                                                                            \
    cublasStatus_t moekit_status_ = (expr);                                                       \
    if (moekit_status_ != CUBLAS_STATUS_SUCCESS)                                                  \
      ::moekit::detail::fail(::moekit::detail::cat(#expr, " failed: cuBLAS status ",              \
                                                   static_cast<int>(moekit_status_)),             \
                             ::moekit::ErrorKind::Runtime);                                       \
  } while (0)

// Uniform(-1, 1) bf16 from a hash of the index: a matmul on zeros runs faster than on real data.
__global__ void fill_random_bf16(__nv_bfloat16* out, size_t n, unsigned seed) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x) {
    unsigned x = static_cast<unsigned>(i) * 0x9e3779b9u ^ seed;
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    out[i] = __float2bfloat16(static_cast<float>(x) * (2.0f / 4294967296.0f) - 1.0f);
  }
}

// Median seconds of `repeat` event-timed calls of `work` after `warmup` untimed ones.
template <typename Work>
double median_seconds(cudaStream_t stream, int warmup, int repeat, const Work& work) {
  for (int i = 0; i < warmup; ++i) work();
  std::vector<cudaEvent_t> events(2 * repeat);
  for (cudaEvent_t& e : events) MOEKIT_CUDA_CHECK(cudaEventCreate(&e));
  for (int i = 0; i < repeat; ++i) {
    MOEKIT_CUDA_CHECK(cudaEventRecord(events[2 * i], stream));
    work();
    MOEKIT_CUDA_CHECK(cudaEventRecord(events[2 * i + 1], stream));
  }
  MOEKIT_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<double> seconds;
  for (int i = 0; i < repeat; ++i) {
    float ms = 0;
    MOEKIT_CUDA_CHECK(cudaEventElapsedTime(&ms, events[2 * i], events[2 * i + 1]));
    seconds.push_back(ms * 1e-3);
  }
  for (cudaEvent_t e : events) cudaEventDestroy(e);
  return summarize(std::move(seconds)).median_s;
}

}  // namespace

GpuCeilings measure_gpu_ceilings() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    cudaGetLastError();
    detail::fail("GPU ceilings: no CUDA device found", ErrorKind::NotSupported);
  }
  MOEKIT_CUDA_CHECK(cudaSetDevice(0));
  cudaDeviceProp prop{};
  MOEKIT_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  GpuCeilings c;
  c.device = prop.name;

  cudaStream_t stream;
  MOEKIT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  {
    constexpr size_t kCopyBytes = size_t{1} << 30;
    DeviceBuffer src(kCopyBytes), dst(kCopyBytes);
    MOEKIT_CUDA_CHECK(cudaMemsetAsync(src.data(), 1, kCopyBytes, stream));
    double s = median_seconds(stream, 2, 10, [&] {
      MOEKIT_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), kCopyBytes, cudaMemcpyDeviceToDevice, stream));
    });
    c.copy_bytes_per_s = 2.0 * static_cast<double>(kCopyBytes) / s;
  }
  {
    constexpr int kN = 8192;
    const size_t elems = size_t{kN} * kN;
    DeviceBuffer a(elems * 2), b(elems * 2), out(elems * 2);
    fill_random_bf16<<<1024, 256, 0, stream>>>(static_cast<__nv_bfloat16*>(a.data()), elems, 1u);
    fill_random_bf16<<<1024, 256, 0, stream>>>(static_cast<__nv_bfloat16*>(b.data()), elems, 2u);
    MOEKIT_CUDA_CHECK_LAUNCH();
    cublasHandle_t handle;
    MOEKIT_CUBLAS_CHECK(cublasCreate(&handle));
    try {
      MOEKIT_CUBLAS_CHECK(cublasSetStream(handle, stream));
      const float alpha = 1.f, beta = 0.f;
      double s = median_seconds(stream, 3, 10, [&] {
        MOEKIT_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, kN, kN, kN, &alpha, a.data(),
                                         CUDA_R_16BF, kN, b.data(), CUDA_R_16BF, kN, &beta, out.data(),
                                         CUDA_R_16BF, kN, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      });
      c.bf16_flops = 2.0 * kN * double{kN} * kN / s;
    } catch (...) {
      cublasDestroy(handle);
      throw;
    }
    cublasDestroy(handle);
  }
  cudaStreamDestroy(stream);
  return c;
}

std::vector<std::string> gpu_info_lines() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    cudaGetLastError();
    return {"none (no CUDA device visible)"};
  }
  std::vector<std::string> lines;
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, d) != cudaSuccess) continue;
    lines.push_back(detail::cat(d, ": ", p.name, ", sm_", p.major, p.minor, ", ",
                                p.multiProcessorCount, " SMs, ", p.totalGlobalMem >> 20, " MiB, L2 ",
                                p.l2CacheSize >> 20, " MiB"));
  }
  return lines;
}

}  // namespace moekit::bench
