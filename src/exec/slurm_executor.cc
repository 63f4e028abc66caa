#include "exec/slurm_executor.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <sstream>

#include "base/env.h"
#include "base/shell.h"
#include "exec/job_files.h"
#include "exec/sandbox.h"

extern char** environ;

namespace cairn::exec {
namespace {

// Slurm's clients retry a silent controller for MessageTimeout (10 s by
// default) several times; past this, the cluster counts as unreachable.
constexpr absl::Duration kCommandTimeout = absl::Seconds(60);
constexpr absl::Duration kPingTimeout = absl::Seconds(20);
// How long Cancel waits for Slurm to stop a job's processes (SIGTERM, then
// SIGKILL after the cluster's KillWait, 30 s by default).
constexpr absl::Duration kCancelWait = absl::Seconds(10);
constexpr absl::Duration kMaxPollInterval = absl::Seconds(1);
// The sandbox on the node enforces wall_timeout itself and reports it
// precisely; Slurm's own limit is a backstop, one minute later.
constexpr int64_t kTimeLimitGraceMinutes = 1;
constexpr uint64_t kMiB = 1024 * 1024;
constexpr size_t kMaxJobNameLength = 64;

// Slurm shows job names in one-line, space-separated records: keep them to
// characters that cannot be mistaken for a field boundary.
std::string SlurmJobName(const std::string& name) {
  std::string out;
  for (char c : name) {
    if (out.size() >= kMaxJobNameLength) break;
    bool plain =
        (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    out += plain ? c : '_';
  }
  return out.empty() ? "cairn-job" : out;
}

bool IsSlurmJobId(const std::string& id) {
  return !id.empty() && id.size() <= 20 &&
         std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string Field(const std::map<std::string, std::string>& job, const std::string& key) {
  auto it = job.find(key);
  return it == job.end() ? "" : it->second;
}

// "2026-11-22T03:44:39" in the cluster's local time; 0 for "Unknown"/"None".
int64_t SlurmTimeToMs(const std::string& text) {
  absl::Time t;
  std::string err;
  if (!absl::ParseTime("%Y-%m-%dT%H:%M:%S", text, absl::LocalTimeZone(), &t, &err)) return 0;
  return absl::ToUnixMillis(t);
}

// The states in which Slurm may still run processes of the job.
const std::set<std::string>& ActiveStates() {
  static const auto* states = new std::set<std::string>{
      "PENDING",       "CONFIGURING",  "RUNNING",       "COMPLETING", "SUSPENDED",   "STOPPED",
      "SIGNALING",     "STAGE_OUT",    "RESIZING",      "REQUEUED",   "REQUEUE_FED", "REQUEUE_HOLD",
      "RESV_DEL_HOLD", "SPECIAL_EXIT", "POWER_UP_NODE", "UPDATE_DB"};
  return *states;
}

bool IsPendingState(const std::string& state) {
  return state == "PENDING" || state == "REQUEUED" || state == "REQUEUE_FED" || state == "REQUEUE_HOLD" ||
         state == "RESV_DEL_HOLD" || state == "SPECIAL_EXIT";
}

// States in which Slurm itself stopped the job: its reason beats whatever
// the launcher, which only saw a signal, wrote.
bool SlurmStoppedJob(const std::string& state) {
  return state == "CANCELLED" || state == "TIMEOUT" || state == "OUT_OF_MEMORY" || state == "NODE_FAIL" ||
         state == "PREEMPTED" || state == "DEADLINE" || state == "BOOT_FAIL";
}

// The last non-empty line of the launcher's own output, for failure reasons.
std::string LastLine(Env& env, const std::string& path) {
  absl::StatusOr<std::string> text = env.ReadFileToString(path);
  if (!text.ok()) return "";
  std::string s = *text;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  std::string line = s.substr(s.rfind('\n') == std::string::npos ? 0 : s.rfind('\n') + 1);
  if (line.size() > 300) line = line.substr(0, 300) + "...";
  return line;
}

}  // namespace

// ---------------------------------------------------------------- formats

absl::StatusOr<std::map<std::string, std::string>> ParseScontrolJob(const std::string& line) {
  std::map<std::string, std::string> fields;
  std::string last_key;
  std::stringstream words(line.substr(0, line.find('\n')));
  std::string word;
  while (words >> word) {
    size_t eq = word.find('=');
    // Keys look like "JobState", "CPUs/Task", "AllocNode:Sid", "ReqB:S:C:T".
    bool is_key = eq != std::string::npos && eq > 0 &&
                  std::all_of(word.begin(), word.begin() + static_cast<ptrdiff_t>(eq),
                              [](char c) {
                                return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                                       c == '_' || c == '/' || c == ':';
                              }) &&
                  !(word[0] >= '0' && word[0] <= '9');
    if (is_key) {
      last_key = word.substr(0, eq);
      fields[last_key] = word.substr(eq + 1);
    } else if (!last_key.empty()) {
      fields[last_key] += " " + word;
    }
  }
  if (fields.count("JobId") == 0 || fields.count("JobState") == 0) {
    return absl::InvalidArgumentError(
        fmt::format("not a job record from scontrol (no JobId= or JobState=): '{}'", line.substr(0, 200)));
  }
  return fields;
}

bool ScontrolJobActive(const std::map<std::string, std::string>& job) {
  return ActiveStates().count(Field(job, "JobState")) > 0;
}

JobStatus StatusFromScontrol(const std::map<std::string, std::string>& job) {
  JobStatus st;
  const std::string state = Field(job, "JobState");
  const std::string reason = Field(job, "Reason");
  const bool has_reason = !reason.empty() && reason != "None";
  if (IsPendingState(state)) {
    st.state = JobState::kQueued;
    if (has_reason) st.reason = fmt::format("waiting in Slurm ({})", reason);
    return st;
  }
  st.started_at_ms = SlurmTimeToMs(Field(job, "StartTime"));
  if (!SlurmStoppedJob(state) && state != "COMPLETED" && state != "FAILED") {
    // Running, or a state this version does not know: not final either way.
    st.state = JobState::kRunning;
    if (state != "RUNNING") st.reason = fmt::format("Slurm state {}", state);
    return st;
  }
  st.ended_at_ms = SlurmTimeToMs(Field(job, "EndTime"));
  // ExitCode=a:b is the launcher's exit code and the signal that ended it.
  int code = 0, signal = 0;
  const std::string exit = Field(job, "ExitCode");
  if (std::sscanf(exit.c_str(), "%d:%d", &code, &signal) != 2) code = signal = 0;
  st.state = JobState::kFailed;
  if (state == "CANCELLED") {
    st.state = JobState::kCancelled;
    st.reason = "cancelled in Slurm";
  } else if (state == "TIMEOUT") {
    st.reason = fmt::format("killed by Slurm: exceeded its time limit of {}", Field(job, "TimeLimit"));
  } else if (state == "OUT_OF_MEMORY") {
    st.reason = "killed by Slurm: out of memory";
  } else if (state == "NODE_FAIL") {
    st.reason = fmt::format("Slurm node failure ({})", Field(job, "NodeList"));
  } else if (state == "BOOT_FAIL") {
    st.reason = "Slurm could not boot the node";
  } else if (state == "PREEMPTED") {
    st.reason = "preempted by Slurm";
  } else if (state == "DEADLINE") {
    st.reason = "killed by Slurm: deadline passed";
  } else if (state == "FAILED") {
    st.reason = signal != 0 ? fmt::format("the launcher on the node was killed by signal {}", signal)
                            : fmt::format("the launcher on the node failed with exit code {}", code);
  } else {  // COMPLETED
    st.reason = "the launcher on the node ended without writing result.json";
  }
  if (signal != 0) st.term_signal = signal;
  return st;
}

std::string SlurmBatchScript(const std::string& cairn_binary, const std::string& job_dir, const std::string& name) {
  return fmt::format(
      "#!/bin/sh\n"
      "# Cairn job {}, submitted by SlurmExecutor (see docs/executors.md, \"Slurm\").\n"
      "# The job runs in Cairn's sandbox on this node and writes output.log and\n"
      "# result.json next to this script; {} holds only the launcher's errors.\n"
      "exec {} exec-job {}\n",
      SlurmJobName(name), kSlurmLauncherLog, ShellQuote(cairn_binary), ShellQuote(job_dir));
}

std::vector<std::string> SbatchArguments(const JobSpec& spec, const std::string& partition) {
  const Resources& r = spec.resources;
  std::vector<std::string> args = {
      "--parsable",
      "--job-name=" + SlurmJobName(spec.name),
      "--nodes=1",
      "--ntasks=1",
      fmt::format("--cpus-per-task={}", r.cpus),
      // A requeued job would run again into the same job directory.
      "--no-requeue",
      "--output=" + JoinPath(spec.job_dir, kSlurmLauncherLog),
      "--chdir=" + spec.job_dir,
  };
  if (r.memory_bytes > 0) args.push_back(fmt::format("--mem={}M", (r.memory_bytes + kMiB - 1) / kMiB));
  if (r.wall_timeout != absl::InfiniteDuration()) {
    int64_t minutes = absl::ToInt64Minutes(absl::Ceil(r.wall_timeout, absl::Minutes(1)));
    args.push_back(fmt::format("--time={}", minutes + kTimeLimitGraceMinutes));
  }
  if (r.gpus > 0) args.push_back(fmt::format("--gres=gpu:{}", r.gpus));
  if (!partition.empty()) args.push_back("--partition=" + partition);
  return args;
}

// ---------------------------------------------------------------- executor

SlurmExecutor::SlurmExecutor(const SlurmOptions& options) : options_(options), env_(NewPosixEnv()) {}

absl::StatusOr<std::unique_ptr<SlurmExecutor>> SlurmExecutor::Create(const SlurmOptions& options) {
  if (options.cairn_binary.empty() || options.cairn_binary[0] != '/') {
    return absl::InvalidArgumentError(
        fmt::format("SlurmOptions.cairn_binary must be an absolute path, got '{}'", options.cairn_binary));
  }
  if (options.poll_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("SlurmOptions.poll_interval must be positive");
  }
  auto executor = std::unique_ptr<SlurmExecutor>(new SlurmExecutor(options));
  std::map<std::string, std::string> vars;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry = *e;
    size_t eq = entry.find('=');
    if (eq != std::string::npos) vars[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  for (const auto& [key, value] : options.env) vars[key] = value;
  for (const auto& [key, value] : vars) executor->environment_.push_back(key + "=" + value);

  for (auto [program, path] : {std::pair{"sbatch", &executor->sbatch_}, std::pair{"scontrol", &executor->scontrol_},
                               std::pair{"scancel", &executor->scancel_}}) {
    *path = options.bin_dir.empty() ? FindExecutable(program, vars["PATH"]) : JoinPath(options.bin_dir, program);
    if (path->empty() || access(path->c_str(), X_OK) != 0) {
      return absl::FailedPreconditionError(
          options.bin_dir.empty()
              ? fmt::format("Slurm's {} is not on PATH: install Slurm's client programs or set bin_dir", program)
              : fmt::format("Slurm's {} is not in {}", program, options.bin_dir));
    }
  }
  // With a missing configuration file Slurm's clients retry for a minute.
  if (auto it = vars.find("SLURM_CONF"); it != vars.end() && !executor->env_->FileExists(it->second)) {
    return absl::FailedPreconditionError(fmt::format("SLURM_CONF names a missing file: {}", it->second));
  }
  absl::StatusOr<CommandOutput> ping = executor->RunSlurm(executor->scontrol_, {"ping"}, kPingTimeout);
  if (!ping.ok() || ping->exit_code != 0 || ping->out.find(" is UP") == std::string::npos) {
    std::string said = !ping.ok() ? std::string(ping.status().message()) : ping->out + ping->err;
    while (!said.empty() && said.back() == '\n') said.pop_back();
    return absl::FailedPreconditionError(fmt::format("the Slurm controller does not answer: {}", said));
  }
  return executor;
}

absl::StatusOr<SlurmExecutor::CommandOutput> SlurmExecutor::RunSlurm(const std::string& program,
                                                                     const std::vector<std::string>& args,
                                                                     absl::Duration timeout) const {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return absl::InternalError("pipe failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  std::vector<std::string> argv_strings = {program};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv, envp;
  for (std::string& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (const std::string& e : environment_) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc != 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    return absl::FailedPreconditionError(fmt::format("cannot run {}: {}", program, std::strerror(rc)));
  }
  CommandOutput result;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  const absl::Time deadline = absl::Now() + timeout;
  bool timed_out = false;
  while (open_fds > 0) {
    int wait_ms = static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
    int n = poll(fds, 2, wait_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      timed_out = true;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t got = read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        sinks[i]->append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (pollfd& p : fds) {
    if (p.fd >= 0) close(p.fd);
  }
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return absl::UnavailableError(
        fmt::format("{} {} did not answer within {}", program, fmt::join(args, " "), absl::FormatDuration(timeout)));
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

absl::StatusOr<std::map<std::string, std::string>> SlurmExecutor::QuerySlurm(const JobId& id) const {
  ASSIGN_OR_RETURN(CommandOutput r, RunSlurm(scontrol_, {"show", "job", "-o", id}, kCommandTimeout));
  if (r.exit_code != 0) {
    if (r.err.find("Invalid job id") != std::string::npos) {
      return absl::NotFoundError(fmt::format("Slurm does not know job {}", id));
    }
    return absl::UnavailableError(fmt::format("scontrol show job {} failed: {}", id, r.err));
  }
  return ParseScontrolJob(r.out);
}

absl::StatusOr<std::string> SlurmExecutor::JobDir(const JobId& id) {
  absl::MutexLock lock(&mu_);
  auto it = job_dirs_.find(id);
  if (it == job_dirs_.end()) return absl::NotFoundError(fmt::format("unknown Slurm job '{}'", id));
  return it->second;
}

absl::Status SlurmExecutor::Adopt(const JobId& id, const std::string& job_dir) {
  if (!IsSlurmJobId(id)) return absl::InvalidArgumentError(fmt::format("'{}' is not a Slurm job id", id));
  if (job_dir.empty() || job_dir[0] != '/') {
    return absl::InvalidArgumentError(fmt::format("job_dir must be an absolute path, got '{}'", job_dir));
  }
  if (!env_->FileExists(JoinPath(job_dir, kJobSpecFile))) {
    return absl::NotFoundError(fmt::format("{} holds no {}: not a job directory", job_dir, kJobSpecFile));
  }
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = job_dirs_.emplace(id, job_dir);
  if (!inserted && it->second != job_dir) {
    return absl::AlreadyExistsError(fmt::format("Slurm job {} is already known with job directory {}", id, it->second));
  }
  return absl::OkStatus();
}

absl::StatusOr<JobId> SlurmExecutor::Submit(const JobSpec& spec) {
  RETURN_IF_ERROR(ValidateJobSpec(spec));
  // The nodes share the job's file system: what is missing here is missing there.
  RETURN_IF_ERROR(CheckJobHostPaths(spec));
  RETURN_IF_ERROR(WriteJobSpec(spec, spec.job_dir));
  const std::string script = JoinPath(spec.job_dir, kSlurmBatchScript);
  RETURN_IF_ERROR(env_->WriteFileAtomic(script, SlurmBatchScript(options_.cairn_binary, spec.job_dir, spec.name)));

  std::vector<std::string> args = SbatchArguments(spec, options_.partition);
  args.push_back(script);
  ASSIGN_OR_RETURN(CommandOutput r, RunSlurm(sbatch_, args, kCommandTimeout));
  std::string err = r.err;
  while (!err.empty() && err.back() == '\n') err.pop_back();
  if (r.exit_code != 0) {
    // Refusals name the job's request; anything else is the cluster's trouble.
    bool unreachable = err.find("Unable to contact") != std::string::npos ||
                       err.find("Socket timed out") != std::string::npos ||
                       err.find("Connection refused") != std::string::npos;
    std::string message = fmt::format("sbatch refused job '{}': {}", spec.name, err);
    return unreachable ? absl::UnavailableError(message) : absl::FailedPreconditionError(message);
  }
  // --parsable prints "ID" or "ID;CLUSTER".
  std::string id = r.out.substr(0, r.out.find_first_of(";\n"));
  if (!IsSlurmJobId(id)) {
    return absl::InternalError(fmt::format("sbatch printed no job id: '{}' (stderr: {})", r.out, err));
  }
  absl::MutexLock lock(&mu_);
  job_dirs_[id] = spec.job_dir;
  return id;
}

absl::StatusOr<JobStatus> SlurmExecutor::Status(const JobId& id) {
  std::string job_dir;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = final_.find(id); it != final_.end()) return it->second;
    auto it = job_dirs_.find(id);
    if (it == job_dirs_.end()) return absl::NotFoundError(fmt::format("unknown Slurm job '{}'", id));
    job_dir = it->second;
  }
  ASSIGN_OR_RETURN(JobStatus st, Resolve(id, job_dir));
  if (IsFinal(st.state)) {
    absl::MutexLock lock(&mu_);
    final_[id] = st;
  }
  return st;
}

absl::StatusOr<JobStatus> SlurmExecutor::Resolve(const JobId& id, const std::string& job_dir) {
  absl::StatusOr<JobStatus> result = ReadJobResult(job_dir);
  if (!result.ok() && !absl::IsNotFound(result.status())) return result.status();
  if (result.ok() && result->state == JobState::kSucceeded) return result;

  absl::StatusOr<std::map<std::string, std::string>> job = QuerySlurm(id);
  if (!job.ok() && !absl::IsNotFound(job.status())) return job.status();
  if (job.ok() && ScontrolJobActive(*job)) {
    // A failed or cancelled result.json may come from a launcher that Slurm
    // is stopping (time limit, scancel): not final until Slurm says why.
    return StatusFromScontrol(*job);
  }
  // Slurm is done with the job (or has forgotten it): what the launcher
  // wrote, if anything, is complete now. Read again: it may have finished
  // since the first read.
  if (!result.ok()) result = ReadJobResult(job_dir);
  if (!result.ok() && !absl::IsNotFound(result.status())) return result.status();

  JobStatus st;
  if (result.ok()) {
    st = *result;
    if (!job.ok() || !SlurmStoppedJob(Field(*job, "JobState"))) return st;
    // The launcher saw only a signal (and stopped the job, or died); Slurm
    // knows why it came: a time limit, scancel, a node failure...
    // A launcher stopped by scancel already says CANCELLED, in its words.
    JobStatus slurm = StatusFromScontrol(*job);
    if (st.state == slurm.state && (st.state == JobState::kCancelled || st.reason == slurm.reason)) return st;
    st.state = slurm.state;
    st.reason = slurm.reason;
  } else if (job.ok()) {
    st = StatusFromScontrol(*job);
    if (st.state == JobState::kFailed && !SlurmStoppedJob(Field(*job, "JobState"))) {
      std::string said = LastLine(*env_, JoinPath(job_dir, kSlurmLauncherLog));
      if (!said.empty()) st.reason += ": " + said;
    }
  } else {
    st.state = JobState::kFailed;
    st.reason = fmt::format("lost by Slurm: it no longer knows job {} and the job wrote no result", id);
  }
  // Persist the verdict: Slurm forgets finished jobs after MinJobAge.
  RETURN_IF_ERROR(WriteJobResult(st, job_dir));
  return st;
}

absl::StatusOr<JobStatus> SlurmExecutor::Wait(const JobId& id, absl::Duration timeout) {
  const absl::Time deadline = timeout == absl::InfiniteDuration() ? absl::InfiniteFuture() : absl::Now() + timeout;
  absl::Duration interval = options_.poll_interval;
  while (true) {
    ASSIGN_OR_RETURN(JobStatus st, Status(id));
    absl::Time now = absl::Now();
    if (IsFinal(st.state) || now >= deadline) return st;
    absl::SleepFor(std::min(interval, deadline - now));
    interval = std::min(interval * 2, kMaxPollInterval);
  }
}

absl::Status SlurmExecutor::Cancel(const JobId& id) {
  ASSIGN_OR_RETURN(JobStatus st, Status(id));
  if (IsFinal(st.state)) return absl::OkStatus();
  ASSIGN_OR_RETURN(CommandOutput r, RunSlurm(scancel_, {id}, kCommandTimeout));
  if (r.exit_code != 0 && r.err.find("already completing or completed") == std::string::npos) {
    return absl::UnavailableError(fmt::format("scancel {} failed: {}", id, r.err));
  }
  // Wait until Slurm has stopped the processes, so that the job is final
  // when Cancel returns, as with the local executor.
  const absl::Time deadline = absl::Now() + kCancelWait;
  absl::Duration interval = absl::Milliseconds(50);
  while (absl::Now() < deadline) {
    absl::StatusOr<std::map<std::string, std::string>> job = QuerySlurm(id);
    if (!job.ok() || !ScontrolJobActive(*job)) break;
    absl::SleepFor(interval);
    interval = std::min(interval * 2, absl::Milliseconds(500));
  }
  return Status(id).status();
}

absl::StatusOr<LogChunk> SlurmExecutor::ReadLog(const JobId& id, uint64_t offset, size_t max_bytes) {
  ASSIGN_OR_RETURN(std::string job_dir, JobDir(id));
  // Status first: if the job is final now, the log read below is complete.
  ASSIGN_OR_RETURN(JobStatus st, Status(id));
  return ReadJobLog(job_dir, offset, max_bytes, IsFinal(st.state));
}

}  // namespace cairn::exec
