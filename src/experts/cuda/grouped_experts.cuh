// Prefill path of the GPU expert layer (see grouped_experts.h): the gather/activation/combine
// kernels and the two CUTLASS sm90 grouped GEMMs. Included once per dtype
// (grouped_experts_bf16.cu, grouped_experts_fp16.cu) and only when CUTLASS was found.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "common/cuda_check.h"
#include "common/device_info.h"
#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/group_array_problem_shape.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "experts/cuda/combine_rows.cuh"
#include "experts/cuda/expert_gemm_launch.h"
#include "experts/cuda/gate_up_act_epilogue.cuh"
#include "experts/cuda/fixed_maps_mainloop.cuh"
#include "experts/cuda/grouped_experts.h"

namespace moekit::cuda {

template <typename T>
struct CutlassElement;
template <>
struct CutlassElement<__nv_bfloat16> { using type = cutlass::bfloat16_t; };
template <>
struct CutlassElement<__half> { using type = cutlass::half_t; };

// Per-group (expert) argument arrays of one grouped GEMM, carved from the workspace and written on
// the device by the prep kernel. Plain types (the GEMMs' own stride and shape types, checked in
// GroupedGemm), so the prep kernel needs no CUTLASS kernel type.
using GroupShape = cute::Shape<int, int, int>;
using GroupStride = cute::Stride<int64_t, cute::_1, cute::_0>;

template <typename T, typename OutT>
struct GroupArrays {
  GroupShape* shapes;
  const T** a;
  const T** b;
  OutT** d;
  GroupStride* sa;
  GroupStride* sb;
  GroupStride* sd;
  const float** row_weight;  // weighted GEMM 2 only
  const float** col_bias;    // weighted GEMM 2 and gate/up GEMM 1 only; unset when the layer has no bias

  static constexpr size_t kBytesPerGroup = sizeof(GroupShape) + 5 * sizeof(void*) + 3 * sizeof(GroupStride);

  static GroupArrays carve(unsigned char*& base, int64_t groups, bool row_weights, bool col_biases) {
    auto take = [&](size_t bytes) {
      unsigned char* p = base;
      base += (bytes + 15) & ~size_t(15);
      return p;
    };
    GroupArrays r;
    r.shapes = reinterpret_cast<GroupShape*>(take(groups * sizeof(GroupShape)));
    r.a = reinterpret_cast<const T**>(take(groups * sizeof(void*)));
    r.b = reinterpret_cast<const T**>(take(groups * sizeof(void*)));
    r.d = reinterpret_cast<OutT**>(take(groups * sizeof(void*)));
    r.sa = reinterpret_cast<GroupStride*>(take(groups * sizeof(GroupStride)));
    r.sb = reinterpret_cast<GroupStride*>(take(groups * sizeof(GroupStride)));
    r.sd = reinterpret_cast<GroupStride*>(take(groups * sizeof(GroupStride)));
    r.row_weight = row_weights ? reinterpret_cast<const float**>(take(groups * sizeof(void*))) : nullptr;
    r.col_bias = col_biases ? reinterpret_cast<const float**>(take(groups * sizeof(void*))) : nullptr;
    return r;
  }

  // Group g: rows x N x K, A rows from `a0 + first * K`, weights `b0 + e * N * K`, D rows at
  // `d0 + first * ld` (row-major: leading dimension K, K and ld); row weights from `w0 + first`
  // (where carved), column bias `bias0 + e * N` (where carved and bias0 is not null).
  __device__ void set_group(int g, int rows, int e, int first, int64_t N, int64_t K, const T* a0,
                            const T* b0, OutT* d0, int64_t ld, const float* w0,
                            const float* bias0) const {
    if (row_weight) row_weight[g] = w0 + first;
    if (col_bias && bias0) col_bias[g] = bias0 + int64_t(e) * N;
    shapes[g] = cute::make_shape(rows, static_cast<int>(N), static_cast<int>(K));
    a[g] = a0 + int64_t(first) * K;
    b[g] = b0 + int64_t(e) * N * K;
    d[g] = d0 + int64_t(first) * ld;
    GroupStride s{};
    cute::get<0>(s) = K;
    sa[g] = s;
    sb[g] = s;
    cute::get<0>(s) = ld;
    sd[g] = s;
  }
};

// What GEMM 1 / GEMM 2's epilogue writes.
//   kFp32Rows (GEMM 1, halves w13): D in fp32; the oracle rounds gate/up only after the activation.
//   kWeighted (GEMM 2): D[r, n] = round(w_g[r] * (acc[r, n] + b_g[n])) in T, the pair's top-k weight
//              per row and the expert's bias per column (absent: 0), so the combine only sums rows.
//   kGateUpAct (GEMM 1, interleaved w13): act[r, j] = round(act(acc[r, 2j] + b[2j]) * (acc[r, 2j+1] +
//              b[2j+1])) in T (gate_up_act_epilogue.cuh); no D.
enum class GroupedEpilogue { kFp32Rows, kWeighted, kGateUpAct };

// Epilogue inputs that are not per-group arrays.
struct GroupedEpilogueArgs {
  bool has_bias = false;
  ActKind act = ActKind::kSilu;  // kGateUpAct
  float alpha = 0.f, limit = 0.f;
};

// Both operands of a grouped GEMM for the whole layer (fixed_maps_mainloop.cuh, pingpong tile): A's rows of all
// groups, [a_count, K]; all experts' weights, [b_count, K], expert e's N rows from row e * N; the
// list of groups (expert, first row of A, rows).
struct GroupedOperands {
  const void* a;
  int64_t a_count;
  const void* b;
  int64_t b_count, K, N;
  const int4* groups;
};

// One grouped GEMM D[rows_g, N] = A[rows_g, K] . B_g[N, K]^T per group, fp32 accumulation; A and
// D row-major, B (the expert's weights) K-major, i.e. column-major B.
template <typename T, int Id, GroupedEpilogue Epi>
struct GroupedGemm {
  static constexpr GroupedTile kTile = kGroupedTiles[Id];
  static constexpr bool kWeighted = Epi == GroupedEpilogue::kWeighted;
  static constexpr bool kGateUpAct = Epi == GroupedEpilogue::kGateUpAct;
  using Element = typename CutlassElement<T>::type;
  using OutT = std::conditional_t<Epi == GroupedEpilogue::kFp32Rows, float, T>;
  using ElementOut = std::conditional_t<Epi == GroupedEpilogue::kFp32Rows, float, Element>;
  using ElementD = std::conditional_t<kGateUpAct, void, ElementOut>;  // void: no D at all
  using Arrays = GroupArrays<T, OutT>;
  using ProblemShape = cutlass::gemm::GroupProblemShape<GroupShape>;
  using TileShape = cute::Shape<cute::Int<kTile.bm>, cute::Int<kTile.bn>, cute::Int<kTile.bk>>;
  using ClusterShape = cute::Shape<cute::Int<kTile.cluster_m>, cute::Int<kTile.cluster_n>, cute::_1>;
  using KernelSchedule =
      std::conditional_t<kTile.pingpong, cutlass::gemm::KernelPtrArrayTmaWarpSpecializedPingpong,
                         cutlass::gemm::KernelPtrArrayTmaWarpSpecializedCooperative>;
  using EpilogueSchedule =
      std::conditional_t<kTile.pingpong, cutlass::epilogue::PtrArrayTmaWarpSpecializedPingpong,
                         cutlass::epilogue::PtrArrayTmaWarpSpecializedCooperative>;
  static constexpr int kAlign = 8;  // 16-byte rows: H and I are multiples of 8
  static constexpr int kAlignOut = 16 / sizeof(ElementOut);
  using RowMajor = cutlass::layout::RowMajor;
  using ColumnMajor = cutlass::layout::ColumnMajor;

  // Epilogue visitor tree of the weighted GEMM: multiplies(row weight, plus(acc, column bias)).
  // Both vectors come as per-group pointer arrays; alignment 1: a group's rows start anywhere.
  using RowWeight = cutlass::epilogue::fusion::Sm90ColBroadcast<0, TileShape, float*, float,
                                                                cute::Stride<cute::_1, cute::_0, cute::_0>, 1>;
  using ColBias = cutlass::epilogue::fusion::Sm90RowBroadcast<0, TileShape, float*, float,
                                                              cute::Stride<cute::_0, cute::_1, cute::_0>, 1>;
  using AccPlusBias = cutlass::epilogue::fusion::Sm90EVT<
      cutlass::epilogue::fusion::Sm90Compute<cutlass::plus, float, float,
                                             cutlass::FloatRoundStyle::round_to_nearest>,
      cutlass::epilogue::fusion::Sm90AccFetch, ColBias>;
  using WeightedOut = cutlass::epilogue::fusion::Sm90EVT<
      cutlass::epilogue::fusion::Sm90Compute<cutlass::multiplies, Element, float,
                                             cutlass::FloatRoundStyle::round_to_nearest>,
      RowWeight, AccPlusBias>;
  using Fusion = std::conditional_t<
      kWeighted, WeightedOut,
      std::conditional_t<kGateUpAct, GateUpActStore<Element, T>,
                         cutlass::epilogue::fusion::LinearCombination<float, float, void, float>>>;
  // The fused gate/up epilogue runs on one subtile of the whole tile width (64 rows a warp group on
  // pingpong): the collective closes each subtile with a fence and two named barriers, and
  // CUTLASS's automatic 32-column choice made eight of them a 128 x 256 tile. H100 2026-11-27 02:20
  // (ncu, bench/RESULTS.md), GEMM 1 us, 32 columns -> whole width: mixtral-8x7b M = 8192 5418 / 5428
  // -> 5288 / 5274, qwen3-30b-a3b M = 8192 715 / 718 -> 689 / 689, deepseek-v3 M = 8192 6827 / 6777
  // -> 6670 / 6696, qwen3 M = 4096 (pingpong) 453 / 457 -> 448 / 447.
  using EpilogueTile =
      std::conditional_t<kGateUpAct, cute::Shape<cute::Int<kTile.pingpong ? 64 : 128>, cute::Int<kTile.bn>>,
                         cutlass::epilogue::collective::EpilogueTileAuto>;
  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      EpilogueTile, float, float, void, RowMajor*, kAlignOut,
      ElementD, RowMajor*, kAlignOut, EpilogueSchedule, Fusion>::CollectiveOp;
  using TmaMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Element, RowMajor*, kAlign, Element,
      ColumnMajor*, kAlign, float, TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename Epilogue::SharedStorage))>,
      KernelSchedule>::CollectiveOp;
  // Layer-wide tensor maps on the pingpong tile, where they gain (fixed_maps_mainloop.cuh).
  static constexpr bool kFixedMaps = kTile.pingpong;
  using Mainloop = std::conditional_t<kFixedMaps, FixedMapsMainloop<TmaMainloop>, TmaMainloop>;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<ProblemShape, Mainloop, Epilogue>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
  static_assert(std::is_same_v<typename ProblemShape::UnderlyingProblemShape, GroupShape>);
  static_assert(std::is_same_v<typename Kernel::InternalStrideA, GroupStride>);
  static_assert(std::is_same_v<typename Kernel::InternalStrideB, GroupStride>);
  static_assert(std::is_same_v<typename Kernel::InternalStrideD, GroupStride>);
  static_assert(2 * Arrays::kBytesPerGroup <= kGroupArgBytes, "group argument budget");
  // sm_90 gives a CTA at most 227 KB of dynamic shared memory; past it the launch fails at run time
  // ("initialize: Error Internal"). The cooperative tile's fp32-rows GEMM 1 sits exactly on it.
  static_assert(sizeof(typename Kernel::SharedStorage) <= 232448, "shared memory past the sm_90 limit");

  static void run(const Arrays& arr, const GroupedOperands& ops, int groups, const GroupedEpilogueArgs& epi,
                  void* scratch, cudaStream_t stream) {
    int device = 0;
    MOEKIT_CUDA_CHECK(cudaGetDevice(&device));
    cutlass::KernelHardwareInfo hw{};
    hw.device_id = device;
    hw.sm_count = current_device_sm_count();
    typename Gemm::Arguments args{};
    args.mode = cutlass::gemm::GemmUniversalMode::kGrouped;
    args.problem_shape = {groups, arr.shapes, nullptr};  // shapes live on the device only
    args.mainloop.ptr_A = reinterpret_cast<const Element**>(arr.a);
    args.mainloop.dA = arr.sa;
    args.mainloop.ptr_B = reinterpret_cast<const Element**>(arr.b);
    args.mainloop.dB = arr.sb;
    if constexpr (kFixedMaps) {
      args.mainloop.a_rows = ops.a;
      args.mainloop.a_count = ops.a_count;
      args.mainloop.b_rows = ops.b;
      args.mainloop.b_count = ops.b_count;
      args.mainloop.K = ops.K;
      args.mainloop.N = ops.N;
      args.mainloop.groups = ops.groups;
    }
    auto& fusion = args.epilogue.thread;
    if constexpr (kWeighted) {
      fusion = {{arr.row_weight}, {{}, {epi.has_bias ? arr.col_bias : nullptr}, {}}, {}};
    } else if constexpr (kGateUpAct) {
      fusion.act = arr.d;
      fusion.bias = epi.has_bias ? arr.col_bias : nullptr;
      fusion.kind = epi.act;
      fusion.alpha = epi.alpha;
      fusion.limit = epi.limit;
    } else {
      fusion.alpha = 1.f;
      fusion.beta = 0.f;
    }
    args.epilogue.ptr_C = nullptr;
    if constexpr (!kGateUpAct) {
      args.epilogue.ptr_D = reinterpret_cast<ElementOut**>(arr.d);
      args.epilogue.dD = arr.sd;
    }
    args.hw_info = hw;
    // Its tensor maps want 128-byte alignment; the caller's workspace promises 16 bytes.
    const uintptr_t raw = reinterpret_cast<uintptr_t>(scratch);
    scratch = reinterpret_cast<void*>((raw + 127) & ~uintptr_t(127));
    const size_t need = Gemm::get_workspace_size(args);
    if (need + 128 > kGroupedGemmScratchBytes)
      detail::fail(detail::cat("grouped expert GEMM needs ", need, " bytes of scratch, reserved ",
                               kGroupedGemmScratchBytes),
                   ErrorKind::Runtime);
    Gemm gemm;
    check(gemm.can_implement(args), "can_implement");
    check(gemm.initialize(args, scratch, stream), "initialize");
    check(gemm.run(stream), "run");
  }

  static void check(cutlass::Status s, const char* what) {
    if (s != cutlass::Status::kSuccess)
      detail::fail(detail::cat("grouped expert GEMM (", kTile.name, ") ", what, ": ",
                               cutlassGetStatusString(s)),
                   ErrorKind::Runtime);
  }
};

struct GroupedPrepParams {
  const int4* groups;  // (expert, first sorted position, rows) of each non-empty expert
  const int* num_groups;
  int group_count;     // min(E, P): groups past *num_groups are empty
  const void* hidden;  // [M, H]
  const int* pair_pos;
  const float* topk_weights;  // [P]
  const float* w2_bias;       // [E, H] or null
  const float* w13_bias;      // [E, R13] or null: GEMM 1's epilogue adds it (gate/up GEMM 1 only)
  int64_t P, H, I, R13;
  int64_t ld1;                // leading dimension of GEMM 1's output rows: R13 (fp32 rows) or I (act)
  int k;
  const void *w13, *w2;
  void *gathered, *out1, *act, *down;  // out1: GEMM 1's output rows (gate_up fp32 or act)
  float* sorted_weights;  // [P]: topk weight of the pair at each sorted position
  int tail_sms;           // GEMM 2's tail split: its CTAs (one an SM); 0: no split
  int4* tail_header;      // (columns, splits, chunk, partial rows) of the tail; columns 0: none
  int4* tail_columns;     // [kGemm2TailMaxUnits]: (expert, first sorted position, rows, column)
  int* tail_row_offsets;  // [kGemm2TailMaxUnits]: each column's first partial row
  float* tail_partials;   // [splits, partial rows, 256]
};

// GEMM 2's tail split (plan.gemm2_tail_split). The cooperative GEMM 2's persistent CTAs, one an SM,
// take its 128 x 256 tiles in rounds, group after group and in a group column after column (a
// column: the token tiles of one expert's 256 output columns; CUTLASS's AlongM order). When the last
// round is at most half full, whole columns leave that launch from the end of the order until they
// cover the round; the tail launch runs each of them split along K into `splits` units, as many as
// fit in one round, writing fp32 partials that gemm2_tail_finalize_kernel sums in split order.
inline constexpr int kTailColumnWidth = kGroupedTiles[int(GroupedTileId::kCoop128)].bn;
inline constexpr int kTailTokenTile = kGroupedTiles[int(GroupedTileId::kCoop128)].bm;

__device__ inline int tail_token_tiles(int rows) { return (rows + kTailTokenTile - 1) / kTailTokenTile; }

// Calls f(group, columns) for each group with columns in the tail, in tail order (from the end), and
// returns the tail's tiles; 0 (and no call) where the last round is empty or more than half full.
template <class F>
__device__ int walk_gemm2_tail(const int4* groups, int n, int cols, int sms, F&& f) {
  int64_t tiles = 0;
  for (int i = 0; i < n; ++i) tiles += int64_t(tail_token_tiles(groups[i].z)) * cols;
  const int last = int(tiles % sms);
  if (last == 0 || 2 * last > sms) return 0;
  auto walk = [&](auto&& visit) {
    int taken = 0;
    for (int i = n - 1; i >= 0 && taken < last; --i) {
      const int m = tail_token_tiles(groups[i].z);
      if (m == 0) continue;
      const int cut = min(cols, (last - taken + m - 1) / m);
      visit(i, cut);
      taken += cut * m;
    }
    return taken;
  };
  const int taken = walk([](int, int) {});
  if (2 * taken > sms) return 0;  // columns of many token tiles overshot the round
  walk(f);
  return taken;
}

struct Gemm2Tail {
  int columns = 0, splits = 0, chunk = 0, rows = 0;  // chunk: K depth of every split but the last
  int cut = 0;  // columns of the caller's group in the tail
};

// The tail on `sms` CTAs; `group`: whose columns `cut` counts (-1: none).
__device__ inline Gemm2Tail plan_gemm2_tail(const int4* groups, int n, int cols, int sms, int64_t K, int group) {
  Gemm2Tail t;
  const int tiles = walk_gemm2_tail(groups, n, cols, sms, [&](int i, int cut) {
    t.columns += cut;
    t.rows += cut * groups[i].z;
    if (i == group) t.cut = cut;
  });
  if (tiles == 0) return Gemm2Tail{};
  int splits = min(sms, kGemm2TailMaxUnits) / tiles;
  if (splits > K / 64) splits = int(K / 64);  // splits at least one 64-deep k-block each
  if (splits < 2) return Gemm2Tail{};
  t.chunk = int((K + splits - 1) / splits + 63) / 64 * 64;
  t.splits = int((K + t.chunk - 1) / t.chunk);
  return t;
}

// Writes both GEMMs' group arrays (one thread per group), each pair's top-k weight at its sorted
// position, and gathers each pair's token row there (16-byte chunks, grid-stride).
template <typename T, typename Out1>
__global__ void grouped_prep_kernel(const GroupedPrepParams p, const GroupArrays<T, Out1> g1,
                                    const GroupArrays<T, T> g2, const GroupArrays<T, float> tail) {
  wait_for_preceding_grid();  // route_prep's list and positions
  const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int n = *p.num_groups, cols = static_cast<int>(p.H / kTailColumnWidth);
  if (tid < p.group_count) {
    const int g = static_cast<int>(tid);
    int e = 0, first = 0, rows = 0;
    if (g < n) {
      const int4 t = p.groups[g];
      e = t.x;
      first = t.y;
      rows = t.z;
    }
    g1.set_group(g, rows, e, first, p.R13, p.H, static_cast<const T*>(p.gathered),
                 static_cast<const T*>(p.w13), static_cast<Out1*>(p.out1), p.ld1, nullptr, p.w13_bias);
    g2.set_group(g, rows, e, first, p.H, p.I, static_cast<const T*>(p.act), static_cast<const T*>(p.w2),
                 static_cast<T*>(p.down), p.H, p.sorted_weights, p.w2_bias);
    const Gemm2Tail t = p.tail_sms > 0 ? plan_gemm2_tail(p.groups, n, cols, p.tail_sms, p.I, g) : Gemm2Tail{};
    if (t.columns > 0 && t.cut > 0) {
      // The group keeps its leading columns; one whose columns all left runs no tile.
      const int kept = (cols - t.cut) * kTailColumnWidth;
      g2.shapes[g] = cute::make_shape(kept > 0 ? rows : 0, kept > 0 ? kept : int(p.H), int(p.I));
    }
  }
  // Tail unit u: split u % splits of tail column u / splits; units past the tail are empty groups.
  if (p.tail_sms > 0 && tid < kGemm2TailMaxUnits) {
    const int u = static_cast<int>(tid);
    const Gemm2Tail t = plan_gemm2_tail(p.groups, n, cols, p.tail_sms, p.I, -1);
    if (u == 0) *p.tail_header = make_int4(t.columns, t.splits, t.chunk, t.rows);
    int e = 0, first = 0, rows = 0, col = 0, row_offset = 0, s = 0;
    if (u < t.columns * t.splits) {
      const int j = u / t.splits;
      s = u % t.splits;
      int seen = 0, rows_before = 0;
      walk_gemm2_tail(p.groups, n, cols, p.tail_sms, [&](int i, int cut) {
        const int4 gi = p.groups[i];
        if (j >= seen && j < seen + cut) {
          e = gi.x;
          first = gi.y;
          rows = gi.z;
          col = cols - cut + (j - seen);
          row_offset = rows_before + (j - seen) * gi.z;
        }
        seen += cut;
        rows_before += cut * gi.z;
      });
      if (s == 0) {
        p.tail_columns[j] = make_int4(e, first, rows, col);
        p.tail_row_offsets[j] = row_offset;
      }
    }
    // Rows [first, first + rows) of the act rows, K from s * chunk; the weight rows of output column
    // block col of expert e; partial rows from row_offset of split s.
    const int64_t k0 = int64_t(s) * t.chunk;
    const int depth = rows > 0 ? static_cast<int>(min(int64_t(t.chunk), p.I - k0)) : 64;
    tail.shapes[u] = cute::make_shape(rows, int(kTailColumnWidth), depth);
    tail.a[u] = static_cast<const T*>(p.act) + int64_t(first) * p.I + k0;
    tail.b[u] = static_cast<const T*>(p.w2) + (int64_t(e) * p.H + int64_t(col) * kTailColumnWidth) * p.I + k0;
    tail.d[u] = p.tail_partials + (int64_t(s) * t.rows + row_offset) * kTailColumnWidth;
    GroupStride st{};
    cute::get<0>(st) = p.I;
    tail.sa[u] = st;
    tail.sb[u] = st;
    cute::get<0>(st) = kTailColumnWidth;
    tail.sd[u] = st;
  }
  // One warp per pair row (no 64-bit division per chunk), four 16-byte loads in flight per lane.
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  const int chunks = static_cast<int>(p.H / 8);
  for (int64_t i = tid >> 5; i < p.P; i += warps) {
    const int pos = p.pair_pos[i];
    if (pos < 0) continue;
    if (lane == 0) p.sorted_weights[pos] = p.topk_weights[i];
    const uint4* __restrict__ src =
        reinterpret_cast<const uint4*>(static_cast<const T*>(p.hidden) + (i / p.k) * p.H);
    uint4* __restrict__ dst = reinterpret_cast<uint4*>(static_cast<T*>(p.gathered) + int64_t(pos) * p.H);
    for (int c0 = lane; c0 < chunks; c0 += 4 * 32) {
      uint4 v[4];
#pragma unroll
      for (int u = 0; u < 4; ++u)
        if (c0 + 32 * u < chunks) v[u] = src[c0 + 32 * u];
#pragma unroll
      for (int u = 0; u < 4; ++u)
        if (c0 + 32 * u < chunks) dst[c0 + 32 * u] = v[u];
    }
  }
}

// act_rows[pos] = act(gate + b) * (up + b) (gated; gate = columns [0, I), up = [I, 2I), or with an
// interleaved w13 gate = column 2f, up = 2f + 1) or act(h + b), in fp32 from GEMM 1's fp32 rows,
// rounded once (R1). The bias follows the rows of w13.
template <typename T>
__global__ void grouped_act_kernel(const float* __restrict__ gate_up, const int* __restrict__ pair_pos,
                                   const int* __restrict__ topk_ids, const float* __restrict__ bias,
                                   int64_t P, int64_t I, int64_t R13, bool gated, bool interleaved,
                                   ActKind act, float alpha, float limit, T* __restrict__ out) {
  wait_for_preceding_grid();
  // One warp per pair row (no 64-bit division per chunk); lanes over its 8-feature chunks.
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  const int chunks = static_cast<int>(I / 8);
  // Column of gate_f and of up_f.
  const int64_t gate_step = interleaved ? 2 : 1, up_offset = interleaved ? 1 : I;
  for (int64_t i = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> 5; i < P; i += warps) {
    const int pos = pair_pos[i];
    if (pos < 0) continue;
    const float* row = gate_up + int64_t(pos) * R13;
    const float* b = bias ? bias + int64_t(topk_ids[i]) * R13 : nullptr;
    for (int c = lane; c < chunks; c += 32) {
      const int64_t f0 = int64_t(c) * 8;
      float gv[8], uv[8];
      if (gated && interleaved) {
        float pairs[16];
#pragma unroll
        for (int q = 0; q < 4; ++q)
          *reinterpret_cast<float4*>(pairs + 4 * q) = *reinterpret_cast<const float4*>(row + 2 * f0 + 4 * q);
#pragma unroll
        for (int v = 0; v < 8; ++v) {
          gv[v] = pairs[2 * v];
          uv[v] = pairs[2 * v + 1];
        }
      } else {
        *reinterpret_cast<float4*>(gv) = *reinterpret_cast<const float4*>(row + f0);
        *reinterpret_cast<float4*>(gv + 4) = *reinterpret_cast<const float4*>(row + f0 + 4);
        if (gated) {
          *reinterpret_cast<float4*>(uv) = *reinterpret_cast<const float4*>(row + I + f0);
          *reinterpret_cast<float4*>(uv + 4) = *reinterpret_cast<const float4*>(row + I + f0 + 4);
        }
      }
      uint4 packed;
      T* o = reinterpret_cast<T*>(&packed);
#pragma unroll
      for (int v = 0; v < 8; ++v) {
        const int64_t f = f0 + v;
        float g = gv[v];
        if (b) g += b[gated ? f * gate_step : f];
        float r;
        if (gated) {
          float u = uv[v];
          if (b) u += b[f * gate_step + up_offset];
          r = gate_up_value(act, alpha, limit, g, u);
        } else {
          r = apply_act(act, g);
        }
        o[v] = MmaTraits<T>::from_float(r);
      }
      *reinterpret_cast<uint4*>(out + int64_t(pos) * I + f0) = packed;
    }
  }
}

// GEMM 2's epilogue for the tail's columns: down[first + r, col * 256 + c] = round(w * (sum over
// splits, in order, of the partials + b)), as the cooperative GEMM 2 writes its other tiles (R2).
// Grid-stride over the partial rows, four columns a thread (one tail column can hold thousands of rows).
template <typename T>
__global__ void gemm2_tail_finalize_kernel(const int4* __restrict__ header, const int4* __restrict__ columns,
                                           const int* __restrict__ row_offsets, const float* __restrict__ partials,
                                           const float* __restrict__ sorted_weights,
                                           const float* __restrict__ w2_bias, int64_t H, T* __restrict__ down) {
  wait_for_preceding_grid();  // the tail GEMM's partials
  const int4 h = *header;     // columns, splits, chunk, partial rows
  constexpr int kQuads = kTailColumnWidth / 4;
  const int64_t split_stride = int64_t(h.w) * kTailColumnWidth;
  const int64_t items = int64_t(h.w) * kQuads;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < items; i += int64_t(gridDim.x) * blockDim.x) {
    const int row = static_cast<int>(i / kQuads), n = static_cast<int>(i % kQuads) * 4;
    // The column of partial row `row`: the last whose first row is at or before it.
    int lo = 0, hi = h.x - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (row_offsets[mid] <= row) lo = mid;
      else hi = mid - 1;
    }
    const int4 c = columns[lo];  // expert, first, rows, column
    const int r = row - row_offsets[lo];
    const float* src = partials + int64_t(row) * kTailColumnWidth + n;
    float4 v = *reinterpret_cast<const float4*>(src);
    for (int s = 1; s < h.y; ++s) {
      const float4 q = *reinterpret_cast<const float4*>(src + s * split_stride);
      v.x += q.x;
      v.y += q.y;
      v.z += q.z;
      v.w += q.w;
    }
    const int64_t col = int64_t(c.w) * kTailColumnWidth + n;
    if (w2_bias) {
      const float* b = w2_bias + int64_t(c.x) * H + col;
      v.x += b[0];
      v.y += b[1];
      v.z += b[2];
      v.w += b[3];
    }
    const float w = sorted_weights[c.y + r];
    T o[4] = {MmaTraits<T>::from_float(w * v.x), MmaTraits<T>::from_float(w * v.y),
              MmaTraits<T>::from_float(w * v.z), MmaTraits<T>::from_float(w * v.w)};
    *reinterpret_cast<uint2*>(down + int64_t(c.y + r) * H + col) = *reinterpret_cast<const uint2*>(o);
  }
}

// GEMM 1 with the activation in its epilogue (interleaved w13) on grouped tile Id, in its own
// translation units (grouped_experts_gate_up_act_{bf16,fp16}.cu) to keep each unit's compile time down.
template <typename T, int Id>
void run_grouped_gate_up_act_gemm(const GroupArrays<T, T>& arr, const GroupedOperands& ops, int groups,
                                  const GroupedEpilogueArgs& epi, void* scratch, cudaStream_t stream) {
  GroupedGemm<T, Id, GroupedEpilogue::kGateUpAct>::run(arr, ops, groups, epi, scratch, stream);
}
#define MOEKIT_GATE_UP_ACT_GEMM(T, Id)                                                                        \
  template void run_grouped_gate_up_act_gemm<T, int(Id)>(const GroupArrays<T, T>&, const GroupedOperands&, \
                                                         int, const GroupedEpilogueArgs&, void*, cudaStream_t)
extern MOEKIT_GATE_UP_ACT_GEMM(__nv_bfloat16, GroupedTileId::kCoop128);
extern MOEKIT_GATE_UP_ACT_GEMM(__nv_bfloat16, GroupedTileId::kPingpong128);
extern MOEKIT_GATE_UP_ACT_GEMM(__half, GroupedTileId::kCoop128);
extern MOEKIT_GATE_UP_ACT_GEMM(__half, GroupedTileId::kPingpong128);

// Gathers, GEMM 1 into `out1` (Out1 = float: the gate/up rows, then the activation kernel; Out1 = T:
// the act rows directly), GEMM 2, combine.
template <typename T, int Id1, int Id2, typename Out1>
void run_grouped_layer(const GroupedExpertsArgs& g, cudaStream_t stream) {
  constexpr bool kGateUpAct = std::is_same_v<Out1, T>;
  using G2 = GroupedGemm<T, Id2, GroupedEpilogue::kWeighted>;
  const FusedExpertsArgs& a = *g.layer;
  const ExpertsWorkspaceLayout& lay = g.layout;
  auto* ws = static_cast<unsigned char*>(a.workspace);
  const int64_t P = a.M * a.k;
  const int64_t R13 = a.gated ? 2 * a.I : a.I;
  const int groups = static_cast<int>(P < a.E ? P : a.E);
  unsigned char* args_base = ws + lay.group_args;
  const GroupArrays<T, Out1> g1 = GroupArrays<T, Out1>::carve(args_base, groups, false, kGateUpAct);
  const GroupArrays<T, T> g2 = GroupArrays<T, T>::carve(args_base, groups, true, true);
  // GEMM 2's tail split (cooperative GEMM 2 only): its list and unit arrays after the partials.
  const bool tail_split = g.gemm2_tail_split && Id2 == int(GroupedTileId::kCoop128);
  unsigned char* tail_base = ws + lay.tail_list;
  int4* tail_header = reinterpret_cast<int4*>(tail_base);
  int4* tail_columns = tail_header + 1;
  int* tail_row_offsets = reinterpret_cast<int*>(tail_columns + kGemm2TailMaxUnits);
  tail_base += 16 * (1 + kGemm2TailMaxUnits) + 4 * kGemm2TailMaxUnits;
  const GroupArrays<T, float> tail =
      tail_split ? GroupArrays<T, float>::carve(tail_base, kGemm2TailMaxUnits, false, false) : GroupArrays<T, float>{};
  T* gathered = reinterpret_cast<T*>(ws + lay.down_rows);
  float* gate_up = reinterpret_cast<float*>(ws + lay.gate_up_rows);
  T* act = reinterpret_cast<T*>(ws + lay.act_rows);
  T* down = reinterpret_cast<T*>(ws + lay.down_rows);  // gathered rows are dead after GEMM 1

  GroupedPrepParams pp{};
  pp.groups = g.groups;
  pp.num_groups = g.num_groups;
  pp.group_count = groups;
  pp.hidden = a.hidden;
  pp.pair_pos = g.pair_pos;
  pp.topk_weights = a.topk_weights;
  pp.w2_bias = a.w2_bias;
  pp.w13_bias = kGateUpAct ? a.w13_bias : nullptr;
  pp.P = P;
  pp.H = a.H;
  pp.I = a.I;
  pp.R13 = R13;
  pp.ld1 = kGateUpAct ? a.I : R13;
  pp.k = static_cast<int>(a.k);
  pp.w13 = a.w13;
  pp.w2 = a.w2;
  pp.gathered = gathered;
  pp.out1 = kGateUpAct ? static_cast<void*>(act) : static_cast<void*>(gate_up);
  pp.act = act;
  pp.down = down;
  pp.sorted_weights = reinterpret_cast<float*>(ws + lay.sorted_weights);
  if (tail_split) {
    const int forced = forced_gemm2_tail_sms();
    pp.tail_sms = forced > 0 ? forced : current_device_sm_count();
    pp.tail_header = tail_header;
    pp.tail_columns = tail_columns;
    pp.tail_row_offsets = tail_row_offsets;
    pp.tail_partials = reinterpret_cast<float*>(ws + lay.tail_partials);
  }
  const int threads = 256;
  int64_t prep_items = P * 32;  // a warp per pair row
  if (prep_items < groups) prep_items = groups;
  if (tail_split && prep_items < kGemm2TailMaxUnits) prep_items = kGemm2TailMaxUnits;
  const bool pdl = experts_pdl_enabled();
  launch_dependent(grouped_prep_kernel<T, Out1>, dim3(expert_rows_grid(prep_items, threads)), dim3(threads), 0,
                   stream, pdl, pp, g1, g2, tail);

  GroupedEpilogueArgs epi1{};
  epi1.has_bias = a.w13_bias != nullptr;
  epi1.act = g.act;
  epi1.alpha = a.swiglu_alpha;
  epi1.limit = a.swiglu_limit;
  const GroupedOperands ops1{gathered, P, a.w13, a.E * R13, a.H, R13, g.groups};
  const GroupedOperands ops2{act, P, a.w2, a.E * a.H, a.I, a.H, g.groups};
  if constexpr (kGateUpAct) {
    run_grouped_gate_up_act_gemm<T, Id1>(g1, ops1, groups, epi1, ws + lay.gemm_scratch, stream);
  } else {
    GroupedGemm<T, Id1, GroupedEpilogue::kFp32Rows>::run(g1, ops1, groups, epi1, ws + lay.gemm_scratch, stream);
    launch_dependent(grouped_act_kernel<T>, dim3(expert_rows_grid(P * 32, threads)), dim3(threads), 0, stream,
                     pdl, static_cast<const float*>(gate_up), g.pair_pos, a.topk_ids, a.w13_bias, P,
                     a.I, R13, a.gated, a.gate_up_interleaved, g.act, a.swiglu_alpha, a.swiglu_limit,
                     act);
  }
  GroupedEpilogueArgs epi2{};
  epi2.has_bias = a.w2_bias != nullptr;
  G2::run(g2, ops2, groups, epi2, ws + lay.gemm_scratch + kGroupedGemmScratchBytes, stream);
  if (tail_split) {
    GroupedGemm<T, int(GroupedTileId::kCoop128), GroupedEpilogue::kFp32Rows>::run(
        tail, ops2, kGemm2TailMaxUnits, GroupedEpilogueArgs{}, ws + lay.gemm_scratch + 2 * kGroupedGemmScratchBytes,
        stream);
    launch_dependent(gemm2_tail_finalize_kernel<T>, dim3(4 * kGemm2TailMaxUnits), dim3(256), 0, stream, pdl,
                     static_cast<const int4*>(tail_header), static_cast<const int4*>(tail_columns),
                     static_cast<const int*>(tail_row_offsets), static_cast<const float*>(pp.tail_partials),
                     static_cast<const float*>(pp.sorted_weights), a.w2_bias, a.H, down);
  }
  launch_combine_rows(down, g.pair_pos, a.topk_ids, a.E, static_cast<T*>(a.output), a.M, a.k, a.H,
                      a.routed_scaling_factor, pdl, stream);
}

// Calls f(std::integral_constant<int, id>) for the run-time grouped tile id: one instantiation per tile.
template <typename F>
void with_grouped_tile(GroupedTileId id, F&& f) {
  if (id == GroupedTileId::kPingpong128) f(std::integral_constant<int, int(GroupedTileId::kPingpong128)>{});
  else f(std::integral_constant<int, int(GroupedTileId::kCoop128)>{});
}

template <typename T>
void run_grouped_experts(const GroupedExpertsArgs& g, cudaStream_t stream) {
  with_grouped_tile(g.tile1, [&](auto id1) {
    with_grouped_tile(g.tile2, [&](auto id2) {
      if (g.fused_act) run_grouped_layer<T, decltype(id1)::value, decltype(id2)::value, T>(g, stream);
      else run_grouped_layer<T, decltype(id1)::value, decltype(id2)::value, float>(g, stream);
    });
  });
}

}  // namespace moekit::cuda
