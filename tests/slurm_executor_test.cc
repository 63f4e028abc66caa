// SlurmExecutor against a real single-node Slurm (tests/support/slurm_cluster.h)
// whose node runs jobs with the real `cairn exec-job` ($CAIRN_BIN): the
// shared executor suite, then what only Slurm does (its options, its queue,
// its time limit, jobs outliving the submitting process).
#include "exec/slurm_executor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "base/testing.h"
#include "exec/executor_suite.h"
#include "exec/job_files.h"
#include "tests/support/server_process.h"
#include "tests/support/slurm_cluster.h"

namespace cairn::exec {
namespace {

using ::cairn::testing::ScopedTempDir;
using ::cairn::testing::SlurmCluster;
using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;

// One cluster for the whole binary: it starts in about a second, but its
// first job takes a few more.
SlurmCluster* cluster = nullptr;
std::string cluster_error;

class SlurmEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (absl::Status s = SlurmCluster::CheckAvailable(); !s.ok()) {
      cluster_error = std::string(s.message());
      GTEST_SKIP() << cluster_error;  // skips every test of this binary
    }
    absl::StatusOr<std::unique_ptr<SlurmCluster>> started = SlurmCluster::Start();
    if (!started.ok()) {
      cluster_error = std::string(started.status().message());
      ADD_FAILURE() << cluster_error;
      return;
    }
    cluster = started->release();
  }
  void TearDown() override {
    delete cluster;
    cluster = nullptr;
  }
};

const auto* const kEnvironment = ::testing::AddGlobalTestEnvironment(new SlurmEnvironment());

absl::StatusOr<std::unique_ptr<SlurmExecutor>> NewExecutor(const std::string& cairn_binary = "") {
  SlurmOptions options;
  options.cairn_binary =
      cairn_binary.empty() ? std::filesystem::absolute(cairn::testing::CairnBinary()).string() : cairn_binary;
  options.env = cluster->env();
  options.poll_interval = absl::Milliseconds(50);
  return SlurmExecutor::Create(options);
}

// The shared suite. Jobs outlive a SlurmExecutor, so each test starts by
// cancelling whatever an earlier (failed) test left in the queue.
ExecutorFactory SlurmFactory() {
  ExecutorFactory f;
  f.name = "slurm";
  f.make_executor = []() -> absl::StatusOr<std::unique_ptr<Executor>> {
    if (cluster == nullptr) return absl::FailedPreconditionError("no Slurm cluster: " + cluster_error);
    RETURN_IF_ERROR(cluster->CancelAllJobs());
    ASSIGN_OR_RETURN(std::unique_ptr<SlurmExecutor> executor, NewExecutor());
    return std::unique_ptr<Executor>(std::move(executor));
  };
  f.make_dir = [] {
    // The node is this machine: any local directory is "shared".
    std::string tmpl = "/tmp/cairn-slurm-suite-XXXXXX";
    return mkdtemp(tmpl.data()) != nullptr ? tmpl : std::string();
  };
  return f;
}

INSTANTIATE_TEST_SUITE_P(Slurm, ExecutorSuite, ::testing::Values(SlurmFactory()), ExecutorFactoryName);

class SlurmOnlyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cluster == nullptr) GTEST_SKIP() << "no Slurm cluster: " << cluster_error;
    ASSERT_OK(cluster->CancelAllJobs());
    ASSERT_OK_AND_ASSIGN(executor_, NewExecutor());
  }

  // A spec whose job directory exists, running `argv`.
  JobSpec Spec(const std::string& name, std::vector<std::string> argv) {
    JobSpec spec;
    spec.name = name;
    spec.argv = std::move(argv);
    spec.job_dir = tmp_.path() + "/" + name;
    std::filesystem::create_directories(spec.job_dir);
    spec.resources.wall_timeout = absl::Minutes(5);
    return spec;
  }

  std::map<std::string, std::string> SlurmRecord(const JobId& id) {
    cairn::testing::CommandResult r = cluster->Run({"scontrol", "show", "job", "-o", id});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    absl::StatusOr<std::map<std::string, std::string>> job = ParseScontrolJob(r.output);
    EXPECT_OK(job);
    return job.ok() ? *job : std::map<std::string, std::string>{};
  }

  // Polls until the job is RUNNING (or final).
  JobStatus WaitUntilStarted(const JobId& id) {
    JobStatus st;
    for (int i = 0; i < 600; ++i) {
      absl::StatusOr<JobStatus> s = executor_->Status(id);
      EXPECT_OK(s);
      if (!s.ok()) break;
      st = *s;
      if (st.state != JobState::kQueued) break;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return st;
  }

  ScopedTempDir tmp_;
  std::unique_ptr<SlurmExecutor> executor_;
};

TEST_F(SlurmOnlyTest, SbatchOptionsCarryCpusMemoryAndTime) {
  JobSpec spec = Spec("sized", {"true"});
  spec.resources.cpus = std::min(2, cluster->cpus());
  spec.resources.memory_bytes = 300ull << 20;
  spec.resources.wall_timeout = absl::Seconds(90);  // 2 minutes, plus Slurm's minute of grace
  ASSERT_OK_AND_ASSIGN(JobId id, executor_->Submit(spec));
  std::map<std::string, std::string> job = SlurmRecord(id);
  EXPECT_EQ(job["JobName"], "sized");
  EXPECT_EQ(job["CPUs/Task"], std::to_string(spec.resources.cpus));
  EXPECT_EQ(job["MinMemoryNode"], "300M");
  EXPECT_EQ(job["TimeLimit"], "00:03:00");
  EXPECT_EQ(job["WorkDir"], spec.job_dir);
  EXPECT_EQ(job["Requeue"], "0");
  ASSERT_OK_AND_ASSIGN(JobStatus st, executor_->Wait(id, absl::Seconds(60)));
  EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
  // The batch script is what the job directory says it is.
  std::string script = cairn::testing::RunCommand({"/bin/cat", spec.job_dir + "/" + kSlurmBatchScript}).output;
  EXPECT_THAT(script, HasSubstr("exec-job '" + spec.job_dir + "'"));
}

TEST_F(SlurmOnlyTest, JobIdIsTheSlurmJobIdAndTheJobSeesIt) {
  JobSpec spec = Spec("whoami", {"/bin/sh", "-c", "echo id=$CAIRN_JOB_ID"});
  ASSERT_OK_AND_ASSIGN(JobId id, executor_->Submit(spec));
  EXPECT_EQ(SlurmRecord(id)["JobId"], id);
  ASSERT_OK_AND_ASSIGN(JobStatus st, executor_->Wait(id, absl::Seconds(60)));
  ASSERT_EQ(st.state, JobState::kSucceeded) << st.reason;
  ASSERT_OK_AND_ASSIGN(LogChunk log, executor_->ReadLog(id, 0, 1 << 20));
  EXPECT_EQ(log.bytes, "id=" + id + "\n");
  EXPECT_TRUE(log.finished);
}

TEST_F(SlurmOnlyTest, CancelOfAQueuedJob) {
  // A job that takes every CPU of the node keeps the next one in the queue.
  JobSpec blocker = Spec("blocker", {"sleep", "120"});
  blocker.resources.cpus = cluster->cpus();
  ASSERT_OK_AND_ASSIGN(JobId blocker_id, executor_->Submit(blocker));
  JobSpec queued = Spec("queued", {"/bin/sh", "-c", "echo ran"});
  ASSERT_OK_AND_ASSIGN(JobId queued_id, executor_->Submit(queued));
  EXPECT_EQ(WaitUntilStarted(blocker_id).state, JobState::kRunning);
  ASSERT_OK_AND_ASSIGN(JobStatus st, executor_->Status(queued_id));
  EXPECT_EQ(st.state, JobState::kQueued);
  EXPECT_THAT(st.reason, HasSubstr("waiting in Slurm"));

  ASSERT_OK(executor_->Cancel(queued_id));
  ASSERT_OK_AND_ASSIGN(st, executor_->Status(queued_id));
  EXPECT_EQ(st.state, JobState::kCancelled);
  EXPECT_EQ(SlurmRecord(queued_id)["JobState"], "CANCELLED");
  // It never ran, and its fate is on disk for when Slurm forgets it.
  EXPECT_FALSE(std::filesystem::exists(queued.job_dir + "/" + kJobLogFile));
  ASSERT_OK_AND_ASSIGN(JobStatus on_disk, ReadJobResult(queued.job_dir));
  EXPECT_EQ(on_disk.state, JobState::kCancelled);
  ASSERT_OK_AND_ASSIGN(LogChunk log, executor_->ReadLog(queued_id, 0, 100));
  EXPECT_TRUE(log.finished);
  EXPECT_EQ(log.bytes, "");

  ASSERT_OK(executor_->Cancel(blocker_id));
  ASSERT_OK_AND_ASSIGN(st, executor_->Status(blocker_id));
  EXPECT_EQ(st.state, JobState::kCancelled) << st.reason;
  // Cancelling again changes nothing.
  ASSERT_OK(executor_->Cancel(queued_id));
  ASSERT_OK_AND_ASSIGN(st, executor_->Status(queued_id));
  EXPECT_EQ(st.state, JobState::kCancelled);
}

TEST_F(SlurmOnlyTest, AdoptAfterRestart) {
  JobSpec spec = Spec("adopted", {"/bin/sh", "-c", "echo from the past"});
  ASSERT_OK_AND_ASSIGN(JobId id, executor_->Submit(spec));
  ASSERT_OK_AND_ASSIGN(JobStatus st, executor_->Wait(id, absl::Seconds(60)));
  ASSERT_EQ(st.state, JobState::kSucceeded) << st.reason;
  executor_.reset();

  // A restarted server: a new executor knows nothing until told.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SlurmExecutor> restarted, NewExecutor());
  EXPECT_THAT(restarted->Status(id), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK(restarted->Adopt(id, spec.job_dir));
  ASSERT_OK(restarted->Adopt(id, spec.job_dir));  // the same pair again
  ASSERT_OK_AND_ASSIGN(st, restarted->Status(id));
  EXPECT_EQ(st.state, JobState::kSucceeded);
  EXPECT_EQ(st.exit_code, 0);
  ASSERT_OK_AND_ASSIGN(LogChunk log, restarted->ReadLog(id, 0, 100));
  EXPECT_EQ(log.bytes, "from the past\n");

  EXPECT_THAT(restarted->Adopt(id, tmp_.path()), StatusIs(absl::StatusCode::kNotFound));  // no spec.json
  JobSpec other = Spec("other", {"true"});
  ASSERT_OK(WriteJobSpec(other, other.job_dir));
  EXPECT_THAT(restarted->Adopt(id, other.job_dir), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(restarted->Adopt("12; rm -rf /", other.job_dir), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(restarted->Adopt("", other.job_dir), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(SlurmOnlyTest, AdoptRunningJobThenWait) {
  JobSpec spec = Spec("adopted-running", {"/bin/sh", "-c", "sleep 1; echo done"});
  ASSERT_OK_AND_ASSIGN(JobId id, executor_->Submit(spec));
  executor_.reset();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SlurmExecutor> restarted, NewExecutor());
  ASSERT_OK(restarted->Adopt(id, spec.job_dir));
  ASSERT_OK_AND_ASSIGN(JobStatus st, restarted->Wait(id, absl::Seconds(60)));
  EXPECT_EQ(st.state, JobState::kSucceeded) << st.reason;
}

TEST_F(SlurmOnlyTest, JobSlurmNoLongerKnowsIsLost) {
  JobSpec spec = Spec("lost", {"true"});
  ASSERT_OK(WriteJobSpec(spec, spec.job_dir));
  ASSERT_OK(executor_->Adopt("987654", spec.job_dir));
  ASSERT_OK_AND_ASSIGN(JobStatus st, executor_->Status("987654"));
  EXPECT_EQ(st.state, JobState::kFailed);
  EXPECT_THAT(st.reason, HasSubstr("lost by Slurm"));
  ASSERT_OK_AND_ASSIGN(JobStatus on_disk, ReadJobResult(spec.job_dir));
  EXPECT_EQ(on_disk.state, JobState::kFailed);
}

TEST_F(SlurmOnlyTest, FailingLauncherIsFailedWithItsMessage) {
  // A "cairn" that cannot run the job: the Slurm job fails, no result.json.
  std::string launcher = tmp_.path() + "/broken-cairn";
  {
    std::FILE* f = std::fopen(launcher.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("#!/bin/sh\necho 'cairn: error: launcher exploded' >&2\nexit 1\n", f);
    std::fclose(f);
    std::filesystem::permissions(launcher, std::filesystem::perms::owner_all);
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SlurmExecutor> broken, NewExecutor(launcher));
  JobSpec spec = Spec("broken", {"true"});
  ASSERT_OK_AND_ASSIGN(JobId id, broken->Submit(spec));
  ASSERT_OK_AND_ASSIGN(JobStatus st, broken->Wait(id, absl::Seconds(60)));
  EXPECT_EQ(st.state, JobState::kFailed);
  EXPECT_THAT(st.reason, HasSubstr("exit code 1"));
  EXPECT_THAT(st.reason, HasSubstr("launcher exploded"));
  ASSERT_OK_AND_ASSIGN(JobStatus on_disk, ReadJobResult(spec.job_dir));
  EXPECT_EQ(on_disk.reason, st.reason);
}

TEST_F(SlurmOnlyTest, RequestsTheClusterCannotMeetAreRefused) {
  JobSpec gpus = Spec("gpus", {"true"});
  gpus.resources.gpus = 1;
  EXPECT_THAT(executor_->Submit(gpus), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("sbatch")));
  JobSpec memory = Spec("memory", {"true"});
  memory.resources.memory_bytes = (cluster->memory_mib() + 1024) << 20;
  EXPECT_THAT(executor_->Submit(memory), StatusIs(absl::StatusCode::kFailedPrecondition));

  SlurmOptions options;
  options.cairn_binary = "/usr/bin/cairn";
  options.env = cluster->env();
  options.partition = "no-such-partition";
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<SlurmExecutor> elsewhere, SlurmExecutor::Create(options));
  EXPECT_THAT(elsewhere->Submit(Spec("nowhere", {"true"})),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("partition")));
}

// Slurm checks time limits every 30 s; this test shortens the job's limit to
// "now" rather than waiting out a whole minute.
TEST_F(SlurmOnlyTest, JobKilledBySlurmsTimeLimitIsFailedWithAReason) {
  JobSpec spec = Spec("overtime", {"sleep", "300"});
  ASSERT_OK_AND_ASSIGN(JobId id, executor_->Submit(spec));
  ASSERT_EQ(WaitUntilStarted(id).state, JobState::kRunning);
  cairn::testing::CommandResult r = cluster->Run({"scontrol", "update", "JobId=" + id, "EndTime=now"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_OK_AND_ASSIGN(JobStatus st, executor_->Wait(id, absl::Seconds(75)));
  EXPECT_EQ(st.state, JobState::kFailed) << JobStateName(st.state) << ": " << st.reason;
  EXPECT_THAT(st.reason, HasSubstr("time limit"));
  EXPECT_EQ(SlurmRecord(id)["JobState"], "TIMEOUT");
  // The verdict outlives Slurm's memory of the job.
  ASSERT_OK_AND_ASSIGN(JobStatus on_disk, ReadJobResult(spec.job_dir));
  EXPECT_EQ(on_disk.state, JobState::kFailed);
  EXPECT_THAT(on_disk.reason, HasSubstr("time limit"));
}

TEST_F(SlurmOnlyTest, UnknownJobIsNotFound) {
  EXPECT_THAT(executor_->Status("123456789"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(executor_->Cancel("123456789"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(executor_->ReadLog("123456789", 0, 10), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(executor_->Wait("123456789", absl::Seconds(1)), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace cairn::exec
