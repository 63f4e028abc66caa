#include "serving/python_backend.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <span>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "serving/python_worker_source.h"  // generated from python_worker.py

extern char** environ;

namespace cairn::serving {
namespace {

// Loading a model may import heavy packages (scikit-learn takes about a
// second); it is not bounded by the per-request timeout.
constexpr absl::Duration kLoadTimeout = absl::Seconds(120);
// The warm-up call at load gets at least this long: a model's first call
// often pays for lazy imports and caches.
constexpr absl::Duration kMinWarmUpTimeout = absl::Seconds(30);
// How long stopping workers get between SIGTERM and SIGKILL.
constexpr absl::Duration kStopGrace = absl::Seconds(2);
// How long a worker whose stdout closed gets to exit before it is killed.
constexpr absl::Duration kExitGrace = absl::Seconds(1);
// Respawning a worker that keeps failing backs off up to this.
constexpr absl::Duration kMaxRespawnBackoff = absl::Seconds(30);
constexpr size_t kStderrTailBytes = 8192;
constexpr int kStderrLinesInErrors = 3;
constexpr uint32_t kMaxHeaderBytes = 64u << 20;
constexpr uint64_t kMaxPayloadBytes = uint64_t{16} << 30;

absl::Status ErrnoStatus(absl::StatusCode code, std::string_view what, int err) {
  return absl::Status(code, fmt::format("{}: {}", what, std::strerror(err)));
}

// Closes the file descriptor it holds.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

absl::Status MakePipe(Fd* read_end, Fd* write_end) {
  int fds[2];
  // O_CLOEXEC: a process another thread forks meanwhile must not inherit
  // our ends, or a worker's EOF would never come.
  if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoStatus(absl::StatusCode::kResourceExhausted, "pipe2", errno);
  *read_end = Fd(fds[0]);
  *write_end = Fd(fds[1]);
  return absl::OkStatus();
}

void SetNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

// write() to a pipe whose reader may be gone, without a SIGPIPE killing the
// server: the signal is blocked in this thread for the call and the one the
// call raised (thread-directed) is consumed before unblocking.
ssize_t WriteWithoutSigpipe(int fd, const char* data, size_t n) {
  sigset_t pipe_set;
  sigset_t old_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  sigset_t pending;
  sigpending(&pending);
  const bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  ssize_t written = ::write(fd, data, n);
  const int saved_errno = errno;
  if (written < 0 && saved_errno == EPIPE && !was_pending) {
    struct timespec zero = {0, 0};
    while (::sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  ::pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  errno = saved_errno;
  return written;
}

// One frame of the worker protocol (see python_worker.py): a JSON header and
// the tensor bytes that follow it. (NOLINT: nlohmann's move constructor is
// not marked noexcept; it does not throw.)
struct Frame {  // NOLINT(bugprone-exception-escape)
  Json header;
  std::string payload;
};

// The frame prefix: u32 little-endian length + the JSON header text.
std::string EncodeFrameHeader(const Json& header) {
  std::string text = header.dump();
  const auto n = static_cast<uint32_t>(text.size());
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += text;
  return out;
}

// What starting a worker needs, prepared once per backend.
struct Launch {
  std::string python;
  std::string cwd;
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string label;  // the model file, for log lines
};

// What the forked child uses; everything is laid out before fork() because
// a multi-threaded parent's child may only make async-signal-safe calls.
struct ChildPlan {
  const char* python;
  const char* cwd;
  char* const* argv;
  char* const* envp;
  int stdin_fd;
  int stdout_fd;
  int stderr_fd;
  int error_fd;  // CLOEXEC: closes on a successful exec
  pid_t parent;
};

struct ChildFailure {
  int stage;  // 0: chdir, 1: execve, 2: set-up
  int error;
};

[[noreturn]] void ChildFail(const ChildPlan& plan, int stage) {
  ChildFailure failure = {stage, errno};
  [[maybe_unused]] ssize_t ignored = ::write(plan.error_fd, &failure, sizeof(failure));
  ::_exit(127);
}

[[noreturn]] void RunChild(const ChildPlan& plan) {
  // The forking thread's signal mask and the server's dispositions (it may
  // ignore SIGPIPE or block SIGTERM for a signal thread) must not leak into
  // Python: SIGTERM has to stop a worker.
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP}) ::signal(sig, SIG_DFL);
  // PR_SET_PDEATHSIG fires when the forking *thread* exits, which is why
  // only the backend's long-lived supervisor thread forks workers.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) ChildFail(plan, 2);
  if (::getppid() != plan.parent) ::_exit(127);  // the server died before prctl
  // Its own process group: killing the group takes the model's children too.
  ::setpgid(0, 0);
  // Move the pipe ends above 2 first, in case one of them is 0, 1 or 2.
  int in = ::fcntl(plan.stdin_fd, F_DUPFD, 3);
  int out = ::fcntl(plan.stdout_fd, F_DUPFD, 3);
  int err = ::fcntl(plan.stderr_fd, F_DUPFD, 3);
  if (in < 0 || out < 0 || err < 0) ChildFail(plan, 2);
  if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) ChildFail(plan, 2);
  if (::chdir(plan.cwd) != 0) ChildFail(plan, 0);
  // Everything above 2 closes at exec (the error pipe stays open until then).
  if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    for (int fd = 3; fd < 1024; ++fd) {
      if (fd != plan.error_fd) ::close(fd);
    }
  }
  ::execve(plan.python, plan.argv, plan.envp);
  ChildFail(plan, 1);
}

// One python3 worker process and the three pipes to it. Not thread-safe: one
// thread at a time uses a worker (the pool hands it out).
class WorkerProcess {
 public:
  // Forks and execs the interpreter. kUnavailable when it cannot be started.
  static absl::StatusOr<std::unique_ptr<WorkerProcess>> Start(const Launch& launch);

  // Kills the process group (SIGKILL) if the worker is still running, and
  // reaps it.
  ~WorkerProcess() { KillAndReap(); }
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  pid_t pid() const { return pid_; }

  // Writes `request` (its parts in order) and reads one response frame.
  // kDeadlineExceeded when `deadline` passed first (the worker is killed);
  // kUnavailable when the worker exited or broke the protocol (it is reaped;
  // the message names its exit status and last stderr lines); kCancelled
  // when `cancel` turned true. After any error the worker is unusable.
  absl::Status Exchange(std::span<const std::string_view> request, absl::Time deadline, const std::atomic<bool>* cancel,
                        Frame* response);

  // True (and the worker reaped, its end logged) when it exited while it
  // was idle, e.g. killed by the OOM killer.
  bool ExitedWhileIdle();

  // First step of a graceful stop: closes stdin (the worker exits at EOF)
  // and sends SIGTERM to its process group.
  void BeginStop();
  // Reaps the worker if it exits before `deadline`.
  void AwaitExit(absl::Time deadline);

 private:
  WorkerProcess(pid_t pid, Fd stdin_fd, Fd stdout_fd, Fd stderr_fd, std::string label)
      : pid_(pid),
        stdin_(std::move(stdin_fd)),
        stdout_(std::move(stdout_fd)),
        stderr_(std::move(stderr_fd)),
        label_(std::move(label)) {}

  // Reaps the worker if it has exited, after killing (SIGKILL) what is left
  // of its process group. True once reaped.
  bool TryReap();
  void KillAndReap();
  // Reads what stderr holds now; logs complete lines and keeps a tail.
  void DrainStderr();
  // The worker's stdout closed or its stdin broke: waits for it to exit
  // (killing it after a grace period) and describes how it ended.
  absl::Status Exited();
  absl::Status Broken(std::string_view why);
  std::string StderrTail() const;

  const pid_t pid_;
  bool reaped_ = false;
  int wait_status_ = 0;
  Fd stdin_;
  Fd stdout_;
  Fd stderr_;
  std::string label_;
  std::string stderr_tail_;  // the last kStderrTailBytes bytes of stderr
  std::string stderr_line_;  // an incomplete line, for the log
};

absl::StatusOr<std::unique_ptr<WorkerProcess>> WorkerProcess::Start(const Launch& launch) {
  Fd stdin_read, stdin_write, stdout_read, stdout_write, stderr_read, stderr_write, error_read, error_write;
  RETURN_IF_ERROR(MakePipe(&stdin_read, &stdin_write));
  RETURN_IF_ERROR(MakePipe(&stdout_read, &stdout_write));
  RETURN_IF_ERROR(MakePipe(&stderr_read, &stderr_write));
  RETURN_IF_ERROR(MakePipe(&error_read, &error_write));

  std::vector<char*> argv;
  for (const std::string& arg : launch.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& var : launch.env) envp.push_back(const_cast<char*>(var.c_str()));
  envp.push_back(nullptr);
  const ChildPlan plan = {launch.python.c_str(), launch.cwd.c_str(), argv.data(),       envp.data(), stdin_read.get(),
                          stdout_write.get(),    stderr_write.get(), error_write.get(), ::getpid()};

  pid_t pid = ::fork();
  if (pid < 0) return ErrnoStatus(absl::StatusCode::kResourceExhausted, "fork", errno);
  if (pid == 0) RunChild(plan);
  ::setpgid(pid, pid);  // also from the parent, so that kill(-pid) works at once
  stdin_read.Reset();
  stdout_write.Reset();
  stderr_write.Reset();
  error_write.Reset();

  ChildFailure failure;
  ssize_t n;
  do {
    n = ::read(error_read.get(), &failure, sizeof(failure));
  } while (n < 0 && errno == EINTR);
  if (n == sizeof(failure)) {
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    const char* stage = failure.stage == 0   ? "cannot enter model folder"
                        : failure.stage == 1 ? "cannot run"
                                             : "cannot set up";
    const std::string target = failure.stage == 0 ? launch.cwd : launch.python;
    return absl::UnavailableError(
        fmt::format("python worker: {} '{}': {}", stage, target, std::strerror(failure.error)));
  }
  SetNonBlocking(stdin_write.get());
  SetNonBlocking(stdout_read.get());
  SetNonBlocking(stderr_read.get());
  return std::unique_ptr<WorkerProcess>(
      new WorkerProcess(pid, std::move(stdin_write), std::move(stdout_read), std::move(stderr_read), launch.label));
}

bool WorkerProcess::TryReap() {
  if (reaped_) return true;
  // Looked at without reaping first: while the exited worker is a zombie its
  // process group id stays ours, so the group's other members (processes
  // the model started, which may ignore SIGTERM) can be killed for sure.
  siginfo_t info{};
  int r = ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT);
  if (r == 0 && info.si_pid == 0) return false;  // still running
  if (r == 0) ::kill(-pid_, SIGKILL);
  int status = 0;
  pid_t reaped;
  do {
    reaped = ::waitpid(pid_, &status, r == 0 ? 0 : WNOHANG);
  } while (reaped < 0 && errno == EINTR);
  if (reaped == pid_ || (reaped < 0 && errno == ECHILD)) {
    reaped_ = true;
    wait_status_ = reaped == pid_ ? status : 0;
  }
  return reaped_;
}

void WorkerProcess::KillAndReap() {
  if (reaped_) return;
  // The group is ours until the leader is reaped (its id cannot be reused).
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  int status;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, 0);
  } while (r < 0 && errno == EINTR);
  reaped_ = true;
  wait_status_ = r == pid_ ? status : 0;
}

bool WorkerProcess::ExitedWhileIdle() {
  if (!TryReap()) return false;
  DrainStderr();
  spdlog::warn("python worker {} ({}) exited while idle ({}): {}", pid_, label_,
               WIFSIGNALED(wait_status_) ? fmt::format("signal {}", WTERMSIG(wait_status_))
                                         : fmt::format("code {}", WEXITSTATUS(wait_status_)),
               StderrTail());
  return true;
}

void WorkerProcess::BeginStop() {
  stdin_.Reset();
  if (!reaped_) ::kill(-pid_, SIGTERM);
}

void WorkerProcess::AwaitExit(absl::Time deadline) {
  while (!TryReap() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
}

void WorkerProcess::DrainStderr() {
  char buf[4096];
  while (stderr_.valid()) {
    ssize_t n = ::read(stderr_.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;  // EAGAIN: nothing more for now
    if (n == 0) {
      stderr_.Reset();
      break;
    }
    std::string_view chunk(buf, static_cast<size_t>(n));
    stderr_tail_.append(chunk);
    if (stderr_tail_.size() > kStderrTailBytes) stderr_tail_.erase(0, stderr_tail_.size() - kStderrTailBytes);
    stderr_line_.append(chunk);
    size_t newline;
    while ((newline = stderr_line_.find('\n')) != std::string::npos) {
      spdlog::info("python worker {} ({}): {}", pid_, label_, std::string_view(stderr_line_).substr(0, newline));
      stderr_line_.erase(0, newline + 1);
    }
    if (stderr_line_.size() > kStderrTailBytes) {
      spdlog::info("python worker {} ({}): {}", pid_, label_, stderr_line_);
      stderr_line_.clear();
    }
  }
  if (!stderr_.valid() && !stderr_line_.empty()) {
    spdlog::info("python worker {} ({}): {}", pid_, label_, stderr_line_);
    stderr_line_.clear();
  }
}

std::string WorkerProcess::StderrTail() const {
  std::vector<std::string_view> lines;
  std::string_view rest(stderr_tail_);
  while (!rest.empty()) {
    size_t end = rest.find('\n');
    std::string_view line = rest.substr(0, end);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (!line.empty()) lines.push_back(line);
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end + 1);
  }
  if (lines.empty()) return "(nothing on stderr)";
  size_t first = lines.size() > kStderrLinesInErrors ? lines.size() - kStderrLinesInErrors : 0;
  std::string out;
  for (size_t i = first; i < lines.size(); ++i) {
    if (!out.empty()) out += " | ";
    out += lines[i];
  }
  return out;
}

absl::Status WorkerProcess::Exited() {
  stdin_.Reset();
  // Collect stderr until it closes, the process is reaped and a grace
  // period has passed (a child the model started may hold stderr open).
  const absl::Time deadline = absl::Now() + kExitGrace;
  while (absl::Now() < deadline) {
    DrainStderr();
    if (TryReap() && !stderr_.valid()) break;
    if (stderr_.valid()) {
      struct pollfd p = {stderr_.get(), POLLIN, 0};
      ::poll(&p, 1, 10);
    } else {
      absl::SleepFor(absl::Milliseconds(5));
    }
  }
  DrainStderr();
  if (!reaped_) KillAndReap();
  std::string how;
  if (WIFSIGNALED(wait_status_)) {
    how = fmt::format("signal {}", WTERMSIG(wait_status_));
  } else {
    how = fmt::format("code {}", WEXITSTATUS(wait_status_));
  }
  return absl::UnavailableError(fmt::format("python worker exited with {}: {}", how, StderrTail()));
}

absl::Status WorkerProcess::Broken(std::string_view why) {
  KillAndReap();
  DrainStderr();
  return absl::UnavailableError(fmt::format("python worker sent a malformed response ({}); it was killed", why));
}

absl::Status WorkerProcess::Exchange(std::span<const std::string_view> request, absl::Time deadline,
                                     const std::atomic<bool>* cancel, Frame* response) {
  if (reaped_ || !stdout_.valid()) return absl::UnavailableError("python worker is not running");
  size_t part = 0;
  size_t offset = 0;
  while (part < request.size() && request[part].empty()) ++part;

  std::string in;
  uint64_t frame_size = 0;  // known once the header arrived
  uint64_t payload_offset = 0;
  bool have_header = false;
  for (;;) {
    if (have_header && in.size() == frame_size) break;
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      KillAndReap();
      DrainStderr();
      return absl::DeadlineExceededError("python worker did not answer in time; it was killed");
    }
    if (cancel != nullptr && cancel->load()) return absl::CancelledError("the backend is shutting down");
    int64_t wait_ms = absl::ToInt64Milliseconds(absl::Ceil(deadline - now, absl::Milliseconds(1)));
    if (cancel != nullptr) wait_ms = std::min<int64_t>(wait_ms, 50);
    struct pollfd fds[3];
    int n = 0;
    const int out_index = n;
    fds[n++] = {stdout_.get(), POLLIN, 0};
    int err_index = -1;
    if (stderr_.valid()) {
      err_index = n;
      fds[n++] = {stderr_.get(), POLLIN, 0};
    }
    int in_index = -1;
    if (part < request.size()) {
      in_index = n;
      fds[n++] = {stdin_.get(), POLLOUT, 0};
    }
    int ready = ::poll(fds, n, static_cast<int>(std::min<int64_t>(wait_ms, 1 << 30)));
    if (ready < 0) {
      if (errno == EINTR) continue;
      KillAndReap();
      return ErrnoStatus(absl::StatusCode::kUnavailable, "poll on python worker", errno);
    }
    if (err_index >= 0 && fds[err_index].revents != 0) DrainStderr();
    if (in_index >= 0 && fds[in_index].revents != 0) {
      while (part < request.size()) {
        std::string_view rest = request[part].substr(offset);
        ssize_t w = WriteWithoutSigpipe(stdin_.get(), rest.data(), rest.size());
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) break;
        if (w < 0) return Exited();  // EPIPE: the worker is gone
        offset += static_cast<size_t>(w);
        if (offset == request[part].size()) {
          offset = 0;
          ++part;
          while (part < request.size() && request[part].empty()) ++part;
        }
      }
    }
    if (fds[out_index].revents != 0) {
      for (;;) {
        size_t want = have_header ? frame_size - in.size() : 65536;
        if (want == 0) want = 1;  // would reveal extra bytes: a protocol error
        want = std::min<size_t>(want, 1 << 20);
        const size_t old_size = in.size();
        in.resize(old_size + want);
        ssize_t r = ::read(stdout_.get(), in.data() + old_size, want);
        in.resize(old_size + (r > 0 ? static_cast<size_t>(r) : 0));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;  // EAGAIN
        if (r == 0) return Exited();
        if (!have_header && in.size() >= 4) {
          const auto* b = reinterpret_cast<const unsigned char*>(in.data());
          const uint32_t header_size = b[0] | (b[1] << 8) | (b[2] << 16) | (uint32_t{b[3]} << 24);
          if (header_size > kMaxHeaderBytes) return Broken("header too large");
          if (in.size() >= 4 + uint64_t{header_size}) {
            Json header = Json::parse(in.begin() + 4, in.begin() + 4 + header_size, nullptr, false);
            if (header.is_discarded() || !header.is_object()) return Broken("header is not a JSON object");
            uint64_t payload = 0;
            if (auto it = header.find("outputs"); it != header.end()) {
              if (!it->is_array()) return Broken("outputs is not an array");
              for (const Json& out : *it) {
                if (!out.is_object() || !out.contains("size") || !out["size"].is_number_unsigned()) {
                  return Broken("an output has no size");
                }
                payload += out["size"].get<uint64_t>();
                if (payload > kMaxPayloadBytes) return Broken("payload too large");
              }
            }
            have_header = true;
            payload_offset = 4 + uint64_t{header_size};
            frame_size = payload_offset + payload;
            response->header = std::move(header);
          }
        }
        if (have_header && in.size() > frame_size) return Broken("more bytes than the header announced");
        if (have_header && in.size() == frame_size) break;
      }
    }
  }
  // Our worker reads a whole request before it answers: an early answer
  // would leave request bytes in the pipe to be misread as the next one.
  if (part < request.size()) return Broken("answered before reading the whole request");
  in.erase(0, payload_offset);
  response->payload = std::move(in);
  return absl::OkStatus();
}

Json TensorHeader(const Tensor& t) {
  return Json{{"name", t.name},
              {"datatype", std::string(DataTypeName(t.datatype))},
              {"shape", t.shape},
              {"size", t.data.size()}};
}

// The tensors of an "outputs" response frame.
absl::StatusOr<std::vector<Tensor>> DecodeOutputs(const Frame& frame) {
  auto it = frame.header.find("outputs");
  if (it == frame.header.end() || !it->is_array()) {
    return absl::InvalidArgumentError("python worker answered without outputs");
  }
  std::vector<Tensor> outputs;
  size_t offset = 0;
  for (const Json& spec : *it) {
    Tensor t;
    ASSIGN_OR_RETURN(t.name, GetString(spec, "name"));
    ASSIGN_OR_RETURN(std::string datatype, GetString(spec, "datatype"));
    std::optional<DataType> type = ParseDataType(datatype);
    if (!type) {
      return absl::InvalidArgumentError(fmt::format("python output '{}': unknown datatype {}", t.name, datatype));
    }
    t.datatype = *type;
    ASSIGN_OR_RETURN(std::vector<Json> shape, GetOptionalArray(spec, "shape"));
    for (const Json& d : shape) {
      if (!d.is_number_integer()) {
        return absl::InvalidArgumentError(fmt::format("python output '{}': bad shape", t.name));
      }
      t.shape.push_back(d.get<int64_t>());
    }
    const auto size = spec["size"].get<uint64_t>();  // checked by Exchange
    t.data = frame.payload.substr(offset, size);
    offset += size;
    RETURN_IF_ERROR(t.CheckConsistent());
    outputs.push_back(std::move(t));
  }
  return outputs;
}

std::string ShapeText(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ",")); }

// The outputs `specs` call for, as returned for a batch of `batch` rows.
absl::Status CheckOutputs(const std::vector<TensorSpec>& specs, const std::vector<Tensor>& outputs, int64_t batch) {
  if (outputs.size() != specs.size()) {
    return absl::InvalidArgumentError(
        fmt::format("python model returned {} outputs, expected {}", outputs.size(), specs.size()));
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& spec = specs[i];
    const Tensor& t = outputs[i];
    if (t.name != spec.name || t.datatype != spec.datatype) {
      return absl::InvalidArgumentError(fmt::format("python model output {}: expected '{}' {}, got '{}' {}", i,
                                                    spec.name, DataTypeName(spec.datatype), t.name,
                                                    DataTypeName(t.datatype)));
    }
    bool fits = t.shape.size() == spec.shape.size() && !t.shape.empty() && t.shape[0] == batch;
    for (size_t d = 1; fits && d < spec.shape.size(); ++d) fits = spec.shape[d] < 0 || spec.shape[d] == t.shape[d];
    if (!fits) {
      return absl::InvalidArgumentError(fmt::format("python model output '{}': expected shape {} with batch {}, got {}",
                                                    spec.name, ShapeText(spec.shape), batch, ShapeText(t.shape)));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> WorkerEnvironment(int threads) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) env.emplace_back(*e);
  auto set_default = [&env](std::string_view key, const std::string& value) {
    const std::string prefix = fmt::format("{}=", key);
    for (const std::string& var : env) {
      if (var.starts_with(prefix)) return;
    }
    env.push_back(prefix + value);
  };
  // Several workers each starting a thread per core would oversubscribe
  // the machine; the server's thread setting applies to each worker.
  const std::string n = std::to_string(std::max(threads, 1));
  set_default("OMP_NUM_THREADS", n);
  set_default("OPENBLAS_NUM_THREADS", n);
  set_default("MKL_NUM_THREADS", n);
  // Model folders may be read-only caches: no __pycache__ next to predict.py.
  set_default("PYTHONDONTWRITEBYTECODE", "1");
  set_default("PYTHONUNBUFFERED", "1");
  return env;
}

class PythonBackend final : public ModelBackend {
 public:
  static absl::StatusOr<std::unique_ptr<ModelBackend>> Create(const ModelDescriptor& descriptor,
                                                              const BackendOptions& options);
  ~PythonBackend() override;
  PythonBackend(const PythonBackend&) = delete;
  PythonBackend& operator=(const PythonBackend&) = delete;

  const ModelSignature& signature() const override { return signature_; }
  std::string_view platform() const override { return "python"; }
  absl::StatusOr<std::vector<Tensor>> Infer(const std::vector<Tensor>& inputs) override;
  uint64_t memory_bytes() const override;

 private:
  PythonBackend(Launch launch, std::string load_frame, ModelSignature signature, int workers, int64_t timeout_ms)
      : launch_(std::move(launch)),
        load_frame_(std::move(load_frame)),
        signature_(std::move(signature)),
        workers_(workers),
        timeout_ms_(timeout_ms) {}

  // Completes the signature from the load and a warm-up call.
  absl::Status CompleteSignature();
  // The supervisor thread: starts workers until workers_ are running, and
  // replaces those that die, backing off while starting fails.
  void Supervise();
  // Loads the model in a started worker; returns the worker's ready header.
  absl::StatusOr<Json> AwaitReady(WorkerProcess& worker);
  // Runs `inputs` (in signature order) on an idle worker. `outputs` empty:
  // whatever the model returns, in its order.
  absl::StatusOr<std::vector<Tensor>> Run(std::span<const Tensor* const> inputs, const std::vector<TensorSpec>& outputs,
                                          absl::Duration timeout);
  absl::StatusOr<std::unique_ptr<WorkerProcess>> AcquireWorker();
  void ReleaseWorker(std::unique_ptr<WorkerProcess> worker);
  void DiscardWorker(std::unique_ptr<WorkerProcess> worker);

  bool CanAcquire() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_ || !idle_.empty() || (live_ == 0 && starting_ == 0 && !start_error_.ok());
  }
  bool SupervisorHasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || live_ + starting_ < workers_; }
  bool InitialLoadSettled() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return live_ == workers_ || !start_error_.ok(); }

  const Launch launch_;
  const std::string load_frame_;
  ModelSignature signature_;  // complete once Create returns; immutable after
  const int workers_;
  const int64_t timeout_ms_;
  std::atomic<bool> stopping_{false};  // aborts a load in progress at destruction

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<WorkerProcess>> idle_ ABSL_GUARDED_BY(mu_);
  int live_ ABSL_GUARDED_BY(mu_) = 0;              // idle or serving a request
  int starting_ ABSL_GUARDED_BY(mu_) = 0;          // being started by the supervisor
  absl::Status start_error_ ABSL_GUARDED_BY(mu_);  // the last start's failure; OK after a success
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  Json ready_info_ ABSL_GUARDED_BY(mu_);      // the first worker's ready header
  bool loaded_ ABSL_GUARDED_BY(mu_) = false;  // Create succeeded: later start failures are logged
  absl::flat_hash_set<pid_t> pids_ ABSL_GUARDED_BY(mu_);
  std::thread supervisor_;
};

absl::StatusOr<std::unique_ptr<ModelBackend>> PythonBackend::Create(const ModelDescriptor& descriptor,
                                                                    const BackendOptions& options) {
  if (descriptor.flavor != Flavor::kPython) return absl::InvalidArgumentError("not a python model");
  const std::string& file = descriptor.model_file;
  std::string kind;
  if (file.ends_with(".pkl") || file.ends_with(".pickle")) {
    kind = "pickle";
  } else if (file.ends_with(".py")) {
    kind = "function";
  } else {
    return absl::InvalidArgumentError(fmt::format(
        "python model file '{}': expected a pickle (.pkl, .pickle) or a .py file defining predict()", file));
  }
  std::string method = "predict";
  if (descriptor.options.is_object() && descriptor.options.contains("method")) {
    const Json& m = descriptor.options["method"];
    if (!m.is_string() || (m != "predict" && m != "predict_proba")) {
      return absl::InvalidArgumentError(
          fmt::format("python model option 'method': expected \"predict\" or \"predict_proba\", got {}", m.dump()));
    }
    method = m.get<std::string>();
  }
  if (options.python_workers < 1) {
    return absl::InvalidArgumentError(fmt::format("python_workers must be at least 1, got {}", options.python_workers));
  }
  if (options.python_timeout_ms <= 0) {
    return absl::InvalidArgumentError(
        fmt::format("python_timeout_ms must be positive, got {}", options.python_timeout_ms));
  }
  const std::string path = descriptor.model_dir + "/" + file;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return absl::NotFoundError(fmt::format("python model file '{}' not found", path));
    }
    return ErrnoStatus(absl::StatusCode::kUnavailable, fmt::format("python model file '{}'", path), err);
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(fmt::format("python model file '{}' is not a file", path));
  }

  Launch launch;
  launch.python = options.python;
  launch.cwd = descriptor.model_dir;
  launch.argv = {options.python, "-c", std::string(kPythonWorkerSource)};
  launch.env = WorkerEnvironment(options.threads);
  launch.label = file;
  std::string load_frame = EncodeFrameHeader(Json{{"model_file", path}, {"kind", kind}, {"method", method}});

  std::unique_ptr<PythonBackend> backend(new PythonBackend(std::move(launch), std::move(load_frame),
                                                           descriptor.signature, options.python_workers,
                                                           options.python_timeout_ms));
  backend->supervisor_ = std::thread([b = backend.get()] {
    ::pthread_setname_np(::pthread_self(), "cairn-pyworkers");
    b->Supervise();
  });
  {
    absl::MutexLock lock(&backend->mu_);
    backend->mu_.Await(absl::Condition(backend.get(), &PythonBackend::InitialLoadSettled));
    // On failure the backend's destructor stops what did start.
    if (!backend->start_error_.ok()) return backend->start_error_;
  }
  RETURN_IF_ERROR(backend->CompleteSignature());
  {
    absl::MutexLock lock(&backend->mu_);
    backend->loaded_ = true;
  }
  return std::unique_ptr<ModelBackend>(std::move(backend));
}

PythonBackend::~PythonBackend() {
  stopping_.store(true);
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (supervisor_.joinable()) supervisor_.join();
  std::vector<std::unique_ptr<WorkerProcess>> workers;
  {
    absl::MutexLock lock(&mu_);
    workers.swap(idle_);
    pids_.clear();
  }
  for (auto& worker : workers) worker->BeginStop();
  const absl::Time deadline = absl::Now() + kStopGrace;
  for (auto& worker : workers) worker->AwaitExit(deadline);
  workers.clear();  // SIGKILL for any still running, and reap
}

absl::Status PythonBackend::CompleteSignature() {
  if (signature_.inputs.empty()) {
    Json info;
    {
      absl::MutexLock lock(&mu_);
      info = ready_info_;
    }
    if (!info.is_object() || !info.contains("n_features_in") || !info["n_features_in"].is_number_integer()) {
      return absl::InvalidArgumentError(
          fmt::format("python model '{}': the descriptor declares no inputs and the model does not say what it takes",
                      launch_.label));
    }
    signature_.inputs.push_back({"input", DataType::kFp64, {-1, info["n_features_in"].get<int64_t>()}});
  }
  // The warm-up call: zeros of batch 1 (other variable dimensions 1).
  std::vector<Tensor> zeros;
  for (const TensorSpec& spec : signature_.inputs) {
    Tensor t{spec.name, spec.datatype, spec.shape, {}};
    if (t.shape.empty()) {
      return absl::InvalidArgumentError(fmt::format("python model input '{}' has no shape", spec.name));
    }
    for (int64_t& d : t.shape) d = d < 0 ? 1 : d;
    t.shape[0] = 1;
    ASSIGN_OR_RETURN(int64_t count, ElementCount(t.shape));
    if (spec.datatype == DataType::kBytes) {
      t.data.assign(static_cast<size_t>(count) * 4, '\0');  // empty strings
    } else {
      t.data.assign(static_cast<size_t>(count) * ElementSize(spec.datatype), '\0');
    }
    zeros.push_back(std::move(t));
  }
  std::vector<const Tensor*> ordered;
  ordered.reserve(zeros.size());
  for (const Tensor& t : zeros) ordered.push_back(&t);
  const bool learn = signature_.outputs.empty();
  const absl::Duration timeout = std::max(absl::Milliseconds(timeout_ms_), kMinWarmUpTimeout);
  absl::StatusOr<std::vector<Tensor>> outputs = Run(ordered, signature_.outputs, timeout);
  if (!outputs.ok()) {
    if (learn) {
      return Annotate(outputs.status(), fmt::format("python model '{}': the warm-up call on zeros (needed to learn "
                                                    "the outputs the descriptor leaves out) failed",
                                                    launch_.label));
    }
    // The declared signature is complete; a model that rejects zeros may
    // still serve real inputs.
    spdlog::warn("python model '{}': warm-up call on zeros failed: {}", launch_.label, outputs.status().message());
    return absl::OkStatus();
  }
  if (learn) {
    for (const Tensor& t : *outputs) {
      if (t.shape.empty() || t.shape[0] != 1) {
        return absl::InvalidArgumentError(fmt::format(
            "python model '{}': output '{}' of the warm-up call has shape {}; expected the batch (1) as dimension 0",
            launch_.label, t.name, ShapeText(t.shape)));
      }
      TensorSpec spec{t.name, t.datatype, t.shape};
      spec.shape[0] = -1;
      signature_.outputs.push_back(std::move(spec));
    }
  } else {
    absl::Status fits = CheckOutputs(signature_.outputs, *outputs, 1);
    if (!fits.ok()) spdlog::warn("python model '{}': warm-up call: {}", launch_.label, fits.message());
  }
  return absl::OkStatus();
}

void PythonBackend::Supervise() {
  int failures = 0;
  mu_.Lock();
  for (;;) {
    mu_.Await(absl::Condition(this, &PythonBackend::SupervisorHasWork));
    if (stop_) break;
    const int missing = workers_ - live_ - starting_;
    starting_ += missing;
    mu_.Unlock();
    // Start every missing worker before waiting for any, so that they load
    // the model in parallel.
    std::vector<absl::StatusOr<std::unique_ptr<WorkerProcess>>> started;
    started.reserve(missing);
    for (int i = 0; i < missing; ++i) started.push_back(WorkerProcess::Start(launch_));
    std::vector<std::unique_ptr<WorkerProcess>> ready;
    std::vector<Json> infos;
    absl::Status failure;
    for (auto& worker : started) {
      absl::StatusOr<Json> info = worker.ok() ? AwaitReady(**worker) : worker.status();
      if (info.ok()) {
        ready.push_back(std::move(*worker));
        infos.push_back(std::move(*info));
      } else if (failure.ok() && !absl::IsCancelled(info.status())) {
        failure = info.status();
      }
    }
    started.clear();  // kills and reaps the workers that failed
    mu_.Lock();
    starting_ -= missing;
    for (size_t i = 0; i < ready.size(); ++i) {
      if (loaded_) spdlog::info("python model '{}': started worker {}", launch_.label, ready[i]->pid());
      if (ready_info_.is_null()) ready_info_ = std::move(infos[i]);
      pids_.insert(ready[i]->pid());
      idle_.push_back(std::move(ready[i]));
      ++live_;
    }
    if (failure.ok()) {
      start_error_ = absl::OkStatus();
      failures = 0;
      continue;
    }
    if (stop_) break;
    start_error_ = failure;
    ++failures;
    const absl::Duration backoff =
        std::min(kMaxRespawnBackoff, absl::Milliseconds(500) * (int64_t{1} << std::min(failures - 1, 8)));
    // A failure during Create is its result; afterwards only the log sees it.
    if (loaded_) {
      spdlog::error("python model '{}': cannot start a worker (retrying in {}): {}", launch_.label,
                    absl::FormatDuration(backoff), failure.message());
    }
    mu_.AwaitWithTimeout(absl::Condition(&stop_), backoff);
  }
  mu_.Unlock();
}

absl::StatusOr<Json> PythonBackend::AwaitReady(WorkerProcess& worker) {
  const std::string_view request[] = {load_frame_};
  Frame frame;
  absl::Status exchanged = worker.Exchange(request, absl::Now() + kLoadTimeout, &stopping_, &frame);
  if (absl::IsDeadlineExceeded(exchanged)) {
    return absl::UnavailableError(fmt::format("python model '{}': the worker did not load it within {}", launch_.label,
                                              absl::FormatDuration(kLoadTimeout)));
  }
  if (absl::IsCancelled(exchanged)) return exchanged;
  if (!exchanged.ok()) return Annotate(exchanged, fmt::format("cannot load python model '{}'", launch_.label));
  if (auto error = frame.header.find("error"); error != frame.header.end()) {
    return absl::InvalidArgumentError(fmt::format("cannot load python model '{}': {}", launch_.label,
                                                  error->is_string() ? error->get<std::string>() : error->dump()));
  }
  if (auto ready = frame.header.find("ready"); ready == frame.header.end() || *ready != true) {
    return absl::UnavailableError(
        fmt::format("python model '{}': the worker answered the load oddly: {}", launch_.label, frame.header.dump()));
  }
  return std::move(frame.header);
}

absl::StatusOr<std::unique_ptr<WorkerProcess>> PythonBackend::AcquireWorker() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(this, &PythonBackend::CanAcquire));
  if (stop_) return absl::UnavailableError("python backend is shutting down");
  if (idle_.empty()) {
    return absl::UnavailableError(
        fmt::format("no python worker is running for '{}': {}", launch_.label, start_error_.message()));
  }
  std::unique_ptr<WorkerProcess> worker = std::move(idle_.back());
  idle_.pop_back();
  return worker;
}

void PythonBackend::ReleaseWorker(std::unique_ptr<WorkerProcess> worker) {
  absl::MutexLock lock(&mu_);
  idle_.push_back(std::move(worker));
}

void PythonBackend::DiscardWorker(std::unique_ptr<WorkerProcess> worker) {
  {
    absl::MutexLock lock(&mu_);
    pids_.erase(worker->pid());
    --live_;  // wakes the supervisor to start a replacement
  }
  worker.reset();
}

absl::StatusOr<std::vector<Tensor>> PythonBackend::Run(std::span<const Tensor* const> inputs,
                                                       const std::vector<TensorSpec>& outputs, absl::Duration timeout) {
  Json header = {{"inputs", Json::array()}, {"outputs", Json::array()}};
  for (const Tensor* t : inputs) header["inputs"].push_back(TensorHeader(*t));
  for (const TensorSpec& spec : outputs) {
    header["outputs"].push_back({{"name", spec.name}, {"datatype", std::string(DataTypeName(spec.datatype))}});
  }
  const std::string prefix = EncodeFrameHeader(header);
  std::vector<std::string_view> request = {prefix};
  for (const Tensor* t : inputs) request.push_back(t->data);

  std::unique_ptr<WorkerProcess> worker;
  for (;;) {
    ASSIGN_OR_RETURN(worker, AcquireWorker());
    // A worker that died while idle had no request to fail; take another.
    if (!worker->ExitedWhileIdle()) break;
    DiscardWorker(std::move(worker));
  }
  Frame response;
  absl::Status exchanged = worker->Exchange(request, absl::Now() + timeout, nullptr, &response);
  if (!exchanged.ok()) {
    DiscardWorker(std::move(worker));
    if (absl::IsDeadlineExceeded(exchanged)) {
      return absl::DeadlineExceededError(
          fmt::format("python model '{}' took longer than {}; its worker was killed and is being replaced",
                      launch_.label, absl::FormatDuration(timeout)));
    }
    return exchanged;
  }
  ReleaseWorker(std::move(worker));
  if (auto error = response.header.find("error"); error != response.header.end()) {
    return absl::InvalidArgumentError(fmt::format("python model '{}' failed: {}", launch_.label,
                                                  error->is_string() ? error->get<std::string>() : error->dump()));
  }
  return DecodeOutputs(response);
}

absl::StatusOr<std::vector<Tensor>> PythonBackend::Infer(const std::vector<Tensor>& inputs) {
  std::vector<const Tensor*> ordered;
  for (const TensorSpec& spec : signature_.inputs) {
    auto it = std::find_if(inputs.begin(), inputs.end(), [&](const Tensor& t) { return t.name == spec.name; });
    if (it == inputs.end()) return absl::InvalidArgumentError(fmt::format("missing input '{}'", spec.name));
    ordered.push_back(&*it);
  }
  const int64_t batch = ordered.empty() ? 1 : ordered[0]->batch_size();
  if (batch == 0) {
    // Nothing to ask the model: empty outputs of the declared shapes.
    std::vector<Tensor> empty;
    for (const TensorSpec& spec : signature_.outputs) {
      Tensor t{spec.name, spec.datatype, spec.shape, {}};
      for (int64_t& d : t.shape) d = std::max<int64_t>(d, 0);
      if (!t.shape.empty()) t.shape[0] = 0;
      empty.push_back(std::move(t));
    }
    return empty;
  }
  ASSIGN_OR_RETURN(std::vector<Tensor> outputs, Run(ordered, signature_.outputs, absl::Milliseconds(timeout_ms_)));
  RETURN_IF_ERROR(CheckOutputs(signature_.outputs, outputs, batch));
  return outputs;
}

uint64_t PythonBackend::memory_bytes() const {
  std::vector<pid_t> pids;
  {
    absl::MutexLock lock(&mu_);
    pids.assign(pids_.begin(), pids_.end());
  }
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uint64_t total = 0;
  for (pid_t pid : pids) {
    std::ifstream statm(fmt::format("/proc/{}/statm", pid));
    uint64_t size = 0;
    uint64_t resident = 0;
    if (statm >> size >> resident) total += resident * page;
  }
  return total;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelBackend>> LoadPythonModel(const ModelDescriptor& descriptor,
                                                              const BackendOptions& options) {
  return PythonBackend::Create(descriptor, options);
}

}  // namespace cairn::serving
