// `cairn models ...`, `cairn deploy` and `cairn deployments ...` as a user
// runs them, embedded (--data-dir): register a run's model, list and show
// it, a promotion gate refusing and then allowing an alias move (every
// condition printed, exit code 1 on refusal), alias history and --at,
// lineage, deployments, --json output and the errors' one clear line.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "api/data_directory.h"
#include "base/json.h"
#include "base/testing.h"
#include "tests/support/cli_process.h"

namespace cairn {
namespace {

namespace fs = std::filesystem;
using ::cairn::testing::Cli;
using ::cairn::testing::Describe;
using ::cairn::testing::IsOk;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

class ModelCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(scratch_);
    // A run that logged a model folder, and a reviewer: written in-process
    // (nothing in the CLI logs artifacts), then the directory is closed.
    auto env = NewPosixEnv();
    auto dir = api::DataDirectory::Open(*env, data_);
    ASSERT_THAT(dir, IsOk());
    auto run = (*dir)->tracking().CreateRun({.experiment_id = "0", .run_name = "train"});
    ASSERT_THAT(run, IsOk());
    run_id_ = run->info.run_id;
    const std::string root = run->info.artifact_uri.substr(std::string("mlflow-artifacts:/").size());
    for (const auto& [path, content] : std::map<std::string, std::string>{
             {"model/MLmodel", "flavors: {}\n"}, {"model/model.json", "{\"learner\": {}}"}}) {
      auto digest = (*dir)->objects().Put(content);
      ASSERT_THAT(digest, IsOk());
      ASSERT_THAT((*dir)->tracking().PutArtifact(root + "/" + path,
                                                 {digest->ToHex(), static_cast<int64_t>(content.size())}),
                  IsOk());
    }
    ASSERT_THAT((*dir)->registry().GrantRole("reviewer", "local"), IsOk());
    cli_ = std::make_unique<Cli>(std::vector<std::string>{"--data-dir", data_}, scratch_);
  }

  Cli::Outcome Cairn(const std::vector<std::string>& args) { return cli_->Run(args); }
  Json CairnJson(std::vector<std::string> args) {
    args.insert(args.begin(), "--json");
    Cli::Outcome o = Cairn(args);
    EXPECT_EQ(o.exit_code, 0) << Describe(o);
    auto j = ParseJson(o.out);
    EXPECT_THAT(j, IsOk()) << Describe(o);
    return j.ok() ? *j : Json();
  }
  void ExpectRejected(const Cli::Outcome& o, const std::string& mentions) {
    EXPECT_EQ(o.exit_code, 1) << Describe(o);
    EXPECT_THAT(o.err, StartsWith("cairn: error: ")) << Describe(o);
    EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << Describe(o);
    EXPECT_THAT(o.err, HasSubstr(mentions)) << Describe(o);
  }
  void Register() {
    Cli::Outcome o = Cairn({"models", "register", "churn", "--run", run_id_});
    ASSERT_EQ(o.exit_code, 0) << Describe(o);
    EXPECT_THAT(o.out, HasSubstr("registered churn version 1 from run " + run_id_ + " (2 files, artifact sha256:"));
  }

  cairn::testing::ScopedTempDir tmp_;
  const std::string data_ = tmp_.path() + "/data";
  const std::string scratch_ = tmp_.path() + "/scratch";
  std::string run_id_;
  std::unique_ptr<Cli> cli_;
};

TEST_F(ModelCliTest, RegisterListShowVersions) {
  Register();
  Json v2 = CairnJson({"models", "register", "churn", "--run", run_id_, "--description", "again"});
  EXPECT_EQ(v2["version"], "2");
  EXPECT_EQ(v2["description"], "again");

  Cli::Outcome list = Cairn({"models", "list"});
  ASSERT_EQ(list.exit_code, 0) << Describe(list);
  EXPECT_THAT(list.out, HasSubstr("churn"));
  Json models = CairnJson({"models", "list"});
  ASSERT_EQ(models.size(), 1u);
  EXPECT_EQ(models[0]["name"], "churn");

  Cli::Outcome versions = Cairn({"models", "versions", "churn"});
  ASSERT_EQ(versions.exit_code, 0) << Describe(versions);
  EXPECT_THAT(versions.out, HasSubstr("v2"));
  EXPECT_THAT(versions.out, HasSubstr(run_id_));
  Json vj = CairnJson({"models", "versions", "churn"});
  ASSERT_EQ(vj.size(), 2u);
  EXPECT_EQ(vj[0]["version"], "2");  // newest first

  Cli::Outcome show = Cairn({"models", "show", "churn"});
  ASSERT_EQ(show.exit_code, 0) << Describe(show);
  EXPECT_THAT(show.out, HasSubstr("versions     2"));
  EXPECT_THAT(show.out, HasSubstr("policy       none"));

  ExpectRejected(Cairn({"models", "show", "nope"}), "nope");
  ExpectRejected(Cairn({"models", "versions", "nope"}), "nope");
  ExpectRejected(Cairn({"models", "register", "churn", "--run", run_id_, "--path", "missing"}), "no files");
}

TEST_F(ModelCliTest, GateRefusesThenAllowsAndHistoryRemembers) {
  Register();
  const std::string policy = scratch_ + "/policy.yaml";
  std::ofstream(policy) << "aliases: [production]\napprovals: {count: 1, role: reviewer}\n";
  Cli::Outcome set_policy = Cairn({"models", "policy", "set", "churn", policy});
  ASSERT_EQ(set_policy.exit_code, 0) << Describe(set_policy);
  Json shown = CairnJson({"models", "policy", "show", "churn"});
  EXPECT_EQ(shown["policy"]["approvals"]["role"], "reviewer");

  Cli::Outcome refused = Cairn({"models", "alias", "set", "churn", "production", "1"});
  EXPECT_EQ(refused.exit_code, 1) << Describe(refused);
  EXPECT_THAT(refused.out, HasSubstr("refused"));
  EXPECT_THAT(refused.out, HasSubstr("✘ approvals"));
  EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << Describe(refused);
  ExpectRejected(Cairn({"models", "lineage", "churn@production"}), "production");

  Cli::Outcome approve = Cairn({"models", "approve", "churn", "1", "--alias", "production", "--comment", "lgtm"});
  ASSERT_EQ(approve.exit_code, 0) << Describe(approve);
  EXPECT_THAT(approve.out, HasSubstr("local approved churn version 1"));

  Cli::Outcome moved = Cairn({"models", "alias", "set", "churn", "production", "1", "--reason", "approved"});
  ASSERT_EQ(moved.exit_code, 0) << Describe(moved);
  EXPECT_THAT(moved.out, HasSubstr("churn@production -> version 1"));
  EXPECT_THAT(moved.out, HasSubstr("✔ approvals"));
  EXPECT_THAT(moved.out, Not(HasSubstr("✘")));

  Cli::Outcome history = Cairn({"models", "alias", "history", "churn", "production"});
  ASSERT_EQ(history.exit_code, 0) << Describe(history);
  EXPECT_THAT(history.out, HasSubstr("approved"));
  EXPECT_THAT(history.out, HasSubstr("v1"));
  Json hj = CairnJson({"models", "alias", "history", "churn", "production"});
  ASSERT_EQ(hj["history"].size(), 1u);
  EXPECT_EQ(hj["history"][0]["user"], "local");

  Cli::Outcome then = Cairn({"models", "alias", "history", "churn", "production", "--at", "2001-01-01"});
  ASSERT_EQ(then.exit_code, 0) << Describe(then);
  EXPECT_THAT(then.out, HasSubstr("pointed at no version"));
  Cli::Outcome now = Cairn({"models", "alias", "history", "churn", "production", "--at", "2999-01-01T00:00:00Z"});
  ASSERT_EQ(now.exit_code, 0) << Describe(now);
  EXPECT_THAT(now.out, HasSubstr("was version 1"));
  ExpectRejected(Cairn({"models", "alias", "history", "churn", "production", "--at", "soon"}), "Invalid time");

  Cli::Outcome lineage = Cairn({"models", "lineage", "churn@production"});
  ASSERT_EQ(lineage.exit_code, 0) << Describe(lineage);
  EXPECT_THAT(lineage.out, HasSubstr("churn@production is version 1"));
  EXPECT_THAT(lineage.out, HasSubstr("model_version"));
  Json graph = CairnJson({"models", "lineage", "churn@1"});
  EXPECT_TRUE(graph.contains("nodes")) << graph.dump();
}

TEST_F(ModelCliTest, DeployAndListDeployments) {
  Register();
  Cli::Outcome staging = Cairn({"models", "alias", "set", "churn", "staging", "1"});
  ASSERT_EQ(staging.exit_code, 0) << Describe(staging);
  EXPECT_THAT(staging.out, HasSubstr("no policy guards"));

  Cli::Outcome deploy = Cairn({"deploy", "churn@staging", "--name", "churn-api", "--canary", "1:10",
                               "--max-batch-size", "16", "--instances", "2"});
  ASSERT_EQ(deploy.exit_code, 0) << Describe(deploy);
  EXPECT_THAT(deploy.out, HasSubstr("deployment churn-api serves churn@staging (generation 1)"));
  Json list = CairnJson({"deployments", "list"});
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["name"], "churn-api");
  EXPECT_EQ(list[0]["canary"]["percent"], 10);
  EXPECT_EQ(list[0]["config"]["max_batch_size"], 16);
  EXPECT_EQ(list[0]["config"]["instances"], 2);
  Cli::Outcome table = Cairn({"deployments", "list"});
  ASSERT_EQ(table.exit_code, 0) << Describe(table);
  EXPECT_THAT(table.out, HasSubstr("v1 10%"));

  ExpectRejected(Cairn({"deploy", "churn@1"}), "NAME@ALIAS");
  ExpectRejected(Cairn({"deploy", "churn@production"}), "production");  // alias not set
  ExpectRejected(Cairn({"deploy", "churn@staging", "--canary", "ten"}), "--canary");
  ExpectRejected(Cairn({"deploy", "churn@staging", "--canary", "1:150"}), "0..100");

  Cli::Outcome del = Cairn({"deployments", "delete", "churn-api"});
  ASSERT_EQ(del.exit_code, 0) << Describe(del);
  EXPECT_EQ(CairnJson({"deployments", "list"}), Json::array());
}

}  // namespace
}  // namespace cairn
