#include "tracking/tracking_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <thread>

#include "base/mem_env.h"
#include "base/testing.h"
#include "db/sqlite_database.h"

namespace cairn::tracking {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class TrackingStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_ = NewMemEnv();
    env_->SetNowMicros(1'700'000'000'000'000);
    auto db = db::OpenSqliteDatabase({.path = tmp_.path() + "/cairn.db"});
    ASSERT_THAT(db, IsOk());
    db_ = std::move(db).value();
    auto store = TrackingStore::Create(*db_, *env_);
    ASSERT_THAT(store, IsOk());
    store_ = std::move(store).value();
  }

  std::string NewRun(const std::string& experiment_id = "0") {
    auto run = store_->CreateRun({.experiment_id = experiment_id, .user_id = "ana"});
    EXPECT_THAT(run, IsOk());
    return run.ok() ? run->info.run_id : "";
  }

  cairn::testing::ScopedTempDir tmp_;
  std::unique_ptr<MemEnv> env_;
  std::unique_ptr<db::Database> db_;
  std::unique_ptr<TrackingStore> store_;
};

TEST_F(TrackingStoreTest, DefaultExperimentExists) {
  auto e = store_->GetExperiment("0");
  ASSERT_THAT(e, IsOk());
  EXPECT_EQ(e->name, "Default");
  EXPECT_EQ(e->artifact_location, "mlflow-artifacts:/0");
}

TEST_F(TrackingStoreTest, CreateExperimentAssignsIdsAndRejectsDuplicates) {
  auto id = store_->CreateExperiment("churn", "", {{"team", "risk"}});
  ASSERT_THAT(id, IsOk());
  EXPECT_EQ(*id, "1");
  auto e = store_->GetExperimentByName("churn");
  ASSERT_THAT(e, IsOk());
  EXPECT_EQ(e->artifact_location, "mlflow-artifacts:/1");
  ASSERT_EQ(e->tags.size(), 1u);
  EXPECT_EQ(e->tags[0].value, "risk");
  EXPECT_THAT(store_->CreateExperiment("churn", "", {}), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(store_->CreateExperiment("", "", {}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->GetExperiment("999"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->GetExperiment("abc"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(TrackingStoreTest, DeletedExperimentNameIsReservedUntilRestored) {
  auto id = store_->CreateExperiment("x", "", {});
  ASSERT_THAT(id, IsOk());
  std::string run = NewRun(*id);
  ASSERT_THAT(store_->DeleteExperiment(*id), IsOk());
  EXPECT_THAT(store_->CreateExperiment("x", "", {}),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("deleted state")));
  EXPECT_EQ(store_->GetRun(run)->info.lifecycle_stage, LifecycleStage::kDeleted);
  EXPECT_THAT(store_->CreateRun({.experiment_id = *id}), StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_THAT(store_->RestoreExperiment(*id), IsOk());
  EXPECT_EQ(store_->GetRun(run)->info.lifecycle_stage, LifecycleStage::kActive);
  EXPECT_THAT(store_->DeleteExperiment("0"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(TrackingStoreTest, ParamsAreImmutableTagsOverwrite) {
  std::string run = NewRun();
  Param p{"lr", "0.1"};
  ASSERT_THAT(store_->LogBatch(run, {}, {&p, 1}, {}), IsOk());
  ASSERT_THAT(store_->LogBatch(run, {}, {&p, 1}, {}), IsOk());  // same value: fine
  Param changed{"lr", "0.2"};
  EXPECT_THAT(store_->LogBatch(run, {}, {&changed, 1}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Changing param values is not allowed")));
  Tag t1{"stage", "a"}, t2{"stage", "b"};
  ASSERT_THAT(store_->LogBatch(run, {}, {}, {&t1, 1}), IsOk());
  ASSERT_THAT(store_->LogBatch(run, {}, {}, {&t2, 1}), IsOk());
  auto r = store_->GetRun(run);
  ASSERT_THAT(r, IsOk());
  ASSERT_EQ(r->params.size(), 1u);
  EXPECT_EQ(r->params[0].value, "0.1");
  bool found = false;
  for (const Tag& t : r->tags) found |= t.key == "stage" && t.value == "b";
  EXPECT_TRUE(found);
}

TEST_F(TrackingStoreTest, FailedBatchChangesNothing) {
  std::string run = NewRun();
  Param p{"a", "1"};
  ASSERT_THAT(store_->LogBatch(run, {}, {&p, 1}, {}), IsOk());
  std::vector<Metric> metrics = {{"loss", 1.0, 1, 0}};
  std::vector<Param> params = {{"b", "2"}, {"a", "different"}};
  EXPECT_THAT(store_->LogBatch(run, metrics, params, {}), StatusIs(absl::StatusCode::kInvalidArgument));
  auto r = store_->GetRun(run);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->params.size(), 1u);
  EXPECT_TRUE(r->metrics.empty());
  auto h = store_->GetMetricHistory(run, "loss", 0, "");
  ASSERT_THAT(h, IsOk());
  EXPECT_TRUE(h->points.empty());
}

TEST_F(TrackingStoreTest, MetricHistoryKeepsOrderAndPaginates) {
  std::string run = NewRun();
  for (int batch = 0; batch < 5; ++batch) {
    std::vector<Metric> ms;
    for (int i = 0; i < 10; ++i) ms.push_back({"loss", 1.0 / (batch * 10 + i + 1), 1000 + batch * 10 + i, batch * 10 + i});
    ASSERT_THAT(store_->LogBatch(run, ms, {}, {}), IsOk());
  }
  auto all = store_->GetMetricHistory(run, "loss", 0, "");
  ASSERT_THAT(all, IsOk());
  ASSERT_EQ(all->points.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(all->points[i].step, i);
  EXPECT_TRUE(all->next_page_token.empty());

  std::vector<int64_t> steps;
  std::string token;
  int pages = 0;
  do {
    auto page = store_->GetMetricHistory(run, "loss", 15, token);
    ASSERT_THAT(page, IsOk());
    for (const MetricPoint& m : page->points) steps.push_back(m.step);
    token = page->next_page_token;
    ++pages;
  } while (!token.empty());
  EXPECT_EQ(pages, 4);
  ASSERT_EQ(steps.size(), 50u);
  EXPECT_EQ(steps.back(), 49);
  EXPECT_THAT(store_->GetMetricHistory(run, "loss", 0, "garbage!"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->GetMetricHistory("0123456789abcdef0123456789abcdef", "loss", 0, ""),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(TrackingStoreTest, LatestMetricFollowsStepThenTimestampNotArrivalOrder) {
  std::string run = NewRun();
  std::vector<Metric> a = {{"acc", 0.9, 100, 5}};
  std::vector<Metric> b = {{"acc", 0.5, 200, 3}};  // later arrival, earlier step
  std::vector<Metric> c = {{"acc", NAN, 300, 5}};  // same step, later timestamp: wins even as NaN
  ASSERT_THAT(store_->LogBatch(run, a, {}, {}), IsOk());
  ASSERT_THAT(store_->LogBatch(run, b, {}, {}), IsOk());
  auto r = store_->GetRun(run);
  ASSERT_EQ(r->metrics.size(), 1u);
  EXPECT_DOUBLE_EQ(r->metrics[0].value, 0.9);
  ASSERT_THAT(store_->LogBatch(run, c, {}, {}), IsOk());
  r = store_->GetRun(run);
  EXPECT_TRUE(std::isnan(r->metrics[0].value));
}

TEST_F(TrackingStoreTest, BatchLimitsAndKeyValidation) {
  std::string run = NewRun();
  std::vector<Metric> too_many(1001, Metric{"m", 1, 1, 0});
  EXPECT_THAT(store_->LogBatch(run, too_many, {}, {}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("1000")));
  std::vector<Param> params(101);
  for (size_t i = 0; i < params.size(); ++i) params[i] = {"p" + std::to_string(i), "v"};
  EXPECT_THAT(store_->LogBatch(run, {}, params, {}), StatusIs(absl::StatusCode::kInvalidArgument));
  Param long_value{"k", std::string(6001, 'x')};
  EXPECT_THAT(store_->LogBatch(run, {}, {&long_value, 1}, {}), StatusIs(absl::StatusCode::kInvalidArgument));
  for (const std::string& bad : std::vector<std::string>{"", "../x", "/abs", "a\"b", std::string(251, 'k')}) {
    Metric m{bad, 1, 1, 0};
    EXPECT_THAT(store_->LogBatch(run, {&m, 1}, {}, {}), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
  Metric ok{"train/loss v2", 1, 1, 0};
  EXPECT_THAT(store_->LogBatch(run, {&ok, 1}, {}, {}), IsOk());
}

TEST_F(TrackingStoreTest, DeletedRunRejectsWrites) {
  std::string run = NewRun();
  ASSERT_THAT(store_->DeleteRun(run), IsOk());
  Metric m{"m", 1, 1, 0};
  EXPECT_THAT(store_->LogBatch(run, {&m, 1}, {}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must be in the 'active' state")));
  ASSERT_THAT(store_->RestoreRun(run), IsOk());
  EXPECT_THAT(store_->LogBatch(run, {&m, 1}, {}, {}), IsOk());
  EXPECT_THAT(store_->DeleteRun("ffffffffffffffffffffffffffffffff"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(TrackingStoreTest, RunNameLivesInTagAndRow) {
  auto run = store_->CreateRun({.experiment_id = "0", .run_name = "first"});
  ASSERT_THAT(run, IsOk());
  EXPECT_EQ(run->info.run_name, "first");
  auto info = store_->UpdateRun({.run_id = run->info.run_id, .status = "FINISHED", .end_time = 5, .run_name = "second"});
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->run_name, "second");
  EXPECT_EQ(info->status, "FINISHED");
  EXPECT_EQ(info->end_time, 5);
  EXPECT_THAT(store_->UpdateRun({.run_id = run->info.run_id, .status = "DONE"}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  auto conflicting = store_->CreateRun({.run_name = "a", .tags = {{"mlflow.runName", "b"}}});
  EXPECT_THAT(conflicting, StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(TrackingStoreTest, SearchRunsFiltersOrdersAndPages) {
  auto exp = store_->CreateExperiment("search", "", {});
  ASSERT_THAT(exp, IsOk());
  for (int i = 0; i < 25; ++i) {
    auto run = store_->CreateRun({.experiment_id = *exp, .start_time = 1000 + i});
    ASSERT_THAT(run, IsOk());
    Metric m{"acc", i / 100.0, 1, 0};
    Param p{"model", i % 2 ? "rf" : "logreg"};
    ASSERT_THAT(store_->LogBatch(run->info.run_id, {&m, 1}, {&p, 1}, {}), IsOk());
  }
  SearchRunsRequest req;
  req.experiment_ids = {*exp};
  req.filter = "metrics.acc > 0.1 and params.model = 'rf'";
  req.order_by = {"metrics.acc DESC"};
  req.max_results = 3;
  auto page1 = store_->SearchRuns(req);
  ASSERT_THAT(page1, IsOk());
  ASSERT_EQ(page1->runs.size(), 3u);
  EXPECT_DOUBLE_EQ(page1->runs[0].metrics[0].value, 0.23);
  EXPECT_DOUBLE_EQ(page1->runs[2].metrics[0].value, 0.19);
  ASSERT_FALSE(page1->next_page_token.empty());
  int total = 3;
  req.page_token = page1->next_page_token;
  while (!req.page_token.empty()) {
    auto page = store_->SearchRuns(req);
    ASSERT_THAT(page, IsOk());
    total += static_cast<int>(page->runs.size());
    req.page_token = page->next_page_token;
  }
  EXPECT_EQ(total, 7);  // 11, 13, ..., 23
  req.filter = "metrics.acc >";
  EXPECT_THAT(store_->SearchRuns(req), StatusIs(absl::StatusCode::kInvalidArgument));
  req.filter = "";
  req.max_results = 50001;
  EXPECT_THAT(store_->SearchRuns(req), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(TrackingStoreTest, ArtifactsListAsDirectoryTree) {
  ASSERT_THAT(store_->PutArtifact("1/r/artifacts/model/model.pkl", {"aa", 10}), IsOk());
  ASSERT_THAT(store_->PutArtifact("1/r/artifacts/model/conda.yaml", {"bb", 3}), IsOk());
  ASSERT_THAT(store_->PutArtifact("1/r/artifacts/metrics.json", {"cc", 7}), IsOk());
  auto root = store_->ListArtifacts("1/r/artifacts");
  ASSERT_THAT(root, IsOk());
  ASSERT_EQ(root->size(), 2u);
  EXPECT_EQ((*root)[0].path, "metrics.json");
  EXPECT_FALSE((*root)[0].is_dir);
  EXPECT_EQ((*root)[1].path, "model");
  EXPECT_TRUE((*root)[1].is_dir);
  auto model = store_->ListArtifacts("1/r/artifacts/model");
  ASSERT_EQ(model->size(), 2u);
  EXPECT_EQ((*model)[0].path, "conda.yaml");
  EXPECT_THAT(store_->PutArtifact("1/r/artifacts/model", {"dd", 1}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->PutArtifact("1/r/artifacts/metrics.json/x", {"dd", 1}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_THAT(store_->DeleteArtifacts("1/r/artifacts/model"), IsOk());
  EXPECT_EQ(store_->ListArtifacts("1/r/artifacts")->size(), 1u);
  EXPECT_THAT(store_->DeleteArtifacts("1/r/artifacts/model"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(TrackingStoreTest, ConcurrentBatchesAllLand) {
  std::string run = NewRun();
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int b = 0; b < 20; ++b) {
        std::vector<Metric> ms;
        for (int i = 0; i < 50; ++i) ms.push_back({"m" + std::to_string(t), 1.0, 1, b * 50 + i});
        EXPECT_THAT(store_->LogBatch(run, ms, {}, {}), IsOk());
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 8; ++t) {
    auto h = store_->GetMetricHistory(run, "m" + std::to_string(t), 0, "");
    ASSERT_THAT(h, IsOk());
    EXPECT_EQ(h->points.size(), 1000u);
  }
}

TEST_F(TrackingStoreTest, RunsUsingADatasetCommitAreFoundByDigest) {
  const std::string a = NewRun(), b = NewRun(), c = NewRun();
  const std::string commit(64, 'a');
  DatasetInput train{.tags = {{"mlflow.data.context", "training"}},
                     .dataset = {.name = "iris", .digest = commit, .source_type = "cairn", .source = "cairn:iris@main"}};
  DatasetInput eval = train;
  eval.tags = {{"mlflow.data.context", "evaluation"}};
  DatasetInput other = train;
  other.dataset.digest = std::string(64, 'b');
  ASSERT_OK(store_->LogInputs(a, {train}));
  ASSERT_OK(store_->LogInputs(b, {eval}));
  ASSERT_OK(store_->LogInputs(c, {other}));
  ASSERT_OK_AND_ASSIGN(auto uses, store_->RunsUsingDataset(commit));
  ASSERT_EQ(uses.size(), 2u);
  std::set<std::pair<std::string, std::string>> got;
  for (const auto& u : uses) {
    EXPECT_EQ(u.dataset_name, "iris");
    got.emplace(u.run_id, u.context);
  }
  EXPECT_EQ(got, (std::set<std::pair<std::string, std::string>>{{a, "training"}, {b, "evaluation"}}));
  ASSERT_OK_AND_ASSIGN(auto none, store_->RunsUsingDataset(std::string(64, 'c')));
  EXPECT_TRUE(none.empty());
}

}  // namespace
}  // namespace cairn::tracking
