// Uses the installed moekit as an application would: public headers only, one CPU op, its result
// checked by hand. Exit status 0 means the package works.
#include <cstdio>
#include <vector>

// Every public header must compile in a user's project (the umbrella, and the headers it leaves out).
#include "moekit/dispatch.h"
#include "moekit/gpu_experts.h"
#include "moekit/moekit.h"

int main() {
  const int64_t M = 3, k = 2, H = 5;
  std::vector<float> input(M * k * H), output(M * H, -1.f), expected(M * H, 0.f);
  for (int64_t i = 0; i < M * k * H; ++i) input[i] = static_cast<float>(i % 7) - 2.5f;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < k; ++j)
      for (int64_t h = 0; h < H; ++h) expected[m * H + h] += input[(m * k + j) * H + h];

  moekit::TensorView in(input.data(), moekit::DType::kFloat32, {M, k, H});
  moekit::TensorView out(output.data(), moekit::DType::kFloat32, {M, H});
  moekit::moe_sum(in, out);
  for (int64_t i = 0; i < M * H; ++i) {
    if (output[i] != expected[i]) {
      std::fprintf(stderr, "moe_sum: element %lld is %g, expected %g\n", static_cast<long long>(i), output[i],
                   expected[i]);
      return 1;
    }
  }

  // Bad input must come back as moekit::Error, across the library boundary.
  try {
    moekit::moe_sum(in, moekit::TensorView(output.data(), moekit::DType::kFloat32, {M, H + 1}));
    std::fprintf(stderr, "moe_sum accepted a wrong output shape\n");
    return 1;
  } catch (const moekit::Error& e) {
    std::printf("error path ok: %s\n", e.what());
  }
  std::printf("moekit consumer ok (cpu isa %s)\n", moekit::cpu_isa_name(moekit::cpu_isa()));
  return 0;
}
