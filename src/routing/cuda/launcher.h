// CUDA routing launcher (inputs already validated; stream-ordered, no allocation, no sync).
#pragma once

#include "moekit/tensor.h"
#include "routing/problem.h"
#include "routing/validate.h"

namespace moekit::cuda {

void route(const routing::RouterProblem& p, Stream stream);
// One CTA: route every row, then bucket the pairs (M * slots <= kMaxFusedRouteAlignPairs).
void route_and_align(const detail::RouteAndAlignProblem& p, Stream stream);

}  // namespace moekit::cuda
