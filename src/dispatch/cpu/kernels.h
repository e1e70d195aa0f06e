// CPU dispatch kernels (arguments already validated).
#pragma once

#include "dispatch/problem.h"

namespace moekit::cpu {

void moe_align_block_size(const detail::AlignProblem& p);
void prepare_moe_input(const detail::PrepareProblem& p);
void shuffle_rows(const detail::ShuffleRowsProblem& p);

namespace avx2 {
// Destination rows [r0, r1) with streaming stores; row_bytes and the output 32-byte aligned.
void shuffle_rows_streamed(const detail::ShuffleRowsProblem& p, int64_t r0, int64_t r1);
}  // namespace avx2

}  // namespace moekit::cpu
