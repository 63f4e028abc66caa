// The local sandbox: runs one job (a JobSpec) in bubblewrap on this machine,
// in the foreground, with the layout and limits executor.h describes. The
// SandboxExecutor (exec/sandbox_executor.h) runs these on worker threads;
// `cairn exec-job JOB_DIR` (the Slurm batch script) calls RunJobDirectory.
//
// How a job is started (details and the reasons: docs/executors.md):
//   1. The parent creates the job's cgroups (exec/cgroup.h), opens
//      output.log and forks.
//   2. The child joins the cgroups, sets the rlimits, and, when Cairn runs as
//      root, binds the host paths the unprivileged user could not reach (a
//      parent directory it may not search) onto a private tmpfs
//      (`stage_dir`, in a mount namespace of its own), then drops to
//      `uid`/`gid` and execs bwrap. (bwrap run as root is no sandbox: the
//      job would keep root's access to files.)
//   3. bwrap builds a minimal root, unshares every namespace (the network
//      too unless spec.network) and runs the command as pid 2 of a new pid
//      namespace, so killing bwrap kills every process of the job.
//   4. The parent copies the job's stdout+stderr (one pipe) to output.log as
//      it arrives, enforces the wall time, CPU time and output limits,
//      and reports exit status and usage.
//
// Thread-safety: the functions are thread-safe; each call runs one job. The
// calling thread must stay alive until the call returns (the job is killed
// when the thread that started it exits).
//
// Usage:
//   SandboxOptions options;                       // uid/gid 65534, /usr/bin/bwrap
//   ASSIGN_OR_RETURN(JobStatus st, RunInSandbox(spec, "job-1", options));
//   // or, on a Slurm node:
//   ASSIGN_OR_RETURN(JobStatus st, RunJobDirectory("/shared/jobs/j1", options));
#ifndef CAIRN_EXEC_SANDBOX_H_
#define CAIRN_EXEC_SANDBOX_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "exec/executor.h"

namespace cairn::exec {

struct SandboxOptions {
  // The unprivileged user jobs run as when Cairn runs as root (as another
  // user, jobs run as that user). Must not be 0.
  uid_t uid = 65534;
  gid_t gid = 65534;
  std::string bwrap = "/usr/bin/bwrap";
  // Where cgroup file systems are mounted: "" finds them
  // (/proc/self/mountinfo); "none" uses no cgroups (rlimits only).
  std::string cgroup_root;
  // Root only: an existing directory that a private tmpfs covers, in the
  // job's own mount namespace, to stage the host paths the job sees but
  // `uid` could not reach (a parent directory it may not search). The
  // host's copy of the directory is never touched. "" disables staging
  // (then every mounted host path must be reachable by `uid`).
  std::string stage_dir = "/run";
  // The memory limit of jobs that ask for none (Resources::memory_bytes 0).
  uint64_t default_memory_bytes = 4ull << 30;
};

// The bwrap command line for one job.
struct BwrapCommand {
  // argv[0] is SandboxOptions::bwrap; the job's argv follows "--".
  std::vector<std::string> argv;
  // With staging: the host paths the child binds at `<stage_dir>/<i>`
  // before it drops privileges (argv names those paths, not the host ones):
  // those that the job's user could not reach itself.
  std::vector<std::string> staged_sources;
  // Host files whose content bwrap copies into the sandbox (--file FD): the
  // i-th is read from descriptor kBwrapStatusFd + 1 + i.
  std::vector<std::string> copied_files;
};

// Lines the sandbox itself writes into output.log (before the job's own
// output) start with this, e.g. to say that a limit is an rlimit because no
// cgroup was writable.
inline constexpr char kSandboxNotePrefix[] = "cairn-sandbox: ";

// The file descriptor (in bwrap) on which bwrap reports the command's start
// and exit as JSON (--json-status-fd).
inline constexpr int kBwrapStatusFd = 3;

// Builds the bwrap argv for `spec` (which must pass ValidateJobSpec): the
// layout of executor.h, the environment allow-list, and the host's (or
// spec.root_dir's) /usr and the pieces of /etc a program needs. It looks at
// the file system (which of /lib64, /etc/ssl... exist) but changes nothing.
// `staged` selects staging (see SandboxOptions::stage_dir).
// kFailedPrecondition when spec.gpus > 0 and this machine has fewer GPUs.
absl::StatusOr<BwrapCommand> BuildBwrapCommand(const JobSpec& spec, const std::string& job_id,
                                               const SandboxOptions& options, bool staged);

// Runs `spec` to its end and returns its final status; writes
// spec.job_dir/output.log (truncated first) but not result.json. Setting
// `*cancel` (may be null) stops the job: it ends kCancelled. Errors:
// kInvalidArgument for a bad spec or host path (a missing input, an output
// that is not an empty directory), kFailedPrecondition when the sandbox
// cannot be set up (the message says why); a job that runs and fails is an
// OK status with state kFailed.
absl::StatusOr<JobStatus> RunInSandbox(const JobSpec& spec, const std::string& job_id,
                                       const SandboxOptions& options, const std::atomic<bool>* cancel = nullptr);

// For `cairn exec-job JOB_DIR`: reads JOB_DIR/spec.json, runs it with
// RunInSandbox (job id: `job_id`, or JOB_DIR's base name when empty) and
// writes JOB_DIR/result.json, also when the job could not start (state
// kFailed, the error as the reason). Returns that status; an error only
// when result.json could not be written.
absl::StatusOr<JobStatus> RunJobDirectory(const std::string& job_dir, const SandboxOptions& options,
                                          const std::string& job_id = "",
                                          const std::atomic<bool>* cancel = nullptr);

// Checks the host side of a valid spec: job_dir, code_dir and every input
// exist; every output is an existing empty directory; root_dir has a usr/
// directory. kInvalidArgument naming the field otherwise.
absl::Status CheckJobHostPaths(const JobSpec& spec);

// "64 MiB", "1 GiB", "1.5 KiB", "100 bytes": sizes in reasons and notes.
std::string FormatBytes(uint64_t bytes);

}  // namespace cairn::exec

#endif  // CAIRN_EXEC_SANDBOX_H_
