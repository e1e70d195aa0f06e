// CUTLASS's ptr-array TMA / wgmma mainloop (or FixedMapsMainloop over it) whose consumer warp groups
// skip the 64-row MMA blocks that lie wholly past their group's last row. An expert's last token
// tile is part-filled (routing noise spills a few rows into it): the base multiplies its zero-filled
// rows at full cost. Here the producer warp writes each tile's row count into a small ring in shared
// memory, keyed by the pipeline count of the tile's first k-block, before that k-block's barrier
// arrival (release); the consumers read it after their wait on that barrier (acquire). A slot is
// rewritten 2 x Stages k-blocks later, after every consumer has released the k-block that read it.
// Skipped blocks' accumulators are zero; the epilogue stores no row past the group's end.
// Same instructions on full tiles, same summation order: results are bitwise those of the base.
#pragma once

#include <cstdint>

#include "cute/tensor.hpp"

namespace moekit::cuda {

template <class Base>
struct SkipEmptyRowsMainloop : Base {
  using typename Base::TileShape;
  using typename Base::TiledMma;
  using typename Base::SmemLayoutA;
  using typename Base::SmemLayoutB;
  using typename Base::MainloopPipeline;
  using typename Base::PipelineState;
  using typename Base::Params;
  static constexpr int kStages = Base::DispatchPolicy::Stages;
  static constexpr int kRing = 2 * kStages;
  static constexpr int kBlockRows = 64;  // rows of one wgmma
  static constexpr int kTileRows = cute::size<0>(TileShape{});
  static constexpr int kWarpGroups = cute::size(TiledMma{}) / cutlass::NumThreadsPerWarpGroup;
  static_assert(Base::K_PIPE_MMAS == 1, "the consumer loop below keeps one k-block of MMAs in flight");

  // The ring takes a whole 1 KB after the operand stages: the epilogue's storage that follows
  // stays 1 KB aligned, as its swizzled layouts assume (at 128 bytes past it the cooperative
  // GEMMs ran 10-20% slower, H100 2026-11-27 07:20).
  struct TensorStorage : Base::TensorStorage {
    alignas(1024) int tile_rows[kRing];
  };
  static_assert(sizeof(TensorStorage) == sizeof(typename Base::TensorStorage) + 1024);

  // The base's inputs plus the current group's row count.
  template <class ProblemShape_MNKL>
  CUTLASS_DEVICE auto load_init(ProblemShape_MNKL const& shape, Params const& params) const {
    return cute::append(Base::load_init(shape, params), int(cute::get<0>(shape)));
  }

  template <class InputTensors, class ProblemShape_MNKL>
  CUTLASS_DEVICE InputTensors tensors_perform_update(InputTensors const& in, Params const& params,
                                                     ProblemShape_MNKL shape, int32_t next_batch) {
    constexpr int n = cute::tuple_size<InputTensors>::value;
    return cute::append(Base::tensors_perform_update(cute::take<0, n - 1>(in), params, shape, next_batch),
                        int(cute::get<0>(shape)));
  }

  // Producer warp: the tile's row count into the ring, then the base's loads.
  template <class InputTensors, class TensorMaps, class BlockCoord, class KTileIterator, class Storage>
  CUTLASS_DEVICE void load(Params const& params, MainloopPipeline pipeline, PipelineState smem_pipe_write,
                           InputTensors const& in, TensorMaps const& maps, BlockCoord const& blk_coord,
                           KTileIterator k_tile_iter, int k_tile_count, int thread_idx,
                           uint32_t block_rank_in_cluster, Storage& shared) {
    constexpr int n = cute::tuple_size<InputTensors>::value;
    const int rows = cute::get<n - 1>(in) - int(cute::get<0>(blk_coord)) * kTileRows;
    if (cute::elect_one_sync()) shared.tile_rows[smem_pipe_write.count() % kRing] = rows;
    __syncwarp();  // orders the write before whichever lane the base elects to arrive
    Base::load(params, pipeline, smem_pipe_write, cute::take<0, n - 1>(in), maps, blk_coord, k_tile_iter,
               k_tile_count, thread_idx, block_rank_in_cluster, shared);
  }

  // Consumer warp group: the base's loop (one k-block of MMAs in flight; the kernel's mma_tail
  // releases the last k-block) over the 64-row blocks that hold rows.
  template <class FrgTensorC>
  CUTLASS_DEVICE void mma(MainloopPipeline pipeline, PipelineState smem_pipe_read, FrgTensorC& accum,
                          int k_tile_count, int thread_idx, TensorStorage& shared, Params const&) {
    using namespace cute;
    Tensor sA = make_tensor(make_smem_ptr(shared.smem_A.data()), SmemLayoutA{});
    Tensor sB = make_tensor(make_smem_ptr(shared.smem_B.data()), SmemLayoutB{});
    const int warp_group = __shfl_sync(0xffffffff, thread_idx / cutlass::NumThreadsPerWarpGroup, 0);
    TiledMma tiled_mma;
    auto thread_mma = tiled_mma.get_slice(warp_group * cutlass::NumThreadsPerWarpGroup);
    Tensor tCrA = thread_mma.make_fragment_A(thread_mma.partition_A(sA));  // (MMA, MMA_M, MMA_K, PIPE)
    Tensor tCrB = thread_mma.make_fragment_B(thread_mma.partition_B(sB));  // (MMA, MMA_N, MMA_K, PIPE)
    constexpr int kM = size<1>(tCrA), kN = size<1>(tCrB), kK = size<2>(tCrA);
    static_assert(kM * kWarpGroups * kBlockRows == kTileRows, "warp groups tile the rows in 64-row blocks");

    if (k_tile_count <= 0) return;
    // Block m of this warp group holds tile rows [64 (warp_group + m * kWarpGroups), + 64): the
    // blocks with rows are a prefix. Its length is known once the tile's first k-block has landed.
    pipeline.consumer_wait(smem_pipe_read, pipeline.consumer_try_wait(smem_pipe_read));
    const int tile_rows = shared.tile_rows[smem_pipe_read.count() % kRing];
    int active = 0;
    CUTLASS_PRAGMA_UNROLL
    for (int m = 0; m < kM; ++m) active += kBlockRows * (warp_group + m * kWarpGroups) < tile_rows;
    CUTLASS_PRAGMA_UNROLL
    for (int m = 0; m < kM; ++m)
      if (m >= active) {
        CUTLASS_PRAGMA_UNROLL
        for (int n = 0; n < kN; ++n) fill(accum(_, m, n), 0.f);
      }
    warpgroup_fence_operand(accum);

    // One straight loop per prefix length, so that no MMA sits under a branch inside it.
    auto run = [&](auto blocks) {
      constexpr int kActive = decltype(blocks)::value;
      PipelineState release = smem_pipe_read;
      CUTLASS_PRAGMA_NO_UNROLL
      for (int k = 0; k < k_tile_count; ++k) {
        if (k > 0) pipeline.consumer_wait(smem_pipe_read, pipeline.consumer_try_wait(smem_pipe_read));
        const int stage = smem_pipe_read.index();
        if constexpr (kActive > 0) {
          warpgroup_fence_operand(accum);
          warpgroup_arrive();
          CUTLASS_PRAGMA_UNROLL
          for (int kb = 0; kb < kK; ++kb) {
            tiled_mma.accumulate_ = (k == 0 && kb == 0) ? GMMA::ScaleOut::Zero : GMMA::ScaleOut::One;
            if constexpr (kActive == kM) {
              cute::gemm(tiled_mma, tCrA(_, _, kb, stage), tCrB(_, _, kb, stage), accum);
            } else {
              CUTLASS_PRAGMA_UNROLL
              for (int m = 0; m < kActive; ++m)
                CUTLASS_PRAGMA_UNROLL
                for (int n = 0; n < kN; ++n)
                  cute::gemm(tiled_mma, tCrA(_, m, kb, stage), tCrB(_, n, kb, stage), accum(_, m, n));
            }
          }
          warpgroup_commit_batch();
        }
        if (k > 0) {
          if constexpr (kActive > 0) {
            warpgroup_wait<1>();  // the previous k-block's MMAs are done with its stage
            warpgroup_fence_operand(accum);
          }
          pipeline.consumer_release(release);
          ++release;
        }
        ++smem_pipe_read;
      }
    };
    if (active == kM) run(cute::Int<kM>{});
    else if constexpr (kM > 1) {
      if (active > 0) run(cute::Int<1>{});
      else run(cute::Int<0>{});
    } else {
      run(cute::Int<0>{});
    }
    warpgroup_fence_operand(accum);
  }
};

}  // namespace moekit::cuda
