#include "exec/sandbox_executor.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/env.h"
#include "base/ids.h"
#include "exec/cgroup.h"
#include "exec/job_files.h"

namespace cairn::exec {
namespace {


int64_t NowMillis() { return absl::ToUnixMillis(absl::Now()); }

constexpr size_t kForgetAfterJobs = 4096;
constexpr int64_t kForgetAfterMs = 10 * 60 * 1000;

// Starts /bin/true in the sandbox once; kFailedPrecondition with the
// reason (bwrap's own message included) when it does not succeed.
absl::Status ProbeSandbox(const SandboxOptions& options) {
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/cairn-sandbox-probe-XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) {
    return absl::FailedPreconditionError(fmt::format("making a probe directory: {}", std::strerror(errno)));
  }
  JobSpec spec;
  spec.name = "sandbox probe";
  spec.argv = {"true"};
  spec.job_dir = dir;
  spec.resources.wall_timeout = absl::Seconds(30);
  absl::StatusOr<JobStatus> st = RunInSandbox(spec, "probe", options);
  std::string log;
  if (st.ok() && st->state != JobState::kSucceeded) {
    log = NewPosixEnv()->ReadFileToString(JoinPath(dir, kJobLogFile)).value_or("");
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (!st.ok()) {
    return absl::FailedPreconditionError(
        fmt::format("the bubblewrap sandbox does not work here: {}", st.status().message()));
  }
  if (st->state != JobState::kSucceeded) {
    return absl::FailedPreconditionError(fmt::format(
        "the bubblewrap sandbox does not work here ({} could not run /bin/true: {}){}{}", options.bwrap, st->reason,
        log.empty() ? "" : "; its output: ", log.substr(0, 500)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SandboxExecutor>> SandboxExecutor::Create(SandboxOptions options, int max_parallel) {
  if (::geteuid() == 0 && (options.uid == 0 || options.gid == 0)) {
    return absl::InvalidArgumentError("SandboxOptions: jobs must not run as uid or gid 0");
  }
  if (::access(options.bwrap.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(
        fmt::format("bubblewrap not found at {} ({}): install the bubblewrap package or set SandboxOptions.bwrap",
                    options.bwrap, std::strerror(errno)));
  }
  RETURN_IF_ERROR(ProbeSandbox(options));
  // Cgroups of jobs whose executor was killed before it could remove them.
  if (int removed = RemoveStaleJobCgroups(CgroupLayout::Detect(options.cgroup_root)); removed > 0) {
    spdlog::info("removed {} job cgroups left by processes that no longer exist", removed);
  }
  int workers = max_parallel > 0 ? max_parallel : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::unique_ptr<SandboxExecutor>(new SandboxExecutor(std::move(options), workers));
}

SandboxExecutor::SandboxExecutor(SandboxOptions options, int workers) : options_(std::move(options)) {
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this] { Work(); });
}

SandboxExecutor::~SandboxExecutor() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (const Queued& q : queue_) {
      if (auto it = jobs_.find(q.id); it != jobs_.end()) CancelQueued(it->second);
    }
    queue_.clear();
    for (auto& [id, entry] : jobs_) {
      if (!IsFinal(entry.status.state)) entry.cancel->store(true);
    }
    work_cv_.SignalAll();
  }
  for (std::thread& t : workers_) t.join();
}

void SandboxExecutor::CancelQueued(Entry& entry) {
  entry.status.state = JobState::kCancelled;
  entry.status.reason = "cancelled";
  entry.status.ended_at_ms = NowMillis();
  if (absl::Status s = WriteJobResult(entry.status, entry.job_dir, /*sync=*/false); !s.ok()) {
    spdlog::warn("job dir {}: writing the result of a cancelled job: {}", entry.job_dir, s.message());
  }
  done_cv_.SignalAll();
}

void SandboxExecutor::Work() {
  for (;;) {
    Queued job;
    {
      absl::MutexLock lock(&mu_);
      while (queue_.empty() && !stopping_) work_cv_.Wait(&mu_);
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      auto it = jobs_.find(job.id);
      if (it == jobs_.end() || IsFinal(it->second.status.state)) continue;  // cancelled while queued
      it->second.status.state = JobState::kRunning;
      it->second.status.started_at_ms = NowMillis();
    }

    absl::StatusOr<JobStatus> result = RunInSandbox(job.spec, job.id, options_, job.cancel.get());
    JobStatus status;
    if (result.ok()) {
      status = *std::move(result);
    } else {
      status.state = JobState::kFailed;
      status.reason = std::string(result.status().message());
      status.ended_at_ms = NowMillis();
    }
    if (absl::Status s = WriteJobResult(status, job.spec.job_dir, /*sync=*/false); !s.ok()) {
      spdlog::warn("job {}: writing result.json: {}", job.id, s.message());
    }

    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job.id);
    if (it != jobs_.end()) {
      if (status.started_at_ms == 0) status.started_at_ms = it->second.status.started_at_ms;
      it->second.status = std::move(status);
    }
    done_cv_.SignalAll();
  }
}

absl::StatusOr<JobId> SandboxExecutor::Submit(const JobSpec& spec) {
  RETURN_IF_ERROR(ValidateJobSpec(spec));
  RETURN_IF_ERROR(CheckJobHostPaths(spec));
  if (spec.resources.gpus > 0) {
    // Fails for a machine with too few GPUs; the command itself is built again when the job runs.
    RETURN_IF_ERROR(BuildBwrapCommand(spec, "check", options_, false).status());
  }

  // A job dir used before must not show the old result as this job's.
  const std::string result_path = JoinPath(spec.job_dir, kJobResultFile);
  if (::unlink(result_path.c_str()) != 0 && errno != ENOENT) {
    return absl::FailedPreconditionError(fmt::format("removing {}: {}", result_path, std::strerror(errno)));
  }
  // Not synced: a local job does not outlive the machine, and on a busy disk
  // an fsync can cost more than starting the sandbox.
  RETURN_IF_ERROR(WriteJobSpec(spec, spec.job_dir, /*sync=*/false));
  // Followers can open the log at once, before the job starts.
  const std::string log_path = JoinPath(spec.job_dir, kJobLogFile);
  int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::FailedPreconditionError(fmt::format("creating {}: {}", log_path, std::strerror(errno)));
  ::close(fd);

  JobId id = "local-" + NewRandomHex(8);
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::FailedPreconditionError("the executor is shutting down");
  Entry entry;
  entry.job_dir = spec.job_dir;
  entry.cancel = cancel;
  if (jobs_.size() >= kForgetAfterJobs) {
    // A long-lived server must not keep every job forever: forget jobs that
    // ended long ago (their job folders keep result.json and the log).
    const int64_t cutoff = NowMillis() - kForgetAfterMs;
    for (auto it = jobs_.begin(); it != jobs_.end();) {
      const JobStatus& st = it->second.status;
      if (IsFinal(st.state) && st.ended_at_ms < cutoff) {
        jobs_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  jobs_.emplace(id, std::move(entry));
  queue_.push_back(Queued{id, spec, std::move(cancel)});
  work_cv_.Signal();
  return id;
}

absl::StatusOr<JobStatus> SandboxExecutor::Status(const JobId& id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return absl::NotFoundError(fmt::format("no job '{}'", id));
  return it->second.status;
}

absl::StatusOr<JobStatus> SandboxExecutor::Wait(const JobId& id, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::MutexLock lock(&mu_);
  for (;;) {
    // Look the job up again after every wait: inserts may move the map's entries.
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return absl::NotFoundError(fmt::format("no job '{}'", id));
    if (IsFinal(it->second.status.state)) return it->second.status;
    if (done_cv_.WaitWithDeadline(&mu_, deadline)) {
      it = jobs_.find(id);
      return it->second.status;
    }
  }
}

absl::Status SandboxExecutor::Cancel(const JobId& id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return absl::NotFoundError(fmt::format("no job '{}'", id));
  Entry& entry = it->second;
  switch (entry.status.state) {
    case JobState::kQueued:
      // The worker that takes it from the queue sees it final and skips it.
      CancelQueued(entry);
      break;
    case JobState::kRunning:
      // The worker kills it within a tick and reports it cancelled.
      entry.cancel->store(true);
      break;
    default:
      break;
  }
  return absl::OkStatus();
}

absl::StatusOr<LogChunk> SandboxExecutor::ReadLog(const JobId& id, uint64_t offset, size_t max_bytes) {
  std::string job_dir;
  bool final = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return absl::NotFoundError(fmt::format("no job '{}'", id));
    job_dir = it->second.job_dir;
    // Read before the file: once final, the log is complete.
    final = IsFinal(it->second.status.state);
  }
  return ReadJobLog(job_dir, offset, max_bytes, final);
}

}  // namespace cairn::exec
