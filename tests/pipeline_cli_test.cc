// Pipelines as a user runs them, against the real binary: `cairn run`
// (embedded, then through a server), the run cache, spec errors with
// file:line:col, sealed-split refusal, `pipelines list|show|runs`, `runs
// logs`, the webhook (good and bad signatures), a dataset commit triggering
// a run in the server, and a server killed with -9 in the middle of a
// pipeline resuming it after restart.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/json.h"
#include "base/testing.h"
#include "http/http.h"
#include "pipeline/triggers.h"
#include "tests/support/cli_process.h"
#include "tests/support/server_process.h"
#include "tests/support/slurm_cluster.h"

namespace cairn {
namespace {

namespace fs = std::filesystem;
using ::cairn::testing::CairnBinary;
using ::cairn::testing::Cli;
using ::cairn::testing::Describe;
using ::cairn::testing::ServerProcess;
using ::testing::HasSubstr;

void WriteFile(const std::string& path, const std::string& content) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

constexpr char kSpec[] = R"(name: demo
triggers:
  datasets: true
  webhook: true
steps:
  prepare:
    command: cp -r /cairn/in/raw/. /cairn/out/clean/ && echo prepared rows
    inputs:
      raw: dataset:rows@main#train
    outputs: [clean]
  train:
    command: [python3, train.py, "${lr}"]
    params: {lr: "0.1"}
    inputs:
      data: step:prepare/clean
    outputs: [model]
    role: train
  evaluate:
    command: cat /cairn/in/test/test/t.csv
    inputs:
      model: step:train/model
      test: dataset:rows@main#test
    role: evaluate
)";

constexpr char kTrain[] = R"(import json, os, sys
rows = sum(1 for _ in open("/cairn/in/data/train/a.csv"))
for step in range(3):
    print(json.dumps({"metric": "loss", "value": 1.0 / (step + 1) / float(sys.argv[1]), "step": step}), flush=True)
open("/cairn/out/model/model.txt", "w").write("rows=%d lr=%s\n" % (rows, sys.argv[1]))
)";

class PipelineCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::chmod(tmp_.path().c_str(), 0755);  // steps run as an unprivileged user
    data_dir_ = tmp_.path() + "/cairn-data";
    project_ = tmp_.path() + "/project";
    scratch_ = tmp_.path() + "/scratch";
    fs::create_directories(scratch_);
    WriteFile(project_ + "/cairn.yaml", kSpec);
    WriteFile(project_ + "/train.py", kTrain);
    WriteFile(tmp_.path() + "/rows/train/a.csv", "x,y\n1,2\n");
    WriteFile(tmp_.path() + "/rows/test/t.csv", "x,y\nsealed,row\n");
  }

  Cli Embedded() { return Cli({"--data-dir", data_dir_}, scratch_); }
  Cli Remote(int port) { return Cli({"--url", "http://127.0.0.1:" + std::to_string(port)}, scratch_); }

  void AddRows(Cli& cli) {
    Cli::Outcome o = cli.Run({"data", "add", "rows", tmp_.path() + "/rows", "--split", "train=train/**", "--split",
                              "test=test/**", "--seal", "test", "-m", "rows"});
    ASSERT_EQ(o.exit_code, 0) << Describe(o);
  }

  // `cairn run` from the project folder.
  Cli::Outcome RunIn(Cli& cli, std::vector<std::string> args) {
    std::vector<std::string> full = {"run", "-f", project_ + "/cairn.yaml"};
    full.insert(full.end(), args.begin(), args.end());
    return cli.Run(full);
  }

  Json RunJson(const Cli::Outcome& o) {
    Json j = Json::parse(o.out.substr(o.out.rfind("\n{") == std::string::npos ? 0 : o.out.rfind("\n{")), nullptr,
                         false);
    return j;
  }

  testing::ScopedTempDir tmp_;
  std::string data_dir_, project_, scratch_;
};

TEST_F(PipelineCliTest, EmbeddedRunThenCachedRerunThenInspect) {
  Cli cli = Embedded();
  ASSERT_EQ(cli.Run({"data", "create", "rows"}).exit_code, 0);
  AddRows(cli);

  Cli::Outcome first = RunIn(cli, {});
  ASSERT_EQ(first.exit_code, 0) << Describe(first);
  EXPECT_THAT(first.out, HasSubstr("prepare"));
  EXPECT_THAT(first.out, HasSubstr("SUCCEEDED in"));
  EXPECT_THAT(first.out, HasSubstr("3 succeeded"));

  Cli::Outcome second = RunIn(cli, {});
  ASSERT_EQ(second.exit_code, 0) << Describe(second);
  EXPECT_THAT(second.out, HasSubstr("3 cached"));

  Cli::Outcome param = RunIn(cli, {"-p", "lr=0.5", "--json"});
  ASSERT_EQ(param.exit_code, 0) << Describe(param);
  Json run = RunJson(param);
  ASSERT_TRUE(run.is_object()) << param.out;
  EXPECT_EQ(run["status"], "SUCCEEDED");
  EXPECT_EQ(run["steps"][0]["status"], "CACHED");
  EXPECT_EQ(run["steps"][1]["status"], "SUCCEEDED");
  const std::string train_run = run["steps"][1]["run_id"];

  // The train step's MLflow run carries the metrics it printed.
  Cli::Outcome show = cli.Run({"--json", "runs", "show", train_run});
  ASSERT_EQ(show.exit_code, 0) << Describe(show);
  EXPECT_THAT(show.out, HasSubstr("\"loss\""));
  EXPECT_THAT(show.out, HasSubstr("cairn.code.digest"));

  Cli::Outcome logs = cli.Run({"runs", "logs", train_run});
  ASSERT_EQ(logs.exit_code, 0) << Describe(logs);
  EXPECT_THAT(logs.out, HasSubstr("{\"metric\": \"loss\""));

  Cli::Outcome list = cli.Run({"pipelines", "list"});
  ASSERT_EQ(list.exit_code, 0) << Describe(list);
  EXPECT_THAT(list.out, HasSubstr("demo"));
  EXPECT_THAT(list.out, HasSubstr("datasets, webhook"));

  Cli::Outcome runs = cli.Run({"--json", "pipelines", "runs", "demo"});
  ASSERT_EQ(runs.exit_code, 0) << Describe(runs);
  Json rl = Json::parse(runs.out, nullptr, false);
  ASSERT_TRUE(rl.is_array());
  EXPECT_EQ(rl.size(), 3u);

  Cli::Outcome pshow = cli.Run({"pipelines", "show", "demo"});
  ASSERT_EQ(pshow.exit_code, 0) << Describe(pshow);
  EXPECT_THAT(pshow.out, HasSubstr("evaluate"));

  // One step and its ancestors only.
  Cli::Outcome one = RunIn(cli, {"prepare", "--no-cache"});
  ASSERT_EQ(one.exit_code, 0) << Describe(one);
  EXPECT_THAT(one.out, HasSubstr("1 succeeded"));
  EXPECT_THAT(one.out, ::testing::Not(HasSubstr("train")));

  Cli::Outcome fsck = cli.Run({"fsck"});
  EXPECT_EQ(fsck.exit_code, 0) << Describe(fsck);
}

TEST_F(PipelineCliTest, SpecErrorsAndRefusalsAreClearAndRunNothing) {
  Cli cli = Embedded();
  ASSERT_EQ(cli.Run({"data", "create", "rows"}).exit_code, 0);
  AddRows(cli);

  WriteFile(project_ + "/cairn.yaml", "name: demo\nsteps:\n  a:\n    command: x\n    inputs:\n      d: nonsense\n");
  Cli::Outcome bad = RunIn(cli, {});
  EXPECT_EQ(bad.exit_code, 1) << Describe(bad);
  EXPECT_THAT(bad.err, HasSubstr("cairn.yaml:6:"));
  EXPECT_THAT(bad.err, HasSubstr("dataset:NAME@REF"));

  std::string sealed = kSpec;
  sealed.replace(sealed.find("raw: dataset:rows@main#train"), 28, "raw: dataset:rows@main#test ");
  WriteFile(project_ + "/cairn.yaml", sealed);
  Cli::Outcome refused = RunIn(cli, {});
  EXPECT_EQ(refused.exit_code, 1) << Describe(refused);
  EXPECT_THAT(refused.out, HasSubstr("REFUSED"));
  EXPECT_THAT(refused.out, HasSubstr("only a step with role 'evaluate' may read a sealed split"));
  Cli::Outcome runs = cli.Run({"--json", "runs", "list"});
  EXPECT_THAT(runs.out, ::testing::Not(HasSubstr("prepare")));  // no MLflow run was made

  WriteFile(project_ + "/cairn.yaml", kSpec);
  Cli::Outcome unknown = RunIn(cli, {"nosuchstep"});
  EXPECT_EQ(unknown.exit_code, 1) << Describe(unknown);
  EXPECT_THAT(unknown.err, HasSubstr("no step 'nosuchstep'"));
  Cli::Outcome bad_param = RunIn(cli, {"-p", "nope=1"});
  EXPECT_EQ(bad_param.exit_code, 1) << Describe(bad_param);
  EXPECT_THAT(bad_param.err, HasSubstr("nope"));
}

TEST_F(PipelineCliTest, ServerRunsWebhookAndDatasetTriggers) {
  auto server = ServerProcess::Start(CairnBinary(), data_dir_);
  ASSERT_TRUE(server.ok()) << server.status();
  Cli cli = Remote((*server)->port());
  ASSERT_EQ(cli.Run({"data", "create", "rows"}).exit_code, 0);
  AddRows(cli);
  Cli::Outcome first = RunIn(cli, {});
  ASSERT_EQ(first.exit_code, 0) << Describe(first);
  EXPECT_THAT(first.out, HasSubstr("3 succeeded"));

  auto client = http::Client::Create("127.0.0.1", (*server)->port());
  ASSERT_TRUE(client.ok());
  ASSERT_OK_AND_ASSIGN(Json p, (*client)->GetJson("/api/cairn/v1/pipelines/demo?secret=1"));
  const std::string secret = p["pipeline"]["webhook_secret"];
  const std::string body = R"({"ref":"refs/heads/main","after":"abc123"})";
  ASSERT_OK_AND_ASSIGN(http::ClientResponse unsigned_r,
                       (*client)->Send(http::Method::kPost, "/api/cairn/v1/pipelines/demo/trigger", body));
  EXPECT_EQ(unsigned_r.status, 401);
  ASSERT_OK_AND_ASSIGN(
      http::ClientResponse forged,
      (*client)->Send(http::Method::kPost, "/api/cairn/v1/pipelines/demo/trigger", body, "application/json",
                      {{"X-Cairn-Signature", pipeline::SignWebhook("wrong", body)}}));
  EXPECT_EQ(forged.status, 401);
  ASSERT_OK_AND_ASSIGN(
      http::ClientResponse signed_r,
      (*client)->Send(http::Method::kPost, "/api/cairn/v1/pipelines/demo/trigger", body, "application/json",
                      {{"X-Hub-Signature-256", pipeline::SignWebhook(secret, body)}}));
  ASSERT_EQ(signed_r.status, 202) << signed_r.body;
  Json started = Json::parse(signed_r.body);
  EXPECT_EQ(started["run"]["cause"]["kind"], "webhook");
  EXPECT_EQ(started["run"]["cause"]["after"], "abc123");

  // New data: the server notices and re-runs what reads it.
  WriteFile(tmp_.path() + "/rows/train/a.csv", "x,y\n1,2\n3,4\n");
  AddRows(cli);
  Json triggered;
  for (int i = 0; i < 600 && triggered.is_null(); ++i) {
    ASSERT_OK_AND_ASSIGN(Json runs, (*client)->GetJson("/api/cairn/v1/pipelines/demo/runs"));
    for (const Json& r : runs["runs"]) {
      if (r["cause"]["kind"] == "dataset_commit" && r["status"] != "PENDING" && r["status"] != "RUNNING") triggered = r;
    }
    if (triggered.is_null()) usleep(100 * 1000);
  }
  if (triggered.is_null()) {
    auto runs = (*client)->GetJson("/api/cairn/v1/pipelines/demo/runs");
    std::ifstream log(data_dir_ + "/logs/cairn.log");
    FAIL() << "no run was triggered by the new commit; runs: " << (runs.ok() ? runs->dump() : "?") << "\nlog:\n"
           << std::string(std::istreambuf_iterator<char>(log), {});
  }
  EXPECT_EQ(triggered["status"], "SUCCEEDED") << triggered.dump();
  EXPECT_EQ(triggered["steps"][0]["status"], "SUCCEEDED");  // prepare read the new commit
  EXPECT_EQ(triggered["steps"][1]["status"], "SUCCEEDED");  // train's input changed
}

TEST_F(PipelineCliTest, ServerKilledMidPipelineResumesItAfterRestart) {
  WriteFile(project_ + "/cairn.yaml", R"(name: slow
steps:
  first:
    command: echo one > /cairn/out/o/one
    outputs: [o]
  second:
    command: sleep 4 && ls /cairn/in/i
    inputs:
      i: step:first/o
)");
  auto server = ServerProcess::Start(CairnBinary(), data_dir_);
  ASSERT_TRUE(server.ok()) << server.status();
  Cli cli = Remote((*server)->port());
  Cli::Outcome started = RunIn(cli, {"--detach", "--json"});
  ASSERT_EQ(started.exit_code, 0) << Describe(started);
  Json run = RunJson(started);
  ASSERT_TRUE(run.is_object()) << started.out;
  const std::string id = run["id"];
  auto client = http::Client::Create("127.0.0.1", (*server)->port());
  ASSERT_TRUE(client.ok());
  bool second_running = false;
  for (int i = 0; i < 600 && !second_running; ++i) {
    ASSERT_OK_AND_ASSIGN(Json r, (*client)->GetJson("/api/cairn/v1/pipeline-runs/" + id));
    second_running = r["run"]["steps"][1]["status"] == "RUNNING";
    if (!second_running) usleep(50 * 1000);
  }
  ASSERT_TRUE(second_running);
  (*server)->Kill(SIGKILL);

  auto again = ServerProcess::Start(CairnBinary(), data_dir_);
  ASSERT_TRUE(again.ok()) << again.status();
  auto client2 = http::Client::Create("127.0.0.1", (*again)->port());
  ASSERT_TRUE(client2.ok());
  Json final_run;
  for (int i = 0; i < 900; ++i) {
    ASSERT_OK_AND_ASSIGN(Json r, (*client2)->GetJson("/api/cairn/v1/pipeline-runs/" + id));
    if (r["run"]["status"] != "RUNNING" && r["run"]["status"] != "PENDING") {
      final_run = r["run"];
      break;
    }
    usleep(50 * 1000);
  }
  ASSERT_FALSE(final_run.is_null()) << "the run never finished after the restart";
  EXPECT_EQ(final_run["status"], "SUCCEEDED") << final_run.dump();
  EXPECT_THAT(final_run["reason"].get<std::string>(), HasSubstr("resumed after a server restart (re-running second)"));
  EXPECT_EQ(final_run["steps"][0]["attempt"], 1);  // first kept its output
  EXPECT_EQ(final_run["steps"][1]["attempt"], 2);
}

// `cairn runs logs -f` follows a running step to its end; `cairn runs cancel`
// given a step's run id stops the whole pipeline run.
TEST_F(PipelineCliTest, LogsFollowARunningStepAndCancelStopsTheRun) {
  WriteFile(project_ + "/cairn.yaml", R"(name: chatty
steps:
  talk:
    command: for i in 1 2 3 4 5; do echo "line $i"; sleep 0.3; done
  wait:
    command: echo waiting; sleep 600
    after: [talk]
  never:
    command: "true"
    after: [wait]
)");
  auto server = ServerProcess::Start(CairnBinary(), data_dir_);
  ASSERT_TRUE(server.ok()) << server.status();
  Cli cli = Remote((*server)->port());
  Cli::Outcome started = RunIn(cli, {"--detach", "--json"});
  ASSERT_EQ(started.exit_code, 0) << Describe(started);
  const std::string id = RunJson(started)["id"];
  auto client = http::Client::Create("127.0.0.1", (*server)->port());
  ASSERT_TRUE(client.ok());
  auto step_run = [&](int index, const char* status) {
    for (int i = 0; i < 600; ++i) {
      auto r = (*client)->GetJson("/api/cairn/v1/pipeline-runs/" + id);
      if (r.ok() && (*r)["run"]["steps"][index]["status"] == status) {
        return (*r)["run"]["steps"][index]["run_id"].get<std::string>();
      }
      usleep(20 * 1000);
    }
    return std::string();
  };
  const std::string talk = step_run(0, "RUNNING");
  ASSERT_FALSE(talk.empty());
  Cli::Outcome logs = cli.Run({"runs", "logs", "-f", talk});  // returns when the step ends
  ASSERT_EQ(logs.exit_code, 0) << Describe(logs);
  EXPECT_EQ(logs.out, "line 1\nline 2\nline 3\nline 4\nline 5\n");

  const std::string wait = step_run(1, "RUNNING");
  ASSERT_FALSE(wait.empty());
  Cli::Outcome cancel = cli.Run({"runs", "cancel", wait});
  ASSERT_EQ(cancel.exit_code, 0) << Describe(cancel);
  Json final_run;
  for (int i = 0; i < 600 && final_run.is_null(); ++i) {
    ASSERT_OK_AND_ASSIGN(Json r, (*client)->GetJson("/api/cairn/v1/pipeline-runs/" + id));
    if (r["run"]["status"] != "RUNNING" && r["run"]["status"] != "PENDING") final_run = r["run"];
    usleep(20 * 1000);
  }
  ASSERT_FALSE(final_run.is_null());
  EXPECT_EQ(final_run["status"], "CANCELLED");
  EXPECT_EQ(final_run["steps"][0]["status"], "SUCCEEDED");
  EXPECT_EQ(final_run["steps"][1]["status"], "CANCELLED");
  EXPECT_EQ(final_run["steps"][2]["status"], "CANCELLED");
  Cli::Outcome unknown = cli.Run({"runs", "cancel", "0123456789abcdef0123456789abcdef"});
  EXPECT_EQ(unknown.exit_code, 1) << Describe(unknown);
}

// The same pipeline with every step a Slurm batch job (on a real single-node
// cluster), each running in the sandbox on the node through `cairn exec-job`.
TEST_F(PipelineCliTest, ServerRunsThePipelineOnSlurm) {
  if (absl::Status s = testing::SlurmCluster::CheckAvailable(); !s.ok()) GTEST_SKIP() << s.message();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<testing::SlurmCluster> cluster, testing::SlurmCluster::Start());
  for (const auto& [k, v] : cluster->env()) ::setenv(k.c_str(), v.c_str(), 1);  // the server inherits it
  auto server = ServerProcess::Start(CairnBinary(), data_dir_);
  for (const auto& [k, v] : cluster->env()) ::unsetenv(k.c_str());
  ASSERT_TRUE(server.ok()) << server.status();
  Cli cli = Remote((*server)->port());
  ASSERT_EQ(cli.Run({"data", "create", "rows"}).exit_code, 0);
  AddRows(cli);
  Cli::Outcome run = RunIn(cli, {"--executor", "slurm", "--json"});
  ASSERT_EQ(run.exit_code, 0) << Describe(run) << cluster->LogTails();
  Json r = RunJson(run);
  ASSERT_TRUE(r.is_object()) << run.out;
  EXPECT_EQ(r["status"], "SUCCEEDED");
  EXPECT_EQ(r["executor"], "slurm");
  for (const Json& st : r["steps"]) {
    EXPECT_EQ(st["status"], "SUCCEEDED") << st.dump();
    EXPECT_EQ(st["executor"], "slurm");
    EXPECT_FALSE(st["job_id"].get<std::string>().empty());
  }
  // The sandbox ran on the node: the metrics printed inside it were ingested.
  Cli::Outcome show = cli.Run({"--json", "runs", "show", r["steps"][1]["run_id"].get<std::string>()});
  EXPECT_THAT(show.out, HasSubstr("\"loss\""));
  // Same code, environment and inputs: the local executor finds it all cached.
  Cli::Outcome again = RunIn(cli, {});
  ASSERT_EQ(again.exit_code, 0) << Describe(again);
  EXPECT_THAT(again.out, HasSubstr("3 cached"));
}

}  // namespace
}  // namespace cairn
