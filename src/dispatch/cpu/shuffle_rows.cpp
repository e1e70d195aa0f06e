// CPU shuffle_rows: one memcpy per destination row, threads over rows.
#include <algorithm>
#include <cstring>

#include "common/parallel.h"
#include "dispatch/cpu/kernels.h"

namespace moekit::cpu {

void shuffle_rows(const detail::ShuffleRowsProblem& p) {
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(p.row_bytes, 1));
  detail::parallel_for(p.dst_rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t src = p.dst2src_map[r];
      unsigned char* dst = p.output + r * p.row_bytes;
      if (src >= 0 && src < p.src_rows)
        std::memcpy(dst, p.input + src * p.row_bytes, static_cast<size_t>(p.row_bytes));
      else
        std::memset(dst, 0, static_cast<size_t>(p.row_bytes));
    }
  });
}

}  // namespace moekit::cpu
