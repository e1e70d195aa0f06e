#include "common/cpu_features.h"

#include <cpuid.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>

#include "common/checks.h"

namespace moekit {
namespace detail {
namespace {

uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

// Linux refuses AMX tile data until the process asks for it (arch_prctl ARCH_REQ_XCOMP_PERM).
bool request_amx_permission() {
  constexpr long kArchGetXcompPerm = 0x1022, kArchReqXcompPerm = 0x1023, kXfeatureTileData = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureTileData) != 0) return false;
  unsigned long bitmask = 0;
  if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &bitmask) != 0) return false;
  return (bitmask & (1ul << kXfeatureTileData)) != 0;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  bool osxsave = (c >> 27) & 1;
  f.fma = (c >> 12) & 1;
  f.f16c = (c >> 29) & 1;
  uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  bool os_avx = (xcr0 & 0x6) == 0x6;
  bool os_avx512 = (xcr0 & 0xe6) == 0xe6;
  bool os_amx = (xcr0 & 0x60000) == 0x60000;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = os_avx && ((b >> 5) & 1);
  f.avx512f = os_avx512 && ((b >> 16) & 1);
  f.avx512bw = os_avx512 && ((b >> 30) & 1);
  f.avx512vl = os_avx512 && ((b >> 31) & 1);
  f.avx512vnni = os_avx512 && ((c >> 11) & 1);
  f.avx512fp16 = os_avx512 && ((d >> 23) & 1);
  f.amx_bf16 = os_amx && ((d >> 22) & 1);
  f.amx_tile = os_amx && ((d >> 24) & 1);
  f.amx_int8 = os_amx && ((d >> 25) & 1);
  __cpuid_count(7, 1, a, b, c, d);
  f.avxvnni = os_avx && ((a >> 4) & 1);
  f.avx512bf16 = os_avx512 && ((a >> 5) & 1);
  if (!f.fma || !f.f16c) f.avx2 = false;
  if (f.amx_tile && f.amx_bf16) f.amx_permitted = request_amx_permission();
  return f;
}

std::once_flag g_isa_once;
std::atomic<int> g_isa{-1};
std::atomic<int> g_threads{0};

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

bool cpu_supports(CpuIsa isa) {
  const CpuFeatures& f = cpu_features();
  bool avx512 = f.avx2 && f.avx512f && f.avx512bw && f.avx512vl;
  switch (isa) {
    case CpuIsa::kScalar: return true;
    case CpuIsa::kAvx2: return f.avx2;
    case CpuIsa::kAvx512: return avx512;
    case CpuIsa::kAvx512Bf16: return avx512 && f.avx512bf16;
    case CpuIsa::kAmx: return avx512 && f.avx512bf16 && f.amx_tile && f.amx_bf16 && f.amx_permitted;
  }
  return false;
}

CpuIsa active_cpu_isa() {
  std::call_once(g_isa_once, [] {
    if (g_isa.load() >= 0) return;
    const char* env = std::getenv("MOEKIT_CPU_ISA");
    CpuIsa isa = best_cpu_isa();
    if (env && *env) {
      isa = parse_cpu_isa(env);
      if (!cpu_supports(isa))
        fail(cat("MOEKIT_CPU_ISA: expected a path this CPU supports, got ", env), ErrorKind::NotSupported);
    }
    g_isa.store(static_cast<int>(isa));
  });
  return static_cast<CpuIsa>(g_isa.load());
}

}  // namespace detail

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar: return "scalar";
    case CpuIsa::kAvx2: return "avx2";
    case CpuIsa::kAvx512: return "avx512";
    case CpuIsa::kAvx512Bf16: return "avx512bf16";
    case CpuIsa::kAmx: return "amx";
  }
  return "unknown";
}

CpuIsa parse_cpu_isa(const std::string& name) {
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16, CpuIsa::kAmx})
    if (name == cpu_isa_name(isa)) return isa;
  detail::fail(detail::cat("cpu isa: expected one of scalar, avx2, avx512, avx512bf16, amx, got '", name, "'"));
}

CpuIsa best_cpu_isa() {
  CpuIsa best = CpuIsa::kScalar;
  for (CpuIsa isa : supported_cpu_isas()) best = isa;
  return best;
}

std::vector<CpuIsa> supported_cpu_isas() {
  std::vector<CpuIsa> out;
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16, CpuIsa::kAmx})
    if (detail::cpu_supports(isa)) out.push_back(isa);
  return out;
}

CpuIsa cpu_isa() { return detail::active_cpu_isa(); }

void set_cpu_isa(CpuIsa isa) {
  if (!detail::cpu_supports(isa))
    detail::fail(detail::cat("isa: expected a path this CPU supports (", cpu_feature_string(), "), got ",
                             cpu_isa_name(isa)),
                 ErrorKind::NotSupported);
  detail::active_cpu_isa();  // run the one-time init first so it cannot overwrite this choice
  detail::g_isa.store(static_cast<int>(isa));
}

std::string cpu_feature_string() {
  const detail::CpuFeatures& f = detail::cpu_features();
  std::string s;
  // Appended in place: GCC 12 flagged the temporary of `"" + std::string` (-Wrestrict, a false positive).
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add(f.avx2, "avx2"); add(f.fma, "fma"); add(f.f16c, "f16c"); add(f.avxvnni, "avx-vnni");
  add(f.avx512f, "avx512f"); add(f.avx512bw, "avx512bw"); add(f.avx512vl, "avx512vl");
  add(f.avx512vnni, "avx512-vnni"); add(f.avx512bf16, "avx512-bf16"); add(f.avx512fp16, "avx512-fp16");
  add(f.amx_tile, "amx-tile"); add(f.amx_bf16, "amx-bf16"); add(f.amx_int8, "amx-int8");
  if (f.amx_tile) s += f.amx_permitted ? " (amx permitted)" : " (amx NOT permitted by the OS)";
  return s;
}

int cpu_threads() {
  int t = detail::g_threads.load();
  if (t > 0) return t;
  const char* env = std::getenv("MOEKIT_CPU_THREADS");
  if (env && std::atoi(env) > 0) {
    t = std::atoi(env);
  } else {
    cpu_set_t set;
    t = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
  }
  detail::g_threads.store(t);
  return t;
}

void set_cpu_threads(int threads) {
  detail::check_range("threads", threads, 1, 4096);
  detail::g_threads.store(threads);
}

}  // namespace moekit
