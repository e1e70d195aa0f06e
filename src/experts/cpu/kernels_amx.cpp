// AMX-BF16 expert kernel (bf16 only), one packed 32-column block per call:
// - up to 16 rows: A tile 4 (16 rows x 16 K pairs), B tiles 6 / 7 (16 K pairs x columns 0-15 /
//   16-31, read straight from the VNNI-2 block with a 128-byte row stride), C tiles 0 / 1;
// - 17 to 32 rows: 2 x 2 register blocking, A tiles 4 / 5 (rows 0-15 / 16-31) each used for both
//   B tiles, C tiles 0-3: four TDPBF16PS per four tile loads, half the loads of 16-row calls.
// The A and B lines of the K step two ahead are prefetched into L1, and the B stream 8 steps ahead
// into L2: a tile load waits for all 16 of its rows, and the next load into the same tile register
// cannot start before the products that read it, so a miss on a tile load stalls the tile unit
// (AMX host, qwen3 layer: with these prefetches 16-1024 tokens ran 10-20% faster than with the
// near B prefetch alone; at 4096 tokens runs varied by +-15%, bench/RESULTS.md).
// Whole 16-row A tiles are read (the caller guarantees `read_rows` readable rows); the extra rows'
// results are discarded. Every output is one accumulator over ascending K steps whatever the row
// count, so a token's result does not depend on its neighbours. K pairs come in multiples of 16
// because packed columns are padded to 32. The tile configuration (8 tiles of 16 x 64 bytes) is
// loaded once per worker thread (thread_begin), not per call. Epilogue and weighted add are the
// AVX-512 ones.
#include <immintrin.h>

#include <cstring>

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

constexpr int64_t kPrefetchPairs = 32;  // K pairs ahead (two steps of 16)

// B lines of the step kPrefetchPairs ahead: 16 K pairs x 32 columns = 32 lines of 64 bytes.
inline void prefetch_b(const uint16_t* w, int64_t p) {
  const char* b = reinterpret_cast<const char*>(w + (p + kPrefetchPairs) * 64);
  for (int l = 0; l < 32; ++l) _mm_prefetch(b + l * 64, _MM_HINT_T0);
}

// The B stream 8 steps ahead into L2 (every other line; the L2 fetches 128-byte pairs), so the
// first pass over a block from DRAM overlaps the products instead of waiting on each tile load.
constexpr int64_t kFarPairs = 128;
inline void prefetch_b_far(const uint16_t* w, int64_t p) {
  const char* b = reinterpret_cast<const char*>(w + (p + kFarPairs) * 64);
  for (int l = 0; l < 16; ++l) _mm_prefetch(b + l * 128, _MM_HINT_T1);
}

// A lines of the same step: one 64-byte line per row of a 16-row tile.
inline void prefetch_a(const uint16_t* a, int64_t stride, int64_t p) {
  const char* row = reinterpret_cast<const char*>(a + 2 * (p + kPrefetchPairs));
  for (int r = 0; r < 16; ++r) _mm_prefetch(row + r * stride, _MM_HINT_T0);
}

void gemm(const void* a_panel, int64_t lda, int rows, const uint16_t* w, int64_t kpairs, float* c,
          const uint16_t* next_w) {
  const uint16_t* a = static_cast<const uint16_t*>(a_panel);
  const int64_t stride = lda * 2;
  _tile_zero(0);
  _tile_zero(1);
  if (rows <= 16) {
    for (int64_t p = 0; p < kpairs; p += 16) {
      _tile_loadd(4, a + 2 * p, stride);
      _tile_loadd(6, w + p * 64, 128);
      _tile_loadd(7, w + p * 64 + 32, 128);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      prefetch_b(w, p);
      prefetch_b_far(w, p);
      prefetch_a(a, stride, p);
    }
    _tile_stored(0, c, 128);
    _tile_stored(1, c + 16, 128);
    return;
  }
  const uint16_t* a1 = a + 16 * lda;
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t p = 0; p < kpairs; p += 16) {
    _tile_loadd(4, a + 2 * p, stride);
    _tile_loadd(6, w + p * 64, 128);
    _tile_loadd(7, w + p * 64 + 32, 128);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    prefetch_b(w, p);
    prefetch_b_far(w, p);
    prefetch_a(a, stride, p);
    _tile_loadd(5, a1 + 2 * p, stride);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
    prefetch_a(a1, stride, p);
  }
  _tile_stored(0, c, 128);
  _tile_stored(1, c + 16, 128);
  _tile_stored(2, c + 16 * 32, 128);
  _tile_stored(3, c + 16 * 32 + 16, 128);
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
    k.read_rows = 32;
    k.thread_begin = configure_tiles;
    k.thread_end = release_tiles;
    return k;
  }();
  return &kernels;
}

}  // namespace moekit::cpu
