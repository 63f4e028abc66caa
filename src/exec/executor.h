// Executors run one job (a pipeline step's command) somewhere, isolated, and
// report on it: the local sandbox (bubblewrap on this machine,
// exec/sandbox_executor.h) and Slurm (exec/slurm_executor.h) implement this
// interface and pass one shared test suite (exec/executor_suite.h).
//
// A job sees a fixed layout, whatever runs it:
//   /cairn/code             the code snapshot, read-only; the working directory
//   /cairn/in/<name>        each input, read-only
//   /cairn/out/<name>       each output, writable, empty at start
//   /tmp                    private, empty
// with only the environment variables the spec lists (plus PATH, HOME=/tmp,
// LANG=C.UTF-8, CAIRN_JOB_ID, CAIRN_OUT=/cairn/out), no network unless
// `network` is set, and as an unprivileged user even when Cairn runs as root.
//
// Each job has its own directory on the host (`JobSpec::job_dir`, created by
// the caller) where the executor keeps what it reports: `output.log` (stdout
// and stderr, interleaved in the order written), `result.json` (exit status
// and resource usage, written once the job ends). Logs are therefore
// readable, and followable, while the job runs, by any process on the host.
//
// Thread-safety: implementations are thread-safe; Submit, Status, Wait,
// Cancel and ReadLog may be called from any thread, for any job.
//
// Usage:
//   JobSpec spec;
//   spec.argv = {"/usr/bin/python3", "train.py"};
//   spec.code_dir = "/srv/snap/abc"; spec.job_dir = "/srv/jobs/j1";
//   spec.inputs.push_back({"train", "/srv/checkouts/c1"});
//   spec.outputs.push_back({"model", "/srv/jobs/j1/out/model"});
//   ASSIGN_OR_RETURN(JobId id, executor.Submit(spec));
//   ASSIGN_OR_RETURN(JobStatus st, executor.Wait(id, absl::InfiniteDuration()));
#ifndef CAIRN_EXEC_EXECUTOR_H_
#define CAIRN_EXEC_EXECUTOR_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "base/status.h"

namespace cairn::exec {

// Opaque, unique within one executor; survives a restart of the process
// that submitted it only for executors whose jobs outlive it (Slurm).
using JobId = std::string;

struct Mount {
  std::string name;       // [A-Za-z0-9_.-]{1,64}: /cairn/in/<name> or /cairn/out/<name>
  std::string host_path;  // absolute; inputs: must exist; outputs: an existing empty directory
};

struct Resources {
  int cpus = 1;                         // Slurm --cpus-per-task; local: cgroup cpu quota where writable
  uint64_t memory_bytes = 0;            // 0: executor default (local: 4 GiB)
  int gpus = 0;                         // Slurm --gres=gpu:N; local: refused when > 0 and none present
  absl::Duration wall_timeout = absl::Hours(24);  // kills the whole process tree
  absl::Duration cpu_time = absl::ZeroDuration();  // 0: no limit (RLIMIT_CPU)
  int max_processes = 256;              // pids cgroup where writable, else RLIMIT_NPROC
  uint64_t max_output_bytes = 1ull << 30;  // log and every output together (RLIMIT_FSIZE per file)
};

struct JobSpec {
  std::string name;                 // for humans: shown by Slurm, in logs
  std::vector<std::string> argv;    // argv[0] is looked up on the sandbox's PATH
  std::map<std::string, std::string> env;  // added to the allow-listed base environment
  std::string code_dir;             // host path mounted read-only at /cairn/code (may be empty: none)
  std::vector<Mount> inputs;
  std::vector<Mount> outputs;
  std::string root_dir;             // an environment folder used as the read-only root; empty: the host's /usr
  bool network = false;
  Resources resources;
  std::string job_dir;              // host path, exists, owned by the executor once submitted
};

enum class JobState { kQueued, kRunning, kSucceeded, kFailed, kCancelled };
const char* JobStateName(JobState s);  // "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"
inline bool IsFinal(JobState s) { return s != JobState::kQueued && s != JobState::kRunning; }

// What every executor requires of a spec, checked without touching the file
// system (whether paths exist is each executor's own check, on the machine
// that runs the job): a non-empty argv without NUL bytes; mount names
// matching [A-Za-z0-9_.-]{1,64} (not "." or ".."), unique among the inputs
// and among the outputs; absolute host paths; environment names matching
// [A-Za-z_][A-Za-z0-9_]*, other than the ones the executor sets
// (CAIRN_JOB_ID, CAIRN_OUT); an absolute job_dir; positive limits.
// kInvalidArgument naming the field (e.g. "inputs[1].name").
absl::Status ValidateJobSpec(const JobSpec& spec);

struct JobStatus {
  JobState state = JobState::kQueued;
  std::optional<int> exit_code;     // set when the command exited
  std::optional<int> term_signal;   // set when it was killed by a signal
  // Why a job failed or was stopped, in words, e.g. "exceeded wall time limit
  // of 10s", "out of memory (limit 512 MiB)", "exit code 3".
  std::string reason;
  double cpu_seconds = 0;           // user + system, the whole tree
  uint64_t peak_memory_bytes = 0;
  int64_t started_at_ms = 0;
  int64_t ended_at_ms = 0;
};

struct LogChunk {
  std::string bytes;
  uint64_t next_offset = 0;
  bool finished = false;  // the job has ended and `bytes` reaches the end of its log
};

class Executor {
 public:
  virtual ~Executor() = default;

  // "local" or "slurm".
  virtual std::string name() const = 0;

  // Validates `spec` (kInvalidArgument naming the bad field) and starts it.
  // A job that can never run here (e.g. GPUs asked of a machine with none)
  // is kFailedPrecondition, and nothing is started.
  virtual absl::StatusOr<JobId> Submit(const JobSpec& spec) = 0;

  // kNotFound for an unknown id.
  virtual absl::StatusOr<JobStatus> Status(const JobId& id) = 0;

  // Blocks until the job is final or `timeout` passes; returns its status
  // either way (check IsFinal).
  virtual absl::StatusOr<JobStatus> Wait(const JobId& id, absl::Duration timeout) = 0;

  // Stops the whole process tree; the job ends kCancelled. Cancelling a
  // finished job is OK and changes nothing.
  virtual absl::Status Cancel(const JobId& id) = 0;

  // Takes over a job an earlier process submitted (its id and job folder,
  // as recorded), for executors whose jobs outlive their submitter (Slurm),
  // so that Status, Cancel and ReadLog work for it. Others: kUnimplemented
  // (their jobs die with the process that started them).
  virtual absl::Status Adopt(const JobId& id, const std::string& job_dir) {
    return absl::UnimplementedError(name() + " jobs do not outlive the process that started them");
  }

  // Up to `max_bytes` of the job's combined stdout/stderr from `offset`.
  virtual absl::StatusOr<LogChunk> ReadLog(const JobId& id, uint64_t offset, size_t max_bytes) = 0;
};

}  // namespace cairn::exec

#endif  // CAIRN_EXEC_EXECUTOR_H_
