// PayloadLog: a bounded, asynchronous log of predictions (inputs, outputs,
// which version answered, latency) for monitoring to consume. Record() only
// moves the record into a bounded queue — it never blocks a request on disk;
// when the queue is full the record is dropped and counted
// (cairn_payload_log_dropped_total). One writer thread appends each record as
// a JSON line to DIR/DEPLOYMENT/YYYY-MM-DD.jsonl (the record's UTC date; a
// new file each day), and fsyncs at most every sync_interval_ms. The format
// is specified in docs/payload-log.md.
//
// Durability: a record is on disk once Flush() returned after it was
// recorded; otherwise within about sync_interval_ms. Lines are appended with
// O_APPEND, so a restarted server continues the day's file; a crash can leave
// a torn last line, which readers skip.
//
// Thread-safety: thread-safe. The destructor writes and syncs what is queued
// and stops the writer.
//
// Usage:
//   ASSIGN_OR_RETURN(std::unique_ptr<PayloadLog> log,
//                    PayloadLog::Create({.dir = "/data/payloads"}, metrics.PayloadLogDropped()));
//   log->Record({.prediction_id = id, .deployment = "prod", .model = "iris", .version = 3,
//                .role = "primary", .time_ms = now_ms, .inputs = std::move(in),
//                .outputs = std::move(out), .latency_us = 840});
//   RETURN_IF_ERROR(log->Flush());   // tests: wait until written and synced
#ifndef CAIRN_SERVING_PAYLOAD_LOG_H_
#define CAIRN_SERVING_PAYLOAD_LOG_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/json.h"
#include "base/status.h"
#include "serving/metrics.h"
#include "serving/tensor.h"

namespace cairn::serving {

struct PredictionRecord {
  std::string prediction_id;
  std::string deployment;
  std::string model;
  int64_t version = 0;
  std::string role;  // "primary", "canary" or "shadow"
  int64_t time_ms = 0;  // when the request arrived, ms since the Unix epoch
  std::vector<Tensor> inputs;
  std::vector<Tensor> outputs;  // empty when the prediction failed
  int64_t latency_us = 0;
  std::string error;  // empty on success
};

struct PayloadLogOptions {
  std::string dir;                 // created if missing
  size_t queue_capacity = 10000;   // records waiting for the writer
  int64_t sync_interval_ms = 1000; // fsync at most this often
  int64_t write_delay_ms = 20;     // the writer waits up to this long for records to gather,
  size_t write_batch = 256;        // or for this many
};

// Appends the JSON object of one tensor as the log writes it: {"name",
// "datatype", "shape", "data": [flat elements]}; BOOL as true/false, BYTES as
// strings (invalid UTF-8 replaced), FP16 widened, floats in their shortest
// exact form.
void AppendTensorJson(std::string& out, const Tensor& tensor);
// Appends one log line, newline included (see docs/payload-log.md).
void AppendPredictionRecordLine(std::string& out, const PredictionRecord& record);
// The folder name of a deployment under the log's dir: the name with every
// byte outside [A-Za-z0-9_.-] and a leading '.' written as %XX, so that no
// name can escape the log's folder.
std::string DeploymentFolderName(std::string_view deployment);

class PayloadLog {
 public:
  // Creates the folder and starts the writer. `dropped` (may be null) is
  // incremented for every record dropped or not written.
  static absl::StatusOr<std::unique_ptr<PayloadLog>> Create(PayloadLogOptions options,
                                                            std::shared_ptr<Counter> dropped);
  ~PayloadLog();
  PayloadLog(const PayloadLog&) = delete;
  PayloadLog& operator=(const PayloadLog&) = delete;

  // Queues `record` for writing, or drops it when the queue is full. Never
  // waits for the disk.
  void Record(PredictionRecord record);
  // Waits until every record queued before the call is written and synced.
  // The first write or sync error since the last Flush, if any.
  absl::Status Flush();
  // While paused the writer takes nothing from the queue (so that tests can
  // fill it). REQUIRES: not paused when calling Flush.
  void PauseWriterForTest(bool paused);
  // Records dropped (queue full) or lost (write failed) so far.
  uint64_t dropped() const { return dropped_count_.load(std::memory_order_relaxed); }

 private:
  struct OpenFile;
  explicit PayloadLog(PayloadLogOptions options, std::shared_ptr<Counter> dropped);
  void WriterLoop();
  void CountDropped(uint64_t n);
  // Appends `lines` to the deployment's file for `day`; opens/rotates as needed.
  absl::Status Append(const std::string& deployment, const std::string& day, const std::string& lines);
  absl::Status SyncAll();

  const PayloadLogOptions options_;
  const std::shared_ptr<Counter> dropped_;
  std::atomic<uint64_t> dropped_count_{0};

  mutable absl::Mutex mu_;
  std::deque<PredictionRecord> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t queued_seq_ ABSL_GUARDED_BY(mu_) = 0;   // records accepted so far
  uint64_t synced_seq_ ABSL_GUARDED_BY(mu_) = 0;   // records written and synced so far
  uint64_t flush_wanted_ ABSL_GUARDED_BY(mu_) = 0; // a Flush waits for synced_seq_ >= this
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool paused_ ABSL_GUARDED_BY(mu_) = false;

  // Writer thread only.
  std::vector<std::unique_ptr<OpenFile>> files_;
  std::thread writer_;
};

}  // namespace cairn::serving

#endif  // CAIRN_SERVING_PAYLOAD_LOG_H_
