// Routing an op to its back end. CUDA launchers exist only in builds with MOEKIT_CUDA=ON; in other
// builds a CUDA tensor gets a clear NotSupported error instead of a link failure.
#pragma once

#include "common/checks.h"

#if defined(MOEKIT_WITH_CUDA)
#define MOEKIT_CUDA_ONLY(call, op_name) call
#else
#define MOEKIT_CUDA_ONLY(call, op_name)                                                       \
  ::moekit::detail::fail(::moekit::detail::cat(op_name,                                       \
                                               ": tensors are on CUDA but this build of "     \
                                               "moekit has no CUDA support (MOEKIT_CUDA=OFF)"), \
                         ::moekit::ErrorKind::NotSupported)
#endif
