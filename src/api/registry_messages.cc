#include "api/registry_messages.h"

#include <fmt/format.h>

#include <charconv>
#include <cstdio>
#include <ctime>
#include <limits>

#include "api/mlflow_messages.h"
#include "serving/registry_source.h"

namespace cairn::api {
namespace {

using registry::AliasHistoryEntry;
using registry::Approval;
using registry::Deployment;
using registry::GateDecisionRecord;
using registry::ModelVersion;
using registry::RegisteredModel;

constexpr size_t kMaxUserLength = 256;

Json NullableInt(const std::optional<int64_t>& v) { return v ? Json(*v) : Json(); }

Json TagList(const registry::TagMap& tags) {
  Json out = Json::array();
  for (const auto& [k, v] : tags) out.push_back({{"key", k}, {"value", v}});
  return out;
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm):
// timegm() would do, but it consults the process's locale state for nothing.
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool ParseDigits(std::string_view s, size_t& pos, size_t n, int& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = s[pos + i];
    if (c < '0' || c > '9') return false;
    out = out * 10 + (c - '0');
  }
  pos += n;
  return true;
}

}  // namespace

absl::StatusOr<Json> RegistryRequestMessage(const http::Request& req) {
  ASSIGN_OR_RETURN(Json msg, RequestMessage(req));
  if (req.method != http::Method::kDelete || req.body.empty()) return msg;
  auto body = ParseJson(req.body);
  if (!body.ok()) return BadRequest(fmt::format("Malformed JSON request body: {}", body.status().message()));
  if (!body->is_object()) return BadRequest("The request body must be a JSON object");
  for (auto& [k, v] : body->items()) msg[k] = v;
  return msg;
}

absl::StatusOr<std::string> RequestUser(const http::Request& req) {
  std::optional<std::string_view> header = req.Header("x-cairn-user");
  if (!header) return std::string("local");
  if (header->empty() || header->size() > kMaxUserLength) {
    return BadRequest(fmt::format("X-Cairn-User must be 1 to {} bytes", kMaxUserLength));
  }
  for (unsigned char c : *header) {
    if (c < 0x20 || c == 0x7f) return BadRequest("X-Cairn-User must not contain control characters");
  }
  return std::string(*header);
}

absl::StatusOr<int64_t> ParseVersion(const std::string& text) {
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || v < 1) {
    std::string shown = text.size() > 64 ? text.substr(0, 64) + "..." : text;
    return absl::InvalidArgumentError(
        fmt::format("Invalid model version '{}': a version is a positive integer", shown));
  }
  return v;
}

absl::StatusOr<int64_t> GetVersion(const Json& msg, std::string_view field) {
  auto it = msg.find(std::string(field));
  if (it == msg.end() || it->is_null()) {
    return absl::InvalidArgumentError(fmt::format("Missing value for required parameter '{}'.", field));
  }
  if (it->is_number_integer()) {
    int64_t v = it->get<int64_t>();
    if (v < 1) return absl::InvalidArgumentError(fmt::format("Invalid value {} for parameter '{}': a version is a positive integer", v, field));
    return v;
  }
  if (it->is_number_unsigned()) {
    uint64_t v = it->get<uint64_t>();
    if (v == 0 || v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(fmt::format("Invalid value {} for parameter '{}'", v, field));
    }
    return static_cast<int64_t>(v);
  }
  if (it->is_string()) return ParseVersion(it->get<std::string>());
  return absl::InvalidArgumentError(
      fmt::format("Invalid value for parameter '{}': expected a version number, got {}", field, it->type_name()));
}

absl::StatusOr<registry::TagMap> GetTagMap(const Json& msg, std::string_view field) {
  ASSIGN_OR_RETURN(std::vector<tracking::Tag> tags, GetTags(msg, field));
  registry::TagMap out;
  for (tracking::Tag& t : tags) out[std::move(t.key)] = std::move(t.value);
  return out;
}

absl::StatusOr<int64_t> ParseTimeMs(const std::string& text) {
  auto bad = [&] {
    std::string shown = text.size() > 64 ? text.substr(0, 64) + "..." : text;
    return absl::InvalidArgumentError(fmt::format(
        "Invalid time '{}': expected Unix milliseconds or ISO-8601 (2026-03-03, 2026-03-03T12:00:00Z)", shown));
  };
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos) {
    int64_t ms = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
    if (ec != std::errc() || ptr != text.data() + text.size()) return bad();
    return ms;
  }
  std::string_view s = text;
  size_t pos = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, millis = 0;
  if (!ParseDigits(s, pos, 4, year) || pos >= s.size() || s[pos++] != '-' || !ParseDigits(s, pos, 2, month) ||
      pos >= s.size() || s[pos++] != '-' || !ParseDigits(s, pos, 2, day)) {
    return bad();
  }
  int64_t offset_minutes = 0;
  if (pos < s.size()) {
    if (s[pos] != 'T' && s[pos] != 't' && s[pos] != ' ') return bad();
    ++pos;
    if (!ParseDigits(s, pos, 2, hour) || pos >= s.size() || s[pos++] != ':' || !ParseDigits(s, pos, 2, minute)) {
      return bad();
    }
    if (pos < s.size() && s[pos] == ':') {
      ++pos;
      if (!ParseDigits(s, pos, 2, second)) return bad();
      if (pos < s.size() && s[pos] == '.') {
        ++pos;
        size_t start = pos;
        int scale = 100;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
          millis += (s[pos] - '0') * scale;
          scale /= 10;
          ++pos;
        }
        if (pos == start) return bad();
      }
    }
    if (pos < s.size()) {
      if (s[pos] == 'Z' || s[pos] == 'z') {
        ++pos;
      } else if (s[pos] == '+' || s[pos] == '-') {
        const int sign = s[pos++] == '-' ? -1 : 1;
        int oh = 0, om = 0;
        if (!ParseDigits(s, pos, 2, oh)) return bad();
        if (pos < s.size() && s[pos] == ':') ++pos;
        if (!ParseDigits(s, pos, 2, om) || oh > 23 || om > 59) return bad();
        offset_minutes = sign * (oh * 60 + om);
      }
    }
    if (pos != s.size()) return bad();
  }
  static constexpr int kDaysIn[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1 || day > kDaysIn[month - 1] || hour > 23 || minute > 59 || second > 60) {
    return bad();
  }
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (month == 2 && day == 29 && !leap) return bad();
  int64_t seconds = DaysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day)) * 86400 +
                    hour * 3600 + minute * 60 + second - offset_minutes * 60;
  return seconds * 1000 + millis;
}

// ------------------------------------------------------------- MLflow JSON

Json ModelVersionJson(const ModelVersion& v) {
  Json j = {{"name", v.name},
            {"version", std::to_string(v.version)},  // a string in MLflow's proto
            {"creation_timestamp", v.creation_timestamp},
            {"last_updated_timestamp", v.last_updated_timestamp},
            {"user_id", v.user_id},
            {"current_stage", v.current_stage},
            {"description", v.description},
            {"source", v.source},
            {"run_id", v.run_id},
            {"status", v.status}};
  if (!v.status_message.empty()) j["status_message"] = v.status_message;
  if (!v.run_link.empty()) j["run_link"] = v.run_link;
  if (!v.tags.empty()) j["tags"] = TagList(v.tags);
  if (!v.aliases.empty()) j["aliases"] = v.aliases;
  return j;
}

Json RegisteredModelJson(const RegisteredModel& m) {
  Json j = {{"name", m.name},
            {"creation_timestamp", m.creation_timestamp},
            {"last_updated_timestamp", m.last_updated_timestamp},
            {"description", m.description}};
  if (!m.user_id.empty()) j["user_id"] = m.user_id;
  if (!m.latest_versions.empty()) {
    Json list = Json::array();
    for (const ModelVersion& v : m.latest_versions) list.push_back(ModelVersionJson(v));
    j["latest_versions"] = std::move(list);
  }
  if (!m.tags.empty()) j["tags"] = TagList(m.tags);
  if (!m.aliases.empty()) {
    Json list = Json::array();
    for (const auto& [alias, version] : m.aliases) list.push_back({{"alias", alias}, {"version", std::to_string(version)}});
    j["aliases"] = std::move(list);
  }
  return j;
}

// -------------------------------------------------------------- Cairn JSON

Json AliasHistoryEntryJson(const AliasHistoryEntry& e) {
  return {{"id", e.id},
          {"name", e.name},
          {"alias", e.alias},
          {"from_version", NullableInt(e.from_version)},
          {"to_version", NullableInt(e.to_version)},
          {"user", e.user},
          {"time_ms", e.time_ms},
          {"reason", e.reason},
          {"decision_id", NullableInt(e.decision_id)}};
}

Json DecisionJson(const GateDecisionRecord& d) {
  return {{"id", d.id},           {"name", d.name},         {"alias", d.alias},
          {"version", d.version}, {"allowed", d.allowed},   {"conditions", d.conditions},
          {"user", d.user},       {"time_ms", d.time_ms},   {"reason", d.reason}};
}

Json ApprovalJson(const Approval& a) {
  return {{"name", a.name},   {"version", a.version}, {"alias", a.alias},
          {"user", a.user},   {"comment", a.comment}, {"time_ms", a.time_ms}};
}

Json DeploymentJson(const Deployment& d) {
  Json j = {{"name", d.name},
            {"model", d.model},
            {"alias", d.alias},
            {"config", d.config},
            {"created_time", d.created_time},
            {"updated_time", d.updated_time},
            {"generation", d.generation}};
  if (d.canary_version) j["canary"] = {{"version", *d.canary_version}, {"percent", d.canary_percent}};
  if (d.shadow_version) j["shadow"] = {{"version", *d.shadow_version}};
  return j;
}

absl::StatusOr<Deployment> DeploymentFromJson(const std::string& name, const Json& body) {
  if (!body.is_object()) return BadRequest("The request body must be a JSON object");
  Deployment d;
  d.name = name;
  RETURN_IF_ERROR(registry::ValidateModelName(name));
  ASSIGN_OR_RETURN(d.model, GetString(body, "model"));
  ASSIGN_OR_RETURN(d.alias, GetString(body, "alias"));
  RETURN_IF_ERROR(registry::ValidateAlias(d.alias));
  if (auto it = body.find("canary"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return absl::InvalidArgumentError("'canary' must be an object {\"version\", \"percent\"}");
    ASSIGN_OR_RETURN(int64_t version, GetVersion(*it, "version"));
    ASSIGN_OR_RETURN(int64_t percent, GetInt(*it, "percent"));
    if (percent < 0 || percent > 100) {
      return absl::InvalidArgumentError(fmt::format("canary percent must be 0..100, not {}", percent));
    }
    d.canary_version = version;
    d.canary_percent = static_cast<int>(percent);
  }
  if (auto it = body.find("shadow"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return absl::InvalidArgumentError("'shadow' must be an object {\"version\"}");
    ASSIGN_OR_RETURN(int64_t version, GetVersion(*it, "version"));
    d.shadow_version = version;
  }
  if (auto it = body.find("config"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return absl::InvalidArgumentError("'config' must be an object");
    // Read it as every inference plane will, so that a setting no plane could
    // use is refused here instead of stalling the planes' reconciliation.
    ASSIGN_OR_RETURN(serving::RunnerOptions runner, serving::RunnerOptionsFromConfig(*it));
    RETURN_IF_ERROR(serving::CheckRunnerOptions(runner));
    d.config = *it;
  }
  return d;
}

}  // namespace cairn::api
