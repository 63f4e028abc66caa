#include "exec/executor_suite.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <gmock/gmock.h>

#include "base/testing.h"
#include "exec/job_files.h"
#include "exec/sandbox.h"

namespace cairn::exec {
namespace {

using ::cairn::testing::ReadFileOrEmpty;
using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPython[] = "/usr/bin/python3";

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// A token that no other process on the machine has on its command line.
std::string NewMarker() {
  std::random_device rd;
  return fmt::format("{}.{}", 4000 + rd() % 1000, 100000 + rd() % 899999);
}

// Whether any process has `marker` in its command line.
bool ProcessWithMarkerExists(const std::string& marker) {
  std::unique_ptr<DIR, int (*)(DIR*)> proc(::opendir("/proc"), ::closedir);
  if (proc == nullptr) return false;
  while (dirent* e = ::readdir(proc.get())) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::string cmdline = ReadFileOrEmpty(fmt::format("/proc/{}/cmdline", e->d_name));
    if (cmdline.find(marker) != std::string::npos) return true;
  }
  return false;
}

// Polls until no process carries `marker` (the kernel may take a moment to
// reap a killed namespace); false if some still does after `patience`.
bool MarkerGone(const std::string& marker, absl::Duration patience) {
  const absl::Time deadline = absl::Now() + patience;
  while (ProcessWithMarkerExists(marker)) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return true;
}

// A TCP socket listening on 127.0.0.1 (an ephemeral port) for the test's life.
class Listener {
 public:
  Listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      port_ = -1;
      return;
    }
    port_ = ntohs(addr.sin_port);
  }
  ~Listener() {
    if (fd_ >= 0) ::close(fd_);
  }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = -1;
};

// Connects to 127.0.0.1:PORT and prints CONNECTED or REFUSED, then the
// network interfaces it sees.
constexpr char kNetworkProbe[] = R"(
import socket, sys
s = socket.socket()
s.settimeout(5)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
    print("CONNECTED")
except OSError as e:
    print("REFUSED", e)
names = [l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]]
print("IFACES=" + ",".join(sorted(names)))
)";

}  // namespace

std::string ExecutorFactoryName(const ::testing::TestParamInfo<ExecutorFactory>& info) { return info.param.name; }

void PrintTo(const ExecutorFactory& factory, std::ostream* os) { *os << factory.name; }

std::string ExecutorSuite::JobOutput(const std::string& log) {
  std::string out;
  size_t start = 0;
  while (start < log.size()) {
    size_t end = log.find('\n', start);
    end = end == std::string::npos ? log.size() : end + 1;
    if (log.compare(start, std::strlen(kSandboxNotePrefix), kSandboxNotePrefix) != 0) {
      out.append(log, start, end - start);
    }
    start = end;
  }
  return out;
}

void ExecutorSuite::SetUp() {
  root_ = GetParam().make_dir();
  ASSERT_FALSE(root_.empty());
  absl::StatusOr<std::unique_ptr<Executor>> executor = GetParam().make_executor();
  ASSERT_OK(executor.status());
  executor_ = *std::move(executor);
}

void ExecutorSuite::TearDown() {
  executor_.reset();  // stops anything still running first
  std::error_code ec;
  if (!root_.empty()) std::filesystem::remove_all(root_, ec);
}

std::string ExecutorSuite::NewDir(const std::string& name) {
  std::string dir = fmt::format("{}/{}-{}", root_, name, dirs_++);
  std::filesystem::create_directories(dir);
  ::chmod(dir.c_str(), 0755);
  return dir;
}

JobSpec ExecutorSuite::NewSpec(std::vector<std::string> argv) {
  JobSpec spec;
  spec.name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  spec.argv = std::move(argv);
  spec.job_dir = NewDir("job");
  spec.code_dir = NewDir("code");
  spec.resources.wall_timeout = GetParam().patience;
  return spec;
}

JobStatus ExecutorSuite::RunJob(const JobSpec& spec) {
  absl::StatusOr<JobId> id = executor_->Submit(spec);
  EXPECT_OK(id.status());
  if (!id.ok()) return JobStatus();
  absl::StatusOr<JobStatus> st = executor_->Wait(*id, GetParam().patience);
  EXPECT_OK(st.status());
  if (!st.ok()) return JobStatus();
  EXPECT_TRUE(IsFinal(st->state)) << "the job did not end in time: " << JobStateName(st->state);
  return *st;
}

std::string ExecutorSuite::ReadWholeLog(const JobId& id) {
  std::string out;
  uint64_t offset = 0;
  for (int i = 0; i < 100000; ++i) {
    absl::StatusOr<LogChunk> chunk = executor_->ReadLog(id, offset, 1 << 16);
    EXPECT_OK(chunk.status());
    if (!chunk.ok() || chunk->bytes.empty()) break;
    out += chunk->bytes;
    offset = chunk->next_offset;
  }
  return JobOutput(out);
}

// --- Basics -----------------------------------------------------------------

TEST_P(ExecutorSuite, EchoSucceeds) {
  JobSpec spec = NewSpec({"/bin/sh", "-c", "echo hello"});
  ASSERT_OK_AND_ASSIGN(JobId id, executor_->Submit(spec));
  ASSERT_OK_AND_ASSIGN(JobStatus st, executor_->Wait(id, GetParam().patience));
  EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
  EXPECT_EQ(st.exit_code, 0);
  EXPECT_EQ(st.term_signal, std::nullopt);
  EXPECT_EQ(ReadWholeLog(id), "hello\n");
  // result.json tells the same to anyone reading the job dir.
  ASSERT_OK_AND_ASSIGN(JobStatus from_file, ReadJobResult(spec.job_dir));
  EXPECT_EQ(from_file.state, JobState::kSucceeded);
  EXPECT_EQ(from_file.exit_code, 0);
  ASSERT_OK_AND_ASSIGN(JobSpec written, ReadJobSpec(spec.job_dir));
  EXPECT_EQ(written.argv, spec.argv);
}

TEST_P(ExecutorSuite, ExitCodeThreeFails) {
  JobStatus st = RunJob(NewSpec({"/bin/sh", "-c", "exit 3"}));
  EXPECT_EQ(st.state, JobState::kFailed);
  EXPECT_EQ(st.exit_code, 3);
  EXPECT_THAT(st.reason, HasSubstr("exit code 3"));
}

TEST_P(ExecutorSuite, StdoutAndStderrBothInLog) {
  JobSpec spec = NewSpec({"/bin/sh", "-c", "echo to-stdout; echo to-stderr >&2"});
  ASSERT_OK_AND_ASSIGN(JobId id, executor_->Submit(spec));
  ASSERT_OK_AND_ASSIGN(JobStatus st, executor_->Wait(id, GetParam().patience));
  EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
  const std::string log = ReadWholeLog(id);
  EXPECT_THAT(log, HasSubstr("to-stdout\n"));
  EXPECT_THAT(log, HasSubstr("to-stderr\n"));
  EXPECT_EQ(JobOutput(ReadFileOrEmpty(spec.job_dir + "/" + kJobLogFile)), log);
}

TEST_P(ExecutorSuite, LogReadableWhileRunning) {
  // The job prints, then waits for the test's go-ahead (a file appearing in
  // an input), so "still running" needs no timing assumption.
  JobSpec spec = NewSpec({kPython, "-c", R"(
import os, time
print("first", flush=True)
deadline = time.time() + 300
while not os.path.exists("/cairn/in/ctl/go") and time.time() < deadline:
    time.sleep(0.02)
print("second", flush=True)
)"});
  const std::string ctl = NewDir("ctl");
  spec.inputs.push_back({"ctl", ctl});
  ASSERT_OK_AND_ASSIGN(JobId id, executor_->Submit(spec));

  std::string seen;
  uint64_t offset = 0;
  const absl::Time deadline = absl::Now() + GetParam().patience;
  while (seen.find("first\n") == std::string::npos && absl::Now() < deadline) {
    ASSERT_OK_AND_ASSIGN(LogChunk chunk, executor_->ReadLog(id, offset, 1 << 16));
    seen += chunk.bytes;
    offset = chunk.next_offset;
    EXPECT_FALSE(chunk.finished);
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(JobOutput(seen), "first\n");
  ASSERT_OK_AND_ASSIGN(JobStatus running, executor_->Status(id));
  EXPECT_FALSE(IsFinal(running.state));

  WriteFile(ctl + "/go", "");
  ASSERT_OK_AND_ASSIGN(JobStatus st, executor_->Wait(id, GetParam().patience));
  EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
  ASSERT_OK_AND_ASSIGN(LogChunk rest, executor_->ReadLog(id, offset, 1 << 16));
  EXPECT_EQ(rest.bytes, "second\n");
  EXPECT_TRUE(rest.finished);
}

// --- The job's view -----------------------------------------------------------

TEST_P(ExecutorSuite, EnvironmentIsAllowListed) {
  ::setenv("CAIRN_SECRET_FOR_TEST", "leaked", 1);
  JobSpec spec = NewSpec({kPython, "-c", R"(
import os
for k in sorted(os.environ):
    print(k + "=" + os.environ[k])
)"});
  spec.env["MY_VAR"] = "hello world";
  ASSERT_OK_AND_ASSIGN(JobId id, executor_->Submit(spec));
  ASSERT_OK_AND_ASSIGN(JobStatus st, executor_->Wait(id, GetParam().patience));
  ::unsetenv("CAIRN_SECRET_FOR_TEST");
  EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
  const std::string log = ReadWholeLog(id);
  EXPECT_THAT(log, HasSubstr("HOME=/tmp\n"));
  EXPECT_THAT(log, HasSubstr("MY_VAR=hello world\n"));
  EXPECT_THAT(log, HasSubstr("LANG=C.UTF-8\n"));
  EXPECT_THAT(log, HasSubstr("CAIRN_OUT=/cairn/out\n"));
  EXPECT_THAT(log, HasSubstr("CAIRN_JOB_ID="));
  EXPECT_THAT(log, HasSubstr("PATH=/usr/local/bin:/usr/bin:/bin\n"));
  EXPECT_THAT(log, Not(HasSubstr("CAIRN_SECRET_FOR_TEST")));
  EXPECT_THAT(log, Not(HasSubstr("leaked")));
  std::vector<std::string> names;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) names.push_back(line.substr(0, line.find('=')));
  // PWD: set by the sandbox to the working directory.
  EXPECT_THAT(log, HasSubstr("PWD=/cairn/code\n"));
  EXPECT_THAT(names, ::testing::ElementsAre("CAIRN_JOB_ID", "CAIRN_OUT", "HOME", "LANG", "MY_VAR", "PATH", "PWD"));
}

TEST_P(ExecutorSuite, InputsReadOnlyOutputsWritable) {
  JobSpec spec = NewSpec({"/bin/sh", "-c", R"(
cat /cairn/in/data/a.txt
cat /cairn/in/cfg
if (echo x > /cairn/in/data/new) 2>/dev/null; then echo WROTE-INPUT; else echo INPUT-READ-ONLY; fi
if (echo x > /cairn/in/data/a.txt) 2>/dev/null; then echo CHANGED-INPUT; else echo INPUT-UNCHANGED; fi
echo result > /cairn/out/model/w.txt && mkdir /cairn/out/model/sub && echo deep > /cairn/out/model/sub/x
)"});
  const std::string data = NewDir("data");
  WriteFile(data + "/a.txt", "payload\n");
  const std::string cfg_dir = NewDir("cfg");
  WriteFile(cfg_dir + "/cfg.txt", "config\n");
  const std::string model = NewDir("model");
  spec.inputs.push_back({"data", data});
  spec.inputs.push_back({"cfg", cfg_dir + "/cfg.txt"});  // a single file
  spec.outputs.push_back({"model", model});
  JobStatus st = RunJob(spec);
  EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
  const std::string log = ReadFileOrEmpty(spec.job_dir + "/" + kJobLogFile);
  EXPECT_THAT(log, HasSubstr("payload\nconfig\nINPUT-READ-ONLY\nINPUT-UNCHANGED\n"));
  EXPECT_FALSE(std::filesystem::exists(data + "/new"));
  EXPECT_EQ(ReadFileOrEmpty(data + "/a.txt"), "payload\n");
  EXPECT_EQ(ReadFileOrEmpty(model + "/w.txt"), "result\n");
  EXPECT_EQ(ReadFileOrEmpty(model + "/sub/x"), "deep\n");
}

TEST_P(ExecutorSuite, CodeDirIsTheWorkingDirectory) {
  JobSpec spec = NewSpec({kPython, "main.py"});
  WriteFile(spec.code_dir + "/main.py", "import os\nprint('cwd=' + os.getcwd())\nprint(open('data.txt').read())\n");
  WriteFile(spec.code_dir + "/data.txt", "from-code");
  JobStatus st = RunJob(spec);
  EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
  const std::string log = ReadFileOrEmpty(spec.job_dir + "/" + kJobLogFile);
  EXPECT_THAT(log, HasSubstr("cwd=/cairn/code\nfrom-code"));
}

TEST_P(ExecutorSuite, FilesOutsideTheMountsAreInvisible) {
  JobSpec spec = NewSpec({kPython, "-c", R"(
import os, sys
for p in sys.argv[1:]:
    print(("VISIBLE " if os.path.exists(p) else "hidden ") + p)
print("checked")
)"});
  for (const std::string& p :
       {root_, spec.job_dir, spec.code_dir, std::string("/root"), std::string("/home"), std::string("/etc/shadow"),
        std::string("/var"), std::string("/sys/fs/cgroup")}) {
    spec.argv.push_back(p);
  }
  JobStatus st = RunJob(spec);
  EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
  const std::string log = ReadFileOrEmpty(spec.job_dir + "/" + kJobLogFile);
  EXPECT_THAT(log, HasSubstr("checked"));
  EXPECT_THAT(log, Not(HasSubstr("VISIBLE")));
}

TEST_P(ExecutorSuite, NoDescriptorsLeakIntoTheJob) {
  // Only stdin, stdout and stderr (and the one listing the directory).
  JobSpec spec = NewSpec({kPython, "-c", "import os; print('fds', sorted(int(f) for f in os.listdir('/proc/self/fd')))"});
  JobStatus st = RunJob(spec);
  EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
  EXPECT_THAT(ReadFileOrEmpty(spec.job_dir + "/" + kJobLogFile), HasSubstr("fds [0, 1, 2, 3]\n"));
}

TEST_P(ExecutorSuite, RunsAsANonRootUser) {
  JobSpec spec = NewSpec({kPython, "-c", "import os; print(f'uid={os.getuid()} euid={os.geteuid()} gid={os.getgid()}')"});
  JobStatus st = RunJob(spec);
  EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
  const std::string log = ReadFileOrEmpty(spec.job_dir + "/" + kJobLogFile);
  EXPECT_THAT(log, HasSubstr("uid="));
  EXPECT_THAT(log, Not(HasSubstr("uid=0 ")));
  EXPECT_THAT(log, Not(HasSubstr("euid=0 ")));
  EXPECT_THAT(log, Not(HasSubstr("gid=0\n")));
}

TEST_P(ExecutorSuite, NoNetworkByDefault) {
  Listener listener;
  ASSERT_GT(listener.port(), 0);
  JobSpec spec = NewSpec({kPython, "-c", kNetworkProbe, std::to_string(listener.port())});
  JobStatus st = RunJob(spec);
  EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
  const std::string log = ReadFileOrEmpty(spec.job_dir + "/" + kJobLogFile);
  EXPECT_THAT(log, HasSubstr("REFUSED"));
  EXPECT_THAT(log, Not(HasSubstr("CONNECTED")));
  EXPECT_THAT(log, HasSubstr("IFACES=lo\n"));
}

TEST_P(ExecutorSuite, NetworkWhenAsked) {
  Listener listener;
  ASSERT_GT(listener.port(), 0);
  JobSpec spec = NewSpec({kPython, "-c", kNetworkProbe, std::to_string(listener.port())});
  spec.network = true;
  JobStatus st = RunJob(spec);
  EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
  EXPECT_THAT(ReadFileOrEmpty(spec.job_dir + "/" + kJobLogFile), HasSubstr("CONNECTED"));
}

// --- Limits -------------------------------------------------------------------

TEST_P(ExecutorSuite, MemoryHogIsStopped) {
  JobSpec spec = NewSpec({kPython, "-c", R"(
chunks = []
while True:
    chunks.append(b"\x01" * (16 << 20))  # touched, so resident
)"});
  spec.resources.memory_bytes = 128ull << 20;
  JobStatus st = RunJob(spec);
  EXPECT_EQ(st.state, JobState::kFailed);
  const bool memory_reason =
      st.reason.find("memory") != std::string::npos || st.reason.find("killed") != std::string::npos;
  EXPECT_TRUE(memory_reason) << st.reason;
}

TEST_P(ExecutorSuite, ForkBombIsStopped) {
  const std::string marker = NewMarker();
  JobSpec spec = NewSpec({kPython, "-c", R"(
import os, sys, time
n = 0
try:
    while n < 5000:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        n += 1
except OSError as e:
    print("fork refused after", n, "children:", e, flush=True)
    sys.exit(1)
print("all forks worked", flush=True)
)",
                          marker});
  spec.resources.max_processes = 32;
  JobStatus st = RunJob(spec);
  EXPECT_EQ(st.state, JobState::kFailed);
  const std::string log = ReadFileOrEmpty(spec.job_dir + "/" + kJobLogFile);
  EXPECT_THAT(log, Not(HasSubstr("all forks worked")));
  // Where the limit is per user (RLIMIT_NPROC), other jobs of the same user
  // may have used it up before this one even started; otherwise the job
  // itself met it.
  if (st.exit_code.has_value()) {
    EXPECT_EQ(st.exit_code, 1) << st.reason;
    EXPECT_THAT(log, HasSubstr("fork refused after"));
  }
  // The sleeping children went with the job.
  EXPECT_TRUE(MarkerGone(marker, absl::Seconds(10)));
}

TEST_P(ExecutorSuite, WallTimeoutKillsTheWholeTree) {
  const std::string marker = NewMarker();
  JobSpec spec = NewSpec(
      {"/bin/sh", "-c", fmt::format("sleep {0} & sleep {0} & (sleep {0} &) ; echo started; sleep {0}", marker)});
  spec.resources.wall_timeout = absl::Seconds(3);
  ASSERT_OK_AND_ASSIGN(JobId id, executor_->Submit(spec));
  ASSERT_OK_AND_ASSIGN(JobStatus st, executor_->Wait(id, GetParam().patience));
  EXPECT_EQ(st.state, JobState::kFailed);
  EXPECT_THAT(st.reason, HasSubstr("wall time"));
  EXPECT_THAT(ReadWholeLog(id), HasSubstr("started"));
  EXPECT_TRUE(MarkerGone(marker, absl::Seconds(10)));
}

// --- Cancel and errors --------------------------------------------------------

TEST_P(ExecutorSuite, CancelStopsARunningJob) {
  const std::string marker = NewMarker();
  JobSpec spec = NewSpec({"/bin/sh", "-c", fmt::format("sleep {0} & echo started; sleep {0}", marker)});
  ASSERT_OK_AND_ASSIGN(JobId id, executor_->Submit(spec));
  std::string log;
  const absl::Time deadline = absl::Now() + GetParam().patience;
  while (log.find("started") == std::string::npos && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    log = ReadWholeLog(id);
  }
  ASSERT_THAT(log, HasSubstr("started"));
  ASSERT_OK(executor_->Cancel(id));
  ASSERT_OK_AND_ASSIGN(JobStatus st, executor_->Wait(id, GetParam().patience));
  EXPECT_EQ(st.state, JobState::kCancelled);
  EXPECT_TRUE(MarkerGone(marker, absl::Seconds(10)));
  ASSERT_OK_AND_ASSIGN(JobStatus from_file, ReadJobResult(spec.job_dir));
  EXPECT_EQ(from_file.state, JobState::kCancelled);
}

TEST_P(ExecutorSuite, CancelOfAFinishedJobChangesNothing) {
  ASSERT_OK_AND_ASSIGN(JobId id, executor_->Submit(NewSpec({"/bin/sh", "-c", "exit 0"})));
  ASSERT_OK_AND_ASSIGN(JobStatus st, executor_->Wait(id, GetParam().patience));
  ASSERT_EQ(st.state, JobState::kSucceeded) << st.reason;
  EXPECT_OK(executor_->Cancel(id));
  ASSERT_OK_AND_ASSIGN(JobStatus after, executor_->Status(id));
  EXPECT_EQ(after.state, JobState::kSucceeded);
}

TEST_P(ExecutorSuite, UnknownIdIsNotFound) {
  EXPECT_THAT(executor_->Status("no-such-job"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(executor_->Wait("no-such-job", absl::Milliseconds(10)), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(executor_->Cancel("no-such-job"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(executor_->ReadLog("no-such-job", 0, 100), StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(ExecutorSuite, InvalidSpecsAreRejected) {
  const std::string dir = NewDir("in");
  JobSpec empty_argv = NewSpec({});
  EXPECT_THAT(executor_->Submit(empty_argv), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("argv")));

  JobSpec bad_name = NewSpec({"true"});
  bad_name.inputs.push_back({"a/b", dir});
  EXPECT_THAT(executor_->Submit(bad_name), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inputs[0]")));

  JobSpec relative = NewSpec({"true"});
  relative.inputs.push_back({"data", "relative/path"});
  EXPECT_THAT(executor_->Submit(relative), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("absolute")));

  JobSpec duplicate = NewSpec({"true"});
  duplicate.outputs.push_back({"model", NewDir("o1")});
  duplicate.outputs.push_back({"model", NewDir("o2")});
  EXPECT_THAT(executor_->Submit(duplicate), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));

  JobSpec missing_input = NewSpec({"true"});
  missing_input.inputs.push_back({"data", root_ + "/does-not-exist"});
  EXPECT_THAT(executor_->Submit(missing_input), StatusIs(absl::StatusCode::kInvalidArgument));

  JobSpec reserved_env = NewSpec({"true"});
  reserved_env.env["CAIRN_OUT"] = "/elsewhere";
  EXPECT_THAT(executor_->Submit(reserved_env), StatusIs(absl::StatusCode::kInvalidArgument));
}

// --- Usage and concurrency ----------------------------------------------------

TEST_P(ExecutorSuite, ResourceUsageIsReported) {
  JobSpec spec = NewSpec({kPython, "-c", R"(
import time
start = time.process_time()
x = 0
while time.process_time() - start < 0.3:
    x += 1
print("spun", x > 0)
)"});
  JobStatus st = RunJob(spec);
  EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
  EXPECT_GT(st.cpu_seconds, 0.0);
  EXPECT_GT(st.peak_memory_bytes, 0u);
  EXPECT_GT(st.started_at_ms, 0);
  EXPECT_GE(st.ended_at_ms, st.started_at_ms);
}

TEST_P(ExecutorSuite, EightConcurrentJobsSucceed) {
  std::vector<JobId> ids;
  for (int i = 0; i < 8; ++i) {
    ASSERT_OK_AND_ASSIGN(JobId id, executor_->Submit(NewSpec({"/bin/sh", "-c", fmt::format("echo job-{}", i)})));
    ids.push_back(id);
  }
  for (int i = 0; i < 8; ++i) {
    ASSERT_OK_AND_ASSIGN(JobStatus st, executor_->Wait(ids[i], GetParam().patience));
    EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
    EXPECT_EQ(ReadWholeLog(ids[i]), fmt::format("job-{}\n", i));
  }
}

}  // namespace cairn::exec
