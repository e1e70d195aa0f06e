// CUDA fused_qk_norm_rope launcher (inputs already validated; stream-ordered, no allocation, no
// sync).
#pragma once

#include "moekit/tensor.h"
#include "rope/rotary_frequencies.h"
#include "rope/validate.h"

namespace moekit::cuda {

// unit_rows > 0: warp rows per unit instead of the heuristic's (tests and timings).
void fused_qk_norm_rope(const detail::QkNormRopeArgs& args, const detail::RotaryFrequencies& freqs,
                        Stream stream, int unit_rows = 0);

}  // namespace moekit::cuda
