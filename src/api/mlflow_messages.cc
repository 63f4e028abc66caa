#include "api/mlflow_messages.h"

#include <fmt/format.h>

#include <utility>

namespace cairn::api {

using http::Method;
using http::Request;
using tracking::Metric;
using tracking::Tag;
using tracking::ViewType;

absl::Status BadRequest(const std::string& message) {
  return WithErrorCode(absl::InvalidArgumentError(message), "BAD_REQUEST");
}

// The request as one JSON object: the body for POST/PATCH, the query string
// for GET/DELETE (repeated keys become arrays), as MLflow's
// _get_request_message does.
absl::StatusOr<Json> RequestMessage(const Request& req) {
  if (req.method == Method::kGet || req.method == Method::kDelete || req.method == Method::kHead) {
    Json obj = Json::object();
    std::string_view q = req.query;
    while (!q.empty()) {
      size_t amp = q.find('&');
      std::string_view pair = q.substr(0, amp);
      q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
      if (pair.empty()) continue;
      size_t eq = pair.find('=');
      auto key = http::UrlDecode(pair.substr(0, eq), true);
      auto value = http::UrlDecode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1), true);
      if (!key.ok() || !value.ok()) return BadRequest("Malformed query string: invalid percent-encoding");
      auto it = obj.find(*key);
      if (it == obj.end()) {
        obj[*key] = *value;
      } else {
        if (!it->is_array()) *it = Json::array({*it});
        it->push_back(*value);
      }
    }
    return obj;
  }
  if (req.body.empty()) return Json::object();
  auto parsed = ParseJson(req.body);
  if (!parsed.ok()) return BadRequest(fmt::format("Malformed JSON request body: {}", parsed.status().message()));
  if (!parsed->is_object()) return BadRequest("The request body must be a JSON object");
  return std::move(parsed).value();
}

// run_id, or its deprecated alias run_uuid.
absl::StatusOr<std::string> RunIdOf(const Json& msg) {
  ASSIGN_OR_RETURN(auto id, GetOptionalString(msg, "run_id"));
  if (id && !id->empty()) return *id;
  ASSIGN_OR_RETURN(auto uuid, GetOptionalString(msg, "run_uuid"));
  if (uuid && !uuid->empty()) return *uuid;
  return absl::InvalidArgumentError("Missing value for required parameter 'run_id'.");
}

// A repeated string field: an array of strings, or one string (from a query).
absl::StatusOr<std::vector<std::string>> GetStringList(const Json& msg, std::string_view field) {
  std::vector<std::string> out;
  auto it = msg.find(std::string(field));
  if (it == msg.end() || it->is_null()) return out;
  if (it->is_string()) {
    out.push_back(it->get<std::string>());
    return out;
  }
  if (!it->is_array()) {
    return absl::InvalidArgumentError(fmt::format("Invalid value for parameter '{}': expected a list of strings", field));
  }
  for (const Json& v : *it) {
    if (!v.is_string()) {
      return absl::InvalidArgumentError(
          fmt::format("Invalid value for parameter '{}': expected a list of strings", field));
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

absl::StatusOr<ViewType> GetViewType(const Json& msg, std::string_view field) {
  auto it = msg.find(std::string(field));
  if (it == msg.end() || it->is_null()) return ViewType::kActiveOnly;
  if (it->is_string()) {
    std::string v = it->get<std::string>();
    if (v == "ACTIVE_ONLY" || v == "1") return ViewType::kActiveOnly;
    if (v == "DELETED_ONLY" || v == "2") return ViewType::kDeletedOnly;
    if (v == "ALL" || v == "3") return ViewType::kAll;
  } else if (it->is_number_integer()) {
    switch (it->get<int64_t>()) {
      case 1: return ViewType::kActiveOnly;
      case 2: return ViewType::kDeletedOnly;
      case 3: return ViewType::kAll;
      default: break;
    }
  }
  return absl::InvalidArgumentError(fmt::format(
      "Invalid value for parameter '{}': expected ACTIVE_ONLY, DELETED_ONLY or ALL", field));
}

absl::StatusOr<int> GetMaxResults(const Json& msg, int default_value) {
  ASSIGN_OR_RETURN(auto v, GetOptionalInt(msg, "max_results"));
  if (!v) return default_value;
  if (*v < 0 || *v > 1000000000) {
    return absl::InvalidArgumentError(fmt::format("Invalid value {} for parameter 'max_results' supplied.", *v));
  }
  return static_cast<int>(*v);
}

absl::StatusOr<std::vector<Tag>> GetTags(const Json& msg, std::string_view field) {
  ASSIGN_OR_RETURN(auto items, GetOptionalArray(msg, field));
  std::vector<Tag> tags;
  tags.reserve(items.size());
  for (const Json& item : items) {
    if (!item.is_object()) {
      return absl::InvalidArgumentError(fmt::format("Invalid value for parameter '{}': expected objects", field));
    }
    ASSIGN_OR_RETURN(std::string key, GetString(item, "key"));
    ASSIGN_OR_RETURN(auto value, GetOptionalString(item, "value"));
    tags.push_back({std::move(key), value.value_or("")});
  }
  return tags;
}

absl::StatusOr<Metric> ParseMetric(const Json& item) {
  if (!item.is_object()) return absl::InvalidArgumentError("Invalid metric: expected an object");
  Metric m;
  ASSIGN_OR_RETURN(m.key, GetString(item, "key"));
  ASSIGN_OR_RETURN(m.value, GetDouble(item, "value"));
  ASSIGN_OR_RETURN(m.timestamp, GetInt(item, "timestamp"));
  ASSIGN_OR_RETURN(auto step, GetOptionalInt(item, "step"));
  m.step = step.value_or(0);
  return m;
}


absl::StatusOr<LogBatchMessage> ParseLogBatch(const Json& msg) {
  LogBatchMessage batch;
  ASSIGN_OR_RETURN(batch.run_id, RunIdOf(msg));
  ASSIGN_OR_RETURN(auto metric_items, GetOptionalArray(msg, "metrics"));
  batch.metrics.reserve(metric_items.size());
  for (const Json& item : metric_items) {
    ASSIGN_OR_RETURN(Metric m, ParseMetric(item));
    batch.metrics.push_back(std::move(m));
  }
  ASSIGN_OR_RETURN(batch.params, GetTags(msg, "params"));
  ASSIGN_OR_RETURN(batch.tags, GetTags(msg, "tags"));
  return batch;
}

absl::StatusOr<LogBatchMessage> ParseLogBatchBody(std::string_view body) {
  Request req;
  req.method = Method::kPost;
  req.body = std::string(body);
  ASSIGN_OR_RETURN(Json msg, RequestMessage(req));
  return ParseLogBatch(msg);
}

}  // namespace cairn::api
