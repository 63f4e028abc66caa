// Step records: the metrics, params and tags a pipeline step reports, read
// from the two places a step can put them, so the scheduler can log them to
// the step's MLflow run.
//
// 1. Its log (stdout/stderr, as the executor captures it): one JSON object
//    per line whose FIRST key is "metric", "param" or "tag":
//      {"metric": "loss", "value": 0.31, "step": 3}          step: optional, default 0
//      {"metric": "loss", "value": 0.29, "step": 4, "timestamp": 1700000000000}   unix ms
//      {"param": "lr", "value": "0.1"}                        value: string, number or bool
//      {"tag": "stage", "value": "warmup"}
//    Every other line, JSON or not, is the step's own output and is ignored.
//    A record line that is malformed (bad JSON, a missing or wrongly typed
//    field, an unknown field, a value that is not a finite number, a key
//    MLflow would refuse, a param logged again with another value) is
//    reported in `errors` as "line N: why" and otherwise skipped: one bad
//    line never loses the others. A metric without "timestamp" gets the time
//    its line was parsed.
// 2. The SDK's record file (python/cairn/_offline.py): when the
//    executor sets CAIRN_RECORD_FILE, `cairn.start_run()` inside the step
//    appends the same JSON lines there instead of calling the server, each
//    with its timestamp. Differences from the log: every line must be a
//    record (anything else is an error), and metric values may also be the
//    strings "NaN", "Infinity" and "-Infinity" (MLflow stores non-finite
//    metrics; the SDK writes them so that the file stays valid JSON).
//
// At most kMaxRecordErrors messages are kept over a parser's life (not per
// Take); `errors_omitted` counts the rest. Lines longer than kMaxRecordLineBytes are skipped (an error when
// they start like a record).
//
// Thread-safety: StepRecordParser is not thread-safe (one log, one reader);
// ParseSdkRecordFile is reentrant.
//
// Usage:
//   StepRecordParser parser;
//   while (job running) {
//     parser.Feed(executor.ReadLog(id, offset, 1 << 20)->bytes);
//     for (const StepRecords& batch : SplitIntoBatches(parser.Take())) LogBatch(batch);
//   }
//   parser.Finish();                      // a last line without '\n'
//   StepRecords rest = parser.Take();
//   ASSIGN_OR_RETURN(StepRecords sdk, ParseSdkRecordFile(job_dir + "/out/_cairn/records.jsonl"));
#ifndef CAIRN_PIPELINE_STEP_METRICS_H_
#define CAIRN_PIPELINE_STEP_METRICS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "tracking/types.h"

namespace cairn::pipeline {

inline constexpr size_t kMaxRecordErrors = 100;
inline constexpr size_t kMaxRecordLineBytes = 1 << 20;
// ParseSdkRecordFile refuses bigger files (kFailedPrecondition): at ~80
// bytes a record, that is over ten million records.
inline constexpr uint64_t kMaxSdkRecordFileBytes = 1ull << 30;

struct StepRecords {
  std::vector<tracking::Metric> metrics;  // in the order written
  std::vector<tracking::Param> params;    // each key once
  std::vector<tracking::Tag> tags;        // in the order written (a later value wins in MLflow)
  std::vector<std::string> errors;        // "line N: why", at most kMaxRecordErrors
  uint64_t errors_omitted = 0;            // errors beyond kMaxRecordErrors

  bool empty() const { return metrics.empty() && params.empty() && tags.empty(); }
};

// Splits records into pieces within MLflow's log-batch limits (1000
// metrics, 100 params, 100 tags, 1000 entities in all), keeping order.
// Errors are not carried over. An empty input gives no batch.
std::vector<StepRecords> SplitIntoBatches(StepRecords records);

// Where lines come from: the rules differ slightly (see the header comment).
enum class StepRecordSource { kLog, kSdkRecordFile };

class StepRecordParser {
 public:
  // `now_ms` gives the timestamp of metrics written without one; default:
  // the wall clock.
  explicit StepRecordParser(StepRecordSource source = StepRecordSource::kLog,
                            std::function<int64_t()> now_ms = nullptr);
  StepRecordParser(const StepRecordParser&) = delete;
  StepRecordParser& operator=(const StepRecordParser&) = delete;

  // Consumes the next bytes; lines may be split across calls anywhere.
  void Feed(std::string_view bytes);
  // Parses a last line that has no '\n'. Call once the input has ended
  // (bytes fed afterwards start a new line).
  void Finish();
  // The records (and errors) parsed since the last Take, which are cleared.
  StepRecords Take();

 private:
  void ParseLine(std::string_view line);
  void AddError(std::string message);

  const StepRecordSource source_;
  std::function<int64_t()> now_ms_;
  std::string partial_;       // an unfinished line
  bool discarding_ = false;   // inside a line longer than kMaxRecordLineBytes
  bool at_line_start_ = true;  // the next byte starts a new line
  uint64_t line_number_ = 0;   // of the line being read (1-based)
  size_t errors_kept_ = 0;     // over the parser's life: the cap is not per Take
  StepRecords records_;
  std::map<std::string, std::string> param_values_;  // every param seen, to refuse a changed value
};

// Reads the SDK's record file at `path`. kNotFound when it does not exist
// (the step did not use the SDK); kFailedPrecondition over
// kMaxSdkRecordFileBytes; kPermissionDenied / kInternal when it cannot be
// read. Bad lines are reported in `errors`, not as a failure.
absl::StatusOr<StepRecords> ParseSdkRecordFile(const std::string& path);

}  // namespace cairn::pipeline

#endif  // CAIRN_PIPELINE_STEP_METRICS_H_
