#include "tracking/internal/validation.h"

#include <fmt/format.h>

#include "tracking/tracking_store.h"

namespace cairn::tracking::internal {
namespace {

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

bool IsKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
         c == '.' || c == ' ' || c == '/';
}

}  // namespace

absl::Status ValidateRunId(std::string_view run_id) {
  // MLflow: ^[a-zA-Z0-9][\w\-]{0,255}$
  bool ok = !run_id.empty() && run_id.size() <= 256 && std::isalnum(static_cast<unsigned char>(run_id[0]));
  for (char c : run_id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) ok = false;
  }
  if (!ok) return Invalid(fmt::format("Invalid run ID: '{}'", run_id));
  return absl::OkStatus();
}

absl::Status ValidateExperimentId(std::string_view experiment_id) {
  bool ok = !experiment_id.empty() && experiment_id.size() <= 18;
  for (char c : experiment_id) {
    if (c < '0' || c > '9') ok = false;
  }
  if (!ok) return Invalid(fmt::format("Invalid experiment ID: '{}'", experiment_id));
  return absl::OkStatus();
}

absl::Status ValidateExperimentName(std::string_view name) {
  if (name.empty()) return Invalid("Invalid experiment name: ''. Experiment name must not be empty.");
  if (name.size() > 500) return Invalid("Invalid experiment name: longer than 500 characters.");
  return absl::OkStatus();
}

absl::Status ValidateKey(std::string_view kind, std::string_view key) {
  if (key.empty()) return Invalid(fmt::format("Missing value for required parameter '{}.key'.", kind));
  if (key.size() > kMaxEntityKeyLength) {
    return Invalid(fmt::format("{} name '{}' had length {}, which exceeded length limit of {}", kind,
                               key.substr(0, 64), key.size(), kMaxEntityKeyLength));
  }
  bool chars_ok = true;
  for (char c : key) chars_ok = chars_ok && IsKeyChar(c);
  bool path_ok = key.front() != '/' && key.find("..") == std::string_view::npos && key.find("//") == std::string_view::npos;
  if (!chars_ok || !path_ok) {
    return Invalid(fmt::format(
        "Invalid {} name: '{}'. Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), "
        "spaces ( ), and slashes (/), and must not resolve to other names when treated as paths.",
        kind, key));
  }
  return absl::OkStatus();
}

absl::Status ValidateParam(const Param& p) {
  RETURN_IF_ERROR(ValidateKey("param", p.key));
  if (p.value.size() > kMaxParamValueLength) {
    return Invalid(fmt::format("Param value '{}...' had length {}, which exceeded length limit of {}",
                               p.value.substr(0, 32), p.value.size(), kMaxParamValueLength));
  }
  return absl::OkStatus();
}

absl::Status ValidateTag(const Tag& t) {
  RETURN_IF_ERROR(ValidateKey("tag", t.key));
  if (t.value.size() > kMaxTagValueLength) {
    return Invalid(fmt::format("Tag value '{}...' had length {}, which exceeded length limit of {}",
                               t.value.substr(0, 32), t.value.size(), kMaxTagValueLength));
  }
  return absl::OkStatus();
}

absl::Status ValidateExperimentTag(const Tag& t) {
  RETURN_IF_ERROR(ValidateKey("tag", t.key));
  if (t.value.size() > kMaxExperimentTagValueLength) {
    return Invalid(fmt::format("Tag value '{}...' had length {}, which exceeded length limit of {}",
                               t.value.substr(0, 32), t.value.size(), kMaxExperimentTagValueLength));
  }
  return absl::OkStatus();
}

absl::Status ValidateMetric(const Metric& m) { return ValidateKey("metric", m.key); }

absl::Status ValidateBatchLimits(size_t metrics, size_t params, size_t tags) {
  if (metrics > static_cast<size_t>(kMaxMetricsPerBatch)) {
    return Invalid(fmt::format("A batch logging request can contain at most {} metrics. Got {} metrics.",
                               kMaxMetricsPerBatch, metrics));
  }
  if (params > static_cast<size_t>(kMaxParamsTagsPerBatch)) {
    return Invalid(fmt::format("A batch logging request can contain at most {} params. Got {} params.",
                               kMaxParamsTagsPerBatch, params));
  }
  if (tags > static_cast<size_t>(kMaxParamsTagsPerBatch)) {
    return Invalid(fmt::format("A batch logging request can contain at most {} tags. Got {} tags.",
                               kMaxParamsTagsPerBatch, tags));
  }
  size_t total = metrics + params + tags;
  if (total > static_cast<size_t>(kMaxEntitiesPerBatch)) {
    return Invalid(fmt::format(
        "A batch logging request can contain at most {} metrics, params, and tags in total. Got {} in total.",
        kMaxEntitiesPerBatch, total));
  }
  return absl::OkStatus();
}

absl::Status ValidateRunStatus(std::string_view status) {
  for (const char* s : kRunStatuses) {
    if (status == s) return absl::OkStatus();
  }
  return Invalid(fmt::format("Invalid run status '{}': expected one of RUNNING, SCHEDULED, FINISHED, FAILED, KILLED",
                             status));
}

}  // namespace cairn::tracking::internal
