#include <cstring>

#include "dispatch/dispatch_test_util.h"
#include "moekit/cpu.h"

namespace moekit::test {
namespace {

HostTensor random_map(std::mt19937_64& rng, int64_t dst_rows, int64_t src_rows, bool with_invalid) {
  HostTensor map(DType::kInt32, {dst_rows});
  for (int64_t r = 0; r < dst_rows; ++r) {
    int64_t v = src_rows ? std::uniform_int_distribution<int64_t>(0, src_rows - 1)(rng) : -1;
    if (with_invalid && r % 7 == 3) v = (r % 2) ? -1 : src_rows + r;
    map.set(r, static_cast<double>(v));
  }
  return map;
}

TEST(ShuffleRowsReference, HandComputed) {
  HostTensor in(DType::kFloat32, {3, 2});
  for (int i = 0; i < 6; ++i) in.set(i, i + 1);
  HostTensor map(DType::kInt32, {4});
  const int v[] = {2, 0, -1, 2};
  for (int i = 0; i < 4; ++i) map.set(i, v[i]);
  HostTensor out(DType::kFloat32, {4, 2});
  out.poison();
  reference::shuffle_rows(in.view(), map.view(), out.view());
  const double want[] = {5, 6, 1, 2, 0, 0, 5, 6};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(out.get(i), want[i]) << i;
}

class ShuffleRowsCpu : public ::testing::TestWithParam<std::tuple<DType, int64_t, int64_t>> {};

TEST_P(ShuffleRowsCpu, CopiesEveryByte) {
  auto [dtype, dst_rows, cols] = GetParam();
  auto rng = fresh_rng();
  const int64_t src_rows = dst_rows / 2 + 3;
  HostTensor in(DType::kUInt8, {src_rows, cols * static_cast<int64_t>(dtype_size(dtype))});
  in.fill_int(rng, 0, 255);  // random bytes, NaN patterns included
  TensorView in_view(in.data(), dtype, {src_rows, cols});
  HostTensor map = random_map(rng, dst_rows, src_rows, dst_rows > 5);
  HostTensor expected(DType::kUInt8, {dst_rows, in.shape()[1]}), got(expected);
  expected.poison();
  got.poison();
  reference::shuffle_rows(in_view, map.view(), TensorView(expected.data(), dtype, {dst_rows, cols}));
  shuffle_rows(in_view, map.view(), TensorView(got.data(), dtype, {dst_rows, cols}));
  EXPECT_TRUE(got.bytes_equal(expected));
}

INSTANTIATE_TEST_SUITE_P(
    Grid, ShuffleRowsCpu,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16,
                                         DType::kFloat8E4M3, DType::kUInt8),
                       ::testing::Values<int64_t>(0, 1, 64, 128, 1021),
                       ::testing::Values<int64_t>(1, 3, 56, 256, 4097)));

// Copies past 32 MiB with 16-byte multiple rows stream (next row's source prefetched, destination
// around the cache): whole 64-byte lines, and rows with a 16-byte tail.
INSTANTIATE_TEST_SUITE_P(Streamed, ShuffleRowsCpu,
                         ::testing::Values(std::make_tuple(DType::kFloat32, int64_t{2053}, int64_t{4096}),
                                           std::make_tuple(DType::kBFloat16, int64_t{2100}, int64_t{4104})));

// The AVX2 streamed path wants a 32-byte aligned output (HostTensor data is only 16-byte aligned):
// an odd row count (the last row alone), a 32-byte tail after the 64-byte lines, -1 rows; every ISA.
TEST(ShuffleRowsStreamed, AlignedOutputOnEveryIsa) {
  auto rng = fresh_rng();
  for (auto [dst_rows, row_bytes] : {std::pair<int64_t, int64_t>{2053, 16384}, {2100, 8224}}) {
    const int64_t src_rows = dst_rows / 2 + 3;
    HostTensor in(DType::kUInt8, {src_rows, row_bytes});
    in.fill_int(rng, 0, 255);
    HostTensor map = random_map(rng, dst_rows, src_rows, true);
    HostTensor expected(DType::kUInt8, {dst_rows, row_bytes});
    expected.poison();
    reference::shuffle_rows(in.view(), map.view(), expected.view());
    HostTensor storage(DType::kUInt8, {dst_rows * row_bytes + 32});
    auto* out = reinterpret_cast<unsigned char*>(
        (reinterpret_cast<uintptr_t>(storage.data()) + 31) & ~uintptr_t{31});
    for (CpuIsa isa : supported_cpu_isas()) {
      set_cpu_isa(isa);
      std::memset(out, 0x7f, static_cast<size_t>(dst_rows * row_bytes));
      shuffle_rows(in.view(), map.view(), TensorView(out, DType::kUInt8, {dst_rows, row_bytes}, Device{}));
      EXPECT_EQ(std::memcmp(out, expected.data(), static_cast<size_t>(dst_rows * row_bytes)), 0)
          << cpu_isa_name(isa) << " rows " << dst_rows << " x " << row_bytes;
    }
    set_cpu_isa(best_cpu_isa());
  }
}

TEST(ShuffleRowsErrors, NameTheArgument) {
  HostTensor in(DType::kBFloat16, {4, 8}), map(DType::kInt32, {3}), out(DType::kBFloat16, {3, 8});
  HostTensor bad_dtype(DType::kFloat16, {3, 8}), bad_shape(DType::kBFloat16, {3, 9}),
      map64(DType::kInt64, {3});
  EXPECT_MOEKIT_ERROR(shuffle_rows(in.view(), map.view(), bad_dtype.view()),
                      "output: expected the dtype of input");
  EXPECT_MOEKIT_ERROR(shuffle_rows(in.view(), map.view(), bad_shape.view()),
                      "output: expected shape [3, 8], got [3, 9]");
  EXPECT_MOEKIT_ERROR(shuffle_rows(in.view(), map64.view(), out.view()),
                      "dst2src_map: expected int32, got int64");
}

}  // namespace
}  // namespace moekit::test
