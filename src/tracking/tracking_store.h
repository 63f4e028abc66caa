// TrackingStore: experiments, runs, params, metrics, tags, dataset inputs and
// artifact records, with MLflow's semantics and limits, on a db::Database.
//
// Writes go through a db::GroupCommitter: each call returns only once its
// change is durable, and concurrent calls share one transaction. Reads use a
// pool of connections and never block writers (WAL).
//
// Metric storage: each LogBatch appends, per metric key, one packed chunk
// (value, timestamp, step records; see docs/schema.md) and updates the key's
// latest value in `latest_metrics`; history reads concatenate chunks. This
// keeps ingest at a few rows per request however many points it carries.
//
// Errors (absl codes; the API maps them to MLflow error codes):
//   kNotFound (RESOURCE_DOES_NOT_EXIST), kInvalidArgument
//   (INVALID_PARAMETER_VALUE), kAlreadyExists (RESOURCE_ALREADY_EXISTS).
//
// Thread-safety: thread-safe.
//
// Usage:
//   ASSIGN_OR_RETURN(auto store, TrackingStore::Create(db, env));
//   ASSIGN_OR_RETURN(std::string exp, store->CreateExperiment("churn", "", {}));
//   ASSIGN_OR_RETURN(RunInfo run, store->CreateRun({.experiment_id = exp, .user_id = "ana"}));
//   RETURN_IF_ERROR(store->LogBatch(run.run_id, metrics, params, tags));
#ifndef CAIRN_TRACKING_TRACKING_STORE_H_
#define CAIRN_TRACKING_TRACKING_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/env.h"
#include "base/status.h"
#include "db/connection_pool.h"
#include "db/database.h"
#include "db/group_commit.h"
#include "tracking/search_filter.h"
#include "tracking/types.h"

namespace cairn::tracking {

// MLflow's limits (mlflow/utils/validation.py).
inline constexpr int kMaxMetricsPerBatch = 1000;
inline constexpr int kMaxParamsTagsPerBatch = 100;
inline constexpr int kMaxEntitiesPerBatch = 1000;
inline constexpr size_t kMaxEntityKeyLength = 250;
inline constexpr size_t kMaxParamValueLength = 6000;
inline constexpr size_t kMaxTagValueLength = 8000;
inline constexpr size_t kMaxExperimentTagValueLength = 5000;
inline constexpr int kMaxResultsDefault = 1000;
inline constexpr int kMaxResultsLimit = 50000;
inline constexpr int kMaxHistoryPage = 25000;  // metric history page size when max_results is unset

// MLflow's rules for one log-batch request (limits, keys, value lengths,
// consistent duplicate params), checked before anything is stored.
absl::Status ValidateLogBatch(const std::string& run_id, std::span<const Metric> metrics,
                              std::span<const Param> params, std::span<const Tag> tags);

struct CreateRunRequest {
  std::string experiment_id = "0";
  std::string user_id;
  std::string run_name;  // empty: generated, like MLflow ("bright-owl-42")
  std::optional<int64_t> start_time;
  std::vector<Tag> tags;
};

struct UpdateRunRequest {
  std::string run_id;
  std::optional<std::string> status;
  std::optional<int64_t> end_time;
  std::optional<std::string> run_name;
};

struct SearchRunsRequest {
  std::vector<std::string> experiment_ids;
  std::string filter;
  ViewType view_type = ViewType::kActiveOnly;
  int max_results = kMaxResultsDefault;
  std::vector<std::string> order_by;
  std::string page_token;
};

struct SearchRunsResult {
  std::vector<Run> runs;
  std::string next_page_token;  // empty when there are no more
};

struct SearchExperimentsRequest {
  std::string filter;
  ViewType view_type = ViewType::kActiveOnly;
  int max_results = kMaxResultsDefault;
  std::vector<std::string> order_by;
  std::string page_token;
};

struct SearchExperimentsResult {
  std::vector<Experiment> experiments;
  std::string next_page_token;
};

// A page of one metric's history. Points are kept without their key, so a
// million-point history is 24 MB rather than 56.
struct MetricHistoryPage {
  std::string key;
  std::vector<MetricPoint> points;
  std::string next_page_token;
};

class TrackingStore {
 public:
  // Migrates the schema and creates the "Default" experiment (id 0) if
  // absent. `db` and `env` are not owned and must outlive the store.
  static absl::StatusOr<std::unique_ptr<TrackingStore>> Create(db::Database& db, Env& env);
  ~TrackingStore();
  TrackingStore(const TrackingStore&) = delete;
  TrackingStore& operator=(const TrackingStore&) = delete;

  // Experiments.
  // Empty `artifact_location` means "mlflow-artifacts:/<id>". Returns the id.
  absl::StatusOr<std::string> CreateExperiment(const std::string& name, const std::string& artifact_location,
                                               const std::vector<Tag>& tags);
  absl::StatusOr<Experiment> GetExperiment(const std::string& experiment_id);
  absl::StatusOr<Experiment> GetExperimentByName(const std::string& name);
  absl::StatusOr<SearchExperimentsResult> SearchExperiments(const SearchExperimentsRequest& request);
  absl::Status RenameExperiment(const std::string& experiment_id, const std::string& new_name);
  // Deleting an experiment also marks its runs deleted; restoring restores them.
  absl::Status DeleteExperiment(const std::string& experiment_id);
  absl::Status RestoreExperiment(const std::string& experiment_id);
  absl::Status SetExperimentTag(const std::string& experiment_id, const std::string& key, const std::string& value);
  absl::Status DeleteExperimentTag(const std::string& experiment_id, const std::string& key);

  // Runs.
  absl::StatusOr<Run> CreateRun(const CreateRunRequest& request);
  absl::StatusOr<Run> GetRun(const std::string& run_id);
  absl::StatusOr<RunInfo> UpdateRun(const UpdateRunRequest& request);
  absl::Status DeleteRun(const std::string& run_id);
  absl::Status RestoreRun(const std::string& run_id);
  // Params are immutable (same value again is fine), metrics append-only,
  // tags overwrite. All or nothing.
  absl::Status LogBatch(const std::string& run_id, std::span<const Metric> metrics, std::span<const Param> params,
                        std::span<const Tag> tags);
  absl::Status DeleteTag(const std::string& run_id, const std::string& key);
  absl::Status LogInputs(const std::string& run_id, const std::vector<DatasetInput>& inputs);
  absl::StatusOr<SearchRunsResult> SearchRuns(const SearchRunsRequest& request);
  // History in logging order. max_results <= 0: all points (one page).
  absl::StatusOr<MetricHistoryPage> GetMetricHistory(const std::string& run_id, const std::string& key,
                                                     int max_results, const std::string& page_token);

  // Artifact records. `path` is relative to the artifact root, e.g.
  // "3/<run_id>/artifacts/model/model.pkl".
  absl::Status PutArtifact(const std::string& path, const ArtifactFile& file);
  absl::StatusOr<ArtifactFile> GetArtifact(const std::string& path);
  // Immediate children of directory `dir` ("" for the root); entry paths are
  // relative to `dir`. kNotFound never: an empty listing for an empty dir.
  absl::StatusOr<std::vector<ArtifactEntry>> ListArtifacts(const std::string& dir);
  // Deletes a file, or everything below a directory. kNotFound if neither.
  absl::Status DeleteArtifacts(const std::string& path);
  // Every artifact digest still referenced (for fsck and garbage collection).
  absl::Status ForEachArtifactDigest(const std::function<absl::Status(const std::string& path, const ArtifactFile&)>& fn);

  // Runs that logged a dataset input with this digest (for a Cairn dataset:
  // its commit id), oldest first.
  struct DatasetUse {
    std::string run_id;
    std::string experiment_id;
    std::string dataset_name;
    std::string context;  // the input's mlflow.data.context tag, if any
  };
  absl::StatusOr<std::vector<DatasetUse>> RunsUsingDataset(const std::string& digest);

  // Runs a read-only check of the metadata (metric chunk encoding, dangling
  // references); returns one line per problem.
  absl::StatusOr<std::vector<std::string>> CheckConsistency();

  db::GroupCommitter::Stats commit_stats() const { return committer_->stats(); }

 private:
  TrackingStore(db::Database& db, Env& env, std::unique_ptr<db::GroupCommitter> committer,
                std::unique_ptr<db::ConnectionPool> readers);

  struct RunRow;
  absl::StatusOr<RunRow> LoadRunRow(db::Connection& conn, const std::string& run_id);
  absl::StatusOr<std::vector<Run>> LoadRuns(db::Connection& conn, const std::vector<std::string>& run_ids);
  // kNotFound (MLflow's wording) if there is no such experiment.
  absl::StatusOr<Experiment> LoadExperiment(db::Connection& conn, const std::string& experiment_id);
  SqlDialect dialect() const {
    return db_.dialect() == db::Dialect::kPostgres ? SqlDialect::kPostgres : SqlDialect::kSqlite;
  }
  absl::Status SetLifecycle(const std::string& run_id, LifecycleStage to);

  db::Database& db_;
  Env& env_;
  std::unique_ptr<db::GroupCommitter> committer_;
  std::unique_ptr<db::ConnectionPool> readers_;
};

}  // namespace cairn::tracking

#endif  // CAIRN_TRACKING_TRACKING_STORE_H_
