#include "pipeline/scheduler.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/testing.h"
#include "data/ingest.h"
#include "data/tree_scanner.h"
#include "db/sqlite_database.h"
#include "exec/sandbox_executor.h"
#include "pipeline/step_data.h"
#include "pipeline/triggers.h"
#include "pipeline/work_dir_gc.h"
#include "store/local_object_store.h"

namespace cairn::pipeline {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;

void WriteFile(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A pipeline over a dataset with a sealed test split: prepare copies the
// train split, train "fits" (prints metrics), evaluate reads the sealed split.
constexpr char kSpec[] = R"(name: demo
max_parallel: 2
triggers:
  datasets: true
steps:
  prepare:
    command: cp -r /cairn/in/raw/. /cairn/out/clean/ && echo prepared
    inputs:
      raw: dataset:rows@main#train
    outputs: [clean]
    role: prepare
  train:
    command: |
      ls /cairn/in/data > /cairn/out/model/files.txt
      echo "lr=${lr}" >> /cairn/out/model/files.txt
      echo '{"metric": "loss", "value": 0.5, "step": 1}'
      echo '{"metric": "loss", "value": 0.25, "step": 2}'
    params: {lr: "0.1"}
    inputs:
      data: step:prepare/clean
    outputs: [model]
    role: train
  evaluate:
    command: |
      cat /cairn/in/test/test/a.csv && echo '{"metric": "accuracy", "value": 0.9}'
    inputs:
      model: step:train/model
      test: dataset:rows@main#test
    role: evaluate
)";

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Steps run as an unprivileged user: the work folder must be reachable.
    ::chmod(tmp_.path().c_str(), 0755);
    env_ = NewPosixEnv();
    ASSERT_OK_AND_ASSIGN(db_, db::OpenSqliteDatabase({.path = tmp_.path() + "/cairn.db"}));
    ASSERT_OK_AND_ASSIGN(objects_, store::LocalObjectStore::Create(*env_, tmp_.path() + "/objects"));
    ASSERT_OK_AND_ASSIGN(tracking_, tracking::TrackingStore::Create(*db_, *env_));
    ASSERT_OK_AND_ASSIGN(chunks_, data::ChunkStore::Create(*db_, *objects_, *env_));
    ASSERT_OK_AND_ASSIGN(datasets_, data::DatasetStore::Create(*db_, *chunks_, nullptr, *env_));
    ASSERT_OK_AND_ASSIGN(store_, PipelineStore::Create(*db_, *env_));
    ASSERT_OK_AND_ASSIGN(executor_, exec::SandboxExecutor::Create(exec::SandboxOptions{}));
    project_ = tmp_.path() + "/project";
    WriteFile(project_ + "/cairn.yaml", kSpec);
    WriteFile(project_ + "/README", "code\n");
    ASSERT_OK_AND_ASSIGN(ds_, datasets_->CreateDataset(data::kDefaultProject, "rows", "", false));
    CommitRows("1,2\n");
  }

  std::unique_ptr<PipelineScheduler> NewScheduler(bool server = false) {
    auto s = PipelineScheduler::Create({.env = env_.get(),
                                        .tracking = tracking_.get(),
                                        .datasets = datasets_.get(),
                                        .chunks = chunks_.get(),
                                        .objects = objects_.get(),
                                        .store = store_.get(),
                                        .executors = {executor_.get()},
                                        .work_dir = tmp_.path() + "/work",
                                        .is_server = server});
    EXPECT_OK(s.status());
    return s.ok() ? std::move(*s) : nullptr;
  }

  // Commits train/a.csv and test/a.csv (test sealed) to rows@main.
  data::DatasetCommit CommitRows(const std::string& train_rows) {
    const std::string dir = tmp_.path() + "/rows-src";
    WriteFile(dir + "/train/a.csv", "x,y\n" + train_rows);
    WriteFile(dir + "/test/a.csv", "x,y\n9,9\n");
    std::vector<data::Split> splits = {{.name = "train", .globs = {"train/**"}}, {.name = "test", .globs = {"test/**"}}};
    auto c = CommitDirectory(*datasets_, *chunks_, ds_, dir, "main", "rows", "test");
    EXPECT_OK(c.status());
    // Re-commit with splits (CommitDirectory commits plain trees).
    auto head = datasets_->Head(ds_, "main");
    EXPECT_OK(head.status());
    auto r = datasets_->Commit(ds_, {.branch = "main",
                                     .expected_head = (*head)->id,
                                     .manifest = c->manifest,
                                     .message = "splits",
                                     .splits = splits,
                                     .seal = {"test"}});
    EXPECT_OK(r.status());
    return r->commit;
  }

  PipelineRunRecord RunToEnd(PipelineScheduler& s, RunRequest req) {
    auto id = s.Start(req);
    EXPECT_OK(id.status());
    auto run = s.Wait(*id, absl::Seconds(120));
    EXPECT_OK(run.status());
    return *run;
  }

  const StepRecord& Step(const PipelineRunRecord& r, const std::string& name) {
    for (const StepRecord& s : r.steps) {
      if (s.step == name) return s;
    }
    ADD_FAILURE() << "no step " << name;
    return r.steps.at(0);
  }

  testing::ScopedTempDir tmp_;
  std::unique_ptr<Env> env_;
  std::unique_ptr<db::Database> db_;
  std::unique_ptr<store::ObjectStore> objects_;
  std::unique_ptr<tracking::TrackingStore> tracking_;
  std::unique_ptr<data::ChunkStore> chunks_;
  std::unique_ptr<data::DatasetStore> datasets_;
  std::unique_ptr<PipelineStore> store_;
  std::unique_ptr<exec::SandboxExecutor> executor_;
  std::string project_;
  data::Dataset ds_;
};

TEST_F(SchedulerTest, RunsTheDagRecordsRunsAndCommitsOutputs) {
  auto s = NewScheduler();
  ASSERT_OK(s->Register(kSpec, "cairn.yaml", project_).status());
  PipelineRunRecord run = RunToEnd(*s, {.pipeline = "demo"});
  ASSERT_EQ(run.status, kSucceeded) << run.reason;
  ASSERT_EQ(run.steps.size(), 3u);
  EXPECT_EQ(run.steps[0].step, "prepare");
  EXPECT_EQ(run.steps[2].step, "evaluate");
  for (const StepRecord& st : run.steps) EXPECT_EQ(st.status, kSucceeded) << st.step << ": " << st.reason;

  // train saw only the train split (through prepare) and its param.
  const StepRecord& train = Step(run, "train");
  ASSERT_TRUE(train.outputs.contains("model"));
  ASSERT_OK_AND_ASSIGN(data::DatasetCommit model, datasets_->GetCommit(train.outputs["model"].get<std::string>()));
  EXPECT_THAT(model.message, HasSubstr(train.run_id));
  ASSERT_OK_AND_ASSIGN(data::Dataset model_ds, datasets_->GetDatasetById(model.dataset_id));
  EXPECT_EQ(model_ds.name, "demo.train.model");
  const std::string co = tmp_.path() + "/model-co";
  ASSERT_OK(MaterializeCommit(*datasets_, model_ds, model, {}, co));
  EXPECT_EQ(ReadAll(co + "/files.txt"), "train\nlr=0.1\n");

  // The MLflow run: params, metrics from stdout, tags, inputs, artifacts.
  ASSERT_OK_AND_ASSIGN(tracking::Run mr, tracking_->GetRun(train.run_id));
  EXPECT_EQ(mr.info.status, "FINISHED");
  ASSERT_EQ(mr.params.size(), 1u);
  EXPECT_EQ(mr.params[0].value, "0.1");
  bool loss = false;
  for (const auto& m : mr.metrics) {
    if (m.key == "loss") {
      loss = true;
      EXPECT_EQ(m.value, 0.25);
    }
  }
  EXPECT_TRUE(loss);
  std::map<std::string, std::string> tags;
  for (const auto& t : mr.tags) tags[t.key] = t.value;
  EXPECT_EQ(tags["cairn.pipeline"], "demo");
  EXPECT_EQ(tags["cairn.step"], "train");
  EXPECT_EQ(tags["cairn.code.digest"], run.code_digest);
  EXPECT_EQ(tags["cairn.env.digest"], run.env_digest);
  EXPECT_EQ(tags["cairn.exit_code"], "0");
  ASSERT_OK_AND_ASSIGN(auto arts, tracking_->ListArtifacts(mr.info.experiment_id + "/" + train.run_id + "/artifacts"));
  std::vector<std::string> names;
  for (const auto& a : arts) names.push_back(a.path);
  EXPECT_THAT(names, ::testing::IsSupersetOf({"cairn", "logs"}));

  // evaluate read the sealed split and printed it; its log says so.
  const StepRecord& eval = Step(run, "evaluate");
  ASSERT_OK_AND_ASSIGN(exec::LogChunk log, s->ReadLog(eval.run_id, 0, 1 << 20));
  EXPECT_THAT(log.bytes, HasSubstr("9,9"));
  ASSERT_OK_AND_ASSIGN(tracking::Run er, tracking_->GetRun(eval.run_id));
  bool sealed_input = false;
  for (const auto& in : er.inputs) sealed_input |= in.dataset.name == "rows#test";
  EXPECT_TRUE(sealed_input);
}

TEST_F(SchedulerTest, SecondRunIsFullyCachedAndNoCacheRunsAgain) {
  auto s = NewScheduler();
  ASSERT_OK(s->Register(kSpec, "cairn.yaml", project_).status());
  PipelineRunRecord first = RunToEnd(*s, {.pipeline = "demo"});
  ASSERT_EQ(first.status, kSucceeded) << first.reason;
  PipelineRunRecord second = RunToEnd(*s, {.pipeline = "demo"});
  ASSERT_EQ(second.status, kSucceeded) << second.reason;
  for (size_t i = 0; i < second.steps.size(); ++i) {
    EXPECT_EQ(second.steps[i].status, kCached) << second.steps[i].step;
    EXPECT_EQ(second.steps[i].run_id, first.steps[i].run_id);
    EXPECT_EQ(second.steps[i].cache_key, first.steps[i].cache_key);
  }
  PipelineRunRecord third = RunToEnd(*s, {.pipeline = "demo", .no_cache = true});
  ASSERT_EQ(third.status, kSucceeded) << third.reason;
  for (size_t i = 0; i < third.steps.size(); ++i) {
    EXPECT_EQ(third.steps[i].status, kSucceeded);
    EXPECT_NE(third.steps[i].run_id, first.steps[i].run_id);
  }
}

TEST_F(SchedulerTest, ParamOverrideReRunsOnlyTheStepsItAffects) {
  auto s = NewScheduler();
  ASSERT_OK(s->Register(kSpec, "cairn.yaml", project_).status());
  ASSERT_EQ(RunToEnd(*s, {.pipeline = "demo"}).status, kSucceeded);
  PipelineRunRecord run = RunToEnd(*s, {.pipeline = "demo", .overrides = {"lr=0.5"}});
  ASSERT_EQ(run.status, kSucceeded) << run.reason;
  EXPECT_EQ(Step(run, "prepare").status, kCached);
  EXPECT_EQ(Step(run, "train").status, kSucceeded);
  EXPECT_EQ(Step(run, "evaluate").status, kSucceeded);  // its input (the model) changed
}

TEST_F(SchedulerTest, NewDataReRunsReadersAndKeepsUnchangedOutputsCached) {
  auto s = NewScheduler();
  ASSERT_OK(s->Register(kSpec, "cairn.yaml", project_).status());
  ASSERT_EQ(RunToEnd(*s, {.pipeline = "demo"}).status, kSucceeded);
  CommitRows("1,2\n3,4\n");
  PipelineRunRecord run = RunToEnd(*s, {.pipeline = "demo"});
  ASSERT_EQ(run.status, kSucceeded) << run.reason;
  EXPECT_EQ(Step(run, "prepare").status, kSucceeded);
  // train lists file names only: same output commit, so evaluate is cached.
  EXPECT_EQ(Step(run, "train").status, kSucceeded);
  EXPECT_EQ(Step(run, "evaluate").status, kCached);
}

TEST_F(SchedulerTest, RunningOneStepRunsItsAncestorsOnly) {
  auto s = NewScheduler();
  ASSERT_OK(s->Register(kSpec, "cairn.yaml", project_).status());
  PipelineRunRecord run = RunToEnd(*s, {.pipeline = "demo", .step = "train"});
  ASSERT_EQ(run.status, kSucceeded) << run.reason;
  ASSERT_EQ(run.steps.size(), 2u);
  EXPECT_EQ(run.steps[0].step, "prepare");
  EXPECT_EQ(run.steps[1].step, "train");
  EXPECT_THAT(s->Start({.pipeline = "demo", .step = "nope"}).status(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(s->Start({.pipeline = "demo", .overrides = {"nope=1"}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(s->Start({.pipeline = "demo", .executor = "mainframe"}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(s->Start({.pipeline = "nothere"}).status(), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(SchedulerTest, SealedSplitIsRefusedToANonEvaluateStepBeforeAnythingRuns) {
  std::string spec = kSpec;
  spec.replace(spec.find("raw: dataset:rows@main#train"), 28, "raw: dataset:rows@main#test ");
  auto s = NewScheduler();
  ASSERT_OK(s->Register(spec, "cairn.yaml", project_).status());
  PipelineRunRecord run = RunToEnd(*s, {.pipeline = "demo"});
  EXPECT_EQ(run.status, kFailed);
  EXPECT_THAT(run.reason, HasSubstr("sealed split 'test'"));
  EXPECT_THAT(run.reason, HasSubstr("only a step with role 'evaluate'"));
  EXPECT_EQ(Step(run, "prepare").status, kRefused);
  for (const StepRecord& st : run.steps) EXPECT_TRUE(st.run_id.empty()) << st.step << " must not have run";
}

TEST_F(SchedulerTest, WholeDatasetReadersNeverSeeSealedFiles) {
  std::string spec = kSpec;
  spec.replace(spec.find("raw: dataset:rows@main#train"), 28, "raw: dataset:rows@main      ");
  auto s = NewScheduler();
  ASSERT_OK(s->Register(spec, "cairn.yaml", project_).status());
  PipelineRunRecord run = RunToEnd(*s, {.pipeline = "demo", .step = "prepare"});
  ASSERT_EQ(run.status, kSucceeded) << run.reason;
  const StepRecord& prep = Step(run, "prepare");
  EXPECT_TRUE(prep.inputs["raw"]["sealed_excluded"].get<bool>());
  ASSERT_OK_AND_ASSIGN(data::DatasetCommit out, datasets_->GetCommit(prep.outputs["clean"].get<std::string>()));
  ASSERT_OK_AND_ASSIGN(data::Dataset out_ds, datasets_->GetDatasetById(out.dataset_id));
  ASSERT_OK_AND_ASSIGN(data::DatasetManifest m, datasets_->GetManifest(out_ds, out.manifest));
  ASSERT_EQ(m.files.size(), 1u);
  EXPECT_EQ(m.files[0].path, "train/a.csv");
}

TEST_F(SchedulerTest, FailingStepIsRetriedThenFailsAndDownstreamIsSkipped) {
  const std::string spec = R"(name: flaky
steps:
  a:
    command: echo attempt; exit 3
    retries: 1
  b:
    command: "true"
    after: [a]
)";
  auto s = NewScheduler();
  ASSERT_OK(s->Register(spec, "cairn.yaml", project_).status());
  PipelineRunRecord run = RunToEnd(*s, {.pipeline = "flaky"});
  EXPECT_EQ(run.status, kFailed);
  EXPECT_THAT(run.reason, HasSubstr("a"));
  EXPECT_EQ(Step(run, "a").status, kFailed);
  EXPECT_EQ(Step(run, "a").attempt, 2);
  EXPECT_THAT(Step(run, "a").reason, HasSubstr("3"));
  EXPECT_EQ(Step(run, "b").status, kSkipped);
  ASSERT_OK_AND_ASSIGN(tracking::Run mr, tracking_->GetRun(Step(run, "a").run_id));
  EXPECT_EQ(mr.info.status, "FAILED");
  // A failure is never cached.
  PipelineRunRecord again = RunToEnd(*s, {.pipeline = "flaky"});
  EXPECT_EQ(Step(again, "a").status, kFailed);
  EXPECT_NE(Step(again, "a").run_id, Step(run, "a").run_id);
}

TEST_F(SchedulerTest, CancelStopsRunningAndPendingSteps) {
  const std::string spec = R"(name: slow
steps:
  a:
    command: echo started; sleep 600
  b:
    command: "true"
    after: [a]
)";
  auto s = NewScheduler();
  ASSERT_OK(s->Register(spec, "cairn.yaml", project_).status());
  ASSERT_OK_AND_ASSIGN(std::string id, s->Start({.pipeline = "slow"}));
  // Wait for a to run.
  for (int i = 0; i < 300; ++i) {
    ASSERT_OK_AND_ASSIGN(PipelineRunRecord r, store_->GetRun(id));
    if (r.steps[0].status == kRunning) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_OK(s->Cancel(id));
  ASSERT_OK_AND_ASSIGN(PipelineRunRecord run, s->Wait(id, absl::Seconds(60)));
  EXPECT_EQ(run.status, kCancelled);
  EXPECT_EQ(Step(run, "a").status, kCancelled);
  EXPECT_EQ(Step(run, "b").status, kCancelled);
  ASSERT_OK_AND_ASSIGN(tracking::Run mr, tracking_->GetRun(Step(run, "a").run_id));
  EXPECT_EQ(mr.info.status, "KILLED");
}

TEST_F(SchedulerTest, RunsOfADeadProcessAreFailedOrResumedByAServer) {
  auto s = NewScheduler(/*server=*/true);
  ASSERT_OK(s->Register(kSpec, "cairn.yaml", project_).status());
  // Two runs left by processes that died: one a CLI's, one a server's.
  for (bool server : {false, true}) {
    PipelineRunRecord r;
    r.id = server ? "serverrun" : "clirun";
    r.pipeline = "demo";
    r.status = kRunning;
    r.executor = "local";
    r.owner = server ? "deadserver" : "deadcli";
    r.owner_is_server = server;
    r.created_at_ms = r.started_at_ms = 1;
    r.steps = {{.step = "prepare", .status = kRunning, .attempt = 1}, {.step = "train"}, {.step = "evaluate"}};
    ASSERT_OK(store_->CreateRun(r));
  }
  ASSERT_OK(s->Recover());
  ASSERT_OK_AND_ASSIGN(PipelineRunRecord cli, store_->GetRun("clirun"));
  EXPECT_EQ(cli.status, kFailed);
  EXPECT_THAT(cli.reason, HasSubstr("stopped while prepare ran"));
  EXPECT_EQ(cli.steps[0].status, kFailed);
  EXPECT_EQ(cli.steps[1].status, kCancelled);
  ASSERT_OK_AND_ASSIGN(PipelineRunRecord resumed, s->Wait("serverrun", absl::Seconds(120)));
  EXPECT_EQ(resumed.status, kSucceeded) << resumed.reason;
  EXPECT_THAT(resumed.reason, HasSubstr("resumed after a server restart"));
  for (const StepRecord& st : resumed.steps) EXPECT_EQ(st.status, kSucceeded) << st.step;
  ASSERT_OK_AND_ASSIGN(auto active, store_->ActiveRuns());
  EXPECT_TRUE(active.empty());
}

TEST_F(SchedulerTest, DatasetCommitTriggersARunWithItsCause) {
  auto s = NewScheduler(/*server=*/true);
  ASSERT_OK(s->Register(kSpec, "cairn.yaml", project_).status());
  ASSERT_OK_AND_ASSIGN(auto loop, TriggerLoop::Create(*store_, *datasets_, *s, *env_));
  ASSERT_OK_AND_ASSIGN(auto started, loop->CheckOnce(absl::Now()));
  EXPECT_TRUE(started.empty());  // the first look sets the baseline
  ASSERT_OK_AND_ASSIGN(started, loop->CheckOnce(absl::Now()));
  EXPECT_TRUE(started.empty());
  data::DatasetCommit c = CommitRows("5,6\n");
  ASSERT_OK_AND_ASSIGN(started, loop->CheckOnce(absl::Now()));
  ASSERT_EQ(started.size(), 1u);
  ASSERT_OK_AND_ASSIGN(PipelineRunRecord run, s->Wait(started[0], absl::Seconds(120)));
  EXPECT_EQ(run.status, kSucceeded) << run.reason;
  EXPECT_EQ(run.cause["kind"], "dataset_commit");
  EXPECT_EQ(run.cause["commits"][0]["commit"], c.id);
  ASSERT_OK_AND_ASSIGN(started, loop->CheckOnce(absl::Now()));
  EXPECT_TRUE(started.empty());  // seen: no second run
}

TEST_F(SchedulerTest, GcRemovesUnusedWorkFoldersAndRunsStillWork) {
  auto s = NewScheduler();
  ASSERT_OK(s->Register(kSpec, "cairn.yaml", project_).status());
  ASSERT_EQ(RunToEnd(*s, {.pipeline = "demo"}).status, kSucceeded);
  const std::string work = tmp_.path() + "/work";
  const int64_t now = absl::ToUnixMillis(absl::Now());
  ASSERT_OK_AND_ASSIGN(WorkDirReport young, CleanWorkDir(*store_, work, now, 3600 * 1000, false));
  EXPECT_EQ(young.removed_dirs, 0u);
  EXPECT_GT(young.kept_young, 0u);
  ASSERT_OK_AND_ASSIGN(WorkDirReport dry, CleanWorkDir(*store_, work, now + 7200 * 1000, 3600 * 1000, true));
  EXPECT_GT(dry.removed_dirs, 0u);
  EXPECT_GT(dry.freed_bytes, 0u);
  EXPECT_FALSE(std::filesystem::is_empty(work + "/inputs"));
  ASSERT_OK_AND_ASSIGN(WorkDirReport done, CleanWorkDir(*store_, work, now + 7200 * 1000, 3600 * 1000, false));
  EXPECT_EQ(done.removed_dirs, dry.removed_dirs);
  EXPECT_TRUE(std::filesystem::is_empty(work + "/inputs"));
  EXPECT_TRUE(std::filesystem::is_empty(work + "/code"));
  // Everything is rebuilt on demand: a forced re-run succeeds, a plain one is cached.
  EXPECT_EQ(RunToEnd(*s, {.pipeline = "demo", .no_cache = true}).status, kSucceeded);
  PipelineRunRecord cached = RunToEnd(*s, {.pipeline = "demo"});
  for (const StepRecord& st : cached.steps) EXPECT_EQ(st.status, kCached);
}

// The Python SDK inside a sandbox (no network) writes its records to a file
// the scheduler ingests: metrics, params, tags and artifacts reach the run.
TEST_F(SchedulerTest, SdkInsideTheSandboxLogsThroughTheRecordFile) {
  std::filesystem::copy(CAIRN_SOURCE_DIR "/python/cairn", project_ + "/cairn",
                        std::filesystem::copy_options::recursive);
  WriteFile(project_ + "/fit.py", R"(import cairn
with cairn.start_run(run_name="fit") as run:
    run.log_param("depth", 3)
    for i in range(5):
        run.log_metric("auc", 0.5 + i / 10, step=i)
    run.set_tag("stage", "sdk")
    run.log_text("hello from the sandbox", "notes/hello.txt")
)");
  const std::string spec = R"(name: sdk
steps:
  fit:
    command: [python3, fit.py]
)";
  auto s = NewScheduler();
  ASSERT_OK(s->Register(spec, "cairn.yaml", project_).status());
  PipelineRunRecord run = RunToEnd(*s, {.pipeline = "sdk"});
  ASSERT_EQ(run.status, kSucceeded) << run.reason << ReadAll(run.steps[0].job_dir + "/output.log");
  ASSERT_OK_AND_ASSIGN(tracking::Run mr, tracking_->GetRun(run.steps[0].run_id));
  std::map<std::string, std::string> tags;
  for (const auto& t : mr.tags) tags[t.key] = t.value;
  EXPECT_EQ(tags["stage"], "sdk");
  EXPECT_EQ(tags.count("cairn.record_errors"), 0u) << tags["cairn.record_errors"];
  ASSERT_EQ(mr.params.size(), 1u);
  EXPECT_EQ(mr.params[0].key, "depth");
  ASSERT_OK_AND_ASSIGN(tracking::MetricHistoryPage auc, tracking_->GetMetricHistory(mr.info.run_id, "auc", 0, ""));
  EXPECT_EQ(auc.points.size(), 5u);
  ASSERT_OK_AND_ASSIGN(tracking::ArtifactFile note,
                       tracking_->GetArtifact(mr.info.experiment_id + "/" + mr.info.run_id +
                                              "/artifacts/notes/hello.txt"));
  EXPECT_EQ(note.size, 22);
}

TEST_F(SchedulerTest, CronTriggerFiresOnceWhenDue) {
  const std::string spec = R"(name: nightly
triggers:
  cron: "0 3 * * *"
steps:
  a:
    command: "true"
)";
  auto s = NewScheduler(/*server=*/true);
  ASSERT_OK(s->Register(spec, "cairn.yaml", project_).status());
  ASSERT_OK_AND_ASSIGN(auto loop, TriggerLoop::Create(*store_, *datasets_, *s, *env_));
  const absl::Time t0 = absl::FromCivil(absl::CivilMinute(2026, 11, 22, 1, 0), absl::UTCTimeZone());
  ASSERT_OK_AND_ASSIGN(auto started, loop->CheckOnce(t0));
  EXPECT_TRUE(started.empty());  // the first look records when it started watching
  ASSERT_OK_AND_ASSIGN(started, loop->CheckOnce(t0 + absl::Hours(1)));
  EXPECT_TRUE(started.empty());  // 02:00: not due yet
  // 05:00: 03:00 was due (and missed while "down"): one run, not several.
  ASSERT_OK_AND_ASSIGN(started, loop->CheckOnce(t0 + absl::Hours(4)));
  ASSERT_EQ(started.size(), 1u);
  ASSERT_OK_AND_ASSIGN(PipelineRunRecord run, s->Wait(started[0], absl::Seconds(60)));
  EXPECT_EQ(run.status, kSucceeded) << run.reason;
  EXPECT_EQ(run.cause["kind"], "cron");
  ASSERT_OK_AND_ASSIGN(started, loop->CheckOnce(t0 + absl::Hours(5)));
  EXPECT_TRUE(started.empty());  // next firing is tomorrow at 03:00
  ASSERT_OK_AND_ASSIGN(started, loop->CheckOnce(t0 + absl::Hours(26) + absl::Minutes(1)));
  EXPECT_EQ(started.size(), 1u);
}

TEST(WebhookTest, SignatureMustMatchTheBody) {
  const std::string sig = SignWebhook("secret", "{\"ref\":\"main\"}");
  EXPECT_THAT(sig, ::testing::StartsWith("sha256="));
  EXPECT_EQ(sig.size(), 7u + 64u);
  EXPECT_OK(VerifyWebhook("secret", "{\"ref\":\"main\"}", sig));
  EXPECT_THAT(VerifyWebhook("secret", "{\"ref\":\"evil\"}", sig), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(VerifyWebhook("other", "{\"ref\":\"main\"}", sig), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(VerifyWebhook("secret", "{\"ref\":\"main\"}", ""), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(VerifyWebhook("secret", "x", "sha256=00"), StatusIs(absl::StatusCode::kUnauthenticated));
}

}  // namespace
}  // namespace cairn::pipeline
