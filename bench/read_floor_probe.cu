// How fast can the bytes of one token's qwen3-30b-a3b layer be read at all, timed the way
// `moekit bench` times a layer (one CUDA graph replay after a 256 MiB memset that evicts L2, events
// around the replay, median of 30)? The bytes are the floor's: w13 (6.29 MB) and w2 (3.15 MB) of 8
// of 128 experts, 75.5 MB. Bare reads only, no arithmetic: a layer of any design that reads these
// bytes takes at least the fastest of these times. Standalone (not part of the CMake build):
//   nvcc -O3 -arch=sm_90a -std=c++17 bench/read_floor_probe.cu -o read_floor_probe && ./read_floor_probe
// scripts/gpu-check runs it in its bench stage. Results: bench/RESULTS.md ("one token's bytes, read bare").
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#define CHECK(x)                                                                     \
  do {                                                                               \
    cudaError_t err_ = (x);                                                          \
    if (err_ != cudaSuccess) {                                                       \
      std::printf("%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(err_));       \
      std::exit(1);                                                                  \
    }                                                                                \
  } while (0)

constexpr int kMaxRegions = 16;

// Byte ranges to read, in 16-byte units.
struct Regions {
  const uint4* p[kMaxRegions];
  long long n[kMaxRegions];
  int count = 0;
  long long total = 0;
  void add(const void* at, long long bytes) {
    p[count] = static_cast<const uint4*>(at);
    n[count++] = bytes / 16;
    total += bytes / 16;
  }
};

__device__ __forceinline__ uint4 load_streaming(const uint4* a) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(a));
  return v;
}

// Each CTA reads one contiguous share of the regions laid end to end (the way a weight-row tile
// reads its own rows), U 16-byte loads in flight a thread. `wait_first`: griddepcontrol.wait before
// any load (a kernel behind another under PDL); `trigger`: let the next kernel's CTAs start at once.
template <int U>
__global__ void read_shares(Regions r, unsigned* sink, int wait_first, int trigger) {
  if (trigger) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  if (wait_first) asm volatile("griddepcontrol.wait;" ::: "memory");
  const long long per = (r.total + gridDim.x - 1) / gridDim.x;
  const long long lo = per * blockIdx.x, hi = min(r.total, lo + per);
  unsigned acc = 0;
  int k = 0;
  long long base = 0;
  while (k < r.count && base + r.n[k] <= lo) base += r.n[k++];
  for (long long i = lo; i < hi && k < r.count; base += r.n[k++]) {
    const long long end = min(hi, base + r.n[k]);
    const uint4* p = r.p[k] - base;
    long long j = i + threadIdx.x;
    for (; j + (U - 1) * blockDim.x < end; j += U * blockDim.x) {
      uint4 v[U];
#pragma unroll
      for (int u = 0; u < U; ++u) v[u] = load_streaming(p + j + u * blockDim.x);
#pragma unroll
      for (int u = 0; u < U; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (; j < end; j += blockDim.x) {
      const uint4 v = load_streaming(p + j);
      acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    i = end;
  }
  if (acc == 0x9e3779b9u) sink[blockIdx.x] = acc;  // never true for the data below; keeps the loads
}

// Region after region, each swept by the whole grid together (consecutive threads, consecutive
// 16 bytes), U loads in flight a thread.
template <int U>
__global__ void read_sweeps(Regions r, unsigned* sink) {
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  unsigned acc = 0;
  for (int k = 0; k < r.count; ++k) {
    const uint4* p = r.p[k];
    const long long n = r.n[k];
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += U * stride) {
      uint4 v[U];
#pragma unroll
      for (int u = 0; u < U; ++u) v[u] = i + u * stride < n ? load_streaming(p + i + u * stride) : make_uint4(0, 0, 0, 0);
#pragma unroll
      for (int u = 0; u < U; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
  }
  if (acc == 0x9e3779b9u) sink[blockIdx.x] = acc;
}

// A combine-sized kernel behind the reads (8 rows of 2048 bf16 in, one out), under PDL.
__global__ void combine_sized(const uint4* src, uint4* dst, int n) {
  asm volatile("griddepcontrol.wait;" ::: "memory");
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) dst[i] = src[i];
}

__global__ void empty_kernel() {}

template <typename Kernel, typename... Args>
void launch(Kernel kernel, int ctas, int threads, cudaStream_t s, bool pdl, Args... args) {
  cudaLaunchConfig_t c = {};
  c.gridDim = ctas;
  c.blockDim = threads;
  c.stream = s;
  cudaLaunchAttribute a[1];
  a[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  a[0].val.programmaticStreamSerializationAllowed = 1;
  c.attrs = a;
  c.numAttrs = pdl ? 1 : 0;
  CHECK(cudaLaunchKernelEx(&c, kernel, args...));
}

// Median us of 30 replays of the graph `enqueue` captures, each after the L2-evicting memset.
template <typename F>
double time_graph(F enqueue, cudaStream_t s, void* flush, size_t flush_bytes) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  enqueue(s);
  CHECK(cudaStreamEndCapture(s, &graph));
  CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 5; ++i) CHECK(cudaGraphLaunch(exec, s));
  std::vector<cudaEvent_t> events(60);
  for (cudaEvent_t& e : events) CHECK(cudaEventCreate(&e));
  for (int i = 0; i < 30; ++i) {
    CHECK(cudaMemsetAsync(flush, 0, flush_bytes, s));
    CHECK(cudaEventRecord(events[2 * i], s));
    CHECK(cudaGraphLaunch(exec, s));
    CHECK(cudaEventRecord(events[2 * i + 1], s));
  }
  CHECK(cudaStreamSynchronize(s));
  std::vector<float> ms(30);
  for (int i = 0; i < 30; ++i) CHECK(cudaEventElapsedTime(&ms[i], events[2 * i], events[2 * i + 1]));
  std::sort(ms.begin(), ms.end());
  for (cudaEvent_t e : events) cudaEventDestroy(e);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return 0.5 * (ms[14] + ms[15]) * 1e3;
}

int main() {
  constexpr long long kExperts = 128, kH = 2048, kI = 768, kTopk = 8;
  constexpr long long kW13 = 2 * kI * kH * 2, kW2 = kH * kI * 2;  // bytes an expert
  const size_t flush_bytes = size_t(256) << 20;
  char *w13, *w2;
  unsigned* sink;
  void* flush;
  uint4 *slots, *out;
  CHECK(cudaMalloc(&w13, kExperts * kW13));
  CHECK(cudaMalloc(&w2, kExperts * kW2));
  CHECK(cudaMalloc(&sink, 1 << 20));
  CHECK(cudaMalloc(&flush, flush_bytes));
  CHECK(cudaMalloc(&slots, kTopk * kH * 2));
  CHECK(cudaMalloc(&out, kH * 2));
  CHECK(cudaMemset(w13, 1, kExperts * kW13));
  CHECK(cudaMemset(w2, 1, kExperts * kW2));
  std::vector<int> experts(kExperts);
  for (int e = 0; e < kExperts; ++e) experts[e] = e;
  std::mt19937 rng(1);
  std::shuffle(experts.begin(), experts.end(), rng);
  Regions all, first, second;  // all = w13s then w2s; first = the w13s, second = the w2s
  for (int t = 0; t < kTopk; ++t) first.add(w13 + experts[t] * kW13, kW13);
  for (int t = 0; t < kTopk; ++t) second.add(w2 + experts[t] * kW2, kW2);
  for (int t = 0; t < kTopk; ++t) all.add(first.p[t], kW13);
  for (int t = 0; t < kTopk; ++t) all.add(second.p[t], kW2);
  const double bytes = all.total * 16.0;

  cudaStream_t s;
  CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  cudaDeviceProp prop{};
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("%s, %d SMs: %.1f MB (w13 + w2 of %lld of %lld qwen3-30b-a3b experts)\n", prop.name, sms, bytes / 1e6,
              kTopk, kExperts);
  auto report = [&](const char* what, double us, double b) {
    std::printf("%-62s %8.2f us %6.0f GB/s\n", what, us, b / (us * 1e-6) / 1e9);
  };
  auto run = [&](const char* what, auto enqueue) { report(what, time_graph(enqueue, s, flush, flush_bytes), bytes); };

  run("empty graph (one empty kernel)", [&](cudaStream_t st) { empty_kernel<<<1, 32, 0, st>>>(); });
  for (int per_sm : {2, 4})
    for (int threads : {256, 512}) {
      char what[96];
      std::snprintf(what, sizeof what, "one kernel, a contiguous share a CTA, %d x %d threads an SM", per_sm, threads);
      run(what, [&](cudaStream_t st) { launch(read_shares<8>, per_sm * sms, threads, st, false, all, sink, 0, 0); });
    }
  for (int per_sm : {1, 2, 4})
    for (int threads : {512, 1024}) {
      if (per_sm * threads > 2048) continue;
      for (int u : {4, 8}) {
        char what[96];
        std::snprintf(what, sizeof what, "one kernel, grid sweeps, %d x %d threads an SM, %d loads ahead", per_sm, threads, u);
        run(what, [&](cudaStream_t st) {
          if (u == 4) read_sweeps<4><<<per_sm * sms, threads, 0, st>>>(all, sink);
          else read_sweeps<8><<<per_sm * sms, threads, 0, st>>>(all, sink);
        });
      }
    }
  run("w13s then w2s, grid sweeps, 2 x 1024 (stream order)", [&](cudaStream_t st) {
    read_sweeps<4><<<2 * sms, 1024, 0, st>>>(first, sink);
    read_sweeps<4><<<2 * sms, 1024, 0, st>>>(second, sink);
  });
  run("w13s then w2s, shares, 4 x 512 (stream order)", [&](cudaStream_t st) {
    launch(read_shares<8>, 4 * sms, 512, st, false, first, sink, 0, 0);
    launch(read_shares<8>, 4 * sms, 512, st, false, second, sink, 0, 0);
  });
  run("the same, w2s under PDL, waiting before their loads", [&](cudaStream_t st) {
    launch(read_shares<8>, 4 * sms, 512, st, false, first, sink, 0, 1);
    launch(read_shares<8>, 4 * sms, 512, st, true, second, sink, 1, 0);
  });
  run("the same + a combine-sized kernel under PDL", [&](cudaStream_t st) {
    launch(read_shares<8>, 4 * sms, 512, st, false, first, sink, 0, 1);
    launch(read_shares<8>, 4 * sms, 512, st, true, second, sink, 1, 1);
    launch(combine_sized, 8, 256, st, true, static_cast<const uint4*>(slots), out, int(kH * 2 / 16));
  });
  Regions big;
  big.add(w13, 1ll << 30);
  report("steady state: 1 GiB, grid sweeps, 4 x 512",
         time_graph([&](cudaStream_t st) { read_sweeps<4><<<4 * sms, 512, 0, st>>>(big, sink); }, s, flush, flush_bytes),
         double(1ll << 30));
  return 0;
}
