// x86 CPU feature detection and the run-time choice of the CPU instruction-set path.
// MOEKIT_CPU_ISA={amx,avx512bf16,avx512,avx2,scalar} forces a path (error if the CPU lacks it).
#pragma once

#include <string>

#include "moekit/cpu.h"

namespace moekit::detail {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512vnni = false;
  bool avx512bf16 = false, avx512fp16 = false, avxvnni = false;
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false;
  bool amx_permitted = false;  // the OS granted XTILEDATA to this process
};

const CpuFeatures& cpu_features();
bool cpu_supports(CpuIsa isa);
// The path ops run on now: forced (API or env) or the best supported.
CpuIsa active_cpu_isa();

}  // namespace moekit::detail
