// AVX-512-BF16 peak: VDPBF16PS (16 lanes x 2 bf16 pairs x 2 FLOP = 64 FLOP per instruction) on 12
// independent accumulators. Compiled with the avx512bf16 flags; runs only where supported.
#include <immintrin.h>

#include "ceilings.h"
#include "peak_loop.h"

namespace moekit::bench {
namespace {

// Small operands: the accumulators grow by 2e-6 per step and never overflow.
struct Dpbf16 {
  using V = __m512;
  struct Operands {
    __m512bh a;
  };
  static constexpr double kFlops = 16 * 2 * 2;
  static V init() { return _mm512_setzero_ps(); }
  static Operands operands() { return {_mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f))}; }
  static V step(V c, const Operands& o) { return _mm512_dpbf16_ps(c, o.a, o.a); }
  static V add(V x, V y) { return _mm512_add_ps(x, y); }
};

}  // namespace

MOEKIT_REGISTER_CPU_PEAK("avx512-bf16 dpbf16ps", CpuIsa::kAvx512Bf16, chain_peak<Dpbf16>);

}  // namespace moekit::bench
