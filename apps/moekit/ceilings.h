// The machine ceilings the bench measures at the start of each run, so every figure sits beside
// the roofline of the machine it ran on: floor = max(bytes / bandwidth, flops / peak).
//
// CPU: DRAM read bandwidth (read-only streaming sum over a buffer >= 8x the last-level caches, all
// threads, the fastest of the passes of half a second) and, per ISA path, the peak of a
// register-resident multiply-add loop on all threads. `moekit bench` reads the bandwidth and the
// active ISA's peak again after every CPU row and keeps the highest readings (shared hosts move both).
// Each ISA's peak loop lives in ceilings_<isa>.cpp (compiled with that ISA's flags, run only when
// this CPU supports it) and registers itself with MOEKIT_REGISTER_CPU_PEAK.
// GPU: device-to-device copy bandwidth (cudaMemcpyAsync of 1 GiB, bytes read + written / time) and
// the bf16 dense matmul peak (cublasGemmEx 8192^3, bf16 in, fp32 accumulate, median of several).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "moekit/cpu.h"

namespace moekit::bench {

struct CpuPeakLoop {
  const char* name;  // "avx2 fma fp32"
  CpuIsa isa;        // runs only when supported_cpu_isas() holds it
  // FLOP/s of all `threads` together, measured for about `seconds`.
  double (*measure)(int threads, double seconds);
};
bool register_cpu_peak(const CpuPeakLoop& loop);

struct CpuPeak {
  std::string name;
  CpuIsa isa;
  double flops = 0;                                  // FLOP/s
  double (*measure)(int threads, double seconds);  // the loop that measured it, to measure again
};

struct CpuCeilings {
  int threads = 0;
  size_t buffer_bytes = 0;
  double read_bytes_per_s = 0;
  std::vector<CpuPeak> peaks;  // most portable ISA first
  // The peak of the ISA path the CPU ops run on now (cpu_isa()), else the fastest ISA at or below it.
  const CpuPeak* peak_for_active_isa() const;
};

CpuCeilings measure_cpu_ceilings(int threads);
// The read bandwidth part alone (bytes / s): `moekit bench` takes it again after every CPU row,
// since on a shared VM a whole half-second window can read half of what the machine delivers.
double measure_cpu_read_bandwidth(int threads, size_t bytes);

// Bytes of the highest cache level over all its instances (sysfs; e.g. 2 x 105 MiB on a two-socket
// host), 0 when unknown.
size_t last_level_cache_bytes();
// Evicts the caches: every thread writes its part of a buffer of twice the last-level cache, so
// the next run reads its weights from DRAM (a decode layer's weights fit in L3 on big hosts).
void flush_cpu_caches();

// Read-only streaming sum of `bytes` at `data` (64-byte aligned, multiple of 64), one thread.
// The AVX2 version is used when the CPU has it.
unsigned long long read_sum_scalar(const void* data, size_t bytes);
unsigned long long read_sum_avx2(const void* data, size_t bytes);

struct GpuCeilings {
  std::string device;
  double copy_bytes_per_s = 0;  // (read + written) / time
  double bf16_flops = 0;        // FLOP/s
};

// CUDA builds only (throws NotSupported otherwise). Uses device 0.
GpuCeilings measure_gpu_ceilings();
// "none" when this build has no CUDA or the machine no GPU; else one line per device.
std::vector<std::string> gpu_info_lines();

}  // namespace moekit::bench

#define MOEKIT_CEILINGS_CONCAT_(a, b) a##b
#define MOEKIT_CEILINGS_CONCAT(a, b) MOEKIT_CEILINGS_CONCAT_(a, b)
#define MOEKIT_REGISTER_CPU_PEAK(name, isa, fn)                                    \
  static const bool MOEKIT_CEILINGS_CONCAT(moekit_cpu_peak_registered_, __LINE__) = \
      ::moekit::bench::register_cpu_peak({name, isa, fn})
