// `cairn serve` (a stand-alone inference replica following a Cairn server
// over HTTP) and `cairn predict`, as a user runs them: real processes, a
// model registered through the MLflow APIs, an alias move the replica
// follows on its own.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "base/json.h"
#include "base/testing.h"
#include "http/http.h"
#include "tests/support/cli_process.h"
#include "tests/support/server_process.h"

namespace cairn {
namespace {

using ::cairn::testing::Cli;
using ::cairn::testing::Describe;
using ::cairn::testing::IsOk;
using ::cairn::testing::ReadFileOrEmpty;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

class ServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string cmd = std::string("/usr/bin/python3 ") + CAIRN_SOURCE_DIR +
                      "/src/serving/testdata/make_models.py " + tmp_.path() + "/fixtures xgb_json > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    auto server = testing::ServerProcess::Start(testing::CairnBinary(), tmp_.path() + "/data");
    ASSERT_THAT(server, IsOk());
    server_ = std::move(server).value();
    url_ = "http://127.0.0.1:" + std::to_string(server_->port());
    auto client = http::Client::Create("127.0.0.1", server_->port());
    ASSERT_THAT(client, IsOk());
    api_ = std::move(client).value();
    fs::create_directories(tmp_.path() + "/scratch");
  }

  Json Call(http::Method method, const std::string& target, const Json& body) {
    auto r = api_->Send(method, target, body.dump());
    EXPECT_THAT(r, IsOk());
    EXPECT_EQ(r->status, 200) << target << ": " << r->body;
    auto j = ParseJson(r->body.empty() ? "{}" : r->body);
    return j.ok() ? *j : Json();
  }

  // A new version of `model` from the fixture folder (plus `extra` as a file,
  // so that each version has its own artifact digest).
  int64_t Register(const std::string& model, const std::string& extra) {
    Json run = Call(http::Method::kPost, "/api/2.0/mlflow/runs/create", {{"experiment_id", "0"}})["run"];
    std::string run_id = run["info"]["run_id"];
    std::string base = run["info"]["artifact_uri"].get<std::string>().substr(std::string("mlflow-artifacts:").size());
    auto put = [&](const std::string& name, const std::string& bytes) {
      auto r = api_->Send(http::Method::kPut, "/api/2.0/mlflow-artifacts/artifacts" + base + "/model/" + name, bytes,
                          "application/octet-stream");
      ASSERT_THAT(r, IsOk());
      ASSERT_EQ(r->status, 200) << r->body;
    };
    std::string fixture = tmp_.path() + "/fixtures/xgb_json/";
    put("model.json", ReadFileOrEmpty(fixture + "model.json"));
    put("cairn-model.yaml", ReadFileOrEmpty(fixture + "cairn-model.yaml"));
    put("NOTES.md", extra);
    // A second version of an existing model: "already exists" is expected here.
    (void)api_->Send(http::Method::kPost, "/api/2.0/mlflow/registered-models/create", Json{{"name", model}}.dump());
    Json v = Call(http::Method::kPost, "/api/2.0/mlflow/model-versions/create",
                  {{"name", model}, {"source", "runs:/" + run_id + "/model"}, {"run_id", run_id}});
    return std::stoll(v["model_version"]["version"].get<std::string>());
  }

  void SetProduction(int64_t version) {
    Call(http::Method::kPost, "/api/2.0/mlflow/registered-models/alias",
         {{"name", "xgb"}, {"alias", "production"}, {"version", std::to_string(version)}});
  }

  // The version a server answers `xgb` requests with ("" when it fails).
  static std::string AnsweringVersion(http::Client& client) {
    Json request = {{"inputs", {{{"name", "features"}, {"datatype", "FP32"}, {"shape", {1, 30}},
                                 {"data", std::vector<float>(30, 0.25f)}}}}};
    auto r = client.Send(http::Method::kPost, "/v2/models/xgb/infer", request.dump());
    if (!r.ok() || r->status != 200) return "";
    return std::string(r->Header("x-cairn-model-version").value_or(""));
  }

  cairn::testing::ScopedTempDir tmp_;
  std::unique_ptr<testing::ServerProcess> server_;
  std::unique_ptr<http::Client> api_;
  std::string url_;
};

TEST_F(ServeTest, ReplicaFollowsTheServersAliasAndPredictWorksBothWays) {
  SetProduction(Register("xgb", "first"));
  Call(http::Method::kPut, "/api/cairn/v1/deployments/xgb", {{"model", "xgb"}, {"alias", "production"}});

  Cli remote({"--url", url_}, tmp_.path() + "/scratch");
  int slot = 0;
  pid_t replica = remote.Start({"serve", "--port", "0", "--poll-ms", "50", "--cache-dir", tmp_.path() + "/cache"},
                               &slot);
  ASSERT_GT(replica, 0);
  int port = 0;
  for (int i = 0; i < 300 && port == 0; ++i) {
    std::smatch m;
    std::string out = ReadFileOrEmpty(tmp_.path() + "/scratch/out." + std::to_string(slot));
    if (std::regex_search(out, m, std::regex("listening on http://127.0.0.1:(\\d+)"))) port = std::stoi(m[1]);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_GT(port, 0) << ReadFileOrEmpty(tmp_.path() + "/scratch/err." + std::to_string(slot));
  auto replica_client = http::Client::Create("127.0.0.1", port);
  ASSERT_THAT(replica_client, IsOk());

  std::string answered;
  for (int i = 0; i < 500 && answered != "1"; ++i) {
    answered = AnsweringVersion(**replica_client);
    if (answered != "1") std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(answered, "1");
  // The model files came over HTTP into the replica's own cache.
  EXPECT_FALSE(fs::is_empty(tmp_.path() + "/cache"));

  // Moving the alias on the server: the replica follows within its poll interval.
  int64_t v2 = Register("xgb", "second");
  SetProduction(v2);
  for (int i = 0; i < 500 && answered != std::to_string(v2); ++i) {
    answered = AnsweringVersion(**replica_client);
    if (answered != std::to_string(v2)) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(answered, std::to_string(v2));

  // `cairn predict` against the replica, with rows and with binary tensors.
  std::string rows = Json::array({std::vector<float>(30, 0.5f)}).dump();
  Cli at_replica({"--url", "http://127.0.0.1:" + std::to_string(port)}, tmp_.path() + "/scratch");
  Cli::Outcome o = at_replica.Run({"predict", "xgb", "--input", rows});
  EXPECT_EQ(o.exit_code, 0) << Describe(o);
  EXPECT_THAT(o.out, HasSubstr("version " + std::to_string(v2)));
  EXPECT_THAT(o.out, HasSubstr("predict FP32 [1]"));
  o = at_replica.Run({"predict", "xgb", "--input", rows, "--binary"});
  EXPECT_EQ(o.exit_code, 0) << Describe(o);
  // Bad input: a clear message, exit 1.
  o = at_replica.Run({"predict", "xgb", "--input", "[[1, 2, 3]]"});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_THAT(o.err, HasSubstr("[-1,30]"));
  o = at_replica.Run({"predict", "nope", "--input", rows});
  EXPECT_EQ(o.exit_code, 1);

  // Embedded: `cairn predict` loads the deployment in its own process.
  Cli embedded({"--data-dir", tmp_.path() + "/data"}, tmp_.path() + "/scratch");
  o = embedded.Run({"predict", "xgb", "--input", rows});
  EXPECT_EQ(o.exit_code, 0) << Describe(o);
  EXPECT_THAT(o.out, HasSubstr("version " + std::to_string(v2)));

  kill(replica, SIGTERM);
  Cli::Outcome stopped = remote.Finish(replica, slot);
  EXPECT_EQ(stopped.exit_code, 0) << Describe(stopped);
}

TEST(ServerOptionsTest, PayloadSampleOutsideZeroToOneIsRefused) {
  cairn::testing::ScopedTempDir tmp;
  Cli cli({"--data-dir", tmp.path() + "/data"}, tmp.path());
  for (const std::string bad : {"2", "-0.5", "half", ""}) {
    Cli::Outcome o = cli.Run({"server", "--port", "0", "--payload-sample", bad});
    EXPECT_EQ(o.exit_code, 1) << Describe(o);
    EXPECT_THAT(o.err, HasSubstr("payload_sample must be a number from 0 to 1, got '" + bad + "'")) << Describe(o);
  }
}

}  // namespace
}  // namespace cairn
