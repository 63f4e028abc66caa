#include "serving/oip_codec.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <type_traits>
#include <unordered_set>
#include <utility>

#include <fmt/format.h>
#include <simdjson.h>

namespace cairn::serving {
namespace {

namespace dom = simdjson::dom;

constexpr size_t kLengthPrefix = 4;  // BYTES element length, little-endian uint32

template <typename... Args>
absl::Status Invalid(fmt::format_string<Args...> format, Args&&... args) {
  return absl::InvalidArgumentError(fmt::format(format, std::forward<Args>(args)...));
}

std::string FormatShape(std::span<const int64_t> shape) { return fmt::format("[{}]", fmt::join(shape, ",")); }

// ---------------------------------------------------------------------------
// FP16 (IEEE 754 binary16). Converted straight from double so that a JSON
// number is rounded once (double -> float -> half could round twice).

uint16_t DoubleToHalf(double value) {
  const uint16_t sign = std::signbit(value) ? 0x8000 : 0;
  if (std::isnan(value)) return sign | 0x7E00;
  const double a = std::fabs(value);
  // 65520 lies halfway between the largest half (65504) and 2^16; ties go
  // to the even neighbour, which is infinity.
  if (a >= 65520.0) return sign | 0x7C00;
  if (a == 0.0) return sign;
  int exp = 0;
  std::frexp(a, &exp);  // a = m * 2^exp, m in [0.5, 1)
  const int e = exp - 1;
  // nearbyint rounds to nearest even in the default rounding mode; scaling
  // by a power of two is exact.
  if (e < -14) return sign | static_cast<uint16_t>(std::nearbyint(std::ldexp(a, 24)));  // subnormal
  const int mantissa = static_cast<int>(std::nearbyint(std::ldexp(a, 10 - e)));  // in [1024, 2048]
  // A mantissa rounded up to 2048 carries into the exponent, as it should.
  return sign | static_cast<uint16_t>(((e + 15) << 10) + (mantissa - 1024));
}

double HalfToDouble(uint16_t h) {
  const int exponent = (h >> 10) & 0x1F;
  const int mantissa = h & 0x3FF;
  double v;
  if (exponent == 0) {
    v = std::ldexp(mantissa, -24);
  } else if (exponent == 31) {
    v = mantissa != 0 ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  } else {
    v = std::ldexp(mantissa + 1024, exponent - 25);
  }
  return (h & 0x8000) != 0 ? -v : v;
}

// ---------------------------------------------------------------------------
// Decoding.

// Which side of the protocol a body is on, for field names and messages.
struct Side {
  std::string_view noun;  // "input" / "output"
};
constexpr Side kInputs{"input"};
constexpr Side kOutputs{"output"};

std::string_view JsonTypeName(dom::element e) {
  switch (e.type()) {
    case dom::element_type::ARRAY:
      return "an array";
    case dom::element_type::OBJECT:
      return "an object";
    case dom::element_type::INT64:
    case dom::element_type::UINT64:
      return "an integer";
    case dom::element_type::DOUBLE:
      return "a number";
    case dom::element_type::STRING:
      return "a string";
    case dom::element_type::BOOL:
      return "a boolean";
    case dom::element_type::NULL_VALUE:
      return "null";
  }
  return "a value";
}

// A short JSON rendering of `e` for messages.
std::string Show(dom::element e) {
  std::string text = simdjson::to_string(e);
  if (text.size() > 40) {
    text.resize(37);
    text += "...";
  }
  return text;
}

template <typename T>
void AppendRaw(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(value));
}

template <typename T>
bool AppendInteger(dom::element e, std::string& out) {
  switch (e.type()) {
    case dom::element_type::INT64: {
      const int64_t v = e.get_int64().value_unsafe();
      if (!std::in_range<T>(v)) return false;
      AppendRaw(out, static_cast<T>(v));
      return true;
    }
    case dom::element_type::UINT64: {
      const uint64_t v = e.get_uint64().value_unsafe();
      if (!std::in_range<T>(v)) return false;
      AppendRaw(out, static_cast<T>(v));
      return true;
    }
    default:
      return false;
  }
}

// Numbers, and the strings JSON needs for the values it cannot write.
bool ReadNumber(dom::element e, double* out) {
  switch (e.type()) {
    case dom::element_type::INT64:
      *out = static_cast<double>(e.get_int64().value_unsafe());
      return true;
    case dom::element_type::UINT64:
      *out = static_cast<double>(e.get_uint64().value_unsafe());
      return true;
    case dom::element_type::DOUBLE:
      *out = e.get_double().value_unsafe();
      return true;
    case dom::element_type::STRING: {
      const std::string_view s = e.get_string().value_unsafe();
      if (s == "NaN") {
        *out = std::numeric_limits<double>::quiet_NaN();
      } else if (s == "Infinity") {
        *out = std::numeric_limits<double>::infinity();
      } else if (s == "-Infinity") {
        *out = -std::numeric_limits<double>::infinity();
      } else {
        return false;
      }
      return true;
    }
    default:
      return false;
  }
}

template <typename T>
bool AppendFloat(dom::element e, std::string& out) {
  double d;
  if (!ReadNumber(e, &d)) return false;
  // IEEE conversion: out-of-range magnitudes become infinity, rejected here.
  const T v = static_cast<T>(d);
  if (std::isinf(v) && !std::isinf(d)) return false;
  AppendRaw(out, v);
  return true;
}

bool AppendHalf(dom::element e, std::string& out) {
  double d;
  if (!ReadNumber(e, &d)) return false;
  const uint16_t h = DoubleToHalf(d);
  if ((h & 0x7FFF) == 0x7C00 && !std::isinf(d)) return false;
  AppendRaw(out, h);
  return true;
}

bool AppendBool(dom::element e, std::string& out) {
  bool b;
  if (e.get_bool().get(b) != simdjson::SUCCESS) return false;
  out.push_back(b ? 1 : 0);
  return true;
}

bool AppendString(dom::element e, std::string& out) {
  std::string_view s;
  if (e.get_string().get(s) != simdjson::SUCCESS || s.size() > std::numeric_limits<uint32_t>::max()) return false;
  AppendRaw(out, static_cast<uint32_t>(s.size()));
  out.append(s);
  return true;
}

// Why `e` could not become an element of `type` (the error path only).
std::string DescribeBadElement(dom::element e, DataType type) {
  const bool is_integer = e.type() == dom::element_type::INT64 || e.type() == dom::element_type::UINT64;
  const bool is_number = is_integer || e.type() == dom::element_type::DOUBLE;
  switch (type) {
    case DataType::kBool:
      return fmt::format("expected true or false, got {}", Show(e));
    case DataType::kBytes:
      return fmt::format("expected a string, got {}", JsonTypeName(e));
    case DataType::kFp16:
    case DataType::kFp32:
    case DataType::kFp64:
      if (is_number) return fmt::format("{} is out of range for {}", Show(e), DataTypeName(type));
      return fmt::format("expected a number, got {}", Show(e));
    default:
      if (is_integer) return fmt::format("{} is out of range for {}", Show(e), DataTypeName(type));
      if (is_number) return fmt::format("{} is not an integer", Show(e));
      return fmt::format("expected an integer, got {}", Show(e));
  }
}

// A tensor being decoded: the header fields, read before its data.
struct TensorContext {
  Side side;
  const Tensor& tensor;
  int64_t count;  // elements the shape calls for
};

absl::Status BadElement(const TensorContext& c, int64_t index, dom::element e) {
  return Invalid("{} '{}': element {}: {}", c.side.noun, c.tensor.name, index,
                 DescribeBadElement(e, c.tensor.datatype));
}

template <typename Convert>
absl::Status ReadNested(const TensorContext& c, dom::array a, size_t depth, const Convert& convert,
                        int64_t& index) {
  const std::vector<int64_t>& shape = c.tensor.shape;
  if (a.size() != static_cast<uint64_t>(shape[depth])) {
    return Invalid("{} '{}': data nesting does not match shape {}: dimension {} has {} elements, expected {}",
                   c.side.noun, c.tensor.name, FormatShape(shape), depth, a.size(), shape[depth]);
  }
  const bool leaves = depth + 1 == shape.size();
  for (dom::element e : a) {
    if (leaves) {
      if (!convert(e)) return BadElement(c, index, e);
      ++index;
      continue;
    }
    dom::array inner;
    if (e.get_array().get(inner) != simdjson::SUCCESS) {
      return Invalid("{} '{}': data nesting does not match shape {}: expected an array at depth {}, got {}",
                     c.side.noun, c.tensor.name, FormatShape(shape), depth + 1, Show(e));
    }
    RETURN_IF_ERROR(ReadNested(c, inner, depth + 1, convert, index));
  }
  return absl::OkStatus();
}

// Flat data (every element a scalar) or data nested exactly as the shape.
template <typename Convert>
absl::Status ReadJsonData(const TensorContext& c, dom::array data, const Convert& convert) {
  const bool nested = c.tensor.shape.size() >= 2 && data.size() > 0 && (*data.begin()).is_array();
  if (nested) {
    int64_t index = 0;
    return ReadNested(c, data, 0, convert, index);
  }
  if (data.size() != static_cast<uint64_t>(c.count)) {
    return Invalid("{} '{}': shape {} needs {} elements, data has {}", c.side.noun, c.tensor.name,
                   FormatShape(c.tensor.shape), c.count, data.size());
  }
  int64_t index = 0;
  for (dom::element e : data) {
    if (!convert(e)) return BadElement(c, index, e);
    ++index;
  }
  return absl::OkStatus();
}

absl::Status ReadJsonTensorData(const TensorContext& c, dom::element data_field, size_t json_size, Tensor& t) {
  dom::array data;
  if (data_field.get_array().get(data) != simdjson::SUCCESS) {
    return Invalid("{} '{}': 'data' must be an array, got {}", c.side.noun, t.name, JsonTypeName(data_field));
  }
  // Every element takes at least one byte of JSON, so this bounds the
  // reservation by the body size whatever the shape claims.
  const size_t reserve = static_cast<size_t>(std::min<uint64_t>(static_cast<uint64_t>(c.count), json_size));
  t.data.reserve(reserve * (t.datatype == DataType::kBytes ? kLengthPrefix : ElementSize(t.datatype)));
  std::string& out = t.data;
  switch (t.datatype) {
    case DataType::kBool:
      return ReadJsonData(c, data, [&](dom::element e) { return AppendBool(e, out); });
    case DataType::kUint8:
      return ReadJsonData(c, data, [&](dom::element e) { return AppendInteger<uint8_t>(e, out); });
    case DataType::kUint16:
      return ReadJsonData(c, data, [&](dom::element e) { return AppendInteger<uint16_t>(e, out); });
    case DataType::kUint32:
      return ReadJsonData(c, data, [&](dom::element e) { return AppendInteger<uint32_t>(e, out); });
    case DataType::kUint64:
      return ReadJsonData(c, data, [&](dom::element e) { return AppendInteger<uint64_t>(e, out); });
    case DataType::kInt8:
      return ReadJsonData(c, data, [&](dom::element e) { return AppendInteger<int8_t>(e, out); });
    case DataType::kInt16:
      return ReadJsonData(c, data, [&](dom::element e) { return AppendInteger<int16_t>(e, out); });
    case DataType::kInt32:
      return ReadJsonData(c, data, [&](dom::element e) { return AppendInteger<int32_t>(e, out); });
    case DataType::kInt64:
      return ReadJsonData(c, data, [&](dom::element e) { return AppendInteger<int64_t>(e, out); });
    case DataType::kFp16:
      return ReadJsonData(c, data, [&](dom::element e) { return AppendHalf(e, out); });
    case DataType::kFp32:
      return ReadJsonData(c, data, [&](dom::element e) { return AppendFloat<float>(e, out); });
    case DataType::kFp64:
      return ReadJsonData(c, data, [&](dom::element e) { return AppendFloat<double>(e, out); });
    case DataType::kBytes:
      return ReadJsonData(c, data, [&](dom::element e) { return AppendString(e, out); });
  }
  return absl::InternalError("unhandled datatype");
}

// The binary section of a body, consumed tensor by tensor in order.
struct BinarySection {
  bool present = false;  // the body had an Inference-Header-Content-Length
  std::string_view rest;
};

absl::Status ReadBinaryTensorData(const TensorContext& c, uint64_t declared, BinarySection& binary, Tensor& t) {
  if (!binary.present) {
    return Invalid(
        "{} '{}' has parameters.binary_data_size but the body has no binary data "
        "(no Inference-Header-Content-Length header)",
        c.side.noun, t.name);
  }
  if (t.datatype != DataType::kBytes) {
    const uint64_t size = ElementSize(t.datatype);
    const uint64_t count = static_cast<uint64_t>(c.count);
    const bool matches = count <= std::numeric_limits<uint64_t>::max() / size && count * size == declared;
    if (!matches) {
      return Invalid("{} '{}': binary_data_size {} does not match shape {} of {} ({} elements of {} bytes)",
                     c.side.noun, t.name, declared, FormatShape(t.shape), DataTypeName(t.datatype), count, size);
    }
  }
  if (declared > binary.rest.size()) {
    return Invalid("truncated binary data: {} '{}' needs {} bytes, {} left", c.side.noun, t.name, declared,
                   binary.rest.size());
  }
  const std::string_view part = binary.rest.substr(0, declared);
  binary.rest.remove_prefix(declared);
  if (t.datatype == DataType::kBool) {
    for (size_t i = 0; i < part.size(); ++i) {
      if (part[i] != 0 && part[i] != 1) {
        return Invalid("{} '{}': BOOL element {} is {}, expected 0 or 1", c.side.noun, t.name, i,
                       static_cast<unsigned char>(part[i]));
      }
    }
  } else if (t.datatype == DataType::kBytes) {
    size_t at = 0;
    int64_t found = 0;
    while (at < part.size()) {
      if (part.size() - at < kLengthPrefix) {
        return Invalid("{} '{}': BYTES element {} has a truncated length prefix", c.side.noun, t.name, found);
      }
      uint32_t length;
      std::memcpy(&length, part.data() + at, sizeof(length));
      at += kLengthPrefix;
      if (part.size() - at < length) {
        return Invalid("{} '{}': BYTES element {} needs {} bytes, {} left in its binary data", c.side.noun, t.name,
                       found, length, part.size() - at);
      }
      at += length;
      ++found;
    }
    if (found != c.count) {
      return Invalid("{} '{}': shape {} needs {} elements, binary data has {}", c.side.noun, t.name,
                     FormatShape(t.shape), c.count, found);
    }
  }
  t.data.assign(part);
  return absl::OkStatus();
}

// JSON value -> nlohmann::json, for the free-form "parameters" objects.
Json ToJson(dom::element e) {
  switch (e.type()) {
    case dom::element_type::ARRAY: {
      Json out = Json::array();
      const dom::array items = e.get_array().value_unsafe();
      for (dom::element item : items) out.push_back(ToJson(item));
      return out;
    }
    case dom::element_type::OBJECT: {
      Json out = Json::object();
      const dom::object fields = e.get_object().value_unsafe();
      for (dom::key_value_pair field : fields) out[std::string(field.key)] = ToJson(field.value);
      return out;
    }
    case dom::element_type::INT64:
      return e.get_int64().value_unsafe();
    case dom::element_type::UINT64:
      return e.get_uint64().value_unsafe();
    case dom::element_type::DOUBLE:
      return e.get_double().value_unsafe();
    case dom::element_type::STRING:
      return std::string(e.get_string().value_unsafe());
    case dom::element_type::BOOL:
      return e.get_bool().value_unsafe();
    case dom::element_type::NULL_VALUE:
      return nullptr;
  }
  return nullptr;
}

// Records a field of an object once; a repeated field is an error (simdjson
// keeps duplicates, and which one would win is not obvious to a client).
absl::Status TakeField(std::optional<dom::element>& slot, dom::element value, std::string_view where,
                       std::string_view key) {
  if (slot) return Invalid("{}: duplicate field '{}'", where, key);
  slot = value;
  return absl::OkStatus();
}

absl::StatusOr<std::string_view> GetJsonString(dom::element e, std::string_view where, std::string_view field) {
  std::string_view s;
  if (e.get_string().get(s) != simdjson::SUCCESS) {
    return Invalid("{}: '{}' must be a string, got {}", where, field, JsonTypeName(e));
  }
  return s;
}

absl::StatusOr<dom::object> GetJsonObject(dom::element e, std::string_view where, std::string_view field) {
  dom::object o;
  if (e.get_object().get(o) != simdjson::SUCCESS) {
    return Invalid("{}: '{}' must be an object, got {}", where, field, JsonTypeName(e));
  }
  return o;
}

absl::StatusOr<std::vector<int64_t>> ReadShape(dom::element e, const std::string& where) {
  dom::array dims;
  if (e.get_array().get(dims) != simdjson::SUCCESS) {
    return Invalid("{}: 'shape' must be an array of integers, got {}", where, JsonTypeName(e));
  }
  std::vector<int64_t> shape;
  shape.reserve(dims.size());
  for (dom::element d : dims) {
    switch (d.type()) {
      case dom::element_type::INT64: {
        const int64_t v = d.get_int64().value_unsafe();
        if (v < 0) return Invalid("{}: negative dimension {} in shape", where, v);
        shape.push_back(v);
        break;
      }
      case dom::element_type::UINT64:
        return Invalid("{}: dimension {} in shape is too large", where, d.get_uint64().value_unsafe());
      default:
        return Invalid("{}: 'shape' must be an array of integers, found {}", where, Show(d));
    }
  }
  return shape;
}

// Decodes one tensor object of a request's "inputs" or a response's "outputs".
absl::StatusOr<Tensor> ReadTensor(dom::element item, Side side, size_t position, size_t json_size,
                                  BinarySection& binary) {
  std::string where = fmt::format("{} {}", side.noun, position);
  dom::object obj;
  if (item.get_object().get(obj) != simdjson::SUCCESS) {
    return Invalid("{}: expected an object, got {}", where, JsonTypeName(item));
  }
  std::optional<dom::element> name, shape, datatype, parameters, data;
  for (dom::key_value_pair field : obj) {
    const std::string_view key = field.key;
    if (key == "name") {
      RETURN_IF_ERROR(TakeField(name, field.value, where, key));
    } else if (key == "shape") {
      RETURN_IF_ERROR(TakeField(shape, field.value, where, key));
    } else if (key == "datatype") {
      RETURN_IF_ERROR(TakeField(datatype, field.value, where, key));
    } else if (key == "parameters") {
      RETURN_IF_ERROR(TakeField(parameters, field.value, where, key));
    } else if (key == "data") {
      RETURN_IF_ERROR(TakeField(data, field.value, where, key));
    }
  }
  if (!name) return Invalid("{}: missing 'name'", where);
  Tensor t;
  ASSIGN_OR_RETURN(std::string_view name_text, GetJsonString(*name, where, "name"));
  t.name = std::string(name_text);
  where = fmt::format("{} '{}'", side.noun, t.name);
  if (!datatype) return Invalid("{}: missing 'datatype'", where);
  ASSIGN_OR_RETURN(std::string_view type_name, GetJsonString(*datatype, where, "datatype"));
  std::optional<DataType> type = ParseDataType(type_name);
  if (!type) return Invalid("{}: unknown datatype '{}'", where, type_name);
  t.datatype = *type;
  if (!shape) return Invalid("{}: missing 'shape'", where);
  ASSIGN_OR_RETURN(t.shape, ReadShape(*shape, where));
  absl::StatusOr<int64_t> count = ElementCount(t.shape);
  if (!count.ok()) return Annotate(count.status(), where);

  std::optional<uint64_t> binary_size;
  if (parameters) {
    ASSIGN_OR_RETURN(dom::object params, GetJsonObject(*parameters, where, "parameters"));
    dom::element size;
    if (params["binary_data_size"].get(size) == simdjson::SUCCESS) {
      if (size.type() == dom::element_type::INT64 && size.get_int64().value_unsafe() >= 0) {
        binary_size = static_cast<uint64_t>(size.get_int64().value_unsafe());
      } else if (size.type() == dom::element_type::UINT64) {
        binary_size = size.get_uint64().value_unsafe();
      } else {
        return Invalid("{}: parameters.binary_data_size must be a non-negative integer, got {}", where, Show(size));
      }
    }
  }
  const TensorContext context{side, t, *count};
  if (binary_size) {
    if (data) return Invalid("{}: has both 'data' and parameters.binary_data_size", where);
    RETURN_IF_ERROR(ReadBinaryTensorData(context, *binary_size, binary, t));
  } else {
    if (!data) return Invalid("{}: missing 'data'", where);
    RETURN_IF_ERROR(ReadJsonTensorData(context, *data, json_size, t));
  }
  return t;
}

absl::Status ReadTensors(dom::element list, Side side, std::string_view field, size_t json_size,
                         BinarySection& binary, std::vector<Tensor>& out) {
  dom::array items;
  if (list.get_array().get(items) != simdjson::SUCCESS) {
    return Invalid("'{}' must be an array, got {}", field, JsonTypeName(list));
  }
  out.reserve(items.size());
  std::unordered_set<std::string> names;
  for (dom::element item : items) {
    ASSIGN_OR_RETURN(Tensor t, ReadTensor(item, side, out.size(), json_size, binary));
    if (!names.insert(t.name).second) return Invalid("duplicate {} '{}'", side.noun, t.name);
    out.push_back(std::move(t));
  }
  return absl::OkStatus();
}

// Splits a body into its JSON header and binary section.
absl::StatusOr<std::pair<std::string_view, BinarySection>> SplitBody(std::string_view body,
                                                                     std::optional<size_t> json_length) {
  if (!json_length) return std::pair{body, BinarySection{}};
  if (*json_length == 0) {
    return Invalid(
        "raw binary bodies (Inference-Header-Content-Length: 0) are not supported; send a JSON header "
        "describing the tensors");
  }
  if (*json_length > body.size()) {
    return Invalid("Inference-Header-Content-Length {} exceeds the body size {}", *json_length, body.size());
  }
  return std::pair{body.substr(0, *json_length), BinarySection{true, body.substr(*json_length)}};
}

// nlohmann's SAX parser, used on the error path only, to locate the first
// syntax error (simdjson reports what went wrong but not where).
struct JsonErrorLocator {
  std::optional<size_t> position;
  std::string message;

  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(Json::number_integer_t) { return true; }
  bool number_unsigned(Json::number_unsigned_t) { return true; }
  bool number_float(Json::number_float_t, const std::string&) { return true; }
  bool string(std::string&) { return true; }
  bool binary(Json::binary_t&) { return true; }
  bool start_object(size_t) { return true; }
  bool key(std::string&) { return true; }
  bool end_object() { return true; }
  bool start_array(size_t) { return true; }
  bool end_array() { return true; }
  bool parse_error(size_t at, const std::string&, const nlohmann::detail::exception& e) {
    position = at;
    message = e.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ..." -> "syntax error ..."
    const size_t column = message.find("column ");
    const size_t colon = column == std::string::npos ? std::string::npos : message.find(": ", column);
    if (colon != std::string::npos) message.erase(0, colon + 2);
    return false;
  }
};

absl::Status MalformedJson(std::string_view text, simdjson::error_code error) {
  JsonErrorLocator locator;
  try {
    Json::sax_parse(text.begin(), text.end(), &locator);
  } catch (const std::exception&) {
    locator.position.reset();
  }
  if (locator.position) {
    // nlohmann counts from 1 (the offending character); report a 0-based offset.
    return Invalid("malformed JSON at byte {}: {}", *locator.position > 0 ? *locator.position - 1 : 0,
                   locator.message);
  }
  return Invalid("malformed JSON: {}", simdjson::error_message(error));
}

// simdjson parsers keep their buffers between documents; one per thread
// avoids an allocation per request. Big bodies get a parser of their own so
// that a thread does not hold their buffers forever.
class ParserLease {
 public:
  explicit ParserLease(size_t json_size) {
    if (json_size > kMaxCachedBody) own_ = std::make_unique<dom::parser>();
  }
  dom::parser& parser() {
    if (own_) return *own_;
    thread_local dom::parser cached;
    return cached;
  }

 private:
  static constexpr size_t kMaxCachedBody = 1 << 20;
  std::unique_ptr<dom::parser> own_;
};

absl::StatusOr<dom::object> ParseTopObject(dom::parser& parser, std::string_view json, std::string_view what) {
  dom::element doc;
  simdjson::error_code error = parser.parse(json.data(), json.size(), /*realloc_if_needed=*/true).get(doc);
  if (error != simdjson::SUCCESS) return MalformedJson(json, error);
  dom::object top;
  if (doc.get_object().get(top) != simdjson::SUCCESS) {
    return Invalid("the {} must be a JSON object, got {}", what, JsonTypeName(doc));
  }
  return top;
}

absl::Status ReadRequestedOutputs(dom::element list, std::vector<RequestedOutput>& out) {
  dom::array items;
  if (list.get_array().get(items) != simdjson::SUCCESS) {
    return Invalid("'outputs' must be an array, got {}", JsonTypeName(list));
  }
  std::unordered_set<std::string_view> names;
  for (dom::element item : items) {
    std::string where = fmt::format("requested output {}", out.size());
    dom::object obj;
    if (item.get_object().get(obj) != simdjson::SUCCESS) {
      return Invalid("{}: expected an object, got {}", where, JsonTypeName(item));
    }
    std::optional<dom::element> name, parameters;
    for (dom::key_value_pair field : obj) {
      if (field.key == "name") {
        RETURN_IF_ERROR(TakeField(name, field.value, where, field.key));
      } else if (field.key == "parameters") {
        RETURN_IF_ERROR(TakeField(parameters, field.value, where, field.key));
      }
    }
    if (!name) return Invalid("{}: missing 'name'", where);
    ASSIGN_OR_RETURN(std::string_view name_text, GetJsonString(*name, where, "name"));
    // The view points into the parser's string buffer, stable while it lives.
    if (!names.insert(name_text).second) return Invalid("duplicate requested output '{}'", name_text);
    RequestedOutput requested{std::string(name_text), std::nullopt};
    if (parameters) {
      where = fmt::format("requested output '{}'", name_text);
      ASSIGN_OR_RETURN(dom::object params, GetJsonObject(*parameters, where, "parameters"));
      dom::element binary;
      if (params["binary_data"].get(binary) == simdjson::SUCCESS) {
        bool b;
        if (binary.get_bool().get(b) != simdjson::SUCCESS) {
          return Invalid("{}: parameters.binary_data must be true or false, got {}", where, Show(binary));
        }
        requested.binary_data = b;
      }
    }
    out.push_back(std::move(requested));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Encoding: JSON written straight into the body string.

template <typename T>
void AppendInt(std::string& out, T value) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  out.append(buf, end);
}

// Appends `s` as a JSON string. Bytes that are not valid UTF-8 (possible in
// names a backend made up) are written as \u00XX, one per byte, so that the
// body stays valid JSON.
void AppendJsonString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  const bool utf8 = simdjson::validate_utf8(s.data(), s.size());
  out.push_back('"');
  size_t run = 0;  // start of the bytes not yet copied
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\' && (utf8 || c < 0x80)) continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default: {
        const char escape[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
        out.append(escape, sizeof(escape));
      }
    }
  }
  out.append(s.data() + run, s.size() - run);
  out.push_back('"');
}

// Non-finite values as the strings the decoder accepts; true when written.
bool AppendNonFinite(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "\"NaN\"";
  } else if (std::isinf(value)) {
    out += value > 0 ? "\"Infinity\"" : "\"-Infinity\"";
  } else {
    return false;
  }
  return true;
}

// Shortest text that reads back as the same value.
template <typename T>
void AppendFloatText(std::string& out, T value) {
  if (AppendNonFinite(out, value)) return;
  if (value == 0 && std::signbit(value)) {
    out += "-0.0";  // "-0" would read back as the integer 0
    return;
  }
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  out.append(buf, end);
}

void AppendHalfText(std::string& out, uint16_t h) {
  const double value = HalfToDouble(h);
  if (AppendNonFinite(out, value)) return;
  if (value == 0 && std::signbit(value)) {
    out += "-0.0";
    return;
  }
  // Five significant digits always identify a half; fewer often do. The
  // decimal found is then written in its shortest form ("65500", not
  // "6.55e+04").
  char buf[32];
  double shortest = value;
  for (int precision = 1; precision <= 5; ++precision) {
    char* end = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::general, precision).ptr;
    double back = 0;
    std::from_chars(buf, end, back);
    if (DoubleToHalf(back) == h) {
      shortest = back;
      break;
    }
  }
  out.append(buf, std::to_chars(buf, buf + sizeof(buf), shortest).ptr);
}

template <typename T, typename Write>
void AppendElements(std::string& out, const Tensor& t, const Write& write) {
  bool first = true;
  for (T v : t.values<T>()) {
    if (!first) out.push_back(',');
    first = false;
    write(v);
  }
}

void AppendJsonData(std::string& out, const Tensor& t) {
  out += "\"data\":[";
  switch (t.datatype) {
    case DataType::kBool:
      AppendElements<uint8_t>(out, t, [&](uint8_t v) { out += v != 0 ? "true" : "false"; });
      break;
    case DataType::kUint8:
      AppendElements<uint8_t>(out, t, [&](uint8_t v) { AppendInt(out, v); });
      break;
    case DataType::kUint16:
      AppendElements<uint16_t>(out, t, [&](uint16_t v) { AppendInt(out, v); });
      break;
    case DataType::kUint32:
      AppendElements<uint32_t>(out, t, [&](uint32_t v) { AppendInt(out, v); });
      break;
    case DataType::kUint64:
      AppendElements<uint64_t>(out, t, [&](uint64_t v) { AppendInt(out, v); });
      break;
    case DataType::kInt8:
      AppendElements<int8_t>(out, t, [&](int8_t v) { AppendInt(out, v); });
      break;
    case DataType::kInt16:
      AppendElements<int16_t>(out, t, [&](int16_t v) { AppendInt(out, v); });
      break;
    case DataType::kInt32:
      AppendElements<int32_t>(out, t, [&](int32_t v) { AppendInt(out, v); });
      break;
    case DataType::kInt64:
      AppendElements<int64_t>(out, t, [&](int64_t v) { AppendInt(out, v); });
      break;
    case DataType::kFp16:
      AppendElements<uint16_t>(out, t, [&](uint16_t v) { AppendHalfText(out, v); });
      break;
    case DataType::kFp32:
      AppendElements<float>(out, t, [&](float v) { AppendFloatText(out, v); });
      break;
    case DataType::kFp64:
      AppendElements<double>(out, t, [&](double v) { AppendFloatText(out, v); });
      break;
    case DataType::kBytes: {
      bool first = true;
      for (std::string_view e : t.byte_elements()) {
        if (!first) out.push_back(',');
        first = false;
        AppendJsonString(out, e);
      }
      break;
    }
  }
  out.push_back(']');
}

// BYTES elements that are not valid UTF-8 cannot be JSON strings.
bool NeedsBinary(const Tensor& t) {
  if (t.datatype != DataType::kBytes) return false;
  for (std::string_view e : t.byte_elements()) {
    if (!simdjson::validate_utf8(e.data(), e.size())) return true;
  }
  return false;
}

void AppendTensor(std::string& out, const Tensor& t, bool binary) {
  out += "{\"name\":";
  AppendJsonString(out, t.name);
  out += ",\"datatype\":\"";
  out += DataTypeName(t.datatype);
  out += "\",\"shape\":[";
  for (size_t i = 0; i < t.shape.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendInt(out, t.shape[i]);
  }
  out.push_back(']');
  if (binary) {
    out += ",\"parameters\":{\"binary_data_size\":";
    AppendInt(out, t.data.size());
    out += "}}";
    return;
  }
  out.push_back(',');
  AppendJsonData(out, t);
  out.push_back('}');
}

// Writes `params` (when a non-empty object) as `"parameters":{...},`.
void AppendParameters(std::string& out, const Json& params) {
  if (!params.is_object() || params.empty()) return;
  out += "\"parameters\":";
  // The replacing error handler keeps dump() from throwing on bad UTF-8.
  out += params.dump(-1, ' ', false, Json::error_handler_t::replace);
  out.push_back(',');
}

// Writes the tensors (`binary[i]` says how) as `"<field>":[...]` and returns
// the body, with the binary parts after the JSON.
EncodedBody FinishBody(std::string json, std::span<const Tensor* const> tensors, const std::vector<bool>& binary) {
  EncodedBody out;
  const bool any_binary = std::find(binary.begin(), binary.end(), true) != binary.end();
  if (!any_binary) {
    out.body = std::move(json);
    out.content_type = "application/json";
    return out;
  }
  out.json_header_length = json.size();
  size_t total = json.size();
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (binary[i]) total += tensors[i]->data.size();
  }
  out.body = std::move(json);
  out.body.reserve(total);
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (binary[i]) out.body += tensors[i]->data;
  }
  out.content_type = "application/octet-stream";
  return out;
}

void AppendTensorList(std::string& out, std::string_view field, std::span<const Tensor* const> tensors,
                      const std::vector<bool>& binary) {
  out.push_back('"');
  out += field;
  out += "\":[";
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendTensor(out, *tensors[i], binary[i]);
  }
  out.push_back(']');
}

size_t EstimateJsonSize(std::span<const Tensor* const> tensors) {
  size_t size = 128;
  for (const Tensor* t : tensors) size += 64 + t->name.size() + t->data.size() * 3;
  return size;
}

}  // namespace

bool InferRequest::WantsBinary(std::string_view name) const {
  for (const RequestedOutput& o : outputs) {
    if (o.name == name) return o.binary_data.value_or(binary_data_output);
  }
  return binary_data_output;
}

absl::StatusOr<InferRequest> DecodeInferRequest(std::string_view body, std::optional<size_t> json_length) {
  ASSIGN_OR_RETURN(auto split, SplitBody(body, json_length));
  auto [json, binary] = split;
  ParserLease lease(json.size());
  ASSIGN_OR_RETURN(dom::object top, ParseTopObject(lease.parser(), json, "request body"));
  std::optional<dom::element> id, parameters, inputs, outputs;
  for (dom::key_value_pair field : top) {
    if (field.key == "id") {
      RETURN_IF_ERROR(TakeField(id, field.value, "request", field.key));
    } else if (field.key == "parameters") {
      RETURN_IF_ERROR(TakeField(parameters, field.value, "request", field.key));
    } else if (field.key == "inputs") {
      RETURN_IF_ERROR(TakeField(inputs, field.value, "request", field.key));
    } else if (field.key == "outputs") {
      RETURN_IF_ERROR(TakeField(outputs, field.value, "request", field.key));
    }
  }
  InferRequest request;
  if (id) {
    ASSIGN_OR_RETURN(std::string_view text, GetJsonString(*id, "request", "id"));
    request.id = std::string(text);
  }
  if (parameters) {
    ASSIGN_OR_RETURN(dom::object params, GetJsonObject(*parameters, "request", "parameters"));
    for (dom::key_value_pair field : params) {
      if (field.key != "binary_data_output") {
        request.parameters[std::string(field.key)] = ToJson(field.value);
        continue;
      }
      bool b;
      if (field.value.get_bool().get(b) != simdjson::SUCCESS) {
        return Invalid("request: parameters.binary_data_output must be true or false, got {}", Show(field.value));
      }
      request.binary_data_output = b;
    }
  }
  if (!inputs) return Invalid("request: missing 'inputs'");
  RETURN_IF_ERROR(ReadTensors(*inputs, kInputs, "inputs", json.size(), binary, request.inputs));
  if (outputs) RETURN_IF_ERROR(ReadRequestedOutputs(*outputs, request.outputs));
  if (!binary.rest.empty()) {
    return Invalid("{} trailing bytes after the binary data of the last input", binary.rest.size());
  }
  return request;
}

absl::StatusOr<InferResponse> DecodeInferResponse(std::string_view body, std::optional<size_t> json_length) {
  ASSIGN_OR_RETURN(auto split, SplitBody(body, json_length));
  auto [json, binary] = split;
  ParserLease lease(json.size());
  ASSIGN_OR_RETURN(dom::object top, ParseTopObject(lease.parser(), json, "response body"));
  std::optional<dom::element> model_name, model_version, id, parameters, outputs;
  for (dom::key_value_pair field : top) {
    if (field.key == "model_name") {
      RETURN_IF_ERROR(TakeField(model_name, field.value, "response", field.key));
    } else if (field.key == "model_version") {
      RETURN_IF_ERROR(TakeField(model_version, field.value, "response", field.key));
    } else if (field.key == "id") {
      RETURN_IF_ERROR(TakeField(id, field.value, "response", field.key));
    } else if (field.key == "parameters") {
      RETURN_IF_ERROR(TakeField(parameters, field.value, "response", field.key));
    } else if (field.key == "outputs") {
      RETURN_IF_ERROR(TakeField(outputs, field.value, "response", field.key));
    }
  }
  InferResponse response;
  const std::pair<std::optional<dom::element>*, std::string*> strings[] = {
      {&model_name, &response.model_name}, {&model_version, &response.model_version}, {&id, &response.id}};
  const std::string_view string_fields[] = {"model_name", "model_version", "id"};
  for (size_t i = 0; i < std::size(strings); ++i) {
    if (!*strings[i].first) continue;
    ASSIGN_OR_RETURN(std::string_view text, GetJsonString(**strings[i].first, "response", string_fields[i]));
    *strings[i].second = std::string(text);
  }
  if (parameters) {
    RETURN_IF_ERROR(GetJsonObject(*parameters, "response", "parameters").status());
    response.parameters = ToJson(*parameters);
  }
  if (!outputs) return Invalid("response: missing 'outputs'");
  RETURN_IF_ERROR(ReadTensors(*outputs, kOutputs, "outputs", json.size(), binary, response.outputs));
  if (!binary.rest.empty()) {
    return Invalid("{} trailing bytes after the binary data of the last output", binary.rest.size());
  }
  return response;
}

EncodedBody EncodeInferResponse(const InferResponse& response, const InferRequest& asked) {
  std::vector<const Tensor*> tensors;
  std::vector<bool> binary;
  tensors.reserve(response.outputs.size());
  for (const Tensor& t : response.outputs) {
    if (!asked.outputs.empty() &&
        std::none_of(asked.outputs.begin(), asked.outputs.end(),
                     [&](const RequestedOutput& o) { return o.name == t.name; })) {
      continue;
    }
    tensors.push_back(&t);
    binary.push_back(asked.WantsBinary(t.name) || NeedsBinary(t));
  }
  std::string json;
  json.reserve(EstimateJsonSize(tensors));
  json += "{\"model_name\":";
  AppendJsonString(json, response.model_name);
  json.push_back(',');
  if (!response.model_version.empty()) {
    json += "\"model_version\":";
    AppendJsonString(json, response.model_version);
    json.push_back(',');
  }
  if (!response.id.empty()) {
    json += "\"id\":";
    AppendJsonString(json, response.id);
    json.push_back(',');
  }
  AppendParameters(json, response.parameters);
  AppendTensorList(json, "outputs", tensors, binary);
  json.push_back('}');
  return FinishBody(std::move(json), tensors, binary);
}

EncodedBody EncodeInferRequest(const InferRequest& request, bool binary_inputs) {
  std::vector<const Tensor*> tensors;
  std::vector<bool> binary;
  tensors.reserve(request.inputs.size());
  for (const Tensor& t : request.inputs) {
    tensors.push_back(&t);
    binary.push_back(binary_inputs || NeedsBinary(t));
  }
  std::string json;
  json.reserve(EstimateJsonSize(tensors));
  json.push_back('{');
  if (!request.id.empty()) {
    json += "\"id\":";
    AppendJsonString(json, request.id);
    json.push_back(',');
  }
  if (request.binary_data_output) {
    Json params = request.parameters.is_object() ? request.parameters : Json::object();
    params["binary_data_output"] = true;
    AppendParameters(json, params);
  } else {
    AppendParameters(json, request.parameters);
  }
  AppendTensorList(json, "inputs", tensors, binary);
  if (!request.outputs.empty()) {
    json += ",\"outputs\":[";
    for (size_t i = 0; i < request.outputs.size(); ++i) {
      const RequestedOutput& o = request.outputs[i];
      if (i > 0) json.push_back(',');
      json += "{\"name\":";
      AppendJsonString(json, o.name);
      if (o.binary_data) {
        json += *o.binary_data ? ",\"parameters\":{\"binary_data\":true}" : ",\"parameters\":{\"binary_data\":false}";
      }
      json.push_back('}');
    }
    json.push_back(']');
  }
  json.push_back('}');
  return FinishBody(std::move(json), tensors, binary);
}

}  // namespace cairn::serving
