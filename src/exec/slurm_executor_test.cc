// Slurm's text formats as SlurmExecutor reads and writes them, without a
// cluster. The executor against a real Slurm: tests/slurm_executor_test.cc.
#include "exec/slurm_executor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>

#include "base/testing.h"

namespace cairn::exec {
namespace {

using ::cairn::testing::StatusIs;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

// Recorded from Debian's slurm-wlm 22.05 (`scontrol show job -o 1`).
constexpr char kFailedJob[] =
    "JobId=1 JobName=t1 UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901759 Nice=0 "
    "Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 "
    "BatchFlag=1 Reboot=0 ExitCode=3:0 RunTime=00:00:00 TimeLimit=00:01:00 TimeMin=N/A "
    "SubmitTime=2026-11-22T03:44:39 EligibleTime=2026-11-22T03:44:39 AccrueTime=2026-11-22T03:44:39 "
    "StartTime=2026-11-22T03:44:39 EndTime=2026-11-22T03:44:40 Deadline=N/A SuspendTime=None SecsPreSuspend=0 "
    "LastSchedEval=2026-11-22T03:44:39 Scheduler=Main Partition=debug AllocNode:Sid=localhost:17903 "
    "ReqNodeList=(null) ExcNodeList=(null) NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=1 NumTasks=1 "
    "CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,mem=100M,node=1,billing=1 Socks/Node=* "
    "NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryNode=100M MinTmpDiskNode=0 Features=(null) "
    "DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) "
    "Command=/srv/jobs/my job/job.sbatch WorkDir=/srv/jobs/my job StdErr=/srv/jobs/my job/slurm.out "
    "StdIn=/dev/null StdOut=/srv/jobs/my job/slurm.out Power= \n";

std::map<std::string, std::string> Job(const std::string& state, const std::string& extra = "") {
  auto job = ParseScontrolJob("JobId=7 JobName=x JobState=" + state + " " + extra);
  EXPECT_OK(job);
  return job.ok() ? *job : std::map<std::string, std::string>{};
}

TEST(ParseScontrolJob, ReadsEveryField) {
  ASSERT_OK_AND_ASSIGN(auto job, ParseScontrolJob(kFailedJob));
  EXPECT_EQ(job["JobId"], "1");
  EXPECT_EQ(job["JobState"], "FAILED");
  EXPECT_EQ(job["Reason"], "NonZeroExitCode");
  EXPECT_EQ(job["ExitCode"], "3:0");
  EXPECT_EQ(job["TimeLimit"], "00:01:00");
  EXPECT_EQ(job["NumCPUs"], "1");
  EXPECT_EQ(job["MinMemoryNode"], "100M");
  // Keys with ':' and '/', values with '=' and ','.
  EXPECT_EQ(job["AllocNode:Sid"], "localhost:17903");
  EXPECT_EQ(job["CPUs/Task"], "1");
  EXPECT_EQ(job["TRES"], "cpu=1,mem=100M,node=1,billing=1");
  EXPECT_EQ(job["Power"], "");
}

TEST(ParseScontrolJob, KeepsSpacesInsidePaths) {
  ASSERT_OK_AND_ASSIGN(auto job, ParseScontrolJob(kFailedJob));
  EXPECT_EQ(job["WorkDir"], "/srv/jobs/my job");
  EXPECT_EQ(job["StdOut"], "/srv/jobs/my job/slurm.out");
}

TEST(ParseScontrolJob, RefusesTextThatIsNoJobRecord) {
  EXPECT_THAT(ParseScontrolJob(""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseScontrolJob("slurm_load_jobs error: Invalid job id specified"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("JobId")));
  EXPECT_THAT(ParseScontrolJob("JobId=3 JobName=x"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(StatusFromScontrol, PendingIsQueuedWithSlurmsReason) {
  auto job = Job("PENDING", "Reason=Resources StartTime=2030-01-01T00:00:00");
  EXPECT_TRUE(ScontrolJobActive(job));
  JobStatus st = StatusFromScontrol(job);
  EXPECT_EQ(st.state, JobState::kQueued);
  EXPECT_THAT(st.reason, HasSubstr("Resources"));
  // A pending job's StartTime is only Slurm's estimate.
  EXPECT_EQ(st.started_at_ms, 0);
}

TEST(StatusFromScontrol, RunningAndCompletingAreRunning) {
  for (const char* state : {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED"}) {
    auto job = Job(state, "Reason=None StartTime=2026-11-22T03:44:39");
    EXPECT_TRUE(ScontrolJobActive(job)) << state;
    JobStatus st = StatusFromScontrol(job);
    EXPECT_EQ(st.state, JobState::kRunning) << state;
    EXPECT_GT(st.started_at_ms, 0) << state;
  }
}

TEST(StatusFromScontrol, UnknownStateIsNotFinal) {
  JobStatus st = StatusFromScontrol(Job("SOMETHING_NEW"));
  EXPECT_EQ(st.state, JobState::kRunning);
  EXPECT_THAT(st.reason, HasSubstr("SOMETHING_NEW"));
}

TEST(StatusFromScontrol, TimeoutIsFailedNamingTheLimit) {
  auto job = Job("TIMEOUT", "Reason=TimeLimit ExitCode=0:15 TimeLimit=00:05:00 EndTime=2026-11-22T03:50:00");
  EXPECT_FALSE(ScontrolJobActive(job));
  JobStatus st = StatusFromScontrol(job);
  EXPECT_EQ(st.state, JobState::kFailed);
  EXPECT_THAT(st.reason, HasSubstr("time limit of 00:05:00"));
  EXPECT_EQ(st.term_signal, 15);
  EXPECT_GT(st.ended_at_ms, 0);
}

TEST(StatusFromScontrol, CancelledIsCancelled) {
  JobStatus st = StatusFromScontrol(Job("CANCELLED", "Reason=None ExitCode=0:0"));
  EXPECT_EQ(st.state, JobState::kCancelled);
  EXPECT_THAT(st.reason, HasSubstr("cancelled"));
}

TEST(StatusFromScontrol, SlurmFailuresAreFailedWithAReason) {
  EXPECT_THAT(StatusFromScontrol(Job("OUT_OF_MEMORY")).reason, HasSubstr("out of memory"));
  EXPECT_THAT(StatusFromScontrol(Job("NODE_FAIL", "NodeList=n1")).reason, HasSubstr("node failure (n1)"));
  EXPECT_THAT(StatusFromScontrol(Job("PREEMPTED")).reason, HasSubstr("preempted"));
  for (const char* state : {"OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}) {
    EXPECT_EQ(StatusFromScontrol(Job(state)).state, JobState::kFailed) << state;
  }
}

TEST(StatusFromScontrol, LauncherFailureNamesItsExitCode) {
  JobStatus st = StatusFromScontrol(Job("FAILED", "Reason=NonZeroExitCode ExitCode=1:0"));
  EXPECT_EQ(st.state, JobState::kFailed);
  EXPECT_THAT(st.reason, HasSubstr("exit code 1"));
  EXPECT_FALSE(st.exit_code.has_value());  // the launcher's code, not the job's
}

TEST(StatusFromScontrol, CompletedWithoutResultIsFailed) {
  JobStatus st = StatusFromScontrol(Job("COMPLETED", "ExitCode=0:0"));
  EXPECT_EQ(st.state, JobState::kFailed);
  EXPECT_THAT(st.reason, HasSubstr("result.json"));
}

TEST(SbatchArguments, CarryTheResources) {
  JobSpec spec;
  spec.name = "train model/v2";
  spec.job_dir = "/srv/jobs/j1";
  spec.resources.cpus = 3;
  spec.resources.memory_bytes = 1536ull * 1024 * 1024 + 1;  // rounds up to 1537 MiB
  spec.resources.gpus = 2;
  spec.resources.wall_timeout = absl::Seconds(61);  // 2 minutes, plus a minute's grace
  std::vector<std::string> args = SbatchArguments(spec, "gpu");
  EXPECT_THAT(args, Contains("--parsable"));
  EXPECT_THAT(args, Contains("--job-name=train_model_v2"));
  EXPECT_THAT(args, Contains("--cpus-per-task=3"));
  EXPECT_THAT(args, Contains("--mem=1537M"));
  EXPECT_THAT(args, Contains("--time=3"));
  EXPECT_THAT(args, Contains("--gres=gpu:2"));
  EXPECT_THAT(args, Contains("--partition=gpu"));
  EXPECT_THAT(args, Contains("--no-requeue"));
  EXPECT_THAT(args, Contains("--output=/srv/jobs/j1/slurm.out"));
  EXPECT_THAT(args, Contains("--chdir=/srv/jobs/j1"));
}

TEST(SbatchArguments, LeavesDefaultsToTheCluster) {
  JobSpec spec;
  spec.job_dir = "/j";
  spec.resources.wall_timeout = absl::InfiniteDuration();
  std::vector<std::string> args = SbatchArguments(spec, "");
  for (const std::string& a : args) {
    EXPECT_THAT(a, Not(HasSubstr("--mem"))) << "memory 0 means the cluster's default";
    EXPECT_THAT(a, Not(HasSubstr("--time")));
    EXPECT_THAT(a, Not(HasSubstr("--gres")));
    EXPECT_THAT(a, Not(HasSubstr("--partition")));
  }
  EXPECT_THAT(args, Contains("--job-name=cairn-job"));
}

TEST(SlurmBatchScript, ExecsTheLauncherWithQuotedPaths) {
  std::string script = SlurmBatchScript("/opt/cairn/bin/cairn", "/srv/it's here", "n");
  EXPECT_EQ(script.rfind("#!/bin/sh\n", 0), 0u);
  EXPECT_THAT(script, HasSubstr("exec '/opt/cairn/bin/cairn' exec-job '/srv/it'\\''s here'\n"));
}

TEST(SlurmExecutorCreate, RefusesARelativeBinary) {
  SlurmOptions options;
  options.cairn_binary = "cairn";
  EXPECT_THAT(SlurmExecutor::Create(options), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(SlurmExecutorCreate, MissingClientsAreAFailedPrecondition) {
  cairn::testing::ScopedTempDir empty;
  SlurmOptions options;
  options.cairn_binary = "/usr/bin/cairn";
  options.bin_dir = empty.path();
  EXPECT_THAT(SlurmExecutor::Create(options), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("sbatch")));
}

TEST(SlurmExecutorCreate, MissingConfigurationIsAFailedPrecondition) {
  cairn::testing::ScopedTempDir dir;
  // Stand-ins for the clients: Create must stop before running any.
  for (const char* p : {"sbatch", "scontrol", "scancel"}) {
    std::string path = dir.path() + "/" + p;
    FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("#!/bin/sh\nexit 1\n", f);
    std::fclose(f);
    ASSERT_EQ(chmod(path.c_str(), 0755), 0);
  }
  SlurmOptions options;
  options.cairn_binary = "/usr/bin/cairn";
  options.bin_dir = dir.path();
  options.env["SLURM_CONF"] = dir.path() + "/absent.conf";
  EXPECT_THAT(SlurmExecutor::Create(options),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("absent.conf")));
  // A controller that does not answer.
  options.env.erase("SLURM_CONF");
  EXPECT_THAT(SlurmExecutor::Create(options),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("does not answer")));
}

}  // namespace
}  // namespace cairn::exec
