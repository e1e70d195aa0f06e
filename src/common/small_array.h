// Per-call scratch of a few entries (e.g. the k row pointers of a token) on the stack, on the heap
// only beyond N entries: no allocation in the common case.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace moekit::detail {

template <typename T, size_t N>
class SmallArray {
 public:
  explicit SmallArray(int64_t n) {
    if (n > static_cast<int64_t>(N)) heap_.resize(static_cast<size_t>(n));
  }
  T* data() { return heap_.empty() ? local_ : heap_.data(); }
  T& operator[](int64_t i) { return data()[i]; }

 private:
  T local_[N];
  std::vector<T> heap_;
};

}  // namespace moekit::detail
