// CPU dispatch kernels (arguments already validated).
#pragma once

#include "dispatch/problem.h"

namespace moekit::cpu {

void moe_align_block_size(const detail::AlignProblem& p);
void prepare_moe_input(const detail::PrepareProblem& p);
void shuffle_rows(const detail::ShuffleRowsProblem& p);

}  // namespace moekit::cpu
