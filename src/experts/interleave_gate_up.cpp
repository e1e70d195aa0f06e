// interleave_gate_up (moekit/experts.h): validate, then a host loop or the CUDA copy kernel.
#include <algorithm>
#include <cstring>

#include "common/backend.h"
#include "common/checks.h"
#include "common/parallel.h"
#include "experts/cuda/interleave_gate_up.h"
#include "moekit/experts.h"

namespace moekit {

void interleave_gate_up(TensorView w13, TensorView out, int dim, Stream stream) {
  using namespace detail;
  check_defined(w13, "w13");
  check_defined(out, "out");
  require(w13.ndim >= 1, "w13: expected at least one dimension, got a 0-d tensor");
  require(dim >= -w13.ndim && dim < w13.ndim, "dim: expected a dimension of w13 (in [", -w13.ndim, ", ",
          w13.ndim, ") for shape ", shape_of(w13), "), got ", dim);
  const int d = dim < 0 ? dim + w13.ndim : dim;
  check_contiguous(w13, "w13");
  check_device(out, "out", w13.device);
  check_same_dtype(out, "out", w13, "w13");
  require(out.ndim == w13.ndim && std::equal(out.shape, out.shape + out.ndim, w13.shape), "out: expected shape ",
          shape_of(w13), " (the shape of w13), got ", shape_of(out));
  check_contiguous(out, "out");
  const int64_t rows = w13.shape[d];
  require(rows % 2 == 0, "w13: expected an even size 2I (gate rows then up rows) along dim ", d, ", got shape ",
          shape_of(w13));
  const size_t bytes = w13.nbytes();
  const auto* src = static_cast<const unsigned char*>(w13.data);
  auto* dst = static_cast<unsigned char*>(out.data);
  require(bytes == 0 || dst + bytes <= src || src + bytes <= dst,
          "out: expected memory that does not overlap w13 (the op cannot run in place)");
  if (bytes == 0) return;

  int64_t outer = 1, inner = 1;
  for (int i = 0; i < d; ++i) outer *= w13.shape[i];
  for (int i = d + 1; i < w13.ndim; ++i) inner *= w13.shape[i];
  const int64_t I = rows / 2, row_bytes = inner * static_cast<int64_t>(dtype_size(w13.dtype));
  if (w13.device.kind == DeviceKind::kCUDA) {
    MOEKIT_CUDA_ONLY(cuda::interleave_gate_up(src, dst, outer, I, row_bytes, stream), "interleave_gate_up");
    return;
  }
  parallel_for(outer * rows, std::max<int64_t>(1, (int64_t{1} << 16) / row_bytes), [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t o = row / rows, r = row % rows;
      const int64_t from = o * rows + (r % 2 ? I + r / 2 : r / 2);
      std::memcpy(dst + row * row_bytes, src + from * row_bytes, static_cast<size_t>(row_bytes));
    }
  });
}

}  // namespace moekit
