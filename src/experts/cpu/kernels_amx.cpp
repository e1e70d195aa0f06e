// AMX-BF16 expert kernel (bf16 only): C tiles 0/1 = 16 rows x columns 0-15 / 16-31 of one packed
// block; A tile 2 = 16 rows x 16 K pairs; B tiles 3/4 = 16 K pairs x 16 columns, read straight from
// the VNNI-2 block with a 128-byte row stride. Always 16 A rows (the caller guarantees they are
// readable; rows past `rows` are computed and discarded). K pairs come in multiples of 16 because
// packed columns are padded to 32. Epilogue and weighted add are the AVX2 ones.
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

void gemm(const void* a_panel, int64_t lda, int rows, const uint16_t* w, int64_t kpairs, float* c) {
  const uint16_t* a = static_cast<const uint16_t*>(a_panel);
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof(cfg));
  cfg.palette_id = 1;
  for (int t = 0; t < 5; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
  _tile_zero(0);
  _tile_zero(1);
  for (int64_t p = 0; p < kpairs; p += 16) {
    _tile_loadd(2, a + 2 * p, lda * 2);
    _tile_loadd(3, w + p * 64, 128);
    _tile_loadd(4, w + p * 64 + 32, 128);
    _tile_dpbf16ps(0, 2, 3);
    _tile_dpbf16ps(1, 2, 4);
  }
  _tile_stored(0, c, 128);
  _tile_stored(1, c + 16, 128);
  _tile_release();
}

}  // namespace

const ExpertKernels* amx_expert_kernels(DType dtype) {
  if (dtype != DType::kBFloat16) return nullptr;
  static const ExpertKernels kernels = [] {
    ExpertKernels k = *avx2_expert_kernels(DType::kBFloat16);
    k.isa = CpuIsa::kAmx;
    k.panel = PanelFormat::kBFloat16;
    k.max_rows = 16;
    k.gemm = gemm;
    k.read_rows = 16;
    return k;
  }();
  return &kernels;
}

}  // namespace moekit::cpu
