#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "bench_backend.h"
#include "bench_layer.h"
#include "ceilings.h"
#include "common/checks.h"
#include "common/parallel.h"

namespace moekit::bench {

namespace {

std::vector<CpuPeakLoop>& peak_registry() {
  static std::vector<CpuPeakLoop> list;
  return list;
}

std::string read_line(const std::filesystem::path& path) {
  std::ifstream f(path);
  std::string s;
  std::getline(f, s);
  return s;
}

}  // namespace

size_t last_level_cache_bytes() {
  namespace fs = std::filesystem;
  std::map<std::string, size_t> instances;  // shared_cpu_list -> size, for the highest level
  int best_level = 0;
  std::error_code ec;
  for (const auto& cpu : fs::directory_iterator("/sys/devices/system/cpu", ec)) {
    std::string name = cpu.path().filename().string();
    if (name.rfind("cpu", 0) != 0 || name.size() < 4 || !std::isdigit(static_cast<unsigned char>(name[3]))) continue;
    for (const auto& index : fs::directory_iterator(cpu.path() / "cache", ec)) {
      if (index.path().filename().string().rfind("index", 0) != 0) continue;
      int level = std::atoi(read_line(index.path() / "level").c_str());
      std::string size = read_line(index.path() / "size");  // "32768K"
      if (size.empty() || level < best_level) continue;
      size_t bytes = std::stoull(size);
      if (size.back() == 'K') bytes <<= 10;
      if (size.back() == 'M') bytes <<= 20;
      if (level > best_level) {
        best_level = level;
        instances.clear();
      }
      instances[read_line(index.path() / "shared_cpu_list")] = bytes;
    }
  }
  size_t total = 0;
  for (const auto& [cpus, bytes] : instances) total += bytes;
  if (total == 0) {
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    total = l3 > 0 ? static_cast<size_t>(l3) : 0;
  }
  return total;
}

void flush_cpu_caches() {
  static HostBuffer buffer(std::max<size_t>(2 * last_level_cache_bytes(), size_t{64} << 20));
  auto* p = static_cast<unsigned char*>(buffer.data());
  static unsigned char value = 0;
  ++value;
  detail::parallel_for(static_cast<int64_t>(buffer.bytes() / 64), 1 << 12, [&](int64_t b, int64_t e) {
    for (int64_t line = b; line < e; ++line) p[line * 64] = value;
  });
}

double measure_cpu_read_bandwidth(int threads, size_t bytes) {
  HostBuffer buffer(bytes);
  auto* base = static_cast<unsigned char*>(buffer.data());
  const size_t lines = bytes / 64;
  // Each thread touches first (so owns, NUMA-wise) the part it reads.
#pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num(), n = omp_get_num_threads();
    for (size_t i = lines * t / n * 64; i < lines * (t + 1) / n * 64; i += 4096) base[i] = static_cast<unsigned char>(i >> 12);
  }
  const std::vector<CpuIsa> isas = supported_cpu_isas();
  const bool avx2 = std::find(isas.begin(), isas.end(), CpuIsa::kAvx2) != isas.end();
  std::vector<double> seconds;
  unsigned long long sink = 0;
  double started = now_seconds();
  // One untimed pass, then passes until 0.5 s have gone by (at least 3); the fastest one counts.
  // A ceiling is what the machine can deliver: on a shared VM a neighbour's traffic in some passes
  // pulled the median down to half of it (29 vs 64 GB/s in two runs a minute apart, 2026-11-26),
  // which put the memory-bound layers at "0.5 x floor".
  for (int pass = 0; pass < 4 || now_seconds() - started < 0.5; ++pass) {
    double t0 = now_seconds();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      int t = omp_get_thread_num(), n = omp_get_num_threads();
      size_t begin = lines * t / n * 64, end = lines * (t + 1) / n * 64;
      sink += avx2 ? read_sum_avx2(base + begin, end - begin) : read_sum_scalar(base + begin, end - begin);
    }
    if (pass > 0) seconds.push_back(now_seconds() - t0);
    if (pass > 200) break;
  }
  volatile unsigned long long keep = sink;
  (void)keep;
  return static_cast<double>(bytes) / summarize(seconds).min_s;
}

bool register_cpu_peak(const CpuPeakLoop& loop) {
  peak_registry().push_back(loop);
  return true;
}

unsigned long long read_sum_scalar(const void* data, size_t bytes) {
  const auto* p = static_cast<const unsigned long long*>(data);
  unsigned long long a = 0, b = 0, c = 0, d = 0;
  for (size_t i = 0; i + 4 <= bytes / 8; i += 4) {
    a += p[i];
    b += p[i + 1];
    c += p[i + 2];
    d += p[i + 3];
  }
  return a + b + c + d;
}

const CpuPeak* CpuCeilings::peak_for_active_isa() const {
  const CpuPeak* best = nullptr;
  for (const CpuPeak& p : peaks)
    if (p.isa <= cpu_isa() && (!best || p.isa >= best->isa)) best = &p;
  return best;
}

CpuCeilings measure_cpu_ceilings(int threads) {
  CpuCeilings c;
  c.threads = threads;
  c.buffer_bytes = std::max<size_t>(8 * last_level_cache_bytes(), size_t{512} << 20);
  c.read_bytes_per_s = measure_cpu_read_bandwidth(threads, c.buffer_bytes);
  std::vector<CpuPeakLoop> loops = peak_registry();
  std::sort(loops.begin(), loops.end(), [](const CpuPeakLoop& a, const CpuPeakLoop& b) { return a.isa < b.isa; });
  const std::vector<CpuIsa> supported = supported_cpu_isas();
  for (const CpuPeakLoop& loop : loops)
    if (std::find(supported.begin(), supported.end(), loop.isa) != supported.end())
      c.peaks.push_back({loop.name, loop.isa, loop.measure(threads, 0.3), loop.measure});
  return c;
}

#if !defined(MOEKIT_WITH_CUDA)
GpuCeilings measure_gpu_ceilings() {
  detail::fail("GPU ceilings: this build of moekit has no CUDA support (MOEKIT_CUDA=OFF)",
               ErrorKind::NotSupported);
}
std::vector<std::string> gpu_info_lines() { return {"none (built without CUDA)"}; }
#endif

}  // namespace moekit::bench
