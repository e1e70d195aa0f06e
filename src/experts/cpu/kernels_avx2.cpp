// AVX2 + FMA + F16C expert kernels: weights widened to fp32 in registers (bf16: shift / mask,
// fp16: VCVTPH2PS), one FMA per K element in the shared order (kernels.h). Also serves the avx512
// path and fp16 on the avx512bf16 / amx paths.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "common/avx2_bf16.h"
#include "common/numeric.h"
#include "experts/cpu/kernels.h"

namespace moekit::cpu {
namespace {

// 8 columns of one K pair of a VNNI-2 block -> (even k, odd k) fp32 vectors.
struct Bf16Cols {
  static void load(const uint16_t* p, __m256& even, __m256& odd) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    odd = _mm256_castsi256_ps(_mm256_and_si256(raw, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
    even = _mm256_castsi256_ps(_mm256_slli_epi32(raw, 16));
  }
  static __m256 odd(const uint16_t* p) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm256_castsi256_ps(_mm256_and_si256(raw, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
  }
  static __m256 even(const uint16_t* p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), 16));
  }
  // odd() without the mask constant, for kernels that need its register.
  static __m256 odd_by_shifts(const uint16_t* p) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_srli_epi32(raw, 16), 16));
  }
  static __m256 column_order(__m256 v) { return v; }
};

// fp16: the even/odd shuffle leaves the columns in the order 0 1 4 5 2 3 6 7; column_order undoes it.
struct Fp16Cols {
  static void load(const uint16_t* p, __m256& even, __m256& odd) {
    const __m256 lo = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m256 hi = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)));
    even = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    odd = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
  }
  static __m256 odd(const uint16_t* p) {
    __m256 e, o;
    load(p, e, o);
    return o;
  }
  static __m256 even(const uint16_t* p) {
    __m256 e, o;
    load(p, e, o);
    return e;
  }
  static __m256 odd_by_shifts(const uint16_t* p) { return odd(p); }
  static __m256 column_order(__m256 v) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), _MM_SHUFFLE(3, 1, 2, 0)));
  }
};

// R rows x 16 columns (two 8-wide halves) per pass, two passes per 32-column block. Each output's
// chain takes two dependent FMAs per K pair (odd, then even: the shared order), so 2R chains must
// cover the FMA latency x 2 ports: R = 4 leaves no slack, R = 6 does. The odd and even weight
// vectors are formed one after the other so that 2R accumulators + 2 weights + 1 broadcast fit
// the 16 registers.
// The first half's pass reads one of the two cache lines of each K pair of the block; it
// prefetches both lines this many pairs ahead (the second into L2 for the other half's pass): the
// block's first pass comes from DRAM, and without this it waited on each line (M = 128 here:
// 8 rows per expert, 25 % faster). Streaming calls skip it in gemm_rows: their block was streamed
// into L2 by the call before, and the extra prefetches cost more than they saved.
constexpr int64_t kPrefetchPairs = 16;

// A share of the lines of the block the caller multiplies next, streamed into L2 during a pass
// over this one, spread evenly over the pass's K pairs (count lines over kpairs steps): a call
// whose block was streamed by the call before it reads it from L2 in every pass, so memory and
// FMA work overlap instead of alternating; prefetches issued in bursts stalled on the miss buffers.
struct NextLines {
  const char* lines = nullptr;
  int64_t count = 0;
};

// One pass's walk over its NextLines share: step() once per K pair.
class LineStream {
 public:
  LineStream(const NextLines& share, int64_t kpairs) : line_(share.lines), count_(share.count), kpairs_(kpairs) {}
  inline void step() {
    carry_ += count_;
    while (carry_ >= kpairs_) {
      _mm_prefetch(line_, _MM_HINT_T1);
      line_ += 64;
      carry_ -= kpairs_;
    }
  }

 private:
  const char* line_;
  int64_t count_, kpairs_, carry_ = 0;
};

template <typename Cols, int R, bool kStream>
void gemm_rows(const float* a, int64_t lda, const uint16_t* w, int64_t kpairs, float* c, const NextLines* next) {
  for (int half = 0; half < 2; ++half) {
    LineStream stream(next[half], kpairs);
    const uint16_t* wp = w + half * 32;
    __m256 acc[R][2];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t p = 0; p < kpairs; ++p) {
      if (half == 0 && !kStream) {
        _mm_prefetch(reinterpret_cast<const char*>(w + (p + kPrefetchPairs) * 64), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(w + (p + kPrefetchPairs) * 64 + 32), _MM_HINT_T1);
      }
      if (kStream) stream.step();
      const __m256 o0 = Cols::odd(wp + p * 64), o1 = Cols::odd(wp + p * 64 + 16);
      for (int r = 0; r < R; ++r) {
        const __m256 xo = _mm256_broadcast_ss(a + r * lda + 2 * p + 1);
        acc[r][0] = _mm256_fmadd_ps(xo, o0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(xo, o1, acc[r][1]);
      }
      const __m256 e0 = Cols::even(wp + p * 64), e1 = Cols::even(wp + p * 64 + 16);
      for (int r = 0; r < R; ++r) {
        const __m256 xe = _mm256_broadcast_ss(a + r * lda + 2 * p);
        acc[r][0] = _mm256_fmadd_ps(xe, e0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(xe, e1, acc[r][1]);
      }
    }
    for (int r = 0; r < R; ++r) {
      _mm256_storeu_ps(c + r * 32 + half * 16, Cols::column_order(acc[r][0]));
      _mm256_storeu_ps(c + r * 32 + half * 16 + 8, Cols::column_order(acc[r][1]));
    }
  }
}

// One row (decode): all 32 columns in one pass, so four accumulator chains hide the FMA latency
// (same order per output as gemm_rows).
template <typename Cols, bool kStream>
void gemm_one_row(const float* a, const uint16_t* w, int64_t kpairs, float* c, const NextLines& next) {
  LineStream stream(next, kpairs);
  __m256 acc[4];
  for (int q = 0; q < 4; ++q) acc[q] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kpairs; ++p) {
    if (kStream) stream.step();
    __m256 e[4], o[4];
    for (int q = 0; q < 4; ++q) Cols::load(w + p * 64 + q * 16, e[q], o[q]);
    const __m256 xo = _mm256_broadcast_ss(a + 2 * p + 1);
    for (int q = 0; q < 4; ++q) acc[q] = _mm256_fmadd_ps(xo, o[q], acc[q]);
    const __m256 xe = _mm256_broadcast_ss(a + 2 * p);
    for (int q = 0; q < 4; ++q) acc[q] = _mm256_fmadd_ps(xe, e[q], acc[q]);
  }
  for (int q = 0; q < 4; ++q) _mm256_storeu_ps(c + q * 8, Cols::column_order(acc[q]));
}

// Two rows (decode, small experts): all 32 columns in one pass as well, eight chains. The
// half-width passes of gemm_rows<2> had four chains, each two dependent FMAs per K pair, so the FMA
// latency capped a pass near 64 bytes of weights per 8-10 cycles and the block was read twice.
template <typename Cols, bool kStream>
void gemm_two_rows(const float* a, int64_t lda, const uint16_t* w, int64_t kpairs, float* c, const NextLines& next) {
  LineStream stream(next, kpairs);
  __m256 acc[2][4];
  for (int r = 0; r < 2; ++r)
    for (int q = 0; q < 4; ++q) acc[r][q] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kpairs; ++p) {
    _mm_prefetch(reinterpret_cast<const char*>(w + (p + kPrefetchPairs) * 64), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + (p + kPrefetchPairs) * 64 + 32), _MM_HINT_T0);
    if (kStream) stream.step();
    __m256 v[4];
    for (int q = 0; q < 4; ++q) v[q] = Cols::odd(w + p * 64 + q * 16);
    for (int r = 0; r < 2; ++r) {
      const __m256 xo = _mm256_broadcast_ss(a + r * lda + 2 * p + 1);
      for (int q = 0; q < 4; ++q) acc[r][q] = _mm256_fmadd_ps(xo, v[q], acc[r][q]);
    }
    for (int q = 0; q < 4; ++q) v[q] = Cols::even(w + p * 64 + q * 16);
    for (int r = 0; r < 2; ++r) {
      const __m256 xe = _mm256_broadcast_ss(a + r * lda + 2 * p);
      for (int q = 0; q < 4; ++q) acc[r][q] = _mm256_fmadd_ps(xe, v[q], acc[r][q]);
    }
  }
  for (int r = 0; r < 2; ++r)
    for (int q = 0; q < 4; ++q) _mm256_storeu_ps(c + r * 32 + q * 8, Cols::column_order(acc[r][q]));
}

// Which calls stream the next block: those where the A rows of one row block (at most 6), this
// block and the next fit in 384 KiB of the dev machine's 512 KiB L2 (the other A rows of a call
// are idle while one row block runs; the next call, which reads them again, finds them in L3 if
// not in L2). With the limit on the whole call's rows instead, 32-row calls at K = 2048 (266 KiB
// of fp32 rows) did not stream: streaming them too, M = 1024 here ran 2-8% and M = 4096 4-5%
// faster, and a whole stage-1 item of 64 rows 4-5% (K = 2048 has 128 KiB blocks; K = 4096 and
// up, whose two blocks alone fill the L2, still never stream).
constexpr int64_t kStreamBytes = 384 << 10;

int passes_of(int rows) { return rows <= 3 ? 1 : 2; }  // one-pass kernels take 1 to 3 rows

// Three rows: all 32 columns in one pass, twelve chains (the half-width passes had six); the
// weight vectors of two column groups at a time keep it within the 16 registers. The accumulators
// are named variables, odd() takes no mask register, and a compiler barrier after each row's FMAs
// keeps GCC from hoisting the next broadcasts: with an array, the mask and free scheduling, GCC 12
// kept part of the accumulators on the stack (hot block here ~46% of the FMA peak, now ~60%).
template <typename Cols, bool kStream>
void gemm_three_rows(const float* a, int64_t lda, const uint16_t* w, int64_t kpairs, float* c,
                     const NextLines& next) {
  LineStream stream(next, kpairs);
  const float *a0 = a, *a1 = a + lda, *a2 = a + 2 * lda;
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00,
         c20 = c00, c21 = c00, c22 = c00, c23 = c00;
  // Row r's element k times the weight pair (v, u) into accumulators (x, y).
#define MOEKIT_FMA2(ar, k, v, u, x, y)           \
  {                                              \
    const __m256 s = _mm256_broadcast_ss(ar + k); \
    x = _mm256_fmadd_ps(s, v, x);                \
    y = _mm256_fmadd_ps(s, u, y);                \
    asm volatile("" ::: "memory");               \
  }
  for (int64_t p = 0; p < kpairs; ++p) {
    _mm_prefetch(reinterpret_cast<const char*>(w + (p + kPrefetchPairs) * 64), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + (p + kPrefetchPairs) * 64 + 32), _MM_HINT_T0);
    if (kStream) stream.step();
    const uint16_t* wp = w + p * 64;
    const int64_t ko = 2 * p + 1, ke = 2 * p;
    __m256 v = Cols::odd_by_shifts(wp), u = Cols::odd_by_shifts(wp + 16);
    MOEKIT_FMA2(a0, ko, v, u, c00, c01)
    MOEKIT_FMA2(a1, ko, v, u, c10, c11)
    MOEKIT_FMA2(a2, ko, v, u, c20, c21)
    v = Cols::odd_by_shifts(wp + 32), u = Cols::odd_by_shifts(wp + 48);
    MOEKIT_FMA2(a0, ko, v, u, c02, c03)
    MOEKIT_FMA2(a1, ko, v, u, c12, c13)
    MOEKIT_FMA2(a2, ko, v, u, c22, c23)
    v = Cols::even(wp), u = Cols::even(wp + 16);
    MOEKIT_FMA2(a0, ke, v, u, c00, c01)
    MOEKIT_FMA2(a1, ke, v, u, c10, c11)
    MOEKIT_FMA2(a2, ke, v, u, c20, c21)
    v = Cols::even(wp + 32), u = Cols::even(wp + 48);
    MOEKIT_FMA2(a0, ke, v, u, c02, c03)
    MOEKIT_FMA2(a1, ke, v, u, c12, c13)
    MOEKIT_FMA2(a2, ke, v, u, c22, c23)
  }
#undef MOEKIT_FMA2
  const __m256 out[12] = {c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23};
  for (int i = 0; i < 12; ++i) _mm256_storeu_ps(c + (i / 4) * 32 + (i % 4) * 8, Cols::column_order(out[i]));
}

template <typename Cols, bool kStream>
void gemm_block(const float* a, int64_t lda, int rows, const uint16_t* w, int64_t kpairs, float* c,
                const NextLines* next) {
  switch (rows) {
    case 1: gemm_one_row<Cols, kStream>(a, w, kpairs, c, next[0]); break;
    case 2: gemm_two_rows<Cols, kStream>(a, lda, w, kpairs, c, next[0]); break;
    case 3: gemm_three_rows<Cols, kStream>(a, lda, w, kpairs, c, next[0]); break;
    case 4: gemm_rows<Cols, 4, kStream>(a, lda, w, kpairs, c, next); break;
    case 5: gemm_rows<Cols, 5, kStream>(a, lda, w, kpairs, c, next); break;
    default: gemm_rows<Cols, 6, kStream>(a, lda, w, kpairs, c, next); break;
  }
}

// Rows of block b of a call of `rows`, r0 of them in the blocks before: blocks of 6 (the 6-row
// kernel's 12 FMA chains run near 95% of the FMA peak from L2), then the rest in one block (4-5
// rows: two passes; 1-3 rows: the one-pass kernels). Fewer passes over the weight block than an
// even split into blocks of at most 6 (8 rows = 6 + 2 in 3 passes, not 4 + 4 in 4; 13 = 6 + 6 + 1,
// not 5 + 4 + 4). Here (one thread, old/new kernels alternated in one process): whole stage-1
// items (K = 2048) of 8 rows 1-4% faster, 9-14 rows 0-4%, 32 rows 5%, 64 rows 1-11%; stage-2
// walks (K = 768) of 8-row experts 1-7%.
int block_rows(int rows, int r0) { return std::min(6, rows - r0); }

// Up to 32 rows (a whole panel), in blocks of block_rows(). Rows are independent: any split gives
// the same bits. The next block's lines are shared out evenly over all passes (in a chain of
// streaming calls this block is already in L2 when the first pass starts).
template <typename Cols>
void gemm(const void* a_panel, int64_t lda, int rows, const uint16_t* w, int64_t kpairs, float* c,
          const uint16_t* next_w, int64_t next_bytes) {
  const float* a = static_cast<const float*>(a_panel);
  const int blocks = (rows + 5) / 6;
  constexpr int kMaxPasses = 2 * 6;  // 32 rows: at most 6 blocks of two passes
  NextLines shares[kMaxPasses];
  int passes = 0;
  for (int b = 0, r0 = 0; b < blocks; ++b) {
    const int n = block_rows(rows, r0);
    passes += passes_of(n);
    r0 += n;
  }
  const int64_t block_bytes = kpairs * 64 * 2;
  const bool stream = next_w && std::min(rows, 6) * lda * 4 + 2 * block_bytes <= kStreamBytes;
  if (stream) {
    const int64_t lines = next_bytes / 64, share = (lines + passes - 1) / passes;
    for (int q = 0; q < passes; ++q) {
      const int64_t begin = std::min(lines, q * share);
      shares[q].lines = reinterpret_cast<const char*>(next_w) + begin * 64;
      shares[q].count = std::min(lines, begin + share) - begin;
    }
  }
  for (int b = 0, r0 = 0, q = 0; b < blocks; ++b) {
    const int n = block_rows(rows, r0);
    if (stream)
      gemm_block<Cols, true>(a + r0 * lda, lda, n, w, kpairs, c + r0 * 32, shares + q);
    else
      gemm_block<Cols, false>(a + r0 * lda, lda, n, w, kpairs, c + r0 * 32, shares + q);
    q += passes_of(n);
    r0 += n;
  }
}

// Mirrors exp_approx() operation for operation.
__m256 exp_approx8(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);  // (88 < x) ? 88 : x, NaN stays in x
  x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693359375f), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  __m256 y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
  y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
}

__m256 activation8(__m256 g, __m256 u, const ActivationParams& act) {
  const __m256 one = _mm256_set1_ps(1.0f);
  if (act.kind == Activation::kSiluAndMul) {
    const __m256 e = exp_approx8(_mm256_xor_ps(g, _mm256_set1_ps(-0.0f)));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u);
  }
  // kSwigluOai
  const __m256 limit = _mm256_set1_ps(act.limit);
  const __m256 gc = _mm256_min_ps(limit, g);
  __m256 uc = _mm256_min_ps(limit, u);
  uc = _mm256_max_ps(_mm256_set1_ps(-act.limit), uc);
  const __m256 z = _mm256_mul_ps(_mm256_set1_ps(act.alpha), gc);
  const __m256 sig = _mm256_div_ps(one, _mm256_add_ps(one, exp_approx8(_mm256_xor_ps(z, _mm256_set1_ps(-0.0f)))));
  return _mm256_mul_ps(_mm256_mul_ps(gc, sig), _mm256_add_ps(uc, one));
}

// RNE to bf16 / fp16, returned as the fp32 value (bf16 NaN -> quiet NaN, as numeric::float_to_bf16).
__m256 round8(__m256 v, DType dtype) {
  if (dtype == DType::kFloat16)
    return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  return numeric::avx2::round_bf16(v);
}

float round_to(float v, DType dtype) {
  return dtype == DType::kBFloat16 ? numeric::round_bf16(v) : numeric::round_half(v);
}

void activate(const float* gate, const float* up, int count, const ActivationParams& act, DType dtype,
              PanelFormat panel, void* dst) {
  alignas(32) float out[32];
  const bool vector = act.kind == Activation::kSiluAndMul || act.kind == Activation::kSwigluOai;
  int n = 0;
  if (vector)
    for (; n + 8 <= count; n += 8)
      _mm256_store_ps(out + n, round8(activation8(_mm256_loadu_ps(gate + n), _mm256_loadu_ps(up + n), act), dtype));
  for (; n < count; ++n) out[n] = round_to(activation_scalar(gate[n], up[n], act), dtype);
  for (; n < 32; ++n) out[n] = 0.f;
  if (panel == PanelFormat::kFloat32) {
    std::memcpy(dst, out, sizeof(out));
  } else {
    uint16_t* d = static_cast<uint16_t*>(dst);
    for (int i = 0; i < 32; ++i) d[i] = static_cast<uint16_t>(numeric::float_bits(out[i]) >> 16);
  }
}

// The `dtype` bits of 8 fp32 values: RNE as round8 (bf16 NaN -> quiet NaN, as numeric::float_to_bf16).
__m128i encode8(__m256 v, DType dtype) {
  if (dtype == DType::kFloat16) return _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return numeric::avx2::float_to_bf16(v);
}

__m256 decode8(const uint16_t* src, DType dtype) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
  if (dtype == DType::kFloat16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

uint16_t encode(float v, DType dtype) {
  return dtype == DType::kBFloat16 ? numeric::float_to_bf16(v) : numeric::float_to_half(v);
}

float decode(uint16_t v, DType dtype) {
  return dtype == DType::kBFloat16 ? numeric::bf16_to_float(v) : numeric::half_to_float(v);
}

// A whole slot row line (32 values, 64-byte aligned) goes out by four non-temporal stores that fill one
// write-combining buffer: no read for ownership of the scattered ic2 line (dev VM, 1024 tokens: 0.987x
// the time, bit-identical; 4096: 0.999x).
void weighted_round(const float* d, float w, int count, DType dtype, uint16_t* dst) {
  const __m256 wv = _mm256_set1_ps(w);
  if (count == 32 && reinterpret_cast<uintptr_t>(dst) % 64 == 0) {
    for (int q = 0; q < 32; q += 8)
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst + q), encode8(_mm256_mul_ps(wv, _mm256_loadu_ps(d + q)), dtype));
    return;
  }
  int n = 0;
  for (; n + 8 <= count; n += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + n), encode8(_mm256_mul_ps(wv, _mm256_loadu_ps(d + n)), dtype));
  for (; n < count; ++n) dst[n] = encode(w * d[n], dtype);
}

void sum_rows(const uint16_t* const* y, int rows, float scale, int64_t count, DType dtype, uint16_t* out) {
  const __m256 sv = _mm256_set1_ps(scale);
  int64_t n = 0;
  for (; n + 8 <= count; n += 8) {
    __m256 s = _mm256_setzero_ps();
    for (int t = 0; t < rows; ++t) s = _mm256_add_ps(s, decode8(y[t] + n, dtype));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + n), encode8(_mm256_mul_ps(sv, s), dtype));
  }
  for (; n < count; ++n) {
    float s = 0.f;
    for (int t = 0; t < rows; ++t) s += decode(y[t][n], dtype);
    out[n] = encode(scale * s, dtype);
  }
}

const ExpertKernels kBf16 = {CpuIsa::kAvx2, PanelFormat::kFloat32, 32, gemm<Bf16Cols>, activate, weighted_round,
                             sum_rows};
const ExpertKernels kFp16 = {CpuIsa::kAvx2, PanelFormat::kFloat32, 32, gemm<Fp16Cols>, activate, weighted_round,
                             sum_rows};

}  // namespace

const ExpertKernels* avx2_expert_kernels(DType dtype) { return dtype == DType::kBFloat16 ? &kBf16 : &kFp16; }

}  // namespace moekit::cpu
