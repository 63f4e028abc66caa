// JSON for Cairn: nlohmann::json, wrapped so that parsing and typed field
// access never throw across a module boundary. All JSON text Cairn writes is
// produced with Json::dump() (compact) — one writer style.
//
// Thread-safety: functions are stateless.
//
// Usage:
//   ASSIGN_OR_RETURN(Json body, ParseJson(text));
//   ASSIGN_OR_RETURN(std::string id, GetString(body, "run_id"));        // required
//   ASSIGN_OR_RETURN(std::optional<int64_t> step, GetOptionalInt(body, "step"));
#ifndef CAIRN_BASE_JSON_H_
#define CAIRN_BASE_JSON_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace cairn {

using Json = nlohmann::json;

// Parses `text`; kInvalidArgument with the parser's position on bad input.
absl::StatusOr<Json> ParseJson(std::string_view text);

// Field accessors on an object. A missing required field or a field of the
// wrong type is kInvalidArgument naming the field. JSON null counts as
// missing. Integers also accept strings holding a decimal integer (proto3's
// JSON mapping writes int64 as strings).
absl::StatusOr<std::string> GetString(const Json& obj, std::string_view field);
absl::StatusOr<std::optional<std::string>> GetOptionalString(const Json& obj, std::string_view field);
absl::StatusOr<int64_t> GetInt(const Json& obj, std::string_view field);
absl::StatusOr<std::optional<int64_t>> GetOptionalInt(const Json& obj, std::string_view field);
// Numbers; also the strings "NaN", "Infinity", "-Infinity" (proto3 JSON).
absl::StatusOr<double> GetDouble(const Json& obj, std::string_view field);
absl::StatusOr<std::optional<bool>> GetOptionalBool(const Json& obj, std::string_view field);
// An array field (missing or null gives an empty array); kInvalidArgument if not an array.
absl::StatusOr<std::vector<Json>> GetOptionalArray(const Json& obj, std::string_view field);

// Writes `value` as JSON; non-finite numbers become "NaN"/"Infinity"/"-Infinity" strings.
Json JsonDouble(double value);

}  // namespace cairn

#endif  // CAIRN_BASE_JSON_H_
