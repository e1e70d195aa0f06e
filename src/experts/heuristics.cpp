// The GPU expert path's one choice function: tile from the average tokens per touched expert.
// MOEKIT_DEBUG_EXPERTS=1 prints each choice to stderr.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "experts/configs.h"

namespace moekit::cuda {
namespace {
const char* g_forced_tile = nullptr;

const char* forced_tile_name() {
  if (g_forced_tile) return g_forced_tile;
  static const char* env = std::getenv("MOEKIT_EXPERTS_TILE");
  return env && *env ? env : nullptr;
}
}  // namespace

void force_experts_tile(const char* name) { g_forced_tile = name; }

namespace {
int g_forced_fused_act = -1;

// -1: the plan decides; else the test hook's or MOEKIT_GROUPED_FUSED_ACT's 0 / 1.
int forced_fused_act() {
  if (g_forced_fused_act >= 0) return g_forced_fused_act;
  static const int env = [] {
    const char* v = std::getenv("MOEKIT_GROUPED_FUSED_ACT");
    return v && *v ? (*v != '0' ? 1 : 0) : -1;
  }();
  return env;
}
}  // namespace

void force_grouped_fused_act(int mode) { g_forced_fused_act = mode; }

namespace {
int g_forced_tail_sms = 0;
}  // namespace

void force_gemm2_tail_split(int sms) { g_forced_tail_sms = sms; }
int forced_gemm2_tail_sms() { return g_forced_tail_sms; }

bool grouped_experts_available() {
#if defined(MOEKIT_WITH_CUTLASS)
  return true;
#else
  return false;
#endif
}

ExpertsPlan choose_experts_plan(int64_t M, int k, int64_t E, int64_t H, int64_t I, bool gated,
                                bool gate_up_interleaved) {
  const int64_t pairs = M * k;
  const int64_t touched = pairs < E ? pairs : E;
  const double per_expert = touched > 0 ? double(pairs) / double(touched) : 0.0;
  const int64_t rows13 = gated ? 2 * I : I;
  constexpr int64_t kSms = 132;  // an H100's, which the CTA-count thresholds below were measured on
  // Weight-row CTAs of the smaller GEMM with the 64-row decode tile: under two per SM (few
  // experts touched, e.g. one decode token), the 32-row tile spreads the stream over more CTAs.
  const int64_t decode_ctas = touched * ((rows13 < H ? rows13 : H) / 64);
  const double expert_bytes = double(rows13 + I) * double(H) * 2.0;  // w13 + w2, 16-bit
  // Experts too large to stay in L2 between two token tiles: prefer one larger token tile.
  const bool big_expert = expert_bytes > 32.0 * 1024 * 1024;
  // Token tiles about twice the average count: routing noise (roughly Poisson) then rarely spills
  // an expert into a second tile, which would re-read its weights; part-filled tiles skip their
  // empty n8 blocks, so the larger tile costs little tensor work. Thresholds measured on H100
  // (bench/RESULTS_gpu_moe.md).
  // The 64-row decode tiles run three CTAs per SM (x3) unless the 64-row CTAs of either GEMM, one
  // token tile per expert, leave their last wave under 70% of the 3 x 132 slots (few experts with
  // long rows). 2026-11-26 (bench/RESULTS.md): x3 took 4-10% off qwen3-30b-a3b M = 4-64 and
  // mixtral-8x7b M = 4 on an H200 (1-2% on an H100), but added 4-6% at deepseek-v3 M = 1 and
  // mixtral M = 16 (512 CTAs), which the rule keeps on two CTAs per SM.
  auto last_wave_fill = [](int64_t ctas) {
    const int64_t slots = 3 * kSms, waves = (ctas + slots - 1) / slots;
    return waves > 0 ? double(ctas) / double(waves * slots) : 1.0;
  };
  const bool x3 = last_wave_fill(touched * (rows13 / 64)) >= 0.7 && last_wave_fill(touched * (H / 64)) >= 0.7;
  TileId tile = TileId::kLarge128;
  // One token: the 256-deep decode tiles (configs.h), the narrow one where the 64-row CTAs of the
  // smaller GEMM would not cover the SMs (mixtral-8x7b: 128 CTAs).
  if (M == 1) tile = decode_ctas < kSms ? TileId::kDecode8NarrowK256 : TileId::kDecode8K256;
  else if (per_expert <= 4 && decode_ctas < 2 * kSms) tile = TileId::kDecode8Narrow;
  else if (per_expert <= 4) tile = x3 ? TileId::kDecode8x3 : TileId::kDecode8;
  else if (per_expert <= 8) tile = x3 ? TileId::kDecode16x3 : TileId::kDecode16;
  else if (per_expert <= 16) tile = TileId::kSmall32;
  else if (per_expert <= (big_expert ? 48 : 96)) tile = TileId::kMid64;
  // Prefill: with tens of tokens per expert and more, tensor-core throughput decides, which the
  // TMA/wgmma grouped GEMMs are built for; below, padding each expert to 128 token rows wastes more
  // than the mma.sync tiles lose. Sorted-row counts beyond 2^30 stay on the tiled path (int32
  // offsets).
  ExpertsPlan plan{tile, 4, false, GroupedTileId::kCoop128, GroupedTileId::kCoop128, false, false, false, false};
  plan.grouped = grouped_experts_available() && per_expert >= kGroupedMinTokensPerExpert &&
                 pairs < (int64_t(1) << 30);
  // Grouped tile (bench/RESULTS.md; measurements in configs.h), the activation in GEMM 1's epilogue
  // wherever w13 is interleaved (gated): pingpong below 128 tokens per expert with deep K
  // (H > 2048), below 144 with shallow K, where it hides each tile's epilogue that a short K loop
  // cannot amortise; else cooperative. H100 2026-11-27 10:30-10:42, us, plan (pingpong) vs both
  // cooperative, two or three rounds: qwen3-30b-a3b M = 1024 / 1536 / 2048 (64 / 96 / 128 tokens per
  // expert) 503.0 / 531.4-532.0 / 584.4-585.0 vs 537.7-539.1 / 568.8-570.0 / 617.2-618.7, M = 2304
  // (144) 660.3 / 660.8 vs 659.9 / 661.6, M = 2560 (160) 686.1-687.4 vs 667.1-668.9; mixtral-8x7b
  // M = 256 / 384 (64 / 96) 1001.3 / 1008.8 vs 1065.3-1070.1 / 1073.6-1076.0; deepseek-v3 M = 2048 /
  // 3072 (64 / 96) 8146-8154 / 8381-8406 vs 8786-8792 / 9089-9094.
  if (per_expert < (H > 2048 ? 128 : 144)) plan.grouped_tile = GroupedTileId::kPingpong128;
  plan.grouped_tile2 = plan.grouped_tile;
  // GEMM 2 on pingpong where its K (= I <= 1024) gives an epilogue every few k-blocks and experts
  // hold 384+ tokens. H100 2026-11-27 10:30-10:42, us, plan vs both cooperative: qwen3-30b-a3b
  // M = 6144 / 8192 (384 / 512) 1052.4 / 1331.4 vs 1058.6-1061.9 / 1340.3-1345.2. GEMM 1 on pingpong
  // at 256-383 tokens per expert, the plan until then, now loses to the cooperative tile (since GEMM
  // 1's fused epilogue got cheaper, 2026-11-27 02:20): qwen3 M = 4096 / 5120 817.6-819.5 /
  // 963.9-967.7 vs 805.5-807.4 / 929.3-930.9; neither gained on mixtral-8x7b or deepseek-v3
  // (2026-11-26 21:53).
  if (I <= 1024 && per_expert >= 384) plan.grouped_tile2 = GroupedTileId::kPingpong128;
  if (const char* forced = forced_tile_name()) {
    for (int t = 0; t < int(TileId::kCount); ++t)
      if (std::strcmp(forced, kGemmTiles[t].name) == 0) {
        plan.tile = TileId(t);
        plan.grouped = false;
      }
    // A grouped tile for both GEMMs, or "<GEMM 1's>+<GEMM 2's>".
    const char* plus = std::strchr(forced, '+');
    const size_t len1 = plus ? size_t(plus - forced) : std::strlen(forced);
    const char* name2 = plus ? plus + 1 : forced;
    int t1 = -1, t2 = -1;
    for (int t = 0; t < int(GroupedTileId::kCount); ++t) {
      if (std::strlen(kGroupedTiles[t].name) == len1 && std::strncmp(forced, kGroupedTiles[t].name, len1) == 0) t1 = t;
      if (std::strcmp(name2, kGroupedTiles[t].name) == 0) t2 = t;
    }
    if (t1 >= 0 && t2 >= 0 && grouped_experts_available()) {
      plan.grouped_tile = GroupedTileId(t1);
      plan.grouped_tile2 = GroupedTileId(t2);
      plan.grouped = pairs < (int64_t(1) << 30);
    }
  }
  plan.fused_act = plan.grouped && gated && gate_up_interleaved && forced_fused_act() != 0;  // -1: the choice
  // GEMM 2's last round split along K where its tiles are long (K = I) and the layer fills a round
  // of them: a 128 x 256 tile of mixtral-8x7b (I = 14336) takes about 150 us, and the last round of
  // M = 1024 / 4096 / 8192 (2.42 / 8.24 / 16.12 rounds of 132 tiles) runs one tile's time on a few
  // SMs. H100 2026-11-27 (bench/RESULTS.md), us: that round dropped outright (11:38; an upper bound,
  // wrong results) M = 1024 1429.5-1432.4 -> 1286.5-1290.7, M = 8192 8734.6-9115.2 -> 8581.0-8592.2;
  // split, three rounds against main (12:00): M = 1024 1431.2-1437.5 -> 1383.4-1386.7, M = 8192
  // 8925.6-9117.6 -> 8793.7-8879.0, M = 2048 / 4096 / 6144 within the spread of the measurement.
  // The same split of the fused GEMM 1 (finalize applying the activation; branch tail1-exp) gained
  // nothing at qwen3-30b-a3b / deepseek-v3 M = 4096 / 8192 (H100 2026-11-27 13:38): not built.
  const GroupedTile& coop = kGroupedTiles[int(GroupedTileId::kCoop128)];
  const int64_t tiles_estimate = touched * int64_t(std::ceil(per_expert / coop.bm)) * (H / coop.bn);
  plan.gemm2_tail_split = plan.grouped && plan.grouped_tile2 == GroupedTileId::kCoop128 && H % coop.bn == 0 &&
                          (g_forced_tail_sms > 0 || (I >= kGemm2TailMinK && tiles_estimate >= kSms));
  // Pairs in slot order, no route prep: the GEMMs read each pair's expert from topk_ids, so route
  // prep's launch and one-CTA sort leave the critical path before GEMM 1, but an expert named by n
  // pairs streams its weights n times. One token names k distinct experts (unless the caller
  // repeats one); a few tokens of small experts repeat few, and a repeat re-reads from L2. Expected
  // repeats of P uniform picks of E: P - E (1 - (1 - 1/E)^P). H100 2026-11-26 23:04 / 23:10
  // (bench/RESULTS.md), us, route prep vs pairs in order: qwen3-30b-a3b (9.4 MB experts) M = 1 49.1
  // / 49.1 / 49.3 vs 44.6 / 44.7 / 44.5, M = 2 (0.9 repeats expected) 68.3 / 68.2 vs 64.6 / 64.5,
  // M = 4 (3.6) 114.8 / 115.4 / 115.0 vs 113.5 / 113.6 / 113.4, M = 8 (13.6) 174.8 vs 209.0;
  // mixtral-8x7b (352 MB) M = 1 255.6 vs 252.1, M = 4 710.0 vs 819.7; deepseek-v3 M = 1 260.1 vs 256.4.
  const double repeats = double(pairs) - double(E) * (1.0 - std::pow(1.0 - 1.0 / double(E), double(pairs)));
  plan.pairs_in_order = !plan.grouped && (M == 1 || (expert_bytes <= 16.0 * 1024 * 1024 && repeats <= 4.0));
  // One token of small experts: GEMV warps sweeping each expert's rows in order, the combine inside
  // the second kernel (token_gemv.cuh). H100 2026-11-27 08:47 (bench/RESULTS.md), us, tiled vs
  // GEMVs, two rounds: qwen3-30b-a3b (8 x 9.4 MB) 43.9 / 43.8 vs 37.9 / 37.8; with 705 MB to stream
  // the tiled decode tiles already run near the copy rate and the GEMVs lost: mixtral-8x7b 253.9 /
  // 254.5 vs 263.5 / 264.0, deepseek-v3 250.3 / 250.8 vs 255.8 / 255.4. For 2-4 tokens (pairs in
  // order, one warp a pair's row) they lost too (09:01, qwen3 M = 2 / 4: 64.4-64.7 / 113.1-113.5 vs
  // 65.6-65.9 / 118.0-118.5). A forced tile keeps the tiled path (tests, tuning).
  plan.one_token = M == 1 && k <= kTokenGemvMaxSlots && double(k) * expert_bytes <= 128.0 * 1024 * 1024 &&
                   !forced_tile_name();
  static const bool debug = [] {
    const char* v = std::getenv("MOEKIT_DEBUG_EXPERTS");
    return v && *v && *v != '0';
  }();
  if (debug)
    std::fprintf(stderr,
                 "[moekit] fused_experts M=%lld k=%d E=%lld H=%lld I=%lld tokens/expert=%.1f -> "
                 "tile %s%s%s group %d%s%s%s%s\n",
                 (long long)M, k, (long long)E, (long long)H, (long long)I, per_expert,
                 plan.grouped ? kGroupedTiles[int(plan.grouped_tile)].name : kGemmTiles[int(plan.tile)].name,
                 plan.grouped ? "+" : "", plan.grouped ? kGroupedTiles[int(plan.grouped_tile2)].name : "",
                 plan.tile_group, plan.fused_act ? " fused activation" : "",
                 plan.pairs_in_order ? " pairs in order" : "", plan.one_token ? " one-token GEMVs" : "",
                 plan.gemm2_tail_split ? " gemm2 tail split" : "");
  return plan;
}

}  // namespace moekit::cuda
