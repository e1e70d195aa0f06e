// moekit: the command-line program. `moekit info` prints what this machine offers, `moekit ceilings`
// measures its bandwidth and peak, `moekit bench` times one MoE layer (see bench.cpp).
#include <cstdio>
#include <string>

#include "ceilings.h"
#include "commands.h"
#include "moekit/cpu.h"
#include "moekit/status.h"

namespace moekit::bench {

int info_command() {
  std::printf("cpu features: %s\n", cpu_feature_string().c_str());
  std::printf("cpu isa path: %s (best %s), threads %d\n", cpu_isa_name(cpu_isa()), cpu_isa_name(best_cpu_isa()),
              cpu_threads());
  for (const std::string& line : gpu_info_lines()) std::printf("gpu: %s\n", line.c_str());
  return 0;
}

}  // namespace moekit::bench

int main(int argc, char** argv) {
  std::string cmd = argc > 1 ? argv[1] : "help";
  try {
    if (cmd == "info") return moekit::bench::info_command();
    if (cmd == "bench") return moekit::bench::bench_command(argc - 2, argv + 2);
    if (cmd == "ceilings") return moekit::bench::ceilings_command(argc - 2, argv + 2);
  } catch (const moekit::Error& e) {
    std::fprintf(stderr, "moekit %s: %s\n", cmd.c_str(), e.what());
    return e.kind() == moekit::ErrorKind::InvalidArgument ? 2 : 1;
  }
  std::printf("usage: moekit info | ceilings [--threads N] | bench [options] (moekit bench --help lists them)\n");
  return cmd == "help" || cmd == "--help" ? 0 : 2;
}
