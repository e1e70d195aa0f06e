// CPU back-end controls: which instruction-set path runs and how many threads.
#pragma once

#include <string>
#include <vector>

#include "moekit/status.h"

namespace moekit {

// Ordered from the most portable to the fastest.
enum class CpuIsa { kScalar, kAvx2, kAvx512, kAvx512Bf16, kAmx };

MOEKIT_API const char* cpu_isa_name(CpuIsa isa);
MOEKIT_API CpuIsa parse_cpu_isa(const std::string& name);  // throws on an unknown name

// The best path this CPU supports and every supported path, most portable first.
MOEKIT_API CpuIsa best_cpu_isa();
MOEKIT_API std::vector<CpuIsa> supported_cpu_isas();
// The path ops use now. Initially MOEKIT_CPU_ISA if set, else best_cpu_isa().
MOEKIT_API CpuIsa cpu_isa();
// Force a path for this process; throws NotSupported if this CPU lacks it.
MOEKIT_API void set_cpu_isa(CpuIsa isa);
// One line listing the detected x86 features ("avx2 fma f16c avx512f ... amx-bf16").
MOEKIT_API std::string cpu_feature_string();

// Threads the CPU ops use: MOEKIT_CPU_THREADS if set, else the CPUs in the affinity mask.
MOEKIT_API int cpu_threads();
MOEKIT_API void set_cpu_threads(int threads);  // >= 1

}  // namespace moekit
