// Per-ISA building blocks of the CPU expert ops. The driver (fused_experts_cpu.cpp) does routing,
// work splitting and the combine; an ISA supplies the GEMM micro-kernel on one packed 32-row block,
// the activation epilogue and the weighted add.
//
// One reduction order on every path: for each output, one fp32 accumulator over ascending K pairs,
// the odd element of a pair first, then the even one, each a fused multiply-add (the order of
// VDPBF16PS). Scalar, AVX2 and AVX-512-BF16 are therefore bit-identical (up to denormals, which
// VDPBF16PS flushes); AMX's TDPBF16PS order is the hardware's.
#pragma once

#include <cstdint>

#include "moekit/cpu.h"
#include "moekit/experts.h"
#include "moekit/tensor.h"

namespace moekit::cpu {

// Epilogue rows of an earlier gemm call (activation, weighted rounding) that a later call may run
// between its own tile instructions: run(ctx, r) for r in [done, rows). finish() runs what is left,
// so a call that does not take any stays correct.
struct RowWork {
  void (*run)(const void* ctx, int r) = nullptr;
  const void* ctx = nullptr;
  int rows = 0, done = 0;
  void finish() {
    for (; done < rows; ++done) run(ctx, done);
  }
};

struct ActivationParams {
  Activation kind = Activation::kSiluAndMul;
  float alpha = 0.f, limit = 0.f;
};

// A panels (the GEMM's left operand rows) are fp32, or the activation's 16-bit dtype for the
// paths whose dot-product instruction reads bf16 directly.
enum class PanelFormat { kFloat32, kBFloat16 };

struct ExpertKernels {
  CpuIsa isa = CpuIsa::kScalar;
  PanelFormat panel = PanelFormat::kFloat32;
  int max_rows = 4;  // A rows one gemm call takes
  // c[r * 32 + n] = sum_{k < 2 * kpairs} a[r * lda + k] * W[n][k] for r < rows, where w is one
  // VNNI-2 block (32 columns n, kpairs K pairs) of weights in `dtype`. a may be read up to 32 rows
  // past the last one (the caller pads its panels: AMX reads whole 16-row tiles whatever `rows` is;
  // the extra rows' results are discarded, and no row's result depends on another row).
  // [next_w, next_w + next_bytes) (next_w may be null) is weight data the caller multiplies next: a
  // path may stream it into L2 during this call.
  void (*gemm)(const void* a, int64_t lda, int rows, const uint16_t* w, int64_t kpairs, float* c,
               const uint16_t* next_w, int64_t next_bytes);
  // dst[n] = round(act(gate[n]) * up[n]) for n < count (stored in `panel` format, rounding to
  // `dtype`); zero for count <= n < 32.
  void (*activate)(const float* gate, const float* up, int count, const ActivationParams& act, DType dtype,
                   PanelFormat panel, void* dst);
  // dst[n] = round_dtype(w * d[n]) for n < count, stored as `dtype` bits (one slot's output, R2).
  // A path may use non-temporal stores for whole 64-byte lines: the caller fences (_mm_sfence)
  // before other threads read dst.
  void (*weighted_round)(const float* d, float w, int count, DType dtype, uint16_t* dst);
  // out[n] = round_dtype(scale * s[n]) for n < count, where s[n] = 0 + y[0][n] + y[1][n] + ... in fp32,
  // summed in the order given (the combine of a token's slot outputs, R3).
  void (*sum_rows)(const uint16_t* const* y, int rows, float scale, int64_t count, DType dtype, uint16_t* out);
  // Called by every worker thread before its first and after its last gemm of a call (AMX: the
  // tile configuration is loaded once per thread, not per gemm); null when not needed.
  void (*thread_begin)() = nullptr;
  void (*thread_end)() = nullptr;
  // Optional (AMX; where present both stages use it instead of gemm): gemm over every row of a panel, in
  // groups of max_rows (c[r * 32 + n] for r < rows rounded up to max_rows; a padded as for gemm),
  // streaming all of next_w into L2 over its K steps, and running `pending`'s rows
  // (may be null) in equal shares over them: the caller hands each call the epilogue of the call before
  // (writing c into the other of two buffers), so the vector epilogue runs while the tile unit multiplies.
  // Same bits as gemm on each group.
  void (*gemm_panel)(const void* a, int64_t lda, int rows, const uint16_t* w, int64_t kpairs, float* c,
                     const uint16_t* next_w, int64_t next_bytes, RowWork* pending) = nullptr;
};

// The kernels of `isa` for activations/weights of `dtype` (bf16 or fp16). Paths without a kernel
// of their own use the nearest one below (avx512 uses avx2; fp16 on avx512bf16/amx uses avx2).
const ExpertKernels& expert_kernels(CpuIsa isa, DType dtype);

// Per-ISA tables (each defined in its own translation unit).
const ExpertKernels* scalar_expert_kernels(DType dtype);
const ExpertKernels* avx2_expert_kernels(DType dtype);
const ExpertKernels* avx512bf16_expert_kernels(DType dtype);  // bf16 only, else nullptr
const ExpertKernels* amx_expert_kernels(DType dtype);         // bf16 only, else nullptr

// Shared scalar pieces (also the reference structure the vector paths mirror).
float exp_approx(float x);  // relative error < 2^-22 on [-87, 88]; NaN -> NaN
float activation_scalar(float gate, float up, const ActivationParams& act);

}  // namespace moekit::cpu
