// The routing oracle on a validated problem (used by the reference ops and by the fused
// route-and-align oracle).
#pragma once

#include "routing/problem.h"

namespace moekit::routing {

void reference_route(const RouterProblem& p);

}  // namespace moekit::routing
