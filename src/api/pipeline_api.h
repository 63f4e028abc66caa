// Pipelines over HTTP, /api/cairn/v1/pipelines/..., /pipeline-runs/... and
// the logs and cancellation of step runs, /api/cairn/v1/runs/RUN/...
// Reference: docs/api-pipelines.md.
//
// PipelineService bundles what runs pipelines in one process: the pipeline
// store, the executors (the local sandbox; Slurm when asked for and
// reachable), the scheduler and, in a server, the trigger loop. The CLI's
// embedded mode makes one on demand (DataDirectory::pipelines()); `cairn
// server` makes one at start, which also resumes the runs a crashed server
// left behind.
//
// Thread-safety: thread-safe.
#ifndef CAIRN_API_PIPELINE_API_H_
#define CAIRN_API_PIPELINE_API_H_

#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "exec/executor.h"
#include "http/http.h"
#include "pipeline/pipeline_store.h"
#include "pipeline/scheduler.h"
#include "pipeline/triggers.h"

namespace cairn::api {

class DataDirectory;

struct PipelineServiceOptions {
  bool server = false;  // resume crashed server runs; run triggers
  absl::Duration trigger_interval = absl::Seconds(1);
};

class PipelineService {
 public:
  // `dir` is not owned and must outlive the service.
  static absl::StatusOr<std::unique_ptr<PipelineService>> Create(DataDirectory& dir,
                                                                 const PipelineServiceOptions& options);
  ~PipelineService();
  PipelineService(const PipelineService&) = delete;
  PipelineService& operator=(const PipelineService&) = delete;

  pipeline::PipelineStore& store() { return *store_; }
  pipeline::PipelineScheduler& scheduler() { return *scheduler_; }
  pipeline::TriggerLoop* triggers() { return triggers_.get(); }

  // Makes the Slurm executor available on first use (kFailedPrecondition
  // with the reason when Slurm cannot be reached).
  absl::Status EnsureExecutor(const std::string& name);

 private:
  PipelineService() = default;
  DataDirectory* dir_ = nullptr;
  std::unique_ptr<pipeline::PipelineStore> store_;
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<exec::Executor>> executors_ ABSL_GUARDED_BY(mu_);
  std::string local_error_;  // why the local sandbox is unavailable, if it is
  std::unique_ptr<pipeline::PipelineScheduler> scheduler_;
  std::unique_ptr<pipeline::TriggerLoop> triggers_;  // server only
};

void AddPipelineRoutes(DataDirectory& dir, http::Router& router);

// JSON shapes shared by the API and the CLI (docs/api-pipelines.md).
Json PipelineRunJson(const pipeline::PipelineRunRecord& run);
Json StepJson(const pipeline::StepRecord& step);

}  // namespace cairn::api

#endif  // CAIRN_API_PIPELINE_API_H_
