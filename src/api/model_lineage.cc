#include "api/model_lineage.h"

#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <map>
#include <set>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "registry/registry_store.h"

namespace cairn::api {
namespace {

// What a pipeline step run records (docs/pipelines.md).
constexpr std::string_view kProducerAuthorPrefix = "cairn-run:";
constexpr std::string_view kOutputTagPrefix = "cairn.output.";
constexpr std::string_view kSealedExcludedSuffix = " (sealed splits excluded)";
constexpr size_t kExperimentsPerSearch = 200;

std::string TagValue(const std::vector<tracking::Tag>& tags, std::string_view key) {
  for (const tracking::Tag& t : tags) {
    if (t.key == key) return t.value;
  }
  return "";
}

bool IsCommitId(std::string_view s) {
  return s.size() == 64 &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string ShortId(std::string_view id) { return std::string(id.substr(0, 12)); }

// One dataset input of a run. The digest of a Cairn input is a commit id, so
// the commit (and through it the dataset, its splits and the run that
// produced it) can be looked up; a plain MLflow dataset keeps only what was
// logged.
struct DatasetRead {
  std::string input_name;  // as logged: "tumours#test", "tumours", "train.csv"
  std::string dataset;     // the Cairn dataset's name, else the logged name before '#'
  std::string project;     // Cairn datasets only
  std::string split;       // "" = the whole dataset
  std::string context;     // mlflow.data.context
  bool sealed_excluded = false;
  std::optional<data::DatasetCommit> commit;
  std::string producer_run_id;  // the run whose output the commit is, if any
  tracking::DatasetRef ref;

  bool Matches(const std::string& name) const {
    return dataset == name || (!project.empty() && project + "/" + dataset == name);
  }
  // Whether the read included the files of split `s`. A whole-dataset read
  // includes every split except the sealed ones it was denied; with no commit
  // its content is unknown, so only a read naming `s` counts.
  bool Includes(const std::string& s) const {
    if (!split.empty()) return split == s;
    if (!commit) return false;
    const data::Split* sp = commit->FindSplit(s);
    return sp != nullptr && !(sealed_excluded && sp->sealed);
  }
  // Whether the read included the files of some sealed split.
  bool IncludesSealed() const {
    if (!commit) return false;
    for (const data::Split& sp : commit->splits) {
      if (sp.sealed && Includes(sp.name)) return true;
    }
    return false;
  }
};

// A run reached by the lineage walk.
struct Visit {
  std::string run_id;
  const tracking::Run* run = nullptr;  // null: the run does not exist
  int depth = 0;                       // producer hops from the root run
  std::vector<DatasetRead> reads;
};

struct Walk {
  std::vector<Visit> visits;  // breadth first; visits[0] is the root
  bool truncated = false;     // runs beyond kMaxLineageDepth / kMaxLineageRuns were left out
};

// Reads runs and dataset commits for one lineage query, each once.
class LineageReader {
 public:
  explicit LineageReader(DataDirectory& dir) : dir_(dir) {}

  // nullptr when there is no such run.
  absl::StatusOr<const tracking::Run*> FindRun(const std::string& run_id) {
    auto it = runs_.find(run_id);
    if (it == runs_.end()) {
      absl::StatusOr<tracking::Run> run = dir_.tracking().GetRun(run_id);
      if (!run.ok() && !absl::IsNotFound(run.status()) && !absl::IsInvalidArgument(run.status())) {
        return run.status();
      }
      std::optional<tracking::Run> found;
      if (run.ok()) found = *std::move(run);
      it = runs_.emplace(run_id, std::move(found)).first;
    }
    return it->second ? &*it->second : nullptr;
  }

  absl::StatusOr<std::vector<DatasetRead>> Reads(const tracking::Run& run) {
    // A pipeline step that is not `evaluate` gets whole datasets without
    // their sealed splits; only its cairn.data_read tag says so.
    std::set<std::string> excluded;
    const std::string data_read = TagValue(run.tags, "cairn.data_read");
    for (size_t pos = 0; pos < data_read.size();) {
      size_t end = data_read.find(", ", pos);
      if (end == std::string::npos) end = data_read.size();
      std::string_view label(data_read.data() + pos, end - pos);
      if (label.ends_with(kSealedExcludedSuffix)) {
        excluded.emplace(label.substr(0, label.size() - kSealedExcludedSuffix.size()));
      }
      pos = end + 2;
    }
    std::vector<DatasetRead> reads;
    for (const tracking::DatasetInput& in : run.inputs) {
      DatasetRead r;
      r.input_name = in.dataset.name;
      r.ref = in.dataset;
      r.context = TagValue(in.tags, "mlflow.data.context");
      const size_t hash = r.input_name.find('#');
      r.dataset = r.input_name.substr(0, hash);
      if (hash != std::string::npos) r.split = r.input_name.substr(hash + 1);
      if (std::string split = TagValue(in.tags, "cairn.data.split"); !split.empty()) r.split = split;
      r.sealed_excluded = excluded.contains(r.input_name);
      if (IsCommitId(in.dataset.digest)) {
        ASSIGN_OR_RETURN(const data::DatasetCommit* commit, FindCommit(in.dataset.digest));
        if (commit != nullptr) {
          r.commit = *commit;
          ASSIGN_OR_RETURN(const data::Dataset* ds, FindDataset(commit->dataset_id));
          if (ds != nullptr) {
            r.dataset = ds->name;
            r.project = ds->project;
          }
          if (commit->author.starts_with(kProducerAuthorPrefix)) {
            r.producer_run_id = commit->author.substr(kProducerAuthorPrefix.size());
          }
          r.sealed_excluded = r.sealed_excluded || excluded.contains(r.dataset);
        }
      }
      reads.push_back(std::move(r));
    }
    return reads;
  }

  // `root_run_id`'s run and, recursively, the runs that produced a commit a
  // run of the walk read: a training lineage. Cycles cannot loop (each run
  // is visited once) and the walk stops at kMaxLineageDepth / kMaxLineageRuns.
  absl::StatusOr<Walk> WalkFrom(const std::string& root_run_id) {
    Walk walk;
    std::set<std::string> seen = {root_run_id};
    std::deque<std::pair<std::string, int>> queue = {{root_run_id, 0}};
    while (!queue.empty()) {
      auto [run_id, depth] = std::move(queue.front());
      queue.pop_front();
      Visit v{.run_id = run_id, .depth = depth};
      ASSIGN_OR_RETURN(v.run, FindRun(run_id));
      if (v.run != nullptr) {
        ASSIGN_OR_RETURN(v.reads, Reads(*v.run));
      }
      for (const DatasetRead& r : v.reads) {
        if (r.producer_run_id.empty() || seen.contains(r.producer_run_id)) continue;
        if (depth + 1 > kMaxLineageDepth || seen.size() >= static_cast<size_t>(kMaxLineageRuns)) {
          walk.truncated = true;
          continue;
        }
        seen.insert(r.producer_run_id);
        queue.emplace_back(r.producer_run_id, depth + 1);
      }
      walk.visits.push_back(std::move(v));
    }
    return walk;
  }

 private:
  absl::StatusOr<const data::DatasetCommit*> FindCommit(const std::string& id) {
    auto it = commits_.find(id);
    if (it == commits_.end()) {
      absl::StatusOr<data::DatasetCommit> c = dir_.datasets().GetCommit(id);
      if (!c.ok() && !absl::IsNotFound(c.status())) return c.status();
      std::optional<data::DatasetCommit> found;
      if (c.ok()) found = *std::move(c);
      it = commits_.emplace(id, std::move(found)).first;
    }
    return it->second ? &*it->second : nullptr;
  }

  absl::StatusOr<const data::Dataset*> FindDataset(const std::string& id) {
    auto it = datasets_.find(id);
    if (it == datasets_.end()) {
      absl::StatusOr<data::Dataset> ds = dir_.datasets().GetDatasetById(id);
      if (!ds.ok() && !absl::IsNotFound(ds.status())) return ds.status();
      std::optional<data::Dataset> found;
      if (ds.ok()) found = *std::move(ds);
      it = datasets_.emplace(id, std::move(found)).first;
    }
    return it->second ? &*it->second : nullptr;
  }

  DataDirectory& dir_;
  // std::map: pointers into it stay valid as it grows.
  std::map<std::string, std::optional<tracking::Run>> runs_;
  std::map<std::string, std::optional<data::DatasetCommit>> commits_;
  std::map<std::string, std::optional<data::Dataset>> datasets_;
};

// "run 4f2a1b2c3d4e (step train of pipeline tumours)", for gate details.
std::string DescribeRun(const Visit& v) {
  if (v.run == nullptr) return fmt::format("run {} (missing)", v.run_id);
  const std::string step = TagValue(v.run->tags, "cairn.step");
  const std::string pipeline = TagValue(v.run->tags, "cairn.pipeline");
  if (!step.empty()) return fmt::format("run {} (step {} of pipeline {})", ShortId(v.run_id), step, pipeline);
  if (!v.run->info.run_name.empty()) return fmt::format("run {} ({})", ShortId(v.run_id), v.run->info.run_name);
  return fmt::format("run {}", ShortId(v.run_id));
}

std::string QuoteFilterValue(const std::string& value) {
  std::string out = "'";
  for (char c : value) {
    out += c;
    if (c == '\'') out += '\'';  // the filter grammar doubles a quote inside a string
  }
  return out + "'";
}

// Ids of the active runs of every active experiment tagged `key` = one of `values`.
absl::StatusOr<std::vector<std::string>> RunsTagged(tracking::TrackingStore& tracking, const std::string& key,
                                                    const std::vector<std::string>& values) {
  std::vector<std::string> experiments;
  std::string token;
  do {
    ASSIGN_OR_RETURN(tracking::SearchExperimentsResult page,
                     tracking.SearchExperiments({.max_results = tracking::kMaxResultsLimit, .page_token = token}));
    for (const tracking::Experiment& e : page.experiments) experiments.push_back(e.experiment_id);
    token = page.next_page_token;
  } while (!token.empty());

  std::vector<std::string> run_ids;
  for (size_t first = 0; first < experiments.size(); first += kExperimentsPerSearch) {
    std::vector<std::string> ids(experiments.begin() + first,
                                 experiments.begin() + std::min(experiments.size(), first + kExperimentsPerSearch));
    for (const std::string& value : values) {
      std::string page_token;
      do {
        ASSIGN_OR_RETURN(tracking::SearchRunsResult page,
                         tracking.SearchRuns({.experiment_ids = ids,
                                              .filter = fmt::format("tags.`{}` = {}", key, QuoteFilterValue(value)),
                                              .max_results = tracking::kMaxResultsLimit,
                                              .page_token = page_token}));
        for (const tracking::Run& r : page.runs) run_ids.push_back(r.info.run_id);
        page_token = page.next_page_token;
      } while (!page_token.empty());
    }
  }
  return run_ids;
}

// The newest finished evaluation of `version` on `rule`'s dataset split (see
// the header), or nullopt.
absl::StatusOr<std::optional<registry::EvaluationEvidence>> FindEvaluation(DataDirectory& dir, LineageReader& reader,
                                                                           const registry::ModelVersion& version,
                                                                           const registry::EvaluationRule& rule) {
  ASSIGN_OR_RETURN(std::vector<std::string> candidates,
                   RunsTagged(dir.tracking(), kModelVersionTag,
                              {fmt::format("{}/{}", version.name, version.version),
                               fmt::format("{}@{}", version.name, version.version)}));
  if (!version.run_id.empty()) {
    ASSIGN_OR_RETURN(const tracking::Run* run, reader.FindRun(version.run_id));
    if (run != nullptr) {
      for (const tracking::Tag& t : run->tags) {
        if (!t.key.starts_with(kOutputTagPrefix) || !IsCommitId(t.value)) continue;
        ASSIGN_OR_RETURN(std::vector<tracking::TrackingStore::DatasetUse> uses,
                         dir.tracking().RunsUsingDataset(t.value));
        for (const auto& use : uses) candidates.push_back(use.run_id);
      }
    }
  }
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());

  std::optional<registry::EvaluationEvidence> best;
  std::tuple<int64_t, int64_t, std::string> best_key;
  for (const std::string& id : candidates) {
    if (id == version.run_id) continue;  // the training run is no evaluation of itself
    ASSIGN_OR_RETURN(const tracking::Run* run, reader.FindRun(id));
    if (run == nullptr || run->info.status != "FINISHED" ||
        run->info.lifecycle_stage != tracking::LifecycleStage::kActive) {
      continue;
    }
    ASSIGN_OR_RETURN(std::vector<DatasetRead> reads, reader.Reads(*run));
    auto read = std::find_if(reads.begin(), reads.end(), [&](const DatasetRead& r) {
      return r.commit.has_value() && r.Matches(rule.dataset) && r.split == rule.split;
    });
    if (read == reads.end()) continue;
    auto key = std::make_tuple(run->info.start_time.value_or(0), run->info.end_time.value_or(0), id);
    if (best && key <= best_key) continue;
    best_key = key;
    registry::EvaluationEvidence e{
        .run_id = id, .dataset = rule.dataset, .split = rule.split, .commit_id = read->commit->id};
    const data::Split* split = read->commit->FindSplit(rule.split);
    e.split_sealed = split != nullptr && split->sealed;
    for (const tracking::Metric& m : run->metrics) e.metrics[m.key] = m.value;
    best = std::move(e);
  }
  return best;
}

// Every place the training lineage walked in `walk` read `rule`'s split.
std::vector<std::string> FindContamination(const Walk& walk, const registry::EvaluationRule& rule) {
  std::vector<std::string> found;
  for (const Visit& v : walk.visits) {
    for (const DatasetRead& r : v.reads) {
      if (!r.Matches(rule.dataset) || !r.Includes(rule.split)) continue;
      if (!r.commit) {
        found.push_back(
            fmt::format("{} read {} (digest {}, not a Cairn commit)", DescribeRun(v), r.input_name, r.ref.digest));
        continue;
      }
      const data::Split* sp = r.commit->FindSplit(rule.split);
      const char* sealed = sp != nullptr && sp->sealed ? "sealed there" : "not sealed there";
      if (!r.split.empty()) {
        found.push_back(fmt::format("{} read {}#{} at commit {} ({})", DescribeRun(v), r.dataset, r.split,
                                    ShortId(r.commit->id), sealed));
      } else {
        found.push_back(fmt::format("{} read the whole dataset {} at commit {}, split {} included ({})", DescribeRun(v),
                                    r.dataset, ShortId(r.commit->id), rule.split, sealed));
      }
    }
  }
  if (walk.truncated) {
    found.push_back(
        fmt::format("the training lineage is longer than {} runs or {} producer steps: not all of it "
                    "could be checked",
                    kMaxLineageRuns, kMaxLineageDepth));
  }
  return found;
}

// ------------------------------------------------------------------- graph

class LineageGraph {
 public:
  // Adds a node unless one with `id` exists; returns `id`.
  const std::string& AddNode(const std::string& id, const char* type, const std::string& label, Json attrs) {
    if (node_ids_.insert(id).second) {
      nodes_.push_back({{"id", id}, {"type", type}, {"label", label}, {"attrs", std::move(attrs)}});
    }
    return id;
  }
  void AddEdge(const std::string& from, const std::string& to, const char* kind, const std::string& context = "") {
    if (!edge_keys_.insert(from + '\n' + to + '\n' + kind).second) return;
    Json e = {{"from", from}, {"to", to}, {"kind", kind}};
    if (!context.empty()) e["context"] = context;
    edges_.push_back(std::move(e));
  }
  Json ToJson(const std::string& root, bool truncated) && {
    return {{"root", root}, {"truncated", truncated}, {"nodes", std::move(nodes_)}, {"edges", std::move(edges_)}};
  }

 private:
  Json nodes_ = Json::array();
  Json edges_ = Json::array();
  std::set<std::string> node_ids_;
  std::set<std::string> edge_keys_;
};

Json OptionalTime(const std::optional<int64_t>& t) { return t ? Json(*t) : Json(nullptr); }

std::string RunNodeId(const std::string& run_id) { return "run:" + run_id; }

void AddRunNode(LineageGraph& graph, const Visit& v) {
  const std::string id = RunNodeId(v.run_id);
  if (v.run == nullptr) {
    graph.AddNode(id, "run", ShortId(v.run_id), {{"run_id", v.run_id}, {"missing", true}});
    return;
  }
  const tracking::Run& run = *v.run;
  const std::string label = run.info.run_name.empty() ? ShortId(v.run_id) : run.info.run_name;
  graph.AddNode(id, "run", label,
                {{"run_id", v.run_id},
                 {"run_name", run.info.run_name},
                 {"experiment_id", run.info.experiment_id},
                 {"status", run.info.status},
                 {"user_id", run.info.user_id},
                 {"start_time", OptionalTime(run.info.start_time)},
                 {"end_time", OptionalTime(run.info.end_time)},
                 {"pipeline", TagValue(run.tags, "cairn.pipeline")},
                 {"step", TagValue(run.tags, "cairn.step")},
                 {"role", TagValue(run.tags, "cairn.role")}});

  const std::string code_digest = TagValue(run.tags, "cairn.code.digest");
  std::string git = TagValue(run.tags, "cairn.code.git_commit");
  if (git.empty()) git = TagValue(run.tags, "mlflow.source.git.commit");
  if (!code_digest.empty() || !git.empty()) {
    const std::string code_id = code_digest.empty() ? "code:git:" + git : "code:" + code_digest;
    const std::string code_label = code_digest.empty() ? "git " + ShortId(git) : "code " + ShortId(code_digest);
    graph.AddEdge(id,
                  graph.AddNode(code_id, "code", code_label,
                                {{"digest", code_digest},
                                 {"git_commit", git},
                                 {"git_dirty", TagValue(run.tags, "cairn.code.git_dirty")},
                                 {"source_name", TagValue(run.tags, "mlflow.source.name")}}),
                  "code");
  }
  if (const std::string env = TagValue(run.tags, "cairn.env.digest"); !env.empty()) {
    const std::string python = TagValue(run.tags, "cairn.env.python");
    graph.AddEdge(id,
                  graph.AddNode("environment:" + env, "environment",
                                python.empty() ? "environment " + ShortId(env) : "python " + python,
                                {{"digest", env},
                                 {"python", python},
                                 {"os", TagValue(run.tags, "cairn.env.os")},
                                 {"host", TagValue(run.tags, "cairn.env.host")}}),
                  "environment");
  }
  if (!run.params.empty()) {
    Json params = Json::object();
    for (const tracking::Param& p : run.params) params[p.key] = p.value;
    graph.AddEdge(id,
                  graph.AddNode("params:" + v.run_id, "params",
                                fmt::format("{} param{}", run.params.size(), run.params.size() == 1 ? "" : "s"),
                                std::move(params)),
                  "params");
  }
}

// Adds the node of `r` and the edge from its run; returns the node's id.
std::string AddReadNode(LineageGraph& graph, const Visit& v, const DatasetRead& r) {
  std::string id;
  if (!r.commit) {
    id = graph.AddNode("dataset:" + r.input_name + "@" + r.ref.digest, "dataset", r.input_name,
                       {{"name", r.input_name},
                        {"digest", r.ref.digest},
                        {"source_type", r.ref.source_type},
                        {"source", r.ref.source}});
  } else {
    const data::DatasetCommit& c = *r.commit;
    bool sealed = false;
    if (!r.split.empty()) {
      const data::Split* sp = c.FindSplit(r.split);
      sealed = sp != nullptr && sp->sealed;
    } else {
      sealed = r.IncludesSealed();
    }
    const std::string selection = r.split.empty() ? (r.sealed_excluded ? "/unsealed" : "/all") : "#" + r.split;
    id = graph.AddNode("dataset_commit:" + c.id + selection, "dataset_commit",
                       fmt::format("{}@{}{}", r.dataset, ShortId(c.id), r.split.empty() ? "" : "#" + r.split),
                       {{"dataset", r.dataset},
                        {"commit", c.id},
                        {"split", r.split},
                        {"sealed", sealed},
                        {"sealed_excluded", r.sealed_excluded},
                        {"message", c.message},
                        {"author", c.author},
                        {"created_at_ms", c.created_at_ms}});
  }
  graph.AddEdge(RunNodeId(v.run_id), id, "read", r.context);
  return id;
}

}  // namespace

absl::StatusOr<registry::GateEvidence> CollectGateEvidence(DataDirectory& dir, const registry::PromotionPolicy& policy,
                                                           const std::string& name, const std::string& alias,
                                                           int64_t version) {
  registry::RegistryStore& models = dir.registry();
  ASSIGN_OR_RETURN(registry::ModelVersion candidate, models.GetModelVersion(name, version));
  LineageReader reader(dir);
  registry::GateEvidence evidence{.name = name, .version = version};

  absl::StatusOr<registry::ModelVersion> current = models.GetModelVersionByAlias(name, alias);
  if (!current.ok() && !absl::IsNotFound(current.status())) return current.status();
  if (current.ok()) evidence.current = registry::CurrentEvidence{.version = current->version};

  if (policy.evaluation) {
    const registry::EvaluationRule& rule = *policy.evaluation;
    ASSIGN_OR_RETURN(evidence.evaluation, FindEvaluation(dir, reader, candidate, rule));
    if (current.ok()) {
      ASSIGN_OR_RETURN(std::optional<registry::EvaluationEvidence> baseline,
                       FindEvaluation(dir, reader, *current, rule));
      if (baseline) evidence.current->metrics = std::move(baseline->metrics);
    }
    // A lineage that cannot be read cannot be shown to exclude the split.
    if (candidate.run_id.empty()) {
      evidence.contamination.push_back(
          fmt::format("version {} names no run: its training lineage is unknown", version));
    } else {
      ASSIGN_OR_RETURN(Walk walk, reader.WalkFrom(candidate.run_id));
      if (walk.visits.front().run == nullptr) {
        evidence.contamination.push_back(fmt::format(
            "run {} of version {} does not exist: its training lineage is unknown", candidate.run_id, version));
      }
      std::vector<std::string> found = FindContamination(walk, rule);
      evidence.contamination.insert(evidence.contamination.end(), found.begin(), found.end());
    }
  }

  ASSIGN_OR_RETURN(std::vector<registry::Approval> approvals, models.ListApprovals(name, version, alias));
  for (registry::Approval& a : approvals) {
    ASSIGN_OR_RETURN(std::vector<std::string> roles, models.RolesOf(a.user));
    evidence.approvals.push_back({.user = std::move(a.user), .roles = std::move(roles)});
  }
  return evidence;
}

absl::StatusOr<AliasMoveCheck> CheckAliasMoveRecorded(DataDirectory& dir, const std::string& name,
                                                      const std::string& alias, int64_t version,
                                                      const std::string& user, const std::string& reason) {
  RETURN_IF_ERROR(registry::ValidateAlias(alias));
  registry::RegistryStore& models = dir.registry();
  RETURN_IF_ERROR(models.GetModelVersion(name, version).status());
  AliasMoveCheck check;
  ASSIGN_OR_RETURN(std::optional<registry::PolicyRecord> policy, models.GetPolicy(name));
  if (policy && policy->policy.Guards(alias)) {
    ASSIGN_OR_RETURN(registry::GateEvidence evidence, CollectGateEvidence(dir, policy->policy, name, alias, version));
    if (evidence.current) check.current_version = evidence.current->version;
    check.decision = registry::EvaluateGate(policy->policy, alias, evidence);
  } else {
    absl::StatusOr<registry::ModelVersion> current = models.GetModelVersionByAlias(name, alias);
    if (!current.ok() && !absl::IsNotFound(current.status())) return current.status();
    if (current.ok()) check.current_version = current->version;
  }
  ASSIGN_OR_RETURN(check.decision_id,
                   models.RecordDecision({.name = name,
                                          .alias = alias,
                                          .version = version,
                                          .allowed = check.decision.allowed,
                                          .conditions = registry::GateDecisionToJson(check.decision)["conditions"],
                                          .user = user,
                                          .reason = reason}));
  return check;
}

absl::StatusOr<registry::GateDecision> CheckAliasMove(DataDirectory& dir, const std::string& name,
                                                      const std::string& alias, int64_t version,
                                                      const std::string& user, const std::string& reason) {
  ASSIGN_OR_RETURN(AliasMoveCheck check, CheckAliasMoveRecorded(dir, name, alias, version, user, reason));
  return std::move(check.decision);
}

absl::StatusOr<Json> ModelLineageGraph(DataDirectory& dir, const std::string& name, int64_t version) {
  ASSIGN_OR_RETURN(registry::ModelVersion v, dir.registry().GetModelVersion(name, version));
  LineageGraph graph;
  const std::string root = fmt::format("model_version:{}/{}", name, version);
  graph.AddNode(root, "model_version", fmt::format("{} v{}", name, version),
                {{"name", name},
                 {"version", version},
                 {"run_id", v.run_id},
                 {"source", v.source},
                 {"aliases", v.aliases},
                 {"artifact_digest", v.artifact_digest}});
  if (v.run_id.empty()) return std::move(graph).ToJson(root, false);

  LineageReader reader(dir);
  ASSIGN_OR_RETURN(Walk walk, reader.WalkFrom(v.run_id));
  for (const Visit& visit : walk.visits) AddRunNode(graph, visit);
  std::set<std::string> walked;
  for (const Visit& visit : walk.visits) walked.insert(visit.run_id);
  graph.AddEdge(root, RunNodeId(v.run_id), "trained_by");
  for (const Visit& visit : walk.visits) {
    for (const DatasetRead& r : visit.reads) {
      const std::string read = AddReadNode(graph, visit, r);
      // A producer left out by the depth or size cap has no node to point at.
      if (!r.producer_run_id.empty() && walked.contains(r.producer_run_id)) {
        graph.AddEdge(read, RunNodeId(r.producer_run_id), "produced_by");
      }
    }
  }
  return std::move(graph).ToJson(root, walk.truncated);
}

}  // namespace cairn::api
