// The registry's wire format: registry types (registry/registry_store.h) as
// MLflow's JSON (mlflow/protos/model_registry.proto: RegisteredModel,
// ModelVersion, RegisteredModelAlias...) and as Cairn's own JSON
// (/api/cairn/v1: alias history, decisions, approvals, deployments), and the
// request-side readers both APIs share. Every malformed input is a Status
// (kInvalidArgument, mapped to INVALID_PARAMETER_VALUE or BAD_REQUEST), never
// an exception. The formats are specified in docs/api-registry.md.
//
// Thread-safety: stateless functions.
//
// Usage:
//   ASSIGN_OR_RETURN(Json msg, RegistryRequestMessage(req));
//   ASSIGN_OR_RETURN(int64_t version, GetVersion(msg, "version"));
//   return Json{{"model_version", ModelVersionJson(v)}};
#ifndef CAIRN_API_REGISTRY_MESSAGES_H_
#define CAIRN_API_REGISTRY_MESSAGES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/json.h"
#include "base/status.h"
#include "http/http.h"
#include "registry/registry_store.h"

namespace cairn::api {

// The request as one JSON object, like RequestMessage (mlflow_messages.h),
// except that a DELETE may carry its fields in a JSON body, as the `mlflow`
// client sends them (its query-string fields are kept; body fields win).
absl::StatusOr<Json> RegistryRequestMessage(const http::Request& req);

// Who is asking: the X-Cairn-User header, else "local" (there is no auth
// module yet). kInvalidArgument for an empty, over-long (> 256 bytes) or
// control-character header value.
absl::StatusOr<std::string> RequestUser(const http::Request& req);

// A version number field: MLflow sends a decimal string ("3"); a JSON integer
// is accepted too. kInvalidArgument naming the field when it is missing, not
// a positive integer, or out of range.
absl::StatusOr<int64_t> GetVersion(const Json& msg, std::string_view field);
// The same for text taken from a URL path segment.
absl::StatusOr<int64_t> ParseVersion(const std::string& text);

// MLflow's tag lists, [{"key": ..., "value": ...}], as a map (a later key wins).
absl::StatusOr<registry::TagMap> GetTagMap(const Json& msg, std::string_view field);

// A point in time as Unix milliseconds: digits are milliseconds; otherwise
// ISO-8601 "YYYY-MM-DD" (00:00 UTC), "YYYY-MM-DDTHH:MM[:SS[.fff]]" with "Z",
// "+hh:mm" / "-hh:mm" or nothing (UTC); a space may replace the 'T'.
// kInvalidArgument for anything else.
absl::StatusOr<int64_t> ParseTimeMs(const std::string& text);

// ------------------------------------------------------------- MLflow JSON
Json RegisteredModelJson(const registry::RegisteredModel& m);
Json ModelVersionJson(const registry::ModelVersion& v);

// -------------------------------------------------------------- Cairn JSON
// {"id", "name", "alias", "from_version", "to_version", "user", "time_ms",
//  "reason", "decision_id"}; absent versions/decision are null.
Json AliasHistoryEntryJson(const registry::AliasHistoryEntry& e);
// {"id", "name", "alias", "version", "allowed", "conditions", "user", "time_ms", "reason"}.
Json DecisionJson(const registry::GateDecisionRecord& d);
Json ApprovalJson(const registry::Approval& a);
// {"name", "model", "alias", "canary": {"version", "percent"} (if any),
//  "shadow": {"version"} (if any), "config", "created_time", "updated_time", "generation"}.
Json DeploymentJson(const registry::Deployment& d);
// Reads PUT /deployments/NAME's body: {"model", "alias", "canary":
// {"version", "percent"}, "shadow": {"version"}, "config": {...}}. Checks
// shapes and ranges (percent 0..100, versions >= 1, config an object);
// existence is the store's to check.
absl::StatusOr<registry::Deployment> DeploymentFromJson(const std::string& name, const Json& body);

}  // namespace cairn::api

#endif  // CAIRN_API_REGISTRY_MESSAGES_H_
