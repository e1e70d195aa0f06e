// Resolved arguments of the dispatch ops (raw pointers and sizes after host validation), shared by
// the oracle, the CPU kernels and the CUDA launchers.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MOEKIT_DISPATCH_HD __host__ __device__ __forceinline__
#else
#define MOEKIT_DISPATCH_HD inline
#endif

namespace moekit::detail {

// Local expert of a raw id, or -1 when the pair is invalid. Never indexes outside the map.
MOEKIT_DISPATCH_HD int32_t local_expert(int64_t id, int32_t num_experts, const int32_t* expert_map,
                                        int64_t map_size) {
  if (expert_map != nullptr) {
    if (id < 0 || id >= map_size) return -1;
    id = expert_map[id];
  }
  return (id >= 0 && id < num_experts) ? static_cast<int32_t>(id) : -1;
}

struct AlignProblem {
  const void* topk_ids = nullptr;
  bool ids_int64 = false;
  int64_t numel = 0;
  int32_t num_experts = 0;  // local E; buckets are E + 1 (bucket 0 = invalid pairs)
  const int32_t* expert_map = nullptr;
  int64_t map_size = 0;
  int32_t block_size = 1;
  bool pad_sorted_token_ids = false;
  bool ignore_invalid_expert = false;
  int32_t* sorted_token_ids = nullptr;
  int64_t sorted_capacity = 0;  // P
  int32_t* experts_ids = nullptr;
  int64_t experts_capacity = 0;  // B
  int32_t* num_tokens_post_pad = nullptr;

  int32_t num_buckets() const { return num_experts + 1; }
  // Bucket of pair i: 0 for an invalid pair (or -1 when invalid pairs are ignored), e + 1 for expert e.
  int32_t bucket(int64_t i) const {
    int64_t id = ids_int64 ? static_cast<const int64_t*>(topk_ids)[i]
                           : static_cast<const int32_t*>(topk_ids)[i];
    int32_t e = local_expert(id, num_experts, expert_map, map_size);
    return e >= 0 ? e + 1 : (ignore_invalid_expert ? -1 : 0);
  }
};

struct PrepareProblem {
  const int32_t* topk_ids = nullptr;
  int64_t numel = 0;
  int64_t topk = 1;
  int32_t num_experts = 0;
  const int32_t* expert_map = nullptr;
  int64_t map_size = 0;
  int32_t n = 0;
  int32_t k = 0;
  int32_t* expert_offsets = nullptr;
  int32_t* blockscale_offsets = nullptr;  // optional
  int32_t* problem_sizes1 = nullptr;
  int32_t* problem_sizes2 = nullptr;
  int32_t* input_permutation = nullptr;
  int32_t* output_permutation = nullptr;

  int32_t expert(int64_t i) const { return local_expert(topk_ids[i], num_experts, expert_map, map_size); }
};

struct ShuffleRowsProblem {
  const unsigned char* input = nullptr;
  int64_t src_rows = 0;
  const int32_t* dst2src_map = nullptr;
  unsigned char* output = nullptr;
  int64_t dst_rows = 0;
  int64_t row_bytes = 0;

  // Host pointer to the source of destination row r, null where its map entry is outside [0, src_rows).
  const unsigned char* source_row(int64_t r) const {
    const int64_t src = dst2src_map[r];
    return src >= 0 && src < src_rows ? input + src * row_bytes : nullptr;
  }
};

}  // namespace moekit::detail
