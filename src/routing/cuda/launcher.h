// CUDA routing launcher (inputs already validated; stream-ordered, no allocation, no sync).
#pragma once

#include "moekit/tensor.h"
#include "routing/problem.h"
#include "routing/validate.h"

namespace moekit::cuda {

void route(const routing::RouterProblem& p, Stream stream);

// How route_and_align runs (M * slots <= kMaxFusedRouteAlignPairs): kOneCta routes every row and
// buckets the pairs in one CTA (one launch; one SM routes all rows; only while the pairs fit one per
// thread, else as kRouterThenAlign); kRouterThenAlign launches the router kernel, then the align
// kernel with programmatic dependent launch (its CTA is resident and writes the pad fill while the
// router runs). kAuto picks by shape; the others exist for tests and timings.
enum class RouteAlignLaunch { kAuto, kOneCta, kRouterThenAlign };
void route_and_align(const detail::RouteAndAlignProblem& p, Stream stream,
                     RouteAlignLaunch launch = RouteAlignLaunch::kAuto);

}  // namespace moekit::cuda
