// Parsing MLflow request messages: the JSON body of a POST, or the query
// string of a GET, turned into one JSON object the way MLflow's
// _get_request_message does, plus typed readers for the fields MLflow's
// protos define (service.proto). Every malformed input is a Status
// (INVALID_PARAMETER_VALUE or BAD_REQUEST), never an exception.
//
// Thread-safety: stateless.
//
// Usage:
//   ASSIGN_OR_RETURN(Json msg, RequestMessage(request));
//   ASSIGN_OR_RETURN(LogBatchMessage batch, ParseLogBatch(msg));
#ifndef CAIRN_API_MLFLOW_MESSAGES_H_
#define CAIRN_API_MLFLOW_MESSAGES_H_

#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "base/status.h"
#include "http/http.h"
#include "tracking/types.h"

namespace cairn::api {

// INVALID_ARGUMENT tagged with MLflow's BAD_REQUEST code.
absl::Status BadRequest(const std::string& message);

// The request as one JSON object: the body for POST/PUT/PATCH (which must be
// a JSON object), the query string for GET/DELETE/HEAD (repeated keys become arrays).
absl::StatusOr<Json> RequestMessage(const http::Request& req);

// run_id, or its deprecated alias run_uuid.
absl::StatusOr<std::string> RunIdOf(const Json& msg);
// A repeated string field: an array of strings, or one string (from a query).
absl::StatusOr<std::vector<std::string>> GetStringList(const Json& msg, std::string_view field);
absl::StatusOr<tracking::ViewType> GetViewType(const Json& msg, std::string_view field);
absl::StatusOr<int> GetMaxResults(const Json& msg, int default_value);
// [{"key": ..., "value": ...}, ...]
absl::StatusOr<std::vector<tracking::Tag>> GetTags(const Json& msg, std::string_view field);
// {"key", "value", "timestamp", "step"}: value and timestamp required.
absl::StatusOr<tracking::Metric> ParseMetric(const Json& item);

struct LogBatchMessage {
  std::string run_id;
  std::vector<tracking::Metric> metrics;
  std::vector<tracking::Param> params;
  std::vector<tracking::Tag> tags;
};
absl::StatusOr<LogBatchMessage> ParseLogBatch(const Json& msg);
// The same from the raw POST body: the ingest hot path. Bodies of the usual
// shape are parsed with simdjson; anything else goes through RequestMessage
// and ParseLogBatch, so results and errors are exactly theirs.
absl::StatusOr<LogBatchMessage> ParseLogBatchBody(std::string_view body);
// The general path alone, for checking the fast one (fuzz target, tests).
absl::StatusOr<LogBatchMessage> ParseLogBatchBodyWithDomForTest(std::string_view body);

}  // namespace cairn::api

#endif  // CAIRN_API_MLFLOW_MESSAGES_H_
