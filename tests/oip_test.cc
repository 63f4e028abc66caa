// The Open Inference Protocol v2 over HTTP, end to end: a real server on an
// ephemeral port over a fresh data directory, models registered through the
// MLflow registry API from a run's artifacts, deployed, served by the
// in-process inference plane, asked by a real HTTP client. Every endpoint,
// every datatype (through a Python "echo" model), the binary extension, the
// errors the spec asks for, and alias moves under continuous load.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "absl/time/clock.h"
#include "api/data_directory.h"
#include "api/inference_api.h"
#include "api/local_registry.h"
#include "api/mlflow_api.h"
#include "base/testing.h"
#include "http/http.h"
#include "serving/inference_plane.h"
#include "serving/oip_codec.h"

namespace cairn::api {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::ReadFileOrEmpty;
using http::Method;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

// A Python model returning each input unchanged (as output "<name>_out"):
// every OIP datatype makes the round trip client -> server -> worker -> client.
constexpr char kEchoModel[] = R"(flavor: python
file: echo.py
signature:
  inputs:
    - {name: b, datatype: BOOL, shape: [-1, 2]}
    - {name: u8, datatype: UINT8, shape: [-1, 2]}
    - {name: u16, datatype: UINT16, shape: [-1, 2]}
    - {name: u32, datatype: UINT32, shape: [-1, 2]}
    - {name: u64, datatype: UINT64, shape: [-1, 2]}
    - {name: i8, datatype: INT8, shape: [-1, 2]}
    - {name: i16, datatype: INT16, shape: [-1, 2]}
    - {name: i32, datatype: INT32, shape: [-1, 2]}
    - {name: i64, datatype: INT64, shape: [-1, 2]}
    - {name: f16, datatype: FP16, shape: [-1, 2]}
    - {name: f32, datatype: FP32, shape: [-1, 2]}
    - {name: f64, datatype: FP64, shape: [-1, 2]}
    - {name: s, datatype: BYTES, shape: [-1, 2]}
)";
constexpr char kEchoPy[] = R"(
def predict(inputs):
    return {name + "_out": value for name, value in inputs.items()}
)";

class OipTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fixtures_ = new std::string(fs::temp_directory_path() / ("cairn-oip-fixtures-" + std::to_string(getpid())));
    std::string cmd = std::string("/usr/bin/python3 ") + CAIRN_SOURCE_DIR +
                      "/src/serving/testdata/make_models.py " + *fixtures_ + " xgb_json > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(*fixtures_, ec);
    delete fixtures_;
  }

  void SetUp() override {
    env_ = NewPosixEnv();
    auto dir = DataDirectory::Open(*env_, tmp_.path() + "/data");
    ASSERT_THAT(dir, IsOk());
    dir_ = std::move(dir).value();
    source_ = std::make_unique<LocalRegistry>(*dir_);
    serving::PlaneOptions options;
    options.cache_dir = tmp_.path() + "/cache";
    options.poll_interval_ms = 20;
    options.payload_log_dir = tmp_.path() + "/predictions";
    auto plane = serving::InferencePlane::Create(*source_, options, *env_);
    ASSERT_THAT(plane, IsOk());
    plane_ = std::move(plane).value();
    http::Router router = BuildRouter(*dir_);
    AddInferenceRoutes(*plane_, router);
    auto server = http::Server::Create({.host = "127.0.0.1", .port = 0}, std::move(router));
    ASSERT_THAT(server, IsOk());
    server_ = std::move(server).value();
    client_ = Connect();
  }
  void TearDown() override {
    if (server_) server_->Stop();
    if (plane_) plane_->Stop();
  }

  std::unique_ptr<http::Client> Connect() {
    auto client = http::Client::Create("127.0.0.1", server_->port());
    EXPECT_THAT(client, IsOk());
    return std::move(client).value();
  }

  struct Answer {
    int status = 0;
    Json body;
    http::ClientResponse raw;
  };
  Answer Call(Method method, const std::string& target, const std::string& body = "",
              const std::vector<std::pair<std::string, std::string>>& headers = {},
              const std::string& content_type = "application/json") {
    auto r = client_->Send(method, target, body, content_type, headers);
    EXPECT_THAT(r, IsOk());
    if (!r.ok()) return {};
    Answer a{r->status, Json(), *r};
    if (r->Header("content-type").value_or("").find("json") != std::string_view::npos) {
      auto j = ParseJson(r->body);
      if (j.ok()) a.body = *j;
    }
    return a;
  }
  Json Post(const std::string& target, const Json& body) {
    Answer a = Call(Method::kPost, target, body.dump());
    EXPECT_EQ(a.status, 200) << target << ": " << a.raw.body;
    return a.body;
  }

  // Registers `folder` as a new version of `model` (from a run's artifacts,
  // through the MLflow APIs) and returns its version number.
  int64_t Register(const std::string& model, const std::string& folder) {
    Json run = Post("/api/2.0/mlflow/runs/create", {{"experiment_id", "0"}})["run"];
    std::string run_id = run["info"]["run_id"];
    std::string base = run["info"]["artifact_uri"].get<std::string>().substr(std::string("mlflow-artifacts:").size());
    for (const auto& e : fs::directory_iterator(folder)) {
      if (e.path().filename() == "expected.json") continue;
      Answer a = Call(Method::kPut, "/api/2.0/mlflow-artifacts/artifacts" + base + "/model/" +
                                        e.path().filename().string(),
                      ReadFileOrEmpty(e.path()), {}, "application/octet-stream");
      EXPECT_EQ(a.status, 200) << a.raw.body;
    }
    Call(Method::kPost, "/api/2.0/mlflow/registered-models/create", Json{{"name", model}}.dump());
    Json v = Post("/api/2.0/mlflow/model-versions/create",
                  {{"name", model}, {"source", "runs:/" + run_id + "/model"}, {"run_id", run_id}});
    return std::stoll(v["model_version"]["version"].get<std::string>());
  }
  void SetAlias(const std::string& model, const std::string& alias, int64_t version) {
    Post("/api/2.0/mlflow/registered-models/alias",
         {{"name", model}, {"alias", alias}, {"version", std::to_string(version)}});
  }
  void Deploy(const std::string& model, const Json& config = Json::object()) {
    Answer a = Call(Method::kPut, "/api/cairn/v1/deployments/" + model,
                    Json{{"model", model}, {"alias", "production"}, {"config", config}}.dump());
    ASSERT_EQ(a.status, 200) << a.raw.body;
  }
  // Registers the XGBoost fixture as xgb@production and deploys it.
  void DeployXgb(const Json& config = Json::object()) {
    int64_t v = Register("xgb", *fixtures_ + "/xgb_json");
    SetAlias("xgb", "production", v);
    Deploy("xgb", config);
    ASSERT_THAT(plane_->Reconcile(), IsOk());
  }
  Json Expected() {
    auto j = ParseJson(ReadFileOrEmpty(*fixtures_ + "/xgb_json/expected.json"));
    EXPECT_THAT(j, IsOk());
    return *j;
  }

  static std::string* fixtures_;
  cairn::testing::ScopedTempDir tmp_;
  std::unique_ptr<Env> env_;
  std::unique_ptr<DataDirectory> dir_;
  std::unique_ptr<LocalRegistry> source_;
  std::unique_ptr<serving::InferencePlane> plane_;
  std::unique_ptr<http::Server> server_;
  std::unique_ptr<http::Client> client_;
};
std::string* OipTest::fixtures_ = nullptr;

TEST_F(OipTest, ServerMetadataAndHealth) {
  Answer meta = Call(Method::kGet, "/v2");
  EXPECT_EQ(meta.status, 200);
  EXPECT_EQ(meta.body["name"], "cairn");
  EXPECT_TRUE(meta.body["version"].is_string());
  EXPECT_THAT(meta.body["extensions"].dump(), HasSubstr("binary_tensor_data"));
  EXPECT_EQ(Call(Method::kGet, "/v2/health/live").status, 200);
  DeployXgb();
  EXPECT_EQ(Call(Method::kGet, "/v2/health/ready").status, 200);
}

TEST_F(OipTest, ModelMetadataWithAndWithoutVersion) {
  DeployXgb();
  for (std::string target : {"/v2/models/xgb", "/v2/models/xgb/versions/1"}) {
    Answer a = Call(Method::kGet, target);
    ASSERT_EQ(a.status, 200) << a.raw.body;
    EXPECT_EQ(a.body["name"], "xgb");
    EXPECT_EQ(a.body["versions"], Json::array({"1"}));
    EXPECT_FALSE(a.body["platform"].get<std::string>().empty());
    EXPECT_EQ(a.body["inputs"], Json::parse(R"([{"name":"features","datatype":"FP32","shape":[-1,30]}])"));
    EXPECT_EQ(a.body["outputs"][0]["name"], "predict");
  }
  EXPECT_EQ(Call(Method::kGet, "/v2/models/xgb/ready").status, 200);
  EXPECT_EQ(Call(Method::kGet, "/v2/models/xgb/versions/1/ready").status, 200);
}

TEST_F(OipTest, UnknownModelOrVersionIs404WithError) {
  DeployXgb();
  for (auto [method, target] : std::vector<std::pair<Method, std::string>>{
           {Method::kGet, "/v2/models/nope"},
           {Method::kGet, "/v2/models/nope/ready"},
           {Method::kGet, "/v2/models/xgb/versions/7"},
           {Method::kPost, "/v2/models/nope/infer"},
           {Method::kPost, "/v2/models/xgb/versions/7/infer"}}) {
    std::string body = method == Method::kPost ? Json{{"inputs", Expected()["inputs"]}}.dump() : "";
    Answer a = Call(method, target, body);
    EXPECT_EQ(a.status, 404) << target << ": " << a.raw.body;
    EXPECT_TRUE(a.body.contains("error")) << a.raw.body;
  }
  Answer bad_version = Call(Method::kGet, "/v2/models/xgb/versions/zero");
  EXPECT_EQ(bad_version.status, 400);
}

TEST_F(OipTest, InferJsonMatchesPythonAndSaysWhichVersionAnswered) {
  DeployXgb();
  Json e = Expected();
  for (std::string target : {"/v2/models/xgb/infer", "/v2/models/xgb/versions/1/infer"}) {
    Answer a = Call(Method::kPost, target, Json{{"id", "req-1"}, {"inputs", e["inputs"]}}.dump());
    ASSERT_EQ(a.status, 200) << a.raw.body;
    EXPECT_EQ(a.body["model_name"], "xgb");
    EXPECT_EQ(a.body["model_version"], "1");
    EXPECT_EQ(a.body["id"], "req-1");
    EXPECT_EQ(a.raw.Header("x-cairn-model-version").value_or(""), "1");
    EXPECT_EQ(a.raw.Header("x-cairn-prediction-id").value_or(""), "req-1");
    const Json& out = a.body["outputs"][0];
    EXPECT_EQ(out["name"], "predict");
    EXPECT_EQ(out["datatype"], "FP32");
    EXPECT_EQ(out["shape"], Json::array({17}));
    ASSERT_EQ(out["data"].size(), 17u);
    for (size_t i = 0; i < 17; ++i) {
      EXPECT_NEAR(out["data"][i].get<double>(), e["outputs"][0]["data"][i].get<double>(), 1e-6);
    }
  }
  // Nested data, exactly as the shape.
  Json nested = e["inputs"][0];
  Json rows = Json::array();
  for (int r = 0; r < 2; ++r) {
    Json row = Json::array();
    for (int c = 0; c < 30; ++c) row.push_back(nested["data"][r * 30 + c]);
    rows.push_back(row);
  }
  nested["data"] = rows;
  nested["shape"] = {2, 30};
  Answer a = Call(Method::kPost, "/v2/models/xgb/infer", Json{{"inputs", {nested}}}.dump());
  ASSERT_EQ(a.status, 200) << a.raw.body;
  EXPECT_NEAR(a.body["outputs"][0]["data"][1].get<double>(), e["outputs"][0]["data"][1].get<double>(), 1e-6);
}

TEST_F(OipTest, ALargeRequestIsAnsweredLikeASmallOne) {
  // Over 256 KiB of JSON: decoded on a connection thread rather than on the event loop.
  DeployXgb();
  Json e = Expected();
  Json input = e["inputs"][0];
  Json data = Json::array();
  constexpr int kCopies = 100;
  for (int k = 0; k < kCopies; ++k) {
    for (const Json& v : e["inputs"][0]["data"]) data.push_back(v);
  }
  input["data"] = data;
  input["shape"] = {17 * kCopies, 30};
  std::string body = Json{{"inputs", {input}}}.dump();
  ASSERT_GT(body.size(), 256u << 10);
  Answer a = Call(Method::kPost, "/v2/models/xgb/infer", body);
  ASSERT_EQ(a.status, 200) << a.raw.body.substr(0, 200);
  const Json& out = a.body["outputs"][0];
  ASSERT_EQ(out["data"].size(), 17u * kCopies);
  for (size_t i = 0; i < out["data"].size(); i += 97) {
    EXPECT_NEAR(out["data"][i].get<double>(), e["outputs"][0]["data"][i % 17].get<double>(), 1e-6);
  }
  // A large request with a wrong shape gets the same precise 400.
  input["shape"] = {17 * kCopies + 1, 30};
  Answer bad = Call(Method::kPost, "/v2/models/xgb/infer", Json{{"inputs", {input}}}.dump());
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body.value("error", ""), HasSubstr("features"));
}

TEST_F(OipTest, WrongShapeOrDatatypeIs400WithAPreciseMessage) {
  DeployXgb();
  Json input = {{"name", "features"}, {"datatype", "FP32"}, {"shape", {1, 29}}, {"data", std::vector<float>(29, 0.5f)}};
  Answer a = Call(Method::kPost, "/v2/models/xgb/infer", Json{{"inputs", {input}}}.dump());
  EXPECT_EQ(a.status, 400);
  EXPECT_THAT(a.body.value("error", ""), HasSubstr("features"));
  EXPECT_THAT(a.body.value("error", ""), HasSubstr("[-1,30]"));

  input = {{"name", "features"}, {"datatype", "FP64"}, {"shape", {1, 30}}, {"data", std::vector<double>(30, 0.5)}};
  a = Call(Method::kPost, "/v2/models/xgb/infer", Json{{"inputs", {input}}}.dump());
  EXPECT_EQ(a.status, 400);
  EXPECT_THAT(a.body.value("error", ""), HasSubstr("FP32"));

  input["name"] = "other";
  a = Call(Method::kPost, "/v2/models/xgb/infer", Json{{"inputs", {input}}}.dump());
  EXPECT_EQ(a.status, 400);
  EXPECT_THAT(a.body.value("error", ""), HasSubstr("features"));

  a = Call(Method::kPost, "/v2/models/xgb/infer", R"({"inputs": [{"name": "features", "shape": [1, 30],)");
  EXPECT_EQ(a.status, 400);
  EXPECT_TRUE(a.body.contains("error"));

  a = Call(Method::kPost, "/v2/models/xgb/infer", Json{{"inputs", Json::array()}}.dump());
  EXPECT_EQ(a.status, 400);

  // An output the model does not have.
  Json e = Expected();
  a = Call(Method::kPost, "/v2/models/xgb/infer",
           Json{{"inputs", e["inputs"]}, {"outputs", {{{"name", "nope"}}}}}.dump());
  EXPECT_EQ(a.status, 400);
  EXPECT_THAT(a.body.value("error", ""), HasSubstr("nope"));
}

TEST_F(OipTest, BinaryTensorsInAndOut) {
  DeployXgb();
  Json e = Expected();
  auto request = serving::DecodeInferRequest(Json{{"inputs", e["inputs"]}}.dump(), std::nullopt);
  ASSERT_THAT(request, IsOk());
  request->outputs.push_back({"predict", true});
  serving::EncodedBody body = serving::EncodeInferRequest(*request, /*binary_inputs=*/true);
  ASSERT_TRUE(body.json_header_length.has_value());
  Answer a = Call(Method::kPost, "/v2/models/xgb/infer", body.body,
                  {{"Inference-Header-Content-Length", std::to_string(*body.json_header_length)}},
                  body.content_type);
  ASSERT_EQ(a.status, 200) << a.raw.body;
  auto length = a.raw.Header("inference-header-content-length");
  ASSERT_TRUE(length.has_value());
  auto response = serving::DecodeInferResponse(a.raw.body, std::stoul(std::string(*length)));
  ASSERT_THAT(response, IsOk());
  ASSERT_EQ(response->outputs.size(), 1u);
  auto values = response->outputs[0].values<float>();
  ASSERT_EQ(values.size(), 17u);
  EXPECT_NEAR(values[3], e["outputs"][0]["data"][3].get<double>(), 1e-6);

  // Truncated binary data, and a header length beyond the body.
  std::string truncated = body.body.substr(0, body.body.size() - 7);
  a = Call(Method::kPost, "/v2/models/xgb/infer", truncated,
           {{"Inference-Header-Content-Length", std::to_string(*body.json_header_length)}}, body.content_type);
  EXPECT_EQ(a.status, 400);
  EXPECT_TRUE(a.body.contains("error"));
  a = Call(Method::kPost, "/v2/models/xgb/infer", body.body,
           {{"Inference-Header-Content-Length", std::to_string(body.body.size() + 10)}}, body.content_type);
  EXPECT_EQ(a.status, 400);
  a = Call(Method::kPost, "/v2/models/xgb/infer", body.body, {{"Inference-Header-Content-Length", "x1"}},
           body.content_type);
  EXPECT_EQ(a.status, 400);
}

TEST_F(OipTest, EveryDatatypeRoundTripsThroughAPythonModel) {
  std::string folder = tmp_.path() + "/echo";
  fs::create_directories(folder);
  std::ofstream(folder + "/cairn-model.yaml") << kEchoModel;
  std::ofstream(folder + "/echo.py") << kEchoPy;
  SetAlias("echo", "production", Register("echo", folder));
  Deploy("echo");
  ASSERT_THAT(plane_->Reconcile(), IsOk());
  Json inputs = Json::parse(R"([
    {"name": "b", "datatype": "BOOL", "shape": [2, 2], "data": [true, false, false, true]},
    {"name": "u8", "datatype": "UINT8", "shape": [2, 2], "data": [0, 1, 254, 255]},
    {"name": "u16", "datatype": "UINT16", "shape": [2, 2], "data": [0, 1, 65534, 65535]},
    {"name": "u32", "datatype": "UINT32", "shape": [2, 2], "data": [0, 1, 4294967294, 4294967295]},
    {"name": "u64", "datatype": "UINT64", "shape": [2, 2], "data": [0, 1, 2, 18446744073709551615]},
    {"name": "i8", "datatype": "INT8", "shape": [2, 2], "data": [-128, -1, 0, 127]},
    {"name": "i16", "datatype": "INT16", "shape": [2, 2], "data": [-32768, -1, 0, 32767]},
    {"name": "i32", "datatype": "INT32", "shape": [2, 2], "data": [-2147483648, -1, 0, 2147483647]},
    {"name": "i64", "datatype": "INT64", "shape": [2, 2], "data": [-9223372036854775808, -1, 0, 9223372036854775807]},
    {"name": "f16", "datatype": "FP16", "shape": [2, 2], "data": [0.5, -2.0, 1024.0, 0.25]},
    {"name": "f32", "datatype": "FP32", "shape": [2, 2], "data": [[1.5, -0.25], [3.0e10, 0.0]]},
    {"name": "f64", "datatype": "FP64", "shape": [2, 2], "data": [1e-300, -2.5, 3.141592653589793, 0.0]},
    {"name": "s", "datatype": "BYTES", "shape": [2, 2], "data": ["a", "", "héllo", "x y"]}
  ])");
  Answer a = Call(Method::kPost, "/v2/models/echo/infer", Json{{"inputs", inputs}}.dump());
  ASSERT_EQ(a.status, 200) << a.raw.body;
  std::map<std::string, Json> outputs;
  for (const Json& o : a.body["outputs"]) outputs[o["name"]] = o;
  for (const Json& in : inputs) {
    std::string name = in["name"].get<std::string>() + "_out";
    ASSERT_TRUE(outputs.count(name)) << name << " missing in " << a.raw.body;
    EXPECT_EQ(outputs[name]["datatype"], in["datatype"]) << name;
    EXPECT_EQ(outputs[name]["shape"], in["shape"]) << name;
    Json flat = in["data"];
    if (flat[0].is_array()) flat = Json::array({1.5, -0.25, 3.0e10, 0.0});
    EXPECT_EQ(outputs[name]["data"], flat) << name;
  }
}

TEST_F(OipTest, ARequestPastItsDeadlineIs504AtTheDeadlineEvenWhileComputing) {
  // x > 0 makes the model take 4 s; warm-up's zeros are quick.
  std::string folder = tmp_.path() + "/slow";
  fs::create_directories(folder);
  std::ofstream(folder + "/cairn-model.yaml") << R"(flavor: python
file: slow.py
signature:
  inputs:
    - {name: x, datatype: FP32, shape: [-1, 1]}
)";
  std::ofstream(folder + "/slow.py") << R"(
import time
def predict(inputs):
    if float(inputs["x"][0][0]) > 0:
        time.sleep(4)
    return {"y": inputs["x"]}
)";
  SetAlias("slow", "production", Register("slow", folder));
  // A batching delay sends every request through the queue to a worker.
  Deploy("slow", {{"max_batch_size", 4}, {"max_queue_delay_us", 1000}, {"instances", 2}});
  ASSERT_THAT(plane_->Reconcile(), IsOk());
  auto body = [](float x) {
    return Json{{"inputs", {{{"name", "x"}, {"datatype", "FP32"}, {"shape", {1, 1}}, {"data", {x}}}}}}.dump();
  };

  const absl::Time start = absl::Now();
  // A second is ample for a worker to take the request (after 1 ms).
  Answer late = Call(Method::kPost, "/v2/models/slow/infer", body(1), {{"X-Cairn-Timeout-Ms", "1000"}});
  EXPECT_EQ(late.status, 504) << late.raw.body;
  EXPECT_THAT(late.body.value("error", ""), HasSubstr("timed out while its batch was computing"));
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(3500));  // not held for the model's 4 s

  // The other instance answers meanwhile; the same deadline as a parameter.
  Answer quick = Call(Method::kPost, "/v2/models/slow/infer",
                      Json{{"parameters", {{"timeout_ms", 5000}}},
                           {"inputs", {{{"name", "x"}, {"datatype", "FP32"}, {"shape", {1, 1}}, {"data", {0}}}}}}
                          .dump());
  EXPECT_EQ(quick.status, 200) << quick.raw.body;

  Answer bad = Call(Method::kPost, "/v2/models/slow/infer", body(0), {{"X-Cairn-Timeout-Ms", "soon"}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(bad.body.value("error", ""), HasSubstr("X-Cairn-Timeout-Ms"));
}

TEST_F(OipTest, MetricsAndStatisticsCountRequestsPerVersion) {
  DeployXgb();
  Json e = Expected();
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(Call(Method::kPost, "/v2/models/xgb/infer", Json{{"inputs", e["inputs"]}}.dump()).status, 200);
  }
  Answer m = Call(Method::kGet, "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_THAT(m.raw.body, HasSubstr("# TYPE cairn_inference_requests_total counter"));
  EXPECT_THAT(m.raw.body, HasSubstr("deployment=\"xgb\""));
  EXPECT_THAT(m.raw.body, HasSubstr("cairn_inference_request_duration_seconds_bucket"));
  Answer stats = Call(Method::kGet, "/v2/models/xgb/stats");
  EXPECT_EQ(stats.status, 200);
  EXPECT_THAT(stats.raw.body, HasSubstr("\"version\""));
  Answer serving = Call(Method::kGet, "/api/cairn/v1/serving");
  EXPECT_EQ(serving.status, 200);
  EXPECT_THAT(serving.raw.body, HasSubstr("\"xgb\""));
}

// 20 alias moves between two versions while 4 clients send requests without
// pause: not one request fails, and both versions answer.
TEST_F(OipTest, AliasMovesUnderContinuousLoadFailNoRequest) {
  std::string v2_folder = tmp_.path() + "/xgb_v2";
  fs::copy(*fixtures_ + "/xgb_json", v2_folder);
  std::ofstream(v2_folder + "/NOTES.md") << "same trees, another artifact\n";
  DeployXgb({{"max_batch_size", 4}, {"max_queue_delay_us", 200}});
  int64_t v2 = Register("xgb", v2_folder);
  ASSERT_THAT(plane_->Start(), IsOk());
  const std::string body = Json{{"inputs", Expected()["inputs"]}}.dump();

  std::atomic<bool> stop{false};
  std::atomic<int64_t> ok{0}, failed{0};
  std::mutex mu;
  std::map<std::string, int64_t> versions;
  std::string first_failure;
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&] {
      auto client = Connect();
      while (!stop) {
        auto r = client->Send(Method::kPost, "/v2/models/xgb/infer", body);
        std::lock_guard<std::mutex> lock(mu);
        if (r.ok() && r->status == 200) {
          ++ok;
          ++versions[std::string(r->Header("x-cairn-model-version").value_or("?"))];
        } else {
          ++failed;
          if (first_failure.empty()) first_failure = r.ok() ? r->body : std::string(r.status().message());
        }
      }
    });
  }
  for (int move = 0; move < 20; ++move) {
    int64_t target = move % 2 == 0 ? v2 : 1;
    SetAlias("xgb", "production", target);
    // Wait until the plane serves the target as primary.
    for (int i = 0; i < 500; ++i) {
      auto m = plane_->Metadata("xgb", std::nullopt);
      if (m.ok() && m->versions == std::vector<int64_t>{target}) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  stop = true;
  for (auto& c : clients) c.join();
  EXPECT_EQ(failed.load(), 0) << first_failure;
  EXPECT_GT(ok.load(), 40);
  EXPECT_GT(versions["1"], 0);
  EXPECT_GT(versions[std::to_string(v2)], 0);
}

}  // namespace
}  // namespace cairn::api
