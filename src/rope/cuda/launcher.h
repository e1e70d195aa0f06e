// CUDA fused_qk_norm_rope launcher (inputs already validated; stream-ordered, no allocation, no
// sync).
#pragma once

#include "moekit/tensor.h"
#include "rope/rotary_frequencies.h"
#include "rope/validate.h"

namespace moekit::cuda {

void fused_qk_norm_rope(const detail::QkNormRopeArgs& args, const detail::RotaryFrequencies& freqs,
                        Stream stream);

}  // namespace moekit::cuda
