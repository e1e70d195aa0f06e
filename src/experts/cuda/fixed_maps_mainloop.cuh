// CUTLASS's ptr-array TMA / wgmma mainloop (consumer side and pipeline unchanged) with one tensor
// map per operand for the whole layer instead of one per group: A over all sorted rows [P, K]
// (group g's rows start at row first_g), B over all experts' weights [E * N, K] (expert e's rows
// start at row e * N). The base rewrites both maps in shared memory and publishes them to global
// memory with proxy fences whenever a CTA moves to another group, in its producer warp, in
// front of the new tile's first loads.
// A tile's rows past its group's end read the next group's rows (or zeros past P) and its
// columns past N the next expert's weights: the epilogue stores neither. Those rows are real
// reads where the base's per-group map zero-filled them without any.
// Used by the pingpong tile only. H100 2026-11-26 19:25 (one binary, MOEKIT_FIXED_MAPS A/B),
// layer us, fixed vs per-group maps: pingpong points qwen3-30b-a3b M = 1024 / 2048 512.6 / 593.2
// vs 521.2 / 613.2, mixtral-8x7b M = 256 1004.1 vs 1029.7, deepseek-v3 M = 2048 8130 vs 8183;
// cooperative points mixed: mixtral M = 1024 1426.2 vs 1461.8, but qwen3 M = 4096 835.3 vs 830.8,
// mixtral M = 4096 / 8192 4813 / 8960 vs 4558 / 8879, deepseek-v3 M = 4096 9574 vs 9490 (qwen3
// and deepseek-v3 M = 8192 within 0.2%).
#pragma once

#include <cstdint>

#include "cute/tensor.hpp"

namespace moekit::cuda {

template <class Base>
struct FixedMapsMainloop : Base {
  using typename Base::TileShape;
  using typename Base::SmemLayoutA;
  using typename Base::SmemLayoutB;
  using typename Base::GmemTiledCopyA;
  using typename Base::GmemTiledCopyB;
  using typename Base::MainloopPipeline;
  using typename Base::PipelineState;
  using typename Base::TensorStorage;
  using typename Base::TMA_A;
  using typename Base::TMA_B;
  using typename Base::InternalElementA;
  using typename Base::InternalElementB;
  using typename Base::InternalStrideA;
  using typename Base::InternalStrideB;
  using ClusterShape = typename Base::DispatchPolicy::ClusterShape;
  using Shape3 = cute::Shape<int, int, int>;

  struct Arguments : Base::Arguments {
    const void* a_rows = nullptr;  // [a_count, K]
    int64_t a_count = 0;
    const void* b_rows = nullptr;  // [b_count, K]: expert e's N rows from row e * N
    int64_t b_count = 0;
    int64_t K = 0, N = 0;
    const int4* groups = nullptr;  // per group: (expert, first row of A, rows, -)
  };

  struct Params : Base::Params {
    TMA_A all_a;
    TMA_B all_b;
    Shape3 shape_a, shape_b;
    int N;
    const int4* groups;
  };

  template <class ProblemShape>
  static Params to_underlying_arguments(ProblemShape problem_shapes, Arguments const& args, void* workspace) {
    using namespace cute;
    Params p;
    static_cast<typename Base::Params&>(p) = Base::to_underlying_arguments(problem_shapes, args, workspace);
    p.shape_a = make_shape(int(args.a_count), int(args.K), 1);
    p.shape_b = make_shape(int(args.b_count), int(args.K), 1);
    InternalStrideA stride_a{};
    get<0>(stride_a) = args.K;
    InternalStrideB stride_b{};
    get<0>(stride_b) = args.K;
    p.all_a = make_tma_copy(GmemTiledCopyA{},
                            make_tensor(static_cast<InternalElementA const*>(args.a_rows), make_layout(p.shape_a, stride_a)),
                            SmemLayoutA{}(_, _, Int<0>{}), make_shape(size<0>(TileShape{}), size<2>(TileShape{})),
                            size<1>(ClusterShape{}));
    p.all_b = make_tma_copy(GmemTiledCopyB{},
                            make_tensor(static_cast<InternalElementB const*>(args.b_rows), make_layout(p.shape_b, stride_b)),
                            SmemLayoutB{}(_, _, Int<0>{}), make_shape(size<1>(TileShape{}), size<2>(TileShape{})),
                            size<0>(ClusterShape{}));
    p.N = int(args.N);
    p.groups = args.groups;
    return p;
  }

  // No per-group tensor maps: the kernel's calls to rewrite and publish them do nothing.
  template <class... Ts>
  CUTLASS_DEVICE void tensormaps_perform_update(Ts&&...) {}
  template <class... Ts>
  CUTLASS_DEVICE void tensormaps_cp_fence_release(Ts&&...) {}
  template <class... Ts>
  CUTLASS_DEVICE void tensormaps_fence_acquire(Ts&&...) {}

  // (gA, gB, first row of A, expert) of the current group; the last two are set per group.
  template <class ProblemShape_MNKL>
  CUTLASS_DEVICE auto load_init(ProblemShape_MNKL const& problem_shape_MNKL, Params const& params) const {
    auto base = Base::load_init(problem_shape_MNKL, params);
    return cute::make_tuple(cute::get<0>(base), cute::get<1>(base), int(0), int(0));
  }

  template <class InputTensors, class ProblemShape_MNKL>
  CUTLASS_DEVICE InputTensors tensors_perform_update(InputTensors const& in, Params const& params,
                                                     ProblemShape_MNKL, int32_t next_batch) {
    const int4 g = params.groups[next_batch];
    return cute::make_tuple(cute::get<0>(in), cute::get<1>(in), g.y, g.x);
  }

  // The base's loads (one elected lane, multicast as its cluster asks) from the layer-wide maps.
  template <class LoadInputs, class TensorMapA, class TensorMapB, class KTileIterator, class BlockCoord>
  CUTLASS_DEVICE void load(Params const& params, MainloopPipeline pipeline, PipelineState smem_pipe_write,
                           LoadInputs const& load_inputs, cute::tuple<TensorMapA, TensorMapB> const&,
                           BlockCoord const& blk_coord, KTileIterator k_tile_iter, int k_tile_count, int,
                           uint32_t block_rank_in_cluster, TensorStorage& shared_tensors) {
    using namespace cute;
    using X = Underscore;
    if (!cute::elect_one_sync()) return;
    constexpr uint32_t cluster_x = size<0>(ClusterShape{});
    const uint32_t rank_x = block_rank_in_cluster % cluster_x, rank_y = block_rank_in_cluster / cluster_x;
    auto [m_coord, n_coord, k_coord, l_coord] = blk_coord;

    Tensor sA = make_tensor(make_smem_ptr(shared_tensors.smem_A.data()), SmemLayoutA{});
    Tensor sB = make_tensor(make_smem_ptr(shared_tensors.smem_B.data()), SmemLayoutB{});
    Tensor mA = domain_offset(make_coord(get<2>(load_inputs), 0, 0), params.all_a.get_tma_tensor(params.shape_a));
    Tensor mB = domain_offset(make_coord(get<3>(load_inputs) * params.N, 0, 0), params.all_b.get_tma_tensor(params.shape_b));
    Tensor gA = local_tile(mA, TileShape{}, make_coord(_, _, _), Step<_1, X, _1>{})(_, _, m_coord, _, 0);
    Tensor gB = local_tile(mB, TileShape{}, make_coord(_, _, _), Step<X, _1, _1>{})(_, _, n_coord, _, 0);
    auto block_tma_a = params.all_a.get_slice(rank_y);
    auto block_tma_b = params.all_b.get_slice(rank_x);
    Tensor tAgA = block_tma_a.partition_S(gA);
    Tensor tAsA = block_tma_a.partition_D(sA);
    Tensor tBgB = block_tma_b.partition_S(gB);
    Tensor tBsB = block_tma_b.partition_D(sB);

    uint16_t mcast_mask_a = 0, mcast_mask_b = 0;
    auto block_layout = Layout<ClusterShape>{};  // (m, n) -> block id
    if constexpr (is_same_v<GmemTiledCopyA, SM90_TMA_LOAD_MULTICAST>)
      for (int n = 0; n < size<1>(block_layout); ++n) mcast_mask_a |= uint16_t(1) << block_layout(rank_x, n, Int<0>{});
    if constexpr (is_same_v<GmemTiledCopyB, SM90_TMA_LOAD_MULTICAST>)
      for (int m = 0; m < size<0>(block_layout); ++m) mcast_mask_b |= uint16_t(1) << block_layout(m, rank_y, Int<0>{});

    CUTLASS_PRAGMA_NO_UNROLL
    for (; k_tile_count > 0; --k_tile_count) {
      pipeline.producer_acquire(smem_pipe_write);
      uint64_t* bar = pipeline.producer_get_barrier(smem_pipe_write);
      const int stage = smem_pipe_write.index();
      copy(params.all_a.with(*bar, mcast_mask_a), tAgA(_, _, _, *k_tile_iter), tAsA(_, _, _, stage));
      copy(params.all_b.with(*bar, mcast_mask_b), tBgB(_, _, _, *k_tile_iter), tBsB(_, _, _, stage));
      ++k_tile_iter;
      ++smem_pipe_write;
    }
  }
};

}  // namespace moekit::cuda
