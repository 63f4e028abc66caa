// Tensors as the inference plane passes them around: a name, an Open
// Inference Protocol datatype, a shape and the elements as raw bytes. One
// representation from the HTTP decoder through batching to every backend, so
// that a binary request body can become a backend's input without a
// conversion per element.
//
// Layout of `data`:
//   - fixed-size datatypes (BOOL as one byte 0/1, integers, FP16/32/64):
//     the elements in row-major order, little-endian, packed, exactly
//     element_count() * ElementSize(datatype) bytes;
//   - BYTES: each element as a 4-byte little-endian length followed by its
//     bytes (the layout of Triton's binary tensor extension).
//
// Thread-safety: plain value types; functions are stateless.
//
// Usage:
//   Tensor t = Tensor::FromValues<float>("x", {2, 3}, {1, 2, 3, 4, 5, 6});
//   std::span<const float> v = t.values<float>();
//   ASSIGN_OR_RETURN(Tensor rows, ConcatBatch({&a, &b}));   // dim 0 stacked
#ifndef CAIRN_SERVING_TENSOR_H_
#define CAIRN_SERVING_TENSOR_H_

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace cairn::serving {

enum class DataType {
  kBool,
  kUint8,
  kUint16,
  kUint32,
  kUint64,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kFp16,
  kFp32,
  kFp64,
  kBytes,
};

// The protocol's name: "BOOL", "UINT8", ..., "FP16", "FP32", "FP64", "BYTES".
std::string_view DataTypeName(DataType type);
// Inverse of DataTypeName (exact, upper case); nullopt for anything else.
std::optional<DataType> ParseDataType(std::string_view name);
// Bytes per element; 0 for BYTES (variable size).
size_t ElementSize(DataType type);

// Product of the dimensions; kInvalidArgument for a negative dimension or
// a product that overflows int64.
absl::StatusOr<int64_t> ElementCount(std::span<const int64_t> shape);

struct Tensor {
  std::string name;
  DataType datatype = DataType::kFp32;
  std::vector<int64_t> shape;
  std::string data;  // see the layout above

  // REQUIRES: the tensor is consistent (CheckConsistent() is OK).
  int64_t element_count() const;
  int64_t batch_size() const { return shape.empty() ? 1 : shape[0]; }

  // The elements of a fixed-size datatype as T. REQUIRES: sizeof(T) ==
  // ElementSize(datatype). std::string's buffer is suitably aligned for any
  // scalar type (operator new alignment).
  template <typename T>
  std::span<const T> values() const {
    return {reinterpret_cast<const T*>(data.data()), data.size() / sizeof(T)};
  }
  template <typename T>
  std::span<T> mutable_values() {
    return {reinterpret_cast<T*>(data.data()), data.size() / sizeof(T)};
  }

  template <typename T>
  static Tensor FromValues(std::string name, DataType type, std::vector<int64_t> shape, std::span<const T> values) {
    Tensor t{std::move(name), type, std::move(shape), {}};
    t.data.assign(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
    return t;
  }

  // The elements of a BYTES tensor. REQUIRES: datatype == kBytes and consistent.
  std::vector<std::string_view> byte_elements() const;
  static Tensor FromStrings(std::string name, std::vector<int64_t> shape, std::span<const std::string> elements);

  // kInvalidArgument (naming the tensor) when `data` does not hold exactly
  // the elements `shape` calls for.
  absl::Status CheckConsistent() const;
};

// Stacks tensors of the same name, datatype and trailing dimensions along
// dim 0 (for batching requests). kInvalidArgument if they differ.
absl::StatusOr<Tensor> ConcatBatch(std::span<const Tensor* const> parts);
// Rows [begin, begin + count) of dim 0. REQUIRES: consistent, in range.
Tensor SliceBatch(const Tensor& t, int64_t begin, int64_t count);

}  // namespace cairn::serving

#endif  // CAIRN_SERVING_TENSOR_H_
