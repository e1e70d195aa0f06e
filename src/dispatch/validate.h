// Argument checks of the dispatch ops, shared by the oracle and the fast paths. Each returns the
// resolved problem; nothing is written before every check has passed.
#pragma once

#include "dispatch/problem.h"
#include "moekit/tensor.h"

namespace moekit::detail {

inline constexpr int64_t kMaxDispatchExperts = 8192;

// num_experts is the local expert count E (the compat entry passes NB - 1).
AlignProblem validate_align(const TensorView& topk_ids, int64_t num_experts, int64_t block_size,
                            const TensorView& sorted_token_ids, const TensorView& experts_ids,
                            const TensorView& num_tokens_post_pad, bool pad_sorted_token_ids,
                            bool ignore_invalid_expert, const TensorView& expert_map, Device device);
// The compat entry's extra checks: NB range and the cumsum_buffer scratch.
void validate_align_compat(int64_t num_buckets, const TensorView& cumsum_buffer, Device device);

PrepareProblem validate_prepare(const TensorView& topk_ids, const TensorView& expert_offsets,
                                const TensorView& blockscale_offsets,
                                const TensorView& problem_sizes1, const TensorView& problem_sizes2,
                                const TensorView& input_permutation,
                                const TensorView& output_permutation, int64_t num_experts,
                                int64_t n, int64_t k, const TensorView& expert_map, Device device);

ShuffleRowsProblem validate_shuffle_rows(const TensorView& input, const TensorView& dst2src_map,
                                         const TensorView& output, Device device);

}  // namespace moekit::detail
