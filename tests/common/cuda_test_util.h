// Device-side test helpers for *_test.cu files: a device copy of a HostTensor and back.
#pragma once

#include <cuda_runtime.h>

#include "common/test_util.h"

namespace moekit::test {

#define MOEKIT_REQUIRE_GPU()                                           \
  do {                                                                 \
    if (!::moekit::test::cuda_device_present()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

class DeviceTensor {
 public:
  DeviceTensor() = default;
  explicit DeviceTensor(const HostTensor& host) : host_shape_(host.shape()), dtype_(host.dtype()) {
    bytes_ = host.nbytes();
    if (bytes_) {
      EXPECT_EQ(cudaMalloc(&data_, bytes_), cudaSuccess);
      upload(host);
    }
  }
  // Uninitialised device memory of that shape with every byte set to `fill_byte` (no host copy:
  // for tensors too large to stage on the host).
  DeviceTensor(DType dtype, std::vector<int64_t> shape, int fill_byte) : host_shape_(std::move(shape)), dtype_(dtype) {
    bytes_ = dtype_size(dtype);
    for (int64_t d : host_shape_) bytes_ *= static_cast<size_t>(d);
    if (bytes_) {
      EXPECT_EQ(cudaMalloc(&data_, bytes_), cudaSuccess);
      EXPECT_EQ(cudaMemset(data_, fill_byte, bytes_), cudaSuccess);
      settle();
    }
  }
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;
  DeviceTensor(DeviceTensor&& o) noexcept { *this = std::move(o); }
  DeviceTensor& operator=(DeviceTensor&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(bytes_, o.bytes_);
    host_shape_ = o.host_shape_;
    dtype_ = o.dtype_;
    return *this;
  }
  ~DeviceTensor() {
    if (data_) cudaFree(data_);
  }

  TensorView view() const {
    return TensorView(data_, dtype_, static_cast<int>(host_shape_.size()), host_shape_.data(), nullptr,
                      Device{DeviceKind::kCUDA, 0});
  }
  HostTensor to_host() const {
    HostTensor h(dtype_, host_shape_);
    if (bytes_) EXPECT_EQ(cudaMemcpy(h.data(), data_, bytes_, cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
  void* data() const { return data_; }
  // Overwrites the device copy with `host` (same byte count) and waits until it has landed.
  void upload(const HostTensor& host) {
    EXPECT_EQ(host.nbytes(), bytes_);
    EXPECT_EQ(cudaMemcpy(data_, host.data(), bytes_, cudaMemcpyHostToDevice), cudaSuccess);
    settle();
  }

 private:
  // A pageable cudaMemcpy may return before its DMA lands, and a memset is queued on the legacy
  // stream: a test's non-blocking stream waits for neither. Without this wait, poison could land
  // on a workspace after the op's prep kernel wrote its offsets (H100 2026-11-26 12:23: error 717
  // in GpuInterleavedW13, sticky for the rest of the shard).
  static void settle() { EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess); }

  void* data_ = nullptr;
  size_t bytes_ = 0;
  std::vector<int64_t> host_shape_;
  DType dtype_ = DType::kFloat32;
};

// Fills n bf16 values at `data` (device memory) from a hash of each element's index, in [-1, 1),
// and waits: inputs of several GB without a host copy.
void fill_hashed_bf16(void* data, int64_t n);

}  // namespace moekit::test
