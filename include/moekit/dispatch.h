// Dispatch: group the (token, slot) pairs of a routing result by expert, so that grouped GEMMs can
// work on the rows of one expert at a time.
//
// Every op takes tensors on one device (CPU or CUDA) and runs there; CUDA ops run on `stream`,
// allocate nothing and never synchronise (safe inside CUDA-graph capture). Results are
// deterministic: pairs of one expert always appear in ascending flat index i = token * topk + slot.
//
// Valid expert ids: an id x of topk_ids names local expert x when 0 <= x < E. With an expert map
// (expert parallelism) topk_ids hold global ids and local = expert_map[x] for 0 <= x < E_global.
// Everything else (-1, ids >= E, map entries of -1 or out of [0, E)) is an invalid pair: it is
// never used as an index.
#pragma once

#include <cstdint>

#include "moekit/tensor.h"

namespace moekit {

// ---- moe_align_block_size ----------------------------------------------------------------------
// Buckets the pairs by expert, pads every bucket to a multiple of block_size and emits the expert id
// of every block of block_size sorted slots.
//
// sgl-kernel compatible entry: `num_experts` is the NUMBER OF BUCKETS NB = E + 1 (bucket 0 holds
// the invalid pairs, bucket e + 1 expert e); pass E + 1 as SGLang does.
//   topk_ids            [M, topk] (any shape, flattened row-major) int32 or int64, contiguous
//   sorted_token_ids    [P] int32 out: slot start_b + r holds the flat index i of the r-th pair
//                       (ascending i) of bucket b; padding slots and [sum P_b, P) hold numel when
//                       pad_sorted_token_ids, else are left untouched
//   experts_ids         [B] int32 out: entry j < sum P_b / block_size holds the expert of block j
//                       (-1 for the invalid bucket, whose blocks come first); the rest untouched
//   num_tokens_post_pad [1] int32 out: sum over buckets of P_b = ceil(c_b / block_size) * block_size
//   cumsum_buffer       [>= NB + 1] int32 scratch (kept for compatibility; left untouched)
//   ignore_invalid_expert: drop invalid pairs instead of bucketing them (no -1 blocks)
// Capacity (checked on the host): P >= floor(bound / bs) * bs and B >= floor(bound / bs) with
// bound = numel + min(numel, NB) * (bs - 1) (moe_align_block_size_capacity computes both).
// Limits: 1 <= NB <= 8193, block_size >= 1, numel + bound < 2^31.
MOEKIT_API void moe_align_block_size(TensorView topk_ids, int64_t num_experts, int64_t block_size,
                                     TensorView sorted_token_ids, TensorView experts_ids,
                                     TensorView num_tokens_post_pad, TensorView cumsum_buffer,
                                     bool pad_sorted_token_ids = false,
                                     bool ignore_invalid_expert = false, Stream stream = {});

// The same op taking the real expert count E (1 <= E <= 8192) and an optional expert map
// (int32 [E_global], global id -> local expert id in [0, E) or -1). Buckets are as above (NB = E + 1).
MOEKIT_API void moe_align_block_size_experts(TensorView topk_ids, int64_t num_experts,
                                             int64_t block_size, TensorView sorted_token_ids,
                                             TensorView experts_ids, TensorView num_tokens_post_pad,
                                             bool pad_sorted_token_ids = false,
                                             bool ignore_invalid_expert = false,
                                             TensorView expert_map = {}, Stream stream = {});

// Smallest buffers moe_align_block_size accepts for `numel` pairs and `num_buckets` buckets
// (E + 1; E when invalid pairs are ignored).
struct AlignCapacity {
  int64_t sorted_token_ids;  // P
  int64_t experts_ids;       // B
};
MOEKIT_API AlignCapacity moe_align_block_size_capacity(int64_t numel, int64_t num_buckets,
                                                       int64_t block_size);

// ---- prepare_moe_input -------------------------------------------------------------------------
// Grouped-GEMM metadata for the permute -> grouped GEMM -> un-permute flow (c_e = pairs of expert e).
//   topk_ids            [M, topk] int32
//   expert_offsets      [E + 1] int32 out: 0, c_0, c_0 + c_1, ...
//   blockscale_offsets  [E + 1] int32 out, optional: prefix sums of ceil(c_e / 128) * 128
//   problem_sizes1      [E, 3] int32 out: (c_e, 2n, k)
//   problem_sizes2      [E, 3] int32 out: (c_e, k, n)
//   input_permutation   [M * topk] int32 out: slot p -> source token i / topk; slots past the last
//                       valid pair hold -1
//   output_permutation  [M * topk] int32 out: pair i -> its slot p, or -1 for an invalid pair
//   expert_map          optional int32 [E_global] (see above)
// Slots of one expert are assigned in ascending i.
MOEKIT_API void prepare_moe_input(TensorView topk_ids, TensorView expert_offsets,
                                  TensorView blockscale_offsets, TensorView problem_sizes1,
                                  TensorView problem_sizes2, TensorView input_permutation,
                                  TensorView output_permutation, int64_t num_experts, int64_t n,
                                  int64_t k, TensorView expert_map = {}, Stream stream = {});

// ---- shuffle_rows ------------------------------------------------------------------------------
// output[r, :] = input[dst2src_map[r], :], every byte of every row (any row size, any alignment).
// A map entry outside [0, R_src) (e.g. -1) yields a row of zero bytes.
//   input        [R_src, C] fp32/fp16/bf16/fp8 (e4m3, e5m2, e8m0)/int8/uint8/int32, contiguous
//   dst2src_map  [R_dst] int32
//   output       [R_dst, C] same dtype, contiguous
MOEKIT_API void shuffle_rows(TensorView input, TensorView dst2src_map, TensorView output,
                             Stream stream = {});

namespace reference {
MOEKIT_API void moe_align_block_size(TensorView topk_ids, int64_t num_experts, int64_t block_size,
                                     TensorView sorted_token_ids, TensorView experts_ids,
                                     TensorView num_tokens_post_pad, TensorView cumsum_buffer,
                                     bool pad_sorted_token_ids = false,
                                     bool ignore_invalid_expert = false);
MOEKIT_API void moe_align_block_size_experts(TensorView topk_ids, int64_t num_experts,
                                             int64_t block_size, TensorView sorted_token_ids,
                                             TensorView experts_ids, TensorView num_tokens_post_pad,
                                             bool pad_sorted_token_ids = false,
                                             bool ignore_invalid_expert = false,
                                             TensorView expert_map = {});
MOEKIT_API void prepare_moe_input(TensorView topk_ids, TensorView expert_offsets,
                                  TensorView blockscale_offsets, TensorView problem_sizes1,
                                  TensorView problem_sizes2, TensorView input_permutation,
                                  TensorView output_permutation, int64_t num_experts, int64_t n,
                                  int64_t k, TensorView expert_map = {});
MOEKIT_API void shuffle_rows(TensorView input, TensorView dst2src_map, TensorView output);
}  // namespace reference

}  // namespace moekit
