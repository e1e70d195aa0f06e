#include <utility>

#include "common/cuda_check.h"
#include "common/dependent_launch.cuh"
#include "dispatch/cuda/launcher.h"
#include "routing/cuda/launcher.h"
#include "routing/cuda/route_and_align_kernel.cuh"
#include "routing/cuda/router_kernel.cuh"

namespace moekit::cuda {
namespace {

// The shape of a launch: warps per row (a team) and register slots per lane, instantiated sizes.
struct RouterShape {
  int warps_per_row;
  int slots_per_lane;
};

// Router kernel: up to this many rows, teams (short serial chains: latency decides); above it one
// warp per row (fewer instructions per row: throughput decides). A first guess, to be tuned on the
// benchmarks.
constexpr int64_t kTeamRowsMax = 1024;

// The one heuristic. A team holds at most 4 experts per lane (1 warp up to 128 experts, 2 up to
// 256, 3 up to 384, 4 up to 512); a single warp holds ceil(E / 32) rounded up to an instantiated
// size. The fused one-CTA launch uses teams only while every team gets at most one row (its warps
// are all there is, so beyond that the cheaper single-warp rows win).
RouterShape router_shape(int64_t M, int E, bool fused) {
  const int per_warp = (E + 31) / 32;
  const int team_warps = per_warp <= 4 ? 1 : per_warp <= 8 ? 2 : per_warp <= 12 ? 3 : 4;
  const bool team = fused ? M * team_warps <= fused_warps<4>() : M <= kTeamRowsMax;
  if (team || per_warp <= 4) {
    if (team_warps > 1) return {team_warps, 4};
    return {1, per_warp <= 1 ? 1 : per_warp <= 2 ? 2 : 4};
  }
  for (int s : {6, 8, 12})
    if (per_warp <= s) return {1, s};
  return {1, 16};
}

// route_and_align: one CTA while rows x warps per row stays within kOneCtaMaxRowWarps and the rows
// are routed by teams or by warps of at most 4 experts a lane (one SM routes every row, so its time
// grows with the rows; single warps of 8-16 experts a lane are slow); past that the router's grid on
// many SMs plus a dependent align launch wins. Measured on an H200 (RouteAndAlignCudaTiming.
// LaunchShapes, 2026-11-26 05:19 and 05:36 UTC, chunk_bucket in both shapes, block size 16, top-8),
// one CTA vs router + align: 128 experts 3.68-4.33 vs 4.22-4.45 us at 1-8 rows, 4.58 vs 4.48 at 12;
// the 256-expert gate 4.67-5.19 vs 5.15-5.30 at 1-4 rows, 6.09 vs 5.19 at 8; 384 experts 4.70-5.01
// vs 5.35-5.48 at 1-2 rows, 5.82 vs 5.48 at 4 (teams), 7.00 vs 5.32 at 8 (single warps, 12 a lane).
// Up to kOneCtaWarpBucketMaxRowWarps while one warp buckets the pairs (no barrier after the
// routing): 384 experts x 4 rows on teams of 3 warps took 5.15 us in one CTA vs 5.42 for router +
// align, while 512 experts x 4 rows (16 row-warps) took 5.99 vs 5.66 (H200, 2026-11-26 06:59 UTC).
constexpr int64_t kOneCtaMaxRowWarps = 8;
constexpr int64_t kOneCtaWarpBucketMaxRowWarps = 12;

bool one_cta_route_and_align(int64_t M, int E, int slots) {
  const RouterShape shape = router_shape(M, E, true);
  const int64_t row_warps = M * shape.warps_per_row;
  const bool warp_bucket = M * slots <= kWarpBucketMaxPairs;
  return (row_warps <= kOneCtaMaxRowWarps ||
          (warp_bucket && row_warps <= kOneCtaWarpBucketMaxRowWarps)) &&
         (shape.warps_per_row > 1 || shape.slots_per_lane <= 4);
}

template <int kVPT, int kW>
using Shape = std::integer_sequence<int, kVPT, kW>;

// Calls launch_for(Shape<kVPT, kW>{}) for a shape router_shape returns.
template <typename Launch>
void with_shape(RouterShape s, const Launch& launch_for) {
  if (s.warps_per_row == 4) launch_for(Shape<4, 4>{});
  else if (s.warps_per_row == 3) launch_for(Shape<4, 3>{});
  else if (s.warps_per_row == 2) launch_for(Shape<4, 2>{});
  else if (s.slots_per_lane == 1) launch_for(Shape<1, 1>{});
  else if (s.slots_per_lane == 2) launch_for(Shape<2, 1>{});
  else if (s.slots_per_lane == 4) launch_for(Shape<4, 1>{});
  else if (s.slots_per_lane == 6) launch_for(Shape<6, 1>{});
  else if (s.slots_per_lane == 8) launch_for(Shape<8, 1>{});
  else if (s.slots_per_lane == 12) launch_for(Shape<12, 1>{});
  else launch_for(Shape<16, 1>{});
}

template <int kVPT, int kW>
void launch(const routing::RouterProblem& p, cudaStream_t stream, Shape<kVPT, kW>) {
  constexpr int kWarps = router_warps_per_block<kW>(), kTeams = kWarps / kW;
  const int64_t blocks64 = (p.M + kTeams - 1) / kTeams;
  const int blocks = static_cast<int>(blocks64 < 65535 ? blocks64 : 65535);  // grid-stride beyond
  if (p.score == routing::ScoreFunction::kSigmoid)
    launch_dependent(router_kernel<kVPT, kW, routing::ScoreFunction::kSigmoid>, dim3(blocks),
                     dim3(kWarps * 32), 0, stream, true, p);
  else
    launch_dependent(router_kernel<kVPT, kW, routing::ScoreFunction::kSoftmax>, dim3(blocks),
                     dim3(kWarps * 32), 0, stream, true, p);
}

// The one-CTA launch takes one pair per thread, its bucket table within the default shared memory.
constexpr size_t kFusedMaxDynamicSmemBytes = 20 * 1024;  // beside <= 28 KiB of static scratch

bool fits_one_cta(const detail::RouteAndAlignProblem& p) {
  const RouterShape shape = router_shape(p.route.M, p.route.E, true);
  const int threads = (shape.slots_per_lane > 8 ? fused_warps<12>() : fused_warps<4>()) * 32;
  const int64_t pairs = p.route.M * p.route.slots();
  return pairs <= threads && p.align.num_experts <= kChunkBucketMaxBuckets &&
         chunk_bucket_smem_words(pairs, p.align.num_experts) * 4 <= int64_t(kFusedMaxDynamicSmemBytes);
}

template <int kVPT, int kW>
void launch_fused(const detail::RouteAndAlignProblem& p, cudaStream_t stream, Shape<kVPT, kW>) {
  constexpr int threads = fused_warps<kVPT>() * 32;
  const size_t smem =
      static_cast<size_t>(chunk_bucket_smem_words(p.route.M * p.route.slots(), p.align.num_experts)) * 4;
  if (p.route.score == routing::ScoreFunction::kSigmoid)
    launch_dependent(route_and_align_kernel<kVPT, kW, routing::ScoreFunction::kSigmoid>, dim3(1),
                     dim3(threads), smem, stream, true, p.route, p.align);
  else
    launch_dependent(route_and_align_kernel<kVPT, kW, routing::ScoreFunction::kSoftmax>, dim3(1),
                     dim3(threads), smem, stream, true, p.route, p.align);
}

}  // namespace

void route(const routing::RouterProblem& p, Stream stream) {
  cudaStream_t s = detail::as_cuda_stream(stream.handle);
  with_shape(router_shape(p.M, p.E, false), [&](auto shape) { launch(p, s, shape); });
}

void route_and_align(const detail::RouteAndAlignProblem& p, Stream stream, RouteAlignLaunch how) {
  cudaStream_t s = detail::as_cuda_stream(stream.handle);
  if (how == RouteAlignLaunch::kAuto)
    how = one_cta_route_and_align(p.route.M, p.route.E, p.route.slots()) ? RouteAlignLaunch::kOneCta
                                                        : RouteAlignLaunch::kRouterThenAlign;
  if (how == RouteAlignLaunch::kOneCta && fits_one_cta(p)) {
    with_shape(router_shape(p.route.M, p.route.E, true),
               [&](auto shape) { launch_fused(p, s, shape); });
    return;
  }
  if (p.route.M == 0) {  // no router launch to follow: the plain align (it waits before any write)
    moe_align_block_size(p.align, stream);
    return;
  }
  route(p.route, stream);
  moe_align_block_size_after_router(p.align, p.route.slots(), stream);
}

}  // namespace moekit::cuda
