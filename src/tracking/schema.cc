#include "tracking/schema.h"

namespace cairn::tracking {
namespace {

constexpr const char kV1[] = R"sql(
CREATE TABLE experiments (
  experiment_id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  artifact_location TEXT NOT NULL,
  lifecycle_stage TEXT NOT NULL DEFAULT 'active',
  creation_time INTEGER NOT NULL,
  last_update_time INTEGER NOT NULL
);
CREATE TABLE experiment_tags (
  experiment_id INTEGER NOT NULL REFERENCES experiments(experiment_id),
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (experiment_id, key)
) WITHOUT ROWID;
CREATE TABLE runs (
  run_uuid TEXT PRIMARY KEY,
  experiment_id INTEGER NOT NULL REFERENCES experiments(experiment_id),
  name TEXT NOT NULL,
  user_id TEXT NOT NULL,
  status TEXT NOT NULL,
  start_time INTEGER,
  end_time INTEGER,
  lifecycle_stage TEXT NOT NULL DEFAULT 'active',
  artifact_uri TEXT NOT NULL,
  deleted_time INTEGER
) WITHOUT ROWID;
CREATE INDEX runs_by_experiment ON runs (experiment_id, start_time);
CREATE TABLE params (
  run_uuid TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (run_uuid, key)
) WITHOUT ROWID;
CREATE INDEX params_by_key ON params (key, value);
CREATE TABLE tags (
  run_uuid TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (run_uuid, key)
) WITHOUT ROWID;
CREATE INDEX tags_by_key ON tags (key, value);
CREATE TABLE latest_metrics (
  run_uuid TEXT NOT NULL,
  key TEXT NOT NULL,
  value DOUBLE PRECISION,
  is_nan INTEGER NOT NULL DEFAULT 0,
  timestamp INTEGER NOT NULL,
  step INTEGER NOT NULL,
  PRIMARY KEY (run_uuid, key)
) WITHOUT ROWID;
CREATE INDEX latest_metrics_by_key ON latest_metrics (key, value);
CREATE TABLE metric_chunks (
  run_uuid TEXT NOT NULL,
  key TEXT NOT NULL,
  seq INTEGER NOT NULL,
  count INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (run_uuid, key, seq)
);
CREATE TABLE datasets (
  dataset_uuid TEXT PRIMARY KEY,
  experiment_id INTEGER NOT NULL,
  name TEXT NOT NULL,
  digest TEXT NOT NULL,
  source_type TEXT NOT NULL,
  source TEXT NOT NULL,
  schema TEXT,
  profile TEXT,
  UNIQUE (experiment_id, name, digest)
) WITHOUT ROWID;
CREATE TABLE run_inputs (
  run_uuid TEXT NOT NULL,
  dataset_uuid TEXT NOT NULL,
  context TEXT,
  tags TEXT,
  PRIMARY KEY (run_uuid, dataset_uuid)
) WITHOUT ROWID;
CREATE TABLE artifacts (
  path TEXT PRIMARY KEY,
  digest TEXT NOT NULL,
  size INTEGER NOT NULL,
  created_time INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

constexpr char kV2[] = R"sql(
CREATE INDEX datasets_digest ON datasets(digest);
)sql";

constexpr db::Migration kMigrations[] = {
    {1, "experiments, runs, params, tags, metrics, inputs, artifacts", kV1},
    {2, "index dataset inputs by digest (which runs used a dataset commit)", kV2},
};

}  // namespace

std::span<const db::Migration> TrackingMigrations() { return kMigrations; }

}  // namespace cairn::tracking
