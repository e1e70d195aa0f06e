// The sub-commands of the `moekit` program.
#pragma once

namespace moekit::bench {
int info_command();
// argv holds the options after "bench".
int bench_command(int argc, char** argv);
// Measures and prints the CPU ceilings, and the GPU ones in CUDA builds.
int ceilings_command(int argc, char** argv);
}  // namespace moekit::bench
