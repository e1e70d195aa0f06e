// CUDA dispatch launchers (arguments already validated; stream-ordered, no allocation, no sync).
#pragma once

#include "dispatch/problem.h"
#include "moekit/tensor.h"

namespace moekit::cuda {

void moe_align_block_size(const detail::AlignProblem& p, Stream stream);
// The same, launched right behind the router kernel (routing/cuda) that writes p.topk_ids in the
// same stream: the writes that do not depend on the ids overlap the router. The ids are rows of
// row_length (the router's slots) whose valid ids are distinct within a row.
void moe_align_block_size_after_router(const detail::AlignProblem& p, int64_t row_length,
                                       Stream stream);
void prepare_moe_input(const detail::PrepareProblem& p, Stream stream);
void shuffle_rows(const detail::ShuffleRowsProblem& p, Stream stream);

}  // namespace moekit::cuda
