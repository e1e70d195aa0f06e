#include "common/cuda_check.h"
#include "routing/cuda/launcher.h"
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

}  // namespace

// Register slots per lane: the smallest instantiated size holding ceil(E / 32) experts.
void route(const routing::RouterProblem& p, Stream stream) {
  cudaStream_t s = detail::as_cuda_stream(stream.handle);
  const int per_lane = (p.E + 31) / 32;
  if (per_lane <= 1) launch<1>(p, s);
  else if (per_lane <= 2) launch<2>(p, s);
  else if (per_lane <= 4) launch<4>(p, s);
  else if (per_lane <= 6) launch<6>(p, s);
  else if (per_lane <= 8) launch<8>(p, s);
  else if (per_lane <= 12) launch<12>(p, s);
  else launch<16>(p, s);
}

}  // namespace moekit::cuda
