// quant.h: hand-computed codes, quantise -> dequantise error bounds per format on random data,
// non-finite groups (NaN markers stay in their group), odd sizes and argument errors.
#include <cmath>
#include <limits>

#include "common/numeric.h"
#include "common/test_util.h"
#include "moekit/quant.h"

namespace moekit::test {
namespace {

HostTensor values(DType dtype, std::vector<int64_t> shape, std::initializer_list<double> v) {
  HostTensor t(dtype, std::move(shape));
  int64_t i = 0;
  for (double x : v) t.set(i++, x);
  return t;
}

HostTensor random_input(std::vector<int64_t> shape, DType dtype = DType::kFloat32) {
  auto rng = fresh_rng();
  HostTensor t(dtype, std::move(shape));
  t.fill_normal(rng, 0.0, 2.0);
  // A few outliers and exact zeros, per row.
  const int64_t cols = t.shape().back();
  for (int64_t i = 0; i < t.numel(); i += cols + 3) t.set(i, 37.0 * (i % 2 ? 1 : -1));
  for (int64_t i = 5; i < t.numel(); i += 11) t.set(i, 0.0);
  return t;
}

TEST(QuantFp8, TokenGroupHandAndBound) {
  HostTensor x = values(DType::kBFloat16, {1, 6}, {448, -224, 1, 0, 3, -6});
  HostTensor q(DType::kFloat8E4M3, {1, 6}), s(DType::kFloat32, {1, 2}), back(DType::kFloat32, {1, 6});
  quantize_fp8_per_token_group(x.view(), q.view(), s.view(), 4);
  EXPECT_EQ(s.get(0), 1.0);               // 448 / 448
  EXPECT_EQ(s.get(1), 6.0f / 448.0f);     // last partial group [3, -6]
  EXPECT_EQ(q.get(0), 448.0);
  EXPECT_EQ(q.get(1), -224.0);
  EXPECT_EQ(q.get(4), 224.0);             // 3 / (6/448) = 224
  EXPECT_EQ(q.get(5), -448.0);
  HostTensor r = random_input({13, 300});
  HostTensor rq(DType::kFloat8E4M3, {13, 300}), rs(DType::kFloat32, {13, 3}), rb(DType::kFloat32, {13, 300});
  quantize_fp8_per_token_group(r.view(), rq.view(), rs.view(), 128);
  dequantize_fp8_per_token_group(rq.view(), rs.view(), rb.view(), 128);
  for (int64_t i = 0; i < r.numel(); ++i) {
    const double sc = rs.get((i / 300) * 3 + (i % 300) / 128);
    ASSERT_LE(std::fabs(rb.get(i) - r.get(i)), std::fabs(r.get(i)) * 0.0625 + sc * std::ldexp(1.0, -10) * 1.0001) << i;
  }
}

TEST(QuantFp8, BlockScalesPerExpertAndPartialBlocks) {
  HostTensor w = random_input({3, 37, 70});
  HostTensor q(DType::kFloat8E4M3, {3, 37, 70}), s(DType::kFloat32, {3, 3, 2}), b(DType::kFloat32, {3, 37, 70});
  quantize_fp8_block(w.view(), q.view(), s.view(), 16, 64);
  dequantize_fp8_block(q.view(), s.view(), b.view(), 16, 64);
  for (int64_t e = 0; e < 3; ++e)
    for (int64_t bi = 0; bi < 3; ++bi)
      for (int64_t bj = 0; bj < 2; ++bj) {
        double amax = 0;
        for (int64_t r = bi * 16; r < std::min<int64_t>(37, bi * 16 + 16); ++r)
          for (int64_t k = bj * 64; k < std::min<int64_t>(70, bj * 64 + 64); ++k)
            amax = std::max(amax, std::fabs(w.get((e * 37 + r) * 70 + k)));
        EXPECT_EQ(s.get((e * 3 + bi) * 2 + bj), static_cast<float>(amax) / 448.0f);
      }
  for (int64_t i = 0; i < w.numel(); ++i)
    ASSERT_LE(std::fabs(b.get(i) - w.get(i)), std::fabs(w.get(i)) * 0.0625 + 1e-3) << i;
}

TEST(QuantInt8, RowsRoundHalfEvenAndMarkers) {
  HostTensor x = values(DType::kFloat32, {4, 5},
                        {127, 0.5, 1.5, 2.5, -0.5, /**/ 0, 0, 0, 0, 0, /**/ 1, std::nan(""), 2, 3, 4,
                         /**/ -254, 127, 63.5, 1, 0});
  HostTensor q(DType::kInt8, {4, 5}), s(DType::kFloat32, {4}), b(DType::kFloat32, {4, 5});
  quantize_int8_per_row(x.view(), q.view(), s.view());
  const double want_q[4][5] = {{127, 0, 2, 2, 0}, {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}, {-127, 64, 32, 0, 0}};
  for (int r = 0; r < 4; ++r)
    for (int k = 0; k < 5; ++k) EXPECT_EQ(q.get(r * 5 + k), want_q[r][k]) << r << "," << k;
  EXPECT_EQ(s.get(0), 1.0);
  EXPECT_EQ(s.get(1), 1e-7f / 127.f);  // amax floor
  EXPECT_TRUE(std::isnan(s.get(2)));   // NaN marker
  EXPECT_EQ(s.get(3), 2.0);
  // 63.5 * (127 / 254) = 31.75 -> 32; 1 * 0.5 = 0.5 -> 0 (tie to even).
  dequantize_int8_per_row(q.view(), s.view(), b.view());
  for (int k = 0; k < 5; ++k) EXPECT_TRUE(std::isnan(b.get(10 + k)));
  HostTensor r = random_input({3, 4, 129}, DType::kBFloat16);
  HostTensor rq(DType::kInt8, {3, 4, 129}), rs(DType::kFloat32, {3, 4}), rb(DType::kFloat32, {3, 4, 129});
  quantize_int8_per_row(r.view(), rq.view(), rs.view());
  dequantize_int8_per_row(rq.view(), rs.view(), rb.view());
  for (int64_t i = 0; i < r.numel(); ++i)
    ASSERT_LE(std::fabs(rb.get(i) - r.get(i)), rs.get(i / 129) * 0.5001) << i;
  // Inf is non-finite too.
  HostTensor inf = values(DType::kFloat32, {1, 2}, {std::numeric_limits<double>::infinity(), 1});
  HostTensor iq(DType::kInt8, {1, 2}), is(DType::kFloat32, {1});
  quantize_int8_per_row(inf.view(), iq.view(), is.view());
  EXPECT_TRUE(std::isnan(is.get(0)));
}

TEST(QuantInt4, HandGroupAndBound) {
  HostTensor w = values(DType::kFloat32, {1, 5 * 2}, {-1.5, 0, 1.5, 21, /**/ 2, 2, 2, 2, /**/ 0, 0});
  // group_size 2: groups (-1.5, 0), (1.5, 21), (2, 2), (2, 2), (0, 0)
  HostTensor q(DType::kUInt8, {1, 5}), s(DType::kFloat32, {1, 5}), z(DType::kUInt8, {1, 5}), b(DType::kFloat32, {1, 10});
  quantize_int4_group(w.view(), q.view(), s.view(), z.view(), 2);
  EXPECT_EQ(s.get(0), 1.5f / 15.f);
  EXPECT_EQ(z.get(0), 15);          // round(1.5 / 0.1) = 15
  EXPECT_EQ(q.get(0), 0x0f << 4);   // codes 0 (low nibble) and 15 (high nibble)
  EXPECT_EQ(s.get(1), 19.5f / 15.f);
  EXPECT_EQ(z.get(1), 0);
  dequantize_int4_group(q.view(), s.view(), z.view(), b.view(), 2);
  EXPECT_EQ(b.get(0), -1.5f);
  EXPECT_EQ(b.get(1), 0.0);
  // Hand: [-1.5, 0, 1.5, 21] as one group of 4: s = 1.5, z = 1, codes 0, 1, 2, 15 exactly.
  HostTensor w4 = values(DType::kFloat32, {1, 4}, {-1.5, 0, 1.5, 21});
  HostTensor q4(DType::kUInt8, {1, 2}), s4(DType::kFloat32, {1, 1}), z4(DType::kUInt8, {1, 1}), b4(DType::kFloat32, {1, 4});
  quantize_int4_group(w4.view(), q4.view(), s4.view(), z4.view(), 4);
  EXPECT_EQ(s4.get(0), 1.5);
  EXPECT_EQ(z4.get(0), 1);
  EXPECT_EQ(q4.get(0), 0x10);
  EXPECT_EQ(q4.get(1), 0xf2);
  dequantize_int4_group(q4.view(), s4.view(), z4.view(), b4.view(), 4);
  for (int k = 0; k < 4; ++k) EXPECT_EQ(b4.get(k), w4.get(k));
  HostTensor r = random_input({2, 6, 128});
  HostTensor rq(DType::kUInt8, {2, 6, 64}), rs(DType::kFloat32, {2, 6, 4}), rz(DType::kUInt8, {2, 6, 4}),
      rb(DType::kFloat32, {2, 6, 128});
  quantize_int4_group(r.view(), rq.view(), rs.view(), rz.view(), 32);
  dequantize_int4_group(rq.view(), rs.view(), rz.view(), rb.view(), 32);
  for (int64_t i = 0; i < r.numel(); ++i)
    ASSERT_LE(std::fabs(rb.get(i) - r.get(i)), rs.get(i / 32) * 1.0001) << i;
}

TEST(QuantNvfp4, HandBlockAndBound) {
  // gs = 1, block amax 6 -> sf = 1, values on the e2m1 grid are exact; second block all zero.
  HostTensor x(DType::kFloat32, {1, 40});
  const double grid[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  for (int k = 0; k < 16; ++k) x.set(k, (k % 2 ? -1 : 1) * grid[k % 8]);
  x.set(15, 6);
  for (int k = 32; k < 40; ++k) x.set(k, 0.25 * (k - 31));  // amax 2: sf = e4m3(1/3) = 0.34375
  HostTensor gs = values(DType::kFloat32, {1}, {1});
  HostTensor q(DType::kUInt8, {1, 20}), sf(DType::kFloat8E4M3, {1, 3}), b(DType::kFloat32, {1, 40});
  quantize_nvfp4(x.view(), gs.view(), q.view(), sf.view());
  EXPECT_EQ(sf.get(0), 1.0);
  EXPECT_EQ(sf.get(1), 0.0);
  EXPECT_EQ(sf.get(2), 0.34375);
  dequantize_nvfp4(q.view(), sf.view(), gs.view(), b.view());
  for (int k = 0; k < 32; ++k) EXPECT_EQ(b.get(k), x.get(k)) << k;
  HostTensor w = random_input({3, 9, 50});
  HostTensor wgs(DType::kFloat32, {3}), wq(DType::kUInt8, {3, 9, 25}), wsf(DType::kFloat8E4M3, {3, 9, 4}),
      wb(DType::kFloat32, {3, 9, 50});
  nvfp4_global_scale(w.view(), wgs.view());
  quantize_nvfp4(w.view(), wgs.view(), wq.view(), wsf.view());
  dequantize_nvfp4(wq.view(), wsf.view(), wgs.view(), wb.view());
  for (int64_t e = 0; e < 3; ++e) {
    double amax = 0;
    for (int64_t i = 0; i < 450; ++i) amax = std::max(amax, std::fabs(w.get(e * 450 + i)));
    EXPECT_NEAR(wgs.get(e), 448.0 * 6.0 / amax, 1e-3);
  }
  // Error per element <= half the e2m1 gap at the block's top (1 of 6) plus the e4m3 scale error.
  for (int64_t i = 0; i < w.numel(); ++i) {
    const double block_scale = wsf.get((i / 50) * 4 + (i % 50) / 16) / wgs.get(i / 450);
    ASSERT_LE(std::fabs(wb.get(i) - w.get(i)), block_scale * 1.0 + std::fabs(w.get(i)) * 0.0625) << i;
  }
}

TEST(QuantMx, Mxfp8AndMxfp4ScalesAndBounds) {
  HostTensor x = values(DType::kFloat32, {1, 3}, {448, -3, 0.5});
  HostTensor q8(DType::kFloat8E4M3, {1, 3}), u8(DType::kFloat8E8M0, {1, 1});
  quantize_mxfp8(x.view(), q8.view(), u8.view());
  EXPECT_EQ(u8.ptr<uint8_t>()[0], 127);  // 448 / 448 = 1 exactly
  EXPECT_EQ(q8.get(1), -3.0);
  HostTensor y = values(DType::kFloat32, {1, 3}, {7, -3, 0.25});
  HostTensor q4(DType::kUInt8, {1, 2}), u4(DType::kFloat8E8M0, {1, 1}), b4(DType::kFloat32, {1, 3});
  quantize_mxfp4(y.view(), q4.view(), u4.view());
  EXPECT_EQ(u4.ptr<uint8_t>()[0], 128);  // 7 / 6 -> 2
  dequantize_mxfp4(q4.view(), u4.view(), b4.view());
  EXPECT_EQ(b4.get(0), 8.0);   // 3.5 -> 4 (tie to even code)
  EXPECT_EQ(b4.get(1), -3.0);  // -1.5
  EXPECT_EQ(b4.get(2), 0.0);   // 0.125 -> 0
  EXPECT_EQ(q4.get(1), 0x00);  // odd size: the last high nibble is 0
  HostTensor zero(DType::kFloat32, {1, 32}), zq(DType::kFloat8E4M3, {1, 32}), zu(DType::kFloat8E8M0, {1, 1});
  quantize_mxfp8(zero.view(), zq.view(), zu.view());
  EXPECT_EQ(zu.ptr<uint8_t>()[0], 0);  // all-zero block: smallest scale, zero codes

  HostTensor r = random_input({5, 100});
  HostTensor r8(DType::kFloat8E4M3, {5, 100}), s8(DType::kFloat8E8M0, {5, 4}), b8(DType::kFloat32, {5, 100});
  quantize_mxfp8(r.view(), r8.view(), s8.view());
  dequantize_mxfp8(r8.view(), s8.view(), b8.view());
  HostTensor r4(DType::kUInt8, {5, 50}), s4(DType::kFloat8E8M0, {5, 4}), c4(DType::kFloat32, {5, 100});
  quantize_mxfp4(r.view(), r4.view(), s4.view());
  dequantize_mxfp4(r4.view(), s4.view(), c4.view());
  for (int64_t i = 0; i < r.numel(); ++i) {
    const int64_t g = (i / 100) * 4 + (i % 100) / 32;
    ASSERT_LE(std::fabs(b8.get(i) - r.get(i)), std::fabs(r.get(i)) * 0.0625 + s8.get(g) * std::ldexp(1.0, -10)) << i;
    ASSERT_LE(std::fabs(c4.get(i) - r.get(i)), s4.get(g) * 1.0) << i;  // largest half gap: 4..6
    double amax = 0;
    for (int64_t k = (i % 100) / 32 * 32; k < std::min<int64_t>(100, (i % 100) / 32 * 32 + 32); ++k)
      amax = std::max(amax, std::fabs(r.get((i / 100) * 100 + k)));
    ASSERT_GE(s4.get(g) * 6.0, amax);  // round-up scale: no clipping
    ASSERT_LT(s4.get(g) * 3.0, amax);
  }
}

TEST(QuantMarkers, NonFiniteGroupsStayInTheirGroup) {
  HostTensor x = random_input({2, 64});
  x.set(3, std::nan(""));
  x.set(64 + 40, std::numeric_limits<double>::infinity());
  // FP8 per group of 32, MXFP8, MXFP4, NVFP4 (groups of 16 inside), each dequantised.
  HostTensor q(DType::kFloat8E4M3, {2, 64}), s(DType::kFloat32, {2, 2}), b(DType::kFloat32, {2, 64});
  quantize_fp8_per_token_group(x.view(), q.view(), s.view(), 32);
  dequantize_fp8_per_token_group(q.view(), s.view(), b.view(), 32);
  HostTensor m8(DType::kFloat8E4M3, {2, 64}), u8(DType::kFloat8E8M0, {2, 2}), c8(DType::kFloat32, {2, 64});
  quantize_mxfp8(x.view(), m8.view(), u8.view());
  dequantize_mxfp8(m8.view(), u8.view(), c8.view());
  HostTensor m4(DType::kUInt8, {2, 32}), u4(DType::kFloat8E8M0, {2, 2}), c4(DType::kFloat32, {2, 64});
  quantize_mxfp4(x.view(), m4.view(), u4.view());
  dequantize_mxfp4(m4.view(), u4.view(), c4.view());
  HostTensor gs = values(DType::kFloat32, {1}, {100});
  HostTensor n4(DType::kUInt8, {2, 32}), nf(DType::kFloat8E4M3, {2, 4}), d4(DType::kFloat32, {2, 64});
  quantize_nvfp4(x.view(), gs.view(), n4.view(), nf.view());
  dequantize_nvfp4(n4.view(), nf.view(), gs.view(), d4.view());
  for (int64_t i = 0; i < 128; ++i) {
    const bool bad32 = i < 32 || (i >= 96);
    const bool bad16 = i < 16 || (i >= 96 && i < 112);
    EXPECT_EQ(std::isnan(b.get(i)), bad32) << i;
    EXPECT_EQ(std::isnan(c8.get(i)), bad32) << i;
    EXPECT_EQ(std::isnan(c4.get(i)), bad32) << i;
    EXPECT_EQ(std::isnan(d4.get(i)), bad16) << i;
  }
}

TEST(QuantErrors, NameTheArgument) {
  HostTensor x(DType::kFloat32, {4, 64});
  HostTensor q(DType::kFloat8E4M3, {4, 64}), s(DType::kFloat32, {4, 2}), bad_s(DType::kFloat32, {4, 3});
  EXPECT_MOEKIT_ERROR(quantize_fp8_per_token_group(x.view(), q.view(), bad_s.view(), 32),
                      "scale: expected shape [4, 2], got [4, 3]");
  EXPECT_MOEKIT_ERROR(quantize_fp8_per_token_group(x.view(), q.view(), s.view(), 0),
                      "group_size: expected a value >= 1, got 0");
  HostTensor i8(DType::kInt8, {4, 64});
  EXPECT_MOEKIT_ERROR(quantize_fp8_per_token_group(x.view(), i8.view(), s.view(), 32),
                      "output: expected float8_e4m3fn");
  HostTensor p(DType::kUInt8, {4, 32}), gsc(DType::kFloat32, {4, 2}), z(DType::kUInt8, {4, 2});
  EXPECT_MOEKIT_ERROR(quantize_int4_group(x.view(), p.view(), gsc.view(), z.view(), 48),
                      "group_size: expected a divisor of the last dimension (64)");
  HostTensor ints(DType::kInt32, {4, 64});
  EXPECT_MOEKIT_ERROR(quantize_mxfp8(ints.view(), q.view(), s.view()), "input: expected float32 or bfloat16 or float16");
  HostTensor gs3(DType::kFloat32, {3});
  HostTensor nq(DType::kUInt8, {4, 32}), nsf(DType::kFloat8E4M3, {4, 4});
  EXPECT_MOEKIT_ERROR(quantize_nvfp4(x.view(), gs3.view(), nq.view(), nsf.view()),
                      "global_scale: expected shape [1], got [3]");
  HostTensor x3(DType::kFloat32, {2, 4, 64});
  HostTensor bs(DType::kFloat32, {2, 1, 1});
  HostTensor q3(DType::kFloat8E4M3, {2, 4, 64});
  EXPECT_MOEKIT_ERROR(quantize_fp8_block(x3.view(), q3.view(), bs.view(), 128, 32),
                      "scale: expected shape [2, 1, 2], got [2, 1, 1]");
}

}  // namespace
}  // namespace moekit::test
