#include "exec/job_files.h"

#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/testing.h"

namespace cairn::exec {
namespace {

using ::cairn::testing::ScopedTempDir;
using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;

JobSpec FullSpec() {
  JobSpec spec;
  spec.name = "train step";
  spec.argv = {"/usr/bin/python3", "train.py", "--epochs", "3"};
  spec.env = {{"SEED", "42"}, {"MODE", "fast run"}};
  spec.code_dir = "/srv/snap/abc";
  spec.inputs = {{"train", "/srv/checkouts/c1"}, {"cfg", "/srv/cfg.yaml"}};
  spec.outputs = {{"model", "/srv/jobs/j1/out/model"}};
  spec.root_dir = "/srv/envs/py311";
  spec.network = true;
  spec.resources.cpus = 4;
  spec.resources.memory_bytes = 3ull << 30;
  spec.resources.gpus = 1;
  spec.resources.wall_timeout = absl::Minutes(90);
  spec.resources.cpu_time = absl::Milliseconds(1500);
  spec.resources.max_processes = 64;
  spec.resources.max_output_bytes = 5ull << 20;
  spec.job_dir = "/srv/jobs/j1";
  return spec;
}

void ExpectSameSpec(const JobSpec& a, const JobSpec& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.argv, b.argv);
  EXPECT_EQ(a.env, b.env);
  EXPECT_EQ(a.code_dir, b.code_dir);
  ASSERT_EQ(a.inputs.size(), b.inputs.size());
  for (size_t i = 0; i < a.inputs.size(); ++i) {
    EXPECT_EQ(a.inputs[i].name, b.inputs[i].name);
    EXPECT_EQ(a.inputs[i].host_path, b.inputs[i].host_path);
  }
  ASSERT_EQ(a.outputs.size(), b.outputs.size());
  for (size_t i = 0; i < a.outputs.size(); ++i) {
    EXPECT_EQ(a.outputs[i].name, b.outputs[i].name);
    EXPECT_EQ(a.outputs[i].host_path, b.outputs[i].host_path);
  }
  EXPECT_EQ(a.root_dir, b.root_dir);
  EXPECT_EQ(a.network, b.network);
  EXPECT_EQ(a.resources.cpus, b.resources.cpus);
  EXPECT_EQ(a.resources.memory_bytes, b.resources.memory_bytes);
  EXPECT_EQ(a.resources.gpus, b.resources.gpus);
  EXPECT_EQ(a.resources.wall_timeout, b.resources.wall_timeout);
  EXPECT_EQ(a.resources.cpu_time, b.resources.cpu_time);
  EXPECT_EQ(a.resources.max_processes, b.resources.max_processes);
  EXPECT_EQ(a.resources.max_output_bytes, b.resources.max_output_bytes);
  EXPECT_EQ(a.job_dir, b.job_dir);
}

TEST(JobSpecJson, RoundTripsEveryField) {
  const JobSpec spec = FullSpec();
  ASSERT_OK_AND_ASSIGN(JobSpec back, JobSpecFromJson(JobSpecToJson(spec)));
  ExpectSameSpec(spec, back);
}

TEST(JobSpecJson, DurationsAreMilliseconds) {
  Json json = JobSpecToJson(FullSpec());
  EXPECT_EQ(json["resources"]["wall_timeout_ms"], 90 * 60 * 1000);
  EXPECT_EQ(json["resources"]["cpu_time_ms"], 1500);
}

TEST(JobSpecJson, InfiniteWallTimeRoundTrips) {
  JobSpec spec = FullSpec();
  spec.resources.wall_timeout = absl::InfiniteDuration();
  ASSERT_OK_AND_ASSIGN(JobSpec back, JobSpecFromJson(JobSpecToJson(spec)));
  EXPECT_EQ(back.resources.wall_timeout, absl::InfiniteDuration());
}

TEST(JobSpecJson, MissingOptionalFieldsTakeDefaults) {
  ASSERT_OK_AND_ASSIGN(Json json, ParseJson(R"({"argv": ["true"], "job_dir": "/j"})"));
  ASSERT_OK_AND_ASSIGN(JobSpec spec, JobSpecFromJson(json));
  EXPECT_EQ(spec.argv, std::vector<std::string>{"true"});
  EXPECT_FALSE(spec.network);
  EXPECT_EQ(spec.resources.max_processes, Resources().max_processes);
  EXPECT_EQ(spec.resources.wall_timeout, Resources().wall_timeout);
}

TEST(JobSpecJson, MalformedFieldsAreInvalidArgumentNamingTheField) {
  auto parse = [](const char* text) -> absl::StatusOr<JobSpec> {
    absl::StatusOr<Json> json = ParseJson(text);
    if (!json.ok()) return json.status();
    return JobSpecFromJson(*json);
  };
  EXPECT_THAT(parse("[1, 2]"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(parse(R"({"argv": "true", "job_dir": "/j"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("argv")));
  EXPECT_THAT(parse(R"({"argv": ["true", 3], "job_dir": "/j"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("argv[1]")));
  EXPECT_THAT(parse(R"({"argv": ["true"]})"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("job_dir")));
  EXPECT_THAT(parse(R"({"argv": ["true"], "job_dir": "/j", "env": {"A": 1}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("env.A")));
  EXPECT_THAT(parse(R"({"argv": ["true"], "job_dir": "/j", "inputs": [{"name": "x"}]})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inputs[0]")));
  EXPECT_THAT(parse(R"({"argv": ["true"], "job_dir": "/j", "resources": {"memory_bytes": -1}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("memory_bytes")));
  EXPECT_THAT(parse(R"({"argv": ["true"], "job_dir": "/j", "resources": {"cpus": 1e12}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cpus")));
  EXPECT_THAT(parse(R"({"argv": ["true"], "job_dir": "/j", "network": "yes"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("network")));
  EXPECT_THAT(parse(R"({"version": 99, "argv": ["true"], "job_dir": "/j"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version")));
}

TEST(JobStatusJson, RoundTrips) {
  JobStatus st;
  st.state = JobState::kFailed;
  st.exit_code = 3;
  st.reason = "exit code 3";
  st.cpu_seconds = 1.25;
  st.peak_memory_bytes = 123456789;
  st.started_at_ms = 1700000000000;
  st.ended_at_ms = 1700000001234;
  ASSERT_OK_AND_ASSIGN(JobStatus back, JobStatusFromJson(JobStatusToJson(st)));
  EXPECT_EQ(back.state, st.state);
  EXPECT_EQ(back.exit_code, 3);
  EXPECT_EQ(back.term_signal, std::nullopt);
  EXPECT_EQ(back.reason, st.reason);
  EXPECT_DOUBLE_EQ(back.cpu_seconds, 1.25);
  EXPECT_EQ(back.peak_memory_bytes, st.peak_memory_bytes);
  EXPECT_EQ(back.started_at_ms, st.started_at_ms);
  EXPECT_EQ(back.ended_at_ms, st.ended_at_ms);

  st.state = JobState::kCancelled;
  st.exit_code.reset();
  st.term_signal = 9;
  ASSERT_OK_AND_ASSIGN(back, JobStatusFromJson(JobStatusToJson(st)));
  EXPECT_EQ(back.state, JobState::kCancelled);
  EXPECT_EQ(back.exit_code, std::nullopt);
  EXPECT_EQ(back.term_signal, 9);
}

TEST(JobStatusJson, UnknownStateIsInvalid) {
  ASSERT_OK_AND_ASSIGN(Json json, ParseJson(R"({"state": "EXPLODED"})"));
  EXPECT_THAT(JobStatusFromJson(json), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("EXPLODED")));
  ASSERT_OK_AND_ASSIGN(json, ParseJson(R"({"reason": "no state"})"));
  EXPECT_THAT(JobStatusFromJson(json), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("state")));
}

TEST(JobFiles, WriteAndReadInAJobDir) {
  ScopedTempDir dir;
  const JobSpec spec = FullSpec();
  ASSERT_OK(WriteJobSpec(spec, dir.path()));
  ASSERT_OK_AND_ASSIGN(JobSpec back, ReadJobSpec(dir.path()));
  ExpectSameSpec(spec, back);

  EXPECT_THAT(ReadJobResult(dir.path()), StatusIs(absl::StatusCode::kNotFound));
  JobStatus st;
  st.state = JobState::kSucceeded;
  st.exit_code = 0;
  ASSERT_OK(WriteJobResult(st, dir.path()));
  ASSERT_OK_AND_ASSIGN(JobStatus read, ReadJobResult(dir.path()));
  EXPECT_EQ(read.state, JobState::kSucceeded);
  EXPECT_EQ(read.exit_code, 0);
  // No temp files are left behind.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 2);
}

TEST(JobFiles, MalformedFilesAreInvalidArgument) {
  ScopedTempDir dir;
  std::ofstream(dir.path() + "/" + kJobSpecFile) << "{\"argv\": [";
  EXPECT_THAT(ReadJobSpec(dir.path()), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(kJobSpecFile)));
  std::ofstream(dir.path() + "/" + kJobResultFile) << "not json";
  EXPECT_THAT(ReadJobResult(dir.path()), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ReadJobSpec(dir.path() + "/missing"), StatusIs(absl::StatusCode::kNotFound));
}

TEST(JobStateNames, AreTheDocumentedOnes) {
  EXPECT_STREQ(JobStateName(JobState::kQueued), "QUEUED");
  EXPECT_STREQ(JobStateName(JobState::kRunning), "RUNNING");
  EXPECT_STREQ(JobStateName(JobState::kSucceeded), "SUCCEEDED");
  EXPECT_STREQ(JobStateName(JobState::kFailed), "FAILED");
  EXPECT_STREQ(JobStateName(JobState::kCancelled), "CANCELLED");
}

}  // namespace
}  // namespace cairn::exec
