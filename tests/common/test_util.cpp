#include "common/test_util.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>

#include "common/numeric.h"

#if defined(MOEKIT_WITH_CUDA)
#include <cuda_runtime.h>
#endif

namespace moekit::test {

std::mt19937_64 fresh_rng(uint64_t* seed_out) {
  uint64_t seed;
  if (const char* env = std::getenv("MOEKIT_TEST_SEED")) {
    seed = std::strtoull(env, nullptr, 10);
  } else {
    std::random_device rd;
    seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
  if (seed_out) *seed_out = seed;
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  return std::mt19937_64(seed);
}

std::vector<int> shuffled_expert_of(const std::vector<int64_t>& rows, std::mt19937_64& rng) {
  std::vector<int> expert_of;
  for (size_t e = 0; e < rows.size(); ++e) expert_of.insert(expert_of.end(), size_t(rows[e]), int(e));
  std::shuffle(expert_of.begin(), expert_of.end(), rng);
  return expert_of;
}

HostTensor::HostTensor(DType dtype, std::vector<int64_t> shape) : dtype_(dtype), shape_(std::move(shape)) {
  bytes_.assign(static_cast<size_t>(numel()) * dtype_size(dtype_), 0);
}

int64_t HostTensor::numel() const {
  int64_t n = 1;
  for (int64_t s : shape_) n *= s;
  return n;
}

TensorView HostTensor::view() const {
  return TensorView(const_cast<unsigned char*>(bytes_.data()), dtype_, static_cast<int>(shape_.size()),
                    shape_.data(), nullptr);
}

double HostTensor::get(int64_t i) const {
  const unsigned char* p = bytes_.data();
  switch (dtype_) {
    case DType::kFloat32: return reinterpret_cast<const float*>(p)[i];
    case DType::kFloat64: return reinterpret_cast<const double*>(p)[i];
    case DType::kFloat16: return numeric::half_to_float(reinterpret_cast<const uint16_t*>(p)[i]);
    case DType::kBFloat16: return numeric::bf16_to_float(reinterpret_cast<const uint16_t*>(p)[i]);
    case DType::kFloat8E4M3: return numeric::e4m3_to_float(p[i]);
    case DType::kFloat8E5M2: return numeric::e5m2_to_float(p[i]);
    case DType::kFloat8E8M0: return numeric::e8m0_to_float(p[i]);
    case DType::kInt8: return reinterpret_cast<const int8_t*>(p)[i];
    case DType::kUInt8: return p[i];
    case DType::kInt32: return reinterpret_cast<const int32_t*>(p)[i];
    case DType::kInt64: return static_cast<double>(reinterpret_cast<const int64_t*>(p)[i]);
  }
  return 0;
}

void HostTensor::set(int64_t i, double v) {
  unsigned char* p = bytes_.data();
  float f = static_cast<float>(v);
  switch (dtype_) {
    case DType::kFloat32: reinterpret_cast<float*>(p)[i] = f; break;
    case DType::kFloat64: reinterpret_cast<double*>(p)[i] = v; break;
    case DType::kFloat16: reinterpret_cast<uint16_t*>(p)[i] = numeric::float_to_half(f); break;
    case DType::kBFloat16: reinterpret_cast<uint16_t*>(p)[i] = numeric::float_to_bf16(f); break;
    case DType::kFloat8E4M3: p[i] = numeric::float_to_e4m3(f); break;
    case DType::kFloat8E5M2: p[i] = numeric::float_to_e5m2(f); break;
    case DType::kFloat8E8M0: p[i] = numeric::float_to_e8m0_ceil(f); break;
    case DType::kInt8: reinterpret_cast<int8_t*>(p)[i] = static_cast<int8_t>(v); break;
    case DType::kUInt8: p[i] = static_cast<uint8_t>(v); break;
    case DType::kInt32: reinterpret_cast<int32_t*>(p)[i] = static_cast<int32_t>(v); break;
    case DType::kInt64: reinterpret_cast<int64_t*>(p)[i] = static_cast<int64_t>(v); break;
  }
}

void HostTensor::fill_normal(std::mt19937_64& rng, double mean, double stddev) {
  std::normal_distribution<double> dist(mean, stddev);
  for (int64_t i = 0; i < numel(); ++i) set(i, dist(rng));
}

void HostTensor::fill_uniform(std::mt19937_64& rng, double lo, double hi) {
  std::uniform_real_distribution<double> dist(lo, hi);
  for (int64_t i = 0; i < numel(); ++i) set(i, dist(rng));
}

void HostTensor::fill_int(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  std::uniform_int_distribution<int64_t> dist(lo, hi);
  for (int64_t i = 0; i < numel(); ++i) set(i, static_cast<double>(dist(rng)));
}

void HostTensor::fill(double v) {
  for (int64_t i = 0; i < numel(); ++i) set(i, v);
}

void HostTensor::poison() {
  switch (dtype_) {
    case DType::kFloat32:
    case DType::kFloat64:
    case DType::kFloat16:
    case DType::kBFloat16:
      fill(std::numeric_limits<double>::quiet_NaN());
      break;
    default:
      std::memset(bytes_.data(), 0x7f, bytes_.size());
  }
}

bool HostTensor::bytes_equal(const HostTensor& other) const { return bytes_ == other.bytes_; }

double calc_diff(const HostTensor& a, const HostTensor& b) {
  double xy = 0, xx = 0, yy = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    double x = a.get(i), y = b.get(i);
    xy += x * y;
    xx += x * x;
    yy += y * y;
  }
  if (xx + yy == 0) return 0;
  return 1.0 - 2.0 * xy / (xx + yy);
}

double rel_frobenius(const HostTensor& a, const HostTensor& b) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    double d = a.get(i) - b.get(i);
    num += d * d;
    den += b.get(i) * b.get(i);
  }
  if (den == 0) return std::sqrt(num);
  return std::sqrt(num / den);
}

int64_t first_mismatch(const HostTensor& a, const HostTensor& b, double atol, double rtol) {
  if (a.numel() != b.numel()) return 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    double x = a.get(i), y = b.get(i);
    if (std::isnan(x) || std::isnan(y)) {
      if (std::isnan(x) != std::isnan(y)) return i;
      continue;
    }
    if (std::isinf(y) || std::isinf(x)) {
      if (x != y) return i;
      continue;
    }
    if (std::fabs(x - y) > atol + rtol * std::fabs(y)) return i;
  }
  return -1;
}

std::string describe_mismatch(const HostTensor& a, const HostTensor& b, int64_t index) {
  if (index < 0) return "";
  std::ostringstream os;
  if (a.numel() != b.numel()) {
    os << "numel differs: " << a.numel() << " vs " << b.numel();
    return os.str();
  }
  os.precision(9);
  os << "first mismatch at flat index " << index << ": got " << a.get(index) << ", expected "
     << b.get(index);
  return os.str();
}

::testing::AssertionResult AllClose(const HostTensor& actual, const HostTensor& expected, double atol,
                                    double rtol) {
  int64_t bad = first_mismatch(actual, expected, atol, rtol);
  if (bad < 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << describe_mismatch(actual, expected, bad) << " (atol " << atol
                                       << ", rtol " << rtol << ")";
}

bool cuda_device_present() {
#if defined(MOEKIT_WITH_CUDA)
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
#else
  return false;
#endif
}

}  // namespace moekit::test
