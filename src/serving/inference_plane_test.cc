#include "serving/inference_plane.h"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "base/deferred.h"
#include "base/testing.h"

namespace cairn::serving {
namespace {

using ::cairn::testing::ManualTaskQueue;
using ::cairn::testing::ScopedTempDir;
using ::cairn::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// Test double: version V answers y = row sum + 1000 * V, so every answer
// shows which version computed it.
class VersionBackend : public ModelBackend {
 public:
  VersionBackend(int64_t version, bool quick) : version_(version), quick_(quick) {
    signature_.inputs = {{"x", DataType::kFp32, {-1, 3}}};
    signature_.outputs = {{"y", DataType::kFp32, {-1, 1}}};
  }
  const ModelSignature& signature() const override { return signature_; }
  std::string_view platform() const override { return "test_version"; }
  bool quick() const override { return quick_; }
  absl::StatusOr<std::vector<Tensor>> Infer(const std::vector<Tensor>& inputs) override {
    const Tensor& x = inputs[0];
    std::span<const float> v = x.values<float>();
    std::vector<float> y(x.shape[0]);
    for (int64_t r = 0; r < x.shape[0]; ++r) y[r] = v[r * 3] + v[r * 3 + 1] + v[r * 3 + 2] + 1000.0f * version_;
    return std::vector<Tensor>{Tensor::FromValues<float>("y", DataType::kFp32, {x.shape[0], 1}, y)};
  }

 private:
  const int64_t version_;
  const bool quick_;
  ModelSignature signature_;
};

// Test double of the registry: deployments and aliases in memory.
class FakeSource : public ModelSource {
 public:
  absl::StatusOr<int64_t> ChangeCounter() override {
    absl::MutexLock lock(&mu_);
    return counter_;
  }
  absl::StatusOr<std::vector<DeploymentSpec>> ListDeployments() override {
    absl::MutexLock lock(&mu_);
    return specs_;
  }
  absl::StatusOr<int64_t> ResolveAlias(const std::string& model, const std::string& alias) override {
    absl::MutexLock lock(&mu_);
    auto it = aliases_.find(model + "@" + alias);
    if (it == aliases_.end()) return absl::NotFoundError(fmt::format("no alias {}@{}", model, alias));
    return it->second;
  }
  absl::StatusOr<std::string> FetchVersion(const std::string& model, int64_t version,
                                           const std::string& cache_dir) override {
    return fmt::format("{}/{}/{}", cache_dir, model, version);
  }

  void SetAlias(const std::string& model, const std::string& alias, int64_t version) {
    absl::MutexLock lock(&mu_);
    aliases_[model + "@" + alias] = version;
    ++counter_;
  }
  void SetDeployments(std::vector<DeploymentSpec> specs) {
    absl::MutexLock lock(&mu_);
    specs_ = std::move(specs);
    ++counter_;
  }

 private:
  absl::Mutex mu_;
  int64_t counter_ ABSL_GUARDED_BY(mu_) = 1;
  std::vector<DeploymentSpec> specs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> aliases_ ABSL_GUARDED_BY(mu_);
};

std::vector<Tensor> Row(float a = 1, float b = 2, float c = 3) {
  return {Tensor::FromValues<float>("x", DataType::kFp32, {1, 3}, std::vector<float>{a, b, c})};
}

// Which version computed `r` according to its output.
int64_t ComputedBy(const PlaneResult& r, float row_sum = 6) {
  return static_cast<int64_t>((r.outputs[0].values<float>()[0] - row_sum) / 1000.0f + 0.5f);
}

class InferencePlaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    source_.SetAlias("iris", "production", 1);
    source_.SetDeployments({Spec()});
  }

  static DeploymentSpec Spec() {
    DeploymentSpec spec;
    spec.name = "fraud";
    spec.model = "iris";
    spec.alias = "production";
    spec.runner = {.max_batch_size = 4, .max_queue_delay_us = 200, .instances = 2};
    return spec;
  }

  PlaneOptions Options() {
    PlaneOptions options;
    options.cache_dir = tmp_.path() + "/cache";
    options.poll_interval_ms = 5;
    options.loader = [this](const std::string& dir,
                            const BackendOptions&) -> absl::StatusOr<std::unique_ptr<ModelBackend>> {
      int64_t version = std::stoll(dir.substr(dir.rfind('/') + 1));
      absl::MutexLock lock(&mu_);
      ++loads_;
      if (broken_.count(version)) return absl::InternalError(fmt::format("corrupt model file for version {}", version));
      return std::make_unique<VersionBackend>(version, quick_models_);
    };
    return options;
  }

  std::unique_ptr<InferencePlane> NewPlane(PlaneOptions options) {
    absl::StatusOr<std::unique_ptr<InferencePlane>> plane = InferencePlane::Create(source_, std::move(options), env_);
    EXPECT_OK(plane.status());
    return std::move(plane).value();
  }

  void Break(int64_t version, bool broken) {
    absl::MutexLock lock(&mu_);
    if (broken) {
      broken_.insert(version);
    } else {
      broken_.erase(version);
    }
  }
  int loads() {
    absl::MutexLock lock(&mu_);
    return loads_;
  }

  ScopedTempDir tmp_;
  std::unique_ptr<Env> env_owner_ = NewPosixEnv();
  Env& env_ = *env_owner_;
  FakeSource source_;
  absl::Mutex mu_;
  std::set<int64_t> broken_ ABSL_GUARDED_BY(mu_);
  int loads_ ABSL_GUARDED_BY(mu_) = 0;
  bool quick_models_ = false;  // VersionBackend::quick(); set before loading
};

TEST_F(InferencePlaneTest, ServesTheAliasVersion) {
  auto plane = NewPlane(Options());
  EXPECT_FALSE(plane->Ready());
  ASSERT_OK(plane->Reconcile());
  EXPECT_TRUE(plane->Ready());
  EXPECT_TRUE(plane->Ready("fraud", std::nullopt));
  EXPECT_TRUE(plane->Ready("fraud", 1));
  EXPECT_FALSE(plane->Ready("fraud", 2));
  ASSERT_OK_AND_ASSIGN(PlaneResult r, plane->Infer("fraud", std::nullopt, Row(), "req-1"));
  EXPECT_EQ(r.model, "iris");
  EXPECT_EQ(r.version, 1);
  EXPECT_EQ(r.role, Role::kPrimary);
  EXPECT_EQ(r.prediction_id, "req-1");
  EXPECT_EQ(ComputedBy(r), 1);
  ASSERT_OK_AND_ASSIGN(PlaneResult unnamed, plane->Infer("fraud", std::nullopt, Row(), ""));
  EXPECT_FALSE(unnamed.prediction_id.empty());
  ASSERT_OK_AND_ASSIGN(PlaneResult unnamed2, plane->Infer("fraud", std::nullopt, Row(), ""));
  EXPECT_NE(unnamed.prediction_id, unnamed2.prediction_id);

  ASSERT_OK_AND_ASSIGN(ModelMetadata m, plane->Metadata("fraud", std::nullopt));
  EXPECT_EQ(m.name, "fraud");
  EXPECT_EQ(m.model, "iris");
  EXPECT_THAT(m.versions, ElementsAre(1));
  EXPECT_EQ(m.platform, "test_version");
  ASSERT_EQ(m.signature.inputs.size(), 1u);
  EXPECT_EQ(m.signature.inputs[0].name, "x");
  EXPECT_THAT(plane->DeploymentNames(), ElementsAre("fraud"));
}

TEST_F(InferencePlaneTest, UnknownDeploymentOrVersionIsNotFound) {
  auto plane = NewPlane(Options());
  ASSERT_OK(plane->Reconcile());
  EXPECT_THAT(plane->Infer("nope", std::nullopt, Row(), ""),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("model 'nope' is not deployed")));
  EXPECT_THAT(plane->Infer("fraud", 7, Row(), ""),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("model 'fraud' version 7 is not loaded")));
  EXPECT_THAT(plane->Metadata("nope", std::nullopt), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(plane->Metadata("fraud", 7), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(plane->Statistics("nope"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_FALSE(plane->Ready("nope", std::nullopt));
}

TEST_F(InferencePlaneTest, InvalidInputsAreRefused) {
  auto plane = NewPlane(Options());
  ASSERT_OK(plane->Reconcile());
  std::vector<Tensor> wrong = {Tensor::FromValues<float>("x", DataType::kFp32, {1, 2}, std::vector<float>{1, 2})};
  EXPECT_THAT(plane->Infer("fraud", std::nullopt, std::move(wrong), ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'x'")));
}

// InferAsync, waited for.
absl::StatusOr<PlaneResult> InferAsyncAndWait(InferencePlane& plane, const std::string& deployment,
                                              std::vector<Tensor> inputs, const std::string& request_id) {
  absl::Notification answered;
  absl::StatusOr<PlaneResult> out = absl::UnknownError("not answered");
  InferencePlane::InferCallback done = [&](absl::StatusOr<PlaneResult> r) {
    out = std::move(r);
    answered.Notify();
  };
  if (!plane.InferAsync(deployment, std::nullopt, inputs, request_id, std::nullopt, done)) {
    return absl::FailedPreconditionError("InferAsync declined");
  }
  answered.WaitForNotification();
  return out;
}

TEST_F(InferencePlaneTest, InferAsyncAnswersLikeInferAndLeavesDeadlinesToInfer) {
  auto plane = NewPlane(Options());
  ASSERT_OK(plane->Reconcile());
  ASSERT_OK_AND_ASSIGN(PlaneResult r, InferAsyncAndWait(*plane, "fraud", Row(), "req-a"));
  EXPECT_EQ(r.version, 1);
  EXPECT_EQ(r.prediction_id, "req-a");
  EXPECT_EQ(ComputedBy(r), 1);
  EXPECT_THAT(InferAsyncAndWait(*plane, "nope", Row(), ""), StatusIs(absl::StatusCode::kNotFound));

  // A deadline: declined, nothing taken.
  std::vector<Tensor> inputs = Row();
  bool called = false;
  InferencePlane::InferCallback done = [&](absl::StatusOr<PlaneResult>) { called = true; };
  EXPECT_FALSE(plane->InferAsync("fraud", std::nullopt, inputs, "", absl::Now() + absl::Seconds(5), done));
  EXPECT_FALSE(called);
  EXPECT_EQ(inputs.size(), Row().size());
  EXPECT_TRUE(done);
}

// How a load-test client sends its requests.
enum class Client {
  kInfer,       // waits in Infer
  kInferAsync,  // InferAsync, waited for
  kLoopPass,    // like an event loop: InferAsync three times, then the pass's deferred work,
                // then the answers the workers post back to it
};

// 4 clients of each kind in `kinds` send requests while the alias moves 20
// times: no request may fail, and every answer must come from a version
// current around its call.
void MoveTheAliasUnderLoad(InferencePlane& plane, FakeSource& source, const std::vector<Client>& kinds) {
  std::atomic<int64_t> published{1};  // set after each Reconcile returns
  std::atomic<bool> stop{false};
  std::atomic<int64_t> answered{0};
  std::atomic<int64_t> failures{0};
  std::atomic<int64_t> out_of_window{0};
  auto check = [&](const absl::StatusOr<PlaneResult>& r, int64_t before) {
    const int64_t after = published.load();
    if (!r.ok()) {
      ++failures;
      ADD_FAILURE() << r.status();
      return;
    }
    // The routing is published inside Reconcile, just before `published`
    // moves: an answer comes from a version current around the call.
    if (r->version < before || r->version > after + 1 || ComputedBy(*r) != r->version) ++out_of_window;
    ++answered;
  };
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      const Client kind = kinds[t % kinds.size()];
      DeferredTasks later;  // used by kLoopPass only
      std::optional<ManualTaskQueue> queue;  // kLoopPass: the thread's, as an event loop's
      if (kind == Client::kLoopPass) queue.emplace();
      int64_t i = 0;
      while (!stop.load()) {
        const int64_t before = published.load();
        std::string id = fmt::format("client{}-{}", t, i++);
        if (kind == Client::kInfer) {
          check(plane.Infer("fraud", std::nullopt, Row(), id), before);
        } else if (kind == Client::kInferAsync) {
          check(InferAsyncAndWait(plane, "fraud", Row(), id), before);
        } else {
          constexpr int kPass = 3;
          std::vector<absl::StatusOr<PlaneResult>> results(kPass, absl::UnknownError("not answered"));
          std::atomic<int> pending{kPass};
          for (int k = 0; k < kPass; ++k) {
            std::vector<Tensor> inputs = Row();
            InferencePlane::InferCallback done = [&, k](absl::StatusOr<PlaneResult> r) {
              results[k] = std::move(r);
              --pending;
            };
            if (!plane.InferAsync("fraud", std::nullopt, inputs, id + "-" + std::to_string(k), std::nullopt, done)) {
              results[k] = absl::FailedPreconditionError("InferAsync declined");
              --pending;
            }
          }
          later.RunAll();
          while (pending.load() > 0) {  // queued for a worker, which posts the answer back
            if (!queue->RunPosted()) std::this_thread::yield();
          }
          for (const auto& r : results) check(r, before);
        }
      }
    });
  }
  for (int64_t v = 2; v <= 21; ++v) {
    const int64_t seen = answered.load();
    source.SetAlias("iris", "production", v);
    ASSERT_OK(plane.Reconcile());
    published = v;
    // Let traffic flow on the new version before the next move.
    while (answered.load() < seen + 20 && failures.load() == 0) std::this_thread::yield();
  }
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(out_of_window, 0);
  EXPECT_GT(answered, 400);
}

TEST_F(InferencePlaneTest, AliasMovesUnderLoadFailNoRequest) {
  auto plane = NewPlane(Options());
  ASSERT_OK(plane->Reconcile());
  MoveTheAliasUnderLoad(*plane, source_, {Client::kInfer, Client::kInferAsync, Client::kLoopPass});
  ASSERT_OK_AND_ASSIGN(PlaneResult last, plane->Infer("fraud", std::nullopt, Row(), ""));
  EXPECT_EQ(last.version, 21);
  plane->WaitForRetirementsForTest();
  // Old versions were drained and unloaded: only v21 is left in /metrics.
  std::string text = plane->RenderMetrics();
  EXPECT_THAT(text, HasSubstr("version=\"21\""));
  EXPECT_THAT(text, Not(HasSubstr("version=\"20\"")));
  EXPECT_EQ(loads(), 21);
}

TEST_F(InferencePlaneTest, AliasMovesFailNoRequestOfLoopPassesToAQuickModel) {
  // A quick model with no batching delay: requests made on a thread with
  // DeferredTasks are computed in pass batches (ModelRunner::TrySubmit).
  quick_models_ = true;
  DeploymentSpec spec = Spec();
  spec.runner.max_queue_delay_us = 0;
  source_.SetDeployments({spec});
  auto plane = NewPlane(Options());
  ASSERT_OK(plane->Reconcile());
  MoveTheAliasUnderLoad(*plane, source_, {Client::kLoopPass, Client::kLoopPass, Client::kInfer});
  plane->WaitForRetirementsForTest();
  EXPECT_EQ(loads(), 21);
  // A pass of three requests to the idle v21 is one backend call of 3 rows.
  auto value = [&](const std::string& series) {
    const std::string text = plane->RenderMetrics();
    const std::string key = series + "{deployment=\"fraud\",model=\"iris\",version=\"21\"} ";
    size_t at = text.find(key);
    return at == std::string::npos ? 0.0 : std::stod(text.substr(at + key.size()));
  };
  const double rows = value("cairn_inference_batch_size_sum");
  const double calls = value("cairn_inference_batch_size_count");
  std::atomic<int> ok{0};
  {
    DeferredTasks later;
    for (int k = 0; k < 3; ++k) {
      std::vector<Tensor> inputs = Row();
      InferencePlane::InferCallback done = [&](absl::StatusOr<PlaneResult> r) { ok += r.ok() && r->version == 21; };
      ASSERT_TRUE(plane->InferAsync("fraud", std::nullopt, inputs, "", std::nullopt, done));
    }
    later.RunAll();
  }
  EXPECT_EQ(ok, 3);
  EXPECT_EQ(value("cairn_inference_batch_size_sum") - rows, 3);
  EXPECT_EQ(value("cairn_inference_batch_size_count") - calls, 1);
}

TEST_F(InferencePlaneTest, CanaryTakesRoughlyItsShare) {
  DeploymentSpec spec = Spec();
  spec.canary_version = 2;
  spec.canary_percent = 25;
  source_.SetDeployments({spec});
  auto plane = NewPlane(Options());
  ASSERT_OK(plane->Reconcile());
  int canary = 0;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_OK_AND_ASSIGN(PlaneResult r, plane->Infer("fraud", std::nullopt, Row(), ""));
    if (r.role == Role::kCanary) {
      ++canary;
      EXPECT_EQ(r.version, 2);
      EXPECT_EQ(ComputedBy(r), 2);
    } else {
      EXPECT_EQ(r.version, 1);
    }
  }
  EXPECT_GE(canary, 100);
  EXPECT_LE(canary, 400);
  // With a request id the choice is the same every time.
  ASSERT_OK_AND_ASSIGN(PlaneResult first, plane->Infer("fraud", std::nullopt, Row(), "sticky-id"));
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK_AND_ASSIGN(PlaneResult again, plane->Infer("fraud", std::nullopt, Row(), "sticky-id"));
    EXPECT_EQ(again.version, first.version);
  }
  // A loaded canary version can be asked for directly.
  ASSERT_OK_AND_ASSIGN(PlaneResult direct, plane->Infer("fraud", 2, Row(), ""));
  EXPECT_EQ(direct.role, Role::kCanary);
  ASSERT_OK_AND_ASSIGN(ModelMetadata m, plane->Metadata("fraud", std::nullopt));
  EXPECT_THAT(m.versions, ElementsAre(1, 2));
  EXPECT_THAT(plane->RenderMetrics(),
              HasSubstr("cairn_model_loaded{deployment=\"fraud\",model=\"iris\",version=\"2\",role=\"canary\"} 1"));
}

TEST(ChooseCanaryTest, IsDeterministicPerRequestIdAndHonoursBounds) {
  EXPECT_FALSE(ChooseCanary("abc", 0));
  EXPECT_TRUE(ChooseCanary("abc", 100));
  int chosen = 0;
  for (int i = 0; i < 1000; ++i) {
    std::string id = fmt::format("request-{}", i);
    bool c = ChooseCanary(id, 30);
    EXPECT_EQ(c, ChooseCanary(id, 30));
    chosen += c;
  }
  EXPECT_GE(chosen, 200);
  EXPECT_LE(chosen, 400);
}

std::vector<Json> ReadJsonLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<Json> lines;
  std::string line;
  while (std::getline(in, line)) {
    absl::StatusOr<Json> j = ParseJson(line);
    if (j.ok()) lines.push_back(*std::move(j));
  }
  return lines;
}

TEST_F(InferencePlaneTest, ShadowIsLoggedNotReturned) {
  DeploymentSpec spec = Spec();
  spec.shadow_version = 2;
  source_.SetDeployments({spec});
  PlaneOptions options = Options();
  options.payload_log_dir = tmp_.path() + "/payloads";
  auto plane = NewPlane(std::move(options));
  ASSERT_OK(plane->Reconcile());
  ASSERT_OK_AND_ASSIGN(PlaneResult r, plane->Infer("fraud", std::nullopt, Row(), "p-1"));
  EXPECT_EQ(r.version, 1);
  EXPECT_EQ(r.role, Role::kPrimary);
  EXPECT_EQ(ComputedBy(r), 1);

  // The shadow answers asynchronously: wait (bounded) for its line.
  std::vector<Json> lines;
  for (int i = 0; i < 1000 && lines.size() < 2; ++i) {
    ASSERT_OK(plane->FlushPayloadLogForTest());
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(tmp_.path() + "/payloads/fraud", ec)) {
      lines = ReadJsonLines(e.path().string());
    }
    if (lines.size() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(lines.size(), 2u);
  std::map<std::string, Json> by_role;
  for (const Json& line : lines) by_role[line["role"].get<std::string>()] = line;
  ASSERT_TRUE(by_role.count("primary"));
  ASSERT_TRUE(by_role.count("shadow"));
  EXPECT_EQ(by_role["primary"]["prediction_id"], "p-1");
  EXPECT_EQ(by_role["shadow"]["prediction_id"], "p-1");
  EXPECT_EQ(by_role["primary"]["version"], 1);
  EXPECT_EQ(by_role["shadow"]["version"], 2);
  EXPECT_EQ(by_role["shadow"]["outputs"][0]["data"][0], 2006.0);
  EXPECT_EQ(by_role["primary"]["outputs"][0]["data"][0], 1006.0);
  EXPECT_EQ(by_role["shadow"]["inputs"][0]["data"], Json::parse("[1.0,2.0,3.0]"));
}

TEST_F(InferencePlaneTest, FailedLoadKeepsTheOldVersion) {
  auto plane = NewPlane(Options());
  ASSERT_OK(plane->Reconcile());
  Break(2, true);
  source_.SetAlias("iris", "production", 2);
  ASSERT_OK(plane->Reconcile());
  ASSERT_OK_AND_ASSIGN(PlaneResult r, plane->Infer("fraud", std::nullopt, Row(), ""));
  EXPECT_EQ(r.version, 1);
  Json status = plane->Deployments()["deployments"][0];
  EXPECT_EQ(status["name"], "fraud");
  EXPECT_EQ(status["resolved_version"], 2);
  EXPECT_EQ(status["primary"]["version"], 1);
  EXPECT_EQ(status["error"]["version"], 2);
  EXPECT_THAT(status["error"]["message"].get<std::string>(), HasSubstr("corrupt model file for version 2"));
  EXPECT_THAT(plane->RenderMetrics(),
              HasSubstr("cairn_model_load_failures_total{deployment=\"fraud\",model=\"iris\",version=\"2\"} 1"));

  Break(2, false);  // fixed: the next pass loads it
  ASSERT_OK(plane->Reconcile());
  ASSERT_OK_AND_ASSIGN(PlaneResult fixed, plane->Infer("fraud", std::nullopt, Row(), ""));
  EXPECT_EQ(fixed.version, 2);
  EXPECT_TRUE(plane->Deployments()["deployments"][0]["error"].is_null());
}

TEST_F(InferencePlaneTest, NothingLoadableYetIsUnavailable) {
  Break(1, true);
  auto plane = NewPlane(Options());
  ASSERT_OK(plane->Reconcile());
  EXPECT_FALSE(plane->Ready());
  EXPECT_THAT(plane->Infer("fraud", std::nullopt, Row(), ""),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("corrupt model file")));
}

TEST_F(InferencePlaneTest, RemovedDeploymentDrainsAndUnloads) {
  auto plane = NewPlane(Options());
  ASSERT_OK(plane->Reconcile());
  ASSERT_OK(plane->Infer("fraud", std::nullopt, Row(), "").status());
  source_.SetDeployments({});
  ASSERT_OK(plane->Reconcile());
  EXPECT_THAT(plane->Infer("fraud", std::nullopt, Row(), ""), StatusIs(absl::StatusCode::kNotFound));
  plane->WaitForRetirementsForTest();
  EXPECT_THAT(plane->RenderMetrics(), Not(HasSubstr("deployment=\"fraud\"")));
  EXPECT_EQ(plane->Deployments()["deployments"], Json::array());
}

TEST_F(InferencePlaneTest, StatisticsAndMetricsCoverEveryVersion) {
  DeploymentSpec spec = Spec();
  spec.canary_version = 2;
  spec.canary_percent = 50;
  source_.SetDeployments({spec});
  auto plane = NewPlane(Options());
  ASSERT_OK(plane->Reconcile());
  for (int i = 0; i < 10; ++i) ASSERT_OK(plane->Infer("fraud", 1, Row(), "").status());
  ASSERT_OK_AND_ASSIGN(Json stats, plane->Statistics("fraud"));
  ASSERT_EQ(stats["versions"].size(), 2u);
  EXPECT_EQ(stats["versions"][0]["version"], 1);
  EXPECT_EQ(stats["versions"][0]["role"], "primary");
  EXPECT_EQ(stats["versions"][0]["requests"]["ok"], 10);
  EXPECT_EQ(stats["versions"][1]["role"], "canary");
  std::string text = plane->RenderMetrics();
  for (const char* family : {"cairn_inference_requests_total", "cairn_inference_request_duration_seconds",
                             "cairn_inference_queue_duration_seconds", "cairn_inference_batch_size",
                             "cairn_inference_in_flight", "cairn_inference_queue_depth", "cairn_model_loaded"}) {
    EXPECT_THAT(text, HasSubstr(fmt::format("# HELP {} ", family)));
    EXPECT_THAT(text, HasSubstr(fmt::format("# TYPE {} ", family)));
  }
  EXPECT_THAT(text, HasSubstr("cairn_inference_requests_total{deployment=\"fraud\",model=\"iris\",version=\"1\","
                              "code=\"ok\"} 10"));
}

TEST_F(InferencePlaneTest, StartFollowsTheSourceInTheBackground) {
  auto plane = NewPlane(Options());
  ASSERT_OK(plane->Start());
  EXPECT_THAT(plane->Start(), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK_AND_ASSIGN(PlaneResult r, plane->Infer("fraud", std::nullopt, Row(), ""));  // served at once
  EXPECT_EQ(r.version, 1);
  source_.SetAlias("iris", "production", 2);
  int64_t version = 1;
  for (int i = 0; i < 1000 && version != 2; ++i) {  // the reconcile thread polls every 5 ms
    ASSERT_OK_AND_ASSIGN(PlaneResult now, plane->Infer("fraud", std::nullopt, Row(), ""));
    version = now.version;
    if (version != 2) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(version, 2);
  plane->Stop();
  EXPECT_THAT(plane->Infer("fraud", std::nullopt, Row(), ""), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_FALSE(plane->Ready());
}

TEST_F(InferencePlaneTest, RejectsBadOptionsAndSpecs) {
  PlaneOptions options = Options();
  options.payload_sample_rate = 2;
  EXPECT_THAT(InferencePlane::Create(source_, options, env_), StatusIs(absl::StatusCode::kInvalidArgument));
  DeploymentSpec bad = Spec();
  bad.canary_percent = 30;  // without a canary version
  source_.SetDeployments({bad});
  auto plane = NewPlane(Options());
  ASSERT_OK(plane->Reconcile());
  EXPECT_THAT(plane->Deployments()["deployments"][0]["error"]["message"].get<std::string>(),
              HasSubstr("without a canary version"));
}

}  // namespace
}  // namespace cairn::serving
