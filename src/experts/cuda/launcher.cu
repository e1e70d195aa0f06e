// Host launchers of the GPU expert path: route_prep -> GEMM 1 (+activation) -> GEMM 2 (+top-k
// weight) -> combine, four launches per layer (three where the plan runs a few tokens' pairs in
// slot order without route prep, two where one token of small experts runs token_gemv.cuh's GEMVs);
// tile choice from configs.h/heuristics.cpp.
// With many tokens per expert the plan picks the grouped prefill path (grouped_experts.h) instead,
// which shares route_prep.
#include <algorithm>
#include <cstdlib>

#include "common/cuda_check.h"
#include "common/device_info.h"
#include "experts/configs.h"
#include "experts/cuda/combine_rows.cuh"
#include "experts/cuda/expert_gemm_launch.h"
#include "experts/cuda/grouped_experts.h"
#include "experts/cuda/launcher.h"
#include "experts/cuda/route_prep.cuh"
#include "experts/cuda/softmax_topk.cuh"
#include "experts/cuda/token_gemv.cuh"

namespace moekit::cuda {
namespace {
int g_route_prep_ctas = 0;

ActKind act_kind(Activation a) {
  switch (a) {
    case Activation::kGeluAndMul:
    case Activation::kGelu: return ActKind::kGeluErf;
    case Activation::kGeluTanhAndMul: return ActKind::kGeluTanh;
    case Activation::kSwigluOai: return ActKind::kSwigluOai;
    default: return ActKind::kSilu;
  }
}

// Route prep's outputs in the workspace: the pairs sorted by expert, each pair's sorted position,
// the GEMMs' tile list and its length.
struct RouteLists {
  int* sorted_pairs;
  int* pair_pos;
  int4* tiles;
  int* num_tiles;
};

RouteLists route_lists(void* workspace, const ExpertsWorkspaceLayout& lay) {
  auto* ws = static_cast<unsigned char*>(workspace);
  return {reinterpret_cast<int*>(ws + lay.sorted_pairs), reinterpret_cast<int*>(ws + lay.pair_pos),
          reinterpret_cast<int4*>(ws + lay.tiles), reinterpret_cast<int*>(ws + lay.num_tiles)};
}

// Route prep (route_prep.cuh) with tiles of `tile_tokens` pairs, in the form that suits the pair count.
void launch_route_prep(const FusedExpertsArgs& a, const ExpertsWorkspaceLayout& lay, int tile_tokens,
                       cudaStream_t stream) {
  const auto [sorted_pairs, pair_pos, tiles, num_tiles] = route_lists(a.workspace, lay);
  const int64_t P = a.M * a.k;
  const int E = static_cast<int>(a.E);
  const size_t prep_smem = size_t(4 * E + 1) * sizeof(int);
  const int64_t chunk = route_prep_chunk(P);
  // A host-side attribute (legal during graph capture), set on every call: no static state.
  auto allow_prep_smem = [&](auto kernel) {
    MOEKIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(prep_smem)));
  };
  if (chunk >= P) {
    allow_prep_smem(route_prep_kernel);
    // A decode batch has a few ids: a smaller CTA starts and synchronises faster.
    const int prep_threads = P <= 2048 ? 256 : kRoutePrepThreads;
    route_prep_kernel<<<1, prep_threads, prep_smem, stream>>>(a.topk_ids, P, E, tile_tokens,
                                                                   sorted_pairs, pair_pos, tiles,
                                                                   num_tiles);
    MOEKIT_CUDA_CHECK_LAUNCH();
  } else if (P <= kRecountMaxPairs && g_route_prep_ctas == 0) {
    allow_prep_smem(route_prep_recount_kernel);
    const unsigned ctas = static_cast<unsigned>((P + chunk - 1) / chunk);
    route_prep_recount_kernel<<<ctas, kRoutePrepThreads, prep_smem, stream>>>(a.topk_ids, P, chunk, E, tile_tokens,
                                                                               sorted_pairs, pair_pos, tiles, num_tiles);
    MOEKIT_CUDA_CHECK_LAUNCH();
  } else {
    const int64_t chunks = (P + chunk - 1) / chunk;
    allow_prep_smem(route_prep_grid_kernel);
    // A cooperative launch needs every CTA resident; past what fits (a MIG slice), CTAs take
    // several chunks each. The occupancy query is host-side (legal during graph capture).
    int per_sm = 0;
    MOEKIT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, route_prep_grid_kernel,
                                                                    kRoutePrepThreads, prep_smem));
    int64_t resident = int64_t(per_sm > 0 ? per_sm : 1) * current_device_sm_count();
    if (g_route_prep_ctas > 0 && g_route_prep_ctas < resident) resident = g_route_prep_ctas;
    const unsigned ctas = static_cast<unsigned>(chunks < resident ? chunks : resident);
    int* prep_counts = reinterpret_cast<int*>(static_cast<unsigned char*>(a.workspace) + lay.prep_counts);
    LaunchOptions cooperative;
    cooperative.cooperative = true;
    launch_with_attributes(route_prep_grid_kernel, dim3(ctas), dim3(kRoutePrepThreads), prep_smem, stream,
                           cooperative, a.topk_ids, P, chunk, E, tile_tokens, prep_counts, sorted_pairs,
                           pair_pos, tiles, num_tiles);
  }
}

// One token (plan.one_token): token_gemv.cuh's two kernels, the act rows in the workspace.
template <typename T, int NH>
void launch_token_down(const TokenGemvParams& p, unsigned ctas, cudaStream_t stream) {
  launch_dependent(token_down_kernel<T, NH>, dim3(ctas), dim3(32 * p.k), 0, stream, experts_pdl_enabled(), p);
}

template <typename T>
void run_one_token(const FusedExpertsArgs& a, const ExpertsWorkspaceLayout& lay, cudaStream_t stream) {
  const TokenGemvParams p{a.hidden, a.topk_ids, a.topk_weights, a.w13, a.w13_bias, a.w2, a.w2_bias,
                          static_cast<unsigned char*>(a.workspace) + lay.act_rows, a.output, a.H, a.I,
                          static_cast<int>(a.k), static_cast<int>(a.E), a.gated, a.gate_up_interleaved,
                          act_kind(a.activation), a.swiglu_alpha, a.swiglu_limit, a.routed_scaling_factor};
  // Two CTAs of 8 warps an SM (their registers allow two) for the (slot, feature) warps: 128 KB of
  // weight loads in flight an SM. The second kernel's CTAs (a warp a slot) as many as there are
  // column groups, up to 32 warps an SM.
  const int64_t sms = current_device_sm_count();
  const int64_t units = a.k * a.I;
  const unsigned ctas1 = static_cast<unsigned>(std::min<int64_t>((units + 7) / 8, 2 * sms));
  if (ctas1 > 0) {
    auto kernel = a.gated ? token_gate_up_kernel<T, true> : token_gate_up_kernel<T, false>;
    launch_dependent(kernel, dim3(ctas1), dim3(256), 0, stream, experts_pdl_enabled(), p);
  }
  const int nh = token_down_rows(a.I);
  const int64_t steps = (a.H + nh - 1) / nh;
  const unsigned ctas2 = static_cast<unsigned>(std::min<int64_t>(steps, sms * std::max<int64_t>(1, 32 / a.k)));
  switch (nh) {
    case 8: launch_token_down<T, 8>(p, ctas2, stream); break;
    case 4: launch_token_down<T, 4>(p, ctas2, stream); break;
    case 2: launch_token_down<T, 2>(p, ctas2, stream); break;
    default: launch_token_down<T, 1>(p, ctas2, stream); break;
  }
}

template <typename T>
void run_fused_experts(const FusedExpertsArgs& a, cudaStream_t stream) {
  const ExpertsPlan plan =
      choose_experts_plan(a.M, static_cast<int>(a.k), a.E, a.H, a.I, a.gated, a.gate_up_interleaved);
  const ExpertsWorkspaceLayout lay = experts_workspace_layout(
      a.M, a.k, a.E, a.H, a.I, sizeof(T), kMinTileTokens, plan.grouped, a.gated ? 2 * a.I : a.I,
      plan.fused_act, plan.gemm2_tail_split);
  auto* ws = static_cast<unsigned char*>(a.workspace);
  const auto [sorted_pairs, pair_pos, tiles, num_tiles] = route_lists(a.workspace, lay);
  T* act_rows = reinterpret_cast<T*>(ws + lay.act_rows);
  T* down_rows = reinterpret_cast<T*>(ws + lay.down_rows);

  const GemmTile& tile = kGemmTiles[int(plan.tile)];
  const int64_t P = a.M * a.k;
  if (plan.one_token) {
    run_one_token<T>(a, lay, stream);
    return;
  }
  // The grouped path wants one list entry per non-empty expert: a tile larger than any count.
  const int tile_tokens = plan.grouped ? (1 << 30) : tile.bt;
  const int64_t tile_bound =
      plan.pairs_in_order ? P : (P + tile.bt - 1) / tile.bt + (P < a.E ? P : a.E);
  if (!plan.pairs_in_order) launch_route_prep(a, lay, tile_tokens, stream);
#if defined(MOEKIT_WITH_CUTLASS)
  if (plan.grouped) {
    GroupedExpertsArgs g{&a, lay, pair_pos, tiles, num_tiles, plan.grouped_tile, plan.grouped_tile2, plan.fused_act,
                         plan.gemm2_tail_split, act_kind(a.activation)};
    run_grouped_experts<T>(g, stream);
    return;
  }
#endif

  ExpertGemmParams g1{};
  g1.weight = a.w13;
  g1.bias = a.w13_bias;
  g1.R = a.gated ? 2 * a.I : a.I;
  g1.K = a.H;
  g1.src = a.hidden;
  g1.sorted_pairs = plan.pairs_in_order ? nullptr : sorted_pairs;
  g1.topk = static_cast<int>(a.k);
  g1.topk_weights = a.topk_weights;
  g1.dst = act_rows;
  g1.out_features = a.I;
  g1.tiles = plan.pairs_in_order ? nullptr : tiles;
  g1.num_tiles = num_tiles;
  g1.pair_experts = plan.pairs_in_order ? a.topk_ids : nullptr;
  g1.pairs = P;
  g1.num_experts = static_cast<int>(a.E);
  const int64_t feats_per_tile = a.gated ? tile.bn / 2 : tile.bn;
  g1.row_tiles = static_cast<int>((a.I + feats_per_tile - 1) / feats_per_tile);
  g1.tile_group = plan.tile_group;
  g1.epilogue = a.gated ? EpilogueKind::kGateUp : EpilogueKind::kAct;
  g1.gate_up_interleaved = a.gate_up_interleaved;
  g1.act = act_kind(a.activation);
  g1.alpha = a.swiglu_alpha;
  g1.limit = a.swiglu_limit;
  launch_expert_gemm<T>(plan.tile, g1, tile_bound, stream);

  ExpertGemmParams g2 = g1;
  g2.weight = a.w2;
  g2.bias = a.w2_bias;
  g2.R = a.H;
  g2.K = a.I;
  g2.src = act_rows;
  g2.dst = down_rows;
  g2.out_features = a.H;
  g2.row_tiles = static_cast<int>((a.H + tile.bn - 1) / tile.bn);
  g2.epilogue = EpilogueKind::kDown;
  g2.gate_up_interleaved = false;
  launch_expert_gemm<T>(plan.tile, g2, tile_bound, stream);

  // A separate kernel, resident early by PDL. Fused into GEMM 2 (the last CTA of a token's row tile
  // sums its rows, by arrival counts) it was slower at every point tried (H100 2026-11-26 23:35,
  // qwen3-30b-a3b M = 1 / 256 52.7 / 454.9 vs 49.6 / 443.8 us; bench/RESULTS.md), as was GEMM 1
  // prefetching GEMM 2's weights into L2 for a few tokens (M = 1 51.2 vs 44.7).
  launch_combine_rows(static_cast<const T*>(down_rows), plan.pairs_in_order ? nullptr : pair_pos, a.topk_ids, a.E,
                      static_cast<T*>(a.output), a.M, a.k, a.H, a.routed_scaling_factor, experts_pdl_enabled(),
                      stream);
}

}  // namespace

bool experts_pdl_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("MOEKIT_EXPERTS_PDL");
    return !(v && v[0] == '0');
  }();
  return enabled;
}

void force_route_prep_ctas(int ctas) { g_route_prep_ctas = ctas; }

void fused_experts(const FusedExpertsArgs& args, Stream stream) {
  cudaStream_t s = detail::as_cuda_stream(stream.handle);
  if (args.dtype == DType::kFloat16) run_fused_experts<__half>(args, s);
  else run_fused_experts<__nv_bfloat16>(args, s);
}

void softmax_topk(const void* logits, DType logits_dtype, int64_t M, int64_t E, int k,
                  bool renormalize, float* topk_weights, int* topk_ids, Stream stream) {
  cudaStream_t s = detail::as_cuda_stream(stream.handle);
  const int threads = 256, rows_per_block = threads / 32;
  const unsigned blocks = static_cast<unsigned>((M + rows_per_block - 1) / rows_per_block);
  const int e = static_cast<int>(E);
  switch (logits_dtype) {
    case DType::kFloat16:
      softmax_topk_kernel<<<blocks, threads, 0, s>>>(static_cast<const __half*>(logits), M, e, k,
                                                     renormalize, topk_weights, topk_ids);
      break;
    case DType::kBFloat16:
      softmax_topk_kernel<<<blocks, threads, 0, s>>>(static_cast<const __nv_bfloat16*>(logits), M,
                                                     e, k, renormalize, topk_weights, topk_ids);
      break;
    default:
      softmax_topk_kernel<<<blocks, threads, 0, s>>>(static_cast<const float*>(logits), M, e, k,
                                                     renormalize, topk_weights, topk_ids);
      break;
  }
  MOEKIT_CUDA_CHECK_LAUNCH();
}

}  // namespace moekit::cuda
