// SandboxExecutor: the "local" Executor. Runs jobs on this machine in the
// bubblewrap sandbox of exec/sandbox.h, at most `max_parallel` at a time
// (the rest wait, QUEUED, in submission order), each on one of a fixed set
// of worker threads.
//
// Submit validates the spec and the host paths, writes spec.json and an
// empty output.log into the job dir and returns; a worker then runs the job,
// copies its output into output.log as it comes, writes result.json when it
// ends and only then reports it final (so after Wait returns a final status,
// result.json is there). Jobs live as long as the executor: destroying it
// cancels the queued ones and kills the running ones. Job ids are known only
// to the executor that made them.
//
// Thread-safety: thread-safe (see Executor).
//
// Usage:
//   ASSIGN_OR_RETURN(std::unique_ptr<SandboxExecutor> executor, SandboxExecutor::Create(SandboxOptions()));
//   ASSIGN_OR_RETURN(JobId id, executor->Submit(spec));
//   ASSIGN_OR_RETURN(JobStatus st, executor->Wait(id, absl::InfiniteDuration()));
#ifndef CAIRN_EXEC_SANDBOX_EXECUTOR_H_
#define CAIRN_EXEC_SANDBOX_EXECUTOR_H_

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "exec/executor.h"
#include "exec/sandbox.h"

namespace cairn::exec {

class SandboxExecutor : public Executor {
 public:
  // Checks that bubblewrap exists and can start a sandbox here (it runs
  // /bin/true once): kFailedPrecondition saying what is wrong otherwise.
  // `max_parallel` <= 0: one job per CPU.
  static absl::StatusOr<std::unique_ptr<SandboxExecutor>> Create(SandboxOptions options, int max_parallel = 0);
  // Cancels queued jobs, kills running ones and waits for the workers.
  ~SandboxExecutor() override;
  SandboxExecutor(const SandboxExecutor&) = delete;
  SandboxExecutor& operator=(const SandboxExecutor&) = delete;

  std::string name() const override { return "local"; }
  absl::StatusOr<JobId> Submit(const JobSpec& spec) override;
  absl::StatusOr<JobStatus> Status(const JobId& id) override;
  absl::StatusOr<JobStatus> Wait(const JobId& id, absl::Duration timeout) override;
  absl::Status Cancel(const JobId& id) override;
  absl::StatusOr<LogChunk> ReadLog(const JobId& id, uint64_t offset, size_t max_bytes) override;

 private:
  struct Entry {
    JobStatus status;
    std::string job_dir;
    std::shared_ptr<std::atomic<bool>> cancel;
  };
  struct Queued {
    JobId id;
    JobSpec spec;
    std::shared_ptr<std::atomic<bool>> cancel;
  };

  SandboxExecutor(SandboxOptions options, int workers);
  void Work();
  // Marks a queued job cancelled and writes its result.json.
  void CancelQueued(Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const SandboxOptions options_;
  absl::Mutex mu_;
  absl::CondVar work_cv_;  // the queue has a job, or stopping_
  absl::CondVar done_cv_;  // a job became final
  absl::flat_hash_map<JobId, Entry> jobs_ ABSL_GUARDED_BY(mu_);
  std::deque<Queued> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace cairn::exec

#endif  // CAIRN_EXEC_SANDBOX_EXECUTOR_H_
