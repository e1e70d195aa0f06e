// moekit/dispatch.h: grouping the (token, slot) pairs of a routing result by expert.
#include <utility>

#include "bindings.h"
#include "moekit/dispatch.h"

namespace moekit::python {

using namespace nb::literals;

namespace {

constexpr const char* kAlignDoc =
    "Bucket the (token, slot) pairs by expert, pad every bucket to a multiple of block_size and "
    "emit the expert of every block (sgl-kernel semantics).\n\n"
    "num_experts is the NUMBER OF BUCKETS = E + 1 (bucket 0 holds invalid ids such as -1), as "
    "SGLang passes it.\n"
    "topk_ids            [M, topk] int32 or int64, contiguous\n"
    "sorted_token_ids    [P] int32, written: flat pair indices (token * topk + slot), ascending "
    "within a bucket; padding holds numel when pad_sorted_token_ids, else is left untouched\n"
    "experts_ids         [B] int32, written for the used blocks (-1 blocks first); the rest "
    "untouched\n"
    "num_tokens_post_pad [1] int32, written\n"
    "cumsum_buffer       [>= num_experts + 1] int32 scratch (kept for compatibility; untouched)\n"
    "Capacity: see moe_align_block_size_capacity.";

constexpr const char* kAlignExpertsDoc =
    "moe_align_block_size taking the real expert count E (buckets = E + 1) and an optional "
    "expert_map (int32 [E_global]: global id -> local expert or -1) for expert parallelism.";

constexpr const char* kPrepareDoc =
    "Grouped-GEMM metadata for permute -> grouped GEMM -> un-permute (c_e = pairs of expert e; "
    "slots of one expert in ascending pair index).\n\n"
    "topk_ids           [M, topk] int32\n"
    "expert_offsets     [E + 1] int32, written: 0, c_0, c_0 + c_1, ...\n"
    "blockscale_offsets [E + 1] int32 or None, written: prefix sums of ceil(c_e / 128) * 128\n"
    "problem_sizes1     [E, 3] int32, written: (c_e, 2n, k)\n"
    "problem_sizes2     [E, 3] int32, written: (c_e, k, n)\n"
    "input_permutation  [M * topk] int32, written: slot -> source token (-1 past the last pair)\n"
    "output_permutation [M * topk] int32, written: pair -> slot (-1 for an invalid pair)\n"
    "expert_map         int32 [E_global] or None";

constexpr const char* kShuffleDoc =
    "output[r, :] = input[dst2src_map[r], :] (every byte; an index outside [0, R_src) gives a "
    "row of zero bytes).\n\n"
    "input       [R_src, C] float32/float16/bfloat16/fp8/int8/uint8/int32, contiguous\n"
    "dst2src_map [R_dst] int32\n"
    "output      [R_dst, C] same dtype, contiguous, written";

}  // namespace

void bind_dispatch(nb::module_& m) {
  // Fast paths take `stream` last; the oracles (reference_*) take the same arguments without it.
  m.def(
      "moe_align_block_size",
      [](Tensor topk_ids, int64_t num_experts, int64_t block_size, Tensor sorted_token_ids,
         Tensor experts_ids, Tensor num_tokens_post_pad, Tensor cumsum_buffer,
         bool pad_sorted_token_ids, bool ignore_invalid_expert, uintptr_t stream) {
        TensorView ids = topk_ids.input("topk_ids"),
                   sorted = sorted_token_ids.output("sorted_token_ids"),
                   experts = experts_ids.output("experts_ids"),
                   post_pad = num_tokens_post_pad.output("num_tokens_post_pad"),
                   cumsum = cumsum_buffer.output("cumsum_buffer");
        nb::gil_scoped_release nogil;
        moekit::moe_align_block_size(ids, num_experts, block_size, sorted, experts, post_pad,
                                     cumsum, pad_sorted_token_ids, ignore_invalid_expert,
                                     stream_from(stream));
      },
      "topk_ids"_a, "num_experts"_a, "block_size"_a, "sorted_token_ids"_a, "experts_ids"_a,
      "num_tokens_post_pad"_a, "cumsum_buffer"_a, "pad_sorted_token_ids"_a = false,
      "ignore_invalid_expert"_a = false, "stream"_a = 0, kAlignDoc);
  m.def(
      "reference_moe_align_block_size",
      [](Tensor topk_ids, int64_t num_experts, int64_t block_size, Tensor sorted_token_ids,
         Tensor experts_ids, Tensor num_tokens_post_pad, Tensor cumsum_buffer,
         bool pad_sorted_token_ids, bool ignore_invalid_expert) {
        TensorView ids = topk_ids.input("topk_ids"),
                   sorted = sorted_token_ids.output("sorted_token_ids"),
                   experts = experts_ids.output("experts_ids"),
                   post_pad = num_tokens_post_pad.output("num_tokens_post_pad"),
                   cumsum = cumsum_buffer.output("cumsum_buffer");
        nb::gil_scoped_release nogil;
        moekit::reference::moe_align_block_size(ids, num_experts, block_size, sorted, experts,
                                                post_pad, cumsum, pad_sorted_token_ids,
                                                ignore_invalid_expert);
      },
      "topk_ids"_a, "num_experts"_a, "block_size"_a, "sorted_token_ids"_a, "experts_ids"_a,
      "num_tokens_post_pad"_a, "cumsum_buffer"_a, "pad_sorted_token_ids"_a = false,
      "ignore_invalid_expert"_a = false, kAlignDoc);

  m.def(
      "moe_align_block_size_experts",
      [](Tensor topk_ids, int64_t num_experts, int64_t block_size, Tensor sorted_token_ids,
         Tensor experts_ids, Tensor num_tokens_post_pad, bool pad_sorted_token_ids,
         bool ignore_invalid_expert, OptionalTensor expert_map, uintptr_t stream) {
        TensorView ids = topk_ids.input("topk_ids"),
                   sorted = sorted_token_ids.output("sorted_token_ids"),
                   experts = experts_ids.output("experts_ids"),
                   post_pad = num_tokens_post_pad.output("num_tokens_post_pad"),
                   map = input(expert_map, "expert_map");
        nb::gil_scoped_release nogil;
        moekit::moe_align_block_size_experts(ids, num_experts, block_size, sorted, experts,
                                             post_pad, pad_sorted_token_ids, ignore_invalid_expert,
                                             map, stream_from(stream));
      },
      "topk_ids"_a, "num_experts"_a, "block_size"_a, "sorted_token_ids"_a, "experts_ids"_a,
      "num_tokens_post_pad"_a, "pad_sorted_token_ids"_a = false,
      "ignore_invalid_expert"_a = false, "expert_map"_a = nb::none(), "stream"_a = 0,
      kAlignExpertsDoc);
  m.def(
      "reference_moe_align_block_size_experts",
      [](Tensor topk_ids, int64_t num_experts, int64_t block_size, Tensor sorted_token_ids,
         Tensor experts_ids, Tensor num_tokens_post_pad, bool pad_sorted_token_ids,
         bool ignore_invalid_expert, OptionalTensor expert_map) {
        TensorView ids = topk_ids.input("topk_ids"),
                   sorted = sorted_token_ids.output("sorted_token_ids"),
                   experts = experts_ids.output("experts_ids"),
                   post_pad = num_tokens_post_pad.output("num_tokens_post_pad"),
                   map = input(expert_map, "expert_map");
        nb::gil_scoped_release nogil;
        moekit::reference::moe_align_block_size_experts(ids, num_experts, block_size, sorted,
                                                        experts, post_pad, pad_sorted_token_ids,
                                                        ignore_invalid_expert, map);
      },
      "topk_ids"_a, "num_experts"_a, "block_size"_a, "sorted_token_ids"_a, "experts_ids"_a,
      "num_tokens_post_pad"_a, "pad_sorted_token_ids"_a = false,
      "ignore_invalid_expert"_a = false, "expert_map"_a = nb::none(), kAlignExpertsDoc);

  m.def(
      "moe_align_block_size_capacity",
      [](int64_t numel, int64_t num_buckets, int64_t block_size) {
        AlignCapacity c = moekit::moe_align_block_size_capacity(numel, num_buckets, block_size);
        return std::make_pair(c.sorted_token_ids, c.experts_ids);
      },
      "numel"_a, "num_buckets"_a, "block_size"_a,
      "(len(sorted_token_ids), len(experts_ids)): the smallest buffers moe_align_block_size "
      "accepts for numel = M * topk pairs and num_buckets buckets (E + 1; E when invalid pairs "
      "are ignored).");

  m.def(
      "prepare_moe_input",
      [](Tensor topk_ids, Tensor expert_offsets, OptionalTensor blockscale_offsets,
         Tensor problem_sizes1, Tensor problem_sizes2, Tensor input_permutation,
         Tensor output_permutation, int64_t num_experts, int64_t n, int64_t k,
         OptionalTensor expert_map, uintptr_t stream) {
        TensorView ids = topk_ids.input("topk_ids"),
                   offsets = expert_offsets.output("expert_offsets"),
                   blockscale = output(blockscale_offsets, "blockscale_offsets"),
                   sizes1 = problem_sizes1.output("problem_sizes1"),
                   sizes2 = problem_sizes2.output("problem_sizes2"),
                   in_perm = input_permutation.output("input_permutation"),
                   out_perm = output_permutation.output("output_permutation"),
                   map = input(expert_map, "expert_map");
        nb::gil_scoped_release nogil;
        moekit::prepare_moe_input(ids, offsets, blockscale, sizes1, sizes2, in_perm, out_perm,
                                  num_experts, n, k, map, stream_from(stream));
      },
      "topk_ids"_a, "expert_offsets"_a, "blockscale_offsets"_a.none(), "problem_sizes1"_a,
      "problem_sizes2"_a, "input_permutation"_a, "output_permutation"_a, "num_experts"_a, "n"_a,
      "k"_a, "expert_map"_a = nb::none(), "stream"_a = 0, kPrepareDoc);
  m.def(
      "reference_prepare_moe_input",
      [](Tensor topk_ids, Tensor expert_offsets, OptionalTensor blockscale_offsets,
         Tensor problem_sizes1, Tensor problem_sizes2, Tensor input_permutation,
         Tensor output_permutation, int64_t num_experts, int64_t n, int64_t k,
         OptionalTensor expert_map) {
        TensorView ids = topk_ids.input("topk_ids"),
                   offsets = expert_offsets.output("expert_offsets"),
                   blockscale = output(blockscale_offsets, "blockscale_offsets"),
                   sizes1 = problem_sizes1.output("problem_sizes1"),
                   sizes2 = problem_sizes2.output("problem_sizes2"),
                   in_perm = input_permutation.output("input_permutation"),
                   out_perm = output_permutation.output("output_permutation"),
                   map = input(expert_map, "expert_map");
        nb::gil_scoped_release nogil;
        moekit::reference::prepare_moe_input(ids, offsets, blockscale, sizes1, sizes2, in_perm,
                                             out_perm, num_experts, n, k, map);
      },
      "topk_ids"_a, "expert_offsets"_a, "blockscale_offsets"_a.none(), "problem_sizes1"_a,
      "problem_sizes2"_a, "input_permutation"_a, "output_permutation"_a, "num_experts"_a, "n"_a,
      "k"_a, "expert_map"_a = nb::none(), kPrepareDoc);

  m.def(
      "shuffle_rows",
      [](Tensor input_, Tensor dst2src_map, Tensor output_, uintptr_t stream) {
        TensorView in = input_.input("input"), map = dst2src_map.input("dst2src_map"),
                   out = output_.output("output");
        nb::gil_scoped_release nogil;
        moekit::shuffle_rows(in, map, out, stream_from(stream));
      },
      "input"_a, "dst2src_map"_a, "output"_a, "stream"_a = 0, kShuffleDoc);
  m.def(
      "reference_shuffle_rows",
      [](Tensor input_, Tensor dst2src_map, Tensor output_) {
        TensorView in = input_.input("input"), map = dst2src_map.input("dst2src_map"),
                   out = output_.output("output");
        nb::gil_scoped_release nogil;
        moekit::reference::shuffle_rows(in, map, out);
      },
      "input"_a, "dst2src_map"_a, "output"_a, kShuffleDoc);
}

}  // namespace moekit::python
