// Prefill path of the GPU expert layer (built only when CUTLASS's headers were found):
//   prep:     per-expert problem shapes and pointers of both grouped GEMMs (one group per expert,
//             written on the device from the route_prep list), each pair's top-k weight and its
//             token row gathered into sorted-pair order          -> down_rows [P, H]
//   GEMM 1:   gathered [rows_e, H] x W13[e]^T                    -> gate_up_rows [P, R13]
//   act:      act(gate + b) * (up + b) (or act(h + b))           -> act_rows [P, I]
//   GEMM 2:   round(w * (act [rows_e, I] x W2[e]^T + b2[e]))     -> down_rows [P, H]
//   combine:  out[m] = rsf * sum_t down[pos(m, t)], slots in order, fp32 (combine_rows.cuh).
// Rounding points: as SGLang's Triton path (gpu-ops.md 6.1), GEMM 1's output is stored in T before
// the activation (R0, which the CPU contract of cpu-moe.md 4.11 leaves out for BF16/FP16: a relative
// error of about 2^-9 per gate/up value); then R1, R2 (in GEMM 2's epilogue) and R3 as the oracle.
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
  GroupedTileId tile;
  ActKind act;
};

template <typename T>
void run_grouped_experts(const GroupedExpertsArgs& args, cudaStream_t stream);

}  // namespace moekit::cuda
