// moekit._C: the C++ API over DLPack tensors. Bindings translate arguments and errors only; every
// check and every decision lives in the library. Each public layer header has one bind_<layer>.cpp.
#include <exception>

#include <Python.h>
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"
#include "moekit/cpu.h"
#include "moekit/status.h"

namespace nb = nanobind;

namespace {

void translate_moekit_error(const std::exception_ptr& p, void*) {
  try {
    std::rethrow_exception(p);
  } catch (const moekit::Error& e) {
    PyErr_SetString(e.kind() == moekit::ErrorKind::InvalidArgument ? PyExc_ValueError
                                                                    : PyExc_RuntimeError,
                    e.what());
  }
}

void bind_cpu_controls(nb::module_& m) {
  m.def("cpu_isa", [] { return std::string(moekit::cpu_isa_name(moekit::cpu_isa())); },
        "The CPU instruction-set path the CPU ops use now: \"scalar\", \"avx2\", \"avx512\", "
        "\"avx512bf16\" or \"amx\" (initially $MOEKIT_CPU_ISA if set, else the best supported).");
  m.def("set_cpu_isa",
        [](const std::string& isa) { moekit::set_cpu_isa(moekit::parse_cpu_isa(isa)); },
        nb::arg("isa"),
        "Force a CPU path for this process; RuntimeError if this CPU lacks it.");
  m.def("best_cpu_isa", [] { return std::string(moekit::cpu_isa_name(moekit::best_cpu_isa())); },
        "The fastest CPU path this machine supports.");
  m.def(
      "supported_cpu_isas",
      [] {
        std::vector<std::string> names;
        for (moekit::CpuIsa isa : moekit::supported_cpu_isas())
          names.emplace_back(moekit::cpu_isa_name(isa));
        return names;
      },
      "Every CPU path this machine supports, most portable first.");
  m.def("cpu_features", &moekit::cpu_feature_string,
        "The detected x86 features, one line (\"avx2 fma f16c avx512f ... amx-bf16\").");
  m.def("cpu_threads", &moekit::cpu_threads,
        "Threads the CPU ops use ($MOEKIT_CPU_THREADS if set, else the CPUs in the affinity "
        "mask).");
  m.def("set_cpu_threads", &moekit::set_cpu_threads, nb::arg("threads"),
        "Set the number of threads the CPU ops use (>= 1).");
  m.def(
      "built_with_cuda",
      [] {
#if defined(MOEKIT_WITH_CUDA)
        return true;
#else
        return false;
#endif
      },
      "Whether this build has the CUDA kernels (MOEKIT_CUDA=ON).");
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "moekit's C++ ops over DLPack tensors (numpy, torch, cupy, jax). Use moekit.ops.";
  nb::register_exception_translator(&translate_moekit_error);
  moekit::python::bind_tensor_types(m);
  bind_cpu_controls(m);

  moekit::python::bind_route(m);
  moekit::python::bind_dispatch(m);
  moekit::python::bind_combine(m);
  moekit::python::bind_rope(m);
  moekit::python::bind_experts(m);
  moekit::python::bind_gpu_experts(m);
  moekit::python::bind_cpu_experts(m);
  moekit::python::bind_quant(m);
}
