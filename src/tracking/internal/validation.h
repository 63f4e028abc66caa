// MLflow's input rules (mlflow/utils/validation.py) for names, keys, values
// and batch sizes. Every failure is kInvalidArgument with MLflow's wording.
#ifndef CAIRN_TRACKING_INTERNAL_VALIDATION_H_
#define CAIRN_TRACKING_INTERNAL_VALIDATION_H_

#include <span>
#include <string>
#include <string_view>

#include "base/status.h"
#include "tracking/types.h"

namespace cairn::tracking::internal {

absl::Status ValidateRunId(std::string_view run_id);
absl::Status ValidateExperimentId(std::string_view experiment_id);
absl::Status ValidateExperimentName(std::string_view name);
// Metric, param and tag keys: non-empty, <= 250 chars, [A-Za-z0-9_./ -],
// no "..", not starting with "/".
absl::Status ValidateKey(std::string_view kind, std::string_view key);
absl::Status ValidateParam(const Param& p);
absl::Status ValidateTag(const Tag& t);
absl::Status ValidateExperimentTag(const Tag& t);
absl::Status ValidateMetric(const Metric& m);
absl::Status ValidateBatchLimits(size_t metrics, size_t params, size_t tags);
absl::Status ValidateRunStatus(std::string_view status);

}  // namespace cairn::tracking::internal

#endif  // CAIRN_TRACKING_INTERNAL_VALIDATION_H_
