// The MLflow-compatible API, end to end: a real server on an ephemeral port
// over a fresh data directory, driven by a real HTTP client. Every endpoint,
// its MLflow semantics and its error cases.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "api/data_directory.h"
#include "api/mlflow_api.h"
#include "base/testing.h"
#include "http/http.h"
#include "tests/support/api_server_test.h"

namespace cairn::api {
namespace {

using ::cairn::testing::IsOk;
using http::Method;
using ::testing::HasSubstr;

class ApiTest : public cairn::testing::ApiServerTest {
 protected:
  struct Answer {
    int status;
    Json body;
  };
  Answer Call(Method method, const std::string& target, const std::string& body = "") {
    auto r = client_->Send(method, target, body);
    EXPECT_THAT(r, IsOk());
    if (!r.ok()) return {0, Json()};
    auto parsed = ParseJson(r->body);
    return {r->status, parsed.ok() ? *parsed : Json(r->body)};
  }
  Answer Post(const std::string& endpoint, const Json& body) {
    return Call(Method::kPost, "/api/2.0/mlflow/" + endpoint, body.dump());
  }
  Answer Get(const std::string& endpoint) { return Call(Method::kGet, "/api/2.0/mlflow/" + endpoint); }

  std::string CreateRun(const std::string& experiment_id = "0") {
    Answer a = Post("runs/create", {{"experiment_id", experiment_id}, {"start_time", 1000}});
    EXPECT_EQ(a.status, 200) << a.body.dump();
    return a.body["run"]["info"]["run_id"].get<std::string>();
  }

  static void ExpectError(const Answer& a, int status, const std::string& code) {
    EXPECT_EQ(a.status, status) << a.body.dump();
    ASSERT_TRUE(a.body.is_object()) << a.body.dump();
    EXPECT_EQ(a.body.value("error_code", ""), code) << a.body.dump();
    EXPECT_TRUE(a.body.contains("message"));
  }

};

TEST_F(ApiTest, HealthAndVersion) {
  auto r = client_->Send(Method::kGet, "/health");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "OK");
  r = client_->Send(Method::kGet, "/version");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 200);
  EXPECT_FALSE(r->body.empty());
}

TEST_F(ApiTest, ExperimentLifecycle) {
  Answer created = Post("experiments/create", {{"name", "exp-a"}, {"tags", {{{"key", "team"}, {"value", "ml"}}}}});
  ASSERT_EQ(created.status, 200) << created.body.dump();
  std::string id = created.body["experiment_id"];

  Answer got = Get("experiments/get?experiment_id=" + id);
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.body["experiment"]["name"], "exp-a");
  EXPECT_EQ(got.body["experiment"]["lifecycle_stage"], "active");
  EXPECT_EQ(got.body["experiment"]["artifact_location"], "mlflow-artifacts:/" + id);
  EXPECT_EQ(got.body["experiment"]["tags"][0]["key"], "team");

  Answer by_name = Get("experiments/get-by-name?experiment_name=exp-a");
  EXPECT_EQ(by_name.body["experiment"]["experiment_id"], id);

  ExpectError(Post("experiments/create", {{"name", "exp-a"}}), 400, "RESOURCE_ALREADY_EXISTS");
  ASSERT_EQ(Post("experiments/update", {{"experiment_id", id}, {"new_name", "exp-b"}}).status, 200);
  EXPECT_EQ(Get("experiments/get?experiment_id=" + id).body["experiment"]["name"], "exp-b");

  ASSERT_EQ(Post("experiments/set-experiment-tag", {{"experiment_id", id}, {"key", "k"}, {"value", "v"}}).status, 200);
  ASSERT_EQ(Post("experiments/delete-experiment-tag", {{"experiment_id", id}, {"key", "k"}}).status, 200);
  ExpectError(Post("experiments/delete-experiment-tag", {{"experiment_id", id}, {"key", "k"}}), 404,
              "RESOURCE_DOES_NOT_EXIST");

  ASSERT_EQ(Post("experiments/delete", {{"experiment_id", id}}).status, 200);
  Answer active = Post("experiments/search", {{"max_results", 10}});
  for (const Json& e : active.body.value("experiments", Json::array())) EXPECT_NE(e["experiment_id"], id);
  Answer deleted = Post("experiments/search", {{"view_type", "DELETED_ONLY"}});
  ASSERT_EQ(deleted.body["experiments"].size(), 1u);
  EXPECT_EQ(deleted.body["experiments"][0]["lifecycle_stage"], "deleted");
  ASSERT_EQ(Post("experiments/restore", {{"experiment_id", id}}).status, 200);
  EXPECT_EQ(Get("experiments/get?experiment_id=" + id).body["experiment"]["lifecycle_stage"], "active");
}

TEST_F(ApiTest, ExperimentSearchFilterOrderAndPages) {
  for (int i = 0; i < 7; ++i) ASSERT_EQ(Post("experiments/create", {{"name", "e" + std::to_string(i)}}).status, 200);
  Answer filtered = Post("experiments/search", {{"filter", "name LIKE 'e%'"}, {"order_by", {"name DESC"}}});
  ASSERT_EQ(filtered.status, 200) << filtered.body.dump();
  ASSERT_EQ(filtered.body["experiments"].size(), 7u);
  EXPECT_EQ(filtered.body["experiments"][0]["name"], "e6");
  std::set<std::string> names;
  std::string token;
  do {
    Json body = {{"max_results", 3}, {"filter", "name LIKE 'e%'"}};
    if (!token.empty()) body["page_token"] = token;
    Answer page = Post("experiments/search", body);
    ASSERT_EQ(page.status, 200);
    for (const Json& e : page.body["experiments"]) names.insert(e["name"]);
    token = page.body.value("next_page_token", "");
  } while (!token.empty());
  EXPECT_EQ(names.size(), 7u);
  // GET form with query parameters, as MLflow's client may send.
  Answer via_get = Get("experiments/search?max_results=2&filter=name%20%3D%20%27e3%27");
  ASSERT_EQ(via_get.status, 200) << via_get.body.dump();
  EXPECT_EQ(via_get.body["experiments"][0]["name"], "e3");
  ExpectError(Post("experiments/search", {{"filter", "name = "}}), 400, "INVALID_PARAMETER_VALUE");
  ExpectError(Post("experiments/search", {{"view_type", "SOME"}}), 400, "INVALID_PARAMETER_VALUE");
}

TEST_F(ApiTest, RunLifecycleAndLogging) {
  std::string run = CreateRun();
  EXPECT_EQ(run.size(), 32u);
  ASSERT_EQ(Post("runs/log-parameter", {{"run_id", run}, {"key", "lr"}, {"value", "0.01"}}).status, 200);
  ASSERT_EQ(Post("runs/log-metric", {{"run_id", run}, {"key", "loss"}, {"value", 0.5}, {"timestamp", 10}, {"step", 1}})
                .status,
            200);
  ASSERT_EQ(Post("runs/log-metric", {{"run_uuid", run}, {"key", "loss"}, {"value", "NaN"}, {"timestamp", 11}}).status,
            200);
  ASSERT_EQ(Post("runs/set-tag", {{"run_id", run}, {"key", "team"}, {"value", "ml"}}).status, 200);
  ASSERT_EQ(Post("runs/update", {{"run_id", run}, {"status", "FINISHED"}, {"end_time", 2000}}).status, 200);

  Answer got = Get("runs/get?run_id=" + run);
  ASSERT_EQ(got.status, 200);
  const Json& r = got.body["run"];
  EXPECT_EQ(r["info"]["status"], "FINISHED");
  EXPECT_EQ(r["info"]["run_uuid"], run);
  EXPECT_EQ(r["info"]["end_time"], 2000);
  EXPECT_EQ(r["info"]["artifact_uri"], "mlflow-artifacts:/0/" + run + "/artifacts");
  EXPECT_EQ(r["data"]["params"][0]["value"], "0.01");
  EXPECT_EQ(r["data"]["metrics"][0]["value"], 0.5);  // step 1 beats step 0 (the NaN)

  Answer history = Get("metrics/get-history?run_id=" + run + "&metric_key=loss");
  ASSERT_EQ(history.status, 200);
  ASSERT_EQ(history.body["metrics"].size(), 2u);
  EXPECT_EQ(history.body["metrics"][1]["value"], "NaN");

  ASSERT_EQ(Post("runs/delete-tag", {{"run_id", run}, {"key", "team"}}).status, 200);
  ExpectError(Post("runs/delete-tag", {{"run_id", run}, {"key", "team"}}), 404, "RESOURCE_DOES_NOT_EXIST");
  ASSERT_EQ(Post("runs/delete", {{"run_id", run}}).status, 200);
  EXPECT_EQ(Get("runs/get?run_id=" + run).body["run"]["info"]["lifecycle_stage"], "deleted");
  ExpectError(Post("runs/log-parameter", {{"run_id", run}, {"key", "x"}, {"value", "1"}}), 400,
              "INVALID_PARAMETER_VALUE");
  ASSERT_EQ(Post("runs/restore", {{"run_id", run}}).status, 200);
}

TEST_F(ApiTest, ParamOverwriteIsRejected) {
  std::string run = CreateRun();
  ASSERT_EQ(Post("runs/log-parameter", {{"run_id", run}, {"key", "lr"}, {"value", "0.01"}}).status, 200);
  EXPECT_EQ(Post("runs/log-parameter", {{"run_id", run}, {"key", "lr"}, {"value", "0.01"}}).status, 200);
  Answer a = Post("runs/log-parameter", {{"run_id", run}, {"key", "lr"}, {"value", "0.02"}});
  ExpectError(a, 400, "INVALID_PARAMETER_VALUE");
  EXPECT_THAT(a.body["message"].get<std::string>(), HasSubstr("Changing param values is not allowed"));
}

TEST_F(ApiTest, LogBatchLimitsAndAtomicity) {
  std::string run = CreateRun();
  Json metrics = Json::array();
  for (int i = 0; i < 1000; ++i) metrics.push_back({{"key", "m"}, {"value", i}, {"timestamp", i}, {"step", i}});
  ASSERT_EQ(Post("runs/log-batch", {{"run_id", run}, {"metrics", metrics}}).status, 200);
  metrics.push_back({{"key", "m"}, {"value", 1}, {"timestamp", 1}, {"step", 1}});
  ExpectError(Post("runs/log-batch", {{"run_id", run}, {"metrics", metrics}}), 400, "INVALID_PARAMETER_VALUE");
  Json params = Json::array();
  for (int i = 0; i < 101; ++i) params.push_back({{"key", "p" + std::to_string(i)}, {"value", "v"}});
  ExpectError(Post("runs/log-batch", {{"run_id", run}, {"params", params}}), 400, "INVALID_PARAMETER_VALUE");
  // A batch with one bad metric stores nothing.
  Json mixed = {{"run_id", run},
                {"metrics", {{{"key", "ok"}, {"value", 1}, {"timestamp", 1}}, {{"key", "bad"}, {"value", "x"}, {"timestamp", 1}}}},
                {"params", {{{"key", "p"}, {"value", "v"}}}}};
  ExpectError(Post("runs/log-batch", mixed), 400, "INVALID_PARAMETER_VALUE");
  Json run_data = Get("runs/get?run_id=" + run).body["run"]["data"];
  EXPECT_FALSE(run_data.contains("params"));
  EXPECT_EQ(run_data["metrics"].size(), 1u);
  Answer h = Get("metrics/get-history?run_id=" + run + "&metric_key=m&max_results=400");
  EXPECT_EQ(h.body["metrics"].size(), 400u);
  EXPECT_TRUE(h.body.contains("next_page_token"));
}

TEST_F(ApiTest, MalformedInputNeverYields500) {
  std::string run = CreateRun();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"runs/log-batch", "{not json"},
      {"runs/log-batch", "[1,2,3]"},
      {"runs/log-batch", "\"str\""},
      {"runs/log-batch", R"({"run_id": 5})"},
      {"runs/log-batch", R"({"run_id": ")" + run + R"(", "metrics": "no"})"},
      {"runs/log-batch", R"({"run_id": ")" + run + R"(", "metrics": [{"key": "m"}]})"},
      {"runs/log-batch", R"({"run_id": ")" + run + R"(", "metrics": [{"key": "m", "value": 1, "timestamp": "x"}]})"},
      {"runs/log-batch", R"({"run_id": ")" + run + R"(", "metrics": [7]})"},
      {"runs/log-batch", R"({"run_id": ")" + run + R"(", "params": [{"key": 1, "value": 2}]})"},
      {"runs/log-metric", R"({"run_id": ")" + run + R"(", "key": "m", "value": 1})"},
      {"runs/create", R"({"experiment_id": "abc"})"},
      {"runs/create", R"({"start_time": "yesterday"})"},
      {"runs/search", R"({"experiment_ids": [1, 2]})"},
      {"runs/search", R"({"experiment_ids": ["0"], "filter": "metrics.a = 'x'"})"},
      {"runs/search", R"({"experiment_ids": ["0"], "filter": "params.a > 1 OR x"})"},
      {"runs/search", R"({"experiment_ids": ["0"], "page_token": "%%%"})"},
      {"runs/search", R"({"experiment_ids": ["0"], "order_by": ["metrics.a SIDEWAYS"]})"},
      {"runs/search", R"({"experiment_ids": ["0"], "max_results": -1})"},
      {"experiments/create", "{}"},
      {"experiments/create", R"({"name": ""})"},
      {"runs/update", R"({"run_id": "../../etc"})"},
  };
  for (const auto& [endpoint, body] : cases) {
    Answer a = Call(Method::kPost, "/api/2.0/mlflow/" + endpoint, body);
    EXPECT_EQ(a.status, 400) << endpoint << " " << body << " -> " << a.body.dump();
    EXPECT_TRUE(a.body.is_object() && a.body.contains("error_code")) << endpoint << " " << body;
  }
  // Nothing was stored by any of them.
  Json data = Get("runs/get?run_id=" + run).body["run"]["data"];
  EXPECT_FALSE(data.contains("metrics"));
  EXPECT_FALSE(data.contains("params"));
}

TEST_F(ApiTest, UnknownIdsAre404) {
  ExpectError(Get("runs/get?run_id=0123456789abcdef0123456789abcdef"), 404, "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Get("experiments/get?experiment_id=424242"), 404, "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Get("experiments/get-by-name?experiment_name=nope"), 404, "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Post("runs/log-metric", {{"run_id", "0123456789abcdef0123456789abcdef"}, {"key", "m"}, {"value", 1},
                                       {"timestamp", 1}}),
              404, "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Get("metrics/get-history?run_id=0123456789abcdef0123456789abcdef&metric_key=m"), 404,
              "RESOURCE_DOES_NOT_EXIST");
  ExpectError(Call(Method::kGet, "/api/2.0/mlflow/no-such-endpoint"), 404, "ENDPOINT_NOT_FOUND");
  Answer wrong_method = Call(Method::kGet, "/api/2.0/mlflow/runs/create");
  EXPECT_EQ(wrong_method.status, 405);
  ExpectError(Get("runs/get"), 400, "INVALID_PARAMETER_VALUE");
}

TEST_F(ApiTest, SearchRunsWithFilterOrderAndPagination) {
  std::string exp = Post("experiments/create", {{"name", "search"}}).body["experiment_id"];
  for (int i = 0; i < 12; ++i) {
    std::string run = CreateRun(exp);
    ASSERT_EQ(Post("runs/log-batch", {{"run_id", run},
                                      {"metrics", {{{"key", "acc"}, {"value", i / 10.0}, {"timestamp", 1}}}},
                                      {"params", {{{"key", "model"}, {"value", i < 6 ? "rf" : "gbt"}}}},
                                      {"tags", {{{"key", "my tag"}, {"value", "t" + std::to_string(i)}}}}})
                  .status,
              200);
  }
  Answer a = Post("runs/search", {{"experiment_ids", {exp}},
                                  {"filter", "metrics.acc >= 0.3 and params.model = 'rf'"},
                                  {"order_by", {"metrics.acc DESC"}}});
  ASSERT_EQ(a.status, 200) << a.body.dump();
  ASSERT_EQ(a.body["runs"].size(), 3u);
  EXPECT_EQ(a.body["runs"][0]["data"]["metrics"][0]["value"], 0.5);
  Answer quoted = Post("runs/search", {{"experiment_ids", {exp}}, {"filter", "tags.`my tag` LIKE 't1%'"}});
  ASSERT_EQ(quoted.status, 200) << quoted.body.dump();
  EXPECT_EQ(quoted.body["runs"].size(), 3u);  // t1, t10, t11
  int seen = 0;
  std::string token;
  do {
    Json body = {{"experiment_ids", {exp}}, {"max_results", 5}};
    if (!token.empty()) body["page_token"] = token;
    Answer page = Post("runs/search", body);
    ASSERT_EQ(page.status, 200);
    seen += static_cast<int>(page.body["runs"].size());
    token = page.body.value("next_page_token", "");
  } while (!token.empty());
  EXPECT_EQ(seen, 12);
  Answer none = Post("runs/search", {{"experiment_ids", {exp}}, {"filter", "params.model = 'svm'"}});
  EXPECT_EQ(none.status, 200);
  EXPECT_FALSE(none.body.contains("runs"));
}

TEST_F(ApiTest, LogInputsAppearOnTheRun) {
  std::string run = CreateRun();
  Json body = {{"run_id", run},
               {"datasets",
                {{{"tags", {{{"key", "mlflow.data.context"}, {"value", "train"}}}},
                  {"dataset", {{"name", "wine"}, {"digest", "abc123"}, {"source_type", "cairn"}, {"source", "{}"}}}}}}};
  ASSERT_EQ(Post("runs/log-inputs", body).status, 200);
  Json inputs = Get("runs/get?run_id=" + run).body["run"]["inputs"]["dataset_inputs"];
  ASSERT_EQ(inputs.size(), 1u);
  EXPECT_EQ(inputs[0]["dataset"]["digest"], "abc123");
  EXPECT_EQ(inputs[0]["tags"][0]["value"], "train");
  ExpectError(Post("runs/log-inputs", {{"run_id", run}, {"datasets", {{{"dataset", {{"name", "x"}}}}}}}), 400,
              "INVALID_PARAMETER_VALUE");
}

TEST_F(ApiTest, ArtifactsUploadListDownloadDelete) {
  std::string run = CreateRun();
  std::string root = "/api/2.0/mlflow-artifacts/artifacts/0/" + run + "/artifacts";
  std::string content(3 << 20, 'x');
  for (size_t i = 0; i < content.size(); i += 4096) content[i] = static_cast<char>('a' + (i / 4096) % 26);
  auto put = client_->Send(Method::kPut, root + "/model/model.bin", content, "application/octet-stream");
  ASSERT_THAT(put, IsOk());
  ASSERT_EQ(put->status, 200) << put->body;
  ASSERT_EQ(client_->Send(Method::kPut, root + "/model/copy.bin", content, "application/octet-stream")->status, 200);
  ASSERT_EQ(client_->Send(Method::kPut, root + "/notes.txt", "hello", "text/plain")->status, 200);

  Answer list = Get("artifacts/list?run_id=" + run);
  ASSERT_EQ(list.status, 200) << list.body.dump();
  EXPECT_EQ(list.body["root_uri"], "mlflow-artifacts:/0/" + run + "/artifacts");
  ASSERT_EQ(list.body["files"].size(), 2u);
  EXPECT_EQ(list.body["files"][0]["path"], "model");
  EXPECT_EQ(list.body["files"][0]["is_dir"], true);
  EXPECT_EQ(list.body["files"][1]["file_size"], 5);
  Answer sub = Get("artifacts/list?run_id=" + run + "&path=model");
  ASSERT_EQ(sub.body["files"].size(), 2u);
  EXPECT_EQ(sub.body["files"][1]["path"], "model/model.bin");
  Answer proxy_list = Call(Method::kGet, "/api/2.0/mlflow-artifacts/artifacts?path=0/" + run + "/artifacts/model");
  ASSERT_EQ(proxy_list.status, 200);
  EXPECT_EQ(proxy_list.body["files"][0]["path"], "copy.bin");

  std::string downloaded;
  auto got = client_->Download(root + "/model/model.bin", [&](std::string_view chunk) {
    downloaded.append(chunk);
    return absl::OkStatus();
  });
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->status, 200);
  EXPECT_TRUE(downloaded == content);
  // Identical content is stored once.
  int objects = 0;
  ASSERT_THAT(dir_->objects().List([&](const store::ObjectInfo&) {
    ++objects;
    return absl::OkStatus();
  }),
              IsOk());
  EXPECT_EQ(objects, 2);

  auto missing = client_->Send(Method::kGet, root + "/nope.bin");
  EXPECT_EQ(missing->status, 404);
  for (std::string bad : {"/../../etc/passwd", "/a/./b", "/a//b"}) {
    auto r = client_->Send(Method::kPut, "/api/2.0/mlflow-artifacts/artifacts/0" + bad, "x", "text/plain");
    ASSERT_THAT(r, IsOk());
    EXPECT_EQ(r->status, 400) << bad << " " << r->body;
  }
  ASSERT_EQ(client_->Send(Method::kDelete, root + "/model")->status, 200);
  EXPECT_EQ(Get("artifacts/list?run_id=" + run).body["files"].size(), 1u);
}

TEST_F(ApiTest, ConcurrentClientsShareCommits) {
  std::string run = CreateRun();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto client = http::Client::Create("127.0.0.1", server_->port());
      ASSERT_THAT(client, IsOk());
      for (int b = 0; b < 25; ++b) {
        Json metrics = Json::array();
        for (int i = 0; i < 100; ++i) {
          metrics.push_back({{"key", "k" + std::to_string(t)}, {"value", i}, {"timestamp", 1}, {"step", b * 100 + i}});
        }
        auto r = (*client)->Send(Method::kPost, "/api/2.0/mlflow/runs/log-batch",
                                 Json{{"run_id", run}, {"metrics", metrics}}.dump());
        ASSERT_THAT(r, IsOk());
        EXPECT_EQ(r->status, 200);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) {
    Answer h = Get("metrics/get-history?run_id=" + run + "&metric_key=k" + std::to_string(t));
    EXPECT_EQ(h.body["metrics"].size(), 2500u);
  }
}

}  // namespace
}  // namespace cairn::api
