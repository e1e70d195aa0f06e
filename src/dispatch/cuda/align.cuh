// moe_align_block_size kernels: one thread-block cluster buckets the pairs (stable_bucket.cuh), or,
// at decode sizes, one plain CTA (small_bucket.cuh); then they write the block experts, the optional
// pad fill and the padded total.
#pragma once

#include "dispatch/cuda/small_bucket.cuh"
#include "dispatch/cuda/stable_bucket.cuh"
#include "dispatch/problem.h"

namespace moekit::cuda {

template <typename IdT>
struct AlignSource {
  const IdT* ids;
  const detail::AlignProblem& p;
  __device__ int64_t id(int64_t i) const { return static_cast<int64_t>(ids[i]); }
  __device__ int bucket(int64_t id) const {
    const int32_t e = detail::local_expert(id, p.num_experts, p.expert_map, p.map_size);
    return e >= 0 ? e + 1 : (p.ignore_invalid_expert ? -1 : 0);
  }
};

template <typename IdT>
__global__ void __launch_bounds__(1024) moe_align_block_size_kernel(detail::AlignProblem p) {
  extern __shared__ int32_t smem_words[];
  // Launched with programmatic dependent launch: nothing is read or written before the preceding
  // grid is done.
  wait_for_preceding_grid();
  allow_dependent_launch();
  cg::cluster_group cluster = cg::this_cluster();
  const int nb = p.num_experts + 1;
  const BucketSmem s(smem_words, nb, blockDim.x / 32);
  const AlignSource<IdT> source{static_cast<const IdT*>(p.topk_ids), p};

  count_buckets(s, nb, p.numel, source);
  combine_buckets(s, nb, p.block_size);
  scatter_buckets(
      s, nb, p.numel, source,
      [&](int64_t i, int32_t slot) { p.sorted_token_ids[slot] = static_cast<int32_t>(i); },
      [](int64_t) {});

  // Cluster-wide thread numbering for the fills.
  const int64_t thread = int64_t(cluster.block_rank()) * blockDim.x + threadIdx.x;
  const int64_t threads = int64_t(cluster.num_blocks()) * blockDim.x;
  const int64_t total = s.start[nb];
  for (int64_t j = thread; j < total / p.block_size; j += threads)
    p.experts_ids[j] = bucket_of_slot(s.start, nb, j * p.block_size) - 1;
  if (p.pad_sorted_token_ids) {
    const int32_t sentinel = static_cast<int32_t>(p.numel);
    // A warp per bucket, its lanes writing the bucket's pad range with consecutive stores (the
    // cluster's warps outnumber the buckets at these sizes; with 32 buckets a warp, 9 warps did all
    // 257 ranges of 256 experts one after another: align 8192 x top-8 24.3 -> 19.8 us on an H200).
    const int lane = threadIdx.x % 32;
    const int64_t warp = thread / 32, warps = threads / 32;
    for (int64_t b = warp; b < nb; b += warps) {
      const int32_t pad_end = s.start[b + 1];
      for (int32_t slot = s.start[b] + s.count[b] + lane; slot < pad_end; slot += 32)
        p.sorted_token_ids[slot] = sentinel;
    }
    for (int64_t slot = total + thread; slot < p.sorted_capacity; slot += threads)
      p.sorted_token_ids[slot] = sentinel;
  }
  if (thread == 0) p.num_tokens_post_pad[0] = static_cast<int32_t>(total);
  cluster.sync();  // no CTA leaves while others may still read its counts
}

// Up to kSmallBucketMaxThreads pairs, one per thread. The pad fill covers the whole buffer first;
// the pairs overwrite their slots after the bucketing's barriers. kAfterRouter: launched (with
// programmatic dependent launch) right behind the router kernel that writes the ids, which started
// only once all earlier work of the stream had finished and reads none of these outputs; so the pad
// fill and the table clearing run while the router does, and only the id loads wait for it.
template <typename IdT, bool kAfterRouter>
__global__ void __launch_bounds__(kSmallBucketMaxThreads)
    moe_align_block_size_small_kernel(detail::AlignProblem p) {
  extern __shared__ int32_t smem_words[];
  if constexpr (!kAfterRouter) {
    wait_for_preceding_grid();
    allow_dependent_launch();  // the next kernel waits for this grid before touching memory
  }
  const int nb = p.num_experts + 1, n = static_cast<int>(p.numel);
  const SmallBucketSmem s(smem_words, n, nb);
  const AlignSource<IdT> source{static_cast<const IdT*>(p.topk_ids), p};
  if (p.pad_sorted_token_ids) block_fill_int32(p.sorted_token_ids, p.sorted_capacity, n);

  const SmallBucketPair pair = small_bucket(s, nb, n, source, p.block_size, 0, [] {
    if constexpr (kAfterRouter) {
      wait_for_preceding_grid();
      allow_dependent_launch();
    }
  });
  if (pair.bucket >= 0) p.sorted_token_ids[pair.slot] = threadIdx.x;
  const int32_t total = s.start[nb];
  for (int32_t j = threadIdx.x; j < total / p.block_size; j += blockDim.x)
    p.experts_ids[j] = bucket_of_slot(s.start, nb, int64_t(j) * p.block_size) - 1;
  if (threadIdx.x == 0) p.num_tokens_post_pad[0] = total;
}

// The small kernel's result for at most kChunkBucketMaxBuckets buckets with two barriers after the
// pad fill instead of four (chunk_bucket); the same launch contract as the small kernel.
template <typename IdT, bool kAfterRouter>
__global__ void __launch_bounds__(kSmallBucketMaxThreads)
    moe_align_block_size_chunk_kernel(detail::AlignProblem p) {
  extern __shared__ int32_t smem_words[];
  if constexpr (!kAfterRouter) {
    wait_for_preceding_grid();
    allow_dependent_launch();
  }
  const int nb = p.num_experts + 1, n = static_cast<int>(p.numel);
  const ChunkBucketSmem s(smem_words, n, nb);
  const AlignSource<IdT> source{static_cast<const IdT*>(p.topk_ids), p};
  chunk_bucket_clear(s);
  if (p.pad_sorted_token_ids) block_fill_int32(p.sorted_token_ids, p.sorted_capacity, n);
  if constexpr (kAfterRouter) {
    wait_for_preceding_grid();
    allow_dependent_launch();
  }
  const int b = threadIdx.x < n ? source.bucket(source.id(threadIdx.x)) : -1;
  __syncthreads();  // the scratch is clear, the pad fill done

  int32_t total;
  const ChunkBucketPair pair = chunk_bucket(s, nb, n, b, p.block_size, total);
  if (pair.bucket >= 0) p.sorted_token_ids[pair.slot] = threadIdx.x;
  for (int32_t j = 0; j < pair.blocks; ++j) p.experts_ids[pair.first_block + j] = pair.bucket - 1;
  if (threadIdx.x == 0) p.num_tokens_post_pad[0] = total;
}


// route_and_align's align behind the router for at most kRowMaskMaxRows rows of row_length pairs
// (int32 ids, no expert map, invalid ids ignored; a row's valid ids are distinct): the small
// kernel's outputs from row_mask_bucket, two barriers after the id loads. The launch contract of
// the small kernels with kAfterRouter: the table clearing and the pad fill run while the router does.
__global__ void __launch_bounds__(kSmallBucketMaxThreads)
    moe_align_block_size_router_rows_kernel(detail::AlignProblem p, int32_t row_length) {
  extern __shared__ int32_t smem_words[];
  const int nb = p.num_experts, n = static_cast<int>(p.numel);
  const RowMaskSmem s(smem_words, nb);
  row_mask_prepare(s, p.block_size);
  if (p.pad_sorted_token_ids) block_fill_int32(p.sorted_token_ids, p.sorted_capacity, n);
  __syncthreads();  // the masks are clear
  wait_for_preceding_grid();
  allow_dependent_launch();
  const int tid = threadIdx.x, row = tid / row_length;
  const int b = tid < n ? detail::local_expert(static_cast<const int32_t*>(p.topk_ids)[tid], nb, nullptr, 0) : -1;
  row_mask_add(s, b, row);
  __syncthreads();  // every row is marked; the pad fill is done
  row_mask_scan_chunks(s);
  __syncthreads();  // the chunk prefixes and sums are written

  if (tid / 32 * 32 >= n && tid >= 32) return;  // a warp without pairs (warp 0 writes the total)
  int32_t total;
  const ChunkBucketPair pair = row_mask_bucket(s, b, row, p.block_size, total);
  if (pair.bucket >= 0) p.sorted_token_ids[pair.slot] = tid;
  for (int32_t j = 0; j < pair.blocks; ++j) p.experts_ids[pair.first_block + j] = pair.bucket;
  if (tid == 0) p.num_tokens_post_pad[0] = total;
}

}  // namespace moekit::cuda
