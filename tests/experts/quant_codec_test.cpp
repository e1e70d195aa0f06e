// The scalar codecs of src/common/numeric.h, checked exhaustively against an independent
// definition: every code decodes to its mathematical value, and encoding picks the nearest code
// (ties to the even code) found by searching the sorted code table.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "common/numeric.h"
#include "common/test_util.h"

namespace moekit::test {
namespace {

using namespace moekit::numeric;

// Mathematical value of a sign/exponent/mantissa code with IEEE-style subnormals.
double minifloat_value(uint32_t code, int exp_bits, int man_bits, int bias) {
  const uint32_t sign = code >> (exp_bits + man_bits);
  const uint32_t exp = (code >> man_bits) & ((1u << exp_bits) - 1);
  const uint32_t man = code & ((1u << man_bits) - 1);
  double v = exp == 0 ? std::ldexp(static_cast<double>(man), 1 - bias - man_bits)
                      : std::ldexp(1.0 + std::ldexp(static_cast<double>(man), -man_bits),
                                   static_cast<int>(exp) - bias);
  return sign ? -v : v;
}

struct Code {
  double value;
  uint32_t code;
};

// Nearest finite code to x among `table` (non-negative codes, sorted by value), ties to the even
// code; values beyond the largest finite code by half an ulp or more go to `overflow`.
uint32_t nearest(const std::vector<Code>& table, double x, double overflow_at, uint32_t overflow) {
  const double a = std::fabs(x);
  const uint32_t sign_bit = std::signbit(x) ? 1u : 0u;
  uint32_t c;
  if (a >= overflow_at) {
    c = overflow;
  } else {
    auto it = std::lower_bound(table.begin(), table.end(), a,
                               [](const Code& e, double v) { return e.value < v; });
    if (it == table.end()) {
      c = table.back().code;
    } else if (it == table.begin() || it->value == a) {
      c = it->code;
    } else {
      const Code& hi = *it;
      const Code& lo = *(it - 1);
      const double dl = a - lo.value, dh = hi.value - a;
      c = dl < dh ? lo.code : dh < dl ? hi.code : ((lo.code & 1) ? hi.code : lo.code);
    }
  }
  return c | (sign_bit << 31);  // sign applied by the caller's width
}

std::vector<Code> positive_table(uint32_t n_codes, const std::function<double(uint32_t)>& value,
                                 const std::function<bool(uint32_t)>& finite) {
  std::vector<Code> t;
  for (uint32_t c = 0; c < n_codes; ++c)
    if (finite(c)) t.push_back({value(c), c});
  std::sort(t.begin(), t.end(), [](const Code& a, const Code& b) { return a.value < b.value; });
  return t;
}

// Samples: every code value, every midpoint, and midpoints nudged by one fp32 ulp either way.
std::vector<float> probe_values(const std::vector<Code>& table) {
  std::vector<float> v;
  for (size_t i = 0; i < table.size(); ++i) {
    v.push_back(static_cast<float>(table[i].value));
    if (i + 1 < table.size()) {
      const float mid = static_cast<float>((table[i].value + table[i + 1].value) / 2);
      v.push_back(mid);
      v.push_back(std::nextafter(mid, 0.f));
      v.push_back(std::nextafter(mid, 1e30f));
    }
  }
  for (size_t i = 0, n = v.size(); i < n; ++i) v.push_back(-v[i]);
  return v;
}

TEST(CodecE4m3, EveryCodeDecodesExactly) {
  for (uint32_t c = 0; c < 256; ++c) {
    const float f = e4m3_to_float(static_cast<uint8_t>(c));
    if ((c & 0x7f) == 0x7f) {
      EXPECT_TRUE(std::isnan(f)) << c;
      continue;
    }
    EXPECT_EQ(static_cast<double>(f), minifloat_value(c, 4, 3, 7)) << "code " << c;
  }
  EXPECT_EQ(e4m3_to_float(0x7e), 448.f);
  EXPECT_EQ(e4m3_to_float(0x01), std::ldexp(1.f, -9));
  EXPECT_EQ(e4m3_to_float(0x08), std::ldexp(1.f, -6));
  EXPECT_TRUE(std::signbit(e4m3_to_float(0x80)));
}

TEST(CodecE4m3, EncodesToNearestEvenSaturating) {
  const auto table = positive_table(
      128, [](uint32_t c) { return minifloat_value(c, 4, 3, 7); }, [](uint32_t c) { return c != 0x7f; });
  for (float x : probe_values(table)) {
    const uint32_t want = nearest(table, x, 1e300, 0x7e);
    const uint8_t expect = static_cast<uint8_t>((want & 0x7f) | (want >> 31 ? 0x80 : 0));
    ASSERT_EQ(float_to_e4m3(x), expect) << "x = " << x;
  }
  for (uint32_t c = 0; c < 256; ++c)
    if ((c & 0x7f) != 0x7f) EXPECT_EQ(float_to_e4m3(e4m3_to_float(static_cast<uint8_t>(c))), c);
  EXPECT_EQ(float_to_e4m3(1000.f), 0x7e);
  EXPECT_EQ(float_to_e4m3(-1e30f), 0xfe);
  EXPECT_EQ(float_to_e4m3(std::numeric_limits<float>::infinity()), 0x7e);
  EXPECT_EQ(float_to_e4m3(std::nanf("")) & 0x7f, 0x7f);
  EXPECT_EQ(float_to_e4m3(std::ldexp(1.f, -11)), 0x00);      // a quarter of the smallest subnormal
  EXPECT_EQ(float_to_e4m3(std::ldexp(1.f, -10)), 0x00);      // half: tie to even (0)
  EXPECT_EQ(float_to_e4m3(std::ldexp(3.f, -10)), 0x02);      // 1.5 subnormal steps: tie to even (2)
}

TEST(CodecE5m2, EveryCodeRoundTripsAndEncodesNearestEven) {
  for (uint32_t c = 0; c < 256; ++c) {
    const float f = e5m2_to_float(static_cast<uint8_t>(c));
    const uint32_t exp = (c >> 2) & 0x1f;
    if (exp == 0x1f) {
      EXPECT_TRUE((c & 3) ? std::isnan(f) : std::isinf(f)) << c;
      continue;
    }
    EXPECT_EQ(static_cast<double>(f), minifloat_value(c, 5, 2, 15)) << c;
    EXPECT_EQ(float_to_e5m2(f), c);
  }
  const auto table = positive_table(
      124, [](uint32_t c) { return minifloat_value(c, 5, 2, 15); }, [](uint32_t) { return true; });
  for (float x : probe_values(table)) {
    const uint32_t want = nearest(table, x, 61440.0, 0x7c);
    const uint8_t expect = static_cast<uint8_t>((want & 0x7f) | (want >> 31 ? 0x80 : 0));
    ASSERT_EQ(float_to_e5m2(x), expect) << "x = " << x;
  }
  // Just above the 1 / 1.25 midpoint: must not double-round through fp16 to the tie.
  EXPECT_EQ(e5m2_to_float(float_to_e5m2(1.125f + std::ldexp(1.f, -12))), 1.25f);
  EXPECT_TRUE(std::isinf(e5m2_to_float(float_to_e5m2(61440.f))));
  EXPECT_EQ(e5m2_to_float(float_to_e5m2(61439.f)), 57344.f);
  EXPECT_TRUE(std::isnan(e5m2_to_float(float_to_e5m2(std::nanf("")))));
}

TEST(CodecE2m1, EveryCodeAndEveryTie) {
  const float mags[8] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f};
  for (uint8_t c = 0; c < 16; ++c) {
    const float want = (c & 8) ? -mags[c & 7] : mags[c & 7];
    EXPECT_EQ(e2m1_to_float(c), want);
    EXPECT_EQ(float_to_e2m1(e2m1_to_float(c)), c);
  }
  std::vector<Code> table;
  for (uint32_t c = 0; c < 8; ++c) table.push_back({mags[c], c});
  for (float x : probe_values(table)) {
    const uint32_t want = nearest(table, x, 1e300, 7);
    const uint8_t expect = static_cast<uint8_t>((want & 7) | (want >> 31 ? 8 : 0));
    ASSERT_EQ(float_to_e2m1(x), expect) << "x = " << x;
  }
  EXPECT_EQ(float_to_e2m1(0.25f), 0);   // ties go to the even code
  EXPECT_EQ(float_to_e2m1(0.75f), 2);
  EXPECT_EQ(float_to_e2m1(1.25f), 2);
  EXPECT_EQ(float_to_e2m1(1.75f), 4);
  EXPECT_EQ(float_to_e2m1(2.5f), 4);
  EXPECT_EQ(float_to_e2m1(3.5f), 6);
  EXPECT_EQ(float_to_e2m1(5.f), 6);
  EXPECT_EQ(float_to_e2m1(100.f), 7);   // saturates at 6
  EXPECT_EQ(float_to_e2m1(-std::numeric_limits<float>::infinity()), 15);
}

TEST(CodecE8m0, EveryCodeAndCeiling) {
  for (uint32_t u = 0; u < 255; ++u) {
    EXPECT_EQ(static_cast<double>(e8m0_to_float(static_cast<uint8_t>(u))),
              std::ldexp(1.0, static_cast<int>(u) - 127));
    const float p = e8m0_to_float(static_cast<uint8_t>(u));
    EXPECT_EQ(float_to_e8m0_ceil(p), u) << "exact power 2^" << int(u) - 127;
    if (u >= 1 && u < 254) EXPECT_EQ(float_to_e8m0_ceil(std::nextafter(p, 1e38f)), u + 1);
    if (u >= 2) EXPECT_EQ(float_to_e8m0_ceil(std::nextafter(p, 0.f)), u) << "just below 2^" << int(u) - 127;
  }
  EXPECT_TRUE(std::isnan(e8m0_to_float(0xff)));
  EXPECT_EQ(float_to_e8m0_ceil(std::nanf("")), 0xff);
  EXPECT_EQ(float_to_e8m0_ceil(0.f), 0);
  EXPECT_EQ(float_to_e8m0_ceil(3.f), 129);
  EXPECT_EQ(float_to_e8m0_ceil(1e38f * 10), 254);  // inf saturates
}

TEST(CodecBf16, EveryCodeRoundTripsAndTiesGoToEven) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_float(static_cast<uint16_t>(h));
    EXPECT_EQ(float_bits(f), h << 16);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(f))));
    } else {
      ASSERT_EQ(float_to_bf16(f), h);
    }
  }
  EXPECT_EQ(round_bf16(1.f + std::ldexp(1.f, -8)), 1.f);                                 // tie, even down
  EXPECT_EQ(round_bf16(1.f + 3 * std::ldexp(1.f, -8)), 1.f + std::ldexp(1.f, -6));       // tie, even up
  EXPECT_EQ(round_bf16(1.f + std::ldexp(1.f, -8) + std::ldexp(1.f, -20)), 1.f + std::ldexp(1.f, -7));
  EXPECT_TRUE(std::isinf(round_bf16(3.4e38f)));
  EXPECT_EQ(round_bf16(std::ldexp(3.f, -135)), std::ldexp(1.f, -133));  // subnormal tie -> even
  EXPECT_TRUE(std::isnan(round_bf16(bits_float(0x7f800001u))));  // signalling NaN stays NaN
}

TEST(CodecFp16, EveryCodeRoundTripsAndEncodesNearestEven) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = half_to_float(static_cast<uint16_t>(h));
    const uint32_t exp = (h >> 10) & 0x1f;
    if (exp == 0x1f) {
      EXPECT_TRUE((h & 0x3ff) ? std::isnan(f) : std::isinf(f));
      continue;
    }
    ASSERT_EQ(static_cast<double>(f), minifloat_value(h, 5, 10, 15)) << h;
    ASSERT_EQ(float_to_half(f), h);
  }
  const auto table = positive_table(
      0x7c00, [](uint32_t c) { return minifloat_value(c, 5, 10, 15); }, [](uint32_t) { return true; });
  for (float x : probe_values(table)) {
    const uint32_t want = nearest(table, x, 65520.0, 0x7c00);
    const uint16_t expect = static_cast<uint16_t>((want & 0x7fff) | (want >> 31 ? 0x8000 : 0));
    ASSERT_EQ(float_to_half(x), expect) << "x = " << x;
  }
  EXPECT_TRUE(std::isinf(round_half(65520.f)));
  EXPECT_EQ(round_half(65519.f), 65504.f);
}

}  // namespace
}  // namespace moekit::test
