// The sandbox on its own: the bwrap command line, cgroup discovery, spec
// validation, and RunInSandbox / RunJobDirectory for what the shared
// executor suite does not cover (output and CPU limits, rlimit fallbacks,
// cleanup of cgroups).
#include "exec/sandbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/testing.h"
#include "exec/cgroup.h"
#include "exec/job_files.h"

namespace cairn::exec {
namespace {

using ::cairn::testing::ReadFileOrEmpty;
using ::cairn::testing::ScopedTempDir;
using ::cairn::testing::StatusIs;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

std::string MakeDir(const std::string& path) {
  std::filesystem::create_directories(path);
  ::chmod(path.c_str(), 0755);
  return path;
}

// Whether `argv` holds `seq` as consecutive elements.
bool HasSequence(const std::vector<std::string>& argv, const std::vector<std::string>& seq) {
  return std::search(argv.begin(), argv.end(), seq.begin(), seq.end()) != argv.end();
}

JobSpec SpecIn(const std::string& dir, std::vector<std::string> argv) {
  JobSpec spec;
  spec.argv = std::move(argv);
  spec.job_dir = MakeDir(dir + "/job");
  spec.code_dir = MakeDir(dir + "/code");
  spec.resources.wall_timeout = absl::Seconds(60);
  return spec;
}

// --- ValidateJobSpec ------------------------------------------------------------

TEST(ValidateJobSpec, AcceptsAMinimalSpec) {
  JobSpec spec;
  spec.argv = {"true"};
  spec.job_dir = "/j";
  EXPECT_OK(ValidateJobSpec(spec));
}

TEST(ValidateJobSpec, RejectsEachBadField) {
  auto check = [](auto mutate, const std::string& field) {
    JobSpec spec;
    spec.argv = {"true"};
    spec.job_dir = "/j";
    mutate(spec);
    EXPECT_THAT(ValidateJobSpec(spec), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(field))) << field;
  };
  check([](JobSpec& s) { s.argv.clear(); }, "argv");
  check([](JobSpec& s) { s.argv = {""}; }, "argv[0]");
  check([](JobSpec& s) { s.argv.push_back(std::string("a\0b", 3)); }, "argv[1]");
  check([](JobSpec& s) { s.job_dir = "relative"; }, "job_dir");
  check([](JobSpec& s) { s.job_dir = ""; }, "job_dir");
  check([](JobSpec& s) { s.code_dir = "code"; }, "code_dir");
  check([](JobSpec& s) { s.root_dir = "env"; }, "root_dir");
  check([](JobSpec& s) { s.inputs = {{"", "/a"}}; }, "inputs[0].name");
  check([](JobSpec& s) { s.inputs = {{"..", "/a"}}; }, "inputs[0].name");
  check([](JobSpec& s) { s.inputs = {{"a b", "/a"}}; }, "inputs[0].name");
  check([](JobSpec& s) { s.inputs = {{std::string(65, 'x'), "/a"}}; }, "inputs[0].name");
  check([](JobSpec& s) { s.inputs = {{"a", "/a"}, {"a", "/b"}}; }, "inputs[1].name");
  check([](JobSpec& s) { s.outputs = {{"m", "out"}}; }, "outputs[0].host_path");
  check([](JobSpec& s) { s.outputs = {{"m", "/o\n"}}; }, "outputs[0].host_path");
  check([](JobSpec& s) { s.env["1X"] = "v"; }, "env");
  check([](JobSpec& s) { s.env["CAIRN_JOB_ID"] = "v"; }, "env");
  check([](JobSpec& s) { s.name = "two\nlines"; }, "name");
  check([](JobSpec& s) { s.resources.cpus = 0; }, "cpus");
  check([](JobSpec& s) { s.resources.gpus = -1; }, "gpus");
  check([](JobSpec& s) { s.resources.wall_timeout = absl::ZeroDuration(); }, "wall_timeout");
  check([](JobSpec& s) { s.resources.cpu_time = -absl::Seconds(1); }, "cpu_time");
  check([](JobSpec& s) { s.resources.max_processes = 0; }, "max_processes");
  check([](JobSpec& s) { s.resources.max_output_bytes = 0; }, "max_output_bytes");
}

TEST(ValidateJobSpec, SameNameAsInputAndOutputIsFine) {
  JobSpec spec;
  spec.argv = {"true"};
  spec.job_dir = "/j";
  spec.inputs = {{"model", "/a"}};
  spec.outputs = {{"model", "/b"}};
  EXPECT_OK(ValidateJobSpec(spec));
}

TEST(CheckJobHostPaths, ChecksWhatTheHostHas) {
  ScopedTempDir tmp;
  JobSpec spec = SpecIn(tmp.path(), {"true"});
  EXPECT_OK(CheckJobHostPaths(spec));
  spec.inputs = {{"x", tmp.path() + "/missing"}};
  EXPECT_THAT(CheckJobHostPaths(spec), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inputs[0]")));
  spec.inputs.clear();
  const std::string out = MakeDir(tmp.path() + "/out");
  std::ofstream(out + "/leftover") << "x";
  spec.outputs = {{"o", out}};
  EXPECT_THAT(CheckJobHostPaths(spec), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not empty")));
  spec.outputs.clear();
  spec.root_dir = tmp.path();
  EXPECT_THAT(CheckJobHostPaths(spec), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("usr")));
}

TEST(FormatBytes, UsesBinaryUnits) {
  EXPECT_EQ(FormatBytes(100), "100 bytes");
  EXPECT_EQ(FormatBytes(1024), "1 KiB");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(64ull << 20), "64 MiB");
  EXPECT_EQ(FormatBytes(4ull << 30), "4 GiB");
}

// --- BuildBwrapCommand ----------------------------------------------------------

TEST(BuildBwrapCommand, LaysOutTheJob) {
  JobSpec spec;
  spec.argv = {"python3", "train.py"};
  spec.code_dir = "/srv/code";
  spec.inputs = {{"train", "/srv/data"}};
  spec.outputs = {{"model", "/srv/out"}};
  spec.env = {{"SEED", "7"}};
  spec.job_dir = "/srv/job";
  SandboxOptions options;
  ASSERT_OK_AND_ASSIGN(BwrapCommand cmd, BuildBwrapCommand(spec, "job-7", options, /*staged=*/false));
  const std::vector<std::string>& a = cmd.argv;
  EXPECT_EQ(a.front(), "/usr/bin/bwrap");
  EXPECT_TRUE(cmd.staged_sources.empty());
  EXPECT_THAT(a, Contains("--unshare-all"));
  EXPECT_THAT(a, Not(Contains("--share-net")));
  EXPECT_THAT(a, Contains("--die-with-parent"));
  EXPECT_THAT(a, Contains("--new-session"));
  EXPECT_TRUE(HasSequence(a, {"--json-status-fd", "3"}));
  EXPECT_TRUE(HasSequence(a, {"--ro-bind", "/usr", "/usr"}));
  EXPECT_TRUE(HasSequence(a, {"--symlink", "usr/bin", "/bin"}));  // merged /usr on this host
  EXPECT_TRUE(HasSequence(a, {"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"}));
  // Small files of /etc are copied in from descriptors 4, 5, ...; directories bound.
  auto passwd = std::find(cmd.copied_files.begin(), cmd.copied_files.end(), "/etc/passwd");
  ASSERT_NE(passwd, cmd.copied_files.end());
  EXPECT_TRUE(HasSequence(a, {"--file", std::to_string(4 + (passwd - cmd.copied_files.begin())), "/etc/passwd"}));
  if (std::filesystem::is_directory("/etc/ssl")) {
    EXPECT_TRUE(HasSequence(a, {"--ro-bind", "/etc/ssl", "/etc/ssl"}));
  }
  EXPECT_TRUE(HasSequence(a, {"--ro-bind", "/srv/code", "/cairn/code"}));
  EXPECT_TRUE(HasSequence(a, {"--ro-bind", "/srv/data", "/cairn/in/train"}));
  EXPECT_TRUE(HasSequence(a, {"--bind", "/srv/out", "/cairn/out/model"}));
  EXPECT_TRUE(HasSequence(a, {"--chdir", "/cairn/code"}));
  EXPECT_THAT(a, Contains("--clearenv"));
  EXPECT_TRUE(HasSequence(a, {"--setenv", "HOME", "/tmp"}));
  EXPECT_TRUE(HasSequence(a, {"--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin"}));
  EXPECT_TRUE(HasSequence(a, {"--setenv", "LANG", "C.UTF-8"}));
  EXPECT_TRUE(HasSequence(a, {"--setenv", "CAIRN_JOB_ID", "job-7"}));
  EXPECT_TRUE(HasSequence(a, {"--setenv", "CAIRN_OUT", "/cairn/out"}));
  EXPECT_TRUE(HasSequence(a, {"--setenv", "SEED", "7"}));
  // Nothing of the host's secrets or network configuration.
  EXPECT_THAT(a, Not(Contains("/etc/shadow")));
  EXPECT_THAT(a, Not(Contains("/etc/resolv.conf")));
  EXPECT_THAT(a, Not(Contains("/srv/job")));
  // The job's own argv comes last, after "--".
  ASSERT_GE(a.size(), 3u);
  EXPECT_EQ(a[a.size() - 3], "--");
  EXPECT_EQ(a[a.size() - 2], "python3");
  EXPECT_EQ(a[a.size() - 1], "train.py");
}

TEST(BuildBwrapCommand, NetworkSharesTheHostsNetwork) {
  JobSpec spec;
  spec.argv = {"true"};
  spec.job_dir = "/j";
  spec.network = true;
  ASSERT_OK_AND_ASSIGN(BwrapCommand cmd, BuildBwrapCommand(spec, "j", SandboxOptions(), false));
  EXPECT_TRUE(HasSequence(cmd.argv, {"--unshare-all", "--share-net"}));
  if (std::filesystem::is_regular_file("/etc/resolv.conf")) {
    EXPECT_THAT(cmd.copied_files, Contains("/etc/resolv.conf"));
  }
}

TEST(BuildBwrapCommand, NoCodeDirStillHasAWorkingDirectory) {
  JobSpec spec;
  spec.argv = {"true"};
  spec.job_dir = "/j";
  ASSERT_OK_AND_ASSIGN(BwrapCommand cmd, BuildBwrapCommand(spec, "j", SandboxOptions(), false));
  EXPECT_TRUE(HasSequence(cmd.argv, {"--dir", "/cairn/code"}));
  EXPECT_TRUE(HasSequence(cmd.argv, {"--chdir", "/cairn/code"}));
}

TEST(BuildBwrapCommand, OnlyUnreachablePathsAreStaged) {
  ScopedTempDir tmp;
  const std::string hidden = tmp.path() + "/hidden";  // under a 0700 directory the job's user cannot search
  ::chmod(tmp.path().c_str(), 0700);
  MakeDir(hidden + "/code");
  MakeDir(hidden + "/data");
  const std::string open_dir = MakeDir(tmp.path() + "/open");  // reachable once the parent is 0711
  JobSpec spec;
  spec.argv = {"true"};
  spec.job_dir = "/j";
  spec.code_dir = hidden + "/code";
  spec.inputs = {{"train", hidden + "/data"}};
  SandboxOptions options;
  options.stage_dir = "/run";
  ASSERT_OK_AND_ASSIGN(BwrapCommand cmd, BuildBwrapCommand(spec, "j", options, /*staged=*/true));
  auto code = std::find(cmd.staged_sources.begin(), cmd.staged_sources.end(), hidden + "/code");
  ASSERT_NE(code, cmd.staged_sources.end());
  const std::string code_stage = fmt::format("/run/{}", code - cmd.staged_sources.begin());
  EXPECT_TRUE(HasSequence(cmd.argv, {"--ro-bind", code_stage, "/cairn/code"}));
  EXPECT_THAT(cmd.staged_sources, Contains(hidden + "/data"));
  EXPECT_THAT(cmd.argv, Not(Contains(hidden + "/code")));
  EXPECT_THAT(cmd.argv, Not(Contains(hidden + "/data")));
  // World-searchable system paths are bound as they are.
  EXPECT_THAT(cmd.staged_sources, Not(Contains("/usr")));
  EXPECT_TRUE(HasSequence(cmd.argv, {"--ro-bind", "/usr", "/usr"}));

  ::chmod(tmp.path().c_str(), 0711);
  spec.code_dir = open_dir;
  spec.inputs.clear();
  ASSERT_OK_AND_ASSIGN(cmd, BuildBwrapCommand(spec, "j", options, /*staged=*/true));
  EXPECT_TRUE(cmd.staged_sources.empty());
  EXPECT_TRUE(HasSequence(cmd.argv, {"--ro-bind", open_dir, "/cairn/code"}));
}

TEST(BuildBwrapCommand, RootDirReplacesTheHostsUsrAndEtc) {
  ScopedTempDir tmp;
  const std::string root = tmp.path();
  MakeDir(root + "/usr/bin");
  MakeDir(root + "/etc");
  std::ofstream(root + "/etc/passwd") << "nobody:x:65534:65534::/tmp:/bin/sh\n";
  std::filesystem::create_symlink("usr/bin", root + "/bin");
  std::filesystem::create_symlink("/usr/share/zoneinfo/UTC", root + "/etc/localtime");
  JobSpec spec;
  spec.argv = {"true"};
  spec.job_dir = "/j";
  spec.root_dir = root;
  ASSERT_OK_AND_ASSIGN(BwrapCommand cmd, BuildBwrapCommand(spec, "j", SandboxOptions(), false));
  EXPECT_TRUE(HasSequence(cmd.argv, {"--ro-bind", root + "/usr", "/usr"}));
  EXPECT_TRUE(HasSequence(cmd.argv, {"--symlink", "usr/bin", "/bin"}));
  EXPECT_EQ(cmd.copied_files, std::vector<std::string>{root + "/etc/passwd"});
  EXPECT_TRUE(HasSequence(cmd.argv, {"--file", "4", "/etc/passwd"}));
  EXPECT_TRUE(HasSequence(cmd.argv, {"--symlink", "/usr/share/zoneinfo/UTC", "/etc/localtime"}));
  // Only what the environment has: no host /lib64, no host /etc/group.
  EXPECT_THAT(cmd.argv, Not(Contains("/lib64")));
  EXPECT_THAT(cmd.argv, Not(Contains("/etc/group")));
}

TEST(BuildBwrapCommand, MoreGpusThanTheMachineHasIsAFailedPrecondition) {
  JobSpec spec;
  spec.argv = {"true"};
  spec.job_dir = "/j";
  spec.resources.gpus = 1000;
  EXPECT_THAT(BuildBwrapCommand(spec, "j", SandboxOptions(), false),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("GPU")));
}

// --- CgroupLayout ---------------------------------------------------------------

constexpr char kHybridMountInfo[] =
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
constexpr char kHybridSelf[] =
    "8:pids:/\n4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n";

TEST(CgroupLayout, FindsOwnCgroupInEachV1Hierarchy) {
  CgroupLayout layout = CgroupLayout::Parse(kHybridMountInfo, kHybridSelf, "");
  ASSERT_TRUE(layout.place(CgroupController::kMemory).has_value());
  EXPECT_EQ(layout.place(CgroupController::kMemory)->parent_dir, "/sys/fs/cgroup/memory/process_api/abc");
  EXPECT_FALSE(layout.place(CgroupController::kMemory)->v2);
  EXPECT_EQ(layout.place(CgroupController::kPids)->parent_dir, "/sys/fs/cgroup/pids");
  EXPECT_EQ(layout.place(CgroupController::kCpu)->parent_dir, "/sys/fs/cgroup/cpu");
  EXPECT_EQ(layout.place(CgroupController::kCpuAcct)->parent_dir, "/sys/fs/cgroup/cpuacct");
}

TEST(CgroupLayout, CoMountedControllersShareADirectory) {
  const char* mountinfo =
      "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
      "31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
  const char* self = "3:cpu,cpuacct:/user.slice\n2:memory:/user.slice\n";
  CgroupLayout layout = CgroupLayout::Parse(mountinfo, self, "");
  EXPECT_EQ(layout.place(CgroupController::kCpu)->parent_dir, "/sys/fs/cgroup/cpu,cpuacct/user.slice");
  EXPECT_EQ(layout.place(CgroupController::kCpuAcct)->parent_dir, "/sys/fs/cgroup/cpu,cpuacct/user.slice");
  EXPECT_FALSE(layout.place(CgroupController::kPids).has_value());  // no pids hierarchy, no v2
}

TEST(CgroupLayout, PureV2UsesTheUnifiedHierarchy) {
  const char* mountinfo = "25 20 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
  const char* self = "0::/system.slice/cairn.service\n";
  CgroupLayout layout = CgroupLayout::Parse(mountinfo, self, "");
  for (CgroupController c :
       {CgroupController::kMemory, CgroupController::kPids, CgroupController::kCpu, CgroupController::kCpuAcct}) {
    ASSERT_TRUE(layout.place(c).has_value());
    EXPECT_TRUE(layout.place(c)->v2);
    EXPECT_EQ(layout.place(c)->parent_dir, "/sys/fs/cgroup/system.slice/cairn.service");
  }
}

TEST(CgroupLayout, ContainerMountRootIsStripped) {
  // A container sees only its own part of the hierarchy, mounted at the usual place.
  const char* mountinfo = "40 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n";
  const char* self = "4:memory:/docker/abc/job\n";
  CgroupLayout layout = CgroupLayout::Parse(mountinfo, self, "");
  EXPECT_EQ(layout.place(CgroupController::kMemory)->parent_dir, "/sys/fs/cgroup/memory/job");
  // A cgroup outside what the mount shows is unusable.
  layout = CgroupLayout::Parse(mountinfo, "4:memory:/elsewhere\n", "");
  EXPECT_FALSE(layout.place(CgroupController::kMemory).has_value());
}

TEST(CgroupLayout, MountRootFiltersAndNoneDisables) {
  EXPECT_TRUE(CgroupLayout::Parse(kHybridMountInfo, kHybridSelf, "none").empty());
  EXPECT_TRUE(CgroupLayout::Parse(kHybridMountInfo, kHybridSelf, "/elsewhere").empty());
  EXPECT_FALSE(CgroupLayout::Parse(kHybridMountInfo, kHybridSelf, "/sys/fs/cgroup").empty());
  EXPECT_TRUE(CgroupLayout::Detect("none").empty());
}

// --- RunInSandbox ---------------------------------------------------------------

TEST(RunInSandbox, OutputPastTheLimitFailsTheJobAndCapsTheLog) {
  ScopedTempDir tmp;
  JobSpec spec = SpecIn(tmp.path(), {"/bin/sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo done"});
  spec.resources.max_output_bytes = 1 << 20;
  ASSERT_OK_AND_ASSIGN(JobStatus st, RunInSandbox(spec, "out-limit", SandboxOptions()));
  EXPECT_EQ(st.state, JobState::kFailed);
  EXPECT_EQ(st.reason, "output exceeded 1 MiB");
  EXPECT_EQ(std::filesystem::file_size(spec.job_dir + "/" + kJobLogFile), 1u << 20);
}

TEST(RunInSandbox, OutputFilesCountTowardsTheLimit) {
  ScopedTempDir tmp;
  JobSpec spec = SpecIn(tmp.path(), {"/bin/sh", "-c", "head -c 3000000 /dev/zero > /cairn/out/o/big"});
  spec.outputs = {{"o", MakeDir(tmp.path() + "/o")}};
  spec.resources.max_output_bytes = 1 << 20;
  ASSERT_OK_AND_ASSIGN(JobStatus st, RunInSandbox(spec, "file-limit", SandboxOptions()));
  EXPECT_EQ(st.state, JobState::kFailed);
  EXPECT_THAT(st.reason, HasSubstr("1 MiB"));
  // RLIMIT_FSIZE stopped the file at the limit.
  EXPECT_LE(std::filesystem::file_size(tmp.path() + "/o/big"), 1u << 20);
}

TEST(RunInSandbox, CpuTimeLimitStopsABusyLoop) {
  ScopedTempDir tmp;
  JobSpec spec = SpecIn(tmp.path(), {"/usr/bin/python3", "-c", "while True: pass"});
  spec.resources.cpu_time = absl::Seconds(1);
  ASSERT_OK_AND_ASSIGN(JobStatus st, RunInSandbox(spec, "cpu-limit", SandboxOptions()));
  EXPECT_EQ(st.state, JobState::kFailed);
  EXPECT_THAT(st.reason, HasSubstr("CPU time limit of 1s"));
  // RLIMIT_CPU counts ticks, the cgroup the exact run time: on a loaded
  // (virtual) machine they differ by a good part of a second.
  EXPECT_GT(st.cpu_seconds, 0.3);
}

TEST(RunInSandbox, NoWallTimeLimitAtAll) {
  ScopedTempDir tmp;
  JobSpec spec = SpecIn(tmp.path(), {"/bin/sh", "-c", "echo unlimited"});
  spec.resources.wall_timeout = absl::InfiniteDuration();
  ASSERT_OK_AND_ASSIGN(JobStatus st, RunInSandbox(spec, "inf", SandboxOptions()));
  EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
  EXPECT_THAT(ReadFileOrEmpty(spec.job_dir + "/" + kJobLogFile), HasSubstr("unlimited\n"));
}

TEST(RunInSandbox, ACancelFlagSetBeforehandCancels) {
  ScopedTempDir tmp;
  JobSpec spec = SpecIn(tmp.path(), {"true"});
  std::atomic<bool> cancel{true};
  ASSERT_OK_AND_ASSIGN(JobStatus st, RunInSandbox(spec, "c", SandboxOptions(), &cancel));
  EXPECT_EQ(st.state, JobState::kCancelled);
}

TEST(RunInSandbox, CommandNotFoundFails) {
  ScopedTempDir tmp;
  JobSpec spec = SpecIn(tmp.path(), {"no-such-command-anywhere"});
  ASSERT_OK_AND_ASSIGN(JobStatus st, RunInSandbox(spec, "nf", SandboxOptions()));
  EXPECT_EQ(st.state, JobState::kFailed);
  EXPECT_THAT(ReadFileOrEmpty(spec.job_dir + "/" + kJobLogFile), HasSubstr("no-such-command-anywhere"));
}

TEST(RunInSandbox, KilledBySignalIsReportedAsSuch) {
  ScopedTempDir tmp;
  JobSpec spec = SpecIn(tmp.path(), {"/bin/sh", "-c", "kill -TERM $$"});
  ASSERT_OK_AND_ASSIGN(JobStatus st, RunInSandbox(spec, "sig", SandboxOptions()));
  EXPECT_EQ(st.state, JobState::kFailed);
  EXPECT_EQ(st.term_signal, SIGTERM);
  EXPECT_EQ(st.exit_code, std::nullopt);
  EXPECT_THAT(st.reason, HasSubstr("SIGTERM"));
}

TEST(RunInSandbox, ABwrapReapedElsewhereStillReportsTheExitCode) {
  // With SIGCHLD ignored the kernel reaps children itself; bwrap's status
  // pipe still tells how the command ended.
  ScopedTempDir tmp;
  JobSpec spec = SpecIn(tmp.path(), {"/bin/sh", "-c", "exit 3"});
  struct sigaction ignore = {}, old = {};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGCHLD, &ignore, &old), 0);
  absl::StatusOr<JobStatus> st = RunInSandbox(spec, "reaped", SandboxOptions());
  ::sigaction(SIGCHLD, &old, nullptr);
  ASSERT_OK(st.status());
  EXPECT_EQ(st->state, JobState::kFailed);
  EXPECT_EQ(st->exit_code, 3);
}

TEST(RunInSandbox, WithoutCgroupsTheLogSaysWhichRlimitsStandIn) {
  ScopedTempDir tmp;
  JobSpec spec = SpecIn(tmp.path(), {"/bin/sh", "-c", "echo hi"});
  SandboxOptions options;
  options.cgroup_root = "none";
  ASSERT_OK_AND_ASSIGN(JobStatus st, RunInSandbox(spec, "rl", options));
  EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
  const std::string log = ReadFileOrEmpty(spec.job_dir + "/" + kJobLogFile);
  EXPECT_THAT(log, HasSubstr("cairn-sandbox: no writable memory cgroup"));
  EXPECT_THAT(log, HasSubstr("RLIMIT_AS"));
  EXPECT_THAT(log, HasSubstr("RLIMIT_NPROC"));
  EXPECT_THAT(log, HasSubstr("hi\n"));
  EXPECT_GT(st.cpu_seconds + static_cast<double>(st.peak_memory_bytes), 0.0);  // rusage stands in
}

TEST(RunInSandbox, ACommandThatCouldNotBeForkedIsASetupFailureNotAnExitCode) {
  // Two processes per user: bwrap and its namespace init. The init's fork
  // of the command fails; where the user runs other processes, an earlier
  // fork or bwrap's exec does. Either way the command never ran.
  ScopedTempDir tmp;
  JobSpec spec = SpecIn(tmp.path(), {"/bin/sh", "-c", "echo ran"});
  spec.resources.max_processes = 2;
  SandboxOptions options;
  options.cgroup_root = "none";
  absl::StatusOr<JobStatus> st = RunInSandbox(spec, "nproc", options);
  if (st.ok()) {
    EXPECT_EQ(st->state, JobState::kFailed);
    EXPECT_EQ(st->exit_code, std::nullopt);
    EXPECT_THAT(st->reason, HasSubstr("sandbox setup failed"));
    EXPECT_THAT(st->reason, HasSubstr("already runs 2 processes"));
  } else {  // not even bwrap could start
    EXPECT_EQ(st.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(st.status().message(), HasSubstr("already runs 2 processes"));
  }
  EXPECT_THAT(ReadFileOrEmpty(spec.job_dir + "/" + kJobLogFile), Not(HasSubstr("ran\n")));
}

TEST(RunInSandbox, JobCgroupsAreRemovedAfterwards) {
  CgroupLayout layout = CgroupLayout::Detect("");
  if (layout.empty()) GTEST_SKIP() << "no writable cgroups here";
  ScopedTempDir tmp;
  JobSpec spec = SpecIn(tmp.path(), {"/bin/sh", "-c", "sleep 0.1 & echo hi"});
  ASSERT_OK_AND_ASSIGN(JobStatus st, RunInSandbox(spec, "cleanup-check", SandboxOptions()));
  EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
  // The job ran under cgroups (the log has no rlimit note) and left none behind.
  EXPECT_THAT(ReadFileOrEmpty(spec.job_dir + "/" + kJobLogFile), Not(HasSubstr("cairn-sandbox:")));
  const std::string name = JobCgroupName("cleanup-check");
  for (CgroupController c :
       {CgroupController::kMemory, CgroupController::kPids, CgroupController::kCpu, CgroupController::kCpuAcct}) {
    if (!layout.place(c).has_value()) continue;
    EXPECT_FALSE(std::filesystem::exists(layout.place(c)->parent_dir + "/" + name));
  }
}

TEST(RemoveStaleJobCgroups, RemovesOnlyThoseOfDeadProcesses) {
  CgroupLayout layout = CgroupLayout::Detect("");
  if (layout.empty()) GTEST_SKIP() << "no writable cgroups here";
  // A pid that existed and no longer does.
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ASSERT_GT(dead, 0);
  ASSERT_EQ(::waitpid(dead, nullptr, 0), dead);
  const std::string parent = layout.place(CgroupController::kPids).has_value()
                                 ? layout.place(CgroupController::kPids)->parent_dir
                                 : layout.place(CgroupController::kMemory)->parent_dir;
  const std::string stale = fmt::format("{}/cairn-{}-stale-test", parent, dead);
  const std::string live = parent + "/" + JobCgroupName("live-test");
  ASSERT_EQ(::mkdir(stale.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(live.c_str(), 0755), 0);
  // Young: it might be another pid namespace's job being set up.
  RemoveStaleJobCgroups(layout);
  EXPECT_TRUE(std::filesystem::exists(stale));
  // cgroupfs keeps the times it is given; an hour old, it goes.
  const struct timespec old_times[2] = {{::time(nullptr) - 3600, 0}, {::time(nullptr) - 3600, 0}};
  if (::utimensat(AT_FDCWD, stale.c_str(), old_times, 0) != 0) {
    ::rmdir(stale.c_str());
    ::rmdir(live.c_str());
    GTEST_SKIP() << "cannot age a cgroup directory here";
  }
  EXPECT_GE(RemoveStaleJobCgroups(layout), 1);
  EXPECT_FALSE(std::filesystem::exists(stale));
  EXPECT_TRUE(std::filesystem::exists(live));  // this process is alive
  ::rmdir(live.c_str());
}

TEST(RunInSandbox, OutputDirIsGivenToTheJobsUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "only root changes users";
  ScopedTempDir tmp;
  JobSpec spec = SpecIn(tmp.path(), {"/bin/sh", "-c", "echo x > /cairn/out/o/f"});
  const std::string out = MakeDir(tmp.path() + "/o");
  spec.outputs = {{"o", out}};
  ASSERT_OK_AND_ASSIGN(JobStatus st, RunInSandbox(spec, "own", SandboxOptions()));
  EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
  struct stat s;
  ASSERT_EQ(::stat((out + "/f").c_str(), &s), 0);
  EXPECT_EQ(s.st_uid, 65534u);
}

TEST(RunInSandbox, RootUidIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "only root changes users";
  ScopedTempDir tmp;
  SandboxOptions options;
  options.uid = 0;
  EXPECT_THAT(RunInSandbox(SpecIn(tmp.path(), {"true"}), "r", options),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(RunInSandbox, MissingBwrapIsAFailedPrecondition) {
  ScopedTempDir tmp;
  SandboxOptions options;
  options.bwrap = "/nonexistent/bwrap";
  EXPECT_THAT(RunInSandbox(SpecIn(tmp.path(), {"true"}), "b", options),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("/nonexistent/bwrap")));
}

// --- RunJobDirectory ------------------------------------------------------------

TEST(RunJobDirectory, RunsTheSpecAndWritesTheResult) {
  ScopedTempDir tmp;
  JobSpec spec = SpecIn(tmp.path(), {"/bin/sh", "-c", "echo from-dir; echo \"id=$CAIRN_JOB_ID\"; exit 4"});
  ASSERT_OK(WriteJobSpec(spec, spec.job_dir));
  ASSERT_OK_AND_ASSIGN(JobStatus st, RunJobDirectory(spec.job_dir, SandboxOptions()));
  EXPECT_EQ(st.state, JobState::kFailed);
  EXPECT_EQ(st.exit_code, 4);
  ASSERT_OK_AND_ASSIGN(JobStatus written, ReadJobResult(spec.job_dir));
  EXPECT_EQ(written.state, JobState::kFailed);
  EXPECT_EQ(written.exit_code, 4);
  const std::string log = ReadFileOrEmpty(spec.job_dir + "/" + kJobLogFile);
  EXPECT_THAT(log, HasSubstr("from-dir\n"));
  EXPECT_THAT(log, HasSubstr("id=job\n"));  // the job dir's base name
}

TEST(RunJobDirectory, ABadSpecStillLeavesAResult) {
  ScopedTempDir tmp;
  const std::string job_dir = MakeDir(tmp.path() + "/job");
  std::ofstream(job_dir + "/" + kJobSpecFile) << "{ not json";
  ASSERT_OK_AND_ASSIGN(JobStatus st, RunJobDirectory(job_dir, SandboxOptions(), "j1"));
  EXPECT_EQ(st.state, JobState::kFailed);
  EXPECT_THAT(st.reason, HasSubstr(kJobSpecFile));
  ASSERT_OK_AND_ASSIGN(JobStatus written, ReadJobResult(job_dir));
  EXPECT_EQ(written.state, JobState::kFailed);
}

}  // namespace
}  // namespace cairn::exec
