// SlurmExecutor runs each job as a Slurm batch job: Submit writes the job's
// spec.json and a one-line batch script into its job directory and hands it
// to `sbatch`; on the node, the script runs `cairn exec-job JOB_DIR`, which
// runs the job in Cairn's sandbox there (exec/sandbox.h) and writes
// output.log and result.json into the job directory. The job directory must
// therefore be on a file system the nodes share with the submitter.
//
// Status comes from result.json once it exists; before that from Slurm
// (`scontrol show job -o ID`). When Slurm ended a job without the launcher
// writing result.json (cancelled, time limit, node failure, out of memory,
// ...), the executor writes one itself, so the job's fate survives Slurm
// forgetting it (MinJobAge). Details: docs/executors.md, "Slurm".
//
// Jobs outlive the executor and the process that submitted them
// (destroying a SlurmExecutor stops nothing): a restarted server calls
// Adopt(id, job_dir) for each job it still cares about.
//
// Thread-safety: thread-safe (see Executor). Each call may run Slurm's
// client programs; none holds a lock while doing so.
//
// Usage:
//   SlurmOptions options;
//   options.cairn_binary = "/usr/local/bin/cairn";
//   options.partition = "gpu";
//   ASSIGN_OR_RETURN(std::unique_ptr<SlurmExecutor> slurm, SlurmExecutor::Create(options));
//   ASSIGN_OR_RETURN(JobId id, slurm->Submit(spec));           // "4711"
//   ...after a restart:
//   RETURN_IF_ERROR(slurm->Adopt("4711", spec.job_dir));
//   ASSIGN_OR_RETURN(JobStatus st, slurm->Status("4711"));
#ifndef CAIRN_EXEC_SLURM_EXECUTOR_H_
#define CAIRN_EXEC_SLURM_EXECUTOR_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/env.h"
#include "base/status.h"
#include "exec/executor.h"

namespace cairn::exec {

struct SlurmOptions {
  // Absolute path of the `cairn` executable as the nodes see it.
  std::string cairn_binary;
  // Slurm partition (-p); empty: the cluster's default.
  std::string partition;
  // Variables set for Slurm's client programs (and so, with sbatch's default
  // --export=ALL, for the launcher), e.g. SLURM_CONF of a test cluster.
  std::map<std::string, std::string> env;
  // Directory holding sbatch, scontrol and scancel; empty: look them up on
  // PATH.
  std::string bin_dir;
  // First interval between Status polls in Wait; doubles up to 1 s.
  absl::Duration poll_interval = absl::Milliseconds(100);
};

// The file in a job directory holding the batch script Submit hands to sbatch.
inline constexpr char kSlurmBatchScript[] = "job.sbatch";
// The Slurm job's own stdout and stderr: only the launcher's errors go here.
inline constexpr char kSlurmLauncherLog[] = "slurm.out";

class SlurmExecutor : public Executor {
 public:
  // Checks that sbatch, scontrol and scancel exist and that the controller
  // answers (`scontrol ping`); kFailedPrecondition saying which is missing
  // or down. kInvalidArgument for a relative or empty cairn_binary.
  static absl::StatusOr<std::unique_ptr<SlurmExecutor>> Create(const SlurmOptions& options);

  SlurmExecutor(const SlurmExecutor&) = delete;
  SlurmExecutor& operator=(const SlurmExecutor&) = delete;

  std::string name() const override { return "slurm"; }

  // Returns Slurm's job id. kInvalidArgument for a bad spec or host path
  // (nothing written); kFailedPrecondition when Slurm refuses the job as one
  // it can never run (unknown partition, more CPUs, memory or GPUs than any
  // node has); kUnavailable when the controller does not answer.
  absl::StatusOr<JobId> Submit(const JobSpec& spec) override;
  // kNotFound for an id neither submitted nor adopted here; kUnavailable
  // when Slurm must be asked and does not answer.
  absl::StatusOr<JobStatus> Status(const JobId& id) override;
  absl::StatusOr<JobStatus> Wait(const JobId& id, absl::Duration timeout) override;
  // scancel, then waits (a few seconds at most) until Slurm has stopped the
  // job's processes; the job ends kCancelled.
  absl::Status Cancel(const JobId& id) override;
  absl::StatusOr<LogChunk> ReadLog(const JobId& id, uint64_t offset, size_t max_bytes) override;

  // Makes a job submitted earlier (by this or another process) known to
  // this executor. kInvalidArgument for an id that is not a Slurm job id;
  // kNotFound when `job_dir` holds no spec.json; kAlreadyExists when `id`
  // is known with another directory. Adopting the same pair again is OK.
  absl::Status Adopt(const JobId& id, const std::string& job_dir) override;

 private:
  explicit SlurmExecutor(const SlurmOptions& options);

  struct CommandOutput {
    int exit_code = -1;
    std::string out;
    std::string err;
  };
  // Runs a Slurm client program (an absolute path) to completion;
  // kUnavailable when it runs past `timeout` (it is killed).
  absl::StatusOr<CommandOutput> RunSlurm(const std::string& program, const std::vector<std::string>& args,
                                         absl::Duration timeout) const;
  // Slurm's record of the job: kNotFound once Slurm no longer knows it.
  absl::StatusOr<std::map<std::string, std::string>> QuerySlurm(const JobId& id) const;
  absl::StatusOr<std::string> JobDir(const JobId& id);
  // The job's status from result.json and Slurm; writes result.json when
  // Slurm ended the job without the launcher's word (or with a poorer one).
  absl::StatusOr<JobStatus> Resolve(const JobId& id, const std::string& job_dir);

  const SlurmOptions options_;
  const std::unique_ptr<Env> env_;
  std::string sbatch_, scontrol_, scancel_;
  // "KEY=VALUE" for every Slurm client: this process's environment plus options_.env.
  std::vector<std::string> environment_;

  absl::Mutex mu_;
  std::map<JobId, std::string> job_dirs_ ABSL_GUARDED_BY(mu_);
  // Final statuses never change: remembered to spare a read and a scontrol.
  std::map<JobId, JobStatus> final_ ABSL_GUARDED_BY(mu_);
};

// ---- Slurm's text formats, exposed for tests ----

// One job's Key=Value fields as `scontrol show job -o` prints them on one
// line. A value may contain spaces (a path): a word without "Key=" continues
// the previous value. kInvalidArgument when JobId or JobState is missing.
absl::StatusOr<std::map<std::string, std::string>> ParseScontrolJob(const std::string& line);

// What a job that has no result.json is, judging by Slurm's record alone:
// QUEUED or RUNNING while Slurm still runs it, else the final state with a
// reason ("killed by Slurm: time limit of 5 min", "cancelled", "node
// failure"). A COMPLETED job without result.json is FAILED: its launcher
// did not report.
JobStatus StatusFromScontrol(const std::map<std::string, std::string>& job);

// True while Slurm may still run processes of the job (pending, running,
// completing, suspended, ...).
bool ScontrolJobActive(const std::map<std::string, std::string>& job);

// The batch script that runs `job_dir`'s job on a node with `cairn_binary`.
std::string SlurmBatchScript(const std::string& cairn_binary, const std::string& job_dir, const std::string& name);

// sbatch's arguments (without the program) for `spec`, whose job directory
// holds the batch script.
std::vector<std::string> SbatchArguments(const JobSpec& spec, const std::string& partition);

}  // namespace cairn::exec

#endif  // CAIRN_EXEC_SLURM_EXECUTOR_H_
