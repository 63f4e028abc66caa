// The local executor: the shared executor suite, run twice (with cgroups
// where this machine lets us write them, and with rlimits only), plus what
// only the local executor does.
#include "exec/sandbox_executor.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/testing.h"
#include "exec/executor_suite.h"
#include "exec/job_files.h"

namespace cairn::exec {
namespace {

using ::cairn::testing::ReadFileOrEmpty;
using ::cairn::testing::ScopedTempDir;
using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;

// A fresh directory under $TMPDIR, left mode 0700 as mkdtemp makes it: the
// sandbox must reach the job's paths without anyone opening up their parents.
std::string MakeTempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/cairn-exec-test-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return "";
  return tmpl;
}

ExecutorFactory LocalFactory(const std::string& name, const std::string& cgroup_root) {
  ExecutorFactory f;
  f.name = name;
  f.make_executor = [cgroup_root]() -> absl::StatusOr<std::unique_ptr<Executor>> {
    SandboxOptions options;
    options.cgroup_root = cgroup_root;
    ASSIGN_OR_RETURN(std::unique_ptr<SandboxExecutor> executor, SandboxExecutor::Create(options, 4));
    return std::unique_ptr<Executor>(std::move(executor));
  };
  f.make_dir = MakeTempDir;
  return f;
}

INSTANTIATE_TEST_SUITE_P(Local, ExecutorSuite,
                         ::testing::Values(LocalFactory("cgroups", ""), LocalFactory("rlimits", "none")),
                         ExecutorFactoryName);

JobSpec SpecIn(const std::string& dir, std::vector<std::string> argv) {
  JobSpec spec;
  spec.argv = std::move(argv);
  spec.job_dir = dir + "/job";
  std::filesystem::create_directories(spec.job_dir);
  spec.resources.wall_timeout = absl::Seconds(60);
  return spec;
}

TEST(SandboxExecutor, NameIsLocal) {
  ASSERT_OK_AND_ASSIGN(auto executor, SandboxExecutor::Create(SandboxOptions(), 1));
  EXPECT_EQ(executor->name(), "local");
}

TEST(SandboxExecutor, MissingBwrapIsAFailedPrecondition) {
  SandboxOptions options;
  options.bwrap = "/nonexistent/bwrap";
  EXPECT_THAT(SandboxExecutor::Create(options),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("bubblewrap not found")));
}

TEST(SandboxExecutor, ABrokenBwrapIsAFailedPrecondition) {
  // Something executable that is not bwrap: the probe job cannot start.
  SandboxOptions options;
  options.bwrap = "/bin/false";
  EXPECT_THAT(SandboxExecutor::Create(options),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("does not work here")));
}

TEST(SandboxExecutor, RootAsTheJobsUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "only root changes users";
  SandboxOptions options;
  options.uid = 0;
  EXPECT_THAT(SandboxExecutor::Create(options), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(SandboxExecutor, CancelOfAQueuedJobNeverStartsIt) {
  ScopedTempDir tmp;
  ASSERT_OK_AND_ASSIGN(auto executor, SandboxExecutor::Create(SandboxOptions(), /*max_parallel=*/1));
  // The first job holds the only worker until the test lets it go.
  const std::string ctl = tmp.path() + "/ctl";
  std::filesystem::create_directories(ctl);
  JobSpec blocker = SpecIn(tmp.path() + "/a", {"/bin/sh", "-c", "while [ ! -e /cairn/in/ctl/go ]; do sleep 0.02; done"});
  blocker.inputs = {{"ctl", ctl}};
  ASSERT_OK_AND_ASSIGN(JobId first, executor->Submit(blocker));
  JobSpec queued = SpecIn(tmp.path() + "/b", {"/bin/sh", "-c", "echo ran"});
  ASSERT_OK_AND_ASSIGN(JobId second, executor->Submit(queued));

  ASSERT_OK_AND_ASSIGN(JobStatus st, executor->Status(second));
  EXPECT_EQ(st.state, JobState::kQueued);
  ASSERT_OK(executor->Cancel(second));
  ASSERT_OK_AND_ASSIGN(st, executor->Wait(second, absl::Seconds(10)));
  EXPECT_EQ(st.state, JobState::kCancelled);
  ASSERT_OK_AND_ASSIGN(JobStatus written, ReadJobResult(queued.job_dir));
  EXPECT_EQ(written.state, JobState::kCancelled);

  std::ofstream(ctl + "/go") << "";
  ASSERT_OK_AND_ASSIGN(st, executor->Wait(first, absl::Seconds(60)));
  EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
  EXPECT_EQ(ReadFileOrEmpty(queued.job_dir + "/" + kJobLogFile), "");  // it never ran
}

TEST(SandboxExecutor, WaitTimesOutOnARunningJob) {
  ScopedTempDir tmp;
  ASSERT_OK_AND_ASSIGN(auto executor, SandboxExecutor::Create(SandboxOptions(), 1));
  ASSERT_OK_AND_ASSIGN(JobId id, executor->Submit(SpecIn(tmp.path(), {"sleep", "600"})));
  ASSERT_OK_AND_ASSIGN(JobStatus st, executor->Wait(id, absl::Milliseconds(50)));
  EXPECT_FALSE(IsFinal(st.state));
  // Destroying the executor ends the job; nothing hangs.
}

TEST(SandboxExecutor, AReusedJobDirDoesNotShowTheOldResult) {
  ScopedTempDir tmp;
  ASSERT_OK_AND_ASSIGN(auto executor, SandboxExecutor::Create(SandboxOptions(), 1));
  JobSpec spec = SpecIn(tmp.path(), {"/bin/sh", "-c", "exit 5"});
  ASSERT_OK_AND_ASSIGN(JobId id, executor->Submit(spec));
  ASSERT_OK_AND_ASSIGN(JobStatus st, executor->Wait(id, absl::Seconds(60)));
  ASSERT_EQ(st.exit_code, 5);
  spec.argv = {"sleep", "600"};
  ASSERT_OK_AND_ASSIGN(JobId again, executor->Submit(spec));
  EXPECT_THAT(ReadJobResult(spec.job_dir), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK(executor->Cancel(again));
  ASSERT_OK_AND_ASSIGN(st, executor->Wait(again, absl::Seconds(60)));
  EXPECT_EQ(st.state, JobState::kCancelled);
}

TEST(SandboxExecutor, MissingGpusAreAFailedPrecondition) {
  ScopedTempDir tmp;
  ASSERT_OK_AND_ASSIGN(auto executor, SandboxExecutor::Create(SandboxOptions(), 1));
  JobSpec spec = SpecIn(tmp.path(), {"true"});
  spec.resources.gpus = 1000;
  EXPECT_THAT(executor->Submit(spec), StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace cairn::exec
