// fused_experts_cpu / shared_expert_cpu: validation, routing, work split and combine around the
// per-ISA kernels (kernels.h).
//
// Stage 1 (GEMM-1 + activation): work items (expert, panel of gate/up block pairs, block of up to
//   stage1_rows() of its token slots); each gathers its rows of x once into an A panel, then for
//   every block pair j of the panel multiplies all its rows by the gate and up blocks (the pair stays
//   in L2 while the rows sweep it) and writes round(act(gate) * up) into ic1 (one row per valid
//   (token, slot) pair, grouped by expert in ascending flat index; columns padded to 32 with zeros).
//   Items of one expert and panel are adjacent, so threads working on its row blocks at the same
//   time share the weight reads through the last-level cache.
// Stage 2 (GEMM-2 + weight): work items (expert, block of up to stage2_rows() of its ic1 rows, panel
//   of 32-column output blocks), the mirror of stage 1: the rows are contiguous in ic1, each W2 block
//   stays in L2 while they sweep it, and each slot's output round(w * d) (R2) goes to its own row of
//   the slot buffer ic2 [M*k, K] (x's dtype), a full 64-byte line per row and block (the SIMD paths
//   write these lines with non-temporal stores: no read for ownership; each item ends with a fence).
// Stage 3 (combine): out[m] = round(rsf * (0 + ic2[m*k] + ic2[m*k+1] + ...)) over the valid slots in
//   slot order (R3), one token per step. Every output has one owner and one fixed summation order, so
//   the result does not depend on the thread count or on the other tokens of the batch. (The shared
//   expert has one slot per token and no R2: stage 2 writes its output directly.)
// On the AMX path both stages multiply every row of an item by one block per call (gemm_panel: the
// block's K chunks stay in L1 while the row groups sweep them), and the epilogue of each call
// (activation, slot stores) runs inside the next call's K loop, from the other of two C buffers.
// MOEKIT_CPU_PROFILE=1 prints the time of each stage of every call on stderr (profile_line()).
// Panel and ic1 rows are padded by 32 elements so that the rows of one AMX tile load (16 rows at a
// power-of-two stride otherwise) do not all fall into one L1 set.
#include <omp.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/checks.h"
#include "common/cpu_features.h"
#include "common/numeric.h"
#include "experts/cpu/kernels.h"
#include "experts/cpu/packed_format.h"
#include "moekit/cpu.h"
#include "moekit/cpu_experts.h"

namespace moekit {
namespace cpu {

const ExpertKernels& expert_kernels(CpuIsa isa, DType dtype) {
  const ExpertKernels* k = nullptr;
  if (isa == CpuIsa::kAmx) k = amx_expert_kernels(dtype);
  if (!k && (isa == CpuIsa::kAmx || isa == CpuIsa::kAvx512Bf16)) k = avx512bf16_expert_kernels(dtype);
  if (!k && isa != CpuIsa::kScalar) k = avx2_expert_kernels(dtype);
  if (!k) k = scalar_expert_kernels(dtype);
  return *k;
}

namespace {

constexpr int64_t kPanelRows = 32;  // rows a gemm may read past the last valid one (AMX reads 2 tiles)
constexpr int64_t kRowPad = 32;     // elements added to panel and ic1 row strides
// Stage 1 items take up to this many token slots of one expert (fewer when K is large, so that
// the A panel stays in L2: stage1_rows()). More rows per item = fewer re-reads of W13.
constexpr int64_t kStage1MaxRows = 128;
constexpr int64_t kStage1PanelBytes = 1 << 20;
constexpr int64_t kAmxStage1MaxRows = 320;
constexpr int64_t kAmxStage1L2Bytes = 1887436;  // 1.8 MiB of the 2 MiB L2 per core
// Stage 2 items take up to this many ic1 rows of one expert (ic1 rows are short: N, not K); the AMX
// path up to kAmxStage2MaxRows, so that an expert of qwen3-30b-a3b at 4096 tokens (256 +- 14 rows) is one
// item: with 256, about half of them had a second item of a few rows that read all of W2 again.
constexpr int64_t kStage2MaxRows = 256;
constexpr int64_t kAmxStage2MaxRows = 512;

int64_t align64(int64_t v) { return round_up(v, 64); }

int64_t panel_stride(int64_t K) { return round_up(K, 32) + kRowPad; }
int64_t ic1_stride(int64_t N) { return round_up(N, 32) + kRowPad; }

// Token slots per stage-1 item: a multiple of 32 in [32, kStage1MaxRows], bf16 A panel <= 1 MiB.
int64_t stage1_rows(int64_t K) {
  return std::clamp<int64_t>(kStage1PanelBytes / (panel_stride(K) * 2) / 32 * 32, 32, kStage1MaxRows);
}

// The AMX path keeps the A panel, the gate/up sums of its rows (gemm_panel), the gate/up blocks being
// multiplied and the next two (streamed during the current ones, kernels.h) in L2 together, so it takes as
// many rows as fit kAmxStage1L2Bytes (up to kAmxStage1MaxRows, never fewer than stage1_rows()). More rows
// per item = fewer passes over W13: qwen3-30b-a3b at 4096 tokens (about 256 rows per expert) gets 288-row
// items (one pass per expert; 128-row items, two passes, were 10% slower with 16 threads and 27% with 2).
int64_t stage1_rows_amx(int64_t K) {
  const int64_t blocks = 4 * 32 * round_up(K, 32) * 2;
  const int64_t per_row = panel_stride(K) * 2 + 4 * 32 * 4;  // the panel row + its gate / up sums (two buffers)
  const int64_t fit = (kAmxStage1L2Bytes - blocks) / per_row / 32 * 32;
  return std::max(stage1_rows(K), std::min(fit, kAmxStage1MaxRows));
}

// Rows per stage-2 item: a multiple of 32 in [32, max_rows], ic1 panel <= 1 MiB.
int64_t stage2_rows(int64_t N, int64_t elem, int64_t max_rows) {
  return std::clamp<int64_t>(kStage1PanelBytes / (ic1_stride(N) * elem) / 32 * 32, 32, max_rows);
}

// Scratch layout of one call; sizes depend only on (M, k, E, N, K, threads) and whether slot outputs
// are kept (the routed op; the shared expert writes its output from stage 2).
struct Workspace {
  int64_t ids, weights, counts, seg_start, sorted, touched, stage1_prefix, stage2_prefix, ic1, ic2, per_thread,
      thread_bytes, total;
  int64_t gate, up, slot_rows;  // offsets inside one thread's area (the A panel starts it)
  int64_t gate_stride;          // floats between the two gate (and the two up) buffers

  Workspace(int64_t M, int64_t k, int64_t E, int64_t N, int64_t K, int threads, bool slot_outputs = true) {
    const int64_t slots = M * k;
    int64_t off = 0;
    auto take = [&](int64_t bytes) {
      const int64_t at = off;
      off += align64(bytes);
      return at;
    };
    ids = take(slots * 4);
    weights = take(slots * 4);
    counts = take(E * 8);
    seg_start = take((E + 1) * 8);
    sorted = take(slots * 4);
    touched = take(E * 4);
    stage1_prefix = take((E + 1) * 8);
    stage2_prefix = take((E + 1) * 8);
    ic1 = take((slots + kPanelRows) * ic1_stride(N) * 4);
    ic2 = take(slot_outputs ? slots * round_up(K, 32) * 2 : 0);
    int64_t t = 0;
    auto take_thread = [&](int64_t bytes) {
      const int64_t at = t;
      t += align64(bytes);
      return at;
    };
    // A panel: fp32 rows of stage1_rows() (or bf16 ones: both fit) or bf16 rows of stage1_rows_amx().
    take_thread(std::max((stage1_rows(K) + kPanelRows) * 4, (stage1_rows_amx(K) + kPanelRows) * 2) * panel_stride(K));
    // Two buffers each: a gemm writes one while the epilogue of the other runs (gemm_panel), each holding
    // the sums of every row of an AMX item (stage 1 or 2).
    const int64_t sum_rows = std::max({kPanelRows, round_up(stage1_rows_amx(K), kPanelRows), kAmxStage2MaxRows});
    gate_stride = sum_rows * 32;
    gate = take_thread(2 * gate_stride * 4);
    up = take_thread(2 * gate_stride * 4);
    slot_rows = take_thread(k * 8);
    thread_bytes = t;
    per_thread = off;
    total = off + thread_bytes * threads;
  }
};

// Per-calling-thread cache used when the caller passes no workspace.
struct Arena {
  void* data = nullptr;
  size_t bytes = 0;
  ~Arena() { std::free(data); }
  void* get(size_t need) {
    if (need > bytes) {
      std::free(data);
      bytes = 0;
      data = std::aligned_alloc(64, round_up(static_cast<int64_t>(need), 64));
      if (!data) detail::fail(detail::cat("fused_experts_cpu: out of memory for a ", need, "-byte workspace"),
                              ErrorKind::Runtime);
      bytes = need;
    }
    return data;
  }
};

int resolve_threads(int threads) { return threads > 0 ? threads : cpu_threads(); }

unsigned char* workspace_base(const CpuRunConfig& run, int64_t need, const char* op) {
  if (run.workspace.defined()) {
    detail::check_device(run.workspace, "workspace", Device{});
    detail::check_contiguous(run.workspace, "workspace");
    detail::require(static_cast<int64_t>(run.workspace.nbytes()) >= need, "workspace: expected at least ", need,
                    " bytes (", op, "_workspace_bytes), got ", run.workspace.nbytes());
    detail::require(reinterpret_cast<uintptr_t>(run.workspace.data) % 64 == 0,
                    "workspace: expected a 64-byte aligned pointer, got ", run.workspace.data);
    return run.workspace.ptr<unsigned char>();
  }
  thread_local Arena arena;
  return static_cast<unsigned char*>(arena.get(static_cast<size_t>(need)));
}

// The packed operands of one call, checked against each other and the activations.
struct ExpertOperands {
  PackedMatrix w13, w2;
  int64_t E = 0, N = 0, K = 0;
};

PackedMatrix packed_matrix(const TensorView& t, const PackedWeightInfo& info) {
  PackedMatrix m;
  m.data = reinterpret_cast<const uint16_t*>(t.ptr<unsigned char>() + info.data_offset);
  m.experts = info.experts;
  m.rows = info.rows;
  m.cols = info.cols;
  m.rows_padded = info.rows_padded;
  m.cols_padded = info.cols_padded;
  m.block_elems = kBlockRows * info.cols_padded;
  return m;
}

ExpertOperands check_packed(const TensorView& hidden, const TensorView& w13_t, const TensorView& w2_t,
                            bool shared, const FusedExpertsOptions& options) {
  const PackedWeightInfo w13 = read_packed_info(w13_t, "w13_packed");
  const PackedWeightInfo w2 = read_packed_info(w2_t, "w2_packed");
  const int64_t K = hidden.size(1);
  for (const auto& [info, name] : {std::pair{w13, "w13_packed"}, std::pair{w2, "w2_packed"}}) {
    detail::require(info.dtype == hidden.dtype, name, ": expected weights packed from ", dtype_name(hidden.dtype),
                    " (the dtype of hidden_states), got ", dtype_name(info.dtype));
  }
  detail::require(w13.role == PackedRole::kW13 || w13.role == PackedRole::kDense,
                  "w13_packed: expected role W13 or Dense, got W2");
  // The packed layout is the same for both sources; the flag only says what was packed.
  detail::require(!options.gate_up_interleaved ||
                      (w13.role == PackedRole::kW13 && w13.w13_source == W13Source::kInterleaved),
                  "options.gate_up_interleaved: expected w13_packed packed from interleaved rows "
                  "(pack_moe_weights, role kW13, W13Source::kInterleaved), got one packed from halves");
  detail::require(w13.rows % 2 == 0, "w13_packed: expected 2I rows (even), got ", w13.rows);
  const int64_t N = w13.rows / 2;
  detail::require(w13.role == PackedRole::kW13 || N % 32 == 0,
                  "w13_packed: a Dense (convert_weight_packed) w13 needs I % 32 == 0, got I = ", N,
                  "; pack it with PackedRole::kW13");
  detail::require(w13.cols == K, "w13_packed: expected ", K, " columns (hidden size), got ", w13.cols);
  detail::require(w2.role == PackedRole::kW2 || w2.role == PackedRole::kDense,
                  "w2_packed: expected role W2 or Dense, got W13");
  detail::require(w2.experts == w13.experts, "w2_packed: expected ", w13.experts, " experts (as w13_packed), got ",
                  w2.experts);
  detail::require(w2.rows == K && w2.cols == N, "w2_packed: expected [", w13.experts, ", ", K, ", ", N, "], got [",
                  w2.experts, ", ", w2.rows, ", ", w2.cols, "]");
  if (shared) detail::require(w13.experts == 1, "w13_packed: expected one expert (shared expert), got ", w13.experts);
  ExpertOperands ops;
  ops.w13 = packed_matrix(w13_t, w13);
  ops.w2 = packed_matrix(w2_t, w2);
  if (w13.role == PackedRole::kW13) {
    ops.w13.gate_block_step = 2;
    ops.w13.up_block_first = 1;
  } else {
    ops.w13.up_block_first = N / 32;
  }
  ops.E = w13.experts;
  ops.N = N;
  ops.K = K;
  return ops;
}

ActivationParams check_options(const FusedExpertsOptions& o) {
  detail::require(o.scheme == WeightScheme::kBF16, "options.scheme: expected kBF16 (bf16/fp16 packed weights), got ",
                  static_cast<int>(o.scheme));
  const bool swiglu = o.activation == Activation::kSwigluOai;
  if (o.activation == Activation::kSilu || o.activation == Activation::kGelu)
    detail::fail("options.activation: the no-mul activations (kSilu, kGelu) are not supported by the CPU kernels",
                 ErrorKind::NotSupported);
  if (swiglu)
    detail::require(o.swiglu_alpha != 0.f && o.swiglu_limit > 0.f,
                    "options: kSwigluOai expects swiglu_alpha != 0 and swiglu_limit > 0, got alpha ",
                    o.swiglu_alpha, ", limit ", o.swiglu_limit);
  else
    detail::require(o.swiglu_alpha == 0.f && o.swiglu_limit == 0.f,
                    "options: swiglu_alpha / swiglu_limit expected 0 unless activation is kSwigluOai, got alpha ",
                    o.swiglu_alpha, ", limit ", o.swiglu_limit);
  return {o.activation, o.swiglu_alpha, o.swiglu_limit};
}

void check_activations(const TensorView& hidden, const TensorView& output) {
  detail::check_defined(hidden, "hidden_states");
  detail::check_device(hidden, "hidden_states", Device{});
  detail::check_dtype_in(hidden, "hidden_states", {DType::kBFloat16, DType::kFloat16});
  detail::check_ndim(hidden, "hidden_states", 2);
  detail::check_contiguous(hidden, "hidden_states");
  detail::require(hidden.size(1) >= 1, "hidden_states: expected a hidden size >= 1, got shape ",
                  detail::shape_of(hidden));
  detail::check_tensor(output, "output", hidden.dtype, Device{});
  detail::check_shape(output, "output", {hidden.size(0), hidden.size(1)});
}

// Everything one run of the two stages needs.
struct Problem {
  const ExpertKernels* kernels;
  ExpertOperands ops;
  ActivationParams act;
  DType dtype;
  int64_t M, k;
  const uint16_t* x;
  uint16_t* out;
  float rsf;
  const uint16_t* shared_routed = nullptr;  // shared expert: fused_experts_out (may be null)
  bool shared = false;
  int threads = 1;
};

void load_panel_row(const uint16_t* src, int64_t K, int64_t k_pad, DType dtype, PanelFormat panel, void* dst) {
  if (panel == PanelFormat::kBFloat16) {
    uint16_t* d = static_cast<uint16_t*>(dst);
    std::memcpy(d, src, K * 2);
    std::memset(d + K, 0, (k_pad - K) * 2);
    return;
  }
  float* d = static_cast<float*>(dst);
  if (dtype == DType::kBFloat16)
    for (int64_t i = 0; i < K; ++i) d[i] = numeric::bits_float(static_cast<uint32_t>(src[i]) << 16);
  else
    for (int64_t i = 0; i < K; ++i) d[i] = numeric::half_to_float(src[i]);
  for (int64_t i = K; i < k_pad; ++i) d[i] = 0.f;
}

uint16_t encode(float v, DType dtype) {
  return dtype == DType::kBFloat16 ? numeric::float_to_bf16(v) : numeric::float_to_half(v);
}
float decode(uint16_t v, DType dtype) {
  return dtype == DType::kBFloat16 ? numeric::bf16_to_float(v) : numeric::half_to_float(v);
}

// Opt-in stage timing (MOEKIT_CPU_PROFILE=1): per-thread sums of the parts of each stage and the
// wall time of each stage, printed as one line per call on stderr.
bool profile_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("MOEKIT_CPU_PROFILE");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return on;
}

struct alignas(64) ThreadTimes {
  double gather = 0, gemm1 = 0, act = 0, busy1 = 0, gemm2 = 0, store = 0, busy2 = 0, busy3 = 0;
};

void profile_line(const Problem& pb, const std::vector<ThreadTimes>& times, const double* wall) {
  ThreadTimes mean, max;
  for (const ThreadTimes& t : times) {
    mean.gather += t.gather / times.size();
    mean.gemm1 += t.gemm1 / times.size();
    mean.act += t.act / times.size();
    mean.busy1 += t.busy1 / times.size();
    mean.gemm2 += t.gemm2 / times.size();
    mean.store += t.store / times.size();
    mean.busy2 += t.busy2 / times.size();
    mean.busy3 += t.busy3 / times.size();
    max.busy1 = std::max(max.busy1, t.busy1);
    max.busy2 = std::max(max.busy2, t.busy2);
    max.busy3 = std::max(max.busy3, t.busy3);
  }
  const double ms = 1e3;
  std::fprintf(stderr,
               "moekit cpu profile: isa %s M %lld k %lld E %lld N %lld K %lld threads %d | align %.3f ms | stage1 "
               "%.3f ms: gather %.3f gemm %.3f act %.3f busy mean %.3f max %.3f | stage2 %.3f ms: gemm %.3f store "
               "%.3f busy mean %.3f max %.3f | combine %.3f ms: busy mean %.3f max %.3f\n",
               cpu_isa_name(pb.kernels->isa), static_cast<long long>(pb.M), static_cast<long long>(pb.k),
               static_cast<long long>(pb.ops.E), static_cast<long long>(pb.ops.N), static_cast<long long>(pb.ops.K),
               pb.threads, wall[0] * ms, wall[1] * ms, mean.gather * ms, mean.gemm1 * ms, mean.act * ms,
               mean.busy1 * ms, max.busy1 * ms, wall[2] * ms, mean.gemm2 * ms, mean.store * ms, mean.busy2 * ms,
               max.busy2 * ms, wall[3] * ms, mean.busy3 * ms, max.busy3 * ms);
}

// Items of one stage: blocks of up to `rows` consecutive sorted slots of each touched expert, times
// panels of `panel` consecutive 32-column blocks (of `blocks`); the blocks are cut into panels only as
// far as needed for >= 16 items per thread (memory-bound calls touch few experts with few rows each;
// compute-bound calls keep whole panels so each row is read once). prefix[u] = first item of the u-th
// touched expert; the items of one expert and panel are adjacent.
struct ItemSplit {
  int64_t rows, panel, panels, items;
};

ItemSplit split_items(const int64_t* seg, const int32_t* touched, int64_t n_touched, int64_t rows, int64_t blocks,
                      int threads, int64_t* prefix) {
  int64_t row_items = 0;
  for (int64_t u = 0; u < n_touched; ++u) row_items += (seg[touched[u] + 1] - seg[touched[u]] + rows - 1) / rows;
  const int64_t splits = std::clamp<int64_t>(
      (16 * static_cast<int64_t>(threads) + row_items - 1) / std::max<int64_t>(row_items, 1), 1, blocks);
  ItemSplit s;
  s.rows = rows;
  s.panel = (blocks + splits - 1) / splits;
  s.panels = (blocks + s.panel - 1) / s.panel;
  prefix[0] = 0;
  for (int64_t u = 0; u < n_touched; ++u) {
    const int64_t cnt = seg[touched[u] + 1] - seg[touched[u]];
    prefix[u + 1] = prefix[u] + (cnt + rows - 1) / rows * s.panels;
  }
  s.items = prefix[n_touched];
  return s;
}

// One item of a split: expert e, sorted slots [begin, end), blocks [j0, j1).
struct Item {
  int64_t e, begin, end, j0, j1;
};

Item item_at(const ItemSplit& s, const int64_t* prefix, const int64_t* seg, const int32_t* touched, int64_t n_touched,
             int64_t blocks, int64_t item) {
  const int64_t u = std::upper_bound(prefix, prefix + n_touched + 1, item) - prefix - 1;
  Item it;
  it.e = touched[u];
  const int64_t local = item - prefix[u];
  const int64_t row_blocks = (seg[it.e + 1] - seg[it.e] + s.rows - 1) / s.rows;
  it.j0 = local / row_blocks * s.panel;
  it.j1 = std::min(blocks, it.j0 + s.panel);
  it.begin = seg[it.e] + local % row_blocks * s.rows;
  it.end = std::min(seg[it.e + 1], it.begin + s.rows);
  return it;
}

// The r-th of `parts` equal slices (whole 64-byte lines) of the `bytes` bytes at `block`; empty past
// its end or when block is null.
struct Slice {
  const uint16_t* at = nullptr;
  int64_t bytes = 0;
};

Slice slice_of(const uint16_t* block, int64_t bytes, int64_t r, int64_t parts) {
  if (!block) return {};
  const int64_t lines = bytes / 64, share = (lines + parts - 1) / parts;
  const int64_t b = std::min(lines, r * share), e = std::min(lines, b + share);
  return {block + b * 32, (e - b) * 64};
}

// Requests the lines of [p, p + bytes) into L2 (the first block of a work item, while its rows are
// gathered).
void stream_to_l2(const uint16_t* p, int64_t bytes) {
  const char* c = reinterpret_cast<const char*>(p);
  for (int64_t off = 0; off < bytes; off += 64) _mm_prefetch(c + off, _MM_HINT_T1);
}

// Stage 1's epilogue of one gemm pair (rows x 32 gate and up sums) as row work: activated row r goes
// to dst + r * stride bytes of ic1.
struct ActivateRows {
  const ExpertKernels* kn;
  const ActivationParams* act;
  DType dtype;
  const float *gate, *up;
  int count;
  unsigned char* dst;
  int64_t stride;
  static void run(const void* ctx, int r) {
    const ActivateRows& w = *static_cast<const ActivateRows*>(ctx);
    w.kn->activate(w.gate + r * 32, w.up + r * 32, w.count, *w.act, w.dtype, w.kn->panel, w.dst + r * w.stride);
  }
};

// Stage 2's epilogue of one gemm (rows x 32 sums d of output block nb for the sorted slots slots[0..rows))
// as row work: round(w * d) into each slot's ic2 row, or the shared expert's output row.
struct StoreRows {
  const Problem* pb;
  const float* d;
  const int32_t* slots;
  const float* wts;
  uint16_t* ic2;
  int64_t ldy, nb;
  int count;
  static void run(const void* ctx, int r) {
    const StoreRows& w = *static_cast<const StoreRows*>(ctx);
    store(*w.pb, w.d + r * 32, w.slots[r], w.wts, w.ic2, w.ldy, w.nb, w.count);
  }
  // Sums d of slot i, output block nb: round(w * d) into the slot's ic2 row, or the shared expert's output row.
  static void store(const Problem& pb, const float* d, int64_t i, const float* wts, uint16_t* ic2, int64_t ldy,
                    int64_t nb, int count) {
    const int64_t K = pb.ops.K;
    if (pb.shared) {
      uint16_t* o = pb.out + i * K + nb * 32;
      const uint16_t* f = pb.shared_routed ? pb.shared_routed + i * K + nb * 32 : nullptr;
      for (int n = 0; n < count; ++n) o[n] = encode(f ? d[n] + decode(f[n], pb.dtype) * pb.rsf : d[n], pb.dtype);
    } else {
      pb.kernels->weighted_round(d, wts[i], count, pb.dtype, ic2 + i * ldy + nb * 32);
    }
  }
};

// The AMX path requests the x row it gathers kGatherAhead rows later into L1 while it copies one.
constexpr int64_t kGatherAhead = 2;
void prefetch_row(const uint16_t* row, int64_t K) {
  const char* c = reinterpret_cast<const char*>(row);
  for (int64_t off = 0; off < K * 2; off += 64) _mm_prefetch(c + off, _MM_HINT_T0);
}

// Runs the stages on routing already normalised into the workspace (ids int32, weights fp32).
void run_stages(const Problem& pb, const Workspace& ws, unsigned char* base) {
  const ExpertKernels& kn = *pb.kernels;
  const int64_t M = pb.M, k = pb.k, E = pb.ops.E, N = pb.ops.N, K = pb.ops.K;
  const int64_t n_pad = round_up(N, 32), k_pad = round_up(K, 32), slots = M * k;
  const int64_t lda = panel_stride(K), ldc = ic1_stride(N), ldy = k_pad;
  const int64_t elem = kn.panel == PanelFormat::kFloat32 ? 4 : 2;
  const bool prof = profile_enabled();
  std::vector<ThreadTimes> times(prof ? pb.threads : 0);
  double wall[4] = {}, mark = prof ? omp_get_wtime() : 0;
  const int32_t* ids = reinterpret_cast<const int32_t*>(base + ws.ids);
  const float* wts = reinterpret_cast<const float*>(base + ws.weights);
  int64_t* counts = reinterpret_cast<int64_t*>(base + ws.counts);
  int64_t* seg = reinterpret_cast<int64_t*>(base + ws.seg_start);
  int32_t* sorted = reinterpret_cast<int32_t*>(base + ws.sorted);
  int32_t* touched = reinterpret_cast<int32_t*>(base + ws.touched);
  int64_t* prefix1 = reinterpret_cast<int64_t*>(base + ws.stage1_prefix);
  int64_t* prefix2 = reinterpret_cast<int64_t*>(base + ws.stage2_prefix);
  unsigned char* ic1 = base + ws.ic1;
  uint16_t* ic2 = reinterpret_cast<uint16_t*>(base + ws.ic2);

  // Align: stable counting sort of the valid slots by expert (ascending flat index inside one).
  std::fill(counts, counts + E, 0);
  for (int64_t i = 0; i < slots; ++i)
    if (ids[i] >= 0) ++counts[ids[i]];
  seg[0] = 0;
  int64_t n_touched = 0;
  for (int64_t e = 0; e < E; ++e) {
    seg[e + 1] = seg[e] + counts[e];
    if (counts[e] > 0) touched[n_touched++] = static_cast<int32_t>(e);
    counts[e] = seg[e];  // now the next free position
  }
  for (int64_t i = 0; i < slots; ++i)
    if (ids[i] >= 0) sorted[counts[ids[i]]++] = static_cast<int32_t>(i);

  const int64_t pair_blocks = n_pad / 32, out_blocks = k_pad / 32;
  const int64_t rows1 = kn.gemm_panel ? stage1_rows_amx(K) : stage1_rows(K);
  const ItemSplit s1 = split_items(seg, touched, n_touched, rows1, pair_blocks, pb.threads, prefix1);
  const int64_t rows2 = stage2_rows(N, elem, kn.gemm_panel ? kAmxStage2MaxRows : kStage2MaxRows);
  const ItemSplit s2 = split_items(seg, touched, n_touched, rows2, out_blocks, pb.threads, prefix2);
  const int rows_max = kn.max_rows;
  const int64_t w13_bytes = pb.ops.w13.block_elems * 2, w2_bytes = pb.ops.w2.block_elems * 2;
  if (prof) wall[0] = omp_get_wtime() - mark;

#pragma omp parallel num_threads(pb.threads)
  {
    const int tid = omp_get_thread_num();
    unsigned char* mine = base + ws.per_thread + ws.thread_bytes * tid;
    unsigned char* panel = mine;
    float* const cg2 = reinterpret_cast<float*>(mine + ws.gate);
    float* const cu2 = reinterpret_cast<float*>(mine + ws.up);
    float* cg = cg2;
    float* cu = cu2;
    // gemm_panel: each call writes the buffer the pending epilogue does not read.
    int buf = 0;
    RowWork pending;
    ActivateRows act_rows{&kn, &pb.act, pb.dtype, nullptr, nullptr, 0, nullptr, 0};
    StoreRows store_rows{&pb, nullptr, sorted, wts, ic2, ldy, 0, 0};
    const uint16_t** slot_rows = reinterpret_cast<const uint16_t**>(mine + ws.slot_rows);
    ThreadTimes* tt = prof ? &times[tid] : nullptr;
    auto clock = [&] { return prof ? omp_get_wtime() : 0.0; };
    if (kn.thread_begin) kn.thread_begin();
#pragma omp master
    if (prof) mark = omp_get_wtime();

#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < s1.items; ++item) {
      const Item it = item_at(s1, prefix1, seg, touched, n_touched, pair_blocks, item);
      double t0 = clock();
      for (int64_t g = it.begin; g < it.end; ++g) {
        if (kn.gemm_panel && g + kGatherAhead < it.end) prefetch_row(pb.x + (sorted[g + kGatherAhead] / k) * K, K);
        load_panel_row(pb.x + (sorted[g] / k) * K, K, k_pad, pb.dtype, kn.panel, panel + (g - it.begin) * lda * elem);
        if (kn.gemm_panel) {  // the first block pair streams into L2 while the rows are gathered
          const int64_t r = g - it.begin, n = it.end - it.begin;
          const Slice sg = slice_of(pb.ops.w13.gate_block(it.e, it.j0), w13_bytes, r, n);
          const Slice su = slice_of(pb.ops.w13.up_block(it.e, it.j0), w13_bytes, r, n);
          stream_to_l2(sg.at, sg.bytes);
          stream_to_l2(su.at, su.bytes);
        }
      }
      if (prof) tt->gather += clock() - t0;
      if (kn.gemm_panel) {
        // Every row of the item against each block; the activation of pair j runs during pair j + 1's gemms.
        const int rows = static_cast<int>(it.end - it.begin);
        for (int64_t j = it.j0; j < it.j1; ++j) {
          const uint16_t* wg_next = j + 1 < it.j1 ? pb.ops.w13.gate_block(it.e, j + 1) : nullptr;
          const uint16_t* wu_next = j + 1 < it.j1 ? pb.ops.w13.up_block(it.e, j + 1) : nullptr;
          cg = cg2 + buf * ws.gate_stride;
          cu = cu2 + buf * ws.gate_stride;
          const double t1 = clock();
          kn.gemm_panel(panel, lda, rows, pb.ops.w13.gate_block(it.e, j), k_pad / 2, cg, wg_next, w13_bytes, &pending);
          kn.gemm_panel(panel, lda, rows, pb.ops.w13.up_block(it.e, j), k_pad / 2, cu, wu_next, w13_bytes, &pending);
          const double t2 = clock();
          pending.finish();
          act_rows.gate = cg;
          act_rows.up = cu;
          act_rows.count = static_cast<int>(std::min<int64_t>(32, N - j * 32));
          act_rows.dst = ic1 + (it.begin * ldc + j * 32) * elem;
          act_rows.stride = ldc * elem;
          pending = RowWork{ActivateRows::run, &act_rows, rows, 0};
          buf ^= 1;
          if (prof) {
            tt->gemm1 += t2 - t1;
            tt->act += clock() - t2;
          }
        }
      } else {
        for (int64_t j = it.j0; j < it.j1; ++j) {
          const uint16_t* wg = pb.ops.w13.gate_block(it.e, j);
          const uint16_t* wu = pb.ops.w13.up_block(it.e, j);
          const uint16_t* wg_next = j + 1 < it.j1 ? pb.ops.w13.gate_block(it.e, j + 1) : nullptr;
          const int count = static_cast<int>(std::min<int64_t>(32, N - j * 32));
          for (int64_t g = it.begin; g < it.end; g += rows_max) {
            const int rows = static_cast<int>(std::min<int64_t>(rows_max, it.end - g));
            const unsigned char* a = panel + (g - it.begin) * lda * elem;
            const double t1 = clock();
            // The block multiplied next, where it is not in cache yet: the up block after the
            // first panel's gate, the next gate block after the last panel's up.
            kn.gemm(a, lda, rows, wg, k_pad / 2, cg, g == it.begin ? wu : nullptr, w13_bytes);
            kn.gemm(a, lda, rows, wu, k_pad / 2, cu, g + rows_max >= it.end ? wg_next : nullptr, w13_bytes);
            const double t2 = clock();
            for (int r = 0; r < rows; ++r)
              kn.activate(cg + r * 32, cu + r * 32, count, pb.act, pb.dtype, kn.panel,
                          ic1 + ((g + r) * ldc + j * 32) * elem);
            if (prof) {
              tt->gemm1 += t2 - t1;
              tt->act += clock() - t2;
            }
          }
        }
      }
      pending.finish();
      if (prof) tt->busy1 += clock() - t0;
    }
#pragma omp master
    if (prof) {
      wall[1] = omp_get_wtime() - mark;
      mark = omp_get_wtime();
    }

#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < s2.items; ++item) {
      const Item it = item_at(s2, prefix2, seg, touched, n_touched, out_blocks, item);
      const double t0 = clock();
      if (kn.gemm_panel) {
        // Every row of the item against each block; the slot stores of block nb run during block nb + 1's gemm.
        stream_to_l2(pb.ops.w2.block(it.e, it.j0), w2_bytes);
        const int rows = static_cast<int>(it.end - it.begin);
        for (int64_t nb = it.j0; nb < it.j1; ++nb) {
          const uint16_t* next = nb + 1 < it.j1 ? pb.ops.w2.block(it.e, nb + 1) : nullptr;
          float* d = cg2 + buf * ws.gate_stride;
          const double t1 = clock();
          kn.gemm_panel(ic1 + it.begin * ldc * elem, ldc, rows, pb.ops.w2.block(it.e, nb), n_pad / 2, d, next, w2_bytes,
                        &pending);
          const double t2 = clock();
          pending.finish();
          store_rows.d = d;
          store_rows.slots = sorted + it.begin;
          store_rows.nb = nb;
          store_rows.count = static_cast<int>(std::min<int64_t>(32, K - nb * 32));
          pending = RowWork{StoreRows::run, &store_rows, rows, 0};
          buf ^= 1;
          if (prof) {
            tt->gemm2 += t2 - t1;
            tt->store += clock() - t2;
          }
        }
      } else {
        for (int64_t nb = it.j0; nb < it.j1; ++nb) {
          const uint16_t* w = pb.ops.w2.block(it.e, nb);
          const uint16_t* next = nb + 1 < it.j1 ? pb.ops.w2.block(it.e, nb + 1) : nullptr;
          const int count = static_cast<int>(std::min<int64_t>(32, K - nb * 32));
          for (int64_t g = it.begin; g < it.end; g += rows_max) {
            const int rows = static_cast<int>(std::min<int64_t>(rows_max, it.end - g));
            const double t1 = clock();
            // The next block, where it is not in cache yet: all of it to the first call.
            kn.gemm(ic1 + g * ldc * elem, ldc, rows, w, n_pad / 2, cg, g == it.begin ? next : nullptr, w2_bytes);
            const double t2 = clock();
            for (int r = 0; r < rows; ++r) StoreRows::store(pb, cg + r * 32, sorted[g + r], wts, ic2, ldy, nb, count);
            if (prof) {
              tt->gemm2 += t2 - t1;
              tt->store += clock() - t2;
            }
          }
        }
      }
      pending.finish();
      _mm_sfence();  // the slot rows may have been written with non-temporal stores (every SIMD path)
      if (prof) tt->busy2 += clock() - t0;
    }
#pragma omp master
    if (prof) {
      wall[2] = omp_get_wtime() - mark;
      mark = omp_get_wtime();
    }

    if (!pb.shared) {
      const double t0 = clock();
#pragma omp for schedule(static) nowait
      for (int64_t m = 0; m < M; ++m) {
        int rows = 0;
        for (int64_t t = 0; t < k; ++t)
          if (ids[m * k + t] >= 0) slot_rows[rows++] = ic2 + (m * k + t) * ldy;
        kn.sum_rows(slot_rows, rows, pb.rsf, K, pb.dtype, pb.out + m * K);
      }
      if (prof) tt->busy3 += clock() - t0;
    }
    if (kn.thread_end) kn.thread_end();
  }
  if (prof) {
    wall[3] = omp_get_wtime() - mark;
    profile_line(pb, times, wall);
  }
}

bool overlaps(const TensorView& a, const TensorView& b) {
  const auto* a0 = static_cast<const unsigned char*>(a.data);
  const auto* b0 = static_cast<const unsigned char*>(b.data);
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

}  // namespace
}  // namespace cpu

size_t fused_experts_cpu_workspace_bytes(int64_t M, int64_t topk, int64_t E, int64_t N, int64_t K, int threads) {
  detail::require(M >= 0 && topk >= 1 && E >= 1 && N >= 1 && K >= 1,
                  "fused_experts_cpu_workspace_bytes: expected M >= 0 and topk, E, N, K >= 1, got M ", M, ", topk ",
                  topk, ", E ", E, ", N ", N, ", K ", K);
  return static_cast<size_t>(cpu::Workspace(M, topk, E, N, K, cpu::resolve_threads(threads)).total);
}

size_t shared_expert_cpu_workspace_bytes(int64_t M, int64_t N, int64_t K, int threads) {
  detail::require(M >= 0 && N >= 1 && K >= 1, "shared_expert_cpu_workspace_bytes: expected M >= 0 and N, K >= 1, got M ",
                  M, ", N ", N, ", K ", K);
  return static_cast<size_t>(cpu::Workspace(M, 1, 1, N, K, cpu::resolve_threads(threads), false).total);
}

void fused_experts_cpu(TensorView hidden_states, TensorView w13_packed, TensorView w2_packed, TensorView topk_weights,
                       TensorView topk_ids, TensorView output, const FusedExpertsOptions& options,
                       const CpuRunConfig& run) {
  cpu::check_activations(hidden_states, output);
  const cpu::ExpertOperands ops = cpu::check_packed(hidden_states, w13_packed, w2_packed, false, options);
  const cpu::ActivationParams act = cpu::check_options(options);
  detail::check_defined(topk_ids, "topk_ids");
  detail::check_device(topk_ids, "topk_ids", Device{});
  detail::check_dtype_in(topk_ids, "topk_ids", {DType::kInt32, DType::kInt64});
  detail::check_ndim(topk_ids, "topk_ids", 2);
  detail::check_contiguous(topk_ids, "topk_ids");
  const int64_t M = hidden_states.size(0), k = topk_ids.size(1);
  detail::check_shape(topk_ids, "topk_ids", {M, -1});
  detail::require(k >= 1, "topk_ids: expected topk >= 1, got shape ", detail::shape_of(topk_ids));
  detail::require(M * k <= INT32_MAX, "topk_ids: expected M * topk <= 2^31 - 1, got ", M * k);
  detail::check_defined(topk_weights, "topk_weights");
  detail::check_device(topk_weights, "topk_weights", Device{});
  detail::check_dtype_in(topk_weights, "topk_weights", {DType::kFloat32, DType::kBFloat16, DType::kFloat16});
  detail::check_contiguous(topk_weights, "topk_weights");
  detail::check_shape(topk_weights, "topk_weights", {M, k});
  detail::require(output.data == hidden_states.data || !cpu::overlaps(output, hidden_states),
                  "output: expected hidden_states itself or memory that does not overlap it");
  const int threads = cpu::resolve_threads(run.threads);
  detail::check_range("run.threads", threads, 1, 4096);
  if (M == 0) return;

  const cpu::Workspace ws(M, k, ops.E, ops.N, ops.K, threads);
  unsigned char* base = cpu::workspace_base(run, ws.total, "fused_experts_cpu");
  int32_t* ids = reinterpret_cast<int32_t*>(base + ws.ids);
  float* wts = reinterpret_cast<float*>(base + ws.weights);
  for (int64_t i = 0; i < M * k; ++i) {
    const int64_t id = topk_ids.dtype == DType::kInt32 ? topk_ids.ptr<int32_t>()[i] : topk_ids.ptr<int64_t>()[i];
    if (id != -1 && (id < 0 || id >= ops.E))
      detail::fail(detail::cat("topk_ids[", i / k, ", ", i % k, "] = ", id, ", expected in [0, ", ops.E, ") or -1"));
    ids[i] = static_cast<int32_t>(id);
    const uint16_t* w16 = topk_weights.ptr<uint16_t>();
    wts[i] = topk_weights.dtype == DType::kFloat32 ? topk_weights.ptr<float>()[i]
                                                   : cpu::decode(w16[i], topk_weights.dtype);
  }
  cpu::Problem pb{&cpu::expert_kernels(cpu_isa(), hidden_states.dtype), ops, act, hidden_states.dtype, M, k,
                  hidden_states.ptr<uint16_t>(), output.ptr<uint16_t>(),
                  static_cast<float>(options.routed_scaling_factor)};
  pb.threads = threads;
  cpu::run_stages(pb, ws, base);
}

void shared_expert_cpu(TensorView hidden_states, TensorView w13_packed, TensorView w2_packed,
                       TensorView fused_experts_out, TensorView output, const FusedExpertsOptions& options,
                       const CpuRunConfig& run) {
  cpu::check_activations(hidden_states, output);
  const cpu::ExpertOperands ops = cpu::check_packed(hidden_states, w13_packed, w2_packed, true, options);
  const cpu::ActivationParams act = cpu::check_options(options);
  const int64_t M = hidden_states.size(0);
  if (fused_experts_out.defined()) {
    detail::check_tensor(fused_experts_out, "fused_experts_out", hidden_states.dtype, Device{});
    detail::check_shape(fused_experts_out, "fused_experts_out", {M, hidden_states.size(1)});
    detail::require(output.data == fused_experts_out.data || !cpu::overlaps(output, fused_experts_out),
                    "output: expected fused_experts_out itself or memory that does not overlap it");
  }
  detail::require(output.data == hidden_states.data || !cpu::overlaps(output, hidden_states),
                  "output: expected hidden_states itself or memory that does not overlap it");
  const int threads = cpu::resolve_threads(run.threads);
  detail::check_range("run.threads", threads, 1, 4096);
  if (M == 0) return;

  const cpu::Workspace ws(M, 1, 1, ops.N, ops.K, threads, false);
  unsigned char* base = cpu::workspace_base(run, ws.total, "shared_expert_cpu");
  std::fill(reinterpret_cast<int32_t*>(base + ws.ids), reinterpret_cast<int32_t*>(base + ws.ids) + M, 0);
  std::fill(reinterpret_cast<float*>(base + ws.weights), reinterpret_cast<float*>(base + ws.weights) + M, 1.f);
  cpu::Problem pb{&cpu::expert_kernels(cpu_isa(), hidden_states.dtype), ops, act, hidden_states.dtype, M, 1,
                  hidden_states.ptr<uint16_t>(), output.ptr<uint16_t>(),
                  static_cast<float>(options.routed_scaling_factor)};
  pb.shared_routed = fused_experts_out.defined() ? fused_experts_out.ptr<uint16_t>() : nullptr;
  pb.shared = true;
  pb.threads = threads;
  cpu::run_stages(pb, ws, base);
}

}  // namespace moekit
