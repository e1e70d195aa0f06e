// One parameter struct describes every router: the public ops are points in this space, so the
// oracle, the CPU kernel and the CUDA kernel each have one implementation.
//   topk_softmax            softmax, one group
//   topk_sigmoid            sigmoid, one group
//   moe_fused_gate          sigmoid, G groups (group score = best two), rounding to the input type
//   kimi_k2_moe_fused_gate  sigmoid, one group
//   grouped_topk            softmax, G groups (group score = best one), rsf always applied
//   biased_grouped_topk     sigmoid, G groups, fp32 throughout, rsf always applied
#pragma once

#include <cstdint>

#include "moekit/tensor.h"
#include "routing/router_math.h"

#if defined(__CUDACC__)
#define MOEKIT_PROBLEM_HD __host__ __device__
#else
#define MOEKIT_PROBLEM_HD
#endif

namespace moekit::routing {

// The fused route-and-align CUDA kernel handles up to this many (token, slot) pairs in one CTA.
constexpr int64_t kMaxFusedRouteAlignPairs = 4096;

enum class ScoreFunction { kSoftmax, kSigmoid };

struct RouterProblem {
  ScoreFunction score = ScoreFunction::kSoftmax;
  int64_t M = 0;
  int E = 0;
  int routed = 1;      // R routed slots per row
  int shared = 0;      // S shared slots appended: ids E..E+S-1
  int groups = 1;      // G; group size E / G
  int topk_group = 1;  // groups kept
  Rounding rounding = Rounding::kNone;  // sigmoid gates: sigmoid, biased and group scores rounded
  float softcap = 0.f;                  // softmax: c * tanh(x / c) when != 0
  bool bias_on_logits = true;           // softmax: bias added to logits (else selection only)
  bool renormalize = false;
  bool scale_by_rsf = false;  // multiply every slot by rsf at the end
  double rsf = 1.0;

  const void* logits = nullptr;  // [M, E]
  DType logits_dtype = DType::kFloat32;
  const void* bias = nullptr;  // [E] or null
  DType bias_dtype = DType::kFloat32;
  float* weights = nullptr;  // [M, R + S]
  int32_t* ids = nullptr;    // [M, R + S]

  MOEKIT_PROBLEM_HD int slots() const { return routed + shared; }
  MOEKIT_PROBLEM_HD int group_size() const { return E / groups; }
  // Sigmoid gates score a group by its best two experts, the softmax gate by its best one.
  MOEKIT_PROBLEM_HD int group_score_terms() const {
    int terms = score == ScoreFunction::kSigmoid ? 2 : 1;
    return terms < group_size() ? terms : group_size();
  }
};

}  // namespace moekit::routing
