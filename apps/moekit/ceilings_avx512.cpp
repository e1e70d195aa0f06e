// AVX-512 fp32 FMA peak (the ceiling of the avx512 ISA path). Compiled with the avx512 flags; runs
// only when the CPU supports that path.
#include <immintrin.h>

#include "ceilings.h"
#include "peak_loop.h"

namespace moekit::bench {
namespace {

// acc = acc * 0.999 + 1e-3 converges: nothing overflows or goes subnormal.
struct Fma512 {
  using V = __m512;
  struct Operands {
    __m512 a, b;
  };
  static constexpr double kFlops = 16 * 2;
  static V init() { return _mm512_set1_ps(1.f); }
  static Operands operands() { return {_mm512_set1_ps(0.999f), _mm512_set1_ps(1e-3f)}; }
  static V step(V c, const Operands& o) { return _mm512_fmadd_ps(c, o.a, o.b); }
  static V add(V x, V y) { return _mm512_add_ps(x, y); }
};

}  // namespace

MOEKIT_REGISTER_CPU_PEAK("avx512 fma fp32", CpuIsa::kAvx512, chain_peak<Fma512>);

}  // namespace moekit::bench
