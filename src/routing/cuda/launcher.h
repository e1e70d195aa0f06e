// CUDA routing launcher (inputs already validated; stream-ordered, no allocation, no sync).
#pragma once

#include "moekit/tensor.h"
#include "routing/problem.h"

namespace moekit::cuda {

void route(const routing::RouterProblem& p, Stream stream);

}  // namespace moekit::cuda
