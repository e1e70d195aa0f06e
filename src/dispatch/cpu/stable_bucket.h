// Stable parallel bucketing on the CPU: the pairs are cut into contiguous chunks, each chunk counts
// its buckets, one serial pass turns the per-chunk counts into per-chunk write cursors, and each
// chunk scatters its pairs in ascending index. The result is independent of the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/parallel.h"

namespace moekit::cpu {

class StableBuckets {
 public:
  // bucket_of(i) returns the bucket of pair i in [0, num_buckets) or -1 (dropped).
  template <typename BucketOf>
  StableBuckets(int64_t numel, int64_t num_buckets, const BucketOf& bucket_of)
      : numel_(numel), num_buckets_(num_buckets), bucket_(static_cast<size_t>(numel)) {
    constexpr int64_t kPairsPerChunk = 8192;
    chunks_ = std::max<int64_t>(1, std::min<int64_t>(cpu_threads(), numel / kPairsPerChunk));
    cursor_.assign(static_cast<size_t>(chunks_ * num_buckets), 0);
    detail::parallel_for(chunks_, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        int64_t* count = cursor_.data() + c * num_buckets_;
        for (int64_t i = begin(c); i < begin(c + 1); ++i) {
          const int32_t b = bucket_of(i);
          bucket_[i] = b;
          if (b >= 0) ++count[b];
        }
      }
    });
    count_.assign(static_cast<size_t>(num_buckets), 0);
    for (int64_t c = 0; c < chunks_; ++c)
      for (int64_t b = 0; b < num_buckets; ++b) count_[b] += cursor_[c * num_buckets + b];
  }

  int64_t count(int64_t b) const { return count_[b]; }

  // start[b] is where bucket b begins; calls write(i, slot) for every kept pair, slots of one
  // bucket in ascending i.
  template <typename Write>
  void scatter(const std::vector<int64_t>& start, const Write& write) {
    for (int64_t b = 0; b < num_buckets_; ++b) {
      int64_t running = start[b];
      for (int64_t c = 0; c < chunks_; ++c) {
        const int64_t n = cursor_[c * num_buckets_ + b];
        cursor_[c * num_buckets_ + b] = running;
        running += n;
      }
    }
    detail::parallel_for(chunks_, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        int64_t* cursor = cursor_.data() + c * num_buckets_;
        for (int64_t i = begin(c); i < begin(c + 1); ++i) {
          const int32_t b = bucket_[i];
          if (b >= 0) write(i, cursor[b]++);
        }
      }
    });
  }

 private:
  int64_t begin(int64_t chunk) const { return numel_ * chunk / chunks_; }

  int64_t numel_, num_buckets_, chunks_ = 1;
  std::vector<int32_t> bucket_;
  std::vector<int64_t> cursor_;  // [chunk][bucket]: counts, then write cursors
  std::vector<int64_t> count_;
};

}  // namespace moekit::cpu
