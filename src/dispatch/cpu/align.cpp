// CPU moe_align_block_size: stable chunked bucketing, then the padding and block-expert fills.
#include <algorithm>
#include <vector>

#include "common/parallel.h"
#include "dispatch/cpu/kernels.h"
#include "dispatch/cpu/stable_bucket.h"

namespace moekit::cpu {

void moe_align_block_size(const detail::AlignProblem& p) {
  const int64_t nb = p.num_buckets(), bs = p.block_size;
  StableBuckets buckets(p.numel, nb, [&](int64_t i) { return p.bucket(i); });
  std::vector<int64_t> start(nb + 1, 0);
  for (int64_t b = 0; b < nb; ++b)
    start[b + 1] = start[b] + (buckets.count(b) + bs - 1) / bs * bs;
  const int64_t total = start[nb];

  int32_t* sorted = p.sorted_token_ids;
  buckets.scatter(start, [&](int64_t i, int64_t slot) { sorted[slot] = static_cast<int32_t>(i); });
  if (p.pad_sorted_token_ids) {
    const int32_t sentinel = static_cast<int32_t>(p.numel);
    for (int64_t b = 0; b < nb; ++b)
      std::fill(sorted + start[b] + buckets.count(b), sorted + start[b + 1], sentinel);
    detail::parallel_for(p.sorted_capacity - total, 1 << 16, [&](int64_t s0, int64_t s1) {
      std::fill(sorted + total + s0, sorted + total + s1, sentinel);
    });
  }
  for (int64_t b = 0; b < nb; ++b)
    std::fill(p.experts_ids + start[b] / bs, p.experts_ids + start[b + 1] / bs,
              static_cast<int32_t>(b - 1));
  p.num_tokens_post_pad[0] = static_cast<int32_t>(total);
}

}  // namespace moekit::cpu
