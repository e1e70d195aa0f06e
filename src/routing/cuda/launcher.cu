#include <type_traits>

#include "common/cuda_check.h"
#include "routing/cuda/launcher.h"
#include "routing/cuda/route_and_align_kernel.cuh"
#include "routing/cuda/router_kernel.cuh"

namespace moekit::cuda {
namespace {

template <int kVPT>
void launch(const routing::RouterProblem& p, cudaStream_t stream) {
  const int64_t blocks64 = (p.M + kRouterWarpsPerBlock - 1) / kRouterWarpsPerBlock;
  const int blocks = static_cast<int>(blocks64 < 65535 ? blocks64 : 65535);  // grid-stride beyond
  if (p.score == routing::ScoreFunction::kSigmoid)
    router_kernel<kVPT, routing::ScoreFunction::kSigmoid>
        <<<blocks, kRouterWarpsPerBlock * 32, 0, stream>>>(p);
  else
    router_kernel<kVPT, routing::ScoreFunction::kSoftmax>
        <<<blocks, kRouterWarpsPerBlock * 32, 0, stream>>>(p);
  MOEKIT_CUDA_CHECK_LAUNCH();
}

template <int kVPT>
void launch_fused(const detail::RouteAndAlignProblem& p, cudaStream_t stream) {
  constexpr int threads = fused_warps<kVPT>() * 32;
  if (p.route.score == routing::ScoreFunction::kSigmoid)
    route_and_align_kernel<kVPT, routing::ScoreFunction::kSigmoid>
        <<<1, threads, 0, stream>>>(p.route, p.align);
  else
    route_and_align_kernel<kVPT, routing::ScoreFunction::kSoftmax>
        <<<1, threads, 0, stream>>>(p.route, p.align);
  MOEKIT_CUDA_CHECK_LAUNCH();
}

// Register slots per lane: the smallest instantiated size holding ceil(E / 32) experts.
template <typename Launch>
void by_row_width(int E, const Launch& launch_for) {
  const int per_lane = (E + 31) / 32;
  if (per_lane <= 1) launch_for(std::integral_constant<int, 1>{});
  else if (per_lane <= 2) launch_for(std::integral_constant<int, 2>{});
  else if (per_lane <= 4) launch_for(std::integral_constant<int, 4>{});
  else if (per_lane <= 6) launch_for(std::integral_constant<int, 6>{});
  else if (per_lane <= 8) launch_for(std::integral_constant<int, 8>{});
  else if (per_lane <= 12) launch_for(std::integral_constant<int, 12>{});
  else launch_for(std::integral_constant<int, 16>{});
}

}  // namespace

void route(const routing::RouterProblem& p, Stream stream) {
  cudaStream_t s = detail::as_cuda_stream(stream.handle);
  by_row_width(p.E, [&](auto vpt) { launch<decltype(vpt)::value>(p, s); });
}

void route_and_align(const detail::RouteAndAlignProblem& p, Stream stream) {
  cudaStream_t s = detail::as_cuda_stream(stream.handle);
  by_row_width(p.route.E, [&](auto vpt) { launch_fused<decltype(vpt)::value>(p, s); });
}

}  // namespace moekit::cuda
