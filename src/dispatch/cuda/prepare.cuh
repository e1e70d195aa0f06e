// prepare_moe_input kernels: one thread-block cluster buckets the pairs by local expert
// (stable_bucket.cuh), or, at decode sizes, one plain CTA (small_bucket.cuh); CTA 0 writes the
// offsets and problem sizes.
#pragma once

#include "dispatch/cuda/small_bucket.cuh"
#include "dispatch/cuda/stable_bucket.cuh"
#include "dispatch/problem.h"

namespace moekit::cuda {

struct PrepareSource {
  const detail::PrepareProblem& p;
  __device__ int64_t id(int64_t i) const { return p.topk_ids[i]; }
  __device__ int bucket(int64_t id) const {
    return detail::local_expert(id, p.num_experts, p.expert_map, p.map_size);
  }
};

// Expert e's rows of both GEMMs' problem sizes: (count, 2n, k) and (count, k, n).
__device__ __forceinline__ void write_problem_sizes(const detail::PrepareProblem& p, int e, int32_t count) {
  p.problem_sizes1[e * 3 + 0] = count;
  p.problem_sizes1[e * 3 + 1] = 2 * p.n;
  p.problem_sizes1[e * 3 + 2] = p.k;
  p.problem_sizes2[e * 3 + 0] = count;
  p.problem_sizes2[e * 3 + 1] = p.k;
  p.problem_sizes2[e * 3 + 2] = p.n;
}

__global__ void __launch_bounds__(1024) prepare_moe_input_kernel(detail::PrepareProblem p) {
  extern __shared__ int32_t smem_words[];
  // Launched with programmatic dependent launch: nothing is read or written before the preceding
  // grid is done.
  wait_for_preceding_grid();
  allow_dependent_launch();
  cg::cluster_group cluster = cg::this_cluster();
  const int nb = p.num_experts;
  const BucketSmem s(smem_words, nb, blockDim.x / 32);
  const PrepareSource source{p};

  count_buckets(s, nb, p.numel, source);
  combine_buckets(s, nb, 1);
  scatter_buckets(
      s, nb, p.numel, source,
      [&](int64_t i, int32_t slot) {
        p.input_permutation[slot] = static_cast<int32_t>(i / p.topk);
        p.output_permutation[i] = slot;
      },
      [&](int64_t i) { p.output_permutation[i] = -1; });

  const int64_t thread = int64_t(cluster.block_rank()) * blockDim.x + threadIdx.x;
  const int64_t threads = int64_t(cluster.num_blocks()) * blockDim.x;
  for (int64_t slot = s.start[nb] + thread; slot < p.numel; slot += threads)
    p.input_permutation[slot] = -1;
  if (cluster.block_rank() == 0) {
    for (int e = threadIdx.x; e <= nb; e += blockDim.x) p.expert_offsets[e] = s.start[e];
    for (int e = threadIdx.x; e < nb; e += blockDim.x) write_problem_sizes(p, e, s.count[e]);
    if (p.blockscale_offsets != nullptr) {
      // The starts are no longer needed: scan the 128-padded counts into them.
      __syncthreads();
      block_scan_padded(s.count, s.start, s.warp_sums, nb, 128);
      for (int e = threadIdx.x; e <= nb; e += blockDim.x) p.blockscale_offsets[e] = s.start[e];
    }
  }
  cluster.sync();  // no CTA leaves while others may still read its counts
}

// Up to kSmallBucketMaxThreads pairs, one per thread; both offset scans in one pass.
__global__ void __launch_bounds__(kSmallBucketMaxThreads)
    prepare_moe_input_small_kernel(detail::PrepareProblem p) {
  extern __shared__ int32_t smem_words[];
  wait_for_preceding_grid();
  allow_dependent_launch();
  const int nb = p.num_experts, n = static_cast<int>(p.numel);
  const SmallBucketSmem s(smem_words, n, nb);
  const PrepareSource source{p};
  const bool blockscale = p.blockscale_offsets != nullptr;

  const SmallBucketPair pair = small_bucket(s, nb, n, source, 1, blockscale ? 128 : 0, [] {});
  const int i = threadIdx.x;
  if (pair.bucket >= 0) {
    p.input_permutation[pair.slot] = static_cast<int32_t>(i / p.topk);
    p.output_permutation[i] = pair.slot;
  } else if (i < n) {
    p.output_permutation[i] = -1;
  }
  for (int slot = s.start[nb] + i; slot < n; slot += blockDim.x) p.input_permutation[slot] = -1;
  for (int e = i; e <= nb; e += blockDim.x) {
    p.expert_offsets[e] = s.start[e];
    if (blockscale) p.blockscale_offsets[e] = s.start2[e];
  }
  for (int e = i; e < nb; e += blockDim.x) write_problem_sizes(p, e, s.count[e]);
}

}  // namespace moekit::cuda
