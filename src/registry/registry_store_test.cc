#include "registry/registry_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "base/mem_env.h"
#include "base/testing.h"
#include "db/sqlite_database.h"

namespace cairn::registry {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

constexpr int64_t kStart = 1'700'000'000'000;  // ms

class RegistryStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_ = NewMemEnv();
    env_->SetNowMicros(kStart * 1000);
    Open();
  }

  void Open() {
    auto db = db::OpenSqliteDatabase({.path = tmp_.path() + "/cairn.db"});
    ASSERT_THAT(db, IsOk());
    db_ = std::move(db).value();
    auto store = RegistryStore::Create(*db_, *env_);
    ASSERT_THAT(store, IsOk());
    store_ = std::move(store).value();
  }

  void Reopen() {
    store_.reset();
    db_.reset();
    Open();
  }

  void AdvanceMs(int64_t ms) { env_->SetNowMicros(env_->NowMicros() + ms * 1000); }

  // Creates model `name` with `n` versions (sources runs:/r<i>/model).
  void MakeModel(const std::string& name, int n) {
    ASSERT_THAT(store_->CreateRegisteredModel(name, "", {}), IsOk());
    for (int i = 1; i <= n; ++i) {
      ASSERT_THAT(store_->CreateModelVersion({.name = name,
                                              .source = fmt::format("runs:/r{}/model", i),
                                              .run_id = fmt::format("r{}", i)}),
                  IsOk());
    }
  }

  cairn::testing::ScopedTempDir tmp_;
  std::unique_ptr<MemEnv> env_;
  std::unique_ptr<db::Database> db_;
  std::unique_ptr<RegistryStore> store_;
};

TEST_F(RegistryStoreTest, RegisteredModelCrud) {
  auto created = store_->CreateRegisteredModel("churn", "predicts churn", {{"team", "risk"}}, "ana");
  ASSERT_THAT(created, IsOk());
  EXPECT_EQ(created->creation_timestamp, kStart);
  EXPECT_THAT(store_->CreateRegisteredModel("churn", "", {}),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("already exists")));

  AdvanceMs(5);
  auto updated = store_->UpdateRegisteredModel("churn", "v2 text");
  ASSERT_THAT(updated, IsOk());
  EXPECT_EQ(updated->description, "v2 text");
  EXPECT_EQ(updated->last_updated_timestamp, kStart + 5);

  ASSERT_THAT(store_->SetRegisteredModelTag("churn", "owner", "ana"), IsOk());
  ASSERT_THAT(store_->SetRegisteredModelTag("churn", "owner", "bob"), IsOk());
  ASSERT_THAT(store_->DeleteRegisteredModelTag("churn", "team"), IsOk());
  ASSERT_THAT(store_->DeleteRegisteredModelTag("churn", "never-set"), IsOk());
  auto got = store_->GetRegisteredModel("churn");
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->user_id, "ana");
  EXPECT_EQ(got->creation_timestamp, kStart);
  EXPECT_THAT(got->tags, ElementsAre(Pair("owner", "bob")));

  EXPECT_THAT(store_->GetRegisteredModel("nope"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->SetRegisteredModelTag("nope", "k", "v"), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_THAT(store_->DeleteRegisteredModel("churn"), IsOk());
  EXPECT_THAT(store_->GetRegisteredModel("churn"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->DeleteRegisteredModel("churn"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(RegistryStoreTest, VersionsNumberUpwardsAndAreNeverReused) {
  MakeModel("m", 2);
  ASSERT_THAT(store_->DeleteModelVersion("m", 2), IsOk());
  auto v = store_->CreateModelVersion({.name = "m",
                                       .source = "runs:/r9/model",
                                       .run_id = "r9",
                                       .run_link = "http://x/r9",
                                       .description = "third",
                                       .user_id = "ana",
                                       .tags = {{"k", "v"}},
                                       .artifact_digest = "sha256:abc"});
  ASSERT_THAT(v, IsOk());
  EXPECT_EQ(v->version, 3);
  auto got = store_->GetModelVersion("m", 3);
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->current_stage, "None");
  EXPECT_EQ(got->status, "READY");
  EXPECT_EQ(got->source, "runs:/r9/model");
  EXPECT_EQ(got->run_link, "http://x/r9");
  EXPECT_EQ(got->artifact_digest, "sha256:abc");
  EXPECT_EQ(got->user_id, "ana");
  EXPECT_THAT(got->tags, ElementsAre(Pair("k", "v")));
  EXPECT_THAT(store_->GetModelVersion("m", 2), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->CreateModelVersion({.name = "missing", .source = "s"}), StatusIs(absl::StatusCode::kNotFound));

  ASSERT_THAT(store_->SetModelVersionTag("m", 3, "k", "w"), IsOk());
  ASSERT_THAT(store_->DeleteModelVersionTag("m", 3, "k"), IsOk());
  auto updated = store_->UpdateModelVersion("m", 3, "new text");
  ASSERT_THAT(updated, IsOk());
  EXPECT_EQ(updated->description, "new text");
  EXPECT_TRUE(updated->tags.empty());
}

TEST_F(RegistryStoreTest, ConcurrentVersionCreationGivesDistinctNumbers) {
  MakeModel("m", 0);
  std::vector<std::thread> threads;
  std::vector<int64_t> versions(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto v = store_->CreateModelVersion({.name = "m", .source = "s"});
      versions[t] = v.ok() ? v->version : -1;
    });
  }
  for (auto& t : threads) t.join();
  std::sort(versions.begin(), versions.end());
  EXPECT_THAT(versions, ElementsAre(1, 2, 3, 4, 5, 6, 7, 8));
}

TEST_F(RegistryStoreTest, StagesAndLatestVersions) {
  MakeModel("m", 3);
  ASSERT_THAT(store_->TransitionModelVersionStage("m", 1, "production", false), IsOk());
  auto v2 = store_->TransitionModelVersionStage("m", 2, "Production", true);
  ASSERT_THAT(v2, IsOk());
  EXPECT_EQ(v2->current_stage, "Production");
  auto v1 = store_->GetModelVersion("m", 1);
  ASSERT_THAT(v1, IsOk());
  EXPECT_EQ(v1->current_stage, "Archived");
  EXPECT_THAT(store_->TransitionModelVersionStage("m", 2, "Deployed", false),
              StatusIs(absl::StatusCode::kInvalidArgument));

  auto latest = store_->GetLatestVersions("m", {"production", "None"});
  ASSERT_THAT(latest, IsOk());
  ASSERT_EQ(latest->size(), 2u);
  EXPECT_EQ((*latest)[0].version, 2);
  EXPECT_EQ((*latest)[1].version, 3);
  auto all = store_->GetLatestVersions("m", {});
  ASSERT_THAT(all, IsOk());
  EXPECT_EQ(all->size(), 3u);  // None, Production, Archived
  auto model = store_->GetRegisteredModel("m");
  ASSERT_THAT(model, IsOk());
  ASSERT_EQ(model->latest_versions.size(), 3u);
  EXPECT_EQ(model->latest_versions[0].current_stage, "Archived");  // by stage name
}

TEST_F(RegistryStoreTest, AliasesAndHistoryChain) {
  MakeModel("m", 3);
  ASSERT_THAT(store_->SetAlias("m", "production", 1, {.user = "ana", .reason = "first"}), IsOk());
  const int64_t t1 = kStart;
  AdvanceMs(1000);
  ASSERT_THAT(store_->SetAlias("m", "production", 2, {.user = "bob", .reason = "better", .decision_id = 7}), IsOk());
  ASSERT_THAT(store_->SetAlias("m", "production", 2, {.user = "bob"}), IsOk());  // no move: not recorded
  AdvanceMs(1000);
  ASSERT_THAT(store_->DeleteAlias("m", "production", {.user = "carl", .reason = "incident"}), IsOk());
  AdvanceMs(1000);
  ASSERT_THAT(store_->SetAlias("m", "production", 3, {.user = "dan"}), IsOk());

  auto history = store_->AliasHistory("m", "production", 0);
  ASSERT_THAT(history, IsOk());
  ASSERT_EQ(history->size(), 4u);
  // Newest first; each move's from is the previous move's to.
  EXPECT_EQ((*history)[0].from_version, std::nullopt);
  EXPECT_EQ((*history)[0].to_version, 3);
  EXPECT_EQ((*history)[1].from_version, 2);
  EXPECT_EQ((*history)[1].to_version, std::nullopt);
  EXPECT_EQ((*history)[1].user, "carl");
  EXPECT_EQ((*history)[1].reason, "incident");
  EXPECT_EQ((*history)[2].from_version, 1);
  EXPECT_EQ((*history)[2].to_version, 2);
  EXPECT_EQ((*history)[2].decision_id, 7);
  EXPECT_EQ((*history)[3].to_version, 1);
  EXPECT_EQ((*history)[3].time_ms, t1);
  auto limited = store_->AliasHistory("m", "production", 1);
  ASSERT_THAT(limited, IsOk());
  ASSERT_EQ(limited->size(), 1u);
  EXPECT_EQ((*limited)[0].to_version, 3);

  auto at = [&](int64_t t) {
    auto v = store_->AliasAt("m", "production", t);
    EXPECT_THAT(v, IsOk());
    return v.ok() ? *v : std::optional<int64_t>(-1);
  };
  EXPECT_EQ(at(t1 - 1), std::nullopt);
  EXPECT_EQ(at(t1), 1);
  EXPECT_EQ(at(t1 + 999), 1);
  EXPECT_EQ(at(t1 + 1000), 2);
  EXPECT_EQ(at(t1 + 2500), std::nullopt);
  EXPECT_EQ(at(t1 + 3000), 3);

  auto by_alias = store_->GetModelVersionByAlias("m", "production");
  ASSERT_THAT(by_alias, IsOk());
  EXPECT_EQ(by_alias->version, 3);
  EXPECT_THAT(by_alias->aliases, ElementsAre("production"));
  auto model = store_->GetRegisteredModel("m");
  ASSERT_THAT(model, IsOk());
  EXPECT_THAT(model->aliases, ElementsAre(Pair("production", 3)));
  EXPECT_THAT(store_->GetModelVersionByAlias("m", "staging"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->DeleteAlias("m", "staging", {}), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->SetAlias("m", "staging", 9, {}), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(RegistryStoreTest, ExpectedOriginGuardsAliasMove) {
  MakeModel("m", 3);
  ASSERT_THAT(store_->SetAlias("m", "prod", 1, {.check_expected = true, .expected_from = std::nullopt}), IsOk());
  EXPECT_THAT(store_->SetAlias("m", "prod", 3, {.check_expected = true, .expected_from = 2}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("points at version 1")));
  ASSERT_THAT(store_->SetAlias("m", "prod", 3, {.check_expected = true, .expected_from = 1}), IsOk());
  auto history = store_->AliasHistory("m", "prod", 0);
  ASSERT_THAT(history, IsOk());
  EXPECT_EQ(history->size(), 2u);
}

TEST_F(RegistryStoreTest, ConcurrentAliasMovesKeepAnUnbrokenChain) {
  MakeModel("m", 4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        EXPECT_THAT(store_->SetAlias("m", "prod", 1 + (t + i) % 4, {.user = fmt::format("u{}", t)}), IsOk());
      }
    });
  }
  for (auto& t : threads) t.join();
  auto history = store_->AliasHistory("m", "prod", 0);
  ASSERT_THAT(history, IsOk());
  ASSERT_FALSE(history->empty());
  std::reverse(history->begin(), history->end());
  EXPECT_EQ(history->front().from_version, std::nullopt);
  for (size_t i = 1; i < history->size(); ++i) {
    EXPECT_EQ((*history)[i].from_version, (*history)[i - 1].to_version) << "entry " << i;
    EXPECT_NE((*history)[i].from_version, (*history)[i].to_version);
  }
  auto current = store_->GetModelVersionByAlias("m", "prod");
  ASSERT_THAT(current, IsOk());
  EXPECT_EQ(history->back().to_version, current->version);
}

TEST_F(RegistryStoreTest, DeletingVersionRemovesItsAliasesWithHistory) {
  MakeModel("m", 2);
  ASSERT_THAT(store_->SetAlias("m", "prod", 2, {.user = "ana"}), IsOk());
  ASSERT_THAT(store_->SetAlias("m", "staging", 1, {.user = "ana"}), IsOk());
  ASSERT_THAT(store_->AddApproval("m", 2, "prod", "rita", "ok"), IsOk());
  ASSERT_THAT(store_->DeleteModelVersion("m", 2, "bob"), IsOk());
  EXPECT_THAT(store_->GetModelVersionByAlias("m", "prod"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->GetModelVersionByAlias("m", "staging"), IsOk());
  auto history = store_->AliasHistory("m", "prod", 0);
  ASSERT_THAT(history, IsOk());
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ((*history)[0].from_version, 2);
  EXPECT_EQ((*history)[0].to_version, std::nullopt);
  EXPECT_EQ((*history)[0].user, "bob");
  EXPECT_THAT((*history)[0].reason, HasSubstr("version 2 deleted"));
  auto approvals = store_->ListApprovals("m", 2, "prod");
  ASSERT_THAT(approvals, IsOk());
  EXPECT_TRUE(approvals->empty());
}

TEST_F(RegistryStoreTest, RenameCascades) {
  MakeModel("old", 2);
  ASSERT_THAT(store_->SetRegisteredModelTag("old", "k", "v"), IsOk());
  ASSERT_THAT(store_->SetModelVersionTag("old", 1, "vk", "vv"), IsOk());
  ASSERT_THAT(store_->SetAlias("old", "prod", 1, {.user = "ana"}), IsOk());
  ASSERT_THAT(store_->SetAlias("old", "prod", 2, {.user = "ana"}), IsOk());
  ASSERT_THAT(store_->AddApproval("old", 2, "prod", "rita", ""), IsOk());
  auto policy = ParsePromotionPolicy("approvals: {count: 1}");
  ASSERT_THAT(policy, IsOk());
  ASSERT_THAT(store_->SetPolicy("old", *policy, "ana"), IsOk());
  ASSERT_THAT(store_->RecordDecision({.name = "old", .alias = "prod", .version = 2, .allowed = true}), IsOk());
  ASSERT_THAT(store_->PutDeployment({.name = "svc", .model = "old", .alias = "prod"}), IsOk());
  MakeModel("taken", 0);
  EXPECT_THAT(store_->RenameRegisteredModel("old", "taken"), StatusIs(absl::StatusCode::kAlreadyExists));
  auto before = store_->ChangeCounter();
  ASSERT_THAT(before, IsOk());

  auto renamed = store_->RenameRegisteredModel("old", "new");
  ASSERT_THAT(renamed, IsOk());
  EXPECT_EQ(renamed->name, "new");
  EXPECT_THAT(renamed->tags, ElementsAre(Pair("k", "v")));
  EXPECT_THAT(renamed->aliases, ElementsAre(Pair("prod", 2)));
  EXPECT_THAT(store_->GetRegisteredModel("old"), StatusIs(absl::StatusCode::kNotFound));
  auto v1 = store_->GetModelVersion("new", 1);
  ASSERT_THAT(v1, IsOk());
  EXPECT_EQ(v1->name, "new");
  EXPECT_THAT(v1->tags, ElementsAre(Pair("vk", "vv")));
  auto history = store_->AliasHistory("new", "prod", 0);
  ASSERT_THAT(history, IsOk());
  EXPECT_EQ(history->size(), 2u);
  auto approvals = store_->ListApprovals("new", 2, "prod");
  ASSERT_THAT(approvals, IsOk());
  EXPECT_EQ(approvals->size(), 1u);
  auto p = store_->GetPolicy("new");
  ASSERT_THAT(p, IsOk());
  EXPECT_TRUE(p->has_value());
  auto decisions = store_->ListDecisions("new", std::nullopt, 0);
  ASSERT_THAT(decisions, IsOk());
  EXPECT_EQ(decisions->size(), 1u);
  auto dep = store_->GetDeployment("svc");
  ASSERT_THAT(dep, IsOk());
  EXPECT_EQ(dep->model, "new");
  EXPECT_EQ(dep->generation, 2);
  auto after = store_->ChangeCounter();
  ASSERT_THAT(after, IsOk());
  EXPECT_GT(*after, *before);
}

TEST_F(RegistryStoreTest, SearchRegisteredModels) {
  for (const char* name : {"churn-a", "churn-b", "fraud", "Churn-c"}) {
    ASSERT_THAT(store_->CreateRegisteredModel(name, "", {}), IsOk());
    AdvanceMs(10);
  }
  ASSERT_THAT(store_->SetRegisteredModelTag("fraud", "team", "risk"), IsOk());
  auto names = [](const SearchModelsResult& r) {
    std::vector<std::string> out;
    for (const RegisteredModel& m : r.registered_models) out.push_back(m.name);
    return out;
  };
  auto all = store_->SearchRegisteredModels({});
  ASSERT_THAT(all, IsOk());
  EXPECT_THAT(names(*all), ElementsAre("Churn-c", "churn-a", "churn-b", "fraud"));
  EXPECT_EQ(all->next_page_token, "");

  auto like = store_->SearchRegisteredModels({.filter = "name LIKE 'churn%'"});
  ASSERT_THAT(like, IsOk());
  EXPECT_THAT(names(*like), ElementsAre("churn-a", "churn-b"));
  auto ilike = store_->SearchRegisteredModels({.filter = "name ILIKE 'churn%'", .order_by = {"name DESC"}});
  ASSERT_THAT(ilike, IsOk());
  EXPECT_THAT(names(*ilike), ElementsAre("churn-b", "churn-a", "Churn-c"));
  auto tag = store_->SearchRegisteredModels({.filter = "tags.team = 'risk'"});
  ASSERT_THAT(tag, IsOk());
  EXPECT_THAT(names(*tag), ElementsAre("fraud"));
  auto eq = store_->SearchRegisteredModels({.filter = "name = 'fraud' AND tags.team = 'risk'"});
  ASSERT_THAT(eq, IsOk());
  EXPECT_THAT(names(*eq), ElementsAre("fraud"));
  auto ne = store_->SearchRegisteredModels({.filter = "name != 'fraud'", .order_by = {"timestamp DESC"}});
  ASSERT_THAT(ne, IsOk());
  EXPECT_THAT(names(*ne), ElementsAre("Churn-c", "churn-b", "churn-a"));

  // Paging: 2 + 2, then nothing more.
  auto p1 = store_->SearchRegisteredModels({.max_results = 2});
  ASSERT_THAT(p1, IsOk());
  EXPECT_THAT(names(*p1), ElementsAre("Churn-c", "churn-a"));
  ASSERT_NE(p1->next_page_token, "");
  auto p2 = store_->SearchRegisteredModels({.max_results = 2, .page_token = p1->next_page_token});
  ASSERT_THAT(p2, IsOk());
  EXPECT_THAT(names(*p2), ElementsAre("churn-b", "fraud"));
  EXPECT_EQ(p2->next_page_token, "");

  EXPECT_THAT(store_->SearchRegisteredModels({.filter = "name = 'a' OR name = 'b'"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("position")));
  EXPECT_THAT(store_->SearchRegisteredModels({.max_results = 1001}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->SearchRegisteredModels({.page_token = "garbage"}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->SearchRegisteredModels({.order_by = {"version_number"}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(RegistryStoreTest, SearchModelVersions) {
  MakeModel("a", 3);
  AdvanceMs(10);
  MakeModel("b", 2);
  ASSERT_THAT(store_->SetModelVersionTag("a", 2, "validated", "yes"), IsOk());
  auto ids = [](const SearchVersionsResult& r) {
    std::vector<std::string> out;
    for (const ModelVersion& v : r.model_versions) out.push_back(fmt::format("{}/{}", v.name, v.version));
    return out;
  };
  auto by_name = store_->SearchModelVersions({.filter = "name = 'a'"});
  ASSERT_THAT(by_name, IsOk());
  // Default order: last_updated DESC, name ASC, version DESC.
  EXPECT_THAT(ids(*by_name), ElementsAre("a/3", "a/2", "a/1"));
  auto all = store_->SearchModelVersions({});
  ASSERT_THAT(all, IsOk());
  EXPECT_THAT(ids(*all), ElementsAre("b/2", "b/1", "a/3", "a/2", "a/1"));
  auto runs = store_->SearchModelVersions({.filter = "run_id IN ('r1', 'r3')", .order_by = {"name", "version_number"}});
  ASSERT_THAT(runs, IsOk());
  EXPECT_THAT(ids(*runs), ElementsAre("a/1", "a/3", "b/1"));
  auto num = store_->SearchModelVersions({.filter = "name = 'a' AND version_number > 1",
                                          .order_by = {"version_number ASC"}});
  ASSERT_THAT(num, IsOk());
  EXPECT_THAT(ids(*num), ElementsAre("a/2", "a/3"));
  auto tag = store_->SearchModelVersions({.filter = "tags.validated = 'yes'"});
  ASSERT_THAT(tag, IsOk());
  EXPECT_THAT(ids(*tag), ElementsAre("a/2"));
  auto src = store_->SearchModelVersions({.filter = "source_path = 'runs:/r2/model'", .order_by = {"name DESC"}});
  ASSERT_THAT(src, IsOk());
  EXPECT_THAT(ids(*src), ElementsAre("b/2", "a/2"));
  auto page = store_->SearchModelVersions({.max_results = 3});
  ASSERT_THAT(page, IsOk());
  EXPECT_EQ(page->model_versions.size(), 3u);
  auto rest = store_->SearchModelVersions({.max_results = 3, .page_token = page->next_page_token});
  ASSERT_THAT(rest, IsOk());
  EXPECT_THAT(ids(*rest), ElementsAre("a/2", "a/1"));
  EXPECT_THAT(store_->SearchModelVersions({.filter = "version_number = 'x'"}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(RegistryStoreTest, BadInputIsRejectedAndChangesNothing) {
  MakeModel("m", 1);
  auto before = store_->GetRegisteredModel("m");
  ASSERT_THAT(before, IsOk());
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(store_->CreateRegisteredModel("", "", {}), StatusIs(kInvalid));
  EXPECT_THAT(store_->CreateRegisteredModel(std::string(257, 'x'), "", {}), StatusIs(kInvalid));
  EXPECT_THAT(store_->CreateRegisteredModel(std::string("a\0b", 3), "", {}), StatusIs(kInvalid));
  EXPECT_THAT(store_->CreateRegisteredModel("bad\xff", "", {}), StatusIs(kInvalid));
  EXPECT_THAT(store_->CreateRegisteredModel("ok", "", {{"", "v"}}), StatusIs(kInvalid));
  EXPECT_THAT(store_->CreateRegisteredModel("ok", "", {{"k", std::string(100001, 'v')}}), StatusIs(kInvalid));
  EXPECT_THAT(store_->GetRegisteredModel("ok"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->CreateModelVersion({.name = "m", .source = ""}), StatusIs(kInvalid));
  EXPECT_THAT(store_->GetModelVersion("m", 0), StatusIs(kInvalid));
  EXPECT_THAT(store_->RenameRegisteredModel("m", ""), StatusIs(kInvalid));
  EXPECT_THAT(store_->UpdateRegisteredModel("m", std::string("x\0y", 3)), StatusIs(kInvalid));
  for (const char* alias : {"latest", "LATEST", "v1", "V12", "has space", "a/b", ""}) {
    EXPECT_THAT(store_->SetAlias("m", alias, 1, {}), StatusIs(kInvalid)) << alias;
  }
  EXPECT_THAT(store_->SetAlias("m", std::string(256, 'a'), 1, {}), StatusIs(kInvalid));
  EXPECT_THAT(store_->SetAlias("m", "v1x", 1, {}), IsOk());  // not v<digits>
  EXPECT_THAT(store_->PutDeployment({.name = "d", .model = "m", .alias = "v1x", .canary_percent = 101}),
              StatusIs(kInvalid));
  EXPECT_THAT(store_->PutDeployment({.name = "d", .model = "m", .alias = "v1x", .canary_percent = 10}),
              StatusIs(kInvalid));
  EXPECT_THAT(store_->PutDeployment({.name = "d", .model = "m", .alias = "v1x", .config = Json::array()}),
              StatusIs(kInvalid));
  EXPECT_THAT(store_->RecordDecision({.name = "m", .alias = "prod", .version = 1, .conditions = Json::object()}),
              StatusIs(kInvalid));
  auto after = store_->GetRegisteredModel("m");
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->description, before->description);
  EXPECT_EQ(after->name, "m");
  auto deployments = store_->ListDeployments();
  ASSERT_THAT(deployments, IsOk());
  EXPECT_TRUE(deployments->empty());
}

TEST_F(RegistryStoreTest, PoliciesApprovalsAndRoles) {
  MakeModel("m", 2);
  auto none = store_->GetPolicy("m");
  ASSERT_THAT(none, IsOk());
  EXPECT_FALSE(none->has_value());
  EXPECT_THAT(store_->GetPolicy("zzz"), StatusIs(absl::StatusCode::kNotFound));
  auto policy = ParsePromotionPolicy(
      "aliases: [production]\nevaluation: {dataset: d, split: test, metrics: {acc: {min: 0.9}}}\n");
  ASSERT_THAT(policy, IsOk());
  ASSERT_THAT(store_->SetPolicy("m", *policy, "ana"), IsOk());
  auto got = store_->GetPolicy("m");
  ASSERT_THAT(got, IsOk());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->user, "ana");
  EXPECT_EQ(PromotionPolicyToJson((*got)->policy), PromotionPolicyToJson(*policy));
  ASSERT_THAT(store_->DeletePolicy("m"), IsOk());
  EXPECT_THAT(store_->DeletePolicy("m"), StatusIs(absl::StatusCode::kNotFound));

  ASSERT_THAT(store_->AddApproval("m", 2, "production", "rita", "looks good"), IsOk());
  AdvanceMs(1);
  ASSERT_THAT(store_->AddApproval("m", 2, "production", "sam", ""), IsOk());
  EXPECT_THAT(store_->AddApproval("m", 2, "production", "rita", "again"), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(store_->AddApproval("m", 9, "production", "rita", ""), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_THAT(store_->AddApproval("m", 1, "production", "rita", ""), IsOk());  // another version: separate
  auto approvals = store_->ListApprovals("m", 2, "production");
  ASSERT_THAT(approvals, IsOk());
  ASSERT_EQ(approvals->size(), 2u);
  EXPECT_EQ((*approvals)[0].user, "rita");
  EXPECT_EQ((*approvals)[0].comment, "looks good");
  EXPECT_EQ((*approvals)[1].user, "sam");

  ASSERT_THAT(store_->GrantRole("reviewer", "rita"), IsOk());
  ASSERT_THAT(store_->GrantRole("reviewer", "rita"), IsOk());
  ASSERT_THAT(store_->GrantRole("admin", "rita"), IsOk());
  ASSERT_THAT(store_->GrantRole("reviewer", "sam"), IsOk());
  ASSERT_THAT(store_->RevokeRole("reviewer", "sam"), IsOk());
  ASSERT_THAT(store_->RevokeRole("reviewer", "nobody"), IsOk());
  auto roles = store_->RolesOf("rita");
  ASSERT_THAT(roles, IsOk());
  EXPECT_THAT(*roles, ElementsAre("admin", "reviewer"));
  auto members = store_->MembersOf("reviewer");
  ASSERT_THAT(members, IsOk());
  EXPECT_THAT(*members, ElementsAre("rita"));
}

TEST_F(RegistryStoreTest, GateDecisionsAreKeptAsAudit) {
  MakeModel("m", 1);
  GateDecision d{.allowed = false, .conditions = {{"approvals 1", false, "0 of 1"}}};
  auto id1 = store_->RecordDecision({.name = "m",
                                     .alias = "production",
                                     .version = 1,
                                     .allowed = false,
                                     .conditions = GateDecisionToJson(d)["conditions"],
                                     .user = "ana",
                                     .reason = "try"});
  ASSERT_THAT(id1, IsOk());
  AdvanceMs(1);
  auto id2 = store_->RecordDecision({.name = "m", .alias = "staging", .version = 1, .allowed = true});
  ASSERT_THAT(id2, IsOk());
  EXPECT_GT(*id2, *id1);
  auto one = store_->GetDecision(*id1);
  ASSERT_THAT(one, IsOk());
  EXPECT_FALSE(one->allowed);
  EXPECT_EQ(one->conditions[0]["detail"], "0 of 1");
  EXPECT_EQ(one->time_ms, kStart);
  EXPECT_THAT(store_->GetDecision(999), StatusIs(absl::StatusCode::kNotFound));
  auto all = store_->ListDecisions("m", std::nullopt, 0);
  ASSERT_THAT(all, IsOk());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].id, *id2);  // newest first
  auto prod = store_->ListDecisions("m", "production", 10);
  ASSERT_THAT(prod, IsOk());
  ASSERT_EQ(prod->size(), 1u);
  EXPECT_EQ((*prod)[0].reason, "try");

  // Deleting the model keeps decisions and alias history.
  ASSERT_THAT(store_->SetAlias("m", "production", 1, {.user = "ana", .decision_id = *id1}), IsOk());
  ASSERT_THAT(store_->DeleteRegisteredModel("m", "ops"), IsOk());
  auto kept = store_->ListDecisions("m", std::nullopt, 0);
  ASSERT_THAT(kept, IsOk());
  EXPECT_EQ(kept->size(), 2u);
  auto history = store_->AliasHistory("m", "production", 0);
  ASSERT_THAT(history, IsOk());
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ((*history)[0].to_version, std::nullopt);
  EXPECT_EQ((*history)[0].user, "ops");
}

TEST_F(RegistryStoreTest, Deployments) {
  MakeModel("m", 3);
  EXPECT_THAT(store_->PutDeployment({.name = "svc", .model = "m", .alias = "prod"}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(store_->PutDeployment({.name = "svc", .model = "nope", .alias = "prod"}),
              StatusIs(absl::StatusCode::kNotFound));
  ASSERT_THAT(store_->SetAlias("m", "prod", 1, {}), IsOk());
  EXPECT_THAT(store_->PutDeployment({.name = "svc", .model = "m", .alias = "prod", .canary_version = 9,
                                     .canary_percent = 5}),
              StatusIs(absl::StatusCode::kNotFound));
  auto c0 = store_->ChangeCounter();
  ASSERT_THAT(c0, IsOk());

  auto created = store_->PutDeployment({.name = "svc",
                                        .model = "m",
                                        .alias = "prod",
                                        .canary_version = 2,
                                        .canary_percent = 10,
                                        .shadow_version = 3,
                                        .config = {{"max_batch_size", 32}, {"instances", 2}}});
  ASSERT_THAT(created, IsOk());
  EXPECT_EQ(created->generation, 1);
  EXPECT_EQ(created->created_time, kStart);
  auto c1 = store_->ChangeCounter();
  ASSERT_THAT(c1, IsOk());
  EXPECT_GT(*c1, *c0);

  AdvanceMs(100);
  auto replaced = store_->PutDeployment({.name = "svc", .model = "m", .alias = "prod", .canary_version = 2,
                                         .canary_percent = 50, .shadow_version = 3});
  ASSERT_THAT(replaced, IsOk());
  EXPECT_EQ(replaced->generation, 2);
  EXPECT_EQ(replaced->created_time, kStart);
  EXPECT_EQ(replaced->updated_time, kStart + 100);

  auto got = store_->GetDeployment("svc");
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->canary_percent, 50);
  EXPECT_EQ(got->shadow_version, 3);
  EXPECT_TRUE(got->config.empty());

  // Deleting a pinned version drops the pin, not the deployment.
  ASSERT_THAT(store_->DeleteModelVersion("m", 2), IsOk());
  got = store_->GetDeployment("svc");
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->canary_version, std::nullopt);
  EXPECT_EQ(got->canary_percent, 0);
  EXPECT_EQ(got->shadow_version, 3);
  EXPECT_EQ(got->generation, 3);

  // An alias move is a change inference planes see.
  auto c2 = store_->ChangeCounter();
  ASSERT_THAT(c2, IsOk());
  ASSERT_THAT(store_->SetAlias("m", "prod", 3, {}), IsOk());
  auto c3 = store_->ChangeCounter();
  ASSERT_THAT(c3, IsOk());
  EXPECT_GT(*c3, *c2);

  EXPECT_THAT(store_->DeleteRegisteredModel("m"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("svc")));
  auto list = store_->ListDeployments();
  ASSERT_THAT(list, IsOk());
  ASSERT_EQ(list->size(), 1u);
  ASSERT_THAT(store_->DeleteDeployment("svc"), IsOk());
  EXPECT_THAT(store_->DeleteDeployment("svc"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->GetDeployment("svc"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->DeleteRegisteredModel("m"), IsOk());
}

TEST_F(RegistryStoreTest, EverythingSurvivesReopen) {
  MakeModel("m", 2);
  ASSERT_THAT(store_->SetAlias("m", "prod", 2, {.user = "ana", .reason = "r"}), IsOk());
  ASSERT_THAT(store_->SetModelVersionTag("m", 2, "k", "v"), IsOk());
  ASSERT_THAT(store_->AddApproval("m", 2, "prod", "rita", ""), IsOk());
  ASSERT_THAT(store_->GrantRole("reviewer", "rita"), IsOk());
  ASSERT_THAT(store_->RecordDecision({.name = "m", .alias = "prod", .version = 2, .allowed = true}), IsOk());
  ASSERT_THAT(store_->PutDeployment({.name = "svc", .model = "m", .alias = "prod", .config = {{"timeout_ms", 50}}}),
              IsOk());
  auto policy = ParsePromotionPolicy("approvals: {count: 2, role: reviewer}");
  ASSERT_THAT(policy, IsOk());
  ASSERT_THAT(store_->SetPolicy("m", *policy, "ana"), IsOk());
  auto counter = store_->ChangeCounter();
  ASSERT_THAT(counter, IsOk());

  Reopen();

  auto v = store_->GetModelVersionByAlias("m", "prod");
  ASSERT_THAT(v, IsOk());
  EXPECT_EQ(v->version, 2);
  EXPECT_THAT(v->tags, ElementsAre(Pair("k", "v")));
  auto history = store_->AliasHistory("m", "prod", 0);
  ASSERT_THAT(history, IsOk());
  ASSERT_EQ(history->size(), 1u);
  EXPECT_EQ((*history)[0].reason, "r");
  auto approvals = store_->ListApprovals("m", 2, "prod");
  ASSERT_THAT(approvals, IsOk());
  EXPECT_EQ(approvals->size(), 1u);
  auto roles = store_->RolesOf("rita");
  ASSERT_THAT(roles, IsOk());
  EXPECT_THAT(*roles, ElementsAre("reviewer"));
  auto decisions = store_->ListDecisions("m", "prod", 0);
  ASSERT_THAT(decisions, IsOk());
  EXPECT_EQ(decisions->size(), 1u);
  auto dep = store_->GetDeployment("svc");
  ASSERT_THAT(dep, IsOk());
  EXPECT_EQ(dep->config["timeout_ms"], 50);
  auto p = store_->GetPolicy("m");
  ASSERT_THAT(p, IsOk());
  ASSERT_TRUE(p->has_value());
  EXPECT_EQ((*p)->policy.approvals->count, 2);
  auto counter_after = store_->ChangeCounter();
  ASSERT_THAT(counter_after, IsOk());
  EXPECT_EQ(*counter_after, *counter);
  auto next = store_->CreateModelVersion({.name = "m", .source = "s"});
  ASSERT_THAT(next, IsOk());
  EXPECT_EQ(next->version, 3);
}

}  // namespace
}  // namespace cairn::registry
