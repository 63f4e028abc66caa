#include "exec/sandbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>

#include <absl/strings/match.h>
#include <fmt/format.h>

#include "base/env.h"
#include "exec/cgroup.h"
#include "exec/job_files.h"

namespace cairn::exec {
namespace {

// How often the parent looks at the clock, the cancel flag and the CPU
// usage while a job runs; output and the job's exit wake it at once.
constexpr int kTickMillis = 20;
// After the job's main process is gone, how long to wait for the rest of
// its output (the pid namespace is torn down by then; this is a bound).
constexpr absl::Duration kDrainPatience = absl::Seconds(2);
constexpr size_t kCopyBuffer = 64 * 1024;
constexpr size_t kSetupMessageBytes = 400;
// Files of the root up to this size are copied into the sandbox, larger
// ones bound.
constexpr off_t kMaxCopiedFile = 1 << 20;

// ----------------------------------------------------------------------------
// Small POSIX helpers.

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(Fd&& o) noexcept : fd_(o.Release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = o.Release();
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

absl::Status ErrnoError(absl::StatusCode code, std::string_view what, int err) {
  return absl::Status(code, fmt::format("{}: {}", what, ::strerror(err)));
}

absl::StatusOr<std::pair<Fd, Fd>> MakePipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoError(absl::StatusCode::kInternal, "pipe", errno);
  return std::make_pair(Fd(fds[0]), Fd(fds[1]));
}

// Writes all of `data`, retrying short writes; false on error.
bool WriteAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

std::string SignalName(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev != nullptr ? fmt::format("SIG{}", abbrev) : fmt::format("signal {}", sig);
}

int64_t NowMillis() { return absl::ToUnixMillis(absl::Now()); }

// ----------------------------------------------------------------------------
// The bwrap command line.

// The pieces of /etc a program needs, and no more (each is a mount that
// costs start-up time, and /etc holds secrets): the dynamic linker's cache,
// users and groups (for getpwuid), host name lookup of localhost, the
// alternatives symlinks (tools in /usr/bin point through them), TLS
// certificates and the time zone. Missing ones are skipped.
constexpr const char* kEtcEntries[] = {
    "ld.so.cache", "passwd", "group", "nsswitch.conf", "hosts", "alternatives", "ssl", "pki", "localtime", "timezone",
};
// Name and service resolution, only for jobs with network access.
constexpr const char* kEtcNetworkEntries[] = {"resolv.conf", "host.conf", "gai.conf", "protocols", "services"};
// The top-level directories that merged-/usr systems make symlinks into /usr.
constexpr const char* kRootDirs[] = {"bin", "sbin", "lib", "lib32", "lib64", "libx32"};

// Whether `uid`/`gid` (no supplementary groups) can walk to `path`: search
// permission on every directory above it, after resolving symlinks. By the
// mode bits only (ACLs are not read), so the answer errs towards "no"; an
// unresolvable path is "no" too.
bool Reachable(const std::string& path, uid_t uid, gid_t gid) {
  char resolved[PATH_MAX];
  if (::realpath(path.c_str(), resolved) == nullptr) return false;
  std::string dir = resolved;
  while (dir.size() > 1) {
    dir = dir.substr(0, std::max<size_t>(dir.rfind('/'), 1));
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) return false;
    const mode_t bit = st.st_uid == uid ? S_IXUSR : st.st_gid == gid ? S_IXGRP : S_IXOTH;
    if ((st.st_mode & bit) == 0) return false;
  }
  return true;
}

class ArgvBuilder {
 public:
  ArgvBuilder(const SandboxOptions& options, bool staged) : options_(options), staged_(staged) {
    cmd_.argv.push_back(options.bwrap);
  }

  void Add(std::initializer_list<std::string> args) { cmd_.argv.insert(cmd_.argv.end(), args); }
  // `flag SOURCE DEST` for a host path `host` (staged or not).
  void Bind(const char* flag, const std::string& host, const std::string& dest) {
    Add({flag, Source(host), dest});
  }
  // A small file copied into the sandbox's root (from a descriptor the
  // parent opens) instead of bound: a bind costs bwrap a mount and a
  // read-only remount, a copy a write to its tmpfs.
  void Copy(const std::string& host, const std::string& dest) {
    cmd_.copied_files.push_back(host);
    Add({"--perms", "0444", "--file", std::to_string(kBwrapStatusFd + cmd_.copied_files.size()), dest});
  }
  BwrapCommand Finish() { return std::move(cmd_); }

 private:
  std::string Source(const std::string& host) {
    // Staging costs a mount namespace and a bind per path; most paths (/usr,
    // /etc) need none.
    if (!staged_ || Reachable(host, options_.uid, options_.gid)) return host;
    cmd_.staged_sources.push_back(host);
    return fmt::format("{}/{}", options_.stage_dir, cmd_.staged_sources.size() - 1);
  }

  const SandboxOptions& options_;
  bool staged_;
  BwrapCommand cmd_;
};

std::optional<std::string> ReadLink(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf));
  if (n < 0 || static_cast<size_t>(n) >= sizeof(buf)) return std::nullopt;
  return std::string(buf, static_cast<size_t>(n));
}

// Adds `<root>/<rel>` at `/<rel>`: a symlink into /usr is recreated as a
// symlink (it resolves inside the sandbox), a directory is bound read-only,
// a regular file copied (a symlink elsewhere stands for what it points to),
// anything missing is skipped.
void AddRootEntry(ArgvBuilder& b, const std::string& root, const std::string& rel) {
  const std::string host = root + "/" + rel;
  struct stat st;
  if (::lstat(host.c_str(), &st) != 0) return;
  if (S_ISLNK(st.st_mode)) {
    std::optional<std::string> target = ReadLink(host);
    if (target.has_value() && (target->starts_with("usr/") || target->starts_with("/usr/") ||
                               target->starts_with("../usr/") || *target == "usr" || *target == "/usr")) {
      b.Add({"--symlink", *target, "/" + rel});
      return;
    }
    if (::stat(host.c_str(), &st) != 0) return;  // dangling
  }
  if (S_ISREG(st.st_mode) && st.st_size <= kMaxCopiedFile) {
    b.Copy(host, "/" + rel);
  } else {
    b.Bind("--ro-bind", host, "/" + rel);
  }
}

// GPU device nodes (/dev/nvidia0, ...), in order.
std::vector<std::string> GpuDevices() {
  std::vector<std::pair<int, std::string>> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/dev", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 6 && name.starts_with("nvidia") &&
        std::all_of(name.begin() + 6, name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      found.emplace_back(std::atoi(name.c_str() + 6), entry.path().string());
    }
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

// ----------------------------------------------------------------------------
// The forked child. Everything it needs is prepared before fork(): between
// fork and exec a multi-threaded parent's child may only make
// async-signal-safe calls (no allocation, no locks).

struct ChildLimit {
  int resource;
  rlim_t value;
};

struct ChildPlan {
  const char* bwrap = nullptr;
  std::vector<char*> argv;  // null-terminated
  std::vector<char*> envp;  // null-terminated
  int stdin_fd = -1;
  int out_fd = -1;
  int status_fd = -1;
  int error_fd = -1;
  std::vector<int> copy_fds;  // become kBwrapStatusFd + 1, + 2, ... (bwrap's --file)
  std::vector<JobCgroup::ProcsFile> cgroup_files;
  std::vector<ChildLimit> limits;
  bool drop_privileges = false;
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t parent_pid = 0;
  // Staging (empty stage_dir: none).
  const char* stage_dir = nullptr;
  std::vector<const char*> stage_sources;
  std::vector<const char*> stage_targets;
  std::vector<int> stage_fds;  // scratch, one per source
};

// What the child reports when it cannot exec bwrap.
struct ChildError {
  int err = 0;
  char what[240] = {};
};

void CopyText(char* dst, size_t cap, const char* a, const char* b = "") {
  size_t i = 0;
  for (; *a != '\0' && i + 1 < cap; ++a) dst[i++] = *a;
  for (; *b != '\0' && i + 1 < cap; ++b) dst[i++] = *b;
  dst[i] = '\0';
}

[[noreturn]] void ChildFail(const ChildPlan& p, const char* what, const char* detail = "") {
  ChildError e;
  e.err = errno;
  CopyText(e.what, sizeof(e.what), what, detail);
  WriteAll(p.error_fd, reinterpret_cast<const char*>(&e), sizeof(e));
  ::_exit(127);
}

// "/proc/self/fd/<fd>" into `buf` without allocating.
void FdPath(int fd, char* buf, size_t cap) {
  char digits[16];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + fd % 10);
    fd /= 10;
  } while (fd > 0 && n < 15);
  const char prefix[] = "/proc/self/fd/";
  size_t i = 0;
  for (const char* c = prefix; *c != '\0' && i + 1 < cap; ++c) buf[i++] = *c;
  while (n > 0 && i + 1 < cap) buf[i++] = digits[--n];
  buf[i] = '\0';
}

int MoveAbove(int fd, int min_fd) { return ::fcntl(fd, F_DUPFD_CLOEXEC, min_fd); }

[[noreturn]] void RunChild(ChildPlan& p) {
  // Dispositions set to "ignore" and blocked signals survive exec; the job
  // must start with the defaults.
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
  }
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);

  // Its own session: a terminal's ^C reaches the job only through its owner.
  ::setsid();

  for (const JobCgroup::ProcsFile& f : p.cgroup_files) {
    if (::write(f.fd, "0", 1) != 1 && f.required) ChildFail(p, "joining the job's cgroup");
  }

  if (p.stage_dir != nullptr) {
    if (::unshare(CLONE_NEWNS) != 0) ChildFail(p, "unshare(CLONE_NEWNS) for staging");
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) ChildFail(p, "making / a slave mount");
    // Open every source before the tmpfs hides anything under stage_dir.
    for (size_t i = 0; i < p.stage_sources.size(); ++i) {
      p.stage_fds[i] = ::open(p.stage_sources[i], O_PATH | O_CLOEXEC);
      if (p.stage_fds[i] < 0) ChildFail(p, "opening ", p.stage_sources[i]);
    }
    if (::mount("tmpfs", p.stage_dir, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") != 0) {
      ChildFail(p, "mounting the staging tmpfs on ", p.stage_dir);
    }
    for (size_t i = 0; i < p.stage_sources.size(); ++i) {
      struct stat st;
      if (::fstat(p.stage_fds[i], &st) != 0) ChildFail(p, "stat ", p.stage_sources[i]);
      if (S_ISDIR(st.st_mode)) {
        if (::mkdir(p.stage_targets[i], 0755) != 0) ChildFail(p, "mkdir ", p.stage_targets[i]);
      } else {
        int fd = ::open(p.stage_targets[i], O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) ChildFail(p, "creating ", p.stage_targets[i]);
        ::close(fd);
      }
      char source[64];
      FdPath(p.stage_fds[i], source, sizeof(source));
      if (::mount(source, p.stage_targets[i], nullptr, MS_BIND | MS_REC, nullptr) != 0) {
        ChildFail(p, "staging ", p.stage_sources[i]);
      }
      ::close(p.stage_fds[i]);
    }
  }

  // 0: /dev/null, 1 and 2: the log pipe, 3: bwrap's status pipe, then the
  // files bwrap copies in. Move them all out of the way first: any of them
  // may sit on one of those numbers itself.
  const int first_free = kBwrapStatusFd + 1 + static_cast<int>(p.copy_fds.size());
  const int in = MoveAbove(p.stdin_fd, first_free + 10);
  const int out = MoveAbove(p.out_fd, first_free + 10);
  const int status = MoveAbove(p.status_fd, first_free + 10);
  const int err = MoveAbove(p.error_fd, first_free + 10);
  if (in < 0 || out < 0 || status < 0 || err < 0) ChildFail(p, "dup");
  p.error_fd = err;
  for (int& fd : p.copy_fds) {
    fd = MoveAbove(fd, first_free + 10);
    if (fd < 0) ChildFail(p, "dup");
  }
  if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(out, 2) < 0 || ::dup2(status, kBwrapStatusFd) < 0) {
    ChildFail(p, "dup2");
  }
  for (size_t i = 0; i < p.copy_fds.size(); ++i) {
    if (::dup2(p.copy_fds[i], kBwrapStatusFd + 1 + static_cast<int>(i)) < 0) ChildFail(p, "dup2");
  }

  for (const ChildLimit& l : p.limits) {
    struct rlimit r = {l.value, l.value};
    if (l.resource == RLIMIT_CPU && l.value != RLIM_INFINITY) r.rlim_max = l.value + 1;  // SIGXCPU, then SIGKILL
    if (::setrlimit(l.resource, &r) != 0) ChildFail(p, "setrlimit");
  }

  if (p.drop_privileges) {
    if (::setgroups(0, nullptr) != 0) ChildFail(p, "setgroups");
    if (::setresgid(p.gid, p.gid, p.gid) != 0) ChildFail(p, "setresgid");
    if (::setresuid(p.uid, p.uid, p.uid) != 0) ChildFail(p, "setresuid");
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (::getresuid(&ru, &eu, &su) != 0 || ru != p.uid || eu != p.uid || su != p.uid ||
        ::getresgid(&rg, &eg, &sg) != 0 || rg != p.gid || eg != p.gid || sg != p.gid ||
        ::getgroups(0, nullptr) != 0) {
      errno = EPERM;
      ChildFail(p, "dropping privileges did not take");
    }
  }

  // Credentials changes clear the parent-death signal, so set it last. It
  // fires when the thread that forked us exits (or the whole process dies).
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) ChildFail(p, "prctl(PR_SET_PDEATHSIG)");
  if (::getppid() != p.parent_pid) ::_exit(127);

  // Nothing else of the parent's may leak into the sandbox (bwrap passes
  // inherited descriptors on to the job).
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
  if (::syscall(SYS_close_range, first_free, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    struct rlimit nofile;
    rlim_t max = ::getrlimit(RLIMIT_NOFILE, &nofile) == 0 ? std::min<rlim_t>(nofile.rlim_cur, 1 << 20) : 65536;
    for (rlim_t fd = first_free; fd < max; ++fd) {
      if (static_cast<int>(fd) != p.error_fd) ::close(static_cast<int>(fd));
    }
  }

  ::execve(p.bwrap, p.argv.data(), p.envp.data());
  ChildFail(p, "exec ", p.bwrap);
}

// ----------------------------------------------------------------------------
// Parent side.

std::string Basename(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// Bytes in regular files under `dir` (not following symlinks).
uint64_t TreeBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(
           dir, std::filesystem::directory_options::skip_permission_denied, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code fec;
    if (it->is_regular_file(fec)) total += it->file_size(fec);
  }
  return total;
}

int PidfdOpen(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  errno = ENOSYS;
  return -1;
#endif
}

enum class StopCause { kNone, kCancelled, kWallTime, kCpuTime, kOutput };

// One run of one job: the state the parent keeps while it watches.
class SandboxRun {
 public:
  SandboxRun(const JobSpec& spec, const std::string& job_id, const SandboxOptions& options,
             const std::atomic<bool>* cancel)
      : spec_(spec), job_id_(job_id), options_(options), cancel_(cancel) {}

  absl::StatusOr<JobStatus> Run();

 private:
  absl::Status Prepare();
  void Note(const std::string& line);
  std::string NprocHint() const;  // why EAGAIN, where RLIMIT_NPROC limits processes
  // Copies what the pipe has to the log; false at end of file.
  bool CopyOutput();
  void Stop(StopCause cause);
  // Copies output and enforces the limits until bwrap has ended, then takes
  // the rest of the output. `wait_status` stays empty when someone else
  // reaped bwrap.
  void Watch(absl::Time deadline, std::optional<int>* wait_status, rusage* usage);
  JobStatus Compose(std::optional<int> wait_status, const rusage& usage);

  const JobSpec& spec_;
  const std::string& job_id_;
  const SandboxOptions& options_;
  const std::atomic<bool>* cancel_;

  bool root_ = false;
  uint64_t memory_limit_ = 0;
  BwrapCommand command_;
  std::unique_ptr<JobCgroup> cgroup_;
  Fd log_;
  uint64_t log_bytes_ = 0;     // the job's output copied so far
  bool output_exceeded_ = false;
  std::string head_;           // the first bytes of output: bwrap's message when setup fails
  bool memory_by_rlimit_ = false;
  Fd out_read_;
  pid_t pid_ = -1;
  StopCause stop_ = StopCause::kNone;
};

std::string SandboxRun::NprocHint() const {
  return fmt::format(" (the job's user already runs {} processes, its limit)", spec_.resources.max_processes);
}

void SandboxRun::Note(const std::string& line) {
  std::string text = kSandboxNotePrefix + line + "\n";
  WriteAll(log_.get(), text.data(), text.size());
}

absl::Status SandboxRun::Prepare() {
  RETURN_IF_ERROR(ValidateJobSpec(spec_));
  RETURN_IF_ERROR(CheckJobHostPaths(spec_));
  root_ = ::geteuid() == 0;
  if (root_ && (options_.uid == 0 || options_.gid == 0)) {
    return absl::InvalidArgumentError("SandboxOptions: jobs must not run as uid or gid 0");
  }
  ASSIGN_OR_RETURN(command_, BuildBwrapCommand(spec_, job_id_, options_, root_ && !options_.stage_dir.empty()));
  if (!command_.staged_sources.empty()) {
    struct stat st;
    if (::stat(options_.stage_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(fmt::format(
          "SandboxOptions.stage_dir '{}' is not an existing directory (needed to reach {})", options_.stage_dir,
          command_.staged_sources.front()));
    }
  }

  const std::string log_path = JoinPath(spec_.job_dir, kJobLogFile);
  log_ = Fd(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644));
  if (log_.get() < 0) return ErrnoError(absl::StatusCode::kFailedPrecondition, "opening " + log_path, errno);

  if (root_) {
    // The job's user must be able to write its outputs.
    for (const Mount& m : spec_.outputs) {
      if (::chown(m.host_path.c_str(), options_.uid, options_.gid) != 0) {
        return ErrnoError(absl::StatusCode::kFailedPrecondition, "chown " + m.host_path, errno);
      }
    }
  }

  memory_limit_ = spec_.resources.memory_bytes != 0 ? spec_.resources.memory_bytes : options_.default_memory_bytes;
  CgroupLayout layout = CgroupLayout::Detect(options_.cgroup_root);
  if (!layout.empty()) {
    CgroupLimits limits{memory_limit_, spec_.resources.max_processes, spec_.resources.cpus};
    absl::StatusOr<std::unique_ptr<JobCgroup>> cg =
        JobCgroup::Create(layout, JobCgroupName(job_id_), limits);
    if (cg.ok()) cgroup_ = *std::move(cg);
  }
  return absl::OkStatus();
}

bool SandboxRun::CopyOutput() {
  char buf[kCopyBuffer];
  for (;;) {
    ssize_t n = ::read(out_read_.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN;  // nothing more for now
    }
    if (n == 0) return false;
    size_t take = static_cast<size_t>(n);
    if (head_.size() < kSetupMessageBytes) head_.append(buf, std::min(take, kSetupMessageBytes - head_.size()));
    const uint64_t room = spec_.resources.max_output_bytes - std::min(log_bytes_, spec_.resources.max_output_bytes);
    if (take > room) {
      take = static_cast<size_t>(room);
      output_exceeded_ = true;
    }
    // A log write error (disk full) loses output but must not stop the job's
    // bookkeeping; the job itself cannot tell.
    if (take > 0) WriteAll(log_.get(), buf, take);
    log_bytes_ += take;
  }
}

void SandboxRun::Stop(StopCause cause) {
  if (stop_ == StopCause::kNone) stop_ = cause;
  // bwrap's pid-namespace init dies with it (--die-with-parent), and the
  // kernel then kills every process in the namespace.
  ::kill(pid_, SIGKILL);
}

absl::StatusOr<JobStatus> SandboxRun::Run() {
  RETURN_IF_ERROR(Prepare());

  // Limits the cgroups could not take are rlimits; say so once in the log.
  std::vector<ChildLimit> limits;
  limits.push_back({RLIMIT_CORE, 0});
  limits.push_back({RLIMIT_FSIZE, static_cast<rlim_t>(spec_.resources.max_output_bytes)});
  if (spec_.resources.cpu_time > absl::ZeroDuration()) {
    limits.push_back({RLIMIT_CPU, static_cast<rlim_t>(std::ceil(absl::ToDoubleSeconds(spec_.resources.cpu_time)))});
  }
  if (cgroup_ == nullptr || !cgroup_->limits_memory()) {
    memory_by_rlimit_ = true;
    limits.push_back({RLIMIT_AS, static_cast<rlim_t>(memory_limit_)});
    Note(fmt::format("no writable memory cgroup; memory limited to {} of address space per process (RLIMIT_AS)",
                     FormatBytes(memory_limit_)));
  }
  const bool by_nproc = cgroup_ == nullptr || !cgroup_->limits_processes();
  if (by_nproc) {
    limits.push_back({RLIMIT_NPROC, static_cast<rlim_t>(spec_.resources.max_processes)});
    Note(fmt::format("no writable pids cgroup; processes limited to {} per user (RLIMIT_NPROC, shared by every "
                     "job of this user)",
                     spec_.resources.max_processes));
  }

  ASSIGN_OR_RETURN(auto out_pipe, MakePipe());
  ASSIGN_OR_RETURN(auto status_pipe, MakePipe());
  ASSIGN_OR_RETURN(auto error_pipe, MakePipe());
  Fd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (dev_null.get() < 0) return ErrnoError(absl::StatusCode::kInternal, "open /dev/null", errno);

  std::vector<Fd> copies;
  for (const std::string& path : command_.copied_files) {
    copies.emplace_back(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (copies.back().get() < 0) return ErrnoError(absl::StatusCode::kFailedPrecondition, "opening " + path, errno);
  }

  // Everything the child needs, laid out before fork().
  ChildPlan plan;
  for (const Fd& fd : copies) plan.copy_fds.push_back(fd.get());
  plan.bwrap = options_.bwrap.c_str();
  for (std::string& a : command_.argv) plan.argv.push_back(a.data());
  plan.argv.push_back(nullptr);
  plan.envp.push_back(nullptr);  // bwrap gets no environment of ours
  plan.stdin_fd = dev_null.get();
  plan.out_fd = out_pipe.second.get();
  plan.status_fd = status_pipe.second.get();
  plan.error_fd = error_pipe.second.get();
  if (cgroup_ != nullptr) plan.cgroup_files = cgroup_->procs_files();
  plan.limits = limits;
  plan.drop_privileges = root_;
  plan.uid = options_.uid;
  plan.gid = options_.gid;
  plan.parent_pid = ::getpid();
  std::vector<std::string> stage_targets;
  if (!command_.staged_sources.empty()) {
    plan.stage_dir = options_.stage_dir.c_str();
    for (size_t i = 0; i < command_.staged_sources.size(); ++i) {
      stage_targets.push_back(fmt::format("{}/{}", options_.stage_dir, i));
    }
    for (size_t i = 0; i < command_.staged_sources.size(); ++i) {
      plan.stage_sources.push_back(command_.staged_sources[i].c_str());
      plan.stage_targets.push_back(stage_targets[i].c_str());
    }
    plan.stage_fds.assign(command_.staged_sources.size(), -1);
  }

  JobStatus status;
  status.started_at_ms = NowMillis();
  if (cancel_ != nullptr && cancel_->load()) {
    status.state = JobState::kCancelled;
    status.reason = "cancelled";
    status.ended_at_ms = status.started_at_ms;
    return status;
  }
  const absl::Time started = absl::Now();
  pid_ = ::fork();
  if (pid_ < 0) return ErrnoError(absl::StatusCode::kResourceExhausted, "fork", errno);
  if (pid_ == 0) RunChild(plan);

  out_pipe.second.Reset();
  status_pipe.second.Reset();
  error_pipe.second.Reset();
  out_read_ = std::move(out_pipe.first);

  // The error pipe closes on a successful exec; a report means the child
  // could not set the sandbox up.
  ChildError child_error;
  size_t got = 0;
  while (got < sizeof(child_error)) {
    ssize_t n = ::read(error_pipe.first.get(), reinterpret_cast<char*>(&child_error) + got, sizeof(child_error) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > 0) {
    int ws = 0;
    while (::waitpid(pid_, &ws, 0) < 0 && errno == EINTR) {
    }
    child_error.what[sizeof(child_error.what) - 1] = '\0';
    return absl::FailedPreconditionError(fmt::format("sandbox setup failed: {}: {}{}", child_error.what,
                                                     ::strerror(child_error.err),
                                                     by_nproc && child_error.err == EAGAIN ? NprocHint() : ""));
  }

  ::fcntl(out_read_.get(), F_SETFL, O_NONBLOCK);
  std::optional<int> wait_status;
  rusage usage = {};
  Watch(started + spec_.resources.wall_timeout, &wait_status, &usage);

  // Output past the limit that arrived after the job's last moment is still
  // output past the limit.
  if (output_exceeded_ && stop_ == StopCause::kNone) stop_ = StopCause::kOutput;

  std::string bwrap_status;
  ::fcntl(status_pipe.first.get(), F_SETFL, O_NONBLOCK);
  char buf[1024];
  for (ssize_t n; (n = ::read(status_pipe.first.get(), buf, sizeof(buf))) > 0;) bwrap_status.append(buf, n);
  // bwrap reports child-pid once its namespace init exists; that init then
  // forks the command. When that fork fails (EAGAIN: the user's processes
  // are at RLIMIT_NPROC), bwrap prints its own "bwrap: " message and exits 1
  // before the command ever ran.
  const bool init_failed = absl::StartsWith(head_, "bwrap: ") && wait_status.has_value() &&
                           WIFEXITED(*wait_status) && WEXITSTATUS(*wait_status) == 1;
  const bool command_started = bwrap_status.find("\"child-pid\"") != std::string::npos && !init_failed;
  if (!wait_status.has_value()) {
    if (size_t at = bwrap_status.find("\"exit-code\":"); at != std::string::npos) {
      wait_status = (std::atoi(bwrap_status.c_str() + at + std::strlen("\"exit-code\":")) & 0xff) << 8;
    }
  }

  JobStatus final_status = Compose(wait_status, usage);
  final_status.started_at_ms = status.started_at_ms;
  final_status.ended_at_ms = NowMillis();
  if (!command_started && stop_ == StopCause::kNone) {
    std::string message = head_;
    while (!message.empty() && (message.back() == '\n' || message.back() == '\r')) message.pop_back();
    final_status.state = JobState::kFailed;
    final_status.exit_code.reset();
    final_status.term_signal.reset();
    final_status.reason = fmt::format("sandbox setup failed: {}", message.empty() ? "bwrap exited" : message);
    if (by_nproc && message.find(::strerror(EAGAIN)) != std::string::npos) {
      final_status.reason += NprocHint();
    }
  }
  cgroup_.reset();
  return final_status;
}

void SandboxRun::Watch(absl::Time deadline, std::optional<int>* wait_status, rusage* usage) {
  Fd pidfd(PidfdOpen(pid_));
  const double cpu_limit = absl::ToDoubleSeconds(spec_.resources.cpu_time);
  bool out_open = true;
  for (;;) {
    pollfd fds[2];
    int nfds = 0;
    if (out_open) fds[nfds++] = {out_read_.get(), POLLIN, 0};
    if (pidfd.get() >= 0) fds[nfds++] = {pidfd.get(), POLLIN, 0};
    int timeout = kTickMillis;
    if (stop_ == StopCause::kNone) {
      // Wake at the deadline (an infinite one is INT64_MAX milliseconds away).
      const int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
      timeout = static_cast<int>(std::clamp<int64_t>(left_ms, 0, kTickMillis - 1) + 1);
    }
    ::poll(fds, static_cast<nfds_t>(nfds), timeout);
    if (out_open && !CopyOutput()) out_open = false;

    int ws = 0;
    pid_t done = ::wait4(pid_, &ws, WNOHANG, usage);
    if (done == pid_) {
      *wait_status = ws;
      break;
    }
    // Reaped by someone else (a SIGCHLD set to SIG_IGN, a waitpid(-1)):
    // bwrap's status pipe still tells how the command ended.
    if (done < 0 && errno == ECHILD) break;

    if (stop_ != StopCause::kNone) continue;
    if (output_exceeded_) {
      Stop(StopCause::kOutput);
    } else if (cancel_ != nullptr && cancel_->load(std::memory_order_relaxed)) {
      Stop(StopCause::kCancelled);
    } else if (absl::Now() >= deadline) {
      Stop(StopCause::kWallTime);
    } else if (cpu_limit > 0 && cgroup_ != nullptr) {
      // RLIMIT_CPU limits each process; the cgroup sees the whole tree.
      std::optional<double> used = cgroup_->CpuSeconds();
      if (used.has_value() && *used > cpu_limit) Stop(StopCause::kCpuTime);
    }
  }

  // bwrap is gone; so is the pid namespace with every process of the job,
  // unless bwrap died before it was set up. Make sure, then take the rest
  // of the output.
  if (cgroup_ != nullptr) cgroup_->KillAll(kDrainPatience);
  const absl::Time drain_until = absl::Now() + kDrainPatience;
  while (out_open && absl::Now() < drain_until) {
    pollfd fd = {out_read_.get(), POLLIN, 0};
    ::poll(&fd, 1, kTickMillis);
    out_open = CopyOutput();
  }
}

JobStatus SandboxRun::Compose(std::optional<int> wait, const rusage& usage) {
  JobStatus st;
  CgroupUsage cg;
  if (cgroup_ != nullptr) cg = cgroup_->Usage();
  // Without cgroups, the rusage of bwrap itself: bwrap exits on its init's
  // word, without reaping it, so the job's processes are not in it.
  const double rusage_cpu = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                            static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  st.cpu_seconds = std::max(cg.cpu_seconds.value_or(0), rusage_cpu);
  st.peak_memory_bytes = cg.peak_memory_bytes.value_or(static_cast<uint64_t>(usage.ru_maxrss) * 1024);

  // bwrap reports the command's death by signal N as exit code 128+N, like
  // a shell; read it back that way (a command exiting 137 itself looks the same).
  const int wait_status = wait.value_or(0);
  if (!wait.has_value()) {
    // Neither an exit code nor a signal is known.
  } else if (WIFSIGNALED(wait_status)) {
    st.term_signal = WTERMSIG(wait_status);
  } else if (WIFEXITED(wait_status)) {
    const int code = WEXITSTATUS(wait_status);
    if (code > 128 && code < 128 + NSIG) {
      st.term_signal = code - 128;
    } else {
      st.exit_code = code;
    }
  }

  switch (stop_) {
    case StopCause::kCancelled:
      st.state = JobState::kCancelled;
      st.reason = "cancelled";
      return st;
    case StopCause::kWallTime:
      st.state = JobState::kFailed;
      st.reason = fmt::format("killed: exceeded wall time limit of {}",
                              absl::FormatDuration(spec_.resources.wall_timeout));
      return st;
    case StopCause::kCpuTime:
      st.state = JobState::kFailed;
      st.reason =
          fmt::format("killed: exceeded CPU time limit of {}", absl::FormatDuration(spec_.resources.cpu_time));
      return st;
    case StopCause::kOutput:
      st.state = JobState::kFailed;
      st.reason = fmt::format("output exceeded {}", FormatBytes(spec_.resources.max_output_bytes));
      return st;
    case StopCause::kNone:
      break;
  }

  const bool ok = st.exit_code.has_value() && *st.exit_code == 0;
  st.state = ok ? JobState::kSucceeded : JobState::kFailed;
  if (!ok) {
    if (cg.oom_kills > 0) {
      st.reason = fmt::format("killed: out of memory (limit {})", FormatBytes(memory_limit_));
    } else if (st.term_signal == SIGXCPU) {
      st.reason =
          fmt::format("killed: exceeded CPU time limit of {}", absl::FormatDuration(spec_.resources.cpu_time));
    } else if (st.term_signal == SIGXFSZ) {
      st.reason = fmt::format("killed: a file exceeded the output limit of {}",
                              FormatBytes(spec_.resources.max_output_bytes));
    } else if (st.term_signal.has_value()) {
      st.reason = fmt::format("killed by {}", SignalName(*st.term_signal));
    } else if (st.exit_code.has_value()) {
      st.reason = fmt::format("exit code {}", *st.exit_code);
    } else {
      st.reason = "ended without an exit status";
    }
    if (cg.process_limit_hit) {
      st.reason += fmt::format(" (the process limit of {} was reached)", spec_.resources.max_processes);
    } else if (memory_by_rlimit_ && st.exit_code.has_value()) {
      st.reason += fmt::format(" (memory was limited to {} of address space)", FormatBytes(memory_limit_));
    }
  }

  // The log is capped as it is copied; the outputs are counted at the end.
  uint64_t total = log_bytes_;
  for (const Mount& m : spec_.outputs) total += TreeBytes(m.host_path);
  if (total > spec_.resources.max_output_bytes) {
    const std::string why = fmt::format("output exceeded {}", FormatBytes(spec_.resources.max_output_bytes));
    st.state = JobState::kFailed;
    st.reason = st.reason.empty() ? why : st.reason + "; " + why;
  }
  return st;
}

}  // namespace

std::string FormatBytes(uint64_t bytes) {
  constexpr std::pair<uint64_t, const char*> kUnits[] = {{1ull << 40, "TiB"}, {1ull << 30, "GiB"},
                                                         {1ull << 20, "MiB"}, {1ull << 10, "KiB"}};
  for (const auto& [size, name] : kUnits) {
    if (bytes < size) continue;
    if (bytes % size == 0) return fmt::format("{} {}", bytes / size, name);
    return fmt::format("{:.1f} {}", static_cast<double>(bytes) / static_cast<double>(size), name);
  }
  return fmt::format("{} bytes", bytes);
}

absl::Status CheckJobHostPaths(const JobSpec& spec) {
  auto is_dir = [](const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  };
  auto bad = [](std::string_view field, const std::string& path, std::string_view why) {
    return absl::InvalidArgumentError(fmt::format("job spec: {} '{}' {}", field, path, why));
  };
  if (!is_dir(spec.job_dir)) return bad("job_dir", spec.job_dir, "is not a directory");
  if (!spec.code_dir.empty() && !is_dir(spec.code_dir)) return bad("code_dir", spec.code_dir, "is not a directory");
  if (!spec.root_dir.empty() && !is_dir(spec.root_dir + "/usr")) {
    return bad("root_dir", spec.root_dir, "has no usr/ directory");
  }
  for (size_t i = 0; i < spec.inputs.size(); ++i) {
    struct stat st;
    if (::stat(spec.inputs[i].host_path.c_str(), &st) != 0) {
      return bad(fmt::format("inputs[{}].host_path", i), spec.inputs[i].host_path, "does not exist");
    }
  }
  for (size_t i = 0; i < spec.outputs.size(); ++i) {
    const std::string& path = spec.outputs[i].host_path;
    const std::string field = fmt::format("outputs[{}].host_path", i);
    if (!is_dir(path)) return bad(field, path, "is not a directory");
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(path.c_str()), ::closedir);
    if (dir == nullptr) return bad(field, path, "cannot be read");
    while (dirent* e = ::readdir(dir.get())) {
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
        return bad(field, path, "is not empty");
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<BwrapCommand> BuildBwrapCommand(const JobSpec& spec, const std::string& job_id,
                                               const SandboxOptions& options, bool staged) {
  RETURN_IF_ERROR(ValidateJobSpec(spec));
  std::vector<std::string> gpus;
  if (spec.resources.gpus > 0) {
    gpus = GpuDevices();
    if (gpus.size() < static_cast<size_t>(spec.resources.gpus)) {
      return absl::FailedPreconditionError(fmt::format("the job asks for {} GPU(s); this machine has {}",
                                                       spec.resources.gpus, gpus.size()));
    }
    gpus.resize(static_cast<size_t>(spec.resources.gpus));
  }

  ArgvBuilder b(options, staged);
  b.Add({"--unshare-all"});
  if (spec.network) b.Add({"--share-net"});
  b.Add({"--die-with-parent", "--new-session", "--json-status-fd", std::to_string(kBwrapStatusFd)});

  // A minimal root: /usr (the host's or the environment's), the merged-/usr
  // symlinks, fresh /proc, /dev and /tmp, and only the /etc a program needs.
  const std::string root = spec.root_dir;  // "" = the host
  b.Bind("--ro-bind", root + "/usr", "/usr");
  for (const char* dir : kRootDirs) AddRootEntry(b, root, dir);
  b.Add({"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"});
  for (const char* entry : kEtcEntries) AddRootEntry(b, root, std::string("etc/") + entry);
  if (spec.network) {
    for (const char* entry : kEtcNetworkEntries) AddRootEntry(b, root, std::string("etc/") + entry);
  }
  if (!gpus.empty()) {
    for (const char* dev : {"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"}) {
      if (::access(dev, F_OK) == 0) b.Bind("--dev-bind", dev, dev);
    }
    for (const std::string& dev : gpus) b.Bind("--dev-bind", dev, dev);
  }

  b.Add({"--dir", "/cairn"});
  if (spec.code_dir.empty()) {
    b.Add({"--dir", "/cairn/code"});
  } else {
    b.Bind("--ro-bind", spec.code_dir, "/cairn/code");
  }
  b.Add({"--dir", "/cairn/in"});
  for (const Mount& m : spec.inputs) b.Bind("--ro-bind", m.host_path, "/cairn/in/" + m.name);
  b.Add({"--dir", "/cairn/out"});
  for (const Mount& m : spec.outputs) b.Bind("--bind", m.host_path, "/cairn/out/" + m.name);
  // The root tmpfs itself read-only: the job writes only to its outputs and /tmp.
  b.Add({"--remount-ro", "/", "--chdir", "/cairn/code"});

  std::map<std::string, std::string> env = {
      {"PATH", "/usr/local/bin:/usr/bin:/bin"}, {"HOME", "/tmp"}, {"LANG", "C.UTF-8"},
  };
  for (const auto& [k, v] : spec.env) env[k] = v;
  env["CAIRN_JOB_ID"] = job_id;
  env["CAIRN_OUT"] = "/cairn/out";
  b.Add({"--clearenv"});
  for (const auto& [k, v] : env) b.Add({"--setenv", k, v});

  b.Add({"--"});
  BwrapCommand cmd = b.Finish();
  cmd.argv.insert(cmd.argv.end(), spec.argv.begin(), spec.argv.end());
  return cmd;
}

absl::StatusOr<JobStatus> RunInSandbox(const JobSpec& spec, const std::string& job_id,
                                       const SandboxOptions& options, const std::atomic<bool>* cancel) {
  SandboxRun run(spec, job_id, options, cancel);
  return run.Run();
}

absl::StatusOr<JobStatus> RunJobDirectory(const std::string& job_dir, const SandboxOptions& options,
                                          const std::string& job_id, const std::atomic<bool>* cancel) {
  const int64_t started = NowMillis();
  absl::StatusOr<JobStatus> status = [&]() -> absl::StatusOr<JobStatus> {
    ASSIGN_OR_RETURN(JobSpec spec, ReadJobSpec(job_dir));
    // The directory the job was found in is its job dir, wherever the
    // submitter saw it.
    spec.job_dir = job_dir;
    return RunInSandbox(spec, job_id.empty() ? Basename(job_dir) : job_id, options, cancel);
  }();
  if (!status.ok()) {
    JobStatus failed;
    failed.state = JobState::kFailed;
    failed.reason = std::string(status.status().message());
    failed.started_at_ms = started;
    failed.ended_at_ms = NowMillis();
    status = failed;
  }
  RETURN_IF_ERROR(WriteJobResult(*status, job_dir));
  return status;
}

}  // namespace cairn::exec
