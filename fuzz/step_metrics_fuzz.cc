// libFuzzer target for step records (pipeline/step_metrics.h): a step's log
// and the SDK's record file are written by code inside a sandbox, so any
// bytes must parse without crashing, whatever way they are cut into Feed
// calls. Checked: the result does not depend on where the input is split;
// every record accepted passes MLflow's rules (so LogBatch will take it);
// log lines never yield non-finite values; errors stay capped; params are
// unique by key.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string_view>

#include "pipeline/step_metrics.h"
#include "tracking/tracking_store.h"

namespace {

using cairn::pipeline::StepRecordParser;
using cairn::pipeline::StepRecords;
using cairn::pipeline::StepRecordSource;

StepRecords Parse(StepRecordSource source, std::string_view text, size_t cut) {
  StepRecordParser parser(source, [] { return int64_t{42}; });
  parser.Feed(text.substr(0, cut));
  StepRecords first = parser.Take();
  parser.Feed(text.substr(cut));
  parser.Finish();
  StepRecords rest = parser.Take();
  first.metrics.insert(first.metrics.end(), rest.metrics.begin(), rest.metrics.end());
  first.params.insert(first.params.end(), rest.params.begin(), rest.params.end());
  first.tags.insert(first.tags.end(), rest.tags.begin(), rest.tags.end());
  first.errors.insert(first.errors.end(), rest.errors.begin(), rest.errors.end());
  first.errors_omitted += rest.errors_omitted;
  return first;
}

bool SameMetrics(const StepRecords& a, const StepRecords& b) {
  if (a.metrics.size() != b.metrics.size()) return false;
  for (size_t i = 0; i < a.metrics.size(); ++i) {
    const auto& x = a.metrics[i];
    const auto& y = b.metrics[i];
    bool same_value = x.value == y.value || (std::isnan(x.value) && std::isnan(y.value));
    if (x.key != y.key || !same_value || x.step != y.step || x.timestamp != y.timestamp) return false;
  }
  return true;
}


}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the source and where to cut the rest.
  const StepRecordSource source = (data[0] & 1) != 0 ? StepRecordSource::kSdkRecordFile : StepRecordSource::kLog;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t cut = text.empty() ? 0 : (static_cast<size_t>(data[0]) * 131) % (text.size() + 1);

  StepRecords whole = Parse(source, text, text.size());
  StepRecords split = Parse(source, text, cut);
  if (!SameMetrics(whole, split) || whole.params != split.params ||
      whole.tags != split.tags || whole.errors != split.errors ||
      whole.errors_omitted != split.errors_omitted) {
    std::abort();
  }
  if (whole.errors.size() > cairn::pipeline::kMaxRecordErrors) std::abort();

  std::set<std::string> param_keys;
  for (const auto& p : whole.params) {
    if (!param_keys.insert(p.key).second) std::abort();
  }
  for (const auto& m : whole.metrics) {
    if (source == StepRecordSource::kLog && !std::isfinite(m.value)) std::abort();
  }
  // Everything accepted must be loggable: one record at a time (batch sizes
  // are SplitIntoBatches' job, checked by its unit test).
  for (const auto& m : whole.metrics) {
    if (!cairn::tracking::ValidateLogBatch("0", {&m, 1}, {}, {}).ok()) std::abort();
  }
  for (const auto& p : whole.params) {
    if (!cairn::tracking::ValidateLogBatch("0", {}, {&p, 1}, {}).ok()) std::abort();
  }
  for (const auto& t : whole.tags) {
    if (!cairn::tracking::ValidateLogBatch("0", {}, {}, {&t, 1}).ok()) std::abort();
  }
  return 0;
}
