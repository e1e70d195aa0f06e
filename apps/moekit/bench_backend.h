// The plug-in interface of `moekit bench`: one back end per file (backend_<name>.cpp / .cu), each
// registering itself with MOEKIT_REGISTER_BACKEND. The bench drives every back end the same way:
//
//   available()          can it run here (device present, library built with it)?
//   prepare(layer)       untimed: pack weights, upload them, allocate what every batch needs
//   set_batch(batch)     untimed: stage the first M tokens' inputs and the output buffer
//   time(options)        the timed region: runs the staged batch warmup + repeat times
//   fetch_output(out)    copies the last result to the host, [M, H] in the activation dtype
//
// The bench checks that output against reference::fused_experts on a sample of rows and prints
// it beside the roofline of the back end's device (ceilings.h).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "bench_layer.h"
#include "moekit/tensor.h"

namespace moekit::bench {

struct TimingOptions {
  int warmup = 1;
  int repeat = 5;
};

struct Timing {
  double median_s = 0;
  double min_s = 0;
  int samples = 0;
};

// Median / minimum of per-run seconds.
Timing summarize(std::vector<double> seconds);

class Backend {
 public:
  virtual ~Backend() = default;

  // Which ceilings (CPU or GPU) its roofline uses.
  virtual DeviceKind device() const = 0;
  // False with a reason when it cannot run in this build or on this machine.
  virtual bool available(std::string* why) const = 0;
  // One line for the table header: ISA path and threads, GPU name, library version...
  // A baseline (someone else's kernels, timed for comparison): its numerics are its own, so a failed
  // check is reported but does not fail the command.
  virtual bool is_baseline() const { return false; }
  virtual std::string describe() const { return {}; }
  // Token counts when --tokens is not given, and the timing loop when --warmup/--repeat are not.
  virtual std::vector<int64_t> default_tokens() const = 0;
  virtual TimingOptions default_timing() const { return {}; }
  // False with a reason when this layer (scheme, shape) is outside what it implements.
  virtual bool supports(const MoeLayer& layer, std::string* why) const { return true; }

  virtual void prepare(const MoeLayer& layer) = 0;
  virtual void set_batch(const RoutedBatch& batch) = 0;
  // One forward pass of the staged batch, finished when it returns.
  virtual void run() = 0;
  // Default: host wall clock around each run(), after a write over twice the last-level cache
  // (cold caches, as a layer meets them in a model). GPU back ends override this (cuda_timing.h:
  // graph replay with an L2 flush before each one, events, median).
  virtual Timing time(const TimingOptions& options);
  virtual void fetch_output(TensorView host_output) = 0;
};

struct BackendEntry {
  const char* name;
  // `--backend auto` picks the available entry of highest rank (reference 0, cpu 10, cuda 20).
  int rank;
  const char* summary;
  std::unique_ptr<Backend> (*make)();
};

// Registration happens during static initialisation of the executable; the list is sorted by name.
bool register_backend(const BackendEntry& entry);
const std::vector<BackendEntry>& registered_backends();
const BackendEntry* find_backend(const std::string& name);

double now_seconds();

}  // namespace moekit::bench

#define MOEKIT_BENCH_CONCAT_(a, b) a##b
#define MOEKIT_BENCH_CONCAT(a, b) MOEKIT_BENCH_CONCAT_(a, b)
// MOEKIT_REGISTER_BACKEND("cpu", 10, "moekit CPU kernels", CpuBackend) at namespace scope.
#define MOEKIT_REGISTER_BACKEND(name, rank, summary, Type)                                        \
  static const bool MOEKIT_BENCH_CONCAT(moekit_backend_registered_, __LINE__) =                  \
      ::moekit::bench::register_backend({name, rank, summary, []() -> std::unique_ptr<::moekit::bench::Backend> { \
        return std::make_unique<Type>();                                                          \
      }})
