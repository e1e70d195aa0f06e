// CPU router: threads over rows; per row the scores (scalar or AVX2, same bits), then the group
// choice and an insertion top-k that scans experts in ascending index so ties keep the lower index.
#include <cmath>
#include <limits>
#include <vector>

#include "common/host_values.h"
#include "common/parallel.h"
#include "moekit/cpu.h"
#include "routing/cpu/kernels.h"
#include "routing/cpu/scores.h"
#include "moekit/route.h"
#include "routing/router_math.h"

namespace moekit::cpu {

using routing::RouterProblem;
using routing::ScoreFunction;

void score_row_scalar(const RouterProblem& p, const float* x, const float* bias, float* key,
                      float* weight) {
  const int E = p.E;
  const float inf = std::numeric_limits<float>::infinity();
  if (p.score == ScoreFunction::kSigmoid) {
    for (int e = 0; e < E; ++e) {
      float s = routing::round_to(routing::router_sigmoid(x[e]), p.rounding);
      float t = bias ? routing::round_to(s + bias[e], p.rounding) : s;
      weight[e] = s == s ? s : 0.f;
      key[e] = routing::nan_to_neg_inf(t);
    }
    return;
  }
  float mx = -inf;
  for (int e = 0; e < E; ++e) {
    float v = x[e];
    if (p.softcap != 0.f) v = routing::router_softcap(v, p.softcap);
    if (bias && p.bias_on_logits) v = v + bias[e];
    v = routing::nan_to_neg_inf(v);
    key[e] = v;
    mx = v > mx ? v : mx;
  }
  double sum = 0;
  for (int e = 0; e < E; ++e) {
    float ex = mx == inf ? (key[e] == inf ? 1.f : 0.f)
               : mx == -inf ? 0.f
                            : routing::router_exp(key[e] - mx);
    key[e] = ex;
    sum += ex;
  }
  for (int e = 0; e < E; ++e) {
    weight[e] = sum > 0 ? static_cast<float>(key[e] / sum) : 0.f;
    if (bias && !p.bias_on_logits) key[e] = routing::nan_to_neg_inf(weight[e] + bias[e]);
  }
}

namespace {

// The k best (key desc, index asc) of keys pushed in ascending index order.
struct TopK {
  float key[kRowCapacity];
  int id[kRowCapacity];
  int n = 0, k = 0;
  explicit TopK(int k_) : k(k_) {}
  void push(float kv, int e) {
    if (n == k && !(kv > key[k - 1])) return;  // an equal key with a higher index loses
    int pos = n < k ? n++ : k - 1;
    while (pos > 0 && key[pos - 1] < kv) {
      key[pos] = key[pos - 1];
      id[pos] = id[pos - 1];
      --pos;
    }
    key[pos] = kv;
    id[pos] = e;
  }
};

void route_row(const RouterProblem& p, const float* key, const float* weight, float* w_out,
               int32_t* id_out) {
  const int G = p.groups, V = p.group_size(), R = p.routed;
  TopK best(R);
  if (G == 1) {
    for (int e = 0; e < p.E; ++e) best.push(key[e], e);
  } else {
    TopK groups(p.topk_group);
    const bool two = p.group_score_terms() == 2;
    for (int g = 0; g < G; ++g) {
      const float* k = key + g * V;
      float b1 = k[0], b2 = -std::numeric_limits<float>::infinity();
      for (int v = 1; v < V; ++v) {
        if (k[v] > b1) {
          b2 = b1;
          b1 = k[v];
        } else if (k[v] > b2) {
          b2 = k[v];
        }
      }
      groups.push(two ? routing::nan_to_neg_inf(routing::round_to(b1 + b2, p.rounding)) : b1, g);
    }
    // Visit the kept groups in ascending order so experts arrive in ascending index.
    bool kept[kRowCapacity] = {};
    for (int j = 0; j < groups.n; ++j) kept[groups.id[j]] = true;
    for (int g = 0; g < G; ++g)
      if (kept[g])
        for (int v = 0; v < V; ++v) best.push(key[g * V + v], g * V + v);
  }
  double sum = 0;
  for (int j = 0; j < R; ++j) sum += weight[best.id[j]];
  for (int j = 0; j < R + p.shared; ++j) {
    double w = j < R ? weight[best.id[j]] : sum / p.rsf;
    if (p.renormalize && sum > 0) w /= sum;
    if (p.scale_by_rsf) w *= p.rsf;
    w_out[j] = static_cast<float>(w);
    id_out[j] = j < R ? best.id[j] : p.E + (j - R);
  }
}

}  // namespace

void route(const RouterProblem& p) {
  const int E = p.E;
  const bool avx2 = cpu_isa() >= CpuIsa::kAvx2;
  alignas(32) float bias[kRowCapacity] = {};
  if (p.bias) {
    TensorView b;
    b.data = const_cast<void*>(p.bias);
    b.dtype = p.bias_dtype;
    for (int e = 0; e < E; ++e) bias[e] = static_cast<float>(detail::load_value(b, e));
  }
  const float* bias_ptr = p.bias ? bias : nullptr;
  const int64_t grain = std::max<int64_t>(1, 8192 / E);
  detail::parallel_for(p.M, grain, [&](int64_t begin, int64_t end) {
    alignas(32) float x[kRowCapacity] = {}, key[kRowCapacity], weight[kRowCapacity];
    for (int64_t m = begin; m < end; ++m) {
      const int64_t base = m * E;
      switch (p.logits_dtype) {
        case DType::kFloat32: {
          const float* src = static_cast<const float*>(p.logits) + base;
          for (int e = 0; e < E; ++e) x[e] = src[e];
          break;
        }
        case DType::kBFloat16: {
          const uint16_t* src = static_cast<const uint16_t*>(p.logits) + base;
          for (int e = 0; e < E; ++e) x[e] = numeric::bf16_to_float(src[e]);
          break;
        }
        default: {
          const uint16_t* src = static_cast<const uint16_t*>(p.logits) + base;
          for (int e = 0; e < E; ++e) x[e] = numeric::half_to_float(src[e]);
        }
      }
      if (avx2)
        score_row_avx2(p, x, bias_ptr, key, weight);
      else
        score_row_scalar(p, x, bias_ptr, key, weight);
      route_row(p, key, weight, p.weights + m * p.slots(), p.ids + m * p.slots());
    }
  });
}

}  // namespace moekit::cpu
