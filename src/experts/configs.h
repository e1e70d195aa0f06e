// Tile table of the GPU expert GEMMs (one table, chosen by heuristics.cpp).
//
// Both GEMMs are "swap-AB": the weight rows are the MMA's M side (16 rows per mma), the tokens of
// one expert the N side (8 per mma), so a tile of 8 tokens costs no padding waste in decode.
//   bn     weight rows per CTA (for the gated GEMM 1: bn/2 gate rows + the bn/2 matching up rows)
//   bt     tokens (sorted (token, slot) pairs of one expert) per CTA
//   bk     K depth of one pipeline stage (64 or 128: 128-byte swizzle rows)
//   wn, wt, wk   warps along rows, tokens and K (wk > 1 splits each stage's K between warps and
//                reduces in shared memory in a fixed order)
//   stages cp.async pipeline depth
//   min_blocks  CTAs per SM the register budget is capped for (__launch_bounds__): two CTAs let
//               one's prologue/epilogue overlap the other's main loop. A test checks that each
//               tile's shared memory lets that many CTAs reside.
#pragma once

#include <cstdint>

namespace moekit::cuda {

struct GemmTile {
  int bn, bt, bk, wn, wt, wk, stages, min_blocks;
  const char* name;
};

enum class TileId : int {
  kDecode8 = 0, kDecode16, kSmall32, kMid64, kLarge128, kDecode8Narrow, kDecode8x3, kDecode16x3,
  kDecode8K256, kDecode8NarrowK256, kCount
};

// Decode tiles stream weights (memory-bound): deep K stages, K split among warps so that 8 warps
// keep many 16-byte loads in flight. Prefill tiles are square-ish for tensor-core reuse.
inline constexpr GemmTile kGemmTiles[] = {
    {64, 8, 128, 2, 1, 4, 4, 1, "decode8"},
    {64, 16, 128, 2, 1, 4, 4, 1, "decode16"},
    // No K split: a K-split CTA folds its warps' sums through shared memory after its ring has
    // drained, with no weight bytes in flight meanwhile. A stream probe (cp.async ring alone, 2 CTAs
    // per SM) read 3.03 TB/s at K = 768 and 2.81 with that epilogue added. H100 2026-11-26 21:12,
    // us: qwen3-30b-a3b M = 256 452.0 / 452.1 (4 x 1 x 2 warps, 4 stages) -> 442.4 / 443.2 (4 x 2 x 1)
    // -> 440.3 / 439.8 (4 x 2 x 1, 5 stages); mixtral-8x7b M = 64 955.7 -> 954.8 -> 956.7.
    {128, 32, 64, 4, 2, 1, 5, 1, "small32"},
    {128, 64, 64, 4, 2, 1, 4, 2, "mid64"},
    {128, 128, 64, 2, 4, 1, 3, 2, "large128"},
    {32, 8, 128, 1, 1, 8, 4, 1, "decode8narrow"},  // more, smaller CTAs: balance when few experts
    // Three CTAs per SM (registers capped at 80; 74 / 61 KB of shared memory each): more weight
    // bytes in flight, and one CTA's pipeline fill overlaps two others' streams.
    {64, 8, 128, 2, 1, 4, 4, 3, "decode8x3"},
    {64, 16, 128, 2, 1, 4, 3, 3, "decode16x3"},
    // One token: stages 256 deep, each a contiguous 512 bytes of every weight row of the CTA (the
    // 128-deep stages read 256). H100 2026-11-27 02:50-02:58 (bench/RESULTS.md), us, two readings:
    // qwen3-30b-a3b M = 1 decode8narrow 44.9 / 44.7 -> decode8k256 43.5 / 43.6 (decode8narrowk256
    // 44.1 / 44.1); deepseek-v3 M = 1 decode8 256.1 / 256.1 -> 250.1 (251.0 / 251.3); mixtral-8x7b
    // M = 1 decode8narrow 252.0 / 252.0 -> decode8narrowk256 250.4 / 250.9 (decode8k256 252.6). At
    // qwen3 M = 2 / 4 both lost (67-69 / 115-120 vs 64.6 / 113.3). The narrow one runs 3 CTAs an SM.
    // Two 108 KB CTAs an SM for the wide one, so that one token's 192 GEMM 1 CTAs (qwen3) run in one
    // wave: its registers are capped for it. Uncapped, it sat at 124 and an experiment build that
    // added a few parameters took 134, one CTA an SM: qwen3 M = 1 52.0 us against 43.6 (H100
    // 2026-11-27 05:25-05:45, bench/RESULTS.md).
    {64, 8, 256, 2, 1, 4, 3, 2, "decode8k256"},
    {32, 8, 256, 1, 1, 8, 3, 3, "decode8narrowk256"},
};

inline constexpr int kMinTileTokens = 8;  // smallest bt: sizes the tile list in the workspace

// Prefill path (many tokens per expert): gathered token rows, then two CUTLASS sm90 grouped GEMMs
// (TMA + wgmma, warp-specialised, persistent; one group per expert, problem shapes and pointers
// written on the device). Token rows are the GEMM's M side, weight rows its N side.
//   bm, bn, bk    CTA tile (tokens, weight rows, depth)
//   cluster_m     CTAs along M (token tiles of one expert) sharing each weight tile by TMA multicast
//   cluster_n     CTAs along N sharing each token tile by TMA multicast
//   pingpong      two consumer warp groups on alternate tiles (epilogue hidden behind the other's
//                 main loop) rather than both on one tile (cooperative)
struct GroupedTile {
  int bm, bn, bk, cluster_m, cluster_n;
  bool pingpong;
  const char* name;
};

enum class GroupedTileId : int { kCoop128 = 0, kPingpong128, kCount };

// H200, 2026-11-26 (bench/RESULTS.md): pingpong 128x128 hides each tile's epilogue behind the other
// warp group's main loop (qwen3-30b-a3b M = 4096: GEMM 1 411 vs 426 us, GEMM 2 225 vs 230 us) but
// pulled a third more operand bytes through L2 per flop than that day's cooperative 128x256 (token
// tile shared along N), which loses with deep K (deepseek-v3 M = 8192: 15.8 vs 12.6 ms). A 64x256 pingpong tile was slower everywhere.
// The pingpong tile's stages are 128 deep (3 stages in place of 4, half the barrier round trips
// per K; not profiled further): H100 2026-11-26 12:23 / 12:35 (exp4, 64 vs 128 deep) deepseek-v3
// M = 2048 9039 / 9095 vs 8178 / 8172 us, mixtral-8x7b M = 256 1072 / 1077 vs 1029 / 1028,
// qwen3-30b-a3b M = 1024 529 / 529 vs 516 / 518, M = 2048 / 4096 607 / 853 vs 604 / 855. A 64-row
// pingpong tile (no half-empty MMA tiles at 64 tokens per expert) lost at every one of them.
// The cooperative tile runs without a cluster. With two CTAs along M sharing each weight tile by
// multicast (fewer L2 bytes per flop; along M rather than N, H100 2026-11-26 10:29: deepseek-v3
// M = 4096 / 8192 9833 / 14087 vs 12118 / 17852 us) CUTLASS's group scheduler rounds each
// expert's token tiles up to the cluster: an expert of 257-384 tokens ran four 128-row tiles, not
// three. Without the cluster, H100 2026-11-26 14:15 - 14:50 (exp9 and lead a601e35, one binary
// per call), us, no cluster vs cluster 2x1: mixtral-8x7b M = 1024 1469 / 1468 vs 1588 / 1672,
// M = 4096 4605 / 4629 vs 5038 / 4855, M = 6144 6987 / 6804 vs 6944 / 6989 / 6936, M = 8192
// 9276 / 9213 / 9008 vs 9061 / 9220 / 9644 / 9233 / 9065; deepseek-v3 M = 4096 9435 / 9409 vs
// 9695 / 9705, M = 8192 11998 / 11970 vs 13839 / 13868; qwen3-30b-a3b M = 4096 829 / 828 vs
// 884 / 886, M = 8192 1378 / 1378 vs 1457 / 1459. The clustered tile won nowhere and was removed.
// Two CTAs along N sharing each token tile (cluster 1x2, as the pingpong tile has) lost again once
// the fused epilogue had got cheaper: H100 2026-11-27 10:30, us, 1x2 vs no cluster, two rounds:
// qwen3-30b-a3b M = 4096 / 8192 (both GEMMs cooperative) 825.0-825.2 / 1395.3-1396.4 vs 804.4 /
// 1343.9; mixtral-8x7b M = 1024 / 8192 1625-1627 / 8977-8985 vs 1434-1437 / 8750-8789; deepseek-v3
// M = 4096 / 8192 11622-11688 / 15407-16307 vs 9460-9461 / 12027-12035.
inline constexpr GroupedTile kGroupedTiles[] = {
    {128, 256, 64, 1, 1, false, "grouped128coop"},
    {128, 128, 128, 1, 2, true, "grouped128pp"},
};

// GEMM 2's tail split (plan.gemm2_tail_split, grouped_experts.cuh): the cooperative GEMM 2's last
// round of tiles, when at most half full, runs split along K in a second launch of at most this many
// 128 x 256 units (fp32 partials: 128 KB each in the workspace); a finalize kernel sums them in order.
inline constexpr int kGemm2TailMaxUnits = 132;
// The split pays where a tile is long (K = I deep) and the layer fills at least one round.
inline constexpr int64_t kGemm2TailMinK = 4096;

// Test hook for the split: `sms` > 0 forces it on for every grouped layer with a cooperative GEMM 2
// and plans the rounds for that many CTAs (small layers then have tails); 0 returns to the choice.
void force_gemm2_tail_split(int sms);
int forced_gemm2_tail_sms();

// Test hook for the plan's `fused_act`: 1 / 0 force it on / off for interleaved gated layers on the
// grouped path, -1 returns to the choice (MOEKIT_GROUPED_FUSED_ACT=0/1 overrides it too).
void force_grouped_fused_act(int mode);

// Average tokens per touched expert from which the grouped prefill path is chosen.
// H100, 2026-11-25: at 64 it beat the tiled path for qwen3-30b-a3b (M = 1024: 582 vs 613 us) and
// mixtral-8x7b (M = 256: 1091 vs 1297 us); at 16 (qwen3 M = 256) it lost (497 vs 479 us).
// At 32 (H200, 2026-11-26) it won for deepseek-v3 (M = 1024: 5930 vs 6425 us) but lost for
// mixtral-8x7b (M = 128: 819 vs 779 us): kept at 64.
inline constexpr int kGroupedMinTokensPerExpert = 64;

// Whether this build has the prefill path (CUTLASS headers were found at configure time).
bool grouped_experts_available();

// The choice for one layer call: one tile for both GEMMs (they share the tile list), or the
// grouped prefill path with a grouped tile for each GEMM.
struct ExpertsPlan {
  TileId tile;
  int tile_group;  // token tiles walked together across all row tiles (L2 reuse of gathered rows)
  bool grouped;    // prefill path; `grouped_tile` / `grouped_tile2` then apply and `tile` is unused
  GroupedTileId grouped_tile;   // GEMM 1's
  GroupedTileId grouped_tile2;  // GEMM 2's
  bool fused_act;  // grouped, gated and interleaved w13: GEMM 1 applies the activation in its
                   // epilogue (on the plan's tile) instead of fp32 gate/up rows + act kernel
  bool pairs_in_order;  // tiled path, few pairs: no route prep, each (token, slot) pair its own tile
  bool one_token;       // M = 1, small experts: token_gemv.cuh's two GEMV kernels, no route prep or combine
  bool gemm2_tail_split;  // grouped: GEMM 2's last partial round split along K (kGemm2TailMaxUnits)
};

// Slots (k) the one-token kernels take (a warp each in one CTA); past that one token runs tiled.
inline constexpr int kTokenGemvMaxSlots = 16;

// Deterministic choice from shapes only (M tokens, k slots, E experts, H, I, w13 layout). Whether
// the grouped path is taken does not depend on the layout; `fused_act` does, and the workspace size
// query follows it (no fp32 gate/up rows where GEMM 1 applies the activation).
// MOEKIT_EXPERTS_TILE=<name> forces a tile of either table (tuning; a grouped pair as
// "<GEMM 1's>+<GEMM 2's>"); MOEKIT_DEBUG_EXPERTS=1 prints.
ExpertsPlan choose_experts_plan(int64_t M, int k, int64_t E, int64_t H, int64_t I, bool gated,
                                bool gate_up_interleaved = false);

// Test hook: a tile name that overrides the choice (as MOEKIT_EXPERTS_TILE does), or null.
void force_experts_tile(const char* name);

}  // namespace moekit::cuda
