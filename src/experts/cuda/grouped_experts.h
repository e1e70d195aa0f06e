// Prefill path of the GPU expert layer (built only when CUTLASS's headers were found):
//   prep:     per-expert problem shapes and pointers of both grouped GEMMs (one group per expert,
//             written on the device from the route_prep list), each pair's top-k weight and its
//             token row gathered into sorted-pair order          -> down_rows [P, H]
//   GEMM 1:   gathered [rows_e, H] x W13[e]^T                    -> gate_up_rows [P, R13] fp32
//   act:      act(gate + b) * (up + b) (or act(h + b))           -> act_rows [P, I]
//             (interleaved w13: gate/up pairs at columns 2f, 2f+1. Where the plan says fused_act,
//             GEMM 1's epilogue computes the activation from each column pair and writes act_rows
//             itself; no act kernel)
//   GEMM 2:   round(w * (act [rows_e, I] x W2[e]^T + b2[e]))     -> down_rows [P, H]
//             (plan.gemm2_tail_split: the tiles of its last, part-filled round run split along K in
//             a second launch into fp32 partials, which a finalize kernel sums into down_rows)
//   combine:  out[m] = rsf * sum_t down[pos(m, t)], slots in order, fp32 (combine_rows.cuh).
// Rounding points are the oracle's (cpu-moe.md 4.11): R1 in the activation, R2 in GEMM 2's
// epilogue, R3 in the combine. GEMM 1's output stays fp32: storing it in T (R0, as SGLang's Triton
// path does) put single elements 1.3% of the row rms off the oracle on qwen3-30b-a3b.
// Nothing is read back to the host: group counts come from E, the GEMMs run over min(E, P) groups
// of which the trailing ones (experts with no rows) are empty.
#pragma once

#include <cuda_runtime.h>

#include "experts/configs.h"
#include "experts/cuda/expert_gemm.cuh"
#include "experts/cuda/launcher.h"

namespace moekit::cuda {

struct GroupedExpertsArgs {
  const FusedExpertsArgs* layer;
  ExpertsWorkspaceLayout layout;
  const int* pair_pos;   // [P]: sorted position of pair m*k+t, -1 if dropped
  const int4* groups;    // route_prep's list with one tile per non-empty expert: (e, first, rows)
  const int* num_groups; // non-empty experts
  GroupedTileId tile1, tile2;  // GEMM 1's and GEMM 2's
  bool fused_act;  // plan.fused_act: GEMM 1 writes the act rows itself
  bool gemm2_tail_split;  // plan.gemm2_tail_split
  ActKind act;
};

template <typename T>
void run_grouped_experts(const GroupedExpertsArgs& args, cudaStream_t stream);

}  // namespace moekit::cuda
