// Portable expert kernels: plain loops in the one reduction order every path shares (kernels.h).
#include <cmath>
#include <cstring>

#include "common/numeric.h"
#include "experts/cpu/kernels.h"

namespace moekit::cpu {
namespace {

template <DType kDType>
float decode(uint16_t v) {
  return kDType == DType::kBFloat16 ? numeric::bf16_to_float(v) : numeric::half_to_float(v);
}

float round_to(float v, DType dtype) {
  return dtype == DType::kBFloat16 ? numeric::round_bf16(v) : numeric::round_half(v);
}

template <DType kDType>
void gemm(const void* a_panel, int64_t lda, int rows, const uint16_t* w, int64_t kpairs, float* c,
          const uint16_t* next_w, int64_t next_bytes) {
  const float* a = static_cast<const float*>(a_panel);
  for (int r = 0; r < rows; ++r) {
    const float* ar = a + r * lda;
    for (int n = 0; n < 32; ++n) {
      float acc = 0.f;
      for (int64_t p = 0; p < kpairs; ++p) {
        acc = std::fmaf(ar[2 * p + 1], decode<kDType>(w[p * 64 + 2 * n + 1]), acc);
        acc = std::fmaf(ar[2 * p], decode<kDType>(w[p * 64 + 2 * n]), acc);
      }
      c[r * 32 + n] = acc;
    }
  }
}

void activate(const float* gate, const float* up, int count, const ActivationParams& act, DType dtype,
              PanelFormat panel, void* dst) {
  for (int n = 0; n < 32; ++n) {
    const float v = n < count ? round_to(activation_scalar(gate[n], up[n], act), dtype) : 0.f;
    if (panel == PanelFormat::kFloat32)
      static_cast<float*>(dst)[n] = v;
    else
      static_cast<uint16_t*>(dst)[n] = static_cast<uint16_t>(numeric::float_bits(v) >> 16);
  }
}

uint16_t encode(float v, DType dtype) {
  return dtype == DType::kBFloat16 ? numeric::float_to_bf16(v) : numeric::float_to_half(v);
}

void weighted_round(const float* d, float w, int count, DType dtype, uint16_t* dst) {
  for (int n = 0; n < count; ++n) dst[n] = encode(w * d[n], dtype);
}

void sum_rows(const uint16_t* const* y, int rows, float scale, int64_t count, DType dtype, uint16_t* out) {
  for (int64_t n = 0; n < count; ++n) {
    float s = 0.f;
    for (int t = 0; t < rows; ++t)
      s += dtype == DType::kBFloat16 ? decode<DType::kBFloat16>(y[t][n]) : decode<DType::kFloat16>(y[t][n]);
    out[n] = encode(scale * s, dtype);
  }
}

const ExpertKernels kBf16 = {CpuIsa::kScalar, PanelFormat::kFloat32, 4, gemm<DType::kBFloat16>, activate,
                             weighted_round, sum_rows};
const ExpertKernels kFp16 = {CpuIsa::kScalar, PanelFormat::kFloat32, 4, gemm<DType::kFloat16>, activate,
                             weighted_round, sum_rows};

}  // namespace

// Cephes-style expf: n = round(x log2 e), r = x - n ln2 (two-part constant), degree-6 polynomial,
// times 2^n. Every step is an fp32 multiply, add or fused multiply-add so the vector versions can
// repeat it bit for bit.
float exp_approx(float x) {
  if (x != x) return x;
  x = 88.0f < x ? 88.0f : x;
  x = -87.0f > x ? -87.0f : x;
  const float n = std::nearbyint(x * 1.44269504088896341f);
  float r = std::fmaf(n, -0.693359375f, x);
  r = std::fmaf(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = std::fmaf(p, r, 1.3981999507e-3f);
  p = std::fmaf(p, r, 8.3334519073e-3f);
  p = std::fmaf(p, r, 4.1665795894e-2f);
  p = std::fmaf(p, r, 1.6666665459e-1f);
  p = std::fmaf(p, r, 5.0000001201e-1f);
  float y = std::fmaf(p, r * r, r);
  y = y + 1.0f;
  return y * numeric::bits_float(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
}

float activation_scalar(float g, float u, const ActivationParams& act) {
  switch (act.kind) {
    case Activation::kSiluAndMul:
      return (g / (1.0f + exp_approx(-g))) * u;
    case Activation::kSwigluOai: {
      const float gc = act.limit < g ? act.limit : g;
      float uc = act.limit < u ? act.limit : u;
      uc = -act.limit > uc ? -act.limit : uc;
      const float sig = 1.0f / (1.0f + exp_approx(-(act.alpha * gc)));
      return (gc * sig) * (uc + 1.0f);
    }
    case Activation::kGeluAndMul:
      return 0.5f * g * (1.0f + std::erf(g * 0.70710678118654752f)) * u;
    case Activation::kGeluTanhAndMul:
      return 0.5f * g * (1.0f + std::tanh(0.79788456080286536f * (g + 0.044715f * g * g * g))) * u;
    default:
      return 0.f;  // rejected by validation
  }
}

const ExpertKernels* scalar_expert_kernels(DType dtype) {
  return dtype == DType::kBFloat16 ? &kBf16 : &kFp16;
}

}  // namespace moekit::cpu
