#include "tracking/tracking_store.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <unordered_map>
#include <utility>

#include "base/ids.h"
#include "base/json.h"
#include "tracking/internal/page_token.h"
#include "tracking/internal/validation.h"
#include "tracking/schema.h"
#include "tracking/search_filter.h"

namespace cairn::tracking {
namespace {

using internal::DecodePageToken;
using internal::EncodePageToken;

constexpr const char kActive[] = "active";
constexpr const char kDeleted[] = "deleted";
constexpr const char kRunNameTag[] = "mlflow.runName";
constexpr const char kUserTag[] = "mlflow.user";

const char* StageName(LifecycleStage s) { return s == LifecycleStage::kActive ? kActive : kDeleted; }
LifecycleStage StageOf(std::string_view s) { return s == kDeleted ? LifecycleStage::kDeleted : LifecycleStage::kActive; }

// One stored metric point in a chunk blob: 24 bytes, little endian
// (value as IEEE-754 double bits, timestamp, step). See docs/schema.md.
constexpr size_t kPointSize = 24;

void AppendPoint(std::string& blob, const Metric& m) {
  char buf[kPointSize];
  std::memcpy(buf, &m.value, 8);
  std::memcpy(buf + 8, &m.timestamp, 8);
  std::memcpy(buf + 16, &m.step, 8);
  blob.append(buf, kPointSize);
}

MetricPoint ReadPoint(const char* p) {
  MetricPoint m;
  std::memcpy(&m.value, p, 8);
  std::memcpy(&m.timestamp, p + 8, 8);
  std::memcpy(&m.step, p + 16, 8);
  return m;
}

// MLflow's "latest" rule: the greatest (step, timestamp, value); NaN counts as smallest.
bool LaterThan(const Metric& a, const Metric& b) {
  if (a.step != b.step) return a.step > b.step;
  if (a.timestamp != b.timestamp) return a.timestamp > b.timestamp;
  double av = std::isnan(a.value) ? -std::numeric_limits<double>::infinity() : a.value;
  double bv = std::isnan(b.value) ? -std::numeric_limits<double>::infinity() : b.value;
  return av >= bv;
}

std::string Placeholders(size_t n) {
  std::string s;
  s.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) s += i ? ",?" : "?";
  return s;
}

std::string GenerateRunName() {
  static constexpr const char* kAdjectives[] = {"amber", "bold",  "brave",  "bright", "calm",   "clever", "crisp",
                                                "eager", "fair",  "gentle", "glad",   "keen",   "lively", "lucid",
                                                "merry", "noble", "proud",  "quick",  "quiet",  "rare",   "sharp",
                                                "shy",   "sly",   "steady", "sunny",  "swift",  "tidy",   "vivid"};
  static constexpr const char* kNouns[] = {"badger", "bass",  "crane", "deer",  "eel",   "finch", "fox",
                                           "gull",   "hare",  "heron", "ibis",  "jay",   "koi",   "lark",
                                           "lynx",   "mole",  "newt",  "otter", "owl",   "panda", "quail",
                                           "robin",  "seal",  "shrew", "snail", "stork", "toad",  "wren"};
  std::random_device rd;
  std::uniform_int_distribution<int> a(0, std::size(kAdjectives) - 1), n(0, std::size(kNouns) - 1), k(0, 999);
  return fmt::format("{}-{}-{}", kAdjectives[a(rd)], kNouns[n(rd)], k(rd));
}

absl::Status RunNotFound(const std::string& run_id) {
  return absl::NotFoundError(fmt::format("Run with id={} not found", run_id));
}
absl::Status ExperimentNotFound(const std::string& id) {
  return absl::NotFoundError(fmt::format("No Experiment with id={} exists", id));
}

int ClampMaxResults(int max_results) { return max_results <= 0 ? kMaxResultsDefault : max_results; }

// Bounds what a filter can cost: SQLite allows at most 32766 bound parameters.
constexpr size_t kMaxFilterLength = size_t{64} * 1024;

absl::Status CheckFilterLength(const std::string& filter) {
  if (filter.size() > kMaxFilterLength) {
    return absl::InvalidArgumentError(
        fmt::format("Filter string is {} bytes long; the limit is {}", filter.size(), kMaxFilterLength));
  }
  return absl::OkStatus();
}

absl::Status CheckMaxResults(int max_results) {
  if (max_results > kMaxResultsLimit) {
    return absl::InvalidArgumentError(fmt::format(
        "Invalid value {} for parameter 'max_results' supplied. It must be at most {}", max_results,
        kMaxResultsLimit));
  }
  if (max_results < 0) {
    return absl::InvalidArgumentError(
        fmt::format("Invalid value {} for parameter 'max_results' supplied. It must be positive", max_results));
  }
  return absl::OkStatus();
}

std::vector<const char*> StagesFor(ViewType v) {
  switch (v) {
    case ViewType::kActiveOnly: return {kActive};
    case ViewType::kDeletedOnly: return {kDeleted};
    case ViewType::kAll: return {kActive, kDeleted};
  }
  return {kActive};
}

void BindValues(db::Statement& st, int first, const std::vector<SqlValue>& values) {
  int i = first;
  for (const SqlValue& v : values) {
    if (auto* n = std::get_if<int64_t>(&v)) st.BindInt(i++, *n);
    else if (auto* d = std::get_if<double>(&v)) st.BindDouble(i++, *d);
    else st.BindText(i++, std::get<std::string>(v));
  }
}

// Runs a search: `sql` selects one id column and ends with
// "ORDER BY ... LIMIT ? OFFSET ?"; `leading` binds come first (experiment
// ids, lifecycle stages), then the filter's and the order's parameters.
// Returns up to limit + 1 ids, so the caller can tell if there is a next page.
absl::StatusOr<std::vector<std::string>> SelectIds(db::Connection& conn, const std::string& sql,
                                                   const std::vector<SqlValue>& leading, const SqlFragment& where,
                                                   const SqlFragment& order, int limit, int64_t offset) {
  ASSIGN_OR_RETURN(auto st, conn.Prepare(sql));
  int i = 1;
  for (const auto* values : {&leading, &where.params, &order.params}) {
    BindValues(*st, i, *values);
    i += static_cast<int>(values->size());
  }
  st->BindInt(i++, limit + 1);
  st->BindInt(i++, offset);
  std::vector<std::string> ids;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) return ids;
    ids.emplace_back(st->ColumnText(0));
  }
}

std::vector<SqlValue> StageValues(const std::vector<const char*>& stages) {
  std::vector<SqlValue> values;
  values.reserve(stages.size());
  for (const char* s : stages) values.emplace_back(std::string(s));
  return values;
}

}  // namespace

constexpr std::string_view kSelectExperiment =
    "SELECT experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time FROM "
    "experiments WHERE ";

struct TrackingStore::RunRow {
  std::string experiment_id;
  LifecycleStage stage;
};

TrackingStore::TrackingStore(db::Database& db, Env& env, std::unique_ptr<db::GroupCommitter> committer,
                             std::unique_ptr<db::ConnectionPool> readers)
    : db_(db), env_(env), committer_(std::move(committer)), readers_(std::move(readers)) {}

TrackingStore::~TrackingStore() = default;

absl::StatusOr<std::unique_ptr<TrackingStore>> TrackingStore::Create(db::Database& db, Env& env) {
  RETURN_IF_ERROR(db.Migrate("tracking", TrackingMigrations()));
  ASSIGN_OR_RETURN(auto committer, db::GroupCommitter::Create(db));
  ASSIGN_OR_RETURN(auto readers, db::ConnectionPool::Create(db, 16));
  auto store = std::unique_ptr<TrackingStore>(new TrackingStore(db, env, std::move(committer), std::move(readers)));
  int64_t now = env.NowMicros() / 1000;
  RETURN_IF_ERROR(store->committer_->Submit([now](db::Connection& conn) -> absl::Status {
    ASSIGN_OR_RETURN(db::Statement * st,
                     conn.Cached("INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, "
                                 "creation_time, last_update_time) VALUES (0, 'Default', 'mlflow-artifacts:/0', "
                                 "'active', ?, ?) ON CONFLICT DO NOTHING"));
    st->BindInt(1, now);
    st->BindInt(2, now);
    return st->Run();
  }));
  return store;
}

// ---------------------------------------------------------------- experiments

absl::StatusOr<std::string> TrackingStore::CreateExperiment(const std::string& name,
                                                            const std::string& artifact_location,
                                                            const std::vector<Tag>& tags) {
  RETURN_IF_ERROR(internal::ValidateExperimentName(name));
  for (const Tag& t : tags) RETURN_IF_ERROR(internal::ValidateExperimentTag(t));
  int64_t now = env_.NowMicros() / 1000;
  std::string id;
  RETURN_IF_ERROR(committer_->Submit([&](db::Connection& conn) -> absl::Status {
    ASSIGN_OR_RETURN(db::Statement * find, conn.Cached("SELECT lifecycle_stage FROM experiments WHERE name = ?"));
    find->BindText(1, name);
    ASSIGN_OR_RETURN(bool exists, find->Step());
    if (exists) {
      std::string stage(find->ColumnText(0));
      find->Reset();
      if (stage == kDeleted) {
        return absl::AlreadyExistsError(fmt::format(
            "Experiment '{}' already exists in deleted state. You can restore the experiment, or permanently "
            "delete the experiment to create a new one.",
            name));
      }
      return absl::AlreadyExistsError(fmt::format("Experiment '{}' already exists.", name));
    }
    find->Reset();
    ASSIGN_OR_RETURN(db::Statement * ins,
                     conn.Cached("INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, "
                                 "last_update_time) VALUES (?, ?, 'active', ?, ?) RETURNING experiment_id"));
    ins->BindText(1, name);
    ins->BindText(2, artifact_location);
    ins->BindInt(3, now);
    ins->BindInt(4, now);
    ASSIGN_OR_RETURN(bool row, ins->Step());
    if (!row) return absl::InternalError("INSERT ... RETURNING returned no row");
    int64_t new_id = ins->ColumnInt(0);
    ins->Reset();
    id = std::to_string(new_id);
    if (artifact_location.empty()) {
      ASSIGN_OR_RETURN(db::Statement * upd,
                       conn.Cached("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?"));
      upd->BindText(1, "mlflow-artifacts:/" + id);
      upd->BindInt(2, new_id);
      RETURN_IF_ERROR(upd->Run());
    }
    ASSIGN_OR_RETURN(db::Statement * tag,
                     conn.Cached("INSERT INTO experiment_tags (experiment_id, key, value) VALUES (?, ?, ?) "
                                 "ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value"));
    for (const Tag& t : tags) {
      tag->BindInt(1, new_id);
      tag->BindText(2, t.key);
      tag->BindText(3, t.value);
      RETURN_IF_ERROR(tag->Run());
    }
    return absl::OkStatus();
  }));
  return id;
}

// Reads the experiment row `st` stands on (columns as in kExperimentColumns),
// then its tags; resets `st`.
static absl::StatusOr<Experiment> ReadExperiment(db::Connection& conn, db::Statement* st) {
  Experiment e;
  const int64_t id = st->ColumnInt(0);
  e.experiment_id = std::to_string(id);
  e.name = std::string(st->ColumnText(1));
  e.artifact_location = std::string(st->ColumnText(2));
  e.lifecycle_stage = StageOf(st->ColumnText(3));
  e.creation_time = st->ColumnInt(4);
  e.last_update_time = st->ColumnInt(5);
  st->Reset();
  ASSIGN_OR_RETURN(db::Statement * tags,
                   conn.Cached("SELECT key, value FROM experiment_tags WHERE experiment_id = ? ORDER BY key"));
  tags->BindInt(1, id);
  for (;;) {
    ASSIGN_OR_RETURN(bool row, tags->Step());
    if (!row) break;
    e.tags.push_back({std::string(tags->ColumnText(0)), std::string(tags->ColumnText(1))});
  }
  tags->Reset();
  return e;
}


absl::StatusOr<Experiment> TrackingStore::LoadExperiment(db::Connection& conn, const std::string& experiment_id) {
  RETURN_IF_ERROR(internal::ValidateExperimentId(experiment_id));
  ASSIGN_OR_RETURN(db::Statement * st, conn.Cached(std::string(kSelectExperiment) + "experiment_id = ?"));
  st->BindInt(1, std::stoll(experiment_id));
  ASSIGN_OR_RETURN(bool found, st->Step());
  if (!found) {
    st->Reset();
    return ExperimentNotFound(experiment_id);
  }
  return ReadExperiment(conn, st);
}

absl::StatusOr<Experiment> TrackingStore::GetExperiment(const std::string& experiment_id) {
  RETURN_IF_ERROR(internal::ValidateExperimentId(experiment_id));
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  return LoadExperiment(*lease, experiment_id);
}

absl::StatusOr<Experiment> TrackingStore::GetExperimentByName(const std::string& name) {
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st, lease->Cached(std::string(kSelectExperiment) + "name = ?"));
  st->BindText(1, name);
  ASSIGN_OR_RETURN(bool found, st->Step());
  if (!found) {
    st->Reset();
    return absl::NotFoundError(fmt::format("Could not find experiment with name '{}'", name));
  }
  return ReadExperiment(*lease, st);
}

absl::StatusOr<SearchExperimentsResult> TrackingStore::SearchExperiments(const SearchExperimentsRequest& request) {
  RETURN_IF_ERROR(CheckMaxResults(request.max_results));
  int limit = ClampMaxResults(request.max_results);
  ASSIGN_OR_RETURN(int64_t offset, DecodePageToken(request.page_token));
  RETURN_IF_ERROR(CheckFilterLength(request.filter));
  ASSIGN_OR_RETURN(ExperimentFilter filter, ParseExperimentFilter(request.filter));
  ASSIGN_OR_RETURN(SqlFragment where, ExperimentFilterToSql(filter, dialect()));
  ASSIGN_OR_RETURN(SqlFragment order, ExperimentOrderByToSql(request.order_by, dialect()));
  auto stages = StagesFor(request.view_type);
  std::string sql = fmt::format("SELECT CAST(experiments.experiment_id AS TEXT) FROM experiments WHERE lifecycle_stage IN ({})",
                                Placeholders(stages.size()));
  if (!where.sql.empty()) sql += " AND (" + where.sql + ")";
  sql += " ORDER BY " + order.sql + " LIMIT ? OFFSET ?";

  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  db::Connection& conn = *lease;
  ASSIGN_OR_RETURN(std::vector<std::string> ids,
                   SelectIds(conn, sql, StageValues(stages), where, order, limit, offset));
  SearchExperimentsResult result;
  if (static_cast<int>(ids.size()) > limit) {
    ids.resize(limit);
    result.next_page_token = EncodePageToken(offset + limit);
  }
  for (const std::string& id : ids) {
    ASSIGN_OR_RETURN(Experiment e, LoadExperiment(conn, id));
    result.experiments.push_back(std::move(e));
  }
  return result;
}

absl::Status TrackingStore::RenameExperiment(const std::string& experiment_id, const std::string& new_name) {
  RETURN_IF_ERROR(internal::ValidateExperimentId(experiment_id));
  RETURN_IF_ERROR(internal::ValidateExperimentName(new_name));
  int64_t now = env_.NowMicros() / 1000;
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    ASSIGN_OR_RETURN(auto exp, LoadExperiment(conn, experiment_id));
    if (exp.lifecycle_stage != LifecycleStage::kActive) {
      return absl::InvalidArgumentError(
          fmt::format("Cannot rename a non-active experiment with ID {}.", experiment_id));
    }
    ASSIGN_OR_RETURN(db::Statement * st,
                     conn.Cached("UPDATE experiments SET name = ?, last_update_time = ? WHERE experiment_id = ?"));
    st->BindText(1, new_name);
    st->BindInt(2, now);
    st->BindInt(3, std::stoll(experiment_id));
    absl::Status s = st->Run();
    if (absl::IsAlreadyExists(s)) {
      return absl::AlreadyExistsError(fmt::format("Experiment '{}' already exists.", new_name));
    }
    return s;
  });
}

absl::Status TrackingStore::DeleteExperiment(const std::string& experiment_id) {
  RETURN_IF_ERROR(internal::ValidateExperimentId(experiment_id));
  if (experiment_id == "0") {
    return absl::InvalidArgumentError("Cannot delete the default experiment '0'. This is an internally reserved "
                                      "experiment.");
  }
  int64_t now = env_.NowMicros() / 1000;
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    ASSIGN_OR_RETURN(db::Statement * st, conn.Cached("UPDATE experiments SET lifecycle_stage = 'deleted', "
                                                     "last_update_time = ? WHERE experiment_id = ?"));
    st->BindInt(1, now);
    st->BindInt(2, std::stoll(experiment_id));
    RETURN_IF_ERROR(st->Run());
    if (st->ChangedRows() == 0) return ExperimentNotFound(experiment_id);
    ASSIGN_OR_RETURN(db::Statement * runs, conn.Cached("UPDATE runs SET lifecycle_stage = 'deleted', deleted_time = ? "
                                                       "WHERE experiment_id = ? AND lifecycle_stage = 'active'"));
    runs->BindInt(1, now);
    runs->BindInt(2, std::stoll(experiment_id));
    return runs->Run();
  });
}

absl::Status TrackingStore::RestoreExperiment(const std::string& experiment_id) {
  RETURN_IF_ERROR(internal::ValidateExperimentId(experiment_id));
  int64_t now = env_.NowMicros() / 1000;
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    ASSIGN_OR_RETURN(auto exp, LoadExperiment(conn, experiment_id));
    if (exp.lifecycle_stage != LifecycleStage::kDeleted) {
      return absl::InvalidArgumentError(
          fmt::format("Cannot restore an active experiment with ID {}.", experiment_id));
    }
    ASSIGN_OR_RETURN(db::Statement * st, conn.Cached("UPDATE experiments SET lifecycle_stage = 'active', "
                                                     "last_update_time = ? WHERE experiment_id = ?"));
    st->BindInt(1, now);
    st->BindInt(2, std::stoll(experiment_id));
    RETURN_IF_ERROR(st->Run());
    ASSIGN_OR_RETURN(db::Statement * runs, conn.Cached("UPDATE runs SET lifecycle_stage = 'active', deleted_time = "
                                                       "NULL WHERE experiment_id = ? AND lifecycle_stage = 'deleted'"));
    runs->BindInt(1, std::stoll(experiment_id));
    return runs->Run();
  });
}

absl::Status TrackingStore::SetExperimentTag(const std::string& experiment_id, const std::string& key,
                                             const std::string& value) {
  RETURN_IF_ERROR(internal::ValidateExperimentId(experiment_id));
  RETURN_IF_ERROR(internal::ValidateExperimentTag({key, value}));
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    ASSIGN_OR_RETURN(auto exp, LoadExperiment(conn, experiment_id));
    if (exp.lifecycle_stage != LifecycleStage::kActive) {
      return absl::InvalidArgumentError(fmt::format(
          "The experiment {} must be in the 'active' state. Current state is deleted.", experiment_id));
    }
    ASSIGN_OR_RETURN(db::Statement * tag,
                     conn.Cached("INSERT INTO experiment_tags (experiment_id, key, value) VALUES (?, ?, ?) "
                                 "ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value"));
    tag->BindInt(1, std::stoll(experiment_id));
    tag->BindText(2, key);
    tag->BindText(3, value);
    return tag->Run();
  });
}

absl::Status TrackingStore::DeleteExperimentTag(const std::string& experiment_id, const std::string& key) {
  RETURN_IF_ERROR(internal::ValidateExperimentId(experiment_id));
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    RETURN_IF_ERROR(LoadExperiment(conn, experiment_id).status());
    ASSIGN_OR_RETURN(db::Statement * st,
                     conn.Cached("DELETE FROM experiment_tags WHERE experiment_id = ? AND key = ?"));
    st->BindInt(1, std::stoll(experiment_id));
    st->BindText(2, key);
    RETURN_IF_ERROR(st->Run());
    if (st->ChangedRows() == 0) {
      return absl::NotFoundError(
          fmt::format("No tag with name: {} in experiment with id {}", key, experiment_id));
    }
    return absl::OkStatus();
  });
}

// ----------------------------------------------------------------------- runs

absl::StatusOr<TrackingStore::RunRow> TrackingStore::LoadRunRow(db::Connection& conn, const std::string& run_id) {
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn.Cached("SELECT experiment_id, lifecycle_stage FROM runs WHERE run_uuid = ?"));
  st->BindText(1, run_id);
  ASSIGN_OR_RETURN(bool found, st->Step());
  if (!found) {
    st->Reset();
    return RunNotFound(run_id);
  }
  RunRow row{std::to_string(st->ColumnInt(0)), StageOf(st->ColumnText(1))};
  st->Reset();
  return row;
}

namespace {

absl::Status CheckActive(const std::string& run_id, LifecycleStage stage) {
  if (stage != LifecycleStage::kActive) {
    return absl::InvalidArgumentError(
        fmt::format("The run {} must be in the 'active' state. Current state is deleted.", run_id));
  }
  return absl::OkStatus();
}

// Tags that also live in the runs row are written to both.
absl::Status UpsertTag(db::Connection& conn, const std::string& run_id, const Tag& t) {
  ASSIGN_OR_RETURN(db::Statement * st, conn.Cached("INSERT INTO tags (run_uuid, key, value) VALUES (?, ?, ?) "
                                                   "ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value"));
  st->BindText(1, run_id);
  st->BindText(2, t.key);
  st->BindText(3, t.value);
  RETURN_IF_ERROR(st->Run());
  if (t.key == kRunNameTag) {
    ASSIGN_OR_RETURN(db::Statement * upd, conn.Cached("UPDATE runs SET name = ? WHERE run_uuid = ?"));
    upd->BindText(1, t.value);
    upd->BindText(2, run_id);
    RETURN_IF_ERROR(upd->Run());
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Run> TrackingStore::CreateRun(const CreateRunRequest& request) {
  std::string experiment_id = request.experiment_id.empty() ? "0" : request.experiment_id;
  RETURN_IF_ERROR(internal::ValidateExperimentId(experiment_id));
  std::vector<Tag> tags = request.tags;
  for (const Tag& t : tags) RETURN_IF_ERROR(internal::ValidateTag(t));
  std::string run_name = request.run_name;
  for (const Tag& t : tags) {
    if (t.key == kRunNameTag) {
      if (!run_name.empty() && run_name != t.value) {
        return absl::InvalidArgumentError(fmt::format(
            "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values "
            "(run_name='{}', mlflow.runName='{}').",
            run_name, t.value));
      }
      run_name = t.value;
    }
  }
  if (run_name.empty()) run_name = GenerateRunName();
  if (std::none_of(tags.begin(), tags.end(), [](const Tag& t) { return t.key == kRunNameTag; })) {
    tags.push_back({kRunNameTag, run_name});
  }
  std::string user_id = request.user_id;
  if (user_id.empty()) {
    for (const Tag& t : tags) {
      if (t.key == kUserTag) user_id = t.value;
    }
  }
  std::string run_id = NewRunId();
  int64_t start_time = request.start_time.value_or(env_.NowMicros() / 1000);
  RETURN_IF_ERROR(committer_->Submit([&](db::Connection& conn) -> absl::Status {
    ASSIGN_OR_RETURN(auto exp, LoadExperiment(conn, experiment_id));
    if (exp.lifecycle_stage != LifecycleStage::kActive) {
      return absl::InvalidArgumentError(
          fmt::format("Could not create run under non-active experiment with ID {}.", experiment_id));
    }
    ASSIGN_OR_RETURN(db::Statement * st,
                     conn.Cached("INSERT INTO runs (run_uuid, experiment_id, name, user_id, status, start_time, "
                                 "lifecycle_stage, artifact_uri) VALUES (?, ?, ?, ?, 'RUNNING', ?, 'active', ?)"));
    st->BindText(1, run_id);
    st->BindInt(2, std::stoll(experiment_id));
    st->BindText(3, run_name);
    st->BindText(4, user_id);
    st->BindInt(5, start_time);
    st->BindText(6, exp.artifact_location + "/" + run_id + "/artifacts");
    RETURN_IF_ERROR(st->Run());
    for (const Tag& t : tags) RETURN_IF_ERROR(UpsertTag(conn, run_id, t));
    return absl::OkStatus();
  }));
  return GetRun(run_id);
}

absl::StatusOr<std::vector<Run>> TrackingStore::LoadRuns(db::Connection& conn,
                                                         const std::vector<std::string>& run_ids) {
  std::vector<Run> runs(run_ids.size());
  if (run_ids.empty()) return runs;
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < run_ids.size(); ++i) index.emplace(run_ids[i], i);
  std::string in = Placeholders(run_ids.size());
  auto query = [&](const std::string& sql, const std::function<void(db::Statement&, Run&)>& fn) -> absl::Status {
    ASSIGN_OR_RETURN(auto st, conn.Prepare(sql));
    for (size_t i = 0; i < run_ids.size(); ++i) st->BindText(static_cast<int>(i) + 1, run_ids[i]);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st->Step());
      if (!row) return absl::OkStatus();
      auto it = index.find(std::string(st->ColumnText(0)));
      if (it != index.end()) fn(*st, runs[it->second]);
    }
  };
  std::vector<bool> seen(run_ids.size());
  RETURN_IF_ERROR(query(fmt::format("SELECT run_uuid, experiment_id, name, user_id, status, start_time, end_time, "
                                    "lifecycle_stage, artifact_uri FROM runs WHERE run_uuid IN ({})",
                                    in),
                        [&](db::Statement& st, Run& r) {
                          RunInfo& info = r.info;
                          info.run_id = std::string(st.ColumnText(0));
                          info.experiment_id = std::to_string(st.ColumnInt(1));
                          info.run_name = std::string(st.ColumnText(2));
                          info.user_id = std::string(st.ColumnText(3));
                          info.status = std::string(st.ColumnText(4));
                          if (!st.IsNull(5)) info.start_time = st.ColumnInt(5);
                          if (!st.IsNull(6)) info.end_time = st.ColumnInt(6);
                          info.lifecycle_stage = StageOf(st.ColumnText(7));
                          info.artifact_uri = std::string(st.ColumnText(8));
                        }));
  RETURN_IF_ERROR(query(fmt::format("SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({}) ORDER BY key", in),
                        [](db::Statement& st, Run& r) {
                          r.params.push_back({std::string(st.ColumnText(1)), std::string(st.ColumnText(2))});
                        }));
  RETURN_IF_ERROR(query(fmt::format("SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({}) ORDER BY key", in),
                        [](db::Statement& st, Run& r) {
                          r.tags.push_back({std::string(st.ColumnText(1)), std::string(st.ColumnText(2))});
                        }));
  RETURN_IF_ERROR(query(fmt::format("SELECT run_uuid, key, value, is_nan, timestamp, step FROM latest_metrics "
                                    "WHERE run_uuid IN ({}) ORDER BY key",
                                    in),
                        [](db::Statement& st, Run& r) {
                          Metric m;
                          m.key = std::string(st.ColumnText(1));
                          m.value = st.ColumnInt(3) ? std::numeric_limits<double>::quiet_NaN()
                                                    : (st.IsNull(2) ? 0.0 : st.ColumnDouble(2));
                          m.timestamp = st.ColumnInt(4);
                          m.step = st.ColumnInt(5);
                          r.metrics.push_back(std::move(m));
                        }));
  RETURN_IF_ERROR(query(fmt::format("SELECT ri.run_uuid, d.name, d.digest, d.source_type, d.source, d.schema, "
                                    "d.profile, ri.tags FROM run_inputs ri JOIN datasets d ON d.dataset_uuid = "
                                    "ri.dataset_uuid WHERE ri.run_uuid IN ({}) ORDER BY d.name",
                                    in),
                        [](db::Statement& st, Run& r) {
                          DatasetInput in;
                          in.dataset.name = std::string(st.ColumnText(1));
                          in.dataset.digest = std::string(st.ColumnText(2));
                          in.dataset.source_type = std::string(st.ColumnText(3));
                          in.dataset.source = std::string(st.ColumnText(4));
                          if (!st.IsNull(5)) in.dataset.schema = std::string(st.ColumnText(5));
                          if (!st.IsNull(6)) in.dataset.profile = std::string(st.ColumnText(6));
                          if (!st.IsNull(7)) {
                            auto tags = ParseJson(st.ColumnText(7));
                            if (tags.ok() && tags->is_array()) {
                              for (const Json& t : *tags) {
                                if (t.is_array() && t.size() == 2 && t[0].is_string() && t[1].is_string()) {
                                  in.tags.push_back({t[0].get<std::string>(), t[1].get<std::string>()});
                                }
                              }
                            }
                          }
                          r.inputs.push_back(std::move(in));
                        }));
  return runs;
}

absl::StatusOr<Run> TrackingStore::GetRun(const std::string& run_id) {
  RETURN_IF_ERROR(internal::ValidateRunId(run_id));
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  ASSIGN_OR_RETURN(auto runs, LoadRuns(*lease, {run_id}));
  if (runs[0].info.run_id.empty()) return RunNotFound(run_id);
  return std::move(runs[0]);
}

absl::StatusOr<RunInfo> TrackingStore::UpdateRun(const UpdateRunRequest& request) {
  RETURN_IF_ERROR(internal::ValidateRunId(request.run_id));
  if (request.status) RETURN_IF_ERROR(internal::ValidateRunStatus(*request.status));
  if (request.run_name) RETURN_IF_ERROR(internal::ValidateTag({kRunNameTag, *request.run_name}));
  RETURN_IF_ERROR(committer_->Submit([&](db::Connection& conn) -> absl::Status {
    ASSIGN_OR_RETURN(RunRow row, LoadRunRow(conn, request.run_id));
    RETURN_IF_ERROR(CheckActive(request.run_id, row.stage));
    if (request.status) {
      ASSIGN_OR_RETURN(db::Statement * st, conn.Cached("UPDATE runs SET status = ? WHERE run_uuid = ?"));
      st->BindText(1, *request.status);
      st->BindText(2, request.run_id);
      RETURN_IF_ERROR(st->Run());
    }
    if (request.end_time) {
      ASSIGN_OR_RETURN(db::Statement * st, conn.Cached("UPDATE runs SET end_time = ? WHERE run_uuid = ?"));
      st->BindInt(1, *request.end_time);
      st->BindText(2, request.run_id);
      RETURN_IF_ERROR(st->Run());
    }
    if (request.run_name && !request.run_name->empty()) {
      RETURN_IF_ERROR(UpsertTag(conn, request.run_id, {kRunNameTag, *request.run_name}));
    }
    return absl::OkStatus();
  }));
  ASSIGN_OR_RETURN(Run run, GetRun(request.run_id));
  return run.info;
}

absl::Status TrackingStore::SetLifecycle(const std::string& run_id, LifecycleStage to) {
  RETURN_IF_ERROR(internal::ValidateRunId(run_id));
  int64_t now = env_.NowMicros() / 1000;
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    RETURN_IF_ERROR(LoadRunRow(conn, run_id).status());  // kNotFound for an unknown run
    ASSIGN_OR_RETURN(db::Statement * st,
                     conn.Cached("UPDATE runs SET lifecycle_stage = ?, deleted_time = ? WHERE run_uuid = ?"));
    st->BindText(1, StageName(to));
    if (to == LifecycleStage::kDeleted) {
      st->BindInt(2, now);
    } else {
      st->BindNull(2);
    }
    st->BindText(3, run_id);
    return st->Run();
  });
}

absl::Status TrackingStore::DeleteRun(const std::string& run_id) {
  return SetLifecycle(run_id, LifecycleStage::kDeleted);
}

absl::Status TrackingStore::RestoreRun(const std::string& run_id) {
  return SetLifecycle(run_id, LifecycleStage::kActive);
}

absl::Status ValidateLogBatch(const std::string& run_id, std::span<const Metric> metrics,
                              std::span<const Param> params, std::span<const Tag> tags) {
  RETURN_IF_ERROR(internal::ValidateRunId(run_id));
  RETURN_IF_ERROR(internal::ValidateBatchLimits(metrics.size(), params.size(), tags.size()));
  for (const Metric& m : metrics) RETURN_IF_ERROR(internal::ValidateMetric(m));
  for (const Param& p : params) RETURN_IF_ERROR(internal::ValidateParam(p));
  for (const Tag& t : tags) RETURN_IF_ERROR(internal::ValidateTag(t));
  // Duplicate param keys within one request must agree (MLflow rule).
  std::unordered_map<std::string_view, std::string_view> seen;
  for (const Param& p : params) {
    auto [it, inserted] = seen.emplace(p.key, p.value);
    if (!inserted && it->second != p.value) {
      return absl::InvalidArgumentError(fmt::format(
          "Duplicate parameter keys have been submitted: [{}]. Please ensure the request contains only one "
          "param value per param key.",
          p.key));
    }
  }
  return absl::OkStatus();
}

absl::Status TrackingStore::LogBatch(const std::string& run_id, std::span<const Metric> metrics,
                                     std::span<const Param> params, std::span<const Tag> tags) {
  RETURN_IF_ERROR(ValidateLogBatch(run_id, metrics, params, tags));

  // Everything that needs no database is prepared here, outside the shared
  // transaction: one chunk blob and one "latest" point per metric key.
  struct KeyChunk {
    std::string key;
    std::string blob;
    int64_t count = 0;
    Metric latest;
  };
  std::vector<KeyChunk> chunks;
  {
    std::unordered_map<std::string_view, size_t> by_key;
    for (const Metric& m : metrics) {
      auto [it, inserted] = by_key.emplace(m.key, chunks.size());
      if (inserted) {
        chunks.push_back({m.key, {}, 0, m});
        chunks.back().blob.reserve(kPointSize * 16);
      }
      KeyChunk& c = chunks[it->second];
      AppendPoint(c.blob, m);
      ++c.count;
      if (LaterThan(m, c.latest)) c.latest = m;
    }
  }

  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    ASSIGN_OR_RETURN(RunRow row, LoadRunRow(conn, run_id));
    RETURN_IF_ERROR(CheckActive(run_id, row.stage));
    if (!params.empty()) {
      ASSIGN_OR_RETURN(db::Statement * get, conn.Cached("SELECT value FROM params WHERE run_uuid = ? AND key = ?"));
      ASSIGN_OR_RETURN(db::Statement * ins, conn.Cached("INSERT INTO params (run_uuid, key, value) VALUES (?, ?, ?)"));
      for (const Param& p : params) {
        get->BindText(1, run_id);
        get->BindText(2, p.key);
        ASSIGN_OR_RETURN(bool exists, get->Step());
        if (exists) {
          std::string old(get->ColumnText(0));
          get->Reset();
          if (old != p.value) {
            return absl::InvalidArgumentError(fmt::format(
                "Changing param values is not allowed. Param with key='{}' was already logged with value='{}' for "
                "run ID='{}'. Attempted logging new value '{}'.",
                p.key, old, run_id, p.value));
          }
          continue;
        }
        get->Reset();
        ins->BindText(1, run_id);
        ins->BindText(2, p.key);
        ins->BindText(3, p.value);
        RETURN_IF_ERROR(ins->Run());
      }
    }
    for (const Tag& t : tags) RETURN_IF_ERROR(UpsertTag(conn, run_id, t));
    if (!chunks.empty()) {
      ASSIGN_OR_RETURN(db::Statement * next,
                       conn.Cached("SELECT COALESCE(MAX(seq) + 1, 0) FROM metric_chunks WHERE run_uuid = ? AND key = ?"));
      ASSIGN_OR_RETURN(db::Statement * ins, conn.Cached("INSERT INTO metric_chunks (run_uuid, key, seq, count, data) "
                                                        "VALUES (?, ?, ?, ?, ?)"));
      ASSIGN_OR_RETURN(
          db::Statement * latest,
          conn.Cached("INSERT INTO latest_metrics (run_uuid, key, value, is_nan, timestamp, step) VALUES (?, ?, ?, ?, "
                      "?, ?) ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value, is_nan = "
                      "excluded.is_nan, timestamp = excluded.timestamp, step = excluded.step WHERE excluded.step > "
                      "latest_metrics.step OR (excluded.step = latest_metrics.step AND (excluded.timestamp > "
                      "latest_metrics.timestamp OR (excluded.timestamp = latest_metrics.timestamp AND "
                      "COALESCE(excluded.value, -1e308) >= COALESCE(latest_metrics.value, -1e308))))"));
      for (const KeyChunk& c : chunks) {
        next->BindText(1, run_id);
        next->BindText(2, c.key);
        ASSIGN_OR_RETURN(bool has_row, next->Step());
        int64_t seq = has_row ? next->ColumnInt(0) : 0;
        next->Reset();
        ins->BindText(1, run_id);
        ins->BindText(2, c.key);
        ins->BindInt(3, seq);
        ins->BindInt(4, c.count);
        ins->BindBlob(5, c.blob);
        RETURN_IF_ERROR(ins->Run());
        latest->BindText(1, run_id);
        latest->BindText(2, c.key);
        bool nan = std::isnan(c.latest.value);
        if (nan) {
          latest->BindNull(3);
        } else {
          latest->BindDouble(3, c.latest.value);
        }
        latest->BindInt(4, nan ? 1 : 0);
        latest->BindInt(5, c.latest.timestamp);
        latest->BindInt(6, c.latest.step);
        RETURN_IF_ERROR(latest->Run());
      }
    }
    return absl::OkStatus();
  });
}

absl::Status TrackingStore::DeleteTag(const std::string& run_id, const std::string& key) {
  RETURN_IF_ERROR(internal::ValidateRunId(run_id));
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    ASSIGN_OR_RETURN(RunRow row, LoadRunRow(conn, run_id));
    RETURN_IF_ERROR(CheckActive(run_id, row.stage));
    ASSIGN_OR_RETURN(db::Statement * st, conn.Cached("DELETE FROM tags WHERE run_uuid = ? AND key = ?"));
    st->BindText(1, run_id);
    st->BindText(2, key);
    RETURN_IF_ERROR(st->Run());
    if (st->ChangedRows() == 0) {
      return absl::NotFoundError(fmt::format("No tag with name: {} in run with id {}", key, run_id));
    }
    return absl::OkStatus();
  });
}

absl::Status TrackingStore::LogInputs(const std::string& run_id, const std::vector<DatasetInput>& inputs) {
  RETURN_IF_ERROR(internal::ValidateRunId(run_id));
  for (const DatasetInput& in : inputs) {
    if (in.dataset.name.empty() || in.dataset.digest.empty()) {
      return absl::InvalidArgumentError("Dataset name and digest are required for every dataset input.");
    }
    if (in.dataset.name.size() > 500 || in.dataset.digest.size() > 256 || in.dataset.source.size() > 65535 ||
        in.dataset.schema.size() > (1 << 20) || in.dataset.profile.size() > 16384) {
      return absl::InvalidArgumentError(fmt::format("Dataset '{}' has a field over its length limit.",
                                                    in.dataset.name.substr(0, 64)));
    }
    for (const Tag& t : in.tags) RETURN_IF_ERROR(internal::ValidateTag(t));
  }
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    ASSIGN_OR_RETURN(RunRow row, LoadRunRow(conn, run_id));
    RETURN_IF_ERROR(CheckActive(run_id, row.stage));
    for (const DatasetInput& in : inputs) {
      ASSIGN_OR_RETURN(db::Statement * find, conn.Cached("SELECT dataset_uuid FROM datasets WHERE experiment_id = ? "
                                                         "AND name = ? AND digest = ?"));
      find->BindInt(1, std::stoll(row.experiment_id));
      find->BindText(2, in.dataset.name);
      find->BindText(3, in.dataset.digest);
      ASSIGN_OR_RETURN(bool found, find->Step());
      std::string uuid = found ? std::string(find->ColumnText(0)) : NewRunId();
      find->Reset();
      if (!found) {
        ASSIGN_OR_RETURN(db::Statement * ins,
                         conn.Cached("INSERT INTO datasets (dataset_uuid, experiment_id, name, digest, source_type, "
                                     "source, schema, profile) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
        ins->BindText(1, uuid);
        ins->BindInt(2, std::stoll(row.experiment_id));
        ins->BindText(3, in.dataset.name);
        ins->BindText(4, in.dataset.digest);
        ins->BindText(5, in.dataset.source_type);
        ins->BindText(6, in.dataset.source);
        ins->BindText(7, in.dataset.schema);
        ins->BindText(8, in.dataset.profile);
        RETURN_IF_ERROR(ins->Run());
      }
      Json tags = Json::array();
      std::string context;
      for (const Tag& t : in.tags) {
        tags.push_back({t.key, t.value});
        if (t.key == "mlflow.data.context") context = t.value;
      }
      ASSIGN_OR_RETURN(db::Statement * link,
                       conn.Cached("INSERT INTO run_inputs (run_uuid, dataset_uuid, context, tags) VALUES (?, ?, ?, ?) "
                                   "ON CONFLICT (run_uuid, dataset_uuid) DO UPDATE SET context = excluded.context, "
                                   "tags = excluded.tags"));
      link->BindText(1, run_id);
      link->BindText(2, uuid);
      link->BindText(3, context);
      link->BindText(4, tags.dump());
      RETURN_IF_ERROR(link->Run());
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<SearchRunsResult> TrackingStore::SearchRuns(const SearchRunsRequest& request) {
  RETURN_IF_ERROR(CheckMaxResults(request.max_results));
  int limit = ClampMaxResults(request.max_results);
  for (const std::string& id : request.experiment_ids) RETURN_IF_ERROR(internal::ValidateExperimentId(id));
  ASSIGN_OR_RETURN(int64_t offset, DecodePageToken(request.page_token));
  RETURN_IF_ERROR(CheckFilterLength(request.filter));
  ASSIGN_OR_RETURN(RunFilter filter, ParseRunFilter(request.filter));
  ASSIGN_OR_RETURN(SqlFragment where, RunFilterToSql(filter, dialect()));
  ASSIGN_OR_RETURN(SqlFragment order, RunOrderByToSql(request.order_by, dialect()));
  SearchRunsResult result;
  if (request.experiment_ids.empty()) return result;

  auto stages = StagesFor(request.view_type);
  std::string sql = fmt::format(
      "SELECT runs.run_uuid FROM runs WHERE {}runs.experiment_id IN ({}) AND runs.lifecycle_stage IN ({})",
      where.has_driver ? "+" : "", Placeholders(request.experiment_ids.size()), Placeholders(stages.size()));
  if (!where.sql.empty()) sql += " AND (" + where.sql + ")";
  sql += " ORDER BY " + order.sql + " LIMIT ? OFFSET ?";

  std::vector<SqlValue> leading;
  for (const std::string& id : request.experiment_ids) leading.emplace_back(static_cast<int64_t>(std::stoll(id)));
  for (SqlValue& v : StageValues(stages)) leading.push_back(std::move(v));
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  db::Connection& conn = *lease;
  ASSIGN_OR_RETURN(std::vector<std::string> ids, SelectIds(conn, sql, leading, where, order, limit, offset));
  if (static_cast<int>(ids.size()) > limit) {
    ids.resize(limit);
    result.next_page_token = EncodePageToken(offset + limit);
  }
  ASSIGN_OR_RETURN(result.runs, LoadRuns(conn, ids));
  return result;
}

absl::StatusOr<MetricHistoryPage> TrackingStore::GetMetricHistory(const std::string& run_id, const std::string& key,
                                                                  int max_results, const std::string& page_token) {
  RETURN_IF_ERROR(internal::ValidateRunId(run_id));
  ASSIGN_OR_RETURN(int64_t offset, DecodePageToken(page_token));
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  db::Connection& conn = *lease;
  RETURN_IF_ERROR(LoadRunRow(conn, run_id).status());
  // Sizing the result first saves a million-point history from growing its
  // vector (and faulting in fresh pages) twenty times over.
  ASSIGN_OR_RETURN(db::Statement * total,
                   conn.Cached("SELECT COALESCE(SUM(count), 0) FROM metric_chunks WHERE run_uuid = ? AND key = ?"));
  total->BindText(1, run_id);
  total->BindText(2, key);
  ASSIGN_OR_RETURN(bool has_total, total->Step());
  int64_t points = has_total ? total->ColumnInt(0) : 0;
  total->Reset();
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn.Cached("SELECT count, data FROM metric_chunks WHERE run_uuid = ? AND key = ? ORDER BY seq"));
  st->BindText(1, run_id);
  st->BindText(2, key);
  MetricHistoryPage page;
  page.key = key;
  int64_t skip = offset;
  int64_t want = max_results > 0 ? max_results : std::numeric_limits<int64_t>::max();
  page.points.reserve(static_cast<size_t>(std::clamp<int64_t>(std::min(points - offset, want), 0, points)));
  bool more = false;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    int64_t count = st->ColumnInt(0);
    std::string_view data = st->ColumnBlob(1);
    if (data.size() != static_cast<size_t>(count) * kPointSize) {
      st->Reset();
      return absl::DataLossError(fmt::format("metric chunk of run {} key '{}' is damaged: {} bytes for {} points",
                                             run_id, key, data.size(), count));
    }
    if (skip >= count) {
      skip -= count;
      continue;
    }
    for (int64_t p = skip; p < count; ++p) {
      if (static_cast<int64_t>(page.points.size()) >= want) {
        more = true;
        break;
      }
      page.points.push_back(ReadPoint(data.data() + p * kPointSize));
    }
    skip = 0;
    if (more) break;
  }
  st->Reset();
  if (more) page.next_page_token = EncodePageToken(offset + static_cast<int64_t>(page.points.size()));
  return page;
}

// ------------------------------------------------------------------ artifacts

absl::Status TrackingStore::PutArtifact(const std::string& path, const ArtifactFile& file) {
  int64_t now = env_.NowMicros() / 1000;
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    // A file cannot replace a directory, nor sit below a file.
    ASSIGN_OR_RETURN(db::Statement * dir, conn.Cached("SELECT 1 FROM artifacts WHERE path > ? AND path < ? LIMIT 1"));
    dir->BindText(1, path + "/");
    dir->BindText(2, path + "0");  // '0' follows '/' in byte order
    ASSIGN_OR_RETURN(bool is_dir, dir->Step());
    dir->Reset();
    if (is_dir) {
      return absl::InvalidArgumentError(fmt::format("Artifact path '{}' is a directory", path));
    }
    for (size_t pos = path.find('/'); pos != std::string::npos; pos = path.find('/', pos + 1)) {
      ASSIGN_OR_RETURN(db::Statement * file_at, conn.Cached("SELECT 1 FROM artifacts WHERE path = ?"));
      file_at->BindText(1, path.substr(0, pos));
      ASSIGN_OR_RETURN(bool blocked, file_at->Step());
      file_at->Reset();
      if (blocked) {
        return absl::InvalidArgumentError(
            fmt::format("Artifact path '{}' is below '{}', which is a file", path, path.substr(0, pos)));
      }
    }
    ASSIGN_OR_RETURN(db::Statement * st,
                     conn.Cached("INSERT INTO artifacts (path, digest, size, created_time) VALUES (?, ?, ?, ?) ON "
                                 "CONFLICT (path) DO UPDATE SET digest = excluded.digest, size = excluded.size, "
                                 "created_time = excluded.created_time"));
    st->BindText(1, path);
    st->BindText(2, file.digest);
    st->BindInt(3, file.size);
    st->BindInt(4, now);
    return st->Run();
  });
}

absl::StatusOr<ArtifactFile> TrackingStore::GetArtifact(const std::string& path) {
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st, lease->Cached("SELECT digest, size FROM artifacts WHERE path = ?"));
  st->BindText(1, path);
  ASSIGN_OR_RETURN(bool found, st->Step());
  if (!found) {
    st->Reset();
    return absl::NotFoundError(fmt::format("Artifact '{}' does not exist", path));
  }
  ArtifactFile f{std::string(st->ColumnText(0)), st->ColumnInt(1)};
  st->Reset();
  return f;
}

absl::StatusOr<std::vector<ArtifactEntry>> TrackingStore::ListArtifacts(const std::string& dir) {
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  std::string prefix = dir.empty() ? "" : dir + "/";
  ASSIGN_OR_RETURN(db::Statement * st,
                   lease->Cached("SELECT path, size FROM artifacts WHERE path > ? AND path < ? ORDER BY path"));
  st->BindText(1, prefix);
  st->BindText(2, dir.empty() ? std::string("\xff") : dir + "0");
  std::vector<ArtifactEntry> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    std::string_view rest = st->ColumnText(0).substr(prefix.size());
    size_t slash = rest.find('/');
    if (slash == std::string_view::npos) {
      out.push_back({std::string(rest), false, st->ColumnInt(1)});
    } else {
      std::string child(rest.substr(0, slash));
      if (out.empty() || out.back().path != child || !out.back().is_dir) out.push_back({child, true, 0});
    }
  }
  st->Reset();
  return out;
}

absl::Status TrackingStore::DeleteArtifacts(const std::string& path) {
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    ASSIGN_OR_RETURN(db::Statement * st,
                     conn.Cached("DELETE FROM artifacts WHERE path = ? OR (path > ? AND path < ?)"));
    st->BindText(1, path);
    st->BindText(2, path + "/");
    st->BindText(3, path + "0");
    RETURN_IF_ERROR(st->Run());
    if (st->ChangedRows() == 0) return absl::NotFoundError(fmt::format("Artifact '{}' does not exist", path));
    return absl::OkStatus();
  });
}

absl::Status TrackingStore::ForEachArtifactDigest(
    const std::function<absl::Status(const std::string& path, const ArtifactFile&)>& fn) {
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  ASSIGN_OR_RETURN(auto st, lease->Prepare("SELECT path, digest, size FROM artifacts ORDER BY path"));
  for (;;) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) return absl::OkStatus();
    RETURN_IF_ERROR(fn(std::string(st->ColumnText(0)), {std::string(st->ColumnText(1)), st->ColumnInt(2)}));
  }
}

absl::StatusOr<std::vector<TrackingStore::DatasetUse>> TrackingStore::RunsUsingDataset(const std::string& digest) {
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  ASSIGN_OR_RETURN(auto st, lease->Prepare(
      "SELECT i.run_uuid, d.experiment_id, d.name, i.context FROM datasets d "
      "JOIN run_inputs i ON i.dataset_uuid = d.dataset_uuid "
      "JOIN runs r ON r.run_uuid = i.run_uuid WHERE d.digest = ? ORDER BY r.start_time, i.run_uuid"));
  st->BindText(1, digest);
  std::vector<DatasetUse> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) return out;
    DatasetUse use{.run_id = std::string(st->ColumnText(0)),
                   .experiment_id = std::to_string(st->ColumnInt(1)),
                   .dataset_name = std::string(st->ColumnText(2)),
                   .context = st->IsNull(3) ? "" : std::string(st->ColumnText(3))};
    out.push_back(std::move(use));
  }
}

absl::StatusOr<std::vector<std::string>> TrackingStore::CheckConsistency() {
  std::vector<std::string> problems;
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  db::Connection& conn = *lease;
  ASSIGN_OR_RETURN(auto chunks, conn.Prepare("SELECT run_uuid, key, seq, count, length(data) FROM metric_chunks "
                                             "WHERE length(data) != count * 24"));
  for (;;) {
    ASSIGN_OR_RETURN(bool row, chunks->Step());
    if (!row) break;
    problems.push_back(fmt::format("metric chunk run={} key='{}' seq={}: {} bytes for {} points",
                                   chunks->ColumnText(0), chunks->ColumnText(1), chunks->ColumnInt(2),
                                   chunks->ColumnInt(4), chunks->ColumnInt(3)));
  }
  ASSIGN_OR_RETURN(auto orphans, conn.Prepare("SELECT DISTINCT run_uuid FROM metric_chunks WHERE run_uuid NOT IN "
                                              "(SELECT run_uuid FROM runs)"));
  for (;;) {
    ASSIGN_OR_RETURN(bool row, orphans->Step());
    if (!row) break;
    problems.push_back(fmt::format("metrics recorded for unknown run {}", orphans->ColumnText(0)));
  }
  return problems;
}

}  // namespace cairn::tracking
