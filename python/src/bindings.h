// One bind_<layer> function per public layer header (bind_<layer>.cpp): adds the layer's ops to
// moekit._C under their C++ names and its oracles as reference_<name> (moekit.reference.<name>).
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>

#include "tensor_arg.h"

namespace moekit::python {

void bind_combine(nb::module_& m);
void bind_rope(nb::module_& m);
void bind_route(nb::module_& m);
void bind_dispatch(nb::module_& m);
void bind_experts(nb::module_& m);
void bind_gpu_experts(nb::module_& m);
void bind_cpu_experts(nb::module_& m);
void bind_quant(nb::module_& m);

}  // namespace moekit::python
