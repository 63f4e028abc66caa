// The pipeline scheduler: runs a registered pipeline's steps (a DAG) on an
// executor, each step as a tracked MLflow run, with the run cache, sealed
// split enforcement, retries, cancellation and recovery after a crash.
//
// A pipeline run goes:
//   1. parse the registered cairn.yaml, apply -p overrides, pick the steps
//      (one step and its ancestors, or all);
//   2. snapshot the project's code (content-addressed, materialised once
//      under work/code/DIGEST) and capture the environment;
//   3. resolve every dataset input to a commit; refuse the whole run before
//      anything starts if a step that is not role `evaluate` asks for a
//      sealed split (steps reading a whole dataset never see sealed files);
//   4. run steps as their dependencies finish, up to max_parallel at once:
//      cache key = SHA-256 of (command, code, environment, params, input
//      digests, outputs); a key that succeeded before is CACHED (outputs
//      reused, nothing runs); otherwise inputs are materialised read-only,
//      the job is submitted, its log followed live (metric JSON lines become
//      MLflow metrics), and its outputs committed as dataset commits whose
//      message names the run.
// Everything is recorded in PipelineStore as it happens (docs/pipelines.md).
//
// Crash recovery: each scheduler holds a lock file work/owners/OWNER.lock
// for its lifetime. Recover() finds pipeline runs whose owner is gone: steps
// that were RUNNING are marked FAILED with the reason; runs owned by a server
// are resumed by a server (finished steps keep their outputs), others are
// marked FAILED with the reason.
//
// Thread-safety: thread-safe. Each pipeline run has its own thread; step
// jobs are followed by their own threads. The destructor stops following,
// cancels the jobs it started and leaves their pipeline runs for Recover.
//
// Usage:
//   ASSIGN_OR_RETURN(auto sched, PipelineScheduler::Create(deps));
//   ASSIGN_OR_RETURN(PipelineRecord p, sched->Register(yaml, "cairn.yaml", "/srv/project"));
//   ASSIGN_OR_RETURN(std::string id, sched->Start({.pipeline = p.name}));
//   ASSIGN_OR_RETURN(PipelineRunRecord done, sched->Wait(id, absl::InfiniteDuration()));
#ifndef CAIRN_PIPELINE_SCHEDULER_H_
#define CAIRN_PIPELINE_SCHEDULER_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/env.h"
#include "data/chunk_store.h"
#include "data/dataset_store.h"
#include "exec/executor.h"
#include "pipeline/pipeline_store.h"
#include "pipeline/step_data.h"
#include "store/object_store.h"
#include "tracking/tracking_store.h"

namespace cairn::pipeline {

struct SchedulerDeps {
  Env* env = nullptr;                          // all not owned; outlive the scheduler
  tracking::TrackingStore* tracking = nullptr;
  data::DatasetStore* datasets = nullptr;
  data::ChunkStore* chunks = nullptr;
  store::ObjectStore* objects = nullptr;
  PipelineStore* store = nullptr;
  std::vector<exec::Executor*> executors;      // "local", "slurm" (by Executor::name())
  std::string work_dir;                        // code snapshots, inputs, job folders, owner locks
  bool is_server = false;                      // its runs are resumed after a crash
};

struct RunRequest {
  std::string pipeline;
  std::vector<std::string> overrides;  // "k=v" or "step.k=v"
  std::string step;                    // "" = every step; else this step and its ancestors
  std::string executor = "local";
  bool no_cache = false;
  Json cause = {{"kind", "manual"}};
};

class PipelineScheduler {
 public:
  static absl::StatusOr<std::unique_ptr<PipelineScheduler>> Create(const SchedulerDeps& deps);
  ~PipelineScheduler();
  PipelineScheduler(const PipelineScheduler&) = delete;
  PipelineScheduler& operator=(const PipelineScheduler&) = delete;

  const std::string& owner_id() const { return owner_; }

  // Makes another executor available (e.g. Slurm, set up on first use).
  // `executor` is not owned and must outlive the scheduler.
  void AddExecutor(exec::Executor* executor) ABSL_LOCKS_EXCLUDED(mu_);

  // Validates the spec (kInvalidArgument, "FILE:LINE:COL: ...") and stores it.
  absl::StatusOr<PipelineRecord> Register(const std::string& spec_text, const std::string& file_name,
                                          const std::string& project_dir);

  // Checks the request (unknown pipeline, step, executor, bad overrides:
  // an error and no run), records a PENDING pipeline run and starts it.
  absl::StatusOr<std::string> Start(const RunRequest& request);

  // The run's record once it is final, or as it is when `timeout` passes.
  absl::StatusOr<PipelineRunRecord> Wait(const std::string& pipeline_run_id, absl::Duration timeout);

  // Cancels a pipeline run this scheduler is running: running jobs are
  // stopped, pending steps CANCELLED. `id` may also be the MLflow run id of
  // one of its steps. A run of another (live) process: kFailedPrecondition.
  absl::Status Cancel(const std::string& id);

  // The log of the step attempt that made MLflow run `run_id`.
  absl::StatusOr<exec::LogChunk> ReadLog(const std::string& run_id, uint64_t offset, size_t max_bytes);

  // See the header comment. Called by Create; public for the server's
  // periodic check and for tests.
  absl::Status Recover();

 private:
  struct ActiveRun;
  explicit PipelineScheduler(const SchedulerDeps& deps);
  absl::Status Launch(PipelineRunRecord run, bool resume);
  void RunPipeline(ActiveRun& active);
  absl::Status Prepare(ActiveRun& active);
  void RunStep(ActiveRun& active, size_t index);
  absl::Status ExecuteStep(ActiveRun& active, size_t index, StepRecord& rec);
  // The digest of the files `selection` keeps of `commit`: the cache key's
  // part for one dataset input.
  absl::StatusOr<std::string> ContentDigest(ActiveRun& active, const data::Dataset& ds,
                                            const data::DatasetCommit& commit, const FileSelection& selection);
  absl::StatusOr<bool> OwnerAlive(const std::string& owner);
  absl::Status FailOrphanedRun(PipelineRunRecord run, const std::string& why);
  void CancelOrphanedJob(const StepRecord& step);
  // Streams `file` into the object store and records it as the artifact
  // `artifact_path` (EXP/RUN/artifacts/...).
  absl::Status StoreArtifactFile(const std::string& file, const std::string& artifact_path);
  exec::Executor* ExecutorFor(const std::string& name) ABSL_LOCKS_EXCLUDED(mu_);

  SchedulerDeps deps_;
  std::string owner_;
  std::unique_ptr<FileLock> owner_lock_;

  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<ActiveRun>> active_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, exec::Executor*> executors_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> stopping_{false};
};

}  // namespace cairn::pipeline

#endif  // CAIRN_PIPELINE_SCHEDULER_H_
