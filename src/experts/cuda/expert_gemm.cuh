// Grouped expert GEMM over sorted (token, slot) pairs, swap-AB on mma.sync m16n8k16:
//   C[row, t] = sum_k W[e, row, k] * B[t, k]
// W rows (weights, K contiguous) are the MMA's A side; B rows are the pairs of one expert: in GEMM 1
// the token rows of `hidden` gathered through the sorted pair list, in GEMM 2 the contiguous rows of
// the activation buffer. Operands go global -> shared by 16-byte cp.async in a `stages`-deep ring
// (128-byte XOR swizzle), shared -> registers by ldmatrix.
//
// Epilogues (all in fp32, rounded once to T):
//   kGateUp: A rows of a CTA are interleaved in 16-row groups gate, up, gate, up... so that each
//            thread holds gate and up of the same feature: act(gate + b) * (up + b) -> act_rows.
//            Only the row addresses depend on the w13 layout (halves or gate_up_interleaved).
//   kAct:    act(h + b) (no-mul activations) -> act_rows.
//   kDown:   topk_weight * (h + b) -> down_rows.
// The result tile goes through shared memory and leaves as coalesced 16-byte row stores.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "common/dependent_launch.cuh"
#include "experts/cuda/expert_ids.cuh"

namespace moekit::cuda {

enum class EpilogueKind : int { kGateUp = 0, kAct = 1, kDown = 2 };
enum class ActKind : int { kSilu = 0, kGeluErf, kGeluTanh, kSwigluOai };

struct ExpertGemmParams {
  const void* weight;      // [E, R, K]
  const float* bias;       // [E, R] or null
  int64_t R, K;            // weight rows per expert, depth
  const void* src;         // GEMM 1: hidden [M, K]; GEMM 2: act_rows [P, K]
  const int* sorted_pairs; // [P]; null with pair_experts
  int topk;
  const float* topk_weights;  // [P] by pair index (GEMM 2)
  void* dst;               // [P, out_features]
  int64_t out_features;    // I (GEMM 1) or H (GEMM 2)
  const int4* tiles;
  const int* num_tiles;
  // Pairs in slot order, without route prep (a few tokens): pair i is tile i of one row, its
  // expert topk_ids[i]; ids outside [0, num_experts) are skipped. Null: tiles / sorted_pairs apply.
  const int* pair_experts;
  int64_t pairs;
  int num_experts;
  int row_tiles;           // CTAs along the weight rows
  int tile_group;
  EpilogueKind epilogue;
  bool gate_up_interleaved;  // kGateUp: weight/bias row 2f = gate_f, 2f+1 = up_f (else f, R/2 + f)
  ActKind act;
  float alpha, limit;      // kSwigluOai
};

template <typename T>
struct MmaTraits;
template <>
struct MmaTraits<__nv_bfloat16> {
  static __device__ __forceinline__ void mma(float* c, const uint32_t* a, const uint32_t* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
  static __device__ __forceinline__ __nv_bfloat16 from_float(float v) { return __float2bfloat16_rn(v); }
};
template <>
struct MmaTraits<__half> {
  static __device__ __forceinline__ void mma(float* c, const uint32_t* a, const uint32_t* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
  static __device__ __forceinline__ __half from_float(float v) { return __float2half_rn(v); }
};

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;  // 0 source bytes: the 16 destination bytes are zero-filled
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
// The same with the L2::256B prefetch hint: a 64-deep stage reads 128 bytes of each weight row,
// the hint brings the next stage's 128 bytes into L2 with them.
__device__ __forceinline__ void cp_async_16_l2_256(uint32_t dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t* r, uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t* r, uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(addr));
}

// x * sigmoid(a * x) = x / (1 + 2^(-a x log2 e)) from the approximate exp2 and reciprocal with
// flush-to-zero: five instructions, a few ulp of fp32, far below the bf16 / fp16 rounding that
// follows. __expf / __fdividef add a range check and scaling each (denormal handling) that the
// fused GEMM 1 epilogue pays per output on every tile: with the tile's parameter loads hoisted too,
// that GEMM took 0.8-1.1% less time (ncu, H100 2026-11-27, mixtral-8x7b M = 4096 / 8192,
// deepseek-v3 M = 8192). Infinities and NaN propagate as with the exact formula: x = -inf gives
// -inf * 0 = NaN, as -inf / inf does.
__device__ __forceinline__ float x_sigmoid(float x, float a = 1.f) {
  float e, r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(e) : "f"(x * (-1.4426950408889634f * a)));
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(1.f + e));
  return x * r;
}
__device__ __forceinline__ float silu(float x) { return x_sigmoid(x); }

__device__ __forceinline__ float apply_act(ActKind act, float x) {
  switch (act) {
    case ActKind::kGeluErf: return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
    case ActKind::kGeluTanh: {
      const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.f + tanhf(u));
    }
    default: return silu(x);
  }
}

__device__ __forceinline__ float gate_up_value(ActKind act, float alpha, float limit, float g, float u) {
  if (act == ActKind::kSwigluOai) {
    g = fminf(g, limit);
    u = fminf(fmaxf(u, -limit), limit);
    return (u + 1.f) * x_sigmoid(g, alpha);
  }
  return apply_act(act, g) * u;
}

__device__ __forceinline__ float gate_up(const ExpertGemmParams& p, float g, float u) {
  return gate_up_value(p.act, p.alpha, p.limit, g, u);
}

// Shared-memory element offset of (row, 16-byte chunk) in a [rows][BK] tile, XOR-swizzled over
// groups of 8 chunks (128 bytes) so ldmatrix rows hit distinct banks.
template <int BK>
__device__ __forceinline__ int swz(int row, int chunk) {
  return row * BK + ((chunk ^ (row & 7)) << 3);
}

template <typename T, int BN, int BT, int BK, int WN, int WT, int WK, int STAGES>
struct ExpertGemm {
  static constexpr int kWarps = WN * WT * WK;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kWarpRows = BN / WN;
  static constexpr int kWarpTokens = BT / WT;
  static constexpr int kWarpK = BK / WK;
  static constexpr int MT = kWarpRows / 16;
  static constexpr int NT = kWarpTokens / 8;
  static constexpr int kChunksK = BK / 8;
  static constexpr int kAChunks = BN * kChunksK / kThreads;  // per thread per stage
  static constexpr int kBChunks = (BT * kChunksK + kThreads - 1) / kThreads;
  static constexpr int kStageElems = (BN + BT) * BK;
  static constexpr int kPipeBytes = STAGES * kStageElems * 2;
  static constexpr int kOutStride = BN + 8;  // elements per staged output row (16-byte pad)
  static constexpr int kOutBytes = BT * kOutStride * 2;
  static constexpr int kReduceBytes = (WK - 1) * WN * WT * MT * NT * 4 * 32 * 4;
  static constexpr int kTailBytes = kOutBytes > kReduceBytes ? kOutBytes : kReduceBytes;
  static constexpr int kSmemBytes = (kPipeBytes > kTailBytes ? kPipeBytes : kTailBytes) + BT * 4;
  static_assert(BK % 64 == 0, "128-byte swizzle needs BK a multiple of 64");
  static_assert(BN * kChunksK % kThreads == 0, "A chunks must divide evenly");
  static_assert(kWarpRows % 32 == 0, "gate/up interleave needs an even count of 16-row tiles");
  static_assert(kWarpTokens % 8 == 0 && kWarpK % 16 == 0, "warp tile");
};

template <typename T, int BN, int BT, int BK, int WN, int WT, int WK, int STAGES, int MIN_BLOCKS>
__global__ void __launch_bounds__(WN * WT * WK * 32, MIN_BLOCKS)
    expert_gemm_kernel(const ExpertGemmParams p) {
  using G = ExpertGemm<T, BN, BT, BK, WN, WT, WK, STAGES>;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* smem = reinterpret_cast<T*>(smem_raw);
  float* tok_weight = reinterpret_cast<float*>(smem_raw + (G::kSmemBytes - BT * 4));

  // Block -> (token tile, row tile): `tile_group` token tiles are walked across every row tile
  // before the next group, so gathered rows stay in L2 while the weights stream; consecutive token
  // tiles of one expert share each weight tile back to back.
  // GEMM 1 follows route_prep, whose tile list it reads first: wait, then let GEMM 2 start (GEMM 2
  // reads the tile list and streams its weights before waiting for GEMM 1's activations).
  // One CTA per block, placed by the hardware: persistent CTAs (static stride, next tile prefetched)
  // and weight stages issued ahead of the B setup were both slower on an H100 at every point tried
  // (bench/RESULTS.md, H100 A/B calls of 2026-11-26 16:37-18:12).
  const bool down = p.epilogue == EpilogueKind::kDown;
  if (!down) wait_for_preceding_grid();
  allow_dependent_launch();
  const int64_t bid = blockIdx.x;
  const int64_t group_span = int64_t(p.tile_group) * p.row_tiles;
  const int64_t group = bid / group_span;
  const int64_t in_group = bid - group * group_span;
  const int row_tile = static_cast<int>(in_group / p.tile_group);
  const int64_t tile_idx = group * p.tile_group + in_group % p.tile_group;
  int expert, first, rows;
  if (p.pair_experts) {
    if (tile_idx >= p.pairs) return;
    expert = p.pair_experts[tile_idx];
    if (!is_layer_expert(expert, p.num_experts)) return;
    first = static_cast<int>(tile_idx);
    rows = 1;
  } else {
    if (tile_idx >= *p.num_tiles) return;
    const int4 tile = p.tiles[tile_idx];
    expert = tile.x;
    first = tile.y;
    rows = tile.z;
  }
  auto pair_at = [&](int pos) { return p.sorted_pairs ? p.sorted_pairs[pos] : pos; };

  const int tid = threadIdx.x;
  const int warp = tid >> 5, lane = tid & 31;
  const int wk = warp % WK;
  const int wt = (warp / WK) % WT;
  const int wn = warp / (WK * WT);
  const bool gated = p.epilogue == EpilogueKind::kGateUp;
  const int64_t gate_rows = gated ? p.R / 2 : p.R;  // features = I for GEMM 1 gated

  // Weight row of local A row i (gated: the gate row of feature f, or its up row at +up_offset).
  const int64_t gate_step = p.gate_up_interleaved ? 2 : 1;
  const int64_t up_offset = p.gate_up_interleaved ? 1 : gate_rows;
  auto weight_row = [&](int i, bool& valid) -> int64_t {
    if (gated) {
      const int j = i >> 4;
      const int64_t f = int64_t(row_tile) * (BN / 2) + (j >> 1) * 16 + (i & 15);
      valid = f < gate_rows;
      return f * gate_step + ((j & 1) ? up_offset : 0);
    }
    const int64_t r = int64_t(row_tile) * BN + i;
    valid = r < p.R;
    return r;
  };

  const T* wbase = static_cast<const T*>(p.weight) + int64_t(expert) * p.R * p.K;
  const T* src = static_cast<const T*>(p.src);
  const T* a_ptr[G::kAChunks];
  bool a_ok[G::kAChunks];
  int a_soff[G::kAChunks];
#pragma unroll
  for (int c = 0; c < G::kAChunks; ++c) {
    const int chunk = tid + c * G::kThreads;
    const int row = chunk / G::kChunksK, kc = chunk % G::kChunksK;
    bool ok;
    const int64_t wr = weight_row(row, ok);
    a_ok[c] = ok;
    a_ptr[c] = wbase + (ok ? wr : 0) * p.K + kc * 8;
    a_soff[c] = swz<BK>(row, kc);
  }
  const T* b_ptr[G::kBChunks];
  bool b_ok[G::kBChunks];
  int b_soff[G::kBChunks];
#pragma unroll
  for (int c = 0; c < G::kBChunks; ++c) {
    const int chunk = tid + c * G::kThreads;
    const int row = chunk / G::kChunksK, kc = chunk % G::kChunksK;
    const bool in_tile = chunk < BT * G::kChunksK;
    b_ok[c] = in_tile && row < rows;
    int64_t src_row = 0;
    if (b_ok[c]) {
      const int pos = first + row;
      src_row = p.epilogue == EpilogueKind::kDown ? int64_t(pos) : int64_t(pair_at(pos) / p.topk);
    }
    b_ptr[c] = src + src_row * p.K + kc * 8;
    b_soff[c] = in_tile ? BN * BK + swz<BK>(row, kc) : 0;
  }
  if (p.epilogue == EpilogueKind::kDown) {
    for (int t = tid; t < BT; t += G::kThreads)
      tok_weight[t] = t < rows ? p.topk_weights[pair_at(first + t)] : 0.f;
  }

  const int k_tiles = static_cast<int>((p.K + BK - 1) / BK);
  const uint32_t smem_base = smem_u32(smem);
  auto load_a = [&](int stage, int kt) {
    const int64_t k0 = int64_t(kt) * BK;
    const uint32_t sbase = smem_base + stage * G::kStageElems * 2;
#pragma unroll
    for (int c = 0; c < G::kAChunks; ++c) {
      const int kc = (tid + c * G::kThreads) % G::kChunksK;
      const bool ok = a_ok[c] && k0 + kc * 8 < p.K;
      if constexpr (BK == 64) cp_async_16_l2_256(sbase + a_soff[c] * 2, ok ? a_ptr[c] + k0 : a_ptr[c], ok);
      else cp_async_16(sbase + a_soff[c] * 2, ok ? a_ptr[c] + k0 : a_ptr[c], ok);
    }
  };
  auto load_b = [&](int stage, int kt) {
    const int64_t k0 = int64_t(kt) * BK;
    const uint32_t sbase = smem_base + stage * G::kStageElems * 2;
#pragma unroll
    for (int c = 0; c < G::kBChunks; ++c) {
      if (tid + c * G::kThreads >= BT * G::kChunksK) continue;
      const int kc = (tid + c * G::kThreads) % G::kChunksK;
      const bool ok = b_ok[c] && k0 + kc * 8 < p.K;
      cp_async_16(sbase + b_soff[c] * 2, ok ? b_ptr[c] + k0 : b_ptr[c], ok);
    }
  };

  float acc[G::MT][G::NT][4];
#pragma unroll
  for (int i = 0; i < G::MT; ++i)
#pragma unroll
    for (int j = 0; j < G::NT; ++j)
#pragma unroll
      for (int v = 0; v < 4; ++v) acc[i][j][v] = 0.f;

  // Weights first (they depend on no earlier kernel), then the B rows once they are ready.
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s)
    if (s < k_tiles) load_a(s, s);
  if (down) wait_for_preceding_grid();
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < k_tiles) load_b(s, s);
    cp_async_commit();
  }

  const int a_row0 = wn * G::kWarpRows;
  const int b_row0 = wt * G::kWarpTokens;
  const int k_lo = wk * G::kWarpK;
  for (int kt = 0; kt < k_tiles; ++kt) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();
    const int next = kt + STAGES - 1;
    if (next < k_tiles) {
      load_a(next % STAGES, next);
      load_b(next % STAGES, next);
    }
    cp_async_commit();

    const uint32_t sA = smem_base + (kt % STAGES) * G::kStageElems * 2;
    const uint32_t sB = sA + BN * BK * 2;
    // Token columns of this warp that hold real pairs: n8 blocks past them are skipped (a tile's
    // last token block of an expert is usually part-filled).
    const int warp_tokens = rows - b_row0;
    if (warp_tokens <= 0) continue;
#pragma unroll
    for (int ks = 0; ks < G::kWarpK / 16; ++ks) {
      const int kchunk = (k_lo + ks * 16) / 8;
      uint32_t a[G::MT][4];
#pragma unroll
      for (int i = 0; i < G::MT; ++i) {
        const int row = a_row0 + i * 16 + (lane & 15);
        ldmatrix_x4(a[i], sA + swz<BK>(row, kchunk + (lane >> 4)) * 2);
      }
      uint32_t b[G::NT][2];
#pragma unroll
      for (int j = 0; j < G::NT; j += 2) {
        if (j * 8 >= warp_tokens) break;
        if (j + 1 < G::NT) {
          const int row = b_row0 + j * 8 + (lane & 7) + ((lane >> 4) << 3);
          uint32_t r[4];
          ldmatrix_x4(r, sB + swz<BK>(row, kchunk + ((lane >> 3) & 1)) * 2);
          b[j][0] = r[0];
          b[j][1] = r[1];
          b[j + 1][0] = r[2];
          b[j + 1][1] = r[3];
        } else {
          const int row = b_row0 + j * 8 + (lane & 7);
          ldmatrix_x2(b[j], sB + swz<BK>(row, kchunk + ((lane >> 3) & 1)) * 2);
        }
      }
#pragma unroll
      for (int i = 0; i < G::MT; ++i)
#pragma unroll
        for (int j = 0; j < G::NT; ++j)
          if (j * 8 < warp_tokens) MmaTraits<T>::mma(acc[i][j], a[i], b[j]);
    }
  }
  cp_async_wait<0>();
  __syncthreads();

  // K-split warps: fold into the wk == 0 warp in a fixed order.
  if constexpr (WK > 1) {
    float* red = reinterpret_cast<float*>(smem_raw);
    const int slot = wn * WT + wt;
    constexpr int kVals = G::MT * G::NT * 4;
    if (wk > 0) {
      float* dstp = red + ((wk - 1) * WN * WT + slot) * kVals * 32;
#pragma unroll
      for (int i = 0; i < G::MT; ++i)
#pragma unroll
        for (int j = 0; j < G::NT; ++j)
#pragma unroll
          for (int v = 0; v < 4; ++v) dstp[((i * G::NT + j) * 4 + v) * 32 + lane] = acc[i][j][v];
    }
    __syncthreads();
    if (wk == 0) {
      for (int w = 1; w < WK; ++w) {
        const float* srcp = red + ((w - 1) * WN * WT + slot) * kVals * 32;
#pragma unroll
        for (int i = 0; i < G::MT; ++i)
#pragma unroll
          for (int j = 0; j < G::NT; ++j)
#pragma unroll
            for (int v = 0; v < 4; ++v) acc[i][j][v] += srcp[((i * G::NT + j) * 4 + v) * 32 + lane];
      }
    }
    __syncthreads();
  }

  // Epilogue into a staged [BT][kOutStride] tile of T.
  T* out_tile = smem;
  const int out_width = gated ? BN / 2 : BN;
  const float* bias = p.bias ? p.bias + int64_t(expert) * p.R : nullptr;
  if (wk == 0) {
#pragma unroll
    for (int i = 0; i < G::MT; ++i) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int local = a_row0 + i * 16 + (lane >> 2) + h * 8;  // local A row
        bool ok;
        const int64_t wr = weight_row(local, ok);
        float b_here = 0.f, b_up = 0.f;
        int col;  // column of the staged output tile
        if (gated) {
          if (i & 1) continue;  // the up tile i+1 is consumed with its gate tile i
          col = ((a_row0 / 16 + i) >> 1) * 16 + (lane >> 2) + h * 8;
          if (bias && ok) {
            b_here = bias[wr];
            b_up = bias[wr + up_offset];
          }
        } else {
          col = local;
          if (bias && ok) b_here = bias[wr];
        }
#pragma unroll
        for (int j = 0; j < G::NT; ++j) {
#pragma unroll
          for (int q = 0; q < 2; ++q) {
            const int t = b_row0 + j * 8 + (lane & 3) * 2 + q;
            float v = acc[i][j][h * 2 + q] + b_here;
            if (gated) {
              const float u = (G::MT > 1 ? acc[(i + 1) % G::MT][j][h * 2 + q] : 0.f) + b_up;
              v = gate_up(p, v, u);
            } else if (p.epilogue == EpilogueKind::kAct) {
              v = apply_act(p.act, v);
            } else {
              v *= tok_weight[t];
            }
            out_tile[t * G::kOutStride + col] = MmaTraits<T>::from_float(v);
          }
        }
      }
    }
  }
  __syncthreads();

  // Coalesced 16-byte stores of the valid rows and features.
  const int64_t feat0 = int64_t(row_tile) * out_width;
  const int chunks_per_row = out_width / 8;
  T* dst = static_cast<T*>(p.dst);
  for (int c = tid; c < rows * chunks_per_row; c += G::kThreads) {
    const int t = c / chunks_per_row, ch = c % chunks_per_row;
    const int64_t f = feat0 + ch * 8;
    if (f >= p.out_features) continue;
    const uint4 v = *reinterpret_cast<const uint4*>(out_tile + t * G::kOutStride + ch * 8);
    *reinterpret_cast<uint4*>(dst + int64_t(first + t) * p.out_features + f) = v;
  }
}

}  // namespace moekit::cuda
