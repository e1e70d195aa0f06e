// Tile dispatch of the expert GEMM: one explicit instantiation file per dtype
// (expert_gemm_bf16.cu, expert_gemm_fp16.cu) so the kernels build in parallel.
#pragma once

#include "common/cuda_check.h"
#include "experts/configs.h"
#include "experts/cuda/expert_gemm.cuh"

namespace moekit::cuda {

// Launches `kernel` with programmatic stream serialization (it may start while the previous
// kernel of the stream finishes; the kernel itself waits where it needs that kernel's results).
// MOEKIT_EXPERTS_PDL=0 turns it off (plain stream order), for debugging and A/B timing.
bool experts_pdl_enabled();

template <typename Kernel, typename... Args>
void launch_with_pdl(Kernel kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                     Args... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = experts_pdl_enabled() ? 1 : 0;
  MOEKIT_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, args...));
}

template <typename T>
void launch_expert_gemm(TileId id, const ExpertGemmParams& p, int64_t tile_bound, cudaStream_t s);

}  // namespace moekit::cuda
