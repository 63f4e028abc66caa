#include "base/json.h"

#include <charconv>
#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace cairn {
namespace {

// Deeper documents are rejected: nlohmann's dump() and comparison recurse,
// so unbounded nesting from outside input could overflow the stack.
constexpr int kMaxJsonDepth = 512;

// Byte offset at which `text` first nests deeper than kMaxJsonDepth, if it does.
std::optional<size_t> FindExcessiveNesting(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > kMaxJsonDepth) return i;
        break;
      case ']':
      case '}':
        --depth;
        break;
      default:
        break;
    }
  }
  return std::nullopt;
}

absl::Status NotAnObject() { return absl::InvalidArgumentError("expected a JSON object"); }

// The field's value, or nullptr when missing or null.
absl::StatusOr<const Json*> Find(const Json& obj, std::string_view field) {
  if (!obj.is_object()) return NotAnObject();
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::Status Missing(std::string_view field) {
  return absl::InvalidArgumentError(fmt::format("missing required field '{}'", field));
}

absl::Status WrongType(std::string_view field, std::string_view want, const Json& got) {
  return absl::InvalidArgumentError(
      fmt::format("field '{}' must be {}, got {}", field, want, got.type_name()));
}

absl::StatusOr<int64_t> ToInt(std::string_view field, const Json& v) {
  if (v.is_number_integer() && !v.is_number_unsigned()) return v.get<int64_t>();
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(fmt::format("field '{}' is out of the int64 range", field));
    }
    return static_cast<int64_t>(u);
  }
  if (v.is_number_float()) {
    // proto3 JSON parsers accept integral floats such as 1e3 for integers.
    double d = v.get<double>();
    if (std::isfinite(d) && d == std::trunc(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
      return static_cast<int64_t>(d);
    }
    return absl::InvalidArgumentError(fmt::format("field '{}' must be an integer, got {}", field, v.dump()));
  }
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    int64_t out = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (!s.empty() && ec == std::errc() && ptr == s.data() + s.size()) return out;
    std::string shown = s.size() > 64 ? s.substr(0, 64) + "..." : s;
    return absl::InvalidArgumentError(fmt::format("field '{}' must be an integer, got \"{}\"", field, shown));
  }
  return WrongType(field, "an integer", v);
}

}  // namespace

absl::StatusOr<Json> ParseJson(std::string_view text) {
  if (std::optional<size_t> at = FindExcessiveNesting(text)) {
    return absl::InvalidArgumentError(
        fmt::format("invalid JSON at byte {}: nesting deeper than {} levels", *at, kMaxJsonDepth));
  }
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::parse_error& e) {
    return absl::InvalidArgumentError(fmt::format("invalid JSON at byte {}: {}", e.byte, e.what()));
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(fmt::format("invalid JSON: {}", e.what()));
  }
}

absl::StatusOr<std::string> GetString(const Json& obj, std::string_view field) {
  ASSIGN_OR_RETURN(std::optional<std::string> v, GetOptionalString(obj, field));
  if (!v) return Missing(field);
  return std::move(*v);
}

absl::StatusOr<std::optional<std::string>> GetOptionalString(const Json& obj, std::string_view field) {
  ASSIGN_OR_RETURN(const Json* v, Find(obj, field));
  if (v == nullptr) return std::optional<std::string>();
  if (!v->is_string()) return WrongType(field, "a string", *v);
  return std::optional<std::string>(v->get<std::string>());
}

absl::StatusOr<int64_t> GetInt(const Json& obj, std::string_view field) {
  ASSIGN_OR_RETURN(const Json* v, Find(obj, field));
  if (v == nullptr) return Missing(field);
  return ToInt(field, *v);
}

absl::StatusOr<std::optional<int64_t>> GetOptionalInt(const Json& obj, std::string_view field) {
  ASSIGN_OR_RETURN(const Json* v, Find(obj, field));
  if (v == nullptr) return std::optional<int64_t>();
  ASSIGN_OR_RETURN(int64_t i, ToInt(field, *v));
  return std::optional<int64_t>(i);
}

absl::StatusOr<double> GetDouble(const Json& obj, std::string_view field) {
  ASSIGN_OR_RETURN(const Json* v, Find(obj, field));
  if (v == nullptr) return Missing(field);
  if (v->is_number()) return v->get<double>();
  if (v->is_string()) {
    const std::string& s = v->get_ref<const std::string&>();
    if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
    if (s == "Infinity") return std::numeric_limits<double>::infinity();
    if (s == "-Infinity") return -std::numeric_limits<double>::infinity();
    // proto3 JSON also allows numbers written as strings.
    double d = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
    if (!s.empty() && ec == std::errc() && ptr == s.data() + s.size()) return d;
    std::string shown = s.size() > 64 ? s.substr(0, 64) + "..." : s;
    return absl::InvalidArgumentError(fmt::format("field '{}' must be a number, got \"{}\"", field, shown));
  }
  return WrongType(field, "a number", *v);
}

absl::StatusOr<std::optional<bool>> GetOptionalBool(const Json& obj, std::string_view field) {
  ASSIGN_OR_RETURN(const Json* v, Find(obj, field));
  if (v == nullptr) return std::optional<bool>();
  if (!v->is_boolean()) return WrongType(field, "a boolean", *v);
  return std::optional<bool>(v->get<bool>());
}

absl::StatusOr<std::vector<Json>> GetOptionalArray(const Json& obj, std::string_view field) {
  ASSIGN_OR_RETURN(const Json* v, Find(obj, field));
  if (v == nullptr) return std::vector<Json>();
  if (!v->is_array()) return WrongType(field, "an array", *v);
  return v->get<std::vector<Json>>();
}

Json JsonDouble(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  return value;
}

}  // namespace cairn
