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
// Stage 2 (GEMM-2 + weight + combine): work items (chunk of tokens, group of 32-column output
//   blocks); each walks the touched experts in ascending id, multiplies that expert's ic1 rows by the
//   W2 blocks and adds round(w * d) into an fp32 accumulator per token; at the end out = round(rsf *
//   acc). No [M*k, K] intermediate; every output has one owner and one fixed summation order, so the
//   result does not depend on the thread count or on the other tokens of the batch.
// Panel and ic1 rows are padded by 32 elements so that the rows of one AMX tile load (16 rows at a
// power-of-two stride otherwise) do not all fall into one L1 set.
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

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
// Stage 2 items: up to kStage2ChunkTokens tokens x up to kStage2MaxBlocks output blocks. Tokens per
// item bound how often W2 is re-read (once per token chunk); blocks per item bound how often ic1 is
// (once per block group), and the W2 blocks of one expert for one item (4 x 32 x I) stay in L2.
constexpr int64_t kStage2ChunkTokens = 4096;
constexpr int64_t kStage2MaxBlocks = 4;

int64_t align64(int64_t v) { return round_up(v, 64); }

int64_t panel_stride(int64_t K) { return round_up(K, 32) + kRowPad; }
int64_t ic1_stride(int64_t N) { return round_up(N, 32) + kRowPad; }

// Token slots per stage-1 item: a multiple of 32 in [32, kStage1MaxRows], bf16 A panel <= 1 MiB.
int64_t stage1_rows(int64_t K) {
  return std::clamp<int64_t>(kStage1PanelBytes / (panel_stride(K) * 2) / 32 * 32, 32, kStage1MaxRows);
}

// Scratch layout of one call; sizes depend only on (M, k, E, N, K, threads).
struct Workspace {
  int64_t ids, weights, counts, seg_start, sorted, touched, stage1_prefix, ic1, per_thread, thread_bytes, total;
  int64_t gate, up, acc;  // offsets inside one thread's area (the A panel starts it)

  Workspace(int64_t M, int64_t k, int64_t E, int64_t N, int64_t K, int threads) {
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
    ic1 = take((slots + kPanelRows) * ic1_stride(N) * 4);
    const int64_t chunk = std::min<int64_t>(M, kStage2ChunkTokens);
    int64_t t = 0;
    auto take_thread = [&](int64_t bytes) {
      const int64_t at = t;
      t += align64(bytes);
      return at;
    };
    take_thread((stage1_rows(K) + kPanelRows) * panel_stride(K) * 4);
    gate = take_thread(kPanelRows * 32 * 4);
    up = take_thread(kPanelRows * 32 * 4);
    acc = take_thread(chunk * kStage2MaxBlocks * 32 * 4);
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

// Runs both stages on routing already normalised into the workspace (ids int32, weights fp32).
void run_stages(const Problem& pb, const Workspace& ws, unsigned char* base) {
  const ExpertKernels& kn = *pb.kernels;
  const int64_t M = pb.M, k = pb.k, E = pb.ops.E, N = pb.ops.N, K = pb.ops.K;
  const int64_t n_pad = round_up(N, 32), k_pad = round_up(K, 32), slots = M * k;
  const int64_t lda = panel_stride(K), ldc = ic1_stride(N);
  const int64_t elem = kn.panel == PanelFormat::kFloat32 ? 4 : 2;
  const int32_t* ids = reinterpret_cast<const int32_t*>(base + ws.ids);
  const float* wts = reinterpret_cast<const float*>(base + ws.weights);
  int64_t* counts = reinterpret_cast<int64_t*>(base + ws.counts);
  int64_t* seg = reinterpret_cast<int64_t*>(base + ws.seg_start);
  int32_t* sorted = reinterpret_cast<int32_t*>(base + ws.sorted);
  int32_t* touched = reinterpret_cast<int32_t*>(base + ws.touched);
  int64_t* prefix1 = reinterpret_cast<int64_t*>(base + ws.stage1_prefix);
  unsigned char* ic1 = base + ws.ic1;

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
  const int64_t valid = seg[E];

  // Stage 1 split: row blocks of rows1 slots; the block pairs are cut into panels only as far as
  // needed for >= 16 items per thread (memory-bound calls touch few experts with few rows each;
  // compute-bound calls keep whole-N panels so each row is gathered once).
  const int64_t rows1 = stage1_rows(K), pair_blocks = n_pad / 32;
  int64_t row_items = 0;
  for (int64_t u = 0; u < n_touched; ++u)
    row_items += (seg[touched[u] + 1] - seg[touched[u]] + rows1 - 1) / rows1;
  const int64_t splits =
      std::clamp<int64_t>((16 * static_cast<int64_t>(pb.threads) + row_items - 1) / std::max<int64_t>(row_items, 1),
                          1, pair_blocks);
  const int64_t panel1 = (pair_blocks + splits - 1) / splits, panels1 = (pair_blocks + panel1 - 1) / panel1;
  prefix1[0] = 0;
  for (int64_t u = 0; u < n_touched; ++u) {
    const int64_t cnt = seg[touched[u] + 1] - seg[touched[u]];
    prefix1[u + 1] = prefix1[u] + (cnt + rows1 - 1) / rows1 * panels1;
  }
  const int64_t items1 = prefix1[n_touched];

  // Stage 2 split: one token chunk when it fits; output blocks grouped so that an expert's ic1 rows
  // are read once per group (more blocks per group when experts have many rows), keeping at least
  // one item per thread.
  const int64_t chunk2 = std::min<int64_t>(M, kStage2ChunkTokens);
  const int64_t out_blocks = k_pad / 32, token_chunks = (M + chunk2 - 1) / chunk2;
  const int64_t rows_per_expert = valid / std::max<int64_t>(n_touched, 1);
  const int64_t group2 = std::clamp<int64_t>(
      std::min<int64_t>((rows_per_expert + 15) / 16, out_blocks * token_chunks / pb.threads), 1, kStage2MaxBlocks);
  const int64_t block_groups = (out_blocks + group2 - 1) / group2;
  const int64_t items2 = block_groups * token_chunks;
  const int rows_max = kn.max_rows;

#pragma omp parallel num_threads(pb.threads)
  {
    unsigned char* mine = base + ws.per_thread + ws.thread_bytes * omp_get_thread_num();
    unsigned char* panel = mine;
    float* cg = reinterpret_cast<float*>(mine + ws.gate);
    float* cu = reinterpret_cast<float*>(mine + ws.up);
    float* acc = reinterpret_cast<float*>(mine + ws.acc);
    if (kn.thread_begin) kn.thread_begin();

#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items1; ++item) {
      const int64_t u = std::upper_bound(prefix1, prefix1 + n_touched + 1, item) - prefix1 - 1;
      const int64_t e = touched[u], local = item - prefix1[u];
      const int64_t row_blocks = (seg[e + 1] - seg[e] + rows1 - 1) / rows1;
      const int64_t j0 = local / row_blocks * panel1, j1 = std::min(pair_blocks, j0 + panel1);
      const int64_t begin = seg[e] + local % row_blocks * rows1, end = std::min(seg[e + 1], begin + rows1);
      for (int64_t g = begin; g < end; ++g)
        load_panel_row(pb.x + (sorted[g] / k) * K, K, k_pad, pb.dtype, kn.panel, panel + (g - begin) * lda * elem);
      for (int64_t j = j0; j < j1; ++j) {
        const uint16_t* wg = pb.ops.w13.gate_block(e, j);
        const uint16_t* wu = pb.ops.w13.up_block(e, j);
        const uint16_t* wg_next = j + 1 < j1 ? pb.ops.w13.gate_block(e, j + 1) : nullptr;
        const int count = static_cast<int>(std::min<int64_t>(32, N - j * 32));
        for (int64_t g = begin; g < end; g += rows_max) {
          const int rows = static_cast<int>(std::min<int64_t>(rows_max, end - g));
          const unsigned char* a = panel + (g - begin) * lda * elem;
          // The block multiplied next, where it is not in cache yet: the up block after the first
          // panel's gate, the next gate block after the last panel's up.
          kn.gemm(a, lda, rows, wg, k_pad / 2, cg, g == begin ? wu : nullptr);
          kn.gemm(a, lda, rows, wu, k_pad / 2, cu, g + rows_max >= end ? wg_next : nullptr);
          for (int r = 0; r < rows; ++r)
            kn.activate(cg + r * 32, cu + r * 32, count, pb.act, pb.dtype, kn.panel,
                        ic1 + ((g + r) * ldc + j * 32) * elem);
        }
      }
    }

#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items2; ++item) {
      const int64_t tc = item / block_groups, nb0 = (item % block_groups) * group2;
      const int64_t nb1 = std::min(out_blocks, nb0 + group2), width = (nb1 - nb0) * 32;
      const int64_t m0 = tc * chunk2, m1 = std::min(M, m0 + chunk2);
      std::fill(acc, acc + (m1 - m0) * width, 0.f);
      for (int64_t u = 0; u < n_touched; ++u) {
        const int64_t e = touched[u];
        const int32_t* seg_end = sorted + seg[e + 1];
        const int32_t* lo = std::lower_bound<const int32_t*>(sorted + seg[e], seg_end, static_cast<int32_t>(m0 * k));
        const int32_t* hi = std::lower_bound(lo, seg_end, static_cast<int32_t>(m1 * k));
        for (int64_t g = lo - sorted; g < hi - sorted; g += rows_max) {
          const int rows = static_cast<int>(std::min<int64_t>(rows_max, (hi - sorted) - g));
          const bool first = g == lo - sorted, last = g + rows_max >= hi - sorted;
          for (int64_t nb = nb0; nb < nb1; ++nb) {
            // Next uncached block: this expert's next output block on its first row panel, the
            // next expert's first block after the last one.
            const uint16_t* next = nb + 1 < nb1 ? (first ? pb.ops.w2.block(e, nb + 1) : nullptr)
                                   : last && u + 1 < n_touched ? pb.ops.w2.block(touched[u + 1], nb0)
                                                               : nullptr;
            kn.gemm(ic1 + g * ldc * elem, ldc, rows, pb.ops.w2.block(e, nb), n_pad / 2, cg, next);
            const int count = static_cast<int>(std::min<int64_t>(32, K - nb * 32));
            for (int r = 0; r < rows; ++r) {
              const int64_t i = sorted[g + r];
              float* a = acc + (i / k - m0) * width + (nb - nb0) * 32;
              if (pb.shared)
                std::memcpy(a, cg + r * 32, 32 * 4);
              else
                kn.weighted_add(cg + r * 32, wts[i], a, count, pb.dtype);
            }
          }
        }
      }
      const int64_t cols = std::min(K, nb1 * 32) - nb0 * 32;
      for (int64_t m = m0; m < m1; ++m) {
        const float* a = acc + (m - m0) * width;
        uint16_t* o = pb.out + m * K + nb0 * 32;
        if (pb.shared) {
          const uint16_t* f = pb.shared_routed ? pb.shared_routed + m * K + nb0 * 32 : nullptr;
          for (int64_t n = 0; n < cols; ++n)
            o[n] = encode(f ? a[n] + decode(f[n], pb.dtype) * pb.rsf : a[n], pb.dtype);
        } else {
          for (int64_t n = 0; n < cols; ++n) o[n] = encode(pb.rsf * a[n], pb.dtype);
        }
      }
    }
    if (kn.thread_end) kn.thread_end();
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
  return fused_experts_cpu_workspace_bytes(M, 1, 1, N, K, threads);
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

  const cpu::Workspace ws(M, 1, 1, ops.N, ops.K, threads);
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
