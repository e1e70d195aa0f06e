// GPU benchmark of moekit's small ops (routing, dispatch, combine, fused QK-norm + RoPE) at decode
// sizes (M = 1, 16, 64) and at 16384 tokens, every figure beside the device-to-device copy
// bandwidth measured first in the same process.
//
// Timing: `kLaunchesPerGraph` launches captured into one CUDA graph, the graph replayed `--replays`
// times, timed with events; the median replay / kLaunchesPerGraph is the time of one launch.
// At 16384 tokens each replay follows a 256 MiB memset that evicts L2 and the launches rotate over
// enough copies of the inputs that together they exceed L2 (every launch reads cold data). At
// decode sizes (M <= 64) the inputs are hot, as in a forward pass where the previous op has just
// written them to L2: one input set, no flush.
// bytes = the op's compulsory traffic (inputs read once + outputs written once); GB/s = bytes / time.
// Targets: decode sizes < 5 us (6 us for the fused route + align pair); at 16384 tokens the
// memory-bound ops (shuffle_rows, moe_sum, moe_sum_reduce, apply_shuffle_mul_sum,
// fused_qk_norm_rope) >= 75% of the copy bandwidth; align at 8192 x top-8 x 256 experts < 20 us;
// other large cases are reported without a target.
//
//   moekit_gpu_ops_bench [--preset qwen3|deepseek-v3|kimi-k2|all] [--op SUBSTRING] [--csv PATH]
//                        [--replays N]
// Adding an op: write a `build_*` function returning its OpCase and add one line to kOps.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "moekit/combine.h"
#include "moekit/dispatch.h"
#include "moekit/qk_norm_rope.h"
#include "moekit/route.h"

#define CK(x)                                                                                    \
  do {                                                                                           \
    cudaError_t e_ = (x);                                                                        \
    if (e_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s failed: %s (%s:%d)\n", #x, cudaGetErrorString(e_), __FILE__,     \
                   __LINE__);                                                                    \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

namespace {

using namespace moekit;

constexpr int kLaunchesPerGraph = 20;
constexpr size_t kFlushBytes = size_t{256} << 20;
const Device kGpu{DeviceKind::kCUDA, 0};

// ---- presets -------------------------------------------------------------------------------------

struct Preset {
  const char* name;
  int64_t E, k, H;
  int64_t groups, topk_group;  // DeepSeek-V3 grouped gate
  int64_t intermediate;        // N of the grouped GEMMs (prepare_moe_input's problem sizes)
  // fused_qk_norm_rope shape of the model's attention (0 heads: the model has none, e.g. MLA)
  int64_t heads_q, heads_kv, head_dim;
};

const Preset kPresets[] = {
    {"qwen3", 128, 8, 2048, 1, 1, 768, 32, 4, 128},  // Qwen3-30B-A3B
    {"deepseek-v3", 256, 8, 7168, 8, 4, 2048, 0, 0, 0},
    {"kimi-k2", 384, 8, 7168, 1, 1, 2048, 0, 0, 0},
};

const int64_t kTokens[] = {1, 16, 64, 16384};

// ---- device memory -------------------------------------------------------------------------------

// Owns every allocation of one case.
class Arena {
 public:
  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena() {
    for (void* p : blocks_) cudaFree(p);
  }
  void* alloc(size_t bytes) {
    void* p = nullptr;
    CK(cudaMalloc(&p, std::max<size_t>(bytes, 16)));
    blocks_.push_back(p);
    return p;
  }
  TensorView tensor(DType dtype, std::initializer_list<int64_t> shape) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return TensorView(alloc(static_cast<size_t>(n) * dtype_size(dtype)), dtype, shape, kGpu);
  }
  TensorView upload(DType dtype, std::initializer_list<int64_t> shape, const void* host) {
    TensorView t = tensor(dtype, shape);
    CK(cudaMemcpy(t.data, host, t.nbytes(), cudaMemcpyHostToDevice));
    return t;
  }

 private:
  std::vector<void*> blocks_;
};

__global__ void fill_uniform_kernel(void* data, DType dtype, int64_t n, float lo, float hi,
                                    uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t z = (uint64_t(i) + seed) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const float v = lo + (hi - lo) * ((z & 0xffffffu) / 16777216.f);
    if (dtype == DType::kFloat32)
      static_cast<float*>(data)[i] = v;
    else
      static_cast<__nv_bfloat16*>(data)[i] = __float2bfloat16_rn(v);
  }
}

// Random fp32 / bf16 contents.
void fill_uniform(const TensorView& t, float lo, float hi) {
  static uint64_t seed = 1;
  fill_uniform_kernel<<<132 * 8, 256>>>(t.data, t.dtype, t.numel(), lo, hi, seed++);
  CK(cudaGetLastError());
}

// Top-k expert ids of M tokens, distinct within a row, uniform over experts.
std::vector<int32_t> random_topk_ids(int64_t M, int64_t k, int64_t E, std::mt19937_64& rng) {
  std::vector<int32_t> ids(static_cast<size_t>(M * k));
  std::vector<int32_t> experts(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e) experts[e] = static_cast<int32_t>(e);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < k; ++j) {  // partial Fisher-Yates
      std::uniform_int_distribution<int64_t> pick(j, E - 1);
      std::swap(experts[j], experts[pick(rng)]);
      ids[m * k + j] = experts[j];
    }
  return ids;
}

// ---- one case ------------------------------------------------------------------------------------

struct OpCase {
  std::string op, shape;
  double bytes = 0;
  double target_us = 0;         // > 0: PASS when time < target_us
  double target_copy_frac = 0;  // > 0: PASS when GB/s >= frac * copy bandwidth
  int sets = 1;                 // input copies the launches rotate over
  std::function<void(int set, Stream)> launch;
  std::shared_ptr<Arena> arena = std::make_shared<Arena>();
};

// Copies of the inputs so that the launches of one replay together read more than L2 (capped at
// one copy per launch).
int input_sets(double input_bytes) {
  static const int64_t l2 = [] {
    cudaDeviceProp prop{};
    CK(cudaGetDeviceProperties(&prop, 0));
    return static_cast<int64_t>(prop.l2CacheSize);
  }();
  const double want = std::ceil(2.0 * static_cast<double>(l2) / std::max(input_bytes, 1.0));
  return static_cast<int>(std::clamp(want, 1.0, double(kLaunchesPerGraph)));
}

struct Timing {
  cudaStream_t stream = nullptr;
  void* flush = nullptr;
  int replays = 30;
};

// Median microseconds of one launch of `launch` (see the header comment).
double time_launches(const Timing& t, int sets, bool cold,
                     const std::function<void(int, Stream)>& launch) {
  const Stream s{t.stream};
  for (int i = 0; i < sets; ++i) launch(i, s);  // warm-up, outside the capture
  CK(cudaStreamSynchronize(t.stream));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CK(cudaStreamBeginCapture(t.stream, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < kLaunchesPerGraph; ++i) launch(i % sets, s);
  CK(cudaStreamEndCapture(t.stream, &graph));
  CK(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t start, stop;
  CK(cudaEventCreate(&start));
  CK(cudaEventCreate(&stop));
  std::vector<double> us;
  for (int r = 0; r < t.replays + 1; ++r) {
    if (cold) CK(cudaMemsetAsync(t.flush, r & 0xff, kFlushBytes, t.stream));
    CK(cudaEventRecord(start, t.stream));
    CK(cudaGraphLaunch(exec, t.stream));
    CK(cudaEventRecord(stop, t.stream));
    CK(cudaEventSynchronize(stop));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, start, stop));
    if (r > 0) us.push_back(1000.0 * ms / kLaunchesPerGraph);  // replay 0 warms the graph
  }
  CK(cudaEventDestroy(start));
  CK(cudaEventDestroy(stop));
  CK(cudaGraphExecDestroy(exec));
  CK(cudaGraphDestroy(graph));
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

// Device-to-device copy bandwidth: 1 GiB cudaMemcpyAsync on the stream (a copy kernel; inside a
// graph a memcpy node may go to the slower copy engines), bytes read + written / median time.
double copy_bandwidth_gbps(const Timing& t) {
  const size_t bytes = size_t{1} << 30;
  void *a = nullptr, *b = nullptr;
  CK(cudaMalloc(&a, bytes));
  CK(cudaMalloc(&b, bytes));
  CK(cudaMemset(a, 1, bytes));
  cudaEvent_t start, stop;
  CK(cudaEventCreate(&start));
  CK(cudaEventCreate(&stop));
  std::vector<double> us;
  for (int r = 0; r < 11; ++r) {
    CK(cudaEventRecord(start, t.stream));
    CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, t.stream));
    CK(cudaEventRecord(stop, t.stream));
    CK(cudaEventSynchronize(stop));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, start, stop));
    if (r > 0) us.push_back(1000.0 * ms);
  }
  CK(cudaEventDestroy(start));
  CK(cudaEventDestroy(stop));
  CK(cudaFree(a));
  CK(cudaFree(b));
  std::sort(us.begin(), us.end());
  return 2.0 * bytes / us[us.size() / 2] / 1e3;
}

std::string shape_of(const Preset& p, int64_t M, const char* extra = "") {
  char buf[160];
  std::snprintf(buf, sizeof buf, "M=%lld E=%lld k=%lld%s", static_cast<long long>(M),
                static_cast<long long>(p.E), static_cast<long long>(p.k), extra);
  return buf;
}

bool decode(int64_t M) { return M <= 64; }

// ---- routing -------------------------------------------------------------------------------------

// Logits fp32 [M, E] (rotated), weights fp32 / ids int32 [M, k] out.
struct RouterBuffers {
  std::vector<TensorView> logits;
  TensorView bias, weights, ids;
};

RouterBuffers router_buffers(OpCase& c, const Preset& p, int64_t M, int64_t k) {
  RouterBuffers b;
  c.sets = input_sets(double(M) * p.E * 4);
  for (int i = 0; i < c.sets; ++i) {
    b.logits.push_back(c.arena->tensor(DType::kFloat32, {M, p.E}));
    fill_uniform(b.logits.back(), -3.f, 3.f);
  }
  b.bias = c.arena->tensor(DType::kFloat32, {p.E});
  fill_uniform(b.bias, -0.1f, 0.1f);
  b.weights = c.arena->tensor(DType::kFloat32, {M, k});
  b.ids = c.arena->tensor(DType::kInt32, {M, k});
  c.bytes = double(M) * p.E * 4 + double(M) * k * 8;
  if (decode(M)) c.target_us = 5;
  return b;
}

OpCase build_topk_softmax(const Preset& p, int64_t M) {
  OpCase c;
  c.op = "topk_softmax";
  c.shape = shape_of(p, M, " fp32 renorm");
  RouterBuffers b = router_buffers(c, p, M, p.k);
  c.launch = [b](int set, Stream s) { topk_softmax(b.weights, b.ids, b.logits[set], true, 0.f, {}, RouterBiasMode::kLogit, s); };
  return c;
}

OpCase build_topk_sigmoid(const Preset& p, int64_t M) {
  OpCase c;
  c.op = "topk_sigmoid";
  c.shape = shape_of(p, M, " fp32 renorm bias");
  RouterBuffers b = router_buffers(c, p, M, p.k);
  c.bytes += double(p.E) * 4;
  c.launch = [b](int set, Stream s) { topk_sigmoid(b.weights, b.ids, b.logits[set], true, b.bias, s); };
  return c;
}

OpCase build_moe_fused_gate(const Preset& p, int64_t M) {
  OpCase c;
  c.op = "moe_fused_gate";
  char extra[64];
  std::snprintf(extra, sizeof extra, " G=%lld tg=%lld fp32", static_cast<long long>(p.groups),
                static_cast<long long>(p.topk_group));
  c.shape = shape_of(p, M, extra);
  RouterBuffers b = router_buffers(c, p, M, p.k);
  c.bytes += double(p.E) * 4;
  MoeFusedGateOptions o;
  o.num_expert_group = static_cast<int>(p.groups);
  o.topk_group = static_cast<int>(p.topk_group);
  o.topk = static_cast<int>(p.k);
  o.routed_scaling_factor = 2.5;
  c.launch = [b, o](int set, Stream s) { moe_fused_gate(b.logits[set], b.bias, b.weights, b.ids, o, s); };
  return c;
}

OpCase build_kimi_k2_gate(const Preset& p, int64_t M) {
  OpCase c;
  c.op = "kimi_k2_moe_fused_gate";
  c.shape = shape_of(p, M, " fp32");
  RouterBuffers b = router_buffers(c, p, M, p.k);
  c.bytes += double(p.E) * 4;
  const int k = static_cast<int>(p.k);
  c.launch = [b, k](int set, Stream s) { kimi_k2_moe_fused_gate(b.logits[set], b.bias, b.weights, b.ids, k, true, 2.872, true, s); };
  return c;
}

// Route + align in one call: the preset's own router (grouped gate for DeepSeek-V3, softmax
// otherwise), block size 64 (16 at decode sizes, as SGLang's Triton configs pick).
OpCase build_route_and_align(const Preset& p, int64_t M) {
  OpCase c;
  c.op = "route_and_align_block_size";
  const int64_t bs = decode(M) ? 16 : 64;
  char extra[64];
  std::snprintf(extra, sizeof extra, " bs=%lld %s", static_cast<long long>(bs),
                p.groups > 1 ? "gate" : "softmax");
  c.shape = shape_of(p, M, extra);
  RouterBuffers b = router_buffers(c, p, M, p.k);
  RouteAndAlignOptions o;
  o.block_size = bs;
  o.renormalize = true;
  if (p.groups > 1) {
    o.router = RouteAndAlignOptions::Router::kMoeFusedGate;
    o.gate.num_expert_group = static_cast<int>(p.groups);
    o.gate.topk_group = static_cast<int>(p.topk_group);
    o.gate.topk = static_cast<int>(p.k);
    o.gate.routed_scaling_factor = 2.5;
  }
  const AlignCapacity cap = moe_align_block_size_capacity(M * p.k, p.E, bs);
  TensorView sorted = c.arena->tensor(DType::kInt32, {cap.sorted_token_ids});
  TensorView experts = c.arena->tensor(DType::kInt32, {cap.experts_ids});
  TensorView post_pad = c.arena->tensor(DType::kInt32, {1});
  TensorView bias = p.groups > 1 ? b.bias : TensorView();
  c.bytes += double(M) * p.k * 4 + double(cap.experts_ids) * 4;
  c.target_us = decode(M) ? 6 : 0;
  c.launch = [b, o, sorted, experts, post_pad, bias](int set, Stream s) {
    route_and_align_block_size(b.logits[set], bias, b.weights, b.ids, sorted, experts, post_pad, o, s);
  };
  return c;
}

// ---- dispatch ------------------------------------------------------------------------------------

std::vector<TensorView> upload_ids(OpCase& c, const Preset& p, int64_t M) {
  std::mt19937_64 rng(M * 1000 + p.E);
  const std::vector<int32_t> ids = random_topk_ids(M, p.k, p.E, rng);
  std::vector<TensorView> sets;
  c.sets = input_sets(double(M) * p.k * 4);
  for (int i = 0; i < c.sets; ++i) sets.push_back(c.arena->upload(DType::kInt32, {M, p.k}, ids.data()));
  return sets;
}

OpCase build_align(const Preset& p, int64_t M) {
  OpCase c;
  c.op = "moe_align_block_size";
  const int64_t bs = decode(M) ? 16 : 64;
  char extra[64];
  std::snprintf(extra, sizeof extra, " bs=%lld pad", static_cast<long long>(bs));
  c.shape = shape_of(p, M, extra);
  const std::vector<TensorView> ids = upload_ids(c, p, M);
  const AlignCapacity cap = moe_align_block_size_capacity(M * p.k, p.E + 1, bs);
  TensorView sorted = c.arena->tensor(DType::kInt32, {cap.sorted_token_ids});
  TensorView experts = c.arena->tensor(DType::kInt32, {cap.experts_ids});
  TensorView post_pad = c.arena->tensor(DType::kInt32, {1});
  TensorView cumsum = c.arena->tensor(DType::kInt32, {p.E + 2});
  const int64_t E1 = p.E + 1;
  c.bytes = double(M) * p.k * 4 + double(cap.sorted_token_ids) * 4 + double(cap.experts_ids) * 4;
  if (decode(M)) c.target_us = 5;
  if (M == 8192 && p.k == 8 && p.E == 256) c.target_us = 20;
  c.launch = [=](int set, Stream s) {
    moe_align_block_size(ids[set], E1, bs, sorted, experts, post_pad, cumsum, true, false, s);
  };
  return c;
}

OpCase build_prepare_moe_input(const Preset& p, int64_t M) {
  OpCase c;
  c.op = "prepare_moe_input";
  c.shape = shape_of(p, M);
  const std::vector<TensorView> ids = upload_ids(c, p, M);
  const int64_t E = p.E, pairs = M * p.k;
  TensorView offsets = c.arena->tensor(DType::kInt32, {E + 1});
  TensorView sizes1 = c.arena->tensor(DType::kInt32, {E, 3});
  TensorView sizes2 = c.arena->tensor(DType::kInt32, {E, 3});
  TensorView in_perm = c.arena->tensor(DType::kInt32, {pairs});
  TensorView out_perm = c.arena->tensor(DType::kInt32, {pairs});
  const int64_t n = p.intermediate, k = p.H;
  c.bytes = double(pairs) * 4 * 3 + double(E) * 28;
  if (decode(M)) c.target_us = 5;
  c.launch = [=](int set, Stream s) {
    prepare_moe_input(ids[set], offsets, TensorView(), sizes1, sizes2, in_perm, out_perm, E, n, k, {}, s);
  };
  return c;
}

// The row permutation of a dispatch: M * k destination rows gathered from M tokens.
TensorView upload_permutation(OpCase& c, int64_t rows, int64_t sources) {
  std::vector<int32_t> map(static_cast<size_t>(rows));
  std::mt19937_64 rng(rows);
  for (int64_t r = 0; r < rows; ++r) map[r] = static_cast<int32_t>(rng() % sources);
  return c.arena->upload(DType::kInt32, {rows}, map.data());
}

OpCase build_shuffle_rows(const Preset& p, int64_t M) {
  OpCase c;
  c.op = "shuffle_rows";
  c.shape = shape_of(p, M, " bf16");
  const int64_t rows = M * p.k;
  c.sets = input_sets(double(M) * p.H * 2);
  std::vector<TensorView> in;
  for (int i = 0; i < c.sets; ++i) {
    in.push_back(c.arena->tensor(DType::kBFloat16, {M, p.H}));
    fill_uniform(in.back(), -1.f, 1.f);
  }
  TensorView map = upload_permutation(c, rows, M);
  TensorView out = c.arena->tensor(DType::kBFloat16, {rows, p.H});
  // Each destination row reads one source row (a source row gathered k times is read k times).
  c.bytes = 2.0 * rows * p.H * 2 + rows * 4.0;
  if (decode(M)) c.target_us = 5;
  else c.target_copy_frac = 0.75;
  c.launch = [in, map, out](int set, Stream s) { shuffle_rows(in[set], map, out, s); };
  return c;
}

// ---- combine -------------------------------------------------------------------------------------

struct CombineBuffers {
  std::vector<TensorView> input;  // [M, k, H] bf16
  TensorView output;              // [M, H] bf16
};

CombineBuffers combine_buffers(OpCase& c, const Preset& p, int64_t M) {
  CombineBuffers b;
  c.sets = input_sets(double(M) * p.k * p.H * 2);
  for (int i = 0; i < c.sets; ++i) {
    b.input.push_back(c.arena->tensor(DType::kBFloat16, {M, p.k, p.H}));
    fill_uniform(b.input.back(), -1.f, 1.f);
  }
  b.output = c.arena->tensor(DType::kBFloat16, {M, p.H});
  c.bytes = double(M) * (p.k + 1) * p.H * 2;
  if (decode(M)) c.target_us = 5;
  else c.target_copy_frac = 0.75;
  c.shape = shape_of(p, M, " bf16");
  return b;
}

OpCase build_moe_sum(const Preset& p, int64_t M) {
  OpCase c;
  c.op = "moe_sum";
  CombineBuffers b = combine_buffers(c, p, M);
  c.launch = [b](int set, Stream s) { moe_sum(b.input[set], b.output, s); };
  return c;
}

OpCase build_moe_sum_reduce(const Preset& p, int64_t M) {
  OpCase c;
  c.op = "moe_sum_reduce";
  CombineBuffers b = combine_buffers(c, p, M);
  c.launch = [b](int set, Stream s) { moe_sum_reduce(b.input[set], b.output, 2.5, s); };
  return c;
}

OpCase build_apply_shuffle_mul_sum(const Preset& p, int64_t M) {
  OpCase c;
  c.op = "apply_shuffle_mul_sum";
  CombineBuffers b = combine_buffers(c, p, M);
  const int64_t rows = M * p.k;
  std::vector<int32_t> perm(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) perm[i] = static_cast<int32_t>(i);
  std::shuffle(perm.begin(), perm.end(), std::mt19937_64(rows));
  TensorView permutation = c.arena->upload(DType::kInt32, {rows}, perm.data());
  TensorView factors = c.arena->tensor(DType::kFloat32, {rows});
  fill_uniform(factors, 0.f, 1.f);
  c.bytes += rows * 8.0;
  std::vector<TensorView> flat;
  for (const TensorView& t : b.input) flat.emplace_back(t.data, DType::kBFloat16, std::initializer_list<int64_t>{rows, p.H}, kGpu);
  TensorView out = b.output;
  c.launch = [flat, out, permutation, factors](int set, Stream s) {
    apply_shuffle_mul_sum(flat[set], out, permutation, factors, s);
  };
  return c;
}

// ---- attention input ------------------------------------------------------------------------------

OpCase build_fused_qk_norm_rope(const Preset& p, int64_t M) {
  OpCase c;
  c.op = "fused_qk_norm_rope";
  char buf[128];
  std::snprintf(buf, sizeof buf, "T=%lld Hq=%lld Hk=Hv=%lld D=%lld bf16 neox", static_cast<long long>(M),
                static_cast<long long>(p.heads_q), static_cast<long long>(p.heads_kv),
                static_cast<long long>(p.head_dim));
  c.shape = buf;
  const int64_t Hq = p.heads_q, Hk = p.heads_kv, D = p.head_dim;
  const int64_t width = (Hq + 2 * Hk) * D;
  c.sets = input_sets(double(M) * (Hq + Hk) * D * 2);
  std::vector<TensorView> qkv;
  for (int i = 0; i < c.sets; ++i) {
    qkv.push_back(c.arena->tensor(DType::kBFloat16, {M, width}));
    fill_uniform(qkv.back(), -2.f, 2.f);
  }
  TensorView qw = c.arena->tensor(DType::kBFloat16, {D}), kw = c.arena->tensor(DType::kBFloat16, {D});
  fill_uniform(qw, 0.5f, 1.5f);
  fill_uniform(kw, 0.5f, 1.5f);
  std::vector<int32_t> positions(static_cast<size_t>(M));
  for (int64_t t = 0; t < M; ++t) positions[t] = static_cast<int32_t>(100 + t);
  TensorView pos = c.arena->upload(DType::kInt32, {M}, positions.data());
  // Q and K heads read and written in place (V untouched), positions read.
  c.bytes = 2.0 * M * (Hq + Hk) * D * 2 + M * 4.0;
  if (decode(M)) c.target_us = 5;
  else c.target_copy_frac = 0.75;
  c.launch = [=](int set, Stream s) {
    fused_qk_norm_rope(qkv[set], Hq, Hk, Hk, D, 1e-6, qw, kw, 1e6, true, pos, 1.0, 0.0, 0.0, 1.0, -1, s);
  };
  return c;
}

// ---- the op table ----------------------------------------------------------------------------------

struct OpSpec {
  const char* name;
  bool (*applies)(const Preset&);
  OpCase (*build)(const Preset&, int64_t M);
};

bool always(const Preset&) { return true; }
bool softmax_router(const Preset& p) { return p.groups == 1 && p.E <= 256; }
bool grouped_router(const Preset& p) { return p.groups > 1; }
bool kimi_router(const Preset& p) { return p.E == 384; }
bool has_qk_norm(const Preset& p) { return p.heads_q > 0; }

const OpSpec kOps[] = {
    {"topk_softmax", softmax_router, build_topk_softmax},
    {"topk_sigmoid", softmax_router, build_topk_sigmoid},
    {"moe_fused_gate", grouped_router, build_moe_fused_gate},
    {"kimi_k2_moe_fused_gate", kimi_router, build_kimi_k2_gate},
    {"route_and_align_block_size", always, build_route_and_align},
    {"moe_align_block_size", always, build_align},
    {"prepare_moe_input", always, build_prepare_moe_input},
    {"shuffle_rows", always, build_shuffle_rows},
    {"moe_sum", always, build_moe_sum},
    {"moe_sum_reduce", always, build_moe_sum_reduce},
    {"apply_shuffle_mul_sum", always, build_apply_shuffle_mul_sum},
    {"fused_qk_norm_rope", has_qk_norm, build_fused_qk_norm_rope},
};

struct Row {
  std::string preset, op, shape, target, result, note;
  double us = 0, bytes = 0, gbps = 0, pct = 0;
};

void usage() {
  std::printf(
      "usage: moekit_gpu_ops_bench [--preset qwen3|deepseek-v3|kimi-k2|all] [--op SUBSTRING]\n"
      "                            [--csv PATH] [--replays N]\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string preset_filter = "all", op_filter, csv_path;
  Timing timing;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--preset") preset_filter = value();
    else if (a == "--op") op_filter = value();
    else if (a == "--csv") csv_path = value();
    else if (a == "--replays") timing.replays = std::max(1, std::atoi(value().c_str()));
    else {
      usage();
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }

  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  CK(cudaStreamCreateWithFlags(&timing.stream, cudaStreamNonBlocking));
  CK(cudaMalloc(&timing.flush, kFlushBytes));
  const double copy = copy_bandwidth_gbps(timing);
  std::printf("device: %s (%d SMs, L2 %d MiB); copy bandwidth (1 GiB D2D, read + write): %.0f GB/s\n",
              prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, copy);
  std::printf("%-27s %-12s %-40s %10s %12s %8s %7s %12s %s\n", "op", "preset", "shape", "time_us",
              "bytes", "GB/s", "%copy", "target", "result");

  std::vector<Row> rows;
  int failures = 0;
  for (const Preset& p : kPresets) {
    if (preset_filter != "all" && preset_filter != p.name) continue;
    for (const OpSpec& spec : kOps) {
      if (!op_filter.empty() && std::string(spec.name).find(op_filter) == std::string::npos) continue;
      if (!spec.applies(p)) continue;
      std::vector<int64_t> sizes(std::begin(kTokens), std::end(kTokens));
      if (std::string(spec.name) == "moe_align_block_size" && p.E == 256) sizes.push_back(8192);
      for (int64_t M : sizes) {
        Row r;
        r.preset = p.name;
        r.op = spec.name;
        try {
          OpCase c = spec.build(p, M);
          CK(cudaDeviceSynchronize());
          r.shape = c.shape;
          r.us = decode(M) ? time_launches(timing, 1, false, c.launch)
                           : time_launches(timing, c.sets, true, c.launch);
          r.bytes = c.bytes;
          r.gbps = c.bytes / r.us / 1e3;
          r.pct = 100.0 * r.gbps / copy;
          char target[32] = "-";
          r.result = "INFO";
          if (c.target_us > 0) {
            std::snprintf(target, sizeof target, "< %.0f us", c.target_us);
            r.result = r.us < c.target_us ? "PASS" : "FAIL";
          } else if (c.target_copy_frac > 0) {
            std::snprintf(target, sizeof target, ">= %.0f%% copy", 100 * c.target_copy_frac);
            r.result = r.gbps >= c.target_copy_frac * copy ? "PASS" : "FAIL";
          }
          r.target = target;
        } catch (const moekit::Error& e) {
          r.result = "ERROR";
          r.note = e.what();
          cudaGetLastError();
          cudaStreamCaptureStatus status;
          if (cudaStreamIsCapturing(timing.stream, &status) == cudaSuccess &&
              status != cudaStreamCaptureStatusNone) {
            cudaGraph_t g;
            cudaStreamEndCapture(timing.stream, &g);
            if (g) cudaGraphDestroy(g);
          }
        }
        if (r.result == "FAIL" || r.result == "ERROR") ++failures;
        if (r.result == "ERROR")
          std::printf("%-27s %-12s M=%-38lld ERROR: %s\n", r.op.c_str(), r.preset.c_str(),
                      static_cast<long long>(M), r.note.c_str());
        else
          std::printf("%-27s %-12s %-40s %10.2f %12.0f %8.0f %6.1f%% %12s %s\n", r.op.c_str(),
                      r.preset.c_str(), r.shape.c_str(), r.us, r.bytes, r.gbps, r.pct,
                      r.target.c_str(), r.result.c_str());
        std::fflush(stdout);
        rows.push_back(r);
      }
    }
  }

  if (!csv_path.empty()) {
    FILE* f = std::fopen(csv_path.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", csv_path.c_str());
      return 1;
    }
    std::fprintf(f, "op,preset,shape,time_us,bytes,gbps,pct_copy,copy_gbps,target,result,note\n");
    for (const Row& r : rows) {
      std::string note = r.note;
      std::replace(note.begin(), note.end(), '"', '\'');
      std::fprintf(f, "%s,%s,\"%s\",%.3f,%.0f,%.1f,%.2f,%.1f,\"%s\",%s,\"%s\"\n", r.op.c_str(),
                   r.preset.c_str(), r.shape.c_str(), r.us, r.bytes, r.gbps, r.pct, copy,
                   r.target.c_str(), r.result.c_str(), note.c_str());
    }
    std::fclose(f);
    std::printf("wrote %s\n", csv_path.c_str());
  }
  std::printf("%d case(s) failed a target or errored\n", failures);
  CK(cudaFree(timing.flush));
  CK(cudaStreamDestroy(timing.stream));
  return failures ? 1 : 0;
}
