// CPU benchmark of moekit's small ops (routing, dispatch, combine, fused QK-norm + RoPE) on the
// CPU back end, at decode sizes (M = 1, 16, 64) and at 16384 tokens, beside this machine's memory
// copy bandwidth in the same process (all threads, buffers far larger than the last-level cache;
// bytes read + written / time, the unit of the GPU bench): once at the start, and for each
// memory-bound row at 4096+ tokens in batches alternating with the op's, which its % uses.
//
// Timing: calls in batches of at least 20 ms, 7 batches, the median batch / calls = one call.
// Inputs stay the same from call to call (hot caches at decode sizes, as after the previous op);
// at 16384 tokens the inputs of the memory-bound ops exceed the caches anyway.
// bytes = the op's compulsory traffic (inputs read once + outputs written once); GB/s = bytes / time.
// apply_shuffle_mul_sum runs twice: on the permutation prepare_moe_input builds for random routing
// (perm=routed, what the op gets in a MoE layer) and on a uniformly random one (perm=random, every
// 4 KiB row a page walk of its own: the TLB's worst case).
//
//   moekit_cpu_ops_bench [--op SUBSTRING] [--tokens 1,16,64,16384] [--csv PATH]
// Threads and ISA path: MOEKIT_CPU_THREADS, MOEKIT_CPU_ISA (as every CPU op).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "common/numeric.h"
#include "moekit/combine.h"
#include "moekit/cpu.h"
#include "moekit/dispatch.h"
#include "moekit/qk_norm_rope.h"
#include "moekit/route.h"

namespace {

using namespace moekit;
using Clock = std::chrono::steady_clock;

// Shapes of Qwen3-30B-A3B (E 128, top-8, H 2048; 32 q + 4 k + 4 v heads of 128), DeepSeek-V3's
// grouped gate (E 256, 8 groups, 4 kept) and Kimi-K2's gate (E 384).
constexpr int64_t kE = 128, kTopk = 8, kH = 2048, kBlock = 64;
constexpr int64_t kHeadsQ = 32, kHeadsK = 4, kHeadsV = 4, kHeadDim = 128;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A byte buffer viewed as a tensor of `dtype` and `shape` (64-byte aligned storage).
struct Buffer {
  std::vector<uint64_t> storage;
  TensorView view;
  Buffer(DType dtype, std::initializer_list<int64_t> shape) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    storage.assign((n * int64_t(dtype_size(dtype)) + 7) / 8 + 8, 0);
    void* p = storage.data();
    view = TensorView(reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t(63)),
                      dtype, shape, Device{});
  }
  int64_t bytes() const { return view.nbytes(); }
};

void fill_f32(Buffer& b, std::mt19937_64& rng) {
  std::normal_distribution<float> d(0.f, 1.f);
  float* p = b.view.ptr<float>();
  for (int64_t i = 0; i < b.view.numel(); ++i) p[i] = d(rng);
}

void fill_bf16(Buffer& b, std::mt19937_64& rng) {
  std::normal_distribution<float> d(0.f, 1.f);
  auto* p = static_cast<uint16_t*>(b.view.data);
  for (int64_t i = 0; i < b.view.numel(); ++i) p[i] = numeric::float_to_bf16(d(rng));
}

void fill_ids(Buffer& b, int64_t E, std::mt19937_64& rng) {
  std::uniform_int_distribution<int32_t> d(0, static_cast<int32_t>(E - 1));
  int32_t* p = b.view.ptr<int32_t>();
  for (int64_t i = 0; i < b.view.numel(); ++i) p[i] = d(rng);
}

// Calls of `call` per batch of at least 20 ms.
int64_t calls_per_batch(const std::function<void()>& call) {
  call();
  const auto t0 = Clock::now();
  call();
  return std::max<int64_t>(1, static_cast<int64_t>(0.02 / std::max(seconds_since(t0), 1e-7)));
}

double batch_seconds(const std::function<void()>& call, int64_t calls) {
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < calls; ++i) call();
  return seconds_since(t0) / calls;
}

double median7(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[3];
}

// Seconds per call: batches of at least 20 ms, the median of 7.
double time_call(const std::function<void()>& call) {
  const int64_t calls = calls_per_batch(call);
  std::vector<double> batch;
  for (int b = 0; b < 7; ++b) batch.push_back(batch_seconds(call, calls));
  return median7(batch);
}

// Seconds per call of `a` and of `b`, their batches alternated (7 each, medians): on a shared
// machine both then see the same neighbours' load, which moved a ratio taken against one copy figure
// at the start by +-15 points here.
std::pair<double, double> time_alternating(const std::function<void()>& a, const std::function<void()>& b) {
  const int64_t calls_a = calls_per_batch(a), calls_b = calls_per_batch(b);
  std::vector<double> ta, tb;
  for (int i = 0; i < 7; ++i) {
    ta.push_back(batch_seconds(a, calls_a));
    tb.push_back(batch_seconds(b, calls_b));
  }
  return {median7(ta), median7(tb)};
}

// Copy of all threads over 512 MiB buffers; gbps counts bytes read + written.
struct CopyProbe {
  static constexpr size_t kBytes = size_t{512} << 20;
  std::vector<char> src, dst;
  std::function<void()> call;
  CopyProbe() : src(kBytes, 1), dst(kBytes, 0), call([this] { run(); }) {}
  CopyProbe(const CopyProbe&) = delete;  // `call` points at this object
  void run() {
#pragma omp parallel num_threads(cpu_threads())
    {
      const size_t chunk = kBytes / omp_get_num_threads();
      const size_t off = chunk * omp_get_thread_num();
      std::memcpy(dst.data() + off, src.data() + off, chunk);
    }
  }
  static double gbps(double seconds) { return 2.0 * kBytes / seconds / 1e9; }
};

struct Case {
  std::string op, shape;
  double bytes = 0;
  std::function<void()> call;
  std::vector<Buffer> keep;  // the buffers the call uses
};

using Builder = Case (*)(int64_t M, std::mt19937_64& rng);

Case router_case(const char* op, int64_t M, int64_t E, std::mt19937_64& rng) {
  Case c;
  c.op = op;
  c.keep.emplace_back(DType::kFloat32, std::initializer_list<int64_t>{M, E});
  c.keep.emplace_back(DType::kFloat32, std::initializer_list<int64_t>{M, kTopk});
  c.keep.emplace_back(DType::kInt32, std::initializer_list<int64_t>{M, kTopk});
  c.keep.emplace_back(DType::kFloat32, std::initializer_list<int64_t>{E});
  fill_f32(c.keep[0], rng);
  fill_f32(c.keep[3], rng);
  c.bytes = c.keep[0].bytes() + c.keep[1].bytes() + c.keep[2].bytes();
  c.shape = "M=" + std::to_string(M) + " E=" + std::to_string(E) + " k=8 fp32";
  return c;
}

Case build_topk_softmax(int64_t M, std::mt19937_64& rng) {
  Case c = router_case("topk_softmax", M, kE, rng);
  TensorView x = c.keep[0].view, w = c.keep[1].view, ids = c.keep[2].view;
  c.call = [=] { topk_softmax(w, ids, x, true); };
  return c;
}

Case build_topk_sigmoid(int64_t M, std::mt19937_64& rng) {
  Case c = router_case("topk_sigmoid", M, kE, rng);
  TensorView x = c.keep[0].view, w = c.keep[1].view, ids = c.keep[2].view, bias = c.keep[3].view;
  c.call = [=] { topk_sigmoid(w, ids, x, true, bias); };
  return c;
}

Case build_moe_fused_gate(int64_t M, std::mt19937_64& rng) {
  Case c = router_case("moe_fused_gate", M, 256, rng);
  c.shape += " G=8 groups=4";
  TensorView x = c.keep[0].view, w = c.keep[1].view, ids = c.keep[2].view, bias = c.keep[3].view;
  MoeFusedGateOptions o;
  o.num_expert_group = 8;
  o.topk_group = 4;
  o.topk = static_cast<int>(kTopk);
  o.routed_scaling_factor = 2.5;
  c.call = [=] { moe_fused_gate(x, bias, w, ids, o); };
  return c;
}

Case build_kimi_gate(int64_t M, std::mt19937_64& rng) {
  Case c = router_case("kimi_k2_moe_fused_gate", M, 384, rng);
  TensorView x = c.keep[0].view, w = c.keep[1].view, ids = c.keep[2].view, bias = c.keep[3].view;
  c.call = [=] { kimi_k2_moe_fused_gate(x, bias, w, ids, static_cast<int>(kTopk), true, 2.5); };
  return c;
}

Case build_align(int64_t M, std::mt19937_64& rng) {
  Case c;
  c.op = "moe_align_block_size";
  const AlignCapacity cap = moe_align_block_size_capacity(M * kTopk, kE + 1, kBlock);
  c.keep.emplace_back(DType::kInt32, std::initializer_list<int64_t>{M, kTopk});
  c.keep.emplace_back(DType::kInt32, std::initializer_list<int64_t>{cap.sorted_token_ids});
  c.keep.emplace_back(DType::kInt32, std::initializer_list<int64_t>{cap.experts_ids});
  c.keep.emplace_back(DType::kInt32, std::initializer_list<int64_t>{1});
  c.keep.emplace_back(DType::kInt32, std::initializer_list<int64_t>{kE + 2});
  fill_ids(c.keep[0], kE, rng);
  TensorView ids = c.keep[0].view, sorted = c.keep[1].view, experts = c.keep[2].view;
  TensorView post = c.keep[3].view, cumsum = c.keep[4].view;
  c.bytes = ids.nbytes() + sorted.nbytes() + experts.nbytes();
  c.shape = "M=" + std::to_string(M) + " E=128 k=8 block=64 pad";
  c.call = [=] { moe_align_block_size(ids, kE + 1, kBlock, sorted, experts, post, cumsum, true); };
  return c;
}

Case build_prepare(int64_t M, std::mt19937_64& rng) {
  Case c;
  c.op = "prepare_moe_input";
  c.keep.emplace_back(DType::kInt32, std::initializer_list<int64_t>{M, kTopk});
  c.keep.emplace_back(DType::kInt32, std::initializer_list<int64_t>{kE + 1});
  c.keep.emplace_back(DType::kInt32, std::initializer_list<int64_t>{kE, 3});
  c.keep.emplace_back(DType::kInt32, std::initializer_list<int64_t>{kE, 3});
  c.keep.emplace_back(DType::kInt32, std::initializer_list<int64_t>{M * kTopk});
  c.keep.emplace_back(DType::kInt32, std::initializer_list<int64_t>{M * kTopk});
  fill_ids(c.keep[0], kE, rng);
  TensorView ids = c.keep[0].view, off = c.keep[1].view, p1 = c.keep[2].view, p2 = c.keep[3].view;
  TensorView in_perm = c.keep[4].view, out_perm = c.keep[5].view;
  c.bytes = ids.nbytes() + in_perm.nbytes() + out_perm.nbytes();
  c.shape = "M=" + std::to_string(M) + " E=128 k=8";
  c.call = [=] { prepare_moe_input(ids, off, {}, p1, p2, in_perm, out_perm, kE, 768, kH); };
  return c;
}

// [M * k, H] bf16 rows and a random permutation over them (the shape of the combine inputs).
Case rows_case(const char* op, int64_t M, std::mt19937_64& rng) {
  Case c;
  c.op = op;
  c.keep.emplace_back(DType::kBFloat16, std::initializer_list<int64_t>{M * kTopk, kH});
  c.keep.emplace_back(DType::kInt32, std::initializer_list<int64_t>{M * kTopk});
  c.keep.emplace_back(DType::kFloat32, std::initializer_list<int64_t>{M * kTopk});
  fill_bf16(c.keep[0], rng);
  fill_f32(c.keep[2], rng);
  std::vector<int32_t> perm(M * kTopk);
  for (int64_t i = 0; i < M * kTopk; ++i) perm[i] = static_cast<int32_t>(i);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::memcpy(c.keep[1].view.data, perm.data(), perm.size() * 4);
  c.shape = "M=" + std::to_string(M) + " k=8 H=2048 bf16";
  return c;
}

Case build_shuffle_rows(int64_t M, std::mt19937_64& rng) {
  Case c = rows_case("shuffle_rows", M, rng);
  c.keep.emplace_back(DType::kBFloat16, std::initializer_list<int64_t>{M * kTopk, kH});
  TensorView in = c.keep[0].view, map = c.keep[1].view, out = c.keep[3].view;
  c.bytes = 2.0 * in.nbytes() + map.nbytes();
  c.call = [=] { shuffle_rows(in, map, out); };
  return c;
}

Case build_moe_sum(int64_t M, std::mt19937_64& rng) {
  Case c = rows_case("moe_sum", M, rng);
  c.keep.emplace_back(DType::kBFloat16, std::initializer_list<int64_t>{M, kH});
  TensorView in = c.keep[0].view, out = c.keep[3].view;
  in = TensorView(in.data, in.dtype, {M, kTopk, kH}, in.device);
  c.bytes = in.nbytes() + out.nbytes();
  c.call = [=] { moe_sum(in, out); };
  return c;
}

Case build_moe_sum_reduce(int64_t M, std::mt19937_64& rng) {
  Case c = build_moe_sum(M, rng);
  c.op = "moe_sum_reduce";
  c.shape += " rsf=2.5";
  TensorView in(c.keep[0].view.data, DType::kBFloat16, {M, kTopk, kH}, Device{});
  TensorView out = c.keep[3].view;
  c.call = [=] { moe_sum_reduce(in, out, 2.5); };
  return c;
}

Case apply_shuffle_mul_sum_case(Case c, int64_t M) {
  c.keep.emplace_back(DType::kBFloat16, std::initializer_list<int64_t>{M, kH});
  TensorView in = c.keep[0].view, perm = c.keep[1].view, f = c.keep[2].view, out = c.keep[3].view;
  c.bytes = in.nbytes() + perm.nbytes() + f.nbytes() + out.nbytes();
  c.call = [=] { apply_shuffle_mul_sum(in, out, perm, f); };
  return c;
}

// The permutation of the pipeline: prepare_moe_input's output_permutation (c_map) for random top-8
// routing (8 distinct experts of 128 per token). Within an expert the slots follow the tokens, so
// consecutive tokens read nearby rows of each expert's block (shared pages and TLB entries).
Case build_apply_shuffle_mul_sum(int64_t M, std::mt19937_64& rng) {
  Case c = rows_case("apply_shuffle_mul_sum", M, rng);
  c.shape += " perm=routed";
  Buffer ids(DType::kInt32, {M, kTopk}), offsets(DType::kInt32, {kE + 1}), sizes1(DType::kInt32, {kE, 3}),
      sizes2(DType::kInt32, {kE, 3}), in_perm(DType::kInt32, {M * kTopk});
  int32_t* id = ids.view.ptr<int32_t>();
  std::vector<int32_t> experts(kE);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t e = 0; e < kE; ++e) experts[e] = static_cast<int32_t>(e);
    for (int64_t j = 0; j < kTopk; ++j) {
      std::swap(experts[j], experts[j + static_cast<int64_t>(rng() % (kE - j))]);
      id[m * kTopk + j] = experts[j];
    }
  }
  prepare_moe_input(ids.view, offsets.view, {}, sizes1.view, sizes2.view, in_perm.view, c.keep[1].view, kE,
                    768, kH);
  return apply_shuffle_mul_sum_case(std::move(c), M);
}

// A uniformly random permutation: every row on its own pages in random order, the worst case for
// the TLB (no pipeline produces it).
Case build_apply_shuffle_mul_sum_random(int64_t M, std::mt19937_64& rng) {
  Case c = rows_case("apply_shuffle_mul_sum", M, rng);
  c.shape += " perm=random";
  return apply_shuffle_mul_sum_case(std::move(c), M);
}

Case build_qk_norm_rope(int64_t M, std::mt19937_64& rng) {
  Case c;
  c.op = "fused_qk_norm_rope";
  const int64_t width = (kHeadsQ + kHeadsK + kHeadsV) * kHeadDim;
  c.keep.emplace_back(DType::kBFloat16, std::initializer_list<int64_t>{M, width});
  c.keep.emplace_back(DType::kBFloat16, std::initializer_list<int64_t>{kHeadDim});
  c.keep.emplace_back(DType::kBFloat16, std::initializer_list<int64_t>{kHeadDim});
  c.keep.emplace_back(DType::kInt32, std::initializer_list<int64_t>{M});
  fill_bf16(c.keep[0], rng);
  fill_bf16(c.keep[1], rng);
  fill_bf16(c.keep[2], rng);
  fill_ids(c.keep[3], 4096, rng);
  TensorView qkv = c.keep[0].view, qw = c.keep[1].view, kw = c.keep[2].view, pos = c.keep[3].view;
  // Q and K heads are read and written in place; V is not touched.
  c.bytes = 2.0 * M * (kHeadsQ + kHeadsK) * kHeadDim * 2 + pos.nbytes();
  c.shape = "T=" + std::to_string(M) + " Hq=32 Hk=Hv=4 D=128 bf16 neox";
  c.call = [=] {
    fused_qk_norm_rope(qkv, kHeadsQ, kHeadsK, kHeadsV, kHeadDim, 1e-6, qw, kw, 1e6, true, pos, 1.0,
                       0.0, 0.0, 1.0);
  };
  return c;
}

struct OpSpec {
  const char* name;
  Builder build;
  bool memory_bound;  // judged against the copy bandwidth at 16384 tokens
};

const OpSpec kOps[] = {
    {"topk_softmax", build_topk_softmax, false},
    {"topk_sigmoid", build_topk_sigmoid, false},
    {"moe_fused_gate", build_moe_fused_gate, false},
    {"kimi_k2_moe_fused_gate", build_kimi_gate, false},
    {"moe_align_block_size", build_align, false},
    {"prepare_moe_input", build_prepare, false},
    {"shuffle_rows", build_shuffle_rows, true},
    {"moe_sum", build_moe_sum, true},
    {"moe_sum_reduce", build_moe_sum_reduce, true},
    {"apply_shuffle_mul_sum", build_apply_shuffle_mul_sum, true},
    {"apply_shuffle_mul_sum", build_apply_shuffle_mul_sum_random, true},
    {"fused_qk_norm_rope", build_qk_norm_rope, true},
};

std::vector<int64_t> parse_tokens(const char* s) {
  std::vector<int64_t> out;
  for (const char* p = s; *p;) {
    out.push_back(std::strtoll(p, nullptr, 10));
    const char* comma = std::strchr(p, ',');
    if (!comma) break;
    p = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string filter, csv_path;
  std::vector<int64_t> tokens = {1, 16, 64, 16384};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--op" && v) filter = argv[++i];
    else if (a == "--csv" && v) csv_path = argv[++i];
    else if (a == "--tokens" && v) tokens = parse_tokens(argv[++i]);
    else {
      std::fprintf(stderr, "usage: moekit_cpu_ops_bench [--op SUBSTRING] [--tokens 1,16,64,16384] [--csv PATH]\n");
      return a == "--help" ? 0 : 2;
    }
  }
  CopyProbe copy;
  const double start_copy_gbps = CopyProbe::gbps(time_call(copy.call));
  std::printf("# cpu isa path %s, %d threads; copy bandwidth %.1f GB/s (read + written)\n",
              cpu_isa_name(cpu_isa()), cpu_threads(), start_copy_gbps);
  std::printf("| op | shape | us | GB/s | %% of copy | copy GB/s |\n|---|---|---:|---:|---:|---:|\n");
  std::FILE* csv = csv_path.empty() ? nullptr : std::fopen(csv_path.c_str(), "w");
  if (csv) std::fprintf(csv, "op,tokens,shape,us,bytes,gbps,copy_gbps\n");
  std::mt19937_64 rng(0);
  for (const OpSpec& spec : kOps) {
    if (!filter.empty() && std::string(spec.name).find(filter) == std::string::npos) continue;
    for (int64_t M : tokens) {
      Case c = spec.build(M, rng);
      // Memory-bound rows at 4096+ tokens: the copy is timed in batches alternating with the op's.
      const bool vs_copy = spec.memory_bound && M >= 4096;
      double s = 0, copy_gbps = start_copy_gbps;
      if (vs_copy) {
        const auto [op_s, copy_s] = time_alternating(c.call, copy.call);
        s = op_s;
        copy_gbps = CopyProbe::gbps(copy_s);
      } else {
        s = time_call(c.call);
      }
      const double gbps = c.bytes / s / 1e9;
      char pct[16] = "-", copy_col[16] = "-";
      if (vs_copy) {
        std::snprintf(pct, sizeof pct, "%d%%", static_cast<int>(100 * gbps / copy_gbps + 0.5));
        std::snprintf(copy_col, sizeof copy_col, "%.1f", copy_gbps);
      }
      std::printf("| %s | %s | %.2f | %.1f | %s | %s |\n", c.op.c_str(), c.shape.c_str(), s * 1e6, gbps, pct,
                  copy_col);
      std::fflush(stdout);
      if (csv) std::fprintf(csv, "%s,%lld,%s,%.3f,%.0f,%.2f,%.2f\n", c.op.c_str(), (long long)M, c.shape.c_str(),
                            s * 1e6, c.bytes, gbps, copy_gbps);
    }
  }
  if (csv) std::fclose(csv);
  return 0;
}
