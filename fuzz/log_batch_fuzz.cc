// libFuzzer target for the body of POST /api/2.0/mlflow/runs/log-batch: the
// bytes are parsed as the server parses them (api/mlflow_messages.h) and the
// result validated as the tracking store validates it. Nothing may crash;
// every rejection must be kInvalidArgument, and what is accepted must respect
// MLflow's batch limits.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "api/mlflow_messages.h"
#include "tracking/tracking_store.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto batch = cairn::api::ParseLogBatchBody(body);
  if (!batch.ok()) {
    if (batch.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  absl::Status valid =
      cairn::tracking::ValidateLogBatch(batch->run_id, batch->metrics, batch->params, batch->tags);
  if (!valid.ok() && valid.code() != absl::StatusCode::kInvalidArgument) std::abort();
  if (valid.ok() && batch->metrics.size() + batch->params.size() + batch->tags.size() > 1000) std::abort();
  return 0;
}
