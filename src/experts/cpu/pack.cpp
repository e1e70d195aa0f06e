// Packing into MKCPU v1 (spec cpu-moe.md 2.5), its inverse, and the descriptor checks.
#include <cstring>

#include "common/checks.h"
#include "common/parallel.h"
#include "experts/cpu/packed_format.h"

namespace moekit {
namespace cpu {
namespace {

constexpr char kMagic[8] = {'M', 'K', 'C', 'P', 'U', 0, 0, 0};

struct LogicalShape {
  int64_t experts, rows, cols;
};

LogicalShape logical_shape(const TensorView& weight, const char* name) {
  detail::check_defined(weight, name);
  detail::check_device(weight, name, Device{});
  detail::check_dtype_in(weight, name, {DType::kBFloat16, DType::kFloat16});
  detail::check_contiguous(weight, name);
  detail::require(weight.ndim == 2 || weight.ndim == 3, name, ": expected a 2-D [R, C] or 3-D [E, R, C] tensor, got ",
                  weight.ndim, "-D with shape ", detail::shape_of(weight));
  LogicalShape s{weight.ndim == 3 ? weight.size(0) : 1, weight.size(-2), weight.size(-1)};
  detail::require(s.experts >= 1 && s.rows >= 1 && s.cols >= 1, name,
                  ": expected every dimension >= 1, got shape ", detail::shape_of(weight));
  return s;
}

int64_t padded_rows(int64_t rows, PackedRole role) {
  return role == PackedRole::kW13 ? 2 * round_up(rows / 2, kBlockRows) : round_up(rows, kBlockRows);
}

PackedDescriptor make_descriptor(const LogicalShape& s, DType dtype, PackedRole role, W13Source source) {
  PackedDescriptor d;
  std::memset(&d, 0, sizeof(d));
  std::memcpy(d.magic, kMagic, sizeof(kMagic));
  d.version = 1;
  d.descriptor_bytes = kDescriptorBytes;
  d.scheme = static_cast<uint8_t>(WeightScheme::kBF16);
  d.dtype = static_cast<uint8_t>(dtype);
  d.role = static_cast<uint8_t>(role);
  d.w13_source = static_cast<uint8_t>(source);
  d.experts = s.experts;
  d.rows = s.rows;
  d.cols = s.cols;
  d.rows_padded = padded_rows(s.rows, role);
  d.cols_padded = round_up(s.cols, kBlockColAlign);
  d.section_offset[0] = kDescriptorBytes;
  d.section_bytes[0] = s.experts * d.rows_padded * d.cols_padded * 2;
  d.total_bytes = kDescriptorBytes + round_up(d.section_bytes[0], 64);
  return d;
}

// Logical source row of physical row r of one expert, or -1 for a pad row.
int64_t source_row(const PackedDescriptor& d, int64_t r) {
  if (static_cast<PackedRole>(d.role) != PackedRole::kW13) return r < d.rows ? r : -1;
  const int64_t I = d.rows / 2;
  const int64_t block = r / kBlockRows, j = (block / 2) * kBlockRows + r % kBlockRows;
  if (j >= I) return -1;
  const bool up = block % 2 == 1;
  if (static_cast<W13Source>(d.w13_source) == W13Source::kInterleaved) return 2 * j + (up ? 1 : 0);
  return up ? I + j : j;
}

void check_role(const LogicalShape& s, PackedRole role, const char* name) {
  if (role == PackedRole::kW13)
    detail::require(s.rows % 2 == 0, name, ": expected an even row count 2I for role W13, got ", s.rows);
}

void check_packed_tensor(const TensorView& packed, const char* name) {
  detail::check_defined(packed, name);
  detail::check_device(packed, name, Device{});
  detail::check_dtype(packed, name, DType::kUInt8);
  detail::check_contiguous(packed, name);
}

}  // namespace

PackedWeightInfo read_packed_info(const TensorView& packed, const char* name) {
  check_packed_tensor(packed, name);
  detail::require(static_cast<int64_t>(packed.nbytes()) >= kDescriptorBytes, name,
                  ": expected a moekit packed weight (MKCPU descriptor of ", kDescriptorBytes,
                  " bytes), got ", packed.nbytes(), " bytes");
  PackedDescriptor d;
  std::memcpy(&d, packed.data, sizeof(d));
  detail::require(std::memcmp(d.magic, kMagic, sizeof(kMagic)) == 0, name,
                  ": expected a moekit packed weight (format MKCPU, from pack_moe_weights), got other bytes");
  detail::require(d.version == 1, name, ": expected MKCPU version 1, got version ", d.version);
  PackedWeightInfo info;
  info.version = d.version;
  info.scheme = static_cast<WeightScheme>(d.scheme);
  info.dtype = static_cast<DType>(d.dtype);
  info.role = static_cast<PackedRole>(d.role);
  info.w13_source = static_cast<W13Source>(d.w13_source);
  info.experts = d.experts;
  info.rows = d.rows;
  info.cols = d.cols;
  info.rows_padded = d.rows_padded;
  info.cols_padded = d.cols_padded;
  info.data_offset = d.section_offset[0];
  info.data_bytes = d.section_bytes[0];
  info.total_bytes = d.total_bytes;
  detail::require(info.scheme == WeightScheme::kBF16 &&
                      (info.dtype == DType::kBFloat16 || info.dtype == DType::kFloat16),
                  name, ": expected a BF16/FP16 packed weight, got scheme ", static_cast<int>(info.scheme));
  const PackedDescriptor expect =
      make_descriptor({d.experts, d.rows, d.cols}, info.dtype, info.role, info.w13_source);
  detail::require(d.experts >= 1 && d.rows >= 1 && d.cols >= 1 && d.rows_padded == expect.rows_padded &&
                      d.cols_padded == expect.cols_padded && d.section_offset[0] == kDescriptorBytes &&
                      d.section_bytes[0] == expect.section_bytes[0] && d.total_bytes == expect.total_bytes,
                  name, ": MKCPU descriptor is inconsistent (corrupt buffer)");
  detail::require(static_cast<int64_t>(packed.nbytes()) >= d.total_bytes, name, ": expected ", d.total_bytes,
                  " bytes as its descriptor says, got ", packed.nbytes());
  return info;
}

}  // namespace cpu

size_t packed_weight_bytes(TensorView weight, PackedRole role) {
  const cpu::LogicalShape s = cpu::logical_shape(weight, "weight");
  cpu::check_role(s, role, "weight");
  return static_cast<size_t>(cpu::make_descriptor(s, weight.dtype, role, W13Source::kHalves).total_bytes);
}

void pack_moe_weights(TensorView weight, PackedRole role, TensorView packed, W13Source source) {
  const cpu::LogicalShape s = cpu::logical_shape(weight, "weight");
  cpu::check_role(s, role, "weight");
  cpu::check_packed_tensor(packed, "packed");
  const cpu::PackedDescriptor d = cpu::make_descriptor(s, weight.dtype, role, source);
  detail::require(static_cast<int64_t>(packed.nbytes()) == d.total_bytes, "packed: expected ", d.total_bytes,
                  " bytes (packed_weight_bytes), got ", packed.nbytes());
  unsigned char* base = packed.ptr<unsigned char>();
  std::memset(base, 0, cpu::kDescriptorBytes);
  std::memcpy(base, &d, sizeof(d));
  const uint16_t* src = weight.ptr<uint16_t>();
  uint16_t* dst = reinterpret_cast<uint16_t*>(base + d.section_offset[0]);
  const int64_t blocks_per_expert = d.rows_padded / cpu::kBlockRows, block_elems = cpu::kBlockRows * d.cols_padded;
  detail::parallel_for(s.experts * blocks_per_expert, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t e = b / blocks_per_expert, p = b % blocks_per_expert;
      uint16_t* blk = dst + b * block_elems;
      std::memset(blk, 0, block_elems * 2);
      for (int64_t i = 0; i < cpu::kBlockRows; ++i) {
        const int64_t r = cpu::source_row(d, p * cpu::kBlockRows + i);
        if (r < 0) continue;
        const uint16_t* row = src + (e * s.rows + r) * s.cols;
        for (int64_t k = 0; k < s.cols; ++k) blk[cpu::vnni2_offset(i, k)] = row[k];
      }
    }
  });
  const int64_t tail = d.total_bytes - d.section_offset[0] - d.section_bytes[0];
  std::memset(base + d.section_offset[0] + d.section_bytes[0], 0, tail);
}

PackedWeightInfo packed_weight_info(TensorView packed) { return cpu::read_packed_info(packed, "packed"); }

void unpack_moe_weights(TensorView packed, TensorView weight) {
  const PackedWeightInfo info = cpu::read_packed_info(packed, "packed");
  const cpu::LogicalShape s = cpu::logical_shape(weight, "weight");
  detail::require(s.experts == info.experts && s.rows == info.rows && s.cols == info.cols, "weight: expected [",
                  info.experts, ", ", info.rows, ", ", info.cols, "] (or 2-D when E = 1) as packed, got ",
                  detail::shape_of(weight));
  detail::require(weight.ndim == 3 || info.experts == 1, "weight: expected 3-D for E = ", info.experts);
  detail::require(weight.dtype == info.dtype, "weight: expected ", dtype_name(info.dtype), " as packed, got ",
                  dtype_name(weight.dtype));
  cpu::PackedDescriptor d;
  std::memcpy(&d, packed.data, sizeof(d));
  const uint16_t* src = reinterpret_cast<const uint16_t*>(packed.ptr<unsigned char>() + d.section_offset[0]);
  uint16_t* dst = weight.ptr<uint16_t>();
  const int64_t blocks_per_expert = d.rows_padded / cpu::kBlockRows, block_elems = cpu::kBlockRows * d.cols_padded;
  detail::parallel_for(s.experts * blocks_per_expert, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t e = b / blocks_per_expert, p = b % blocks_per_expert;
      const uint16_t* blk = src + b * block_elems;
      for (int64_t i = 0; i < cpu::kBlockRows; ++i) {
        const int64_t r = cpu::source_row(d, p * cpu::kBlockRows + i);
        if (r < 0) continue;
        uint16_t* row = dst + (e * s.rows + r) * s.cols;
        for (int64_t k = 0; k < s.cols; ++k) row[k] = blk[cpu::vnni2_offset(i, k)];
      }
    }
  });
}

size_t convert_weight_packed_bytes(TensorView weight) { return packed_weight_bytes(weight, PackedRole::kDense); }

void convert_weight_packed(TensorView weight, TensorView packed) {
  pack_moe_weights(weight, PackedRole::kDense, packed, W13Source::kHalves);
}

}  // namespace moekit
