// CPU expert compute (x86): weight packing into moekit's tiled format (MKCPU v1) and the fused MoE
// expert ops that read it, sgl-kernel's `convert_weight_packed` / `fused_experts_cpu` /
// `shared_expert_cpu`. BF16 and FP16 (weights in the activation dtype).
//
// Packed weights: a 1-D uint8 tensor that starts with a 192-byte descriptor (format "MKCPU",
// version 1, scheme, dtype, role, E, R, C, padded sizes, section table) followed by the data section
// (64-byte aligned). Every kernel reads the descriptor and rejects a buffer that does not match the
// call. Data layout (spec cpu-moe.md 2.5): 32-row blocks, VNNI-2 inside a block (weight (row i,
// col k) at (k div 2)*64 + 2i + (k mod 2)), rows padded to 32 and columns to 32 with zeros; W13
// blocks are paired (gate block j, then up block j), each half padded separately.
//
// Threads: MOEKIT_CPU_THREADS / set_cpu_threads(), or CpuRunConfig::threads per call. Results are
// bit-identical for every thread count and run to run on a given ISA path (moekit::cpu_isa()).
#pragma once

#include <cstddef>
#include <cstdint>

#include "moekit/experts.h"
#include "moekit/tensor.h"

namespace moekit {

enum class PackedRole : uint8_t {
  kW13,    // [E, 2I, H] gate rows then up rows (or interleaved, see W13Source); paired blocks
  kW2,     // [E, H, I]
  kDense,  // any [E, R, C] / [R, C] matrix, row blocks in logical order
};

enum class W13Source : uint8_t {
  kHalves,       // gate = rows [0, I), up = rows [I, 2I) (SGLang / checkpoint order)
  kInterleaved,  // gate = even rows, up = odd rows (gpt-oss); de-interleaved when packing
};

// The descriptor at the start of every packed buffer.
struct PackedWeightInfo {
  uint32_t version = 1;
  WeightScheme scheme = WeightScheme::kBF16;
  DType dtype = DType::kBFloat16;  // bf16 or fp16
  PackedRole role = PackedRole::kDense;
  W13Source w13_source = W13Source::kHalves;
  int64_t experts = 0, rows = 0, cols = 0;          // logical E, R, C
  int64_t rows_padded = 0, cols_padded = 0;         // R_pad, C_pad
  int64_t data_offset = 0, data_bytes = 0;          // the data section, bytes from the buffer start
  int64_t total_bytes = 0;
};

// Exact byte size of the packed form of `weight` ([E, R, C] or [R, C], bf16/fp16) in `role`.
MOEKIT_API size_t packed_weight_bytes(TensorView weight, PackedRole role);

// Packs `weight` (contiguous CPU bf16/fp16 [E, R, C] or [R, C]) into `packed` (contiguous uint8,
// exactly packed_weight_bytes() long). Done once at load time; runs on cpu_threads().
//   W13: R = 2I (even), gate/up halves or interleaved per `source`.
MOEKIT_API void pack_moe_weights(TensorView weight, PackedRole role, TensorView packed,
                                 W13Source source = W13Source::kHalves);

// Reads and checks the descriptor of a packed buffer (error if it is not MKCPU v1).
MOEKIT_API PackedWeightInfo packed_weight_info(TensorView packed);

// The inverse of pack_moe_weights: writes the logical weight (same shape and dtype as packed from,
// interleaved sources re-interleaved).
MOEKIT_API void unpack_moe_weights(TensorView packed, TensorView weight);

// sgl-kernel compat: packs with role kDense (row blocks in logical order). fused_experts_cpu
// accepts such a w13 when I % 32 == 0 (upstream's own requirement); pack with kW13 for any I.
MOEKIT_API size_t convert_weight_packed_bytes(TensorView weight);
MOEKIT_API void convert_weight_packed(TensorView weight, TensorView packed);

// Per-call execution settings of the CPU ops.
struct CpuRunConfig {
  int threads = 0;       // 0 = cpu_threads()
  TensorView workspace;  // optional uint8, 64-byte aligned, >= *_workspace_bytes(); absent = an
                         // internal arena cached per calling thread
};

// Routed experts (spec cpu-moe.md 4.6): for token m, slot t with e = topk_ids[m, t] (-1 = dropped)
//   a = round(act(W13_gate[e] . x_m) * (W13_up[e] . x_m))          (fp32 accumulation; R1)
//   y_t = round(topk_weights[m, t] * (W2[e] . a))                   (R2)
//   out[m] = round(rsf * sum_t y_t)  (fp32 sum, ascending expert id; R3)
//   hidden_states [M, K] bf16/fp16 contiguous
//   w13_packed    packed kW13 (or kDense with I % 32 == 0) of [E, 2I, K], dtype of hidden_states
//   w2_packed     packed kW2 or kDense of [E, K, I]
//   topk_weights  [M, k] fp32/bf16/fp16;  topk_ids [M, k] int32/int64, each in [0, E) or -1
//   output        [M, K] dtype of hidden_states; may be hidden_states itself (in place)
// options: scheme kBF16; activation kSiluAndMul, kGeluAndMul, kGeluTanhAndMul or kSwigluOai (needs
// swiglu_alpha and swiglu_limit); kSilu / kGelu (no mul) -> NotSupported. gate_up_interleaved:
// the packed layout does not depend on it (packing de-interleaves); when true, w13_packed must have
// been packed from interleaved rows (W13Source::kInterleaved), else an error. Bad ids -> error
// before anything is written. M = 0 is a no-op.
MOEKIT_API void fused_experts_cpu(TensorView hidden_states, TensorView w13_packed, TensorView w2_packed,
                                  TensorView topk_weights, TensorView topk_ids, TensorView output,
                                  const FusedExpertsOptions& options = {}, const CpuRunConfig& run = {});

// Shared expert (spec 5): out[m] = round(D[m] + rsf * fused_experts_out[m]) where D is the dense
// gated MLP of one expert (packed from [2I, K] / [1, 2I, K] and [K, I] / [1, K, I]), one rounding.
// fused_experts_out optional ([M, K], dtype of hidden_states); rsf = options.routed_scaling_factor.
// output may be hidden_states or fused_experts_out.
MOEKIT_API void shared_expert_cpu(TensorView hidden_states, TensorView w13_packed, TensorView w2_packed,
                                  TensorView fused_experts_out, TensorView output,
                                  const FusedExpertsOptions& options = {}, const CpuRunConfig& run = {});

// Exact scratch bytes of one call (monotone in M); threads = 0 means cpu_threads().
MOEKIT_API size_t fused_experts_cpu_workspace_bytes(int64_t M, int64_t topk, int64_t E, int64_t N,
                                                    int64_t K, int threads = 0);
MOEKIT_API size_t shared_expert_cpu_workspace_bytes(int64_t M, int64_t N, int64_t K, int threads = 0);

}  // namespace moekit
