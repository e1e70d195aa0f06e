#include "common/checks.h"
#include "dispatch/cuda/launcher.h"

namespace moekit::cuda {

void moe_align_block_size(const detail::AlignProblem&, Stream) {
  detail::fail("moe_align_block_size: the CUDA kernel is not in this build yet", ErrorKind::NotSupported);
}
void prepare_moe_input(const detail::PrepareProblem&, Stream) {
  detail::fail("prepare_moe_input: the CUDA kernel is not in this build yet", ErrorKind::NotSupported);
}
void shuffle_rows(const detail::ShuffleRowsProblem&, Stream) {
  detail::fail("shuffle_rows: the CUDA kernel is not in this build yet", ErrorKind::NotSupported);
}

}  // namespace moekit::cuda
