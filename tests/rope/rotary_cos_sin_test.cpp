// The rotary angle helper on its own: cos/sin of position * freq within 2 fp32 ulps of a long double
// reference, for integer positions far past 2^24.
#include <cmath>

#include "common/numeric.h"
#include "common/test_util.h"
#include "rope/rotary_frequencies.h"

namespace moekit::test {
namespace {

// |got - exact| in fp32 ulps of the exact value, with an absolute floor of 2^-32 for the
// long double reference's own error (its product p * f keeps 64 bits).
double ulps(float got, long double exact) {
  int e = 0;
  std::frexp(static_cast<double>(exact), &e);
  const double ulp = std::ldexp(1.0, std::max(e, -125) - 24);
  const double err = std::fabs(static_cast<double>(got - exact));
  return std::max(err - std::ldexp(1.0, -32), 0.0) / ulp;
}

TEST(RotaryCosSin, WithinTwoUlpsForLargePositions) {
  auto rng = fresh_rng();
  std::uniform_int_distribution<int64_t> small(-100000, 100000), near24((1 << 24) - 5000, (1 << 24) + 5000),
      large(0, 2147483647);
  std::uniform_real_distribution<double> exponent(-12.0, 0.0);
  double worst = 0;
  for (int n = 0; n < 300000; ++n) {
    const int64_t p = n % 3 == 0 ? small(rng) : (n % 3 == 1 ? near24(rng) : large(rng));
    const double f = n % 7 == 0 ? 1.0 : std::pow(10.0, exponent(rng));
    const detail::RotaryCosSin cs = detail::rotary_cos_sin(p, f);
    const long double theta = static_cast<long double>(p) * static_cast<long double>(f);
    worst = std::max({worst, ulps(cs.cos, std::cos(theta)), ulps(cs.sin, std::sin(theta))});
    if (worst > 2) {
      ADD_FAILURE() << "p " << p << " f " << f << ": cos " << cs.cos << " vs "
                    << static_cast<double>(std::cos(theta)) << ", sin " << cs.sin << " vs "
                    << static_cast<double>(std::sin(theta));
      break;
    }
  }
  EXPECT_LE(worst, 2.0);
  RecordProperty("worst_ulps", std::to_string(worst));
}

TEST(RotaryCosSin, ExactAtZeroAndQuadrants) {
  const detail::RotaryCosSin zero = detail::rotary_cos_sin(0, 0.5);
  EXPECT_EQ(zero.cos, 1.0f);
  EXPECT_EQ(zero.sin, 0.0f);
  // 2^24 + 1 is not a float; an fp32 position would give the angle of 2^24.
  const detail::RotaryCosSin odd = detail::rotary_cos_sin((1 << 24) + 1, 1.0);
  EXPECT_NEAR(odd.sin, std::sin(16777217.0L), 1e-7);
  EXPECT_NEAR(odd.cos, std::cos(16777217.0L), 1e-7);
  EXPECT_GT(std::fabs(odd.sin - static_cast<float>(std::sin(16777216.0L))), 1e-2);
}

}  // namespace
}  // namespace moekit::test
