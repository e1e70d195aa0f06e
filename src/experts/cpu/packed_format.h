// MKCPU v1 packed weights (spec cpu-moe.md 2.5): the descriptor stored at the start of every packed
// buffer, and the block geometry the kernels and pack/unpack share.
#pragma once

#include <cstdint>

#include "moekit/cpu_experts.h"

namespace moekit::cpu {

constexpr int64_t kBlockRows = 32;        // rows of one packed block
constexpr int64_t kBlockColAlign = 32;    // columns are padded to this
constexpr int64_t kDescriptorBytes = 192;  // the data section starts here (64-byte aligned)

inline int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// Element offset of (row i, col k) inside one block: VNNI-2 with 32 rows per K pair.
inline int64_t vnni2_offset(int64_t i, int64_t k) { return (k / 2) * 64 + 2 * i + (k % 2); }

// Binary layout of the descriptor (little-endian, fixed size).
struct PackedDescriptor {
  char magic[8];  // "MKCPU"
  uint32_t version;
  uint32_t descriptor_bytes;
  uint8_t scheme, dtype, role, w13_source;
  uint32_t reserved0;
  int64_t experts, rows, cols, rows_padded, cols_padded;
  int32_t block_n, block_k, group_size, block_k4;  // unused by BF16/FP16 (0)
  int64_t section_offset[4];  // data, comp, scales, zeros (0 = absent)
  int64_t section_bytes[4];
  int64_t total_bytes;
};
static_assert(sizeof(PackedDescriptor) <= kDescriptorBytes);

// Geometry of one packed matrix family, derived from the descriptor.
struct PackedMatrix {
  const uint16_t* data = nullptr;
  int64_t experts = 0, rows = 0, cols = 0, rows_padded = 0, cols_padded = 0;
  int64_t block_elems = 0;  // 32 * cols_padded
  // For W13: physical block index of gate block j and up block j (j < I_pad / 32).
  int64_t gate_block_step = 1, up_block_first = 0;

  const uint16_t* block(int64_t e, int64_t p) const {
    return data + (e * (rows_padded / kBlockRows) + p) * block_elems;
  }
  const uint16_t* gate_block(int64_t e, int64_t j) const { return block(e, j * gate_block_step); }
  const uint16_t* up_block(int64_t e, int64_t j) const {
    return block(e, up_block_first + j * gate_block_step);
  }
};

// Reads and validates the descriptor of `packed` (a uint8 CPU tensor); `name` names it in errors.
PackedWeightInfo read_packed_info(const TensorView& packed, const char* name);

}  // namespace moekit::cpu
