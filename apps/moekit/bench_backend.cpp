#include "bench_backend.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "ceilings.h"

namespace moekit::bench {

namespace {
std::vector<BackendEntry>& registry() {
  static std::vector<BackendEntry> list;
  return list;
}
}  // namespace

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Timing summarize(std::vector<double> seconds) {
  Timing t;
  t.samples = static_cast<int>(seconds.size());
  if (seconds.empty()) return t;
  std::sort(seconds.begin(), seconds.end());
  size_t n = seconds.size();
  t.median_s = n % 2 ? seconds[n / 2] : 0.5 * (seconds[n / 2 - 1] + seconds[n / 2]);
  t.min_s = seconds.front();
  return t;
}

Timing Backend::time(const TimingOptions& options) {
  for (int i = 0; i < options.warmup; ++i) run();
  std::vector<double> seconds;
  for (int i = 0; i < options.repeat; ++i) {
    flush_cpu_caches();
    double start = now_seconds();
    run();
    seconds.push_back(now_seconds() - start);
  }
  return summarize(std::move(seconds));
}

bool register_backend(const BackendEntry& entry) {
  auto& list = registry();
  list.push_back(entry);
  std::sort(list.begin(), list.end(),
            [](const BackendEntry& a, const BackendEntry& b) { return std::strcmp(a.name, b.name) < 0; });
  return true;
}

const std::vector<BackendEntry>& registered_backends() { return registry(); }

const BackendEntry* find_backend(const std::string& name) {
  for (const BackendEntry& e : registry())
    if (name == e.name) return &e;
  return nullptr;
}

}  // namespace moekit::bench
