// GPU MoE layer benchmark: moekit fused_experts (BF16) on the presets of /work/shared/anchors.md,
// time / floor beside the best anchor. floor = max(bytes / copy bandwidth, flops / bf16 matmul
// peak), both ceilings measured at the start of this run; time = median of CUDA-graph replays with
// a 256 MiB buffer zeroed before each (cold L2).
//   gpu_moe_bench [csv_path] [preset-substring] [M]
// Env: MOEKIT_BENCH_REPS (timed replays per point), MOEKIT_BENCH_FIXED_CEILINGS=1 (skip measuring
// the ceilings and use 3000 GB/s and 790 TFLOP/s: for profiler runs).
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "moekit/gpu_experts.h"

#define CK(x)                                                                       \
  do {                                                                              \
    cudaError_t e_ = (x);                                                           \
    if (e_ != cudaSuccess) {                                                        \
      std::fprintf(stderr, "%s failed: %s (%s:%d)\n", #x, cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(1);                                                                 \
    }                                                                               \
  } while (0)

namespace {

struct Preset {
  const char* name;
  int64_t E, k, H, I;
  double anchor[8];
};

const int64_t kMs[8] = {1, 4, 16, 64, 256, 1024, 4096, 8192};
const Preset kPresets[] = {
    {"qwen3-30b-a3b", 128, 8, 2048, 768, {2.00, 1.34, 1.09, 1.06, 1.10, 1.26, 2.01, 1.83}},
    {"mixtral-8x7b", 8, 2, 4096, 14336, {1.15, 1.05, 1.03, 1.03, 1.10, 1.64, 1.28, 1.17}},
    {"deepseek-v3", 256, 8, 7168, 2048, {1.17, 1.07, 1.01, 1.01, 1.03, 1.13, 1.37, 1.95}},
};

__global__ void fill_normal_bf16(__nv_bfloat16* p, int64_t n, float stddev, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t z = (uint64_t(i) + seed) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const float u1 = ((z & 0xffffffu) + 0.5f) / 16777216.f;
    const float u2 = (((z >> 24) & 0xffffffu) + 0.5f) / 16777216.f;
    p[i] = __float2bfloat16_rn(stddev * sqrtf(-2.f * logf(u1)) * cospif(2.f * u2));
  }
}

void fill(__nv_bfloat16* p, int64_t n, float stddev, uint64_t seed) {
  fill_normal_bf16<<<132 * 8, 256>>>(p, n, stddev, seed);
  CK(cudaGetLastError());
}

float time_ms(cudaEvent_t a, cudaEvent_t b) {
  float ms = 0;
  CK(cudaEventElapsedTime(&ms, a, b));
  return ms;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double measure_copy_bw(cudaStream_t s) {
  const size_t bytes = size_t(1) << 30;
  void *a, *b;
  CK(cudaMalloc(&a, bytes));
  CK(cudaMalloc(&b, bytes));
  CK(cudaMemsetAsync(a, 1, bytes, s));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int i = 0; i < 12; ++i) {
    CK(cudaEventRecord(e0, s));
    CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, s));
    CK(cudaEventRecord(e1, s));
    CK(cudaEventSynchronize(e1));
    if (i >= 2) t.push_back(time_ms(e0, e1));
  }
  CK(cudaFree(a));
  CK(cudaFree(b));
  return 2.0 * bytes / (median(t) * 1e-3);  // bytes read + written per second
}

double measure_matmul_peak(cudaStream_t s) {
  const int n = 8192;
  __nv_bfloat16 *a, *b, *c;
  CK(cudaMalloc(&a, size_t(n) * n * 2));
  CK(cudaMalloc(&b, size_t(n) * n * 2));
  CK(cudaMalloc(&c, size_t(n) * n * 2));
  fill(a, int64_t(n) * n, 1.f, 1);
  fill(b, int64_t(n) * n, 1.f, 2);
  cublasHandle_t h;
  cublasCreate(&h);
  cublasSetStream(h, s);
  const float alpha = 1.f, beta = 0.f;
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int i = 0; i < 12; ++i) {
    CK(cudaEventRecord(e0, s));
    cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a, CUDA_R_16BF, n, b, CUDA_R_16BF, n, &beta, c,
                 CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    CK(cudaEventRecord(e1, s));
    CK(cudaEventSynchronize(e1));
    if (i >= 2) t.push_back(time_ms(e0, e1));
  }
  cublasDestroy(h);
  CK(cudaFree(a));
  CK(cudaFree(b));
  CK(cudaFree(c));
  return 2.0 * n * n * double(n) / (median(t) * 1e-3);
}

// Softmax router on N(0,1) logits, top-k, renormalised (host, deterministic seed).
void route(int64_t M, int64_t E, int64_t k, std::vector<int>& ids, std::vector<float>& w, std::set<int>& touched) {
  std::mt19937_64 rng(1234 + M);
  std::normal_distribution<double> nd;
  ids.resize(M * k);
  w.resize(M * k);
  std::vector<double> p(E);
  std::vector<int> order(E);
  for (int64_t m = 0; m < M; ++m) {
    double mx = -1e300, s = 0;
    for (int64_t e = 0; e < E; ++e) mx = std::max(mx, p[e] = nd(rng));
    for (int64_t e = 0; e < E; ++e) s += p[e] = std::exp(p[e] - mx);
    for (int64_t e = 0; e < E; ++e) order[e] = int(e);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) {
      return p[a] > p[b] || (p[a] == p[b] && a < b);
    });
    double cs = 0;
    for (int64_t t = 0; t < k; ++t) cs += p[order[t]];
    for (int64_t t = 0; t < k; ++t) {
      ids[m * k + t] = order[t];
      w[m * k + t] = float(p[order[t]] / cs);
      touched.insert(order[t]);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* csv_path = argc > 1 ? argv[1] : "gpu_moe_bench.csv";
  const char* only = argc > 2 ? argv[2] : nullptr;
  const int64_t only_m = argc > 3 ? std::atoll(argv[3]) : 0;
  const char* reps_env = std::getenv("MOEKIT_BENCH_REPS");
  const char* fixed_env = std::getenv("MOEKIT_BENCH_FIXED_CEILINGS");
  const bool fixed = fixed_env && *fixed_env == '1';
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  const double bw = fixed ? 3000e9 : measure_copy_bw(s);
  const double peak = fixed ? 790e12 : measure_matmul_peak(s);
  std::printf("device %s (%d SMs); copy %.0f GB/s; bf16 matmul %.0f TFLOP/s\n", prop.name,
              prop.multiProcessorCount, bw / 1e9, peak / 1e12);
  FILE* csv = std::fopen(csv_path, "w");
  if (csv) std::fprintf(csv, "device,preset,E,k,H,I,M,time_us,floor_us,time_over_floor,best_anchor,copy_GBps,matmul_TFLOPs\n");

  void* flush;
  const size_t flush_bytes = size_t(256) << 20;
  CK(cudaMalloc(&flush, flush_bytes));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));

  std::printf("%-16s %6s %10s %10s %8s %8s %s\n", "preset", "M", "time_us", "floor_us", "t/floor", "anchor", "");
  for (const Preset& pr : kPresets) {
    if (only && !std::strstr(pr.name, only)) continue;
    const int64_t E = pr.E, k = pr.k, H = pr.H, I = pr.I;
    __nv_bfloat16 *w13, *w2;
    CK(cudaMalloc(&w13, size_t(E) * 2 * I * H * 2));
    CK(cudaMalloc(&w2, size_t(E) * H * I * 2));
    fill(w13, E * 2 * I * H, 0.02f, 11);
    fill(w2, E * H * I, 0.02f, 12);
    for (int mi = 0; mi < 8; ++mi) {
      const int64_t M = kMs[mi];
      if (only_m && M != only_m) continue;
      std::vector<int> ids;
      std::vector<float> w;
      std::set<int> touched;
      route(M, E, k, ids, w, touched);
      __nv_bfloat16 *x, *out;
      int* d_ids;
      float* d_w;
      CK(cudaMalloc(&x, size_t(M) * H * 2));
      CK(cudaMalloc(&out, size_t(M) * H * 2));
      CK(cudaMalloc(&d_ids, ids.size() * 4));
      CK(cudaMalloc(&d_w, w.size() * 4));
      fill(x, M * H, 1.f, 100 + M);
      CK(cudaMemcpy(d_ids, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(d_w, w.data(), w.size() * 4, cudaMemcpyHostToDevice));
      moekit::Device dev{moekit::DeviceKind::kCUDA, 0};
      moekit::TensorView xv(x, moekit::DType::kBFloat16, {M, H}, dev), ov(out, moekit::DType::kBFloat16, {M, H}, dev);
      moekit::TensorView iv(d_ids, moekit::DType::kInt32, {M, k}, dev), wv(d_w, moekit::DType::kFloat32, {M, k}, dev);
      moekit::ExpertWeights ew13, ew2;
      ew13.weight = moekit::TensorView(w13, moekit::DType::kBFloat16, {E, 2 * I, H}, dev);
      ew2.weight = moekit::TensorView(w2, moekit::DType::kBFloat16, {E, H, I}, dev);
      const size_t ws_bytes = moekit::fused_experts_workspace_size(xv, ew13, ew2, iv);
      void* ws;
      CK(cudaMalloc(&ws, ws_bytes));
      moekit::TensorView wsv(ws, moekit::DType::kUInt8, {int64_t(ws_bytes)}, dev);
      moekit::fused_experts(xv, ew13, ew2, wv, iv, ov, wsv, {}, moekit::Stream{s});
      CK(cudaStreamSynchronize(s));
      cudaGraph_t graph;
      cudaGraphExec_t exec;
      CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
      moekit::fused_experts(xv, ew13, ew2, wv, iv, ov, wsv, {}, moekit::Stream{s});
      CK(cudaStreamEndCapture(s, &graph));
      CK(cudaGraphInstantiate(&exec, graph, 0));
      std::vector<double> t;
      const int reps = reps_env ? std::max(1, std::atoi(reps_env)) : (M >= 4096 ? 15 : 40);
      const int warm = reps_env ? 0 : 3;
      for (int r = 0; r < reps + warm; ++r) {
        CK(cudaMemsetAsync(flush, 0, flush_bytes, s));
        CK(cudaEventRecord(e0, s));
        CK(cudaGraphLaunch(exec, s));
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        if (r >= warm) t.push_back(time_ms(e0, e1) * 1e3);
      }
      const double time_us = median(t);
      const double bytes = double(touched.size()) * 3.0 * I * H * 2 + 2.0 * M * H * 2;
      const double flops = 2.0 * M * k * 3.0 * I * H;
      const double floor_us = std::max(bytes / bw, flops / peak) * 1e6;
      const double ratio = time_us / floor_us;
      std::printf("%-16s %6lld %10.1f %10.1f %8.2f %8.2f %s\n", pr.name, (long long)M, time_us, floor_us, ratio,
                  pr.anchor[mi], ratio <= pr.anchor[mi] ? "beats" : "MISSES");
      std::fflush(stdout);
      if (csv)
        std::fprintf(csv, "%s,%s,%lld,%lld,%lld,%lld,%lld,%.2f,%.2f,%.3f,%.2f,%.0f,%.0f\n", prop.name, pr.name,
                     (long long)E, (long long)k, (long long)H, (long long)I, (long long)M, time_us, floor_us, ratio,
                     pr.anchor[mi], bw / 1e9, peak / 1e12);
      CK(cudaGraphExecDestroy(exec));
      CK(cudaGraphDestroy(graph));
      CK(cudaFree(ws));
      CK(cudaFree(x));
      CK(cudaFree(out));
      CK(cudaFree(d_ids));
      CK(cudaFree(d_w));
    }
    CK(cudaFree(w13));
    CK(cudaFree(w2));
  }
  if (csv) std::fclose(csv);
  return 0;
}
