// Test helpers: owning host tensors, fresh random data, poisoning, value access by dtype and the
// comparison metrics used across the suite.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "moekit/tensor.h"

namespace moekit::test {

// A fresh generator per call, seeded from std::random_device (or MOEKIT_TEST_SEED when set);
// the seed is recorded in the test's XML properties and printed on failure through SCOPED_TRACE.
std::mt19937_64 fresh_rng(uint64_t* seed_out = nullptr);

// One expert id a token for a layer of sum(rows) tokens: expert e on exactly rows[e] of them, in
// shuffled token order (routing with chosen per-expert counts).
std::vector<int> shuffled_expert_of(const std::vector<int64_t>& rows, std::mt19937_64& rng);

class HostTensor {
 public:
  HostTensor() = default;
  HostTensor(DType dtype, std::vector<int64_t> shape);

  TensorView view() const;
  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t numel() const;
  size_t nbytes() const { return bytes_.size(); }
  void* data() { return bytes_.data(); }
  const void* data() const { return bytes_.data(); }
  template <typename T>
  T* ptr() { return reinterpret_cast<T*>(bytes_.data()); }
  template <typename T>
  const T* ptr() const { return reinterpret_cast<const T*>(bytes_.data()); }

  // Element i as double (floats decoded from their storage format; ints converted).
  double get(int64_t i) const;
  // Stores v rounded to the dtype (RNE for floats, truncation toward zero for ints).
  void set(int64_t i, double v);

  void fill_normal(std::mt19937_64& rng, double mean = 0.0, double stddev = 1.0);
  void fill_uniform(std::mt19937_64& rng, double lo, double hi);
  void fill_int(std::mt19937_64& rng, int64_t lo, int64_t hi);  // inclusive
  void fill(double v);
  // Poison: NaN for floats, 0x7F7F7F7F-style bytes for ints (0x7F per byte).
  void poison();
  bool bytes_equal(const HostTensor& other) const;

 private:
  DType dtype_ = DType::kFloat32;
  std::vector<int64_t> shape_;
  std::vector<unsigned char> bytes_;
};

// 1 - 2*sum(xy) / (sum(x^2) + sum(y^2)) in fp64 (DeepGEMM's calc_diff).
double calc_diff(const HostTensor& a, const HostTensor& b);
// ||a - b||_F / ||b||_F.
double rel_frobenius(const HostTensor& a, const HostTensor& b);
// Index of the first element with |a - b| > atol + rtol * |b| (NaN must match NaN), or -1.
int64_t first_mismatch(const HostTensor& a, const HostTensor& b, double atol, double rtol);
std::string describe_mismatch(const HostTensor& a, const HostTensor& b, int64_t index);

// Element-wise |a - b| <= atol + rtol * |b| (NaN only where NaN, inf only where the same inf).
::testing::AssertionResult AllClose(const HostTensor& actual, const HostTensor& expected, double atol,
                                    double rtol);
#define EXPECT_ALLCLOSE(actual, expected, atol, rtol) \
  EXPECT_TRUE(::moekit::test::AllClose((actual), (expected), (atol), (rtol)))

// EXPECT that `fn` throws moekit::Error whose message contains `fragment`.
#define EXPECT_MOEKIT_ERROR(statement, fragment)                                          \
  do {                                                                                    \
    bool mk_thrown_ = false;                                                              \
    try {                                                                                 \
      statement;                                                                          \
    } catch (const ::moekit::Error& e) {                                                  \
      mk_thrown_ = true;                                                                  \
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)                  \
          << "message: " << e.what() << "\nexpected to contain: " << (fragment);          \
    }                                                                                     \
    EXPECT_TRUE(mk_thrown_) << "expected moekit::Error containing '" << (fragment) << "'"; \
  } while (0)

bool cuda_device_present();

}  // namespace moekit::test
