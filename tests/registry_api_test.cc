// The model registry over HTTP, end to end: a real server on an ephemeral
// port over a fresh data directory, driven with the exact requests the
// `mlflow` client sends (GET fields in the query string, POST/PATCH/DELETE
// fields in a JSON body), plus Cairn's /api/cairn/v1 extensions: gated alias
// moves, alias history, policies, approvals, a version's files, deployments.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <chrono>
#include <map>
#include <thread>

#include "api/data_directory.h"
#include "api/mlflow_api.h"
#include "api/registry_api.h"
#include "api/registry_messages.h"
#include "base/sha256.h"
#include "base/testing.h"
#include "http/http.h"
#include "tests/support/api_server_test.h"

namespace cairn::api {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::StatusIs;
using http::Method;
using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr char kApprovalPolicy[] = "aliases: [production]\napprovals: {count: 1, role: reviewer}\n";

class RegistryApiTest : public cairn::testing::ApiServerTest {
 protected:
  struct Answer {
    int status;
    Json body;
    std::string raw;
  };
  Answer Call(Method method, const std::string& target, const std::string& body = "",
              const std::string& user = "") {
    std::vector<std::pair<std::string, std::string>> headers;
    if (!user.empty()) headers.push_back({"X-Cairn-User", user});
    auto r = client_->Send(method, target, body, "application/json", headers);
    EXPECT_THAT(r, IsOk());
    if (!r.ok()) return {0, Json(), ""};
    auto parsed = ParseJson(r->body);
    return {r->status, parsed.ok() ? *parsed : Json(r->body), r->body};
  }
  // MLflow's client: GET with the fields in the query string...
  Answer Get(const std::string& endpoint, const std::vector<std::pair<std::string, std::string>>& params = {}) {
    std::string target = "/api/2.0/mlflow/" + endpoint;
    for (size_t i = 0; i < params.size(); ++i) {
      target += (i == 0 ? "?" : "&") + http::UrlEncode(params[i].first) + "=" + http::UrlEncode(params[i].second);
    }
    return Call(Method::kGet, target);
  }
  // ... and every other method with a JSON body.
  Answer Send(Method method, const std::string& endpoint, const Json& body, const std::string& user = "") {
    return Call(method, "/api/2.0/mlflow/" + endpoint, body.dump(), user);
  }
  Answer Post(const std::string& endpoint, const Json& body, const std::string& user = "") {
    return Send(Method::kPost, endpoint, body, user);
  }
  Answer Cairn(Method method, const std::string& path, const Json& body = Json(), const std::string& user = "") {
    return Call(method, "/api/cairn/v1/" + path, body.is_null() ? "" : body.dump(), user);
  }

  static void ExpectError(const Answer& a, int status, const std::string& code) {
    EXPECT_EQ(a.status, status) << a.raw;
    ASSERT_TRUE(a.body.is_object()) << a.raw;
    EXPECT_EQ(a.body.value("error_code", ""), code) << a.raw;
    EXPECT_TRUE(a.body.contains("message")) << a.raw;
  }

  // A run whose artifacts hold `files` (path below the run's artifact root -> content).
  std::string RunWithArtifacts(const std::map<std::string, std::string>& files) {
    Answer a = Post("runs/create", {{"experiment_id", "0"}, {"start_time", 1000}});
    EXPECT_EQ(a.status, 200) << a.raw;
    const std::string run = a.body["run"]["info"]["run_id"].get<std::string>();
    for (const auto& [path, content] : files) {
      auto r = client_->Send(Method::kPut, "/api/2.0/mlflow-artifacts/artifacts/0/" + run + "/artifacts/" + path,
                             content, "application/octet-stream");
      EXPECT_THAT(r, IsOk());
      if (r.ok()) {
        EXPECT_EQ(r->status, 200) << r->body;
      }
    }
    return run;
  }
  std::string ModelRun() {
    return RunWithArtifacts({{"model/MLmodel", "flavors: {}\n"}, {"model/data/model.json", "{\"trees\": []}"}});
  }

  void CreateModel(const std::string& name) {
    Answer a = Post("registered-models/create", {{"name", name}});
    ASSERT_EQ(a.status, 200) << a.raw;
  }
  // Registers runs:/RUN/model as a new version; returns its number.
  std::string CreateVersion(const std::string& name, const std::string& run) {
    Answer a = Post("model-versions/create", {{"name", name}, {"source", "runs:/" + run + "/model"}, {"run_id", run}});
    EXPECT_EQ(a.status, 200) << a.raw;
    return a.body["model_version"].value("version", "");
  }

};

// ------------------------------------------------------- registered models

TEST_F(RegistryApiTest, RegisteredModelLifecycleAsTheMlflowClientSendsIt) {
  Answer created = Post("registered-models/create",
                        {{"name", "churn"}, {"description", "first"}, {"tags", {{{"key", "team"}, {"value", "ml"}}}}});
  ASSERT_EQ(created.status, 200) << created.raw;
  const Json& m = created.body["registered_model"];
  EXPECT_EQ(m["name"], "churn");
  EXPECT_EQ(m["description"], "first");
  EXPECT_GT(m.value("creation_timestamp", 0), 0);
  EXPECT_EQ(m["tags"], Json::parse(R"([{"key":"team","value":"ml"}])"));

  ExpectError(Post("registered-models/create", {{"name", "churn"}}), 400, "RESOURCE_ALREADY_EXISTS");
  ExpectError(Post("registered-models/create", Json::object()), 400, "INVALID_PARAMETER_VALUE");
  ExpectError(Get("registered-models/get", {{"name", "nope"}}), 404, "RESOURCE_DOES_NOT_EXIST");

  Answer updated = Send(Method::kPatch, "registered-models/update", {{"name", "churn"}, {"description", "second"}});
  ASSERT_EQ(updated.status, 200) << updated.raw;
  EXPECT_EQ(updated.body["registered_model"]["description"], "second");

  ASSERT_EQ(Post("registered-models/set-tag", {{"name", "churn"}, {"key", "stage"}, {"value", "beta"}}).status, 200);
  // The mlflow client sends DELETE fields in a JSON body.
  ASSERT_EQ(Send(Method::kDelete, "registered-models/delete-tag", {{"name", "churn"}, {"key", "team"}}).status, 200);
  Answer got = Get("registered-models/get", {{"name", "churn"}});
  ASSERT_EQ(got.status, 200) << got.raw;
  EXPECT_EQ(got.body["registered_model"]["tags"], Json::parse(R"([{"key":"stage","value":"beta"}])"));
  // As MLflow's SQL store: a missing tag is nothing to delete; a missing model is an error.
  EXPECT_EQ(Send(Method::kDelete, "registered-models/delete-tag", {{"name", "churn"}, {"key", "team"}}).status, 200);
  ExpectError(Send(Method::kDelete, "registered-models/delete-tag", {{"name", "nope"}, {"key", "team"}}), 404,
              "RESOURCE_DOES_NOT_EXIST");

  Answer renamed = Post("registered-models/rename", {{"name", "churn"}, {"new_name", "churn2"}});
  ASSERT_EQ(renamed.status, 200) << renamed.raw;
  EXPECT_EQ(renamed.body["registered_model"]["name"], "churn2");
  ExpectError(Get("registered-models/get", {{"name", "churn"}}), 404, "RESOURCE_DOES_NOT_EXIST");

  ASSERT_EQ(Send(Method::kDelete, "registered-models/delete", {{"name", "churn2"}}).status, 200);
  ExpectError(Get("registered-models/get", {{"name", "churn2"}}), 404, "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Send(Method::kDelete, "registered-models/delete", {{"name", "churn2"}}), 404, "RESOURCE_DOES_NOT_EXIST");
}

TEST_F(RegistryApiTest, SearchRegisteredModelsPagesAndFilters) {
  for (const char* name : {"alpha", "beta", "gamma"}) CreateModel(name);
  Answer page = Get("registered-models/search", {{"max_results", "2"}, {"order_by", "name DESC"}});
  ASSERT_EQ(page.status, 200) << page.raw;
  ASSERT_THAT(page.body["registered_models"], SizeIs(2));
  EXPECT_EQ(page.body["registered_models"][0]["name"], "gamma");
  ASSERT_TRUE(page.body.contains("next_page_token")) << page.raw;
  Answer rest = Get("registered-models/search", {{"max_results", "2"},
                                                  {"order_by", "name DESC"},
                                                  {"page_token", page.body["next_page_token"].get<std::string>()}});
  ASSERT_EQ(rest.status, 200) << rest.raw;
  ASSERT_THAT(rest.body["registered_models"], SizeIs(1));
  EXPECT_EQ(rest.body["registered_models"][0]["name"], "alpha");
  EXPECT_FALSE(rest.body.contains("next_page_token"));

  Answer filtered = Get("registered-models/search", {{"filter", "name LIKE 'al%'"}});
  ASSERT_EQ(filtered.status, 200) << filtered.raw;
  ASSERT_THAT(filtered.body["registered_models"], SizeIs(1));
  EXPECT_EQ(filtered.body["registered_models"][0]["name"], "alpha");

  Answer none = Get("registered-models/search", {{"filter", "name = 'zeta'"}});
  ASSERT_EQ(none.status, 200) << none.raw;
  EXPECT_EQ(none.body, Json::object());  // empty repeated fields are left out, as MLflow does

  ExpectError(Get("registered-models/search", {{"max_results", "5000"}}), 400, "INVALID_PARAMETER_VALUE");
  ExpectError(Get("registered-models/search", {{"filter", "name ==== 'x'"}}), 400, "INVALID_PARAMETER_VALUE");
}

// ---------------------------------------------------------- model versions

TEST_F(RegistryApiTest, VersionFromRunArtifactsRecordsTheirDigest) {
  CreateModel("churn");
  const std::string run = ModelRun();
  Answer a = Post("model-versions/create",
                  {{"name", "churn"}, {"source", "runs:/" + run + "/model"}, {"run_id", run}}, "ana");
  ASSERT_EQ(a.status, 200) << a.raw;
  const Json& v = a.body["model_version"];
  EXPECT_EQ(v["name"], "churn");
  EXPECT_EQ(v["version"], "1");  // a string, as in MLflow's proto
  EXPECT_EQ(v["run_id"], run);
  EXPECT_EQ(v["source"], "runs:/" + run + "/model");
  EXPECT_EQ(v["status"], "READY");
  EXPECT_EQ(v["current_stage"], "None");
  EXPECT_EQ(v["user_id"], "ana");

  // The digest covers the sorted "path\tsha256\tsize\n" lines of the folder.
  const std::string mlmodel = "flavors: {}\n", data = "{\"trees\": []}";
  const std::string manifest = fmt::format("MLmodel\t{}\t{}\ndata/model.json\t{}\t{}\n", Sha256::Of(mlmodel).ToHex(),
                                           mlmodel.size(), Sha256::Of(data).ToHex(), data.size());
  Answer files = Cairn(Method::kGet, "models/churn/versions/1/files");
  ASSERT_EQ(files.status, 200) << files.raw;
  EXPECT_EQ(files.body["artifact_digest"], Sha256::Of(manifest).ToHex());
  ASSERT_THAT(files.body["files"], SizeIs(2));
  EXPECT_EQ(files.body["files"][1]["path"], "data/model.json");
  EXPECT_EQ(files.body["files"][1]["size"], data.size());
  EXPECT_EQ(files.body["files"][1]["digest"], Sha256::Of(data).ToHex());

  auto bytes = client_->Send(Method::kGet, "/api/cairn/v1/models/churn/versions/1/files/data/model.json");
  ASSERT_THAT(bytes, IsOk());
  EXPECT_EQ(bytes->status, 200);
  EXPECT_EQ(bytes->body, data);
  ExpectError(Cairn(Method::kGet, "models/churn/versions/1/files/nope.bin"), 404, "RESOURCE_DOES_NOT_EXIST");

  Answer uri = Get("model-versions/get-download-uri", {{"name", "churn"}, {"version", "1"}});
  ASSERT_EQ(uri.status, 200) << uri.raw;
  EXPECT_EQ(uri.body["artifact_uri"], "mlflow-artifacts:/0/" + run + "/artifacts/model");

  // The other source forms name the same folder; versions count up.
  Answer b = Post("model-versions/create",
                  {{"name", "churn"}, {"source", "mlflow-artifacts:/0/" + run + "/artifacts/model"}, {"run_id", run}});
  ASSERT_EQ(b.status, 200) << b.raw;
  EXPECT_EQ(b.body["model_version"]["version"], "2");
  Answer c = Post("model-versions/create",
                  {{"name", "churn"}, {"source", "mlflow-artifacts://localhost:5000/0/" + run + "/artifacts/model/"}});
  ASSERT_EQ(c.status, 200) << c.raw;
  EXPECT_EQ(c.body["model_version"]["version"], "3");
  Answer same = Cairn(Method::kGet, "models/churn/versions/3/files");
  EXPECT_EQ(same.body["artifact_digest"], files.body["artifact_digest"]);

  // The files served are the ones registered, even after the run's are gone.
  ASSERT_EQ(client_->Send(Method::kDelete, "/api/2.0/mlflow-artifacts/artifacts/0/" + run + "/artifacts/model")->status,
            200);
  Answer after = Cairn(Method::kGet, "models/churn/versions/1/files");
  ASSERT_EQ(after.status, 200) << after.raw;
  EXPECT_EQ(after.body["files"], files.body["files"]);
}

TEST_F(RegistryApiTest, BadVersionSourcesAreRefusedAndChangeNothing) {
  CreateModel("churn");
  const std::string run = ModelRun();
  const std::string empty_run = RunWithArtifacts({});
  Answer no_files = Post("model-versions/create",
                         {{"name", "churn"}, {"source", "runs:/" + empty_run + "/model"}, {"run_id", empty_run}});
  ExpectError(no_files, 400, "INVALID_PARAMETER_VALUE");
  EXPECT_THAT(no_files.body.value("message", ""), HasSubstr("no files"));
  ExpectError(Post("model-versions/create", {{"name", "churn"}, {"source", "s3://bucket/model"}}), 400,
              "INVALID_PARAMETER_VALUE");
  ExpectError(Post("model-versions/create", {{"name", "churn"}, {"source", "runs:/" + run + "/../other/model"}}), 400,
              "INVALID_PARAMETER_VALUE");
  ExpectError(Post("model-versions/create",
                   {{"name", "churn"}, {"source", "mlflow-artifacts:/0/" + run + "/artifacts/%2e%2e/x"}}),
              400, "INVALID_PARAMETER_VALUE");
  // A source inside another run than run_id names.
  ExpectError(Post("model-versions/create",
                   {{"name", "churn"}, {"source", "runs:/" + run + "/model"}, {"run_id", empty_run}}),
              400, "INVALID_PARAMETER_VALUE");
  ExpectError(Post("model-versions/create", {{"name", "churn"}, {"source", "runs:/" + run + "/model"}, {"run_id", "f00"}}),
              404, "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Post("model-versions/create", {{"name", "nope"}, {"source", "runs:/" + run + "/model"}}), 404,
              "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Post("model-versions/create", {{"name", "churn"}}), 400, "INVALID_PARAMETER_VALUE");

  Answer versions = Get("model-versions/search", {{"filter", "name = 'churn'"}});
  ASSERT_EQ(versions.status, 200) << versions.raw;
  EXPECT_FALSE(versions.body.contains("model_versions")) << versions.raw;
  // The first good version is still number 1.
  EXPECT_EQ(CreateVersion("churn", run), "1");
}

TEST_F(RegistryApiTest, VersionUpdateStagesTagsAndDelete) {
  CreateModel("churn");
  const std::string run = ModelRun();
  ASSERT_EQ(CreateVersion("churn", run), "1");
  ASSERT_EQ(CreateVersion("churn", run), "2");

  Answer upd = Send(Method::kPatch, "model-versions/update", {{"name", "churn"}, {"version", "1"}, {"description", "d"}});
  ASSERT_EQ(upd.status, 200) << upd.raw;
  EXPECT_EQ(upd.body["model_version"]["description"], "d");

  Answer staged = Post("model-versions/transition-stage",
                       {{"name", "churn"}, {"version", "1"}, {"stage", "production"}, {"archive_existing_versions", false}});
  ASSERT_EQ(staged.status, 200) << staged.raw;
  EXPECT_EQ(staged.body["model_version"]["current_stage"], "Production");
  ExpectError(Post("model-versions/transition-stage",
                   {{"name", "churn"}, {"version", "1"}, {"stage", "Sideways"}, {"archive_existing_versions", false}}),
              400, "INVALID_PARAMETER_VALUE");

  // get-latest-versions: the client POSTs it, and GET works too.
  Answer latest = Post("registered-models/get-latest-versions", {{"name", "churn"}, {"stages", {"Production"}}});
  ASSERT_EQ(latest.status, 200) << latest.raw;
  ASSERT_THAT(latest.body["model_versions"], SizeIs(1));
  EXPECT_EQ(latest.body["model_versions"][0]["version"], "1");
  Answer latest_get = Get("registered-models/get-latest-versions", {{"name", "churn"}, {"stages", "None"}});
  ASSERT_EQ(latest_get.status, 200) << latest_get.raw;
  ASSERT_THAT(latest_get.body["model_versions"], SizeIs(1));
  EXPECT_EQ(latest_get.body["model_versions"][0]["version"], "2");

  ASSERT_EQ(Post("model-versions/set-tag", {{"name", "churn"}, {"version", "2"}, {"key", "k"}, {"value", "v"}}).status, 200);
  Answer tagged = Get("model-versions/get", {{"name", "churn"}, {"version", "2"}});
  EXPECT_EQ(tagged.body["model_version"]["tags"], Json::parse(R"([{"key":"k","value":"v"}])"));
  ASSERT_EQ(Send(Method::kDelete, "model-versions/delete-tag", {{"name", "churn"}, {"version", "2"}, {"key", "k"}}).status,
            200);
  EXPECT_FALSE(Get("model-versions/get", {{"name", "churn"}, {"version", "2"}}).body["model_version"].contains("tags"));

  ExpectError(Get("model-versions/get", {{"name", "churn"}, {"version", "abc"}}), 400, "INVALID_PARAMETER_VALUE");
  ExpectError(Get("model-versions/get", {{"name", "churn"}, {"version", "9"}}), 404, "RESOURCE_DOES_NOT_EXIST");

  Answer search = Get("model-versions/search", {{"filter", "run_id = '" + run + "'"}, {"order_by", "version_number ASC"}});
  ASSERT_EQ(search.status, 200) << search.raw;
  ASSERT_THAT(search.body["model_versions"], SizeIs(2));
  EXPECT_EQ(search.body["model_versions"][0]["version"], "1");

  ASSERT_EQ(Send(Method::kDelete, "model-versions/delete", {{"name", "churn"}, {"version", "1"}}).status, 200);
  ExpectError(Get("model-versions/get", {{"name", "churn"}, {"version", "1"}}), 404, "RESOURCE_DOES_NOT_EXIST");
  // Numbers are not reused.
  EXPECT_EQ(CreateVersion("churn", run), "3");
}

TEST_F(RegistryApiTest, AjaxApiPrefixServesTheSameRoutes) {
  CreateModel("churn");
  Answer a = Call(Method::kGet, "/ajax-api/2.0/mlflow/registered-models/get?name=churn");
  ASSERT_EQ(a.status, 200) << a.raw;
  EXPECT_EQ(a.body["registered_model"]["name"], "churn");
}

// ------------------------------------------------------------------ aliases

TEST_F(RegistryApiTest, AliasesThroughMlflowEndpointsAreRecordedInHistory) {
  CreateModel("churn");
  const std::string run = ModelRun();
  CreateVersion("churn", run);
  CreateVersion("churn", run);

  Answer set = Post("registered-models/alias", {{"name", "churn"}, {"alias", "champion"}, {"version", "1"}}, "ana");
  ASSERT_EQ(set.status, 200) << set.raw;
  EXPECT_EQ(set.body, Json::object());
  Answer by_alias = Get("registered-models/alias", {{"name", "churn"}, {"alias", "champion"}});
  ASSERT_EQ(by_alias.status, 200) << by_alias.raw;
  EXPECT_EQ(by_alias.body["model_version"]["version"], "1");
  EXPECT_EQ(by_alias.body["model_version"]["aliases"], Json::array({"champion"}));
  Answer model = Get("registered-models/get", {{"name", "churn"}});
  EXPECT_EQ(model.body["registered_model"]["aliases"], Json::parse(R"([{"alias":"champion","version":"1"}])"));

  ASSERT_EQ(Post("registered-models/alias", {{"name", "churn"}, {"alias", "champion"}, {"version", "2"}}, "bob").status,
            200);
  ExpectError(Post("registered-models/alias", {{"name", "churn"}, {"alias", "latest"}, {"version", "2"}}), 400,
              "INVALID_PARAMETER_VALUE");
  ExpectError(Post("registered-models/alias", {{"name", "churn"}, {"alias", "champion"}, {"version", "7"}}), 404,
              "RESOURCE_DOES_NOT_EXIST");
  ASSERT_EQ(Send(Method::kDelete, "registered-models/alias", {{"name", "churn"}, {"alias", "champion"}}, "cy").status,
            200);
  ExpectError(Get("registered-models/alias", {{"name", "churn"}, {"alias", "champion"}}), 404,
              "RESOURCE_DOES_NOT_EXIST");

  Answer history = Cairn(Method::kGet, "models/churn/aliases/champion/history");
  ASSERT_EQ(history.status, 200) << history.raw;
  const Json& h = history.body["history"];
  ASSERT_THAT(h, SizeIs(3));  // newest first
  EXPECT_EQ(h[0]["from_version"], 2);
  EXPECT_TRUE(h[0]["to_version"].is_null());
  EXPECT_EQ(h[0]["user"], "cy");
  EXPECT_EQ(h[1]["from_version"], 1);
  EXPECT_EQ(h[1]["to_version"], 2);
  EXPECT_EQ(h[1]["user"], "bob");
  EXPECT_TRUE(h[2]["from_version"].is_null());
  EXPECT_EQ(h[2]["to_version"], 1);
  EXPECT_EQ(h[2]["user"], "ana");
}

TEST_F(RegistryApiTest, AliasHistoryAnswersWhichVersionWasThereAtATime) {
  CreateModel("churn");
  const std::string run = ModelRun();
  CreateVersion("churn", run);
  CreateVersion("churn", run);
  Answer first = Cairn(Method::kPost, "models/churn/aliases/production", {{"version", 1}, {"reason", "first"}});
  ASSERT_EQ(first.status, 200) << first.raw;
  EXPECT_TRUE(first.body["previous_version"].is_null());
  // Two moves in one millisecond could not be told apart by time.
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  Answer second = Cairn(Method::kPost, "models/churn/aliases/production", {{"version", 2}, {"reason", "better"}});
  ASSERT_EQ(second.status, 200) << second.raw;
  EXPECT_EQ(second.body["previous_version"], 1);

  Answer history = Cairn(Method::kGet, "models/churn/aliases/production/history");
  ASSERT_EQ(history.status, 200) << history.raw;
  ASSERT_THAT(history.body["history"], SizeIs(2));
  EXPECT_EQ(history.body["history"][0]["reason"], "better");
  const int64_t t1 = history.body["history"][1]["time_ms"].get<int64_t>();

  Answer at = Cairn(Method::kGet, "models/churn/aliases/production/history?at=" + std::to_string(t1));
  ASSERT_EQ(at.status, 200) << at.raw;
  EXPECT_EQ(at.body["version"], 1);
  Answer now = Cairn(Method::kGet, "models/churn/aliases/production/history?at=" + std::to_string(t1 + 3600000));
  EXPECT_EQ(now.body["version"], 2);
  Answer before = Cairn(Method::kGet, "models/churn/aliases/production/history?at=1970-01-02");
  ASSERT_EQ(before.status, 200) << before.raw;
  EXPECT_EQ(before.body["at"], 86400000);
  EXPECT_TRUE(before.body["version"].is_null());
  ExpectError(Cairn(Method::kGet, "models/churn/aliases/production/history?at=March"), 400, "INVALID_PARAMETER_VALUE");
}

TEST_F(RegistryApiTest, GateRefusesThroughBothApisAndChangesNothing) {
  CreateModel("churn");
  const std::string run = ModelRun();
  CreateVersion("churn", run);
  Answer policy = Cairn(Method::kPut, "models/churn/policy", {{"yaml", kApprovalPolicy}}, "lead");
  ASSERT_EQ(policy.status, 200) << policy.raw;
  EXPECT_EQ(policy.body["policy"]["approvals"]["role"], "reviewer");
  Answer shown = Cairn(Method::kGet, "models/churn/policy");
  EXPECT_EQ(shown.body["policy"], policy.body["policy"]);
  EXPECT_EQ(shown.body["user"], "lead");

  // MLflow's endpoint: INVALID_STATE (400), every unmet condition named.
  Answer mlflow = Post("registered-models/alias", {{"name", "churn"}, {"alias", "production"}, {"version", "1"}});
  ExpectError(mlflow, 400, "INVALID_STATE");
  EXPECT_THAT(mlflow.body.value("message", ""), HasSubstr("approvals"));
  // Cairn's: 412 with the whole decision.
  Answer cairn = Cairn(Method::kPost, "models/churn/aliases/production", {{"version", 1}}, "ana");
  EXPECT_EQ(cairn.status, 412) << cairn.raw;
  EXPECT_EQ(cairn.body["error_code"], "INVALID_STATE");
  const Json& decision = cairn.body["decision"];
  EXPECT_EQ(decision["allowed"], false);
  EXPECT_EQ(decision["user"], "ana");
  ASSERT_FALSE(decision["conditions"].empty()) << cairn.raw;
  EXPECT_EQ(decision["conditions"][0]["met"], false);
  ExpectError(Get("registered-models/alias", {{"name", "churn"}, {"alias", "production"}}), 404,
              "RESOURCE_DOES_NOT_EXIST");
  // An alias the policy does not guard moves freely.
  EXPECT_EQ(Cairn(Method::kPost, "models/churn/aliases/staging", {{"version", 1}}).status, 200);

  // An approval by a user without the role does not count; with it, it does.
  ASSERT_EQ(Cairn(Method::kPost, "models/churn/versions/1/approvals", {{"alias", "production"}}, "mallory").status, 200);
  EXPECT_EQ(Cairn(Method::kPost, "models/churn/aliases/production", {{"version", 1}}).status, 412);
  Answer role = Cairn(Method::kPost, "roles/reviewer/members", {{"user", "rita"}});
  ASSERT_EQ(role.status, 200) << role.raw;
  EXPECT_EQ(role.body["members"], Json::array({"rita"}));
  Answer approval = Cairn(Method::kPost, "models/churn/versions/1/approvals", {{"alias", "production"}, {"comment", "ok"}},
                          "rita");
  ASSERT_EQ(approval.status, 200) << approval.raw;
  EXPECT_EQ(approval.body["approval"]["user"], "rita");
  ExpectError(Cairn(Method::kPost, "models/churn/versions/1/approvals", {{"alias", "production"}}, "rita"), 400,
              "RESOURCE_ALREADY_EXISTS");
  Answer approvals = Cairn(Method::kGet, "models/churn/versions/1/approvals?alias=production");
  ASSERT_THAT(approvals.body["approvals"], SizeIs(2));

  Answer moved = Cairn(Method::kPost, "models/churn/aliases/production", {{"version", 1}, {"reason", "approved"}}, "ana");
  ASSERT_EQ(moved.status, 200) << moved.raw;
  EXPECT_EQ(moved.body["decision"]["allowed"], true);
  Answer history = Cairn(Method::kGet, "models/churn/aliases/production/history");
  ASSERT_THAT(history.body["history"], SizeIs(1));
  EXPECT_EQ(history.body["history"][0]["decision_id"], moved.body["decision"]["id"]);
  EXPECT_EQ(history.body["history"][0]["reason"], "approved");

  Answer decisions = Cairn(Method::kGet, "models/churn/decisions?alias=production");
  ASSERT_EQ(decisions.status, 200) << decisions.raw;
  ASSERT_GE(decisions.body["decisions"].size(), 4u);
  EXPECT_EQ(decisions.body["decisions"][0]["allowed"], true);  // newest first
  EXPECT_EQ(decisions.body["decisions"][1]["allowed"], false);

  ASSERT_EQ(Cairn(Method::kDelete, "roles/reviewer/members", {{"user", "rita"}}).body["members"], Json::array());
  ExpectError(Cairn(Method::kPut, "models/churn/policy", {{"yaml", "approvals: {count: 0}"}}), 400,
              "INVALID_PARAMETER_VALUE");
}

// -------------------------------------------------------------- deployments

TEST_F(RegistryApiTest, DeploymentsAreValidatedAndBumpTheChangeCounter) {
  CreateModel("churn");
  const std::string run = ModelRun();
  CreateVersion("churn", run);
  CreateVersion("churn", run);
  const Json body = {{"model", "churn"},
                     {"alias", "production"},
                     {"canary", {{"version", 2}, {"percent", 10}}},
                     {"config", {{"max_batch_size", 8}}}};
  ExpectError(Cairn(Method::kPut, "deployments/churn", body), 400, "INVALID_STATE");  // alias not set
  ASSERT_EQ(Cairn(Method::kPost, "models/churn/aliases/production", {{"version", 1}}).status, 200);
  Answer counter = Cairn(Method::kGet, "registry/changes");
  ASSERT_EQ(counter.status, 200) << counter.raw;
  const int64_t before = counter.body["counter"].get<int64_t>();

  Json unknown_model = body;
  unknown_model["model"] = "nope";
  ExpectError(Cairn(Method::kPut, "deployments/churn", unknown_model), 404, "RESOURCE_DOES_NOT_EXIST");
  Json bad_percent = body;
  bad_percent["canary"]["percent"] = 150;
  ExpectError(Cairn(Method::kPut, "deployments/churn", bad_percent), 400, "INVALID_PARAMETER_VALUE");
  Json missing_canary = body;
  missing_canary["canary"]["version"] = 9;
  ExpectError(Cairn(Method::kPut, "deployments/churn", missing_canary), 404, "RESOURCE_DOES_NOT_EXIST");
  Json missing_shadow = body;
  missing_shadow["shadow"] = {{"version", 9}};
  ExpectError(Cairn(Method::kPut, "deployments/churn", missing_shadow), 404, "RESOURCE_DOES_NOT_EXIST");
  // Serving settings no inference plane could use are refused at the door.
  for (Json config : {Json{{"max_batch_size", 0}}, Json{{"instances", "two"}}, Json{{"queue_capacity", -1}},
                      Json{{"max_queue_delay_us", 1.5}}}) {
    Json bad_config = body;
    bad_config["config"] = config;
    ExpectError(Cairn(Method::kPut, "deployments/churn", bad_config), 400, "INVALID_PARAMETER_VALUE");
  }
  ExpectError(Cairn(Method::kGet, "deployments/churn"), 404, "RESOURCE_DOES_NOT_EXIST");

  Answer put = Cairn(Method::kPut, "deployments/churn", body);
  ASSERT_EQ(put.status, 200) << put.raw;
  const Json& d = put.body["deployment"];
  EXPECT_EQ(d["model"], "churn");
  EXPECT_EQ(d["alias"], "production");
  EXPECT_EQ(d["version"], 1);
  EXPECT_EQ(d["canary"], Json::parse(R"({"version":2,"percent":10})"));
  EXPECT_EQ(d["config"]["max_batch_size"], 8);
  EXPECT_EQ(d["generation"], 1);
  Answer again = Cairn(Method::kPut, "deployments/churn", body);
  EXPECT_EQ(again.body["deployment"]["generation"], 2);
  EXPECT_GT(Cairn(Method::kGet, "registry/changes").body["counter"].get<int64_t>(), before);

  Answer list = Cairn(Method::kGet, "deployments");
  ASSERT_EQ(list.status, 200) << list.raw;
  ASSERT_THAT(list.body["deployments"], SizeIs(1));
  EXPECT_EQ(list.body["deployments"][0]["name"], "churn");

  ASSERT_EQ(Cairn(Method::kDelete, "deployments/churn").status, 200);
  ExpectError(Cairn(Method::kGet, "deployments/churn"), 404, "RESOURCE_DOES_NOT_EXIST");
}

TEST_F(RegistryApiTest, LineageAndUnknownPaths) {
  CreateModel("churn");
  const std::string run = ModelRun();
  CreateVersion("churn", run);
  Answer graph = Cairn(Method::kGet, "models/churn/versions/1/lineage");
  ASSERT_EQ(graph.status, 200) << graph.raw;
  bool has_run = false;
  for (const Json& n : graph.body["nodes"]) {
    has_run |= n.value("type", "") == "run" && n.value("attrs", Json::object()).value("run_id", "") == run;
  }
  EXPECT_TRUE(has_run) << graph.raw;
  ExpectError(Cairn(Method::kGet, "models/churn/versions/7/lineage"), 404, "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Cairn(Method::kGet, "models/churn/versions/x/lineage"), 400, "INVALID_PARAMETER_VALUE");
  ExpectError(Cairn(Method::kGet, "models/churn/nothing"), 404, "ENDPOINT_NOT_FOUND");
}

TEST_F(RegistryApiTest, ModelNamesWithASlashWorkThroughCairnEndpoints) {
  // MLflow allows '/' in names; clients send it as %2F in a path segment.
  CreateModel("team/churn");
  const std::string run = ModelRun();
  CreateVersion("team/churn", run);
  Answer moved = Cairn(Method::kPost, "models/team%2Fchurn/aliases/production", {{"version", 1}, {"reason", "first"}});
  ASSERT_EQ(moved.status, 200) << moved.raw;
  Answer history = Cairn(Method::kGet, "models/team%2Fchurn/aliases/production/history");
  ASSERT_EQ(history.status, 200) << history.raw;
  ASSERT_THAT(history.body["history"], SizeIs(1));
  EXPECT_EQ(history.body["history"][0]["reason"], "first");
  Answer graph = Cairn(Method::kGet, "models/team%2Fchurn/versions/1/lineage");
  EXPECT_EQ(graph.status, 200) << graph.raw;
  Answer files = Cairn(Method::kGet, "models/team%2Fchurn/versions/1/files");
  EXPECT_EQ(files.status, 200) << files.raw;
  // Unencoded, the name's '/' splits the path: no such model or endpoint.
  EXPECT_NE(Cairn(Method::kGet, "models/team/churn/aliases/production/history").status, 200);
  Answer other = Cairn(Method::kGet, "models/team%2Fother/aliases/production/history");
  EXPECT_EQ(other.body.value("name", ""), "team/other") << other.raw;
  EXPECT_THAT(other.body["history"], SizeIs(0));
}

// ------------------------------------------------------------ unit pieces

// The value, or -1 for an error (the tests' values are all >= 0).
int64_t ValueOr(const absl::StatusOr<int64_t>& v) { return v.ok() ? *v : -1; }

TEST(RegistryMessagesTest, ParseTimeMsReadsMillisAndIso8601) {
  EXPECT_EQ(ValueOr(ParseTimeMs("1234")), 1234);
  EXPECT_EQ(ValueOr(ParseTimeMs("1970-01-02")), 86400000);
  EXPECT_EQ(ValueOr(ParseTimeMs("2026-03-03T12:00:00Z")), 1772539200000);
  EXPECT_EQ(ValueOr(ParseTimeMs("2026-03-03 12:00:00.250+01:00")), 1772535600250);
  EXPECT_EQ(ValueOr(ParseTimeMs("2026-03-03T12:00")), 1772539200000);
  for (const char* bad : {"", "2026-02-30", "2026-13-01", "2026-03-03T25:00", "yesterday", "2026-03-03Tx"}) {
    EXPECT_THAT(ParseTimeMs(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
}

TEST(RegistryMessagesTest, VersionsArePositiveIntegersFromStringsOrNumbers) {
  EXPECT_EQ(ValueOr(GetVersion(Json{{"version", "3"}}, "version")), 3);
  EXPECT_EQ(ValueOr(GetVersion(Json{{"version", 4}}, "version")), 4);
  for (const Json& bad : {Json{{"version", "0"}}, Json{{"version", "-1"}}, Json{{"version", "1x"}},
                          Json{{"version", 2.5}}, Json::object(), Json{{"version", "99999999999999999999"}}}) {
    EXPECT_THAT(GetVersion(bad, "version"), StatusIs(absl::StatusCode::kInvalidArgument)) << bad.dump();
  }
}

TEST(RegistryMessagesTest, ManifestRoundTripsAndRejectsGarbage) {
  std::vector<ModelFile> files = {{"b", 2, std::string(64, 'b')}, {"a/x", 1, std::string(64, 'a')}};
  const std::string text = ArtifactManifest(files);
  EXPECT_EQ(text, "a/x\t" + std::string(64, 'a') + "\t1\nb\t" + std::string(64, 'b') + "\t2\n");
  auto parsed = ParseArtifactManifest(text);
  ASSERT_THAT(parsed, IsOk());
  ASSERT_THAT(*parsed, SizeIs(2));
  EXPECT_EQ((*parsed)[0].path, "a/x");
  EXPECT_EQ((*parsed)[1].size, 2);
  EXPECT_THAT(ParseArtifactManifest("a\tzz\t1\n"), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(ParseArtifactManifest("a\t" + std::string(64, 'a') + "\t1"), StatusIs(absl::StatusCode::kDataLoss));
}

}  // namespace
}  // namespace cairn::api
