#include <algorithm>
#include <type_traits>

#include "common/cuda_check.h"
#include "common/dependent_launch.cuh"
#include "common/device_info.h"
#include "dispatch/cuda/align.cuh"
#include "dispatch/cuda/launcher.h"
#include "dispatch/cuda/prepare.cuh"
#include "dispatch/cuda/shuffle_rows.cuh"

namespace moekit::cuda {
namespace {

// ---- bucketing kernels: the path, then the cluster's size and warps per CTA, from the shape ----
// Small path (decode): one plain CTA, one pair per thread, when the pairs fit one CTA and its
// table fits the default shared memory; a cluster launch costs ~5 us more than a plain launch.
constexpr int64_t kSmallPathMaxPairs = kSmallBucketMaxThreads;
constexpr int64_t kSmallPathMaxSmemBytes = 48 * 1024;
constexpr int kSmallPathMinThreads = 256;  // fills and per-bucket loops spread over at least this

struct SmallLaunch {
  bool use;
  int threads;
  size_t smem_bytes;
};

SmallLaunch choose_small_launch(int64_t numel, int nb) {
  SmallLaunch l;
  l.smem_bytes = static_cast<size_t>(small_bucket_smem_words(numel, nb)) * 4;
  l.use = numel <= kSmallPathMaxPairs && l.smem_bytes <= static_cast<size_t>(kSmallPathMaxSmemBytes);
  const int64_t want = (std::max<int64_t>(numel, nb) + 31) / 32 * 32;
  l.threads = static_cast<int>(std::clamp<int64_t>(want, kSmallPathMinThreads, kSmallBucketMaxThreads));
  return l;
}

// A plain one-CTA launch that may overlap the preceding kernel's tail (programmatic dependent
// launch; the kernel waits for that grid before reading anything).
template <typename Kernel, typename... Args>
void launch_small(Kernel kernel, const SmallLaunch& l, cudaStream_t stream, const Args&... args) {
  launch_dependent(kernel, dim3(1), dim3(l.threads), l.smem_bytes, stream, true, args...);
}

constexpr int kMaxClusterCtas = 8;            // the portable cluster limit
constexpr int64_t kPairsPerCta = 8192;        // below this one CTA does the whole input
constexpr int64_t kPairsPerWarp = 64;         // fewer warps for small inputs (cheaper scans)
constexpr int64_t kSmemBudgetBytes = 200 * 1024;

struct BucketLaunch {
  int ctas;
  int warps;
  size_t smem_bytes;
};

BucketLaunch choose_bucket_launch(int64_t numel, int nb) {
  BucketLaunch l;
  l.ctas = static_cast<int>(std::clamp<int64_t>((numel + kPairsPerCta - 1) / kPairsPerCta, 1,
                                                kMaxClusterCtas));
  const int64_t per_cta = (numel + l.ctas - 1) / l.ctas;
  const int64_t fit = (kSmemBudgetBytes / 4 - BucketSmem::words(nb, 0)) / nb;
  const int64_t want = std::clamp<int64_t>((per_cta + kPairsPerWarp - 1) / kPairsPerWarp, 4, 32);
  l.warps = static_cast<int>(std::clamp<int64_t>(std::min(fit, want), 1, 32));
  l.smem_bytes = static_cast<size_t>(BucketSmem::words(nb, l.warps)) * 4;
  return l;
}

// A cluster launch with programmatic dependent launch (the kernels wait for the preceding grid
// before touching memory): the next kernel's launch overlaps this one (align 8192 x top-8 x 256
// experts 19.8 -> 19.5 us per launch on an H200).
template <typename Kernel, typename Arg>
void launch_cluster(Kernel kernel, const BucketLaunch& l, cudaStream_t stream, const Arg& arg) {
  if (l.smem_bytes > 48 * 1024)  // per device and function; cheap, and legal during capture
    MOEKIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(l.smem_bytes)));
  launch_with_attributes(kernel, dim3(l.ctas), dim3(l.warps * 32), l.smem_bytes, stream,
                         LaunchOptions{true, static_cast<unsigned>(l.ctas)}, arg);
}

// Behind the router (route_and_align) with at most kRowMaskMaxRows rows: row-mask bucketing for
// every expert count the ops take (<= 512 < kRowMaskMaxBuckets).
bool use_router_rows(const detail::AlignProblem& p, int64_t row_length) {
  return row_length > 0 && !p.ids_int64 && p.expert_map == nullptr && p.ignore_invalid_expert &&
         p.numel <= kSmallBucketMaxThreads && p.numel <= row_length * kRowMaskMaxRows &&
         p.num_experts <= kRowMaskMaxBuckets;
}

// The align launch: behind the router the row-mask kernel where it applies, else the one-CTA
// small path where it fits (after_router: see moe_align_block_size_after_router), else the cluster.
// row_length > 0: launched behind the router, whose rows of row_length ids hold distinct valid ids.
void align(const detail::AlignProblem& p, Stream stream, int64_t row_length) {
  cudaStream_t s = detail::as_cuda_stream(stream.handle);
  const bool after_router = row_length > 0;
  if (use_router_rows(p, row_length)) {
    SmallLaunch rows;
    rows.use = true;
    rows.threads = static_cast<int>(std::clamp<int64_t>((p.numel + 31) / 32 * 32, kSmallPathMinThreads,
                                                        kSmallBucketMaxThreads));
    rows.smem_bytes = static_cast<size_t>(row_mask_smem_words(p.num_experts)) * 4;
    launch_small(moe_align_block_size_router_rows_kernel, rows, s, p, static_cast<int32_t>(row_length));
    return;
  }
  const SmallLaunch small = choose_small_launch(p.numel, p.num_buckets());
  if (small.use && p.num_buckets() <= kChunkBucketMaxBuckets) {
    SmallLaunch chunk = small;
    chunk.smem_bytes = static_cast<size_t>(chunk_bucket_smem_words(p.numel, p.num_buckets())) * 4;
    if (p.ids_int64)
      launch_small(moe_align_block_size_chunk_kernel<int64_t, false>, chunk, s, p);
    else if (after_router)
      launch_small(moe_align_block_size_chunk_kernel<int32_t, true>, chunk, s, p);
    else
      launch_small(moe_align_block_size_chunk_kernel<int32_t, false>, chunk, s, p);
    return;
  }
  if (small.use) {
    if (p.ids_int64)
      launch_small(moe_align_block_size_small_kernel<int64_t, false>, small, s, p);
    else if (after_router)
      launch_small(moe_align_block_size_small_kernel<int32_t, true>, small, s, p);
    else
      launch_small(moe_align_block_size_small_kernel<int32_t, false>, small, s, p);
    return;
  }
  const BucketLaunch l = choose_bucket_launch(p.numel, p.num_buckets());
  if (p.ids_int64)
    launch_cluster(moe_align_block_size_kernel<int64_t>, l, s, p);
  else
    launch_cluster(moe_align_block_size_kernel<int32_t>, l, s, p);
}

}  // namespace

void moe_align_block_size(const detail::AlignProblem& p, Stream stream) { align(p, stream, 0); }

void moe_align_block_size_after_router(const detail::AlignProblem& p, int64_t row_length,
                                       Stream stream) {
  align(p, stream, row_length);
}

void prepare_moe_input(const detail::PrepareProblem& p, Stream stream) {
  cudaStream_t s = detail::as_cuda_stream(stream.handle);
  const SmallLaunch small = choose_small_launch(p.numel, p.num_experts);
  if (small.use) {
    launch_small(prepare_moe_input_small_kernel, small, s, p);
    return;
  }
  const BucketLaunch l = choose_bucket_launch(p.numel, p.num_experts);
  launch_cluster(prepare_moe_input_kernel, l, s, p);
}

// ---- shuffle_rows: a warp per row, the widest copy unit the row pitch and pointers allow; one
// unit per thread while the whole copy fits one wave (2048 threads an SM) ----
constexpr int64_t kShuffleFlatThreadsPerSm = 2048;

void shuffle_rows(const detail::ShuffleRowsProblem& p, Stream stream) {
  const uint64_t align_bits = static_cast<uint64_t>(p.row_bytes) |
                              reinterpret_cast<uintptr_t>(p.input) |
                              reinterpret_cast<uintptr_t>(p.output);
  constexpr int kThreads = 256, kWarpsPerBlock = kThreads / 32;
  const int64_t blocks = std::clamp<int64_t>((p.dst_rows + kWarpsPerBlock - 1) / kWarpsPerBlock, 1,
                                             int64_t{1} << 20);
  cudaStream_t s = detail::as_cuda_stream(stream.handle);
  const int64_t flat_max_pieces = current_device_sm_count() * kShuffleFlatThreadsPerSm;
  auto run = [&](auto bytes) {
    constexpr int kBytes = decltype(bytes)::value;
    const int64_t pieces = p.dst_rows * (p.row_bytes / kBytes);
    if (pieces <= flat_max_pieces) {
      const int64_t flat_blocks = std::max<int64_t>((pieces + kThreads - 1) / kThreads, 1);
      launch_dependent(shuffle_rows_flat_kernel<kBytes>, dim3(static_cast<unsigned>(flat_blocks)),
                       dim3(kThreads), 0, s, true, p.input, p.src_rows, p.dst2src_map, p.output,
                       static_cast<uint32_t>(pieces), static_cast<uint32_t>(p.row_bytes / kBytes));
      return;
    }
    launch_dependent(shuffle_rows_kernel<kBytes>, dim3(static_cast<unsigned>(blocks)), dim3(kThreads),
                     0, s, true, p.input, p.src_rows, p.dst2src_map, p.output, p.dst_rows, p.row_bytes);
  };
  using std::integral_constant;
  if (align_bits % 16 == 0) run(integral_constant<int, 16>{});
  else if (align_bits % 8 == 0) run(integral_constant<int, 8>{});
  else if (align_bits % 4 == 0) run(integral_constant<int, 4>{});
  else if (align_bits % 2 == 0) run(integral_constant<int, 2>{});
  else run(integral_constant<int, 1>{});
}

}  // namespace moekit::cuda
