// libFuzzer target for the body of POST /api/2.0/mlflow/runs/log-batch: the
// bytes are parsed as the server parses them (api/mlflow_messages.h) and the
// result validated as the tracking store validates it. Nothing may crash;
// every rejection must be kInvalidArgument; the fast (simdjson) path must
// agree exactly with the general (DOM) path; and what is accepted must
// respect MLflow's batch limits.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "api/mlflow_messages.h"
#include "tracking/tracking_store.h"

namespace {

void Check(bool condition) {
  if (!condition) std::abort();
}


}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto batch = cairn::api::ParseLogBatchBody(body);
  auto reference = cairn::api::ParseLogBatchBodyWithDomForTest(body);
  Check(batch.ok() == reference.ok());
  if (!batch.ok()) {
    Check(batch.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  Check(batch->run_id == reference->run_id);
  Check(batch->metrics.size() == reference->metrics.size());
  for (size_t i = 0; i < batch->metrics.size(); ++i) {
    const auto& a = batch->metrics[i];
    const auto& b = reference->metrics[i];
    Check(a.key == b.key && a.timestamp == b.timestamp && a.step == b.step);
    Check(std::memcmp(&a.value, &b.value, sizeof(double)) == 0 || (a.value != a.value && b.value != b.value));
  }
  Check(batch->params == reference->params);
  Check(batch->tags == reference->tags);
  absl::Status valid =
      cairn::tracking::ValidateLogBatch(batch->run_id, batch->metrics, batch->params, batch->tags);
  Check(valid.ok() || valid.code() == absl::StatusCode::kInvalidArgument);
  Check(!valid.ok() || batch->metrics.size() + batch->params.size() + batch->tags.size() <= 1000);
  return 0;
}
