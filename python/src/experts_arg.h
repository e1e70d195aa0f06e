// Python-side expert weights (moekit.ExpertWeights) and options (moekit.FusedExpertsOptions), shared
// by every binding of an expert op (oracle, GPU, CPU).
#pragma once

#include <string>

#include "bindings.h"
#include "moekit/experts.h"

namespace moekit::python {

// One projection's tensors as Python objects (None = absent), in the logical layout of
// moekit/experts.h.
struct PyExpertWeights {
  nb::object weight, scale, zero, global_scale, input_global_scale, bias;
};

// The views of one PyExpertWeights for the duration of a call (holds the DLPack exports).
struct ExpertWeightsArg {
  Tensor parts[6];
  ExpertWeights view(const PyExpertWeights& w, const std::string& name);
};

void bind_expert_types(nb::module_& m);

}  // namespace moekit::python
