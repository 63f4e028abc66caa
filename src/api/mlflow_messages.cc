#include "api/mlflow_messages.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <optional>
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

namespace {

namespace dom = simdjson::dom;

// The hot path of metric ingest. Log-batch bodies are parsed with simdjson
// straight into the message when they have the usual shape (every field of
// the type MLflow's client sends). Anything unusual — a number sent as a
// string, a null, a repeated field, malformed JSON — returns nullopt and the
// body takes the general DOM path, which owns every rule and error message.
// So the two can never disagree on what is accepted (log_batch_fuzz checks).
class FastLogBatchParser {
 public:
  std::optional<LogBatchMessage> Parse(std::string_view body) {
    dom::element doc;
    dom::object top;
    if (parser_.parse(body.data(), body.size(), /*realloc_if_needed=*/true).get(doc) ||
        doc.get_object().get(top)) {
      return std::nullopt;
    }
    LogBatchMessage batch;
    std::optional<std::string_view> run_id, run_uuid;
    bool seen_metrics = false, seen_params = false, seen_tags = false;
    for (dom::key_value_pair field : top) {
      std::string_view name = field.key;
      dom::element value = field.value;
      if (name == "run_id" || name == "run_uuid") {
        auto& slot = name == "run_id" ? run_id : run_uuid;
        std::string_view v;
        if (slot || value.get_string().get(v)) return std::nullopt;
        slot = v;
      } else if (name == "metrics") {
        if (seen_metrics || !ParseMetrics(value, batch.metrics)) return std::nullopt;
        seen_metrics = true;
      } else if (name == "params" || name == "tags") {
        bool& seen = name == "params" ? seen_params : seen_tags;
        if (seen || !ParseTags(value, name == "params" ? batch.params : batch.tags)) return std::nullopt;
        seen = true;
      }
    }
    if (run_id && !run_id->empty()) {
      batch.run_id = std::string(*run_id);
    } else if (run_uuid && !run_uuid->empty()) {
      batch.run_id = std::string(*run_uuid);
    } else {
      return std::nullopt;
    }
    return batch;
  }

 private:
  static bool ParseMetrics(dom::element value, std::vector<Metric>& out) {
    dom::array items;
    if (value.get_array().get(items)) return false;
    out.reserve(items.size());
    for (dom::element item : items) {
      dom::object obj;
      if (item.get_object().get(obj)) return false;
      Metric m;
      bool has_key = false, has_value = false, has_timestamp = false, has_step = false;
      for (dom::key_value_pair f : obj) {
        std::string_view name = f.key;
        if (name == "key") {
          std::string_view key;
          if (has_key || f.value.get_string().get(key)) return false;
          m.key = std::string(key);
          has_key = true;
        } else if (name == "value") {
          if (has_value || !AsDouble(f.value, &m.value)) return false;
          has_value = true;
        } else if (name == "timestamp") {
          if (has_timestamp || f.value.get_int64().get(m.timestamp)) return false;
          has_timestamp = true;
        } else if (name == "step") {
          if (has_step || f.value.get_int64().get(m.step)) return false;
          has_step = true;
        }
      }
      if (!has_key || !has_value || !has_timestamp) return false;
      out.push_back(std::move(m));
    }
    return true;
  }

  static bool AsDouble(dom::element v, double* out) {
    switch (v.type()) {
      case dom::element_type::INT64:
        *out = static_cast<double>(v.get_int64().value_unsafe());
        return true;
      case dom::element_type::UINT64:
        *out = static_cast<double>(v.get_uint64().value_unsafe());
        return true;
      case dom::element_type::DOUBLE:
        *out = v.get_double().value_unsafe();
        return true;
      default:
        return false;
    }
  }

  static bool ParseTags(dom::element value, std::vector<Tag>& out) {
    dom::array items;
    if (value.get_array().get(items)) return false;
    out.reserve(items.size());
    for (dom::element item : items) {
      dom::object obj;
      if (item.get_object().get(obj)) return false;
      std::optional<std::string_view> key, val;
      for (dom::key_value_pair f : obj) {
        std::string_view name = f.key;
        if (name == "key" || name == "value") {
          auto& slot = name == "key" ? key : val;
          std::string_view s;
          if (slot || f.value.get_string().get(s)) return false;
          slot = s;
        }
      }
      if (!key || !val) return false;
      out.push_back({std::string(*key), std::string(*val)});
    }
    return true;
  }

  dom::parser parser_;
};

}  // namespace

absl::StatusOr<LogBatchMessage> ParseLogBatchBody(std::string_view body) {
  // One parser per thread keeps its buffers warm across requests; connection
  // threads are long-lived.
  thread_local FastLogBatchParser fast;
  if (std::optional<LogBatchMessage> batch = fast.Parse(body)) return std::move(*batch);
  return ParseLogBatchBodyWithDomForTest(body);
}

absl::StatusOr<LogBatchMessage> ParseLogBatchBodyWithDomForTest(std::string_view body) {
  Request req;
  req.method = Method::kPost;
  req.body = std::string(body);
  ASSIGN_OR_RETURN(Json msg, RequestMessage(req));
  return ParseLogBatch(msg);
}

}  // namespace cairn::api
