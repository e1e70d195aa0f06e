// CUDA dispatch launchers (arguments already validated; stream-ordered, no allocation, no sync).
#pragma once

#include "dispatch/problem.h"
#include "moekit/tensor.h"

namespace moekit::cuda {

void moe_align_block_size(const detail::AlignProblem& p, Stream stream);
void prepare_moe_input(const detail::PrepareProblem& p, Stream stream);
void shuffle_rows(const detail::ShuffleRowsProblem& p, Stream stream);

}  // namespace moekit::cuda
