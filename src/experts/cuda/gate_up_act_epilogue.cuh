// Epilogue of the grouped GEMM 1 when w13 is interleaved (row 2j = gate_j, row 2j+1 = up_j): a CUTLASS
// sm90 epilogue visitor that turns each thread's fp32 accumulator pairs (columns 2j, 2j+1 of one
// row) into act(gate + b) * (up + b), rounds once (R1) and stores it at act[row, j]. The collective
// runs with C and D void (no smem staging, no TMA store): the act rows leave straight from the
// registers, and neither the fp32 gate/up rows nor the activation kernel exist on this path.
// Per-group (expert) pointers come as device arrays indexed by the tile's L coordinate.
#pragma once

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/fusion/sm90_visitor_tma_warpspecialized.hpp"
#include "experts/cuda/expert_gemm.cuh"

namespace moekit::cuda {

namespace gate_up_detail {

// Whether a static (CPY, CPY_M, CPY_N) -> (m, n) layout of one thread's values in one epilogue
// subtile lists whole column pairs: values 2i and 2i+1 in one row, columns c and c+1, c even
// relative to the thread's first value.
template <class Layout>
constexpr bool holds_column_pairs(Layout layout) {
  for (int v = 0; v + 1 < int(cute::size(layout)); v += 2) {
    const auto a = layout(v);
    const auto b = layout(v + 1);
    if (int(cute::get<0>(a)) != int(cute::get<0>(b))) return false;
    if (int(cute::get<1>(b)) != int(cute::get<1>(a)) + 1) return false;
    if (int(cute::get<1>(a)) % 2 != 0) return false;
  }
  return true;
}

// (m, n) in the (M tiler) x (N tiler) block of thread t's first value in `TiledCopy`, whose
// thread-value layout maps (thread, value) to an index into that block, M fastest.
template <class TiledCopy>
constexpr cute::tuple<int, int> first_value_mn(int t) {
  using TV = typename TiledCopy::TiledLayout_TV;
  using Tiler = typename TiledCopy::Tiler_MN;
  constexpr int tile_m = int(cute::size(cute::get<0>(Tiler{})));
  const int index = int(TV{}(t, 0));
  return {int(cute::get<0>(Tiler{})(index % tile_m)), int(cute::get<1>(Tiler{})(index / tile_m))};
}

template <class TiledCopy>
constexpr int copy_threads() {
  return int(cute::size<0>(typename TiledCopy::TiledLayout_TV{}));
}

// Whether every thread of `TiledCopy` starts at an even column (then, with the pairs above and even
// tile and subtile widths, each pair starts at an even absolute column).
template <class TiledCopy>
constexpr bool threads_start_even() {
  for (int t = 0; t < copy_threads<TiledCopy>(); ++t)
    if (cute::get<1>(first_value_mn<TiledCopy>(t)) % 2 != 0) return false;
  return true;
}

// Whether the four threads of each quad (lanes 4i .. 4i+3) start in one row at columns 2q of one
// 8-column block (q = lane % 4), as in the wgmma accumulator layout: then a quad's values of one
// row and block are four adjacent act values, which end() turns into 8-byte stores.
template <class TiledCopy>
constexpr bool quads_share_blocks() {
  for (int t = 0; t < copy_threads<TiledCopy>(); ++t) {
    const auto mine = first_value_mn<TiledCopy>(t), lead = first_value_mn<TiledCopy>(t - t % 4);
    const int n = cute::get<1>(mine);
    if (cute::get<0>(mine) != cute::get<0>(lead) || n % 8 != 2 * (t % 4) || n - cute::get<1>(lead) != 2 * (t % 4))
      return false;
  }
  return true;
}

// Groups of four pairs of one row at columns n, n + 8, n + 16, n + 24 (n % 32 == 0, relative to the
// thread's first value) of a thread's (CPY, CPY_M, CPY_N, EPI_M, EPI_N) -> (m, n) value layout,
// covering every pair (pair i = values 2i, 2i + 1): group g's pairs are member[g][0..3]; ok is false
// when the layout has no such cover (or an odd number of groups, which end() takes two at a time).
template <int Groups>
struct QuadGroups {
  int member[Groups > 0 ? Groups : 1][4] = {};
  bool ok = false;
};

template <int Groups, class Layout>
constexpr QuadGroups<Groups> quad_groups(Layout layout) {
  constexpr int kPairs = int(cute::size(Layout{})) / 2;
  int m[kPairs] = {}, n[kPairs] = {};
  for (int i = 0; i < kPairs; ++i) {  // one layout evaluation per pair (nvcc caps constexpr work)
    const auto c = layout(2 * i);
    m[i] = int(cute::get<0>(c));
    n[i] = int(cute::get<1>(c));
  }
  QuadGroups<Groups> q;
  int g = 0;
  for (int i = 0; i < kPairs; ++i) {
    if (n[i] % 8 != 0) return q;
    if (n[i] % 32 != 0) continue;
    if (g == Groups) return q;
    for (int s = 0; s < 4; ++s) {
      int found = -1;
      for (int j = 0; j < kPairs; ++j)
        if (m[j] == m[i] && n[j] == n[i] + 8 * s) found = j;
      if (found < 0) return q;
      q.member[g][s] = found;
    }
    ++g;
  }
  q.ok = Groups > 0 && g == Groups && Groups % 2 == 0;
  return q;
}

}  // namespace gate_up_detail

// Element: the CUTLASS output type (cutlass::bfloat16_t / half_t); T its CUDA counterpart.
template <class Element, class T>
struct GateUpActStore {
  // With a void D the collective still shapes its (unused) D registers and shared-memory staging
  // by this type. One byte: the whole-tile subtile (grouped_experts.cuh) then stages 32 KB, not 64,
  // and the 128 x 256 cooperative mainloop keeps its four stages (three with 16-bit staging).
  using ElementAux = int8_t;

  struct SharedStorage {};

  struct Arguments {
    T* const* act = nullptr;            // per group: act rows [rows_g, N/2], row-major
    const float* const* bias = nullptr; // per group: the expert's interleaved w13 bias [N]; null: none
    ActKind kind = ActKind::kSilu;
    float alpha = 0.f, limit = 0.f;
  };
  using Params = Arguments;

  template <class ProblemShape>
  static constexpr Params to_underlying_arguments(ProblemShape const&, Arguments const& args, void*) {
    return args;
  }
  template <class ProblemShape>
  static bool can_implement(ProblemShape const& problem_shape, Arguments const&) {
    return cute::get<1>(problem_shape) % 2 == 0;
  }
  template <class ProblemShape>
  static size_t get_workspace_size(ProblemShape const&, Arguments const&) {
    return 0;
  }
  template <class ProblemShape>
  static cutlass::Status initialize_workspace(ProblemShape const&, Arguments const&, void*, cudaStream_t,
                                              cutlass::CudaHostAdapter* = nullptr) {
    return cutlass::Status::kSuccess;
  }

  CUTLASS_HOST_DEVICE GateUpActStore() {}
  CUTLASS_HOST_DEVICE GateUpActStore(Params const& params, SharedStorage const&) : params_ptr(&params) {}

  Params const* params_ptr = nullptr;

  CUTLASS_DEVICE bool is_producer_load_needed() const { return false; }
  CUTLASS_DEVICE bool is_C_load_needed() const { return false; }

  template <class... Args>
  CUTLASS_DEVICE auto get_producer_load_callbacks(
      cutlass::epilogue::fusion::detail::ProducerLoadArgs<Args...> const&) {
    return cutlass::epilogue::fusion::detail::EmptyProducerLoadCallbacks{};
  }

  // tCcD: (CPY, CPY_M, CPY_N, EPI_M, EPI_N) coordinates of the thread's values relative to its first
  // one; residue: the group's (rows, N) minus that first value's coordinate.
  //
  // `visit` only computes: each act value is rounded and kept in registers (two per 32-bit word),
  // and `end` stores them all once the tile's subtile loop is over. The collective closes every
  // subtile with a proxy fence and a warp-group barrier (meant for its TMA store, which this path
  // does not use); the fence waits for the thread's outstanding global stores, so stores issued
  // inside `visit` cost a memory round trip per subtile (ncu, H200, qwen3 M = 4096: GEMM 1 547 us,
  // warps stalled at that barrier on the store scoreboard, against 418 us with fp32 rows).
  //
  // With the wgmma layout (QuadLayout), a quad holds, per row, the pairs of four adjacent 8-column
  // blocks one pair per thread and block: `end` transposes them across the quad (four shuffles per two
  // groups) so that each thread stores the four adjacent act values of one block in one 8-byte store,
  // a quarter of the store instructions of one 2-byte store per value.
  template <class CoordTensor, class Residue, bool QuadLayout>
  struct ConsumerStoreCallbacks : cutlass::epilogue::fusion::detail::EmptyConsumerStoreCallbacks {
    using CoordLayout = typename CoordTensor::layout_type;
    static constexpr int kValues = int(cute::size(CoordLayout{}));                  // the thread's tile
    static constexpr int kSubtileValues = int(cute::size(cute::take<0, 3>(CoordLayout{})));
    static constexpr int kEpiM = int(cute::size<3>(CoordLayout{}));
    static_assert(kValues % 4 == 0 && kSubtileValues % 4 == 0, "act values are kept two per word");

    static constexpr int kGroups = kValues / 8;
    static constexpr bool kQuadStores = QuadLayout && gate_up_detail::quad_groups<kGroups>(CoordLayout{}).ok;

    CUTLASS_DEVICE ConsumerStoreCallbacks(CoordTensor tCcD_, Residue residue_, T* act_, const float* bias_,
                                          int64_t ld_, Params const& params)
        : tCcD(tCcD_), residue(residue_), act(act_), bias(bias_), ld(ld_), kind(params.kind),
          alpha(params.alpha), limit(params.limit) {}

    CoordTensor tCcD;
    Residue residue;
    T* act;             // act row of the thread's first value, at its column / 2
    const float* bias;  // bias at the thread's first column, or null
    int64_t ld;         // N / 2
    // Read from the kernel parameters once a tile, not once a fragment (a load each, then a switch).
    ActKind kind;
    float alpha, limit;
    uint32_t packed[kValues / 4];  // act value of pair i in half i % 2 of word i / 2

    // The pairs of one fragment go through the activation together, with the activation fixed at
    // compile time in each branch: their long-latency chains (exp, division) interleave. A switch
    // per pair (the first version) serialised them.
    template <ActKind K, int Pairs>
    CUTLASS_DEVICE static void activate(float (&r)[Pairs], const float (&g)[Pairs], const float (&u)[Pairs],
                                        float alpha, float limit) {
      CUTLASS_PRAGMA_UNROLL
      for (int p = 0; p < Pairs; ++p) r[p] = gate_up_value(K, alpha, limit, g[p], u[p]);
    }

    template <typename ElementAccumulator, int FragmentSize>
    CUTLASS_DEVICE cutlass::Array<ElementAccumulator, FragmentSize> visit(
        cutlass::Array<ElementAccumulator, FragmentSize> const& frg_acc, int epi_v, int epi_m, int epi_n) {
      static_assert(FragmentSize % 4 == 0, "a visited fragment must hold an even number of column pairs");
      static_assert(gate_up_detail::holds_column_pairs(cute::take<0, 3>(CoordLayout{})),
                    "accumulator values 2i, 2i+1 of a thread must be columns 2j, 2j+1 of one row");
      constexpr int kPairs = FragmentSize / 2;
      // Flat index (over all five modes of tCcD) of the fragment's first value.
      const int first = (epi_n * kEpiM + epi_m) * kSubtileValues + epi_v * FragmentSize;
      float g[kPairs], u[kPairs], r[kPairs];
      CUTLASS_PRAGMA_UNROLL
      for (int p = 0; p < kPairs; ++p) {
        g[p] = frg_acc[2 * p];
        u[p] = frg_acc[2 * p + 1];
      }
      if (bias) {
        CUTLASS_PRAGMA_UNROLL
        for (int p = 0; p < kPairs; ++p) {
          const auto c = tCcD(first + 2 * p);  // column pair (c, c + 1): both in or out
          if (cute::elem_less(c, residue)) {  // two loads: the caller's bias is only 4-byte aligned
            const int n = int(cute::get<1>(c));
            g[p] += bias[n];
            u[p] += bias[n + 1];
          }
        }
      }
      switch (kind) {
        case ActKind::kGeluErf: activate<ActKind::kGeluErf>(r, g, u, alpha, limit); break;
        case ActKind::kGeluTanh: activate<ActKind::kGeluTanh>(r, g, u, alpha, limit); break;
        case ActKind::kSwigluOai: activate<ActKind::kSwigluOai>(r, g, u, alpha, limit); break;
        default: activate<ActKind::kSilu>(r, g, u, alpha, limit); break;
      }
      CUTLASS_PRAGMA_UNROLL
      for (int p = 0; p < kPairs; p += 2) {
        const uint32_t lo = bits_of(MmaTraits<T>::from_float(r[p]));
        const uint32_t hi = bits_of(MmaTraits<T>::from_float(r[p + 1]));
        packed[(first / 2 + p) / 2] = lo | (hi << 16);
      }
      return frg_acc;  // feeds the void D: discarded
    }

    CUTLASS_DEVICE uint32_t value(int i) const { return (packed[i / 2] >> (16 * (i % 2))) & 0xffffu; }

    CUTLASS_DEVICE void end() {
      if constexpr (kQuadStores) {
        constexpr auto kQuad = gate_up_detail::quad_groups<kGroups>(CoordLayout{});  // local: device code
        const int q = int(threadIdx.x % 4), quad_lane0 = int(threadIdx.x % 32) & ~3;
        const int rows = int(cute::get<0>(residue)), cols = int(cute::get<1>(residue));
        // Uniform over a quad: 8-byte stores need the quad's first act value 8-byte aligned.
        const bool aligned = ld % 4 == 0 && reinterpret_cast<uintptr_t>(act - q) % 8 == 0;
        CUTLASS_PRAGMA_UNROLL
        for (int g = 0; g < kGroups; g += 2) {
          // Block s of groups g / g + 1 in halves 0 / 1 of v[s]; thread q ends with block q's four
          // values of the quad (one per thread j: act column 4q + j of the quad's group) in w[j].
          uint32_t v[4], w[4];
          CUTLASS_PRAGMA_UNROLL
          for (int s = 0; s < 4; ++s) v[s] = value(kQuad.member[g][s]) | (value(kQuad.member[g + 1][s]) << 16);
          CUTLASS_PRAGMA_UNROLL
          for (int s = 0; s < 4; ++s) {
            const int give = (q + s) % 4, from = (q + 4 - s) % 4;
            const uint32_t send = give == 0 ? v[0] : give == 1 ? v[1] : give == 2 ? v[2] : v[3];
            const uint32_t got = __shfl_sync(0xffffffffu, send, quad_lane0 + from);
            CUTLASS_PRAGMA_UNROLL
            for (int j = 0; j < 4; ++j) w[j] = from == j ? got : w[j];
          }
          CUTLASS_PRAGMA_UNROLL
          for (int h = 0; h < 2; ++h) {
            const auto c = tCcD(2 * kQuad.member[g + h][0]);
            const int row = int(cute::get<0>(c)), n = int(cute::get<1>(c)) + 6 * q;  // gate column of act 4q
            if (row >= rows) continue;
            T* dst = act + int64_t(row) * ld + n / 2;
            uint32_t x[4];
            CUTLASS_PRAGMA_UNROLL
            for (int j = 0; j < 4; ++j) x[j] = h ? w[j] >> 16 : w[j] & 0xffffu;
            if (aligned && n + 6 < cols) {
              *reinterpret_cast<uint2*>(dst) = make_uint2(x[0] | (x[1] << 16), x[2] | (x[3] << 16));
            } else {
              CUTLASS_PRAGMA_UNROLL
              for (int j = 0; j < 4; ++j)
                if (n + 2 * j < cols) dst[j] = from_bits(static_cast<uint16_t>(x[j]));
            }
          }
        }
      } else {
        CUTLASS_PRAGMA_UNROLL
        for (int i = 0; i < kValues / 2; ++i) {
          const auto c = tCcD(2 * i);
          if (cute::elem_less(c, residue)) {
            const int row = int(cute::get<0>(c)), n = int(cute::get<1>(c));
            const uint32_t word = packed[i / 2];
            act[row * ld + n / 2] = from_bits(static_cast<uint16_t>(i % 2 ? word >> 16 : word & 0xffffu));
          }
        }
      }
    }

    CUTLASS_DEVICE static uint32_t bits_of(T v) {
      uint16_t b;
      memcpy(&b, &v, sizeof b);
      return b;
    }
    CUTLASS_DEVICE static T from_bits(uint16_t b) {
      T v;
      memcpy(&v, &b, sizeof v);
      return v;
    }
  };

  template <bool ReferenceSrc, class... Args>
  CUTLASS_DEVICE auto get_consumer_store_callbacks(
      cutlass::epilogue::fusion::detail::ConsumerStoreArgs<Args...> const& args) {
    using TiledCopy = cute::remove_cvref_t<decltype(args.tiled_copy)>;
    using EpilogueTile = cute::remove_cvref_t<decltype(args.epi_tile)>;
    static_assert(ReferenceSrc, "coordinates are those of the accumulator side");
    static_assert(gate_up_detail::threads_start_even<TiledCopy>(),
                  "each thread's first accumulator column must be even");
    static_assert(int(cute::size<1>(EpilogueTile{})) % 2 == 0, "odd epilogue subtile width");
    const auto [M, N, K, L] = args.problem_shape_mnkl;
    const int group = int(cute::get<3>(args.tile_coord_mnkl));
    // The thread's first value: (rows, N) - residue.
    const int row0 = int(M) - int(cute::get<0>(args.residue_tCcD));
    const int col0 = int(N) - int(cute::get<1>(args.residue_tCcD));
    const int64_t ld = int64_t(N) / 2;
    T* act = params_ptr->act[group] + int64_t(row0) * ld + col0 / 2;
    const float* bias = params_ptr->bias ? params_ptr->bias[group] + col0 : nullptr;
    return ConsumerStoreCallbacks<decltype(args.tCcD), decltype(args.residue_tCcD),
                                  gate_up_detail::quads_share_blocks<TiledCopy>()>(
        args.tCcD, args.residue_tCcD, act, bias, ld, *params_ptr);
  }
};

}  // namespace moekit::cuda
