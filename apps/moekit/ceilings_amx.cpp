// AMX-BF16 peak: TDPBF16PS on full 16 x 64-byte tiles (16 x 16 x 32 multiply-adds = 16384 FLOP per
// instruction), four independent accumulator tiles fed by two A and two B tiles (all 8 tiles).
// Compiled with the amx flags; runs only where supported and the OS granted tile data (cpu.h).
#include <immintrin.h>
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "bench_backend.h"
#include "ceilings.h"

namespace moekit::bench {
namespace {

struct alignas(64) TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

double tdpbf16_peak(int threads, double seconds) {
  std::vector<double> rate(threads, 0.0);
#pragma omp parallel num_threads(threads)
  {
    TileConfig config;
    for (int t = 0; t < 8; ++t) {
      config.colsb[t] = 64;
      config.rows[t] = 16;
    }
    _tile_loadconfig(&config);
    alignas(64) uint16_t operand[16 * 32];
    for (uint16_t& v : operand) v = 0x3a83;  // bf16 ~1e-3: the accumulators stay small
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, operand, 64);
    _tile_loadd(5, operand, 64);
    _tile_loadd(6, operand, 64);
    _tile_loadd(7, operand, 64);
    constexpr long kInner = 1024;
    long iterations = 0;
    double start = now_seconds(), elapsed = 0;
    do {
      for (long i = 0; i < kInner; ++i) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      iterations += kInner;
      elapsed = now_seconds() - start;
    } while (elapsed < seconds);
    alignas(64) float result[16 * 16];
    _tile_stored(0, result, 64);
    volatile float keep = result[0];
    (void)keep;
    _tile_release();
    rate[omp_get_thread_num()] = static_cast<double>(iterations) * 4 * 16384 / elapsed;
  }
  double total = 0;
  for (double r : rate) total += r;
  return total;
}

}  // namespace

MOEKIT_REGISTER_CPU_PEAK("amx-bf16 tdpbf16ps", CpuIsa::kAmx, tdpbf16_peak);

}  // namespace moekit::bench
