#include "pipeline/pipeline_store.h"

#include <fmt/format.h>

#include "base/ids.h"

namespace cairn::pipeline {
namespace {

constexpr char kV1[] = R"sql(
CREATE TABLE pipe_pipelines (
  name            TEXT PRIMARY KEY,
  spec            TEXT NOT NULL,          -- the cairn.yaml text as registered
  file_name       TEXT NOT NULL,
  project_dir     TEXT NOT NULL,          -- absolute; code snapshots are taken from here
  webhook_secret  TEXT NOT NULL,          -- 64 hex: HMAC-SHA256 key of the trigger webhook
  created_at      INTEGER NOT NULL,       -- ms since the epoch
  updated_at      INTEGER NOT NULL
);

CREATE TABLE pipe_runs (
  seq          INTEGER PRIMARY KEY AUTOINCREMENT,
  id           TEXT NOT NULL UNIQUE,      -- 32 hex
  pipeline     TEXT NOT NULL,
  status       TEXT NOT NULL,             -- PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED
  cause        TEXT NOT NULL,             -- JSON {"kind": manual|dataset_commit|cron|webhook|..., ...}
  overrides    TEXT NOT NULL,             -- JSON array of "k=v"
  target_step  TEXT NOT NULL,             -- '' = every step
  executor     TEXT NOT NULL,
  no_cache     INTEGER NOT NULL,
  owner        TEXT NOT NULL,             -- scheduler instance (its lock file: work/owners/OWNER.lock)
  owner_server INTEGER NOT NULL,          -- 1: owned by `cairn server` (resumed after a crash)
  reason       TEXT NOT NULL,
  code_digest  TEXT NOT NULL,
  env_digest   TEXT NOT NULL,
  created_at   INTEGER NOT NULL,
  started_at   INTEGER NOT NULL,
  ended_at     INTEGER NOT NULL
);
CREATE INDEX pipe_runs_pipeline ON pipe_runs(pipeline, seq);
CREATE INDEX pipe_runs_status ON pipe_runs(status);

CREATE TABLE pipe_steps (
  run_id       TEXT NOT NULL,             -- pipe_runs.id
  position     INTEGER NOT NULL,          -- execution order
  step         TEXT NOT NULL,
  status       TEXT NOT NULL,             -- PENDING RUNNING SUCCEEDED CACHED FAILED SKIPPED CANCELLED REFUSED
  mlflow_run   TEXT NOT NULL,             -- runs.run_uuid ('' before it starts)
  cache_key    TEXT NOT NULL,
  executor     TEXT NOT NULL,
  job_id       TEXT NOT NULL,
  job_dir      TEXT NOT NULL,
  attempt      INTEGER NOT NULL,
  reason       TEXT NOT NULL,
  started_at   INTEGER NOT NULL,
  ended_at     INTEGER NOT NULL,
  outputs      TEXT NOT NULL,             -- JSON {output: dataset commit id}
  inputs       TEXT NOT NULL,             -- JSON {input: {"dataset","commit","split"}}
  PRIMARY KEY (run_id, step)
) WITHOUT ROWID;

-- Every MLflow run a step attempt made, so logs of any attempt can be found.
CREATE TABLE pipe_attempts (
  mlflow_run   TEXT PRIMARY KEY,
  run_id       TEXT NOT NULL,
  step         TEXT NOT NULL,
  attempt      INTEGER NOT NULL,
  executor     TEXT NOT NULL,
  job_id       TEXT NOT NULL,
  job_dir      TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE pipe_cache (
  cache_key    TEXT PRIMARY KEY,          -- SHA-256 hex (docs/pipelines.md "Run cache")
  mlflow_run   TEXT NOT NULL,
  outputs      TEXT NOT NULL,
  created_at   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE pipe_trigger_state (
  pipeline     TEXT NOT NULL,
  key          TEXT NOT NULL,             -- "head:DATASET@BRANCH" or "cron"
  value        TEXT NOT NULL,
  PRIMARY KEY (pipeline, key)
) WITHOUT ROWID;
)sql";

constexpr db::Migration kMigrations[] = {
    {1, "pipelines, pipeline runs, steps, run cache, trigger state", kV1},
};

Json ParseOr(std::string_view text, Json fallback) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? fallback : j;
}

constexpr char kRunColumns[] =
    "id, pipeline, status, cause, overrides, target_step, executor, no_cache, owner, owner_server, reason, "
    "code_digest, env_digest, created_at, started_at, ended_at";

PipelineRunRecord ReadRun(db::Statement& st) {
  PipelineRunRecord r;
  r.id = std::string(st.ColumnText(0));
  r.pipeline = std::string(st.ColumnText(1));
  r.status = std::string(st.ColumnText(2));
  r.cause = ParseOr(st.ColumnText(3), Json::object());
  for (const Json& o : ParseOr(st.ColumnText(4), Json::array())) {
    if (o.is_string()) r.overrides.push_back(o.get<std::string>());
  }
  r.target_step = std::string(st.ColumnText(5));
  r.executor = std::string(st.ColumnText(6));
  r.no_cache = st.ColumnInt(7) != 0;
  r.owner = std::string(st.ColumnText(8));
  r.owner_is_server = st.ColumnInt(9) != 0;
  r.reason = std::string(st.ColumnText(10));
  r.code_digest = std::string(st.ColumnText(11));
  r.env_digest = std::string(st.ColumnText(12));
  r.created_at_ms = st.ColumnInt(13);
  r.started_at_ms = st.ColumnInt(14);
  r.ended_at_ms = st.ColumnInt(15);
  return r;
}

void BindStep(db::Statement& st, const std::string& run_id, const StepRecord& s, int position) {
  st.BindText(1, run_id);
  st.BindInt(2, position);
  st.BindText(3, s.step);
  st.BindText(4, s.status);
  st.BindText(5, s.run_id);
  st.BindText(6, s.cache_key);
  st.BindText(7, s.executor);
  st.BindText(8, s.job_id);
  st.BindText(9, s.job_dir);
  st.BindInt(10, s.attempt);
  st.BindText(11, s.reason);
  st.BindInt(12, s.started_at_ms);
  st.BindInt(13, s.ended_at_ms);
  st.BindText(14, s.outputs.dump());
  st.BindText(15, s.inputs.dump());
}

}  // namespace

bool IsFinalState(std::string_view s) { return s != kPending && s != kRunning; }

absl::StatusOr<std::unique_ptr<PipelineStore>> PipelineStore::Create(db::Database& db, Env& env) {
  RETURN_IF_ERROR(db.Migrate("pipeline", kMigrations));
  ASSIGN_OR_RETURN(auto pool, db::ConnectionPool::Create(db, 4));
  return std::unique_ptr<PipelineStore>(new PipelineStore(env, std::move(pool)));
}

absl::StatusOr<PipelineRecord> PipelineStore::UpsertPipeline(const std::string& name, const std::string& spec_text,
                                                             const std::string& file_name,
                                                             const std::string& project_dir) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  db::Transaction txn(*conn);
  RETURN_IF_ERROR(txn.Begin());
  const int64_t now = NowMs();
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn->Cached("INSERT INTO pipe_pipelines (name, spec, file_name, project_dir, webhook_secret, "
                                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE "
                                "SET spec = excluded.spec, file_name = excluded.file_name, project_dir = "
                                "excluded.project_dir, updated_at = excluded.updated_at"));
  st->BindText(1, name);
  st->BindText(2, spec_text);
  st->BindText(3, file_name);
  st->BindText(4, project_dir);
  st->BindText(5, NewRandomHex(32));
  st->BindInt(6, now);
  st->BindInt(7, now);
  RETURN_IF_ERROR(st->Run());
  RETURN_IF_ERROR(txn.Commit());
  return GetPipeline(name);
}

absl::StatusOr<PipelineRecord> PipelineStore::GetPipeline(const std::string& name) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn->Cached("SELECT name, spec, file_name, project_dir, webhook_secret, created_at, updated_at "
                                "FROM pipe_pipelines WHERE name = ?"));
  st->BindText(1, name);
  ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) {
    st->Reset();
    return absl::NotFoundError(fmt::format("no pipeline named '{}' (run it once with `cairn run` to register it)", name));
  }
  PipelineRecord p{std::string(st->ColumnText(0)), std::string(st->ColumnText(1)), std::string(st->ColumnText(2)),
                   std::string(st->ColumnText(3)), std::string(st->ColumnText(4)), st->ColumnInt(5),
                   st->ColumnInt(6)};
  st->Reset();
  return p;
}

absl::StatusOr<std::vector<PipelineRecord>> PipelineStore::ListPipelines() {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn->Cached("SELECT name, spec, file_name, project_dir, webhook_secret, created_at, updated_at "
                                "FROM pipe_pipelines ORDER BY name"));
  std::vector<PipelineRecord> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back({std::string(st->ColumnText(0)), std::string(st->ColumnText(1)), std::string(st->ColumnText(2)),
                   std::string(st->ColumnText(3)), std::string(st->ColumnText(4)), st->ColumnInt(5),
                   st->ColumnInt(6)});
  }
  st->Reset();
  return out;
}

absl::Status PipelineStore::CreateRun(const PipelineRunRecord& r) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  db::Transaction txn(*conn);
  RETURN_IF_ERROR(txn.Begin());
  ASSIGN_OR_RETURN(db::Statement * st, conn->Cached(fmt::format("INSERT INTO pipe_runs ({}) VALUES (?, ?, ?, ?, ?, ?, "
                                                                "?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                                                kRunColumns)));
  st->BindText(1, r.id);
  st->BindText(2, r.pipeline);
  st->BindText(3, r.status);
  st->BindText(4, r.cause.dump());
  st->BindText(5, Json(r.overrides).dump());
  st->BindText(6, r.target_step);
  st->BindText(7, r.executor);
  st->BindInt(8, r.no_cache ? 1 : 0);
  st->BindText(9, r.owner);
  st->BindInt(10, r.owner_is_server ? 1 : 0);
  st->BindText(11, r.reason);
  st->BindText(12, r.code_digest);
  st->BindText(13, r.env_digest);
  st->BindInt(14, r.created_at_ms);
  st->BindInt(15, r.started_at_ms);
  st->BindInt(16, r.ended_at_ms);
  RETURN_IF_ERROR(st->Run());
  ASSIGN_OR_RETURN(db::Statement * ins,
                   conn->Cached("INSERT INTO pipe_steps (run_id, position, step, status, mlflow_run, cache_key, "
                                "executor, job_id, job_dir, attempt, reason, started_at, ended_at, outputs, inputs) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  for (size_t i = 0; i < r.steps.size(); ++i) {
    BindStep(*ins, r.id, r.steps[i], static_cast<int>(i));
    RETURN_IF_ERROR(ins->Run());
  }
  return txn.Commit();
}

absl::Status PipelineStore::UpdateRun(const PipelineRunRecord& r) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn->Cached("UPDATE pipe_runs SET status = ?, reason = ?, owner = ?, owner_server = ?, "
                                "code_digest = ?, env_digest = ?, started_at = ?, ended_at = ? WHERE id = ?"));
  st->BindText(1, r.status);
  st->BindText(2, r.reason);
  st->BindText(3, r.owner);
  st->BindInt(4, r.owner_is_server ? 1 : 0);
  st->BindText(5, r.code_digest);
  st->BindText(6, r.env_digest);
  st->BindInt(7, r.started_at_ms);
  st->BindInt(8, r.ended_at_ms);
  st->BindText(9, r.id);
  RETURN_IF_ERROR(st->Run());
  if (st->ChangedRows() == 0) return absl::NotFoundError(fmt::format("no pipeline run {}", r.id));
  return absl::OkStatus();
}

absl::Status PipelineStore::UpdateStep(const std::string& pipeline_run_id, const StepRecord& s) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  db::Transaction txn(*conn);
  RETURN_IF_ERROR(txn.Begin());
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn->Cached("UPDATE pipe_steps SET status = ?, mlflow_run = ?, cache_key = ?, executor = ?, "
                                "job_id = ?, job_dir = ?, attempt = ?, reason = ?, started_at = ?, ended_at = ?, "
                                "outputs = ?, inputs = ? WHERE run_id = ? AND step = ?"));
  st->BindText(1, s.status);
  st->BindText(2, s.run_id);
  st->BindText(3, s.cache_key);
  st->BindText(4, s.executor);
  st->BindText(5, s.job_id);
  st->BindText(6, s.job_dir);
  st->BindInt(7, s.attempt);
  st->BindText(8, s.reason);
  st->BindInt(9, s.started_at_ms);
  st->BindInt(10, s.ended_at_ms);
  st->BindText(11, s.outputs.dump());
  st->BindText(12, s.inputs.dump());
  st->BindText(13, pipeline_run_id);
  st->BindText(14, s.step);
  RETURN_IF_ERROR(st->Run());
  if (st->ChangedRows() == 0) {
    return absl::NotFoundError(fmt::format("pipeline run {} has no step '{}'", pipeline_run_id, s.step));
  }
  if (!s.run_id.empty() && s.status != kCached && s.attempt > 0) {
    ASSIGN_OR_RETURN(db::Statement * a,
                     conn->Cached("INSERT INTO pipe_attempts (mlflow_run, run_id, step, attempt, executor, job_id, "
                                  "job_dir) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (mlflow_run) DO UPDATE SET "
                                  "executor = excluded.executor, job_id = excluded.job_id, job_dir = excluded.job_dir"));
    a->BindText(1, s.run_id);
    a->BindText(2, pipeline_run_id);
    a->BindText(3, s.step);
    a->BindInt(4, s.attempt);
    a->BindText(5, s.executor);
    a->BindText(6, s.job_id);
    a->BindText(7, s.job_dir);
    RETURN_IF_ERROR(a->Run());
  }
  return txn.Commit();
}

absl::StatusOr<std::vector<StepRecord>> PipelineStore::LoadSteps(db::Connection& conn, const std::string& run_id) {
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn.Cached("SELECT step, status, mlflow_run, cache_key, executor, job_id, job_dir, attempt, reason, "
                               "started_at, ended_at, outputs, inputs FROM pipe_steps WHERE run_id = ? "
                               "ORDER BY position"));
  st->BindText(1, run_id);
  std::vector<StepRecord> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    StepRecord s;
    s.step = std::string(st->ColumnText(0));
    s.status = std::string(st->ColumnText(1));
    s.run_id = std::string(st->ColumnText(2));
    s.cache_key = std::string(st->ColumnText(3));
    s.executor = std::string(st->ColumnText(4));
    s.job_id = std::string(st->ColumnText(5));
    s.job_dir = std::string(st->ColumnText(6));
    s.attempt = static_cast<int>(st->ColumnInt(7));
    s.reason = std::string(st->ColumnText(8));
    s.started_at_ms = st->ColumnInt(9);
    s.ended_at_ms = st->ColumnInt(10);
    s.outputs = ParseOr(st->ColumnText(11), Json::object());
    s.inputs = ParseOr(st->ColumnText(12), Json::object());
    out.push_back(std::move(s));
  }
  st->Reset();
  return out;
}

absl::StatusOr<std::vector<PipelineRunRecord>> PipelineStore::QueryRuns(const std::string& where,
                                                                        const std::string& arg, int limit,
                                                                        bool newest_first) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn->Cached(fmt::format("SELECT {} FROM pipe_runs {} ORDER BY seq {} LIMIT ?", kRunColumns, where,
                                            newest_first ? "DESC" : "ASC")));
  int i = 1;
  if (where.find('?') != std::string::npos) st->BindText(i++, arg);
  st->BindInt(i, limit);
  std::vector<PipelineRunRecord> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back(ReadRun(*st));
  }
  st->Reset();
  for (PipelineRunRecord& r : out) {
    ASSIGN_OR_RETURN(r.steps, LoadSteps(*conn, r.id));
  }
  return out;
}

absl::StatusOr<PipelineRunRecord> PipelineStore::GetRun(const std::string& id) {
  ASSIGN_OR_RETURN(auto runs, QueryRuns("WHERE id = ?", id, 1, false));
  if (runs.empty()) return absl::NotFoundError(fmt::format("no pipeline run {}", id));
  return std::move(runs[0]);
}

absl::StatusOr<std::vector<PipelineRunRecord>> PipelineStore::ListRuns(const std::string& pipeline, int limit) {
  if (pipeline.empty()) return QueryRuns("", "", limit, true);
  return QueryRuns("WHERE pipeline = ?", pipeline, limit, true);
}

absl::StatusOr<std::vector<PipelineRunRecord>> PipelineStore::ActiveRuns() {
  return QueryRuns("WHERE status IN ('PENDING', 'RUNNING')", "", 1 << 20, false);
}

absl::StatusOr<std::pair<std::string, StepRecord>> PipelineStore::FindStepByRunId(const std::string& run_id) {
  std::string pipeline_run, step;
  StepRecord attempt;
  {
    ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
    ASSIGN_OR_RETURN(db::Statement * st,
                     conn->Cached("SELECT run_id, step, attempt, executor, job_id, job_dir FROM pipe_attempts "
                                  "WHERE mlflow_run = ?"));
    st->BindText(1, run_id);
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) {
      st->Reset();
      return absl::NotFoundError(fmt::format("run {} was not made by a pipeline step", run_id));
    }
    pipeline_run = std::string(st->ColumnText(0));
    step = std::string(st->ColumnText(1));
    attempt.attempt = static_cast<int>(st->ColumnInt(2));
    attempt.executor = std::string(st->ColumnText(3));
    attempt.job_id = std::string(st->ColumnText(4));
    attempt.job_dir = std::string(st->ColumnText(5));
    st->Reset();
  }
  ASSIGN_OR_RETURN(PipelineRunRecord run, GetRun(pipeline_run));
  for (StepRecord& s : run.steps) {
    if (s.step != step) continue;
    if (s.run_id != run_id) {  // an earlier attempt: its own job, ended
      s.run_id = run_id;
      s.attempt = attempt.attempt;
      s.executor = attempt.executor;
      s.job_id = attempt.job_id;
      s.job_dir = attempt.job_dir;
      s.status = kFailed;
    }
    return std::make_pair(pipeline_run, std::move(s));
  }
  return absl::NotFoundError(fmt::format("pipeline run {} has no step '{}'", pipeline_run, step));
}

absl::StatusOr<std::optional<CacheEntry>> PipelineStore::LookupCache(const std::string& key) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st, conn->Cached("SELECT mlflow_run, outputs FROM pipe_cache WHERE cache_key = ?"));
  st->BindText(1, key);
  ASSIGN_OR_RETURN(bool row, st->Step());
  std::optional<CacheEntry> out;
  if (row) out = CacheEntry{std::string(st->ColumnText(0)), ParseOr(st->ColumnText(1), Json::object())};
  st->Reset();
  return out;
}

absl::Status PipelineStore::PutCache(const std::string& key, const CacheEntry& entry) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn->Cached("INSERT INTO pipe_cache (cache_key, mlflow_run, outputs, created_at) VALUES (?, ?, ?, "
                                "?) ON CONFLICT (cache_key) DO UPDATE SET mlflow_run = excluded.mlflow_run, outputs = "
                                "excluded.outputs, created_at = excluded.created_at"));
  st->BindText(1, key);
  st->BindText(2, entry.run_id);
  st->BindText(3, entry.outputs.dump());
  st->BindInt(4, NowMs());
  return st->Run();
}

absl::StatusOr<std::optional<std::string>> PipelineStore::GetTriggerState(const std::string& pipeline,
                                                                          const std::string& key) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn->Cached("SELECT value FROM pipe_trigger_state WHERE pipeline = ? AND key = ?"));
  st->BindText(1, pipeline);
  st->BindText(2, key);
  ASSIGN_OR_RETURN(bool row, st->Step());
  std::optional<std::string> out;
  if (row) out = std::string(st->ColumnText(0));
  st->Reset();
  return out;
}

absl::Status PipelineStore::SetTriggerState(const std::string& pipeline, const std::string& key,
                                            const std::string& value) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn->Cached("INSERT INTO pipe_trigger_state (pipeline, key, value) VALUES (?, ?, ?) "
                                "ON CONFLICT (pipeline, key) DO UPDATE SET value = excluded.value"));
  st->BindText(1, pipeline);
  st->BindText(2, key);
  st->BindText(3, value);
  return st->Run();
}

}  // namespace cairn::pipeline
