// Shared pieces of the dispatch tests: random routing results and the align buffers.
#pragma once

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "common/test_util.h"
#include "moekit/dispatch.h"

namespace moekit::test {

// Routing ids [M, topk]: distinct experts per token where topk <= E (as a router emits), with a
// fraction of -1 (padded / other-rank pairs) and, when bad_ids, ids >= E and < -1 mixed in.
inline HostTensor random_topk_ids(std::mt19937_64& rng, int64_t M, int64_t topk, int64_t E,
                                  double invalid_fraction = 0.0, bool bad_ids = false,
                                  DType dtype = DType::kInt32) {
  HostTensor ids(dtype, {M, topk});
  std::vector<int64_t> experts(E);
  std::iota(experts.begin(), experts.end(), 0);
  std::uniform_real_distribution<double> u(0, 1);
  for (int64_t m = 0; m < M; ++m) {
    if (topk <= E) {
      for (int64_t j = 0; j < topk; ++j) {  // partial Fisher-Yates: topk distinct experts
        std::uniform_int_distribution<int64_t> pick(j, E - 1);
        std::swap(experts[j], experts[pick(rng)]);
      }
    }
    for (int64_t j = 0; j < topk; ++j) {
      int64_t id = topk <= E ? experts[j] : std::uniform_int_distribution<int64_t>(0, E - 1)(rng);
      double r = u(rng);
      if (r < invalid_fraction) id = -1;
      else if (bad_ids && r < 2 * invalid_fraction) id = (r < 1.5 * invalid_fraction) ? E + (id % 3) : -2 - (id % 5);
      ids.set(m * topk + j, static_cast<double>(id));
    }
  }
  return ids;
}

struct AlignBuffers {
  HostTensor sorted, experts, post_pad, cumsum;
  AlignBuffers(int64_t numel, int64_t num_buckets, int64_t block_size, int64_t extra_slots = 3) {
    AlignCapacity cap = moe_align_block_size_capacity(numel, num_buckets, block_size);
    sorted = HostTensor(DType::kInt32, {cap.sorted_token_ids + extra_slots});
    experts = HostTensor(DType::kInt32, {cap.experts_ids + 2});
    post_pad = HostTensor(DType::kInt32, {1});
    cumsum = HostTensor(DType::kInt32, {num_buckets + 1});
    poison();
  }
  void poison() {
    sorted.poison();
    experts.poison();
    post_pad.poison();
    cumsum.poison();
  }
  bool equals(const AlignBuffers& o) const {
    return sorted.bytes_equal(o.sorted) && experts.bytes_equal(o.experts) &&
           post_pad.bytes_equal(o.post_pad);
  }
};

}  // namespace moekit::test
