// CPU prepare_moe_input: stable chunked bucketing by local expert; invalid pairs get -1.
#include <algorithm>
#include <vector>

#include "dispatch/cpu/kernels.h"
#include "dispatch/cpu/stable_bucket.h"

namespace moekit::cpu {

void prepare_moe_input(const detail::PrepareProblem& p) {
  const int64_t E = p.num_experts;
  StableBuckets buckets(p.numel, E, [&](int64_t i) { return p.expert(i); });
  std::vector<int64_t> start(E + 1, 0);
  int64_t blockscale = 0;
  for (int64_t e = 0; e < E; ++e) {
    const int32_t c = static_cast<int32_t>(buckets.count(e));
    start[e + 1] = start[e] + c;
    const int32_t sizes1[3] = {c, 2 * p.n, p.k}, sizes2[3] = {c, p.k, p.n};
    std::copy(sizes1, sizes1 + 3, p.problem_sizes1 + e * 3);
    std::copy(sizes2, sizes2 + 3, p.problem_sizes2 + e * 3);
  }
  for (int64_t e = 0; e <= E; ++e) {
    p.expert_offsets[e] = static_cast<int32_t>(start[e]);
    if (p.blockscale_offsets) {
      p.blockscale_offsets[e] = static_cast<int32_t>(blockscale);
      if (e < E) blockscale += (buckets.count(e) + 127) / 128 * 128;
    }
  }
  std::fill(p.input_permutation + start[E], p.input_permutation + p.numel, -1);
  std::fill(p.output_permutation, p.output_permutation + p.numel, -1);
  buckets.scatter(start, [&](int64_t i, int64_t slot) {
    p.input_permutation[slot] = static_cast<int32_t>(i / p.topk);
    p.output_permutation[i] = static_cast<int32_t>(slot);
  });
}

}  // namespace moekit::cpu
