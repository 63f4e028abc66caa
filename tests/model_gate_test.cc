// Model lineage and promotion gates (api/model_lineage.h) over a real,
// in-process data directory: datasets committed through the ingest path,
// runs logged like pipeline steps (docs/pipelines.md) and like plain MLflow
// scripts, versions and policies in the registry.
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "api/model_lineage.h"
#include "base/testing.h"
#include "data/ingest.h"
#include "data/tree_scanner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registry/registry_store.h"

namespace cairn::api {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::StatusIs;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

constexpr char kModel[] = "tumour-clf";

// A dataset read as a run logs it.
struct Read {
  std::string name;  // "DATASET#SPLIT" or "DATASET"
  std::string commit_id;
  std::string context = "training";
};

struct RunSpec {
  std::string name;
  std::vector<Read> reads;
  std::map<std::string, double> metrics;
  std::vector<tracking::Tag> tags;
  std::vector<tracking::Param> params;
  std::string status = "FINISHED";
};

class ModelGateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_ = NewPosixEnv();
    ASSERT_OK_AND_ASSIGN(dir_, DataDirectory::Open(*env_, tmp_.path() + "/data"));
    // tumours: train and a sealed test split.
    ASSERT_OK_AND_ASSIGN(
        data::DatasetCommit c,
        CommitFiles(
            "tumours", {{"train/a.csv", "x,y\n1,0\n"}, {"train/b.csv", "x,y\n2,1\n"}, {"test/c.csv", "x,y\n3,1\n"}},
            std::vector<data::Split>{{.name = "train", .globs = {"train/**"}}, {.name = "test", .globs = {"test/**"}}},
            {"test"}));
    tumours_ = c.id;
    ASSERT_OK(registry().CreateRegisteredModel(kModel, "", {}).status());
  }

  registry::RegistryStore& registry() { return dir_->registry(); }

  // Commits `files` (path -> bytes) to branch main of `dataset` (created if missing).
  absl::StatusOr<data::DatasetCommit> CommitFiles(const std::string& dataset,
                                                  const std::map<std::string, std::string>& files,
                                                  std::optional<std::vector<data::Split>> splits = std::nullopt,
                                                  std::vector<std::string> seal = {},
                                                  const std::string& author = "ana") {
    data::DatasetStore& datasets = dir_->datasets();
    absl::StatusOr<data::Dataset> ds = datasets.GetDataset(data::kDefaultProject, dataset);
    if (absl::IsNotFound(ds.status())) ds = datasets.CreateDataset(data::kDefaultProject, dataset, "", false);
    RETURN_IF_ERROR(ds.status());
    const std::string work = tmp_.path() + "/files-" + std::to_string(counter_++);
    for (const auto& [path, bytes] : files) {
      const std::string p = work + "/" + path;
      RETURN_IF_ERROR(env_->CreateDirs(p.substr(0, p.rfind('/'))));
      std::ofstream(p, std::ios::binary) << bytes;
    }
    ASSIGN_OR_RETURN(std::vector<data::ScannedFile> scanned, data::ScanTree({work}, {}));
    ASSIGN_OR_RETURN(data::ChunkScope scope, datasets.ScopeOf(*ds));
    ASSIGN_OR_RETURN(auto batch, dir_->chunks().NewBatch(scope, false));
    data::ChunkStoreSink sink(*batch);
    ASSIGN_OR_RETURN(std::vector<data::ManifestFile> entries, data::IngestFiles(scanned, sink, {.threads = 1}));
    data::DatasetManifest m;
    m.files = std::move(entries);
    RETURN_IF_ERROR(m.Normalize());
    ASSIGN_OR_RETURN(Digest md, datasets.PutManifest(*ds, m));
    ASSIGN_OR_RETURN(std::optional<data::DatasetCommit> head, datasets.Head(*ds, "main"));
    ASSIGN_OR_RETURN(data::CommitResult r, datasets.Commit(*ds, {.branch = "main",
                                                                 .expected_head = head ? head->id : "",
                                                                 .manifest = md,
                                                                 .message = "test data",
                                                                 .author = author,
                                                                 .splits = std::move(splits),
                                                                 .seal = std::move(seal)}));
    return r.commit;
  }

  // Logs a run the way the scheduler or the SDK does; runs start one second apart.
  absl::StatusOr<std::string> LogRun(const RunSpec& spec) {
    tracking::TrackingStore& t = dir_->tracking();
    ASSIGN_OR_RETURN(tracking::Run run, t.CreateRun({.user_id = "ana",
                                                     .run_name = spec.name,
                                                     .start_time = 1'700'000'000'000 + 1000 * counter_++,
                                                     .tags = spec.tags}));
    const std::string id = run.info.run_id;
    std::vector<tracking::Metric> metrics;
    for (const auto& [k, v] : spec.metrics) metrics.push_back({.key = k, .value = v, .timestamp = 1});
    RETURN_IF_ERROR(t.LogBatch(id, metrics, spec.params, {}));
    std::vector<tracking::DatasetInput> inputs;
    for (const Read& r : spec.reads) {
      inputs.push_back({.tags = {{"mlflow.data.context", r.context}},
                        .dataset = {.name = r.name, .digest = r.commit_id, .source_type = "cairn"}});
    }
    if (!inputs.empty()) RETURN_IF_ERROR(t.LogInputs(id, inputs));
    RETURN_IF_ERROR(t.UpdateRun({.run_id = id, .status = spec.status, .end_time = 1'700'000'000'000}).status());
    return id;
  }

  // Commits an output folder of `run_id` as a pipeline step does: dataset
  // PIPELINE.STEP.OUTPUT, author cairn-run:RUN, tag cairn.output.OUTPUT.
  absl::StatusOr<std::string> CommitOutput(const std::string& run_id, const std::string& dataset,
                                           const std::string& output, const std::string& content) {
    ASSIGN_OR_RETURN(data::DatasetCommit c,
                     CommitFiles(dataset, {{output + ".bin", content}}, std::nullopt, {}, "cairn-run:" + run_id));
    RETURN_IF_ERROR(
        dir_->tracking().LogBatch(run_id, {}, {}, std::vector<tracking::Tag>{{"cairn.output." + output, c.id}}));
    return c.id;
  }

  absl::StatusOr<int64_t> RegisterVersion(const std::string& run_id) {
    ASSIGN_OR_RETURN(registry::ModelVersion v,
                     registry().CreateModelVersion(
                         {.name = kModel, .source = "runs:/" + run_id + "/model", .run_id = run_id, .user_id = "ana"}));
    return v.version;
  }

  // A version trained on tumours#train, evaluated (tagged) on tumours#test
  // with the given accuracy.
  absl::StatusOr<int64_t> TrainedVersion(double accuracy) {
    ASSIGN_OR_RETURN(std::string train, LogRun({.name = "train", .reads = {{"tumours#train", tumours_}}}));
    ASSIGN_OR_RETURN(int64_t version, RegisterVersion(train));
    RETURN_IF_ERROR(LogRun({.name = "evaluate",
                            .reads = {{"tumours#test", tumours_, "evaluate"}},
                            .metrics = {{"accuracy", accuracy}},
                            .tags = {{kModelVersionTag, fmt::format("{}/{}", kModel, version)}}})
                        .status());
    return version;
  }

  absl::Status SetPolicy(const std::string& yaml) {
    ASSIGN_OR_RETURN(registry::PromotionPolicy policy, registry::ParsePromotionPolicy(yaml));
    return registry().SetPolicy(kModel, policy, "lead");
  }

  static const registry::GateCondition* Condition(const registry::GateDecision& d, const std::string& prefix) {
    for (const registry::GateCondition& c : d.conditions) {
      if (c.name.starts_with(prefix)) return &c;
    }
    return nullptr;
  }

  static std::vector<std::string> Unmet(const registry::GateDecision& d) {
    std::vector<std::string> out;
    for (const registry::GateCondition& c : d.conditions) {
      if (!c.met) out.push_back(c.name);
    }
    return out;
  }

  static const Json* Node(const Json& graph, const std::string& id) {
    for (const Json& n : graph["nodes"]) {
      if (n["id"] == id) return &n;
    }
    return nullptr;
  }

  static bool HasEdge(const Json& graph, const std::string& from, const std::string& to, const std::string& kind) {
    for (const Json& e : graph["edges"]) {
      if (e["from"] == from && e["to"] == to && e["kind"] == kind) return true;
    }
    return false;
  }

  static constexpr char kEvalPolicy[] = R"(
aliases: [production]
evaluation:
  dataset: tumours
  split: test
  metrics:
    accuracy: {min: 0.90, max_regression: 0.01}
)";

  cairn::testing::ScopedTempDir tmp_;
  std::unique_ptr<Env> env_;
  std::unique_ptr<DataDirectory> dir_;
  std::string tumours_;  // the commit with the sealed test split
  int counter_ = 0;
};

TEST_F(ModelGateTest, LineageGraphFollowsAPipelineChainToItsData) {
  // prepare (reads tumours#train) -> features -> train -> model; evaluate reads model and tumours#test.
  ASSERT_OK_AND_ASSIGN(std::string prepare, LogRun({.name = "prepare",
                                                    .reads = {{"tumours#train", tumours_, "prepare"}},
                                                    .tags = {{"cairn.pipeline", "tp"},
                                                             {"cairn.step", "prepare"},
                                                             {"cairn.role", "prepare"},
                                                             {"cairn.code.digest", std::string(64, 'c')},
                                                             {"cairn.env.digest", std::string(64, 'e')},
                                                             {"cairn.env.python", "3.11.2"}},
                                                    .params = {{"bins", "8"}}}));
  ASSERT_OK_AND_ASSIGN(std::string features, CommitOutput(prepare, "tp.prepare.features", "features", "f1"));
  ASSERT_OK_AND_ASSIGN(std::string train, LogRun({.name = "train",
                                                  .reads = {{"tp.prepare.features", features, "train"}},
                                                  .tags = {{"cairn.pipeline", "tp"},
                                                           {"cairn.step", "train"},
                                                           {"cairn.code.digest", std::string(64, 'c')},
                                                           {"cairn.code.git_commit", std::string(40, 'a')},
                                                           {"cairn.env.digest", std::string(64, 'e')}},
                                                  .params = {{"depth", "6"}, {"eta", "0.3"}}}));
  ASSERT_OK_AND_ASSIGN(std::string model, CommitOutput(train, "tp.train.model", "model", "m1"));
  ASSERT_OK_AND_ASSIGN(std::string evaluate,
                       LogRun({.name = "evaluate",
                               .reads = {{"tp.train.model", model, "evaluate"}, {"tumours#test", tumours_, "evaluate"}},
                               .metrics = {{"accuracy", 0.93}}}));
  ASSERT_OK_AND_ASSIGN(int64_t version, RegisterVersion(train));

  ASSERT_OK_AND_ASSIGN(Json graph, ModelLineageGraph(*dir_, kModel, version));
  const std::string root = fmt::format("model_version:{}/{}", kModel, version);
  EXPECT_EQ(graph["root"], root);
  EXPECT_FALSE(graph["truncated"].get<bool>());
  ASSERT_NE(Node(graph, root), nullptr);
  EXPECT_TRUE(HasEdge(graph, root, "run:" + train, "trained_by"));
  // train's code, environment and params.
  const std::string code = "code:" + std::string(64, 'c');
  ASSERT_NE(Node(graph, code), nullptr);
  EXPECT_EQ((*Node(graph, code))["attrs"]["git_commit"], std::string(40, 'a'));
  EXPECT_TRUE(HasEdge(graph, "run:" + train, code, "code"));
  EXPECT_TRUE(HasEdge(graph, "run:" + train, "environment:" + std::string(64, 'e'), "environment"));
  ASSERT_NE(Node(graph, "params:" + train), nullptr);
  EXPECT_EQ((*Node(graph, "params:" + train))["attrs"]["depth"], "6");
  // train read prepare's output, which prepare produced from tumours#train.
  const std::string features_node = "dataset_commit:" + features + "/all";
  ASSERT_NE(Node(graph, features_node), nullptr);
  EXPECT_EQ((*Node(graph, features_node))["attrs"]["dataset"], "tp.prepare.features");
  EXPECT_TRUE(HasEdge(graph, "run:" + train, features_node, "read"));
  EXPECT_TRUE(HasEdge(graph, features_node, "run:" + prepare, "produced_by"));
  ASSERT_NE(Node(graph, "run:" + prepare), nullptr);
  EXPECT_EQ((*Node(graph, "run:" + prepare))["attrs"]["step"], "prepare");
  const std::string train_split = "dataset_commit:" + tumours_ + "#train";
  ASSERT_NE(Node(graph, train_split), nullptr);
  const Json& attrs = (*Node(graph, train_split))["attrs"];
  EXPECT_EQ(attrs["dataset"], "tumours");
  EXPECT_EQ(attrs["commit"], tumours_);
  EXPECT_EQ(attrs["split"], "train");
  EXPECT_FALSE(attrs["sealed"].get<bool>());
  EXPECT_TRUE(HasEdge(graph, "run:" + prepare, train_split, "read"));
  // The evaluation consumes the model; it is not where the model came from.
  EXPECT_EQ(Node(graph, "run:" + evaluate), nullptr);
  EXPECT_EQ(Node(graph, "dataset_commit:" + tumours_ + "#test"), nullptr);
}

TEST_F(ModelGateTest, LineageGraphOfAPlainMlflowRunAndUnknownVersions) {
  // A script that logged a non-Cairn dataset and no code tags.
  ASSERT_OK_AND_ASSIGN(std::string run, LogRun({.name = "notebook",
                                                .reads = {{"iris.csv", "d41d8cd98f00b204"}},
                                                .tags = {{"mlflow.source.git.commit", "0123456789abcdef"}}}));
  ASSERT_OK_AND_ASSIGN(int64_t version, RegisterVersion(run));
  ASSERT_OK_AND_ASSIGN(Json graph, ModelLineageGraph(*dir_, kModel, version));
  const Json* ds = Node(graph, "dataset:iris.csv@d41d8cd98f00b204");
  ASSERT_NE(ds, nullptr);
  EXPECT_EQ((*ds)["type"], "dataset");
  EXPECT_TRUE(HasEdge(graph, "run:" + run, "code:git:0123456789abcdef", "code"));

  EXPECT_THAT(ModelLineageGraph(*dir_, kModel, 99), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(ModelLineageGraph(*dir_, "no-such-model", 1), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(ModelGateTest, LineageWalkSurvivesACycle) {
  // A run that read a commit it claims to have produced itself, and another
  // run produced by it: the walk visits each run once.
  ASSERT_OK_AND_ASSIGN(std::string a, LogRun({.name = "a"}));
  ASSERT_OK_AND_ASSIGN(std::string out_a, CommitOutput(a, "loop.a.out", "out", "1"));
  ASSERT_OK_AND_ASSIGN(std::string b, LogRun({.name = "b", .reads = {{"loop.a.out", out_a}}}));
  ASSERT_OK_AND_ASSIGN(std::string out_b, CommitOutput(b, "loop.b.out", "out", "2"));
  ASSERT_OK(dir_->tracking().LogInputs(a, {{.dataset = {.name = "loop.b.out", .digest = out_b}}}));
  ASSERT_OK_AND_ASSIGN(int64_t version, RegisterVersion(b));
  ASSERT_OK_AND_ASSIGN(Json graph, ModelLineageGraph(*dir_, kModel, version));
  EXPECT_TRUE(HasEdge(graph, "dataset_commit:" + out_a + "/all", "run:" + a, "produced_by"));
  EXPECT_TRUE(HasEdge(graph, "dataset_commit:" + out_b + "/all", "run:" + b, "produced_by"));
  int runs = 0;
  for (const Json& n : graph["nodes"]) runs += n["type"] == "run";
  EXPECT_EQ(runs, 2);
}

TEST_F(ModelGateTest, GateAllowsAVersionMeetingEveryConditionAndRecordsIt) {
  ASSERT_OK(SetPolicy(std::string(kEvalPolicy) + "approvals: {count: 1, role: reviewer}\n"));
  ASSERT_OK_AND_ASSIGN(int64_t version, TrainedVersion(0.93));
  ASSERT_OK(registry().GrantRole("reviewer", "rita"));
  ASSERT_OK(registry().AddApproval(kModel, version, "production", "rita", "looks good"));

  ASSERT_OK_AND_ASSIGN(registry::GateDecision d,
                       CheckAliasMove(*dir_, kModel, "production", version, "ana", "first release"));
  EXPECT_TRUE(d.allowed) << registry::DescribeUnmet(d);
  EXPECT_THAT(Unmet(d), IsEmpty());
  const registry::GateCondition* eval = Condition(d, "evaluation on sealed split tumours#test");
  ASSERT_NE(eval, nullptr);
  EXPECT_THAT(eval->detail, HasSubstr(tumours_));
  EXPECT_NE(Condition(d, "approvals 1 by role reviewer"), nullptr);
  // No current version: no regression condition.
  EXPECT_EQ(Condition(d, "metric accuracy regression"), nullptr);

  ASSERT_OK_AND_ASSIGN(std::vector<registry::GateDecisionRecord> recorded,
                       registry().ListDecisions(kModel, std::string("production"), 0));
  ASSERT_THAT(recorded, SizeIs(1));
  EXPECT_TRUE(recorded[0].allowed);
  EXPECT_EQ(recorded[0].version, version);
  EXPECT_EQ(recorded[0].user, "ana");
  EXPECT_EQ(recorded[0].reason, "first release");
  EXPECT_EQ(recorded[0].conditions.size(), d.conditions.size());
}

TEST_F(ModelGateTest, RefusalListsEveryUnmetConditionAndIsRecorded) {
  ASSERT_OK(SetPolicy(std::string(kEvalPolicy) + "approvals: {count: 2, role: reviewer}\n"));
  ASSERT_OK_AND_ASSIGN(int64_t version, TrainedVersion(0.85));
  ASSERT_OK(registry().GrantRole("reviewer", "rita"));
  ASSERT_OK(registry().AddApproval(kModel, version, "production", "rita", ""));
  ASSERT_OK(registry().AddApproval(kModel, version, "production", "bob", ""));  // not a reviewer

  ASSERT_OK_AND_ASSIGN(AliasMoveCheck check,
                       CheckAliasMoveRecorded(*dir_, kModel, "production", version, "ana", "try"));
  EXPECT_FALSE(check.decision.allowed);
  EXPECT_THAT(Unmet(check.decision),
              AllOf(SizeIs(2), Contains("metric accuracy >= 0.9"), Contains("approvals 2 by role reviewer")));
  EXPECT_EQ(Condition(check.decision, "approvals")->detail, "1 of 2: rita (without role reviewer: bob)");
  ASSERT_OK_AND_ASSIGN(registry::GateDecisionRecord recorded, registry().GetDecision(check.decision_id));
  EXPECT_FALSE(recorded.allowed);
  EXPECT_EQ(recorded.version, version);
  EXPECT_FALSE(check.current_version.has_value());
}

TEST_F(ModelGateTest, EvaluationMustExistAndReadTheSealedSplit) {
  ASSERT_OK(SetPolicy(kEvalPolicy));
  // No evaluation at all.
  ASSERT_OK_AND_ASSIGN(std::string train, LogRun({.name = "train", .reads = {{"tumours#train", tumours_}}}));
  ASSERT_OK_AND_ASSIGN(int64_t v1, RegisterVersion(train));
  ASSERT_OK_AND_ASSIGN(registry::GateDecision d, CheckAliasMove(*dir_, kModel, "production", v1, "ana", ""));
  EXPECT_THAT(Unmet(d), AllOf(Contains("evaluation on sealed split tumours#test"), Contains("metric accuracy >= 0.9")));

  // An evaluation that failed, and one of an unrelated version, do not count.
  ASSERT_OK(LogRun({.name = "evaluate",
                    .reads = {{"tumours#test", tumours_}},
                    .metrics = {{"accuracy", 0.99}},
                    .tags = {{kModelVersionTag, fmt::format("{}/{}", kModel, v1)}},
                    .status = "FAILED"})
                .status());
  ASSERT_OK(LogRun({.name = "evaluate",
                    .reads = {{"tumours#test", tumours_}},
                    .metrics = {{"accuracy", 0.99}},
                    .tags = {{kModelVersionTag, fmt::format("{}/{}", kModel, v1 + 1)}}})
                .status());
  ASSERT_OK_AND_ASSIGN(d, CheckAliasMove(*dir_, kModel, "production", v1, "ana", ""));
  EXPECT_THAT(Unmet(d), Contains("evaluation on sealed split tumours#test"));

  // An evaluation on a split that is not sealed in the commit it read.
  ASSERT_OK_AND_ASSIGN(data::DatasetCommit open,
                       CommitFiles("open", {{"train/a.csv", "1"}, {"test/b.csv", "2"}},
                                   std::vector<data::Split>{{.name = "train", .globs = {"train/**"}},
                                                            {.name = "test", .globs = {"test/**"}}}));
  ASSERT_OK(SetPolicy("evaluation: {dataset: open, split: test, metrics: {accuracy: {min: 0.5}}}"));
  ASSERT_OK(LogRun({.name = "evaluate",
                    .reads = {{"open#test", open.id}},
                    .metrics = {{"accuracy", 0.99}},
                    .tags = {{kModelVersionTag, fmt::format("{}@{}", kModel, v1)}}})
                .status());
  ASSERT_OK_AND_ASSIGN(d, CheckAliasMove(*dir_, kModel, "production", v1, "ana", ""));
  ASSERT_THAT(Unmet(d), SizeIs(1));
  EXPECT_THAT(Condition(d, "evaluation on sealed split open#test")->detail, HasSubstr("not sealed"));
  EXPECT_TRUE(Condition(d, "metric accuracy >= 0.5")->met);
}

TEST_F(ModelGateTest, PipelineEvaluateStepReadingTheModelOutputIsTheEvaluation) {
  ASSERT_OK(SetPolicy(kEvalPolicy));
  ASSERT_OK_AND_ASSIGN(std::string train, LogRun({.name = "train", .reads = {{"tumours#train", tumours_}}}));
  ASSERT_OK_AND_ASSIGN(std::string model, CommitOutput(train, "tp.train.model", "model", "m"));
  ASSERT_OK_AND_ASSIGN(int64_t version, RegisterVersion(train));
  // Two evaluations (not tagged): the newest one counts.
  for (double accuracy : {0.80, 0.95}) {
    ASSERT_OK(LogRun({.name = "evaluate",
                      .reads = {{"tp.train.model", model, "evaluate"}, {"tumours#test", tumours_, "evaluate"}},
                      .metrics = {{"accuracy", accuracy}}})
                  .status());
  }
  ASSERT_OK_AND_ASSIGN(
      registry::GateEvidence evidence,
      CollectGateEvidence(*dir_, *registry::ParsePromotionPolicy(kEvalPolicy), kModel, "production", version));
  ASSERT_TRUE(evidence.evaluation.has_value());
  EXPECT_EQ(evidence.evaluation->metrics.at("accuracy"), 0.95);
  EXPECT_EQ(evidence.evaluation->commit_id, tumours_);
  EXPECT_TRUE(evidence.evaluation->split_sealed);
  EXPECT_THAT(evidence.contamination, IsEmpty());
  ASSERT_OK_AND_ASSIGN(registry::GateDecision d, CheckAliasMove(*dir_, kModel, "production", version, "ana", ""));
  EXPECT_TRUE(d.allowed) << registry::DescribeUnmet(d);
}

TEST_F(ModelGateTest, TrainingOnTheSealedSplitContaminatesTheLineage) {
  ASSERT_OK(SetPolicy(kEvalPolicy));
  ASSERT_OK_AND_ASSIGN(std::string train,
                       LogRun({.name = "train", .reads = {{"tumours#train", tumours_}, {"tumours#test", tumours_}}}));
  ASSERT_OK_AND_ASSIGN(int64_t version, RegisterVersion(train));
  ASSERT_OK(LogRun({.name = "evaluate",
                    .reads = {{"tumours#test", tumours_}},
                    .metrics = {{"accuracy", 0.99}},
                    .tags = {{kModelVersionTag, fmt::format("{}/{}", kModel, version)}}})
                .status());
  ASSERT_OK_AND_ASSIGN(registry::GateDecision d, CheckAliasMove(*dir_, kModel, "production", version, "ana", ""));
  EXPECT_FALSE(d.allowed);
  ASSERT_THAT(Unmet(d), SizeIs(1));
  const registry::GateCondition* lineage = Condition(d, "lineage excludes sealed split tumours#test");
  ASSERT_NE(lineage, nullptr);
  EXPECT_THAT(lineage->detail, AllOf(HasSubstr("tumours#test"), HasSubstr(train.substr(0, 12)),
                                     HasSubstr("sealed there"), Not(HasSubstr("#train"))));
}

TEST_F(ModelGateTest, ContaminationThroughAnUpstreamProducingRun) {
  ASSERT_OK(SetPolicy(kEvalPolicy));
  // prepare read the test split; train only read prepare's output.
  ASSERT_OK_AND_ASSIGN(std::string prepare, LogRun({.name = "prepare",
                                                    .reads = {{"tumours#test", tumours_}},
                                                    .tags = {{"cairn.pipeline", "tp"}, {"cairn.step", "prepare"}}}));
  ASSERT_OK_AND_ASSIGN(std::string features, CommitOutput(prepare, "tp.prepare.features", "features", "f"));
  ASSERT_OK_AND_ASSIGN(std::string train, LogRun({.name = "train", .reads = {{"tp.prepare.features", features}}}));
  ASSERT_OK_AND_ASSIGN(int64_t version, RegisterVersion(train));
  ASSERT_OK_AND_ASSIGN(
      registry::GateEvidence evidence,
      CollectGateEvidence(*dir_, *registry::ParsePromotionPolicy(kEvalPolicy), kModel, "production", version));
  ASSERT_THAT(evidence.contamination, SizeIs(1));
  EXPECT_THAT(evidence.contamination[0], AllOf(HasSubstr(prepare.substr(0, 12)),
                                               HasSubstr("step prepare of pipeline tp"), HasSubstr("tumours#test")));
}

TEST_F(ModelGateTest, ReadingTheWholeDatasetIncludesTheSealedSplit) {
  ASSERT_OK(SetPolicy(kEvalPolicy));
  const registry::PromotionPolicy policy = *registry::ParsePromotionPolicy(kEvalPolicy);
  // A script that read the whole dataset (the SDK without split): test files included.
  ASSERT_OK_AND_ASSIGN(std::string sdk, LogRun({.name = "train", .reads = {{"tumours", tumours_}}}));
  ASSERT_OK_AND_ASSIGN(int64_t v1, RegisterVersion(sdk));
  ASSERT_OK_AND_ASSIGN(registry::GateEvidence evidence, CollectGateEvidence(*dir_, policy, kModel, "production", v1));
  ASSERT_THAT(evidence.contamination, SizeIs(1));
  EXPECT_THAT(evidence.contamination[0], HasSubstr("whole dataset tumours"));
  ASSERT_OK_AND_ASSIGN(Json graph, ModelLineageGraph(*dir_, kModel, v1));
  const Json* read = Node(graph, "dataset_commit:" + tumours_ + "/all");
  ASSERT_NE(read, nullptr);
  EXPECT_TRUE((*read)["attrs"]["sealed"].get<bool>());

  // A pipeline step that is not `evaluate` got the dataset without its sealed splits.
  ASSERT_OK_AND_ASSIGN(std::string step, LogRun({.name = "train",
                                                 .reads = {{"tumours", tumours_}},
                                                 .tags = {{"cairn.data_read", "tumours (sealed splits excluded)"}}}));
  ASSERT_OK_AND_ASSIGN(int64_t v2, RegisterVersion(step));
  ASSERT_OK_AND_ASSIGN(evidence, CollectGateEvidence(*dir_, policy, kModel, "production", v2));
  EXPECT_THAT(evidence.contamination, IsEmpty());
  ASSERT_OK_AND_ASSIGN(graph, ModelLineageGraph(*dir_, kModel, v2));
  read = Node(graph, "dataset_commit:" + tumours_ + "/unsealed");
  ASSERT_NE(read, nullptr);
  EXPECT_FALSE((*read)["attrs"]["sealed"].get<bool>());
  EXPECT_TRUE((*read)["attrs"]["sealed_excluded"].get<bool>());
}

TEST_F(ModelGateTest, RegressionIsMeasuredAgainstTheVersionTheAliasPointsAt) {
  ASSERT_OK(SetPolicy(kEvalPolicy));
  ASSERT_OK_AND_ASSIGN(int64_t v1, TrainedVersion(0.95));
  ASSERT_OK_AND_ASSIGN(AliasMoveCheck first, CheckAliasMoveRecorded(*dir_, kModel, "production", v1, "ana", ""));
  ASSERT_TRUE(first.decision.allowed) << registry::DescribeUnmet(first.decision);
  ASSERT_OK(registry().SetAlias(kModel, "production", v1, {.user = "ana", .decision_id = first.decision_id}));

  // 0.92 is above the floor but 0.03 worse than v1.
  ASSERT_OK_AND_ASSIGN(int64_t v2, TrainedVersion(0.92));
  ASSERT_OK_AND_ASSIGN(AliasMoveCheck second, CheckAliasMoveRecorded(*dir_, kModel, "production", v2, "ana", ""));
  EXPECT_FALSE(second.decision.allowed);
  EXPECT_EQ(second.current_version, v1);
  EXPECT_THAT(Unmet(second.decision), ::testing::ElementsAre(fmt::format("metric accuracy regression <= 0.01 vs "
                                                                         "version {}",
                                                                         v1)));
  EXPECT_THAT(Condition(second.decision, "metric accuracy regression")->detail, HasSubstr("0.95"));

  ASSERT_OK_AND_ASSIGN(int64_t v3, TrainedVersion(0.945));
  ASSERT_OK_AND_ASSIGN(registry::GateDecision third, CheckAliasMove(*dir_, kModel, "production", v3, "ana", ""));
  EXPECT_TRUE(third.allowed) << registry::DescribeUnmet(third);
  EXPECT_TRUE(Condition(third, "metric accuracy regression")->met);
}

TEST_F(ModelGateTest, UnguardedAliasIsAllowedWithoutConditions) {
  ASSERT_OK(SetPolicy(kEvalPolicy));  // guards production only
  ASSERT_OK_AND_ASSIGN(std::string train, LogRun({.name = "train", .reads = {{"tumours#test", tumours_}}}));
  ASSERT_OK_AND_ASSIGN(int64_t version, RegisterVersion(train));
  ASSERT_OK_AND_ASSIGN(registry::GateDecision d, CheckAliasMove(*dir_, kModel, "staging", version, "ana", "try it"));
  EXPECT_TRUE(d.allowed);
  EXPECT_THAT(d.conditions, IsEmpty());
  ASSERT_OK_AND_ASSIGN(std::vector<registry::GateDecisionRecord> recorded,
                       registry().ListDecisions(kModel, std::string("staging"), 0));
  ASSERT_THAT(recorded, SizeIs(1));
  EXPECT_TRUE(recorded[0].allowed);

  EXPECT_THAT(CheckAliasMove(*dir_, kModel, "production", 42, "ana", ""), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(CheckAliasMove(*dir_, "no-such-model", "production", 1, "ana", ""),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(CheckAliasMove(*dir_, kModel, "latest", version, "ana", ""),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Refused calls record nothing.
  ASSERT_OK_AND_ASSIGN(recorded, registry().ListDecisions(kModel, std::nullopt, 0));
  EXPECT_THAT(recorded, SizeIs(1));
}

TEST_F(ModelGateTest, VersionWithoutARunHasAnUnknownLineage) {
  ASSERT_OK(SetPolicy(kEvalPolicy));
  ASSERT_OK_AND_ASSIGN(
      registry::ModelVersion v,
      registry().CreateModelVersion({.name = kModel, .source = "s3://bucket/model", .user_id = "ana"}));
  ASSERT_OK_AND_ASSIGN(
      registry::GateEvidence evidence,
      CollectGateEvidence(*dir_, *registry::ParsePromotionPolicy(kEvalPolicy), kModel, "production", v.version));
  ASSERT_THAT(evidence.contamination, SizeIs(1));
  EXPECT_THAT(evidence.contamination[0], HasSubstr("names no run"));
  ASSERT_OK_AND_ASSIGN(Json graph, ModelLineageGraph(*dir_, kModel, v.version));
  EXPECT_EQ(graph["nodes"].size(), 1u);
  EXPECT_TRUE(graph["edges"].empty());
}

}  // namespace
}  // namespace cairn::api
