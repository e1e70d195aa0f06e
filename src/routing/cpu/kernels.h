// CPU routing kernel (inputs already validated): every router op is one RouterProblem.
#pragma once

#include "routing/problem.h"

namespace moekit::cpu {

void route(const routing::RouterProblem& p);

}  // namespace moekit::cpu
