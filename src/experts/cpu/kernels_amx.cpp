// AMX-BF16 expert kernel (bf16 only): one packed 32-column block per call against the rows of a panel,
// in groups of 32 (gemm_panel); each group:
// - up to 16 rows: A tile 4 (16 rows x 16 K pairs), B tiles 6 / 7 (16 K pairs x columns 0-15 /
//   16-31, read straight from the VNNI-2 block with a 128-byte row stride), C tiles 0 / 1;
// - 17 to 32 rows: 2 x 2 register blocking, A tiles 4 / 5 (rows 0-15 / 16-31) each used for both
//   B tiles, C tiles 0-3: four TDPBF16PS per four tile loads, half the loads of 16-row calls.
// A tile load waits for all 16 of its rows, and the next load into the same tile register cannot
// start before the products that read it, so a tile load that misses L2 stalls the tile unit. The
// caller therefore hands each call the block it multiplies next, which the call streams into L2 spread
// over its K steps: every row group then reads its block from L2 (the first too).
// Software prefetches into L1 cost more than they save once the block is in L2 (AMX host, 2 x 2
// kernel on a 128-row panel and 8 L2-resident blocks: 74-77% of the tile peak without them, 42-60%
// with next-step A and B prefetches into L1; both operands streaming from DRAM: 30-40%). In the
// fused op (qwen3-30b-a3b, 1024 / 4096 tokens, variants interleaved in one process) that stream
// without L1 prefetches ran 15-25% faster than the near / far prefetches of the block being read.
// Whole 16-row A tiles are read (the caller pads its panels by 32 rows); the extra rows'
// results are discarded. Every output is one accumulator over ascending K steps whatever the row
// count, so a token's result does not depend on its neighbours. K pairs come in multiples of 16
// because packed columns are padded to 32. The tile configuration (8 tiles of 16 x 64 bytes) is
// loaded once per worker thread (thread_begin), not per call.
// Epilogue, weighted rounding and slot sum: the avx512bf16 values (activation16 of avx512_math.h),
// rounded to bf16 32 at a time by VCVTNE2PS2BF16, and the slot rows (whole 64-byte lines) written
// with non-temporal stores, which skip the read for ownership of each scattered ic2 line. AMX host,
// qwen3-30b-a3b, 4096 tokens, both interleaved in one process: 230 -> 183 ms with 2 threads, 33.4 ->
// 27.6 ms with 16; without the non-temporal stores the gain is gone (229 ms with 2 threads). A
// reciprocal estimate instead of the activation's division and streaming W2 / W13 blocks two or three
// ahead instead of one gained nothing there.
// The caller's pending epilogue rows (the call before's) run in shares between the K steps (measured
// with per-group calls): the epilogue time goes (2 threads, 4096 tokens: activation 10 -> 1.2 ms, slot
// stores 9.6 -> 2.4 ms) while the tile work slows by most of it; net 3-9% faster over 1024 / 4096 tokens and 2 / 16
// threads in one process (with the 512-row stage-2 items and the gather prefetch, 06:55 UTC run; the
// 04:30 run of the same scheme alone had read as a wash). Tried and dropped (06:35 UTC run): K walked
// in chunks over two to eight blocks against the same A rows, C tiles stored and reloaded between
// chunks, so the A chunk is read from L2 once per chunk (the L2-bandwidth hypothesis): 6-16% slower
// in stage 1, within noise in stage 2.
// gemm_panel is the other way round: one block against every row group of the item, K in
// chunks of 256 pairs, so the block's chunk (32 KiB) is read by all groups from L1 and the 2 x 2
// products take half their bytes from L2 (each product needs 1 KiB of tiles: 64 bytes a cycle at the
// tile peak when all of it comes from L2, where this kernel ran at 65-72% of the peak). The A tiles
// come by TILELOADDT1: with plain loads the A rows streaming through L1 evict the chunk, and the
// chunked kernel was no faster (the 2026-11-25 21:46 run; 2026-11-27 study on the host, one core, 288
// rows, weights streamed: whole K 63%, chunks of 256 pairs 59%, the same with TILELOADDT1 for A
// 69%). In the op (qwen3-30b-a3b, calls alternated in one process, bit-identical outputs; medians):
// stage 1 alone: 4096 tokens 0.84x the time with 1 thread, 0.94-0.98x with 2 (four runs, four core
// pairs), 0.96x with 16; 1024 tokens (memory-bound) 0.91-1.01x. Stage 2 too (K = 768: chunks of 256 and
// 128 pairs), against stage 1 alone: 4096 tokens 0.91 / 0.95x with 2 threads, 0.95x with 1; 1024 0.99x.
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own _mm512_undefined_* values
// (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "experts/cpu/avx512_math.h"
#include "experts/cpu/kernels.h"

namespace moekit::cpu {
namespace {

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
static_assert(sizeof(TileConfig) == 64);

void configure_tiles() {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof(cfg));
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
}

void release_tiles() { _tile_release(); }

// The caller's slice of the next block, streamed into L2 a few lines per K step.
class NextStream {
 public:
  NextStream(const uint16_t* next, int64_t bytes, int64_t steps)
      : line_(reinterpret_cast<const char*>(next)), end_(line_ + (next ? bytes : 0)) {
    per_step_ = next ? (bytes / 64 + steps - 1) / steps : 0;
  }
  inline void step() {
    for (int64_t l = 0; l < per_step_ && line_ < end_; ++l, line_ += 64) _mm_prefetch(line_, _MM_HINT_T1);
  }

 private:
  const char* line_;
  const char* end_;
  int64_t per_step_;
};

// The caller's pending epilogue rows, run in equal shares over the K steps of one call: after step s
// (of `steps`), rows up to first + (s + 1) * left / steps are done.
class PendingRows {
 public:
  PendingRows(RowWork* pending, int64_t steps)
      : work_(pending && pending->done < pending->rows ? pending : nullptr),
        first_(work_ ? work_->done : 0),
        left_(work_ ? work_->rows - work_->done : 0),
        steps_(steps) {}
  inline void step(int64_t s) {
    if (!work_) return;
    const int want = first_ + static_cast<int>((s + 1) * left_ / steps_);
    for (; work_->done < want; ++work_->done) work_->run(work_->ctx, work_->done);
  }

 private:
  RowWork* work_;
  int first_;
  int64_t left_, steps_;
};

// One K chunk [k0, k1) of one row group: C tiles zeroed (first chunk) or reloaded from c, then stored back.
// The A tiles come by TILELOADDT1, so the rows stream from L2 past the block's chunk without pushing it out
// of L1.
template <bool kTwoTiles>
__attribute__((always_inline)) inline void chunk_of_group(const uint16_t* a, int64_t lda, const uint16_t* w, int64_t k0,
                                                          int64_t k1, float* c, NextStream& next, PendingRows& work,
                                                          int64_t& s) {
  const int64_t stride = lda * 2;
  const uint16_t* a1 = a + 16 * lda;
  if (k0 == 0) {
    _tile_zero(0);
    _tile_zero(1);
    if (kTwoTiles) {
      _tile_zero(2);
      _tile_zero(3);
    }
  } else {
    _tile_loadd(0, c, 128);
    _tile_loadd(1, c + 16, 128);
    if (kTwoTiles) {
      _tile_loadd(2, c + 16 * 32, 128);
      _tile_loadd(3, c + 16 * 32 + 16, 128);
    }
  }
  for (int64_t p = k0; p < k1; p += 16, ++s) {
    _tile_stream_loadd(4, a + 2 * p, stride);
    _tile_loadd(6, w + p * 64, 128);
    _tile_loadd(7, w + p * 64 + 32, 128);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    if (kTwoTiles) {
      _tile_stream_loadd(5, a1 + 2 * p, stride);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
    next.step();
    work.step(s);
  }
  _tile_stored(0, c, 128);
  _tile_stored(1, c + 16, 128);
  if (kTwoTiles) {
    _tile_stored(2, c + 16 * 32, 128);
    _tile_stored(3, c + 16 * 32 + 16, 128);
  }
}

// Every row of the panel (groups of 32; the last one 2 x 2 or, with 16 rows or fewer, 1 x 2) times one
// block, K walked in chunks of kChunkPairs (one chunk for a single group): all groups over a chunk
// before the next (see the top of the file). Each output is still one fp32 accumulator over ascending
// K steps, stored and reloaded exactly between chunks: a row's result does not depend on the other
// rows of the call.
constexpr int64_t kChunkPairs = 256;

void gemm_panel(const void* a_panel, int64_t lda, int rows, const uint16_t* w, int64_t kpairs, float* c,
                const uint16_t* next_w, int64_t next_bytes, RowWork* pending) {
  const uint16_t* a = static_cast<const uint16_t*>(a_panel);
  const int groups = (rows + 31) / 32;
  const int64_t chunk = groups > 1 ? kChunkPairs : kpairs;
  NextStream next(next_w, next_bytes, groups * (kpairs / 16));
  PendingRows work(pending, groups * (kpairs / 16));
  int64_t s = 0;
  for (int64_t k0 = 0; k0 < kpairs; k0 += chunk) {
    const int64_t k1 = std::min(kpairs, k0 + chunk);
    for (int g = 0; g < groups; ++g) {
      if (rows - 32 * g > 16)
        chunk_of_group<true>(a + 32 * g * lda, lda, w, k0, k1, c + 32 * 32 * g, next, work, s);
      else
        chunk_of_group<false>(a + 32 * g * lda, lda, w, k0, k1, c + 32 * 32 * g, next, work, s);
    }
  }
}

// ExpertKernels::gemm (one group of up to 32 rows); the op itself calls gemm_panel.
void gemm(const void* a_panel, int64_t lda, int rows, const uint16_t* w, int64_t kpairs, float* c,
          const uint16_t* next_w, int64_t next_bytes) {
  gemm_panel(a_panel, lda, rows, w, kpairs, c, next_w, next_bytes, nullptr);
}

// Epilogues: the values of the avx512bf16 ones, rounded to bf16 by VCVTNE2PS2BF16 (RNE, 32 values
// per instruction) instead of integer rounding; it flushes denormal inputs to zero, as the tile
// unit does with its own inputs and outputs.
__m512i bf16x32(__m512 lo, __m512 hi) { return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); }
__mmask32 first_n(int count) { return count >= 32 ? ~__mmask32{0} : (__mmask32{1} << count) - 1; }

void activate(const float* gate, const float* up, int count, const ActivationParams& act, DType dtype,
              PanelFormat panel, void* dst) {
  if (!(act.kind == Activation::kSiluAndMul || act.kind == Activation::kSwigluOai)) {
    avx512bf16_expert_kernels(DType::kBFloat16)->activate(gate, up, count, act, dtype, panel, dst);
    return;
  }
  const __m512 lo = activation16(_mm512_loadu_ps(gate), _mm512_loadu_ps(up), act);
  const __m512 hi = activation16(_mm512_loadu_ps(gate + 16), _mm512_loadu_ps(up + 16), act);
  _mm512_storeu_si512(dst, _mm512_maskz_mov_epi16(first_n(count), bf16x32(lo, hi)));
}

void weighted_round(const float* d, float w, int count, DType dtype, uint16_t* dst) {
  const __m512 wv = _mm512_set1_ps(w);
  const __m512i v = bf16x32(_mm512_mul_ps(wv, _mm512_loadu_ps(d)), _mm512_mul_ps(wv, _mm512_loadu_ps(d + 16)));
  if (count < 32)
    _mm512_mask_storeu_epi16(dst, first_n(count), v);
  else if (reinterpret_cast<uintptr_t>(dst) % 64 == 0)
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst), v);  // a whole slot row line: no read for ownership
  else
    _mm512_storeu_si512(dst, v);
}

__m512 widen(__m256i bf16) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bf16), 16)); }

void sum_rows(const uint16_t* const* y, int rows, float scale, int64_t count, DType dtype, uint16_t* out) {
  const __m512 sv = _mm512_set1_ps(scale);
  for (int64_t n = 0; n < count; n += 32) {
    const __mmask32 m = first_n(static_cast<int>(std::min<int64_t>(32, count - n)));
    __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
    for (int t = 0; t < rows; ++t) {
      const __m512i h = _mm512_maskz_loadu_epi16(m, y[t] + n);
      lo = _mm512_add_ps(lo, widen(_mm512_castsi512_si256(h)));
      hi = _mm512_add_ps(hi, widen(_mm512_extracti64x4_epi64(h, 1)));
    }
    _mm512_mask_storeu_epi16(out + n, m, bf16x32(_mm512_mul_ps(sv, lo), _mm512_mul_ps(sv, hi)));
  }
}

}  // namespace

const ExpertKernels* amx_expert_kernels(DType dtype) {
  if (dtype != DType::kBFloat16) return nullptr;
  static const ExpertKernels kernels = [] {
    ExpertKernels k = *avx512bf16_expert_kernels(DType::kBFloat16);
    k.isa = CpuIsa::kAmx;
    k.panel = PanelFormat::kBFloat16;
    k.max_rows = 32;
    k.gemm = gemm;
    k.activate = activate;
    k.weighted_round = weighted_round;
    k.sum_rows = sum_rows;
    k.thread_begin = configure_tiles;
    k.thread_end = release_tiles;
    k.gemm_panel = gemm_panel;
    return k;
  }();
  return &kernels;
}

}  // namespace moekit::cpu
