#include "serving/tensor.h"

#include <array>
#include <limits>
#include <utility>

#include <fmt/format.h>

namespace cairn::serving {
namespace {

struct DataTypeInfo {
  DataType type;
  std::string_view name;
  size_t size;
};

// Indexed by the enum's value (static_assert below keeps the two in step).
constexpr std::array<DataTypeInfo, 13> kDataTypes = {{
    {DataType::kBool, "BOOL", 1},
    {DataType::kUint8, "UINT8", 1},
    {DataType::kUint16, "UINT16", 2},
    {DataType::kUint32, "UINT32", 4},
    {DataType::kUint64, "UINT64", 8},
    {DataType::kInt8, "INT8", 1},
    {DataType::kInt16, "INT16", 2},
    {DataType::kInt32, "INT32", 4},
    {DataType::kInt64, "INT64", 8},
    {DataType::kFp16, "FP16", 2},
    {DataType::kFp32, "FP32", 4},
    {DataType::kFp64, "FP64", 8},
    {DataType::kBytes, "BYTES", 0},
}};

constexpr bool DataTypesIndexed() {
  for (size_t i = 0; i < kDataTypes.size(); ++i) {
    if (static_cast<size_t>(kDataTypes[i].type) != i) return false;
  }
  return true;
}
static_assert(DataTypesIndexed());

constexpr size_t kLengthPrefix = 4;

uint32_t ReadLength(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));  // little-endian hosts only (x86-64, arm64)
  return v;
}

std::string FormatShape(std::span<const int64_t> shape) { return fmt::format("[{}]", fmt::join(shape, ",")); }

// Byte offset at which BYTES element `index` starts. REQUIRES: `data` is a
// valid layout with more than `index` elements.
size_t BytesOffset(std::string_view data, int64_t index) {
  size_t at = 0;
  for (int64_t i = 0; i < index; ++i) at += kLengthPrefix + ReadLength(data.data() + at);
  return at;
}

}  // namespace

std::string_view DataTypeName(DataType type) { return kDataTypes[static_cast<size_t>(type)].name; }

std::optional<DataType> ParseDataType(std::string_view name) {
  for (const DataTypeInfo& info : kDataTypes) {
    if (info.name == name) return info.type;
  }
  return std::nullopt;
}

size_t ElementSize(DataType type) { return kDataTypes[static_cast<size_t>(type)].size; }

absl::StatusOr<int64_t> ElementCount(std::span<const int64_t> shape) {
  int64_t count = 1;
  bool overflow = false;
  for (int64_t dim : shape) {
    if (dim < 0) {
      return absl::InvalidArgumentError(fmt::format("shape {}: negative dimension {}", FormatShape(shape), dim));
    }
    // Keep scanning after an overflow: a later 0 makes the product 0, and a
    // later negative dimension is the better message.
    if (!overflow && __builtin_mul_overflow(count, dim, &count)) overflow = true;
  }
  bool has_zero = false;
  for (int64_t dim : shape) has_zero |= dim == 0;
  if (has_zero) return 0;
  if (overflow) {
    return absl::InvalidArgumentError(fmt::format("shape {}: element count overflows int64", FormatShape(shape)));
  }
  return count;
}

int64_t Tensor::element_count() const {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

std::vector<std::string_view> Tensor::byte_elements() const {
  std::vector<std::string_view> out;
  out.reserve(static_cast<size_t>(element_count()));
  size_t at = 0;
  while (at + kLengthPrefix <= data.size()) {
    uint32_t length = ReadLength(data.data() + at);
    out.emplace_back(data.data() + at + kLengthPrefix, length);
    at += kLengthPrefix + length;
  }
  return out;
}

Tensor Tensor::FromStrings(std::string name, std::vector<int64_t> shape, std::span<const std::string> elements) {
  Tensor t{std::move(name), DataType::kBytes, std::move(shape), {}};
  size_t total = 0;
  for (const std::string& e : elements) total += kLengthPrefix + e.size();
  t.data.reserve(total);
  for (const std::string& e : elements) {
    uint32_t length = static_cast<uint32_t>(e.size());
    t.data.append(reinterpret_cast<const char*>(&length), sizeof(length));
    t.data.append(e);
  }
  return t;
}

absl::Status Tensor::CheckConsistent() const {
  absl::StatusOr<int64_t> count = ElementCount(shape);
  if (!count.ok()) return Annotate(count.status(), fmt::format("tensor '{}'", name));
  if (datatype != DataType::kBytes) {
    const size_t size = ElementSize(datatype);
    // Compare without multiplying: count * size may overflow.
    if (data.size() % size != 0 || data.size() / size != static_cast<uint64_t>(*count)) {
      return absl::InvalidArgumentError(fmt::format("tensor '{}': shape {} of {} needs {} elements, data holds {} bytes",
                                                    name, FormatShape(shape), DataTypeName(datatype), *count,
                                                    data.size()));
    }
    return absl::OkStatus();
  }
  size_t at = 0;
  int64_t found = 0;
  while (at < data.size()) {
    if (data.size() - at < kLengthPrefix) {
      return absl::InvalidArgumentError(
          fmt::format("tensor '{}': BYTES element {} has a truncated length prefix", name, found));
    }
    uint32_t length = ReadLength(data.data() + at);
    at += kLengthPrefix;
    if (data.size() - at < length) {
      return absl::InvalidArgumentError(fmt::format(
          "tensor '{}': BYTES element {} needs {} bytes, {} left", name, found, length, data.size() - at));
    }
    at += length;
    ++found;
  }
  if (found != *count) {
    return absl::InvalidArgumentError(fmt::format("tensor '{}': shape {} needs {} elements, data has {}", name,
                                                  FormatShape(shape), *count, found));
  }
  return absl::OkStatus();
}

absl::StatusOr<Tensor> ConcatBatch(std::span<const Tensor* const> parts) {
  if (parts.empty()) return absl::InvalidArgumentError("cannot concatenate an empty list of tensors");
  const Tensor& first = *parts[0];
  if (first.shape.empty()) {
    return absl::InvalidArgumentError(fmt::format("tensor '{}': a scalar has no batch dimension", first.name));
  }
  Tensor out{first.name, first.datatype, first.shape, {}};
  int64_t rows = 0;
  size_t bytes = 0;
  for (const Tensor* part : parts) {
    const bool same_tail = part->shape.size() == first.shape.size() &&
                           std::equal(part->shape.begin() + 1, part->shape.end(), first.shape.begin() + 1);
    if (part->name != first.name || part->datatype != first.datatype || !same_tail) {
      return absl::InvalidArgumentError(
          fmt::format("cannot batch tensor '{}' ({} {}) with '{}' ({} {})", first.name, DataTypeName(first.datatype),
                      FormatShape(first.shape), part->name, DataTypeName(part->datatype), FormatShape(part->shape)));
    }
    RETURN_IF_ERROR(part->CheckConsistent());
    if (__builtin_add_overflow(rows, part->shape[0], &rows)) {
      return absl::InvalidArgumentError(fmt::format("tensor '{}': batch size overflows int64", first.name));
    }
    bytes += part->data.size();
  }
  out.shape[0] = rows;
  RETURN_IF_ERROR(ElementCount(out.shape).status());
  out.data.reserve(bytes);
  for (const Tensor* part : parts) out.data.append(part->data);
  return out;
}

Tensor SliceBatch(const Tensor& t, int64_t begin, int64_t count) {
  Tensor out{t.name, t.datatype, t.shape, {}};
  out.shape[0] = count;
  const int64_t row_elements = t.shape[0] == 0 ? 0 : t.element_count() / t.shape[0];
  if (t.datatype != DataType::kBytes) {
    const size_t row_bytes = static_cast<size_t>(row_elements) * ElementSize(t.datatype);
    out.data.assign(t.data, static_cast<size_t>(begin) * row_bytes, static_cast<size_t>(count) * row_bytes);
    return out;
  }
  std::string_view data(t.data);
  const size_t from = BytesOffset(data, begin * row_elements);
  const size_t to = from + BytesOffset(data.substr(from), count * row_elements);
  out.data.assign(data.substr(from, to - from));
  return out;
}

}  // namespace cairn::serving
