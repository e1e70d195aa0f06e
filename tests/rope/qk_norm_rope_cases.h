// Shared by the CPU and CUDA tests of fused_qk_norm_rope: one case = shapes + options, its random
// inputs, the oracle run and the comparison rule.
//
// Tolerance: the fast paths compute in fp32 and round once; the oracle computes in fp64 and rounds
// once. So each rotated element may differ from the oracle's by one rounding step of the output
// dtype (1 ulp of bf16 / fp16 at the oracle's value), plus an fp32 slack of 1e-5 x the head's
// largest magnitude for results that cancel to near zero. V heads must be bit-identical to the input.
#pragma once

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>

#include "common/numeric.h"
#include "common/test_util.h"
#include "moekit/qk_norm_rope.h"

namespace moekit::test {

struct RopeCase {
  int64_t head_dim = 128, hq = 16, hk = 8, hv = 8, tokens = 8;
  bool neox = true;
  int64_t rotary_dim = -1;
  DType dtype = DType::kBFloat16, pos_dtype = DType::kInt32;
  int64_t first_position = 100;         // positions = first_position + arange(T) ...
  bool random_positions = false;        // ... or uniform in [pos_lo, pos_hi]
  int64_t pos_lo = 0, pos_hi = 0;
  double eps = 1e-5, base = 1e4, factor = 1, low = 0, high = 0, attention_factor = 1;
  double weight_scale = 5;

  std::string name() const {
    std::ostringstream os;
    os << "D" << head_dim << "_H" << hq << "_" << hk << "_" << hv << "_T" << tokens
       << (neox ? "_neox" : "_gptj") << "_R" << rotary_dim << "_" << dtype_name(dtype) << "_"
       << dtype_name(pos_dtype) << "_factor" << factor << "_low" << low << "_high" << high;
    return os.str();
  }
};

struct RopeInputs {
  HostTensor qkv, q_weight, k_weight, positions;
};

inline RopeInputs make_rope_inputs(const RopeCase& c, std::mt19937_64& rng) {
  RopeInputs in;
  in.qkv = HostTensor(c.dtype, {c.tokens, (c.hq + c.hk + c.hv) * c.head_dim});
  in.qkv.fill_normal(rng);
  in.q_weight = HostTensor(c.dtype, {c.head_dim});
  in.k_weight = HostTensor(c.dtype, {c.head_dim});
  in.q_weight.fill_normal(rng, 0.0, c.weight_scale);
  in.k_weight.fill_normal(rng, 0.0, c.weight_scale);
  in.positions = HostTensor(c.pos_dtype, {c.tokens});
  if (c.random_positions)
    in.positions.fill_int(rng, c.pos_lo, c.pos_hi);
  else
    for (int64_t t = 0; t < c.tokens; ++t) in.positions.set(t, static_cast<double>(c.first_position + t));
  return in;
}

// YaRN low / high / attention factor as SGLang computes them (beta_fast 32, beta_slow 1,
// truncate), for rotary dim R: _yarn_find_correction_range and yarn_get_mscale.
struct YarnParams {
  double low, high, attention_factor;
};
inline YarnParams sglang_yarn(double factor, int64_t R, double base, double original_max_positions) {
  auto correction_dim = [&](double rotations) {
    return R * std::log(original_max_positions / (rotations * 2 * M_PI)) / (2 * std::log(base));
  };
  const double low = std::max(std::floor(correction_dim(32)), 0.0);
  const double high = std::min(std::ceil(correction_dim(1)), static_cast<double>(R - 1));
  const double mscale = factor <= 1 ? 1.0 : 0.1 * std::log(factor) + 1.0;
  return {low, high, mscale};
}

inline void call_reference(const RopeCase& c, RopeInputs& in) {
  reference::fused_qk_norm_rope(in.qkv.view(), c.hq, c.hk, c.hv, c.head_dim, c.eps,
                                in.q_weight.view(), in.k_weight.view(), c.base, c.neox,
                                in.positions.view(), c.factor, c.low, c.high, c.attention_factor,
                                c.rotary_dim);
}

// One ulp of `dtype` at |v| for a value v of that dtype (bf16: 8 significant bits, fp16: 11, with
// fp16's subnormal spacing 2^-24 as the floor).
inline double output_ulp(DType dtype, float v) {
  const int biased = static_cast<int>((numeric::float_bits(v) >> 23) & 0xff);
  const int bits = dtype == DType::kFloat16 ? 11 : 8;
  double ulp = std::ldexp(1.0, std::max(biased, 1) - 127 + 1 - bits);
  return dtype == DType::kFloat16 ? std::max(ulp, std::ldexp(1.0, -24)) : ulp;
}

inline float decode(DType dtype, uint16_t v) {
  return dtype == DType::kFloat16 ? numeric::half_to_float(v) : numeric::bf16_to_float(v);
}

inline ::testing::AssertionResult WithinOneRounding(const RopeCase& c, const HostTensor& got,
                                                    const HostTensor& expected,
                                                    const HostTensor& original) {
  const int64_t D = c.head_dim, heads = c.hq + c.hk + c.hv;
  const uint16_t* g16 = got.ptr<uint16_t>();
  const uint16_t* e16 = expected.ptr<uint16_t>();
  const uint16_t* o16 = original.ptr<uint16_t>();
  for (int64_t t = 0; t < c.tokens; ++t)
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t base = (t * heads + h) * D;
      if (h >= c.hq + c.hk) {
        for (int64_t d = 0; d < D; ++d)
          if (g16[base + d] != o16[base + d])
            return ::testing::AssertionFailure() << "V head " << h << " of token " << t
                                                 << " was modified at dim " << d;
        continue;
      }
      double head_max = 0;
      for (int64_t d = 0; d < D; ++d)
        head_max = std::max(head_max, std::fabs(static_cast<double>(decode(c.dtype, e16[base + d]))));
      for (int64_t d = 0; d < D; ++d) {
        const float e = decode(c.dtype, e16[base + d]), g = decode(c.dtype, g16[base + d]);
        const double tol = output_ulp(c.dtype, e) + 1e-5 * head_max;
        if (!(std::fabs(static_cast<double>(g) - e) <= tol))
          return ::testing::AssertionFailure()
                 << "token " << t << " head " << h << " dim " << d << ": got " << g
                 << ", expected " << e << " (tolerance " << tol << ")";
      }
    }
  return ::testing::AssertionSuccess();
}

// Fresh random inputs of a case and the oracle's answer for them.
struct PreparedCase {
  RopeInputs inputs;
  HostTensor original, expected;
};

inline PreparedCase prepare_case(const RopeCase& c, std::mt19937_64& rng) {
  PreparedCase p;
  p.inputs = make_rope_inputs(c, rng);
  p.original = p.inputs.qkv;
  RopeInputs oracle = p.inputs;
  call_reference(c, oracle);
  p.expected = oracle.qkv;
  return p;
}

// Runs each of `fast...(case, inputs)` (each must update inputs.qkv in place) on a copy of the same
// fresh random inputs and compares it with the oracle.
template <typename... Fast>
void check_against_oracle(const RopeCase& c, const Fast&... fast) {
  uint64_t seed = 0;
  auto rng = fresh_rng(&seed);
  SCOPED_TRACE(c.name() + " seed " + std::to_string(seed));
  const PreparedCase p = prepare_case(c, rng);
  int path = 0;
  auto run_one = [&](const auto& run) {
    RopeInputs in = p.inputs;
    run(c, in);
    EXPECT_TRUE(WithinOneRounding(c, in.qkv, p.expected, p.original)) << "fast path #" << path;
    ++path;
  };
  (run_one(fast), ...);
}

}  // namespace moekit::test
