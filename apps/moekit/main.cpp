// moekit: the command-line program. `moekit info` prints what this machine offers; `moekit bench`
// times one MoE layer (see bench.cpp).
#include <cstdio>
#include <string>

#include "moekit/cpu.h"

int main(int argc, char** argv) {
  std::string cmd = argc > 1 ? argv[1] : "help";
  if (cmd == "info") {
    std::printf("cpu features: %s\n", moekit::cpu_feature_string().c_str());
    std::printf("cpu isa path: %s (best %s), threads %d\n", moekit::cpu_isa_name(moekit::cpu_isa()),
                moekit::cpu_isa_name(moekit::best_cpu_isa()), moekit::cpu_threads());
    return 0;
  }
  std::printf("usage: moekit info | bench [options]\n");
  return cmd == "help" ? 0 : 2;
}
