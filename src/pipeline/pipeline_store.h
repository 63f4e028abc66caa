// What the pipeline scheduler keeps in the database (component "pipeline",
// tables pipe_*; docs/schema.md "Pipelines"): registered pipelines (their
// cairn.yaml text and project folder), pipeline runs with their cause and the
// state of each step, the run cache (cache key -> the run that produced it
// and its outputs), and the triggers' memory (the last dataset head seen, the
// last cron firing).
//
// Every method is one transaction, durable when it returns, so a scheduler
// killed at any point leaves a state that the next one can recover from
// (PipelineScheduler::Recover).
//
// Thread-safety: thread-safe (a connection pool).
//
// Usage:
//   ASSIGN_OR_RETURN(auto store, PipelineStore::Create(db, env));
//   ASSIGN_OR_RETURN(PipelineRecord p, store->UpsertPipeline("tumours", yaml, "cairn.yaml", "/srv/proj"));
#ifndef CAIRN_PIPELINE_PIPELINE_STORE_H_
#define CAIRN_PIPELINE_PIPELINE_STORE_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/env.h"
#include "base/json.h"
#include "base/status.h"
#include "db/connection_pool.h"
#include "db/database.h"

namespace cairn::pipeline {

struct PipelineRecord {
  std::string name;
  std::string spec_text;    // the cairn.yaml as registered
  std::string file_name;    // for error messages ("cairn.yaml")
  std::string project_dir;  // absolute: the code snapshot is taken from here
  std::string webhook_secret;  // 64 hex; HMAC key of the trigger webhook
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
};

// Step states. Final: SUCCEEDED, CACHED, FAILED, SKIPPED, CANCELLED, REFUSED.
inline constexpr char kPending[] = "PENDING";
inline constexpr char kRunning[] = "RUNNING";
inline constexpr char kSucceeded[] = "SUCCEEDED";
inline constexpr char kCached[] = "CACHED";    // its cache key had succeeded before: outputs reused
inline constexpr char kFailed[] = "FAILED";
inline constexpr char kSkipped[] = "SKIPPED";  // an upstream step failed
inline constexpr char kCancelled[] = "CANCELLED";
inline constexpr char kRefused[] = "REFUSED";  // refused before it started (e.g. a sealed split)
bool IsFinalState(std::string_view state);

struct StepRecord {
  std::string step;
  std::string status = kPending;
  std::string run_id;      // the MLflow run (for CACHED: the run that produced the outputs)
  std::string cache_key;   // 64 hex, once known
  std::string executor;    // "local" or "slurm"
  std::string job_id;
  std::string job_dir;
  int attempt = 0;         // 1-based once started
  std::string reason;
  int64_t started_at_ms = 0;
  int64_t ended_at_ms = 0;
  Json outputs = Json::object();  // output name -> dataset commit id
  Json inputs = Json::object();   // input name -> {"dataset", "commit", "split"} as resolved
};

struct PipelineRunRecord {
  std::string id;          // 32 hex
  std::string pipeline;
  std::string status = kPending;  // PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED
  Json cause = Json::object();    // {"kind": "manual"|"dataset_commit"|"cron"|"webhook", ...}
  std::vector<std::string> overrides;  // -p arguments
  std::string target_step;   // "" = the whole pipeline
  std::string executor;
  bool no_cache = false;
  std::string owner;         // the scheduler instance running it (PipelineScheduler::owner_id)
  bool owner_is_server = false;
  std::string reason;
  std::string code_digest;
  std::string env_digest;
  int64_t created_at_ms = 0;
  int64_t started_at_ms = 0;
  int64_t ended_at_ms = 0;
  std::vector<StepRecord> steps;  // in execution order
};

struct CacheEntry {
  std::string run_id;
  Json outputs = Json::object();
};

class PipelineStore {
 public:
  // Applies the component's migrations. `db` and `env` are not owned.
  static absl::StatusOr<std::unique_ptr<PipelineStore>> Create(db::Database& db, Env& env);
  PipelineStore(const PipelineStore&) = delete;
  PipelineStore& operator=(const PipelineStore&) = delete;

  // Registers or updates a pipeline; the webhook secret is made once and kept.
  absl::StatusOr<PipelineRecord> UpsertPipeline(const std::string& name, const std::string& spec_text,
                                                const std::string& file_name, const std::string& project_dir);
  absl::StatusOr<PipelineRecord> GetPipeline(const std::string& name);  // kNotFound
  absl::StatusOr<std::vector<PipelineRecord>> ListPipelines();

  // Inserts the run and its steps. run.id must be set.
  absl::Status CreateRun(const PipelineRunRecord& run);
  // Updates status, reason, owner, digests and times of the run (not steps).
  absl::Status UpdateRun(const PipelineRunRecord& run);
  absl::Status UpdateStep(const std::string& pipeline_run_id, const StepRecord& step);
  absl::StatusOr<PipelineRunRecord> GetRun(const std::string& id);  // kNotFound
  // Newest first; `pipeline` empty: every pipeline.
  absl::StatusOr<std::vector<PipelineRunRecord>> ListRuns(const std::string& pipeline, int limit);
  // Runs not final (PENDING or RUNNING), oldest first.
  absl::StatusOr<std::vector<PipelineRunRecord>> ActiveRuns();
  // The pipeline run and step attempt that made MLflow run `run_id` (any
  // attempt: UpdateStep remembers each run id with its job). kNotFound.
  absl::StatusOr<std::pair<std::string, StepRecord>> FindStepByRunId(const std::string& run_id);

  absl::StatusOr<std::optional<CacheEntry>> LookupCache(const std::string& key);
  absl::Status PutCache(const std::string& key, const CacheEntry& entry);

  // Small per-pipeline memory of the triggers: "head:DATASET@BRANCH" -> commit, "cron" -> ms.
  absl::StatusOr<std::optional<std::string>> GetTriggerState(const std::string& pipeline, const std::string& key);
  absl::Status SetTriggerState(const std::string& pipeline, const std::string& key, const std::string& value);

 private:
  PipelineStore(Env& env, std::unique_ptr<db::ConnectionPool> pool) : env_(env), pool_(std::move(pool)) {}
  absl::StatusOr<std::vector<StepRecord>> LoadSteps(db::Connection& conn, const std::string& run_id);
  absl::StatusOr<std::vector<PipelineRunRecord>> QueryRuns(const std::string& where, const std::string& arg,
                                                           int limit, bool newest_first);
  int64_t NowMs() const { return env_.NowMicros() / 1000; }

  Env& env_;
  std::unique_ptr<db::ConnectionPool> pool_;
};

}  // namespace cairn::pipeline

#endif  // CAIRN_PIPELINE_PIPELINE_STORE_H_
