// CUDA launchers of the GPU expert path (inputs already validated; stream-ordered, no allocation,
// no sync) and the workspace layout they share with the size query.
#pragma once

#include <cstddef>
#include <cstdint>

#include "experts/configs.h"
#include "moekit/experts.h"
#include "moekit/tensor.h"

namespace moekit::cuda {

// Byte offsets into the caller's workspace (each region 256-byte aligned).
struct ExpertsWorkspaceLayout {
  size_t sorted_pairs;  // int32 [P]: pair index m*k+t, grouped by expert
  size_t pair_pos;      // int32 [P]: sorted position of pair m*k+t, -1 if its id is out of range
  size_t tiles;         // int4 [tile_bound]: (expert, first sorted position, rows, 0)
  size_t num_tiles;     // int32 [1]
  size_t prep_counts;   // int32 [chunks + 1, E]: multi-CTA route_prep's per-chunk counts / bases
  size_t act_rows;      // T [P, I]: act(gate) * up per sorted pair
  size_t down_rows;     // T [P, H]: weight * W2 . act per sorted pair (tiled path);
                        // gathered token rows, then W2 . act per sorted pair (grouped path)
  // Grouped (prefill) path only, else empty:
  size_t gate_up_rows;  // float [P, R13]: W13 . x per sorted pair, before the activation (empty
                        // where GEMM 1 applies the activation itself: plan.fused_act)
  size_t sorted_weights;  // float [P]: top-k weight per sorted pair (GEMM 2's epilogue)
  size_t group_args;    // per-expert problem shapes, pointers and strides of both grouped GEMMs
  size_t gemm_scratch;  // CUTLASS's own workspace of each grouped GEMM (tensor maps)
  // GEMM 2's tail split only (plan.gemm2_tail_split), else empty:
  size_t tail_partials;  // float [kGemm2TailMaxUnits, bm, bn] (cooperative tile): the split tiles' K-partial sums
  size_t tail_list;      // the tail's header, columns, row offsets and unit arrays (grouped_experts.cuh)
  size_t total;
  int64_t tile_bound;   // most token tiles any routing can produce (for the smallest tile)
};

inline size_t align_up_256(size_t v) { return (v + 255) & ~size_t(255); }

// Bytes per group (expert) of the grouped GEMMs' argument arrays (plus 256 for their alignment), and of CUTLASS's workspace per
// GEMM (checked against the kernel's own query at launch).
inline constexpr size_t kGroupArgBytes = 256;
inline constexpr size_t kGroupedGemmScratchBytes = size_t(1) << 20;

// route_prep runs in one CTA below kMultiCtaPrepMinPairs (token, slot) pairs, else over chunks of
// pairs (route_prep.cuh says why), at most kMaxRoutePrepChunks of them: one CTA a chunk, each
// counting every id itself, up to kRecountMaxPairs; one cooperative grid with grid barriers past
// that (or where force_route_prep_ctas caps the CTAs).
// H200, qwen3 M = 4096 (32768 pairs), ncu: chunks of 4096 pairs took 4.6 + 3.8 + 8.3 us (count,
// offsets, scatter, then three launches); the one CTA took 9.8-10.3 us for 4096 pairs. H100,
// chunks of 1024: the cooperative grid 13.8 us where the three launches took 17.6 (bench/RESULTS.md).
// H100 2026-11-26 22:21, three rounds: the recounting CTAs took qwen3-30b-a3b M = 512 / 1024 (4096 /
// 8192 pairs) to 474.7-475.3 / 508.7-508.8 us from 477.5-478.6 / 510.3-511.6 with the cooperative
// grid (M = 4096 / 8192 within noise); recounting below 4096 pairs (chunks of 256) was slower than
// the one CTA (M = 64: 412.4-412.7 vs 409.5-410.0 us).
inline constexpr int64_t kMultiCtaPrepMinPairs = 4096;
inline constexpr int64_t kRecountMaxPairs = 65536;
inline constexpr int64_t kMaxRoutePrepChunks = 128;

// Pairs per chunk of the multi-CTA route_prep; P itself when one CTA does it all.
inline int64_t route_prep_chunk(int64_t P) {
  if (P < kMultiCtaPrepMinPairs) return P;
  const int64_t even = (P + kMaxRoutePrepChunks - 1) / kMaxRoutePrepChunks;
  return even > 1024 ? even : 1024;
}

inline ExpertsWorkspaceLayout experts_workspace_layout(int64_t M, int64_t k, int64_t E, int64_t H,
                                                       int64_t I, size_t elem_bytes,
                                                       int64_t min_tile_tokens, bool grouped,
                                                       int64_t R13, bool fused_act, bool gemm2_tail_split) {
  const int64_t P = M * k;
  ExpertsWorkspaceLayout l{};
  l.tile_bound = (P + min_tile_tokens - 1) / min_tile_tokens + (P < E ? P : E);
  size_t off = 0;
  l.sorted_pairs = off; off = align_up_256(off + size_t(P) * 4);
  l.pair_pos = off;     off = align_up_256(off + size_t(P) * 4);
  l.tiles = off;        off = align_up_256(off + size_t(l.tile_bound) * 16);
  l.num_tiles = off;    off = align_up_256(off + 4);
  const int64_t chunk = route_prep_chunk(P);
  const int64_t chunks = chunk < P ? (P + chunk - 1) / chunk : 0;
  l.prep_counts = off;  off = align_up_256(off + size_t(chunks ? chunks + 1 : 0) * size_t(E) * 4);
  l.act_rows = off;     off = align_up_256(off + size_t(P) * size_t(I) * elem_bytes);
  l.down_rows = off;    off = align_up_256(off + size_t(P) * size_t(H) * elem_bytes);
  l.gate_up_rows = l.sorted_weights = l.group_args = l.gemm_scratch = off;
  if (grouped) {
    const int64_t groups = P < E ? P : E;
    l.gate_up_rows = off; off = align_up_256(off + (fused_act ? 0 : size_t(P) * size_t(R13) * 4));
    l.sorted_weights = off; off = align_up_256(off + size_t(P) * 4);
    l.group_args = off;   off = align_up_256(off + size_t(groups) * kGroupArgBytes + 256);
    l.gemm_scratch = off; off = align_up_256(off + (gemm2_tail_split ? 3 : 2) * kGroupedGemmScratchBytes);
  }
  l.tail_partials = l.tail_list = off;
  if (grouped && gemm2_tail_split) {
    const GroupedTile& unit = kGroupedTiles[int(GroupedTileId::kCoop128)];
    l.tail_partials = off; off = align_up_256(off + size_t(kGemm2TailMaxUnits) * unit.bm * unit.bn * 4);
    l.tail_list = off;     off = align_up_256(off + size_t(kGemm2TailMaxUnits) * (kGroupArgBytes + 32) + 256);
  }
  l.total = off;
  return l;
}

struct FusedExpertsArgs {
  const void* hidden;        // [M, H]
  const void* w13;           // [E, R13, H]
  const void* w2;            // [E, H, I]
  const float* w13_bias;     // [E, R13] or null
  const float* w2_bias;      // [E, H] or null
  const float* topk_weights; // [M, k]
  const int* topk_ids;       // [M, k]
  void* output;              // [M, H]
  void* workspace;
  int64_t M, k, E, H, I;
  bool gated;  // w13 has 2I rows (act(gate) * up) rather than I rows (act(h))
  bool gate_up_interleaved;  // gated only: w13 / w13_bias row 2j = gate_j, 2j+1 = up_j (else halves)
  Activation activation;
  float swiglu_alpha, swiglu_limit;
  float routed_scaling_factor;
  DType dtype;  // bf16 or fp16
};

void fused_experts(const FusedExpertsArgs& args, Stream stream);

// Test hook: from kMultiCtaPrepMinPairs pairs on, route_prep takes the cooperative grid capped at
// `ctas` (0: the usual choice; as many as are resident), so that a full GPU runs the
// several-chunks-per-CTA walk of a partitioned one.
void force_route_prep_ctas(int ctas);

// Softmax top-k routing for fused_moe: weights fp32 [M, k], ids int32 [M, k].
void softmax_topk(const void* logits, DType logits_dtype, int64_t M, int64_t E, int k,
                  bool renormalize, float* topk_weights, int* topk_ids, Stream stream);

}  // namespace moekit::cuda
