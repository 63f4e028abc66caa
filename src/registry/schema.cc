#include "registry/schema.h"

namespace cairn::registry {
namespace {

// No foreign keys: a rename rewrites the model name in every table in one
// transaction, and the audit tables (alias_history, gate_decisions,
// approvals) must outlive the models they name. Ids of the append-only
// tables are assigned as max + 1 inside the writing transaction (writes are
// serialised), which works the same on SQLite and PostgreSQL.
constexpr const char kV1[] = R"sql(
CREATE TABLE registered_models (
  name TEXT PRIMARY KEY,
  creation_time BIGINT NOT NULL,
  last_updated_time BIGINT NOT NULL,
  user_id TEXT NOT NULL,
  description TEXT NOT NULL,
  max_version BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE registered_model_tags (
  name TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (name, key)
);
CREATE TABLE model_versions (
  name TEXT NOT NULL,
  version BIGINT NOT NULL,
  creation_time BIGINT NOT NULL,
  last_updated_time BIGINT NOT NULL,
  user_id TEXT NOT NULL,
  current_stage TEXT NOT NULL,
  description TEXT NOT NULL,
  source TEXT NOT NULL,
  run_id TEXT NOT NULL,
  run_link TEXT NOT NULL,
  status TEXT NOT NULL,
  status_message TEXT NOT NULL,
  artifact_digest TEXT NOT NULL,
  PRIMARY KEY (name, version)
);
CREATE INDEX model_versions_by_run ON model_versions (run_id);
CREATE TABLE model_version_tags (
  name TEXT NOT NULL,
  version BIGINT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (name, version, key)
);
CREATE TABLE model_aliases (
  name TEXT NOT NULL,
  alias TEXT NOT NULL,
  version BIGINT NOT NULL,
  PRIMARY KEY (name, alias)
);
CREATE TABLE alias_history (
  id BIGINT PRIMARY KEY,
  name TEXT NOT NULL,
  alias TEXT NOT NULL,
  from_version BIGINT,
  to_version BIGINT,
  user_id TEXT NOT NULL,
  time_ms BIGINT NOT NULL,
  reason TEXT NOT NULL,
  decision_id BIGINT
);
CREATE INDEX alias_history_by_alias ON alias_history (name, alias, id);
CREATE TABLE promotion_policies (
  name TEXT PRIMARY KEY,
  policy TEXT NOT NULL,
  user_id TEXT NOT NULL,
  updated_time BIGINT NOT NULL
);
CREATE TABLE approvals (
  name TEXT NOT NULL,
  version BIGINT NOT NULL,
  alias TEXT NOT NULL,
  user_id TEXT NOT NULL,
  comment TEXT NOT NULL,
  time_ms BIGINT NOT NULL,
  PRIMARY KEY (name, version, alias, user_id)
);
CREATE TABLE role_members (
  role TEXT NOT NULL,
  user_id TEXT NOT NULL,
  PRIMARY KEY (role, user_id)
);
CREATE INDEX role_members_by_user ON role_members (user_id, role);
CREATE TABLE gate_decisions (
  id BIGINT PRIMARY KEY,
  name TEXT NOT NULL,
  alias TEXT NOT NULL,
  version BIGINT NOT NULL,
  allowed INTEGER NOT NULL,
  conditions TEXT NOT NULL,
  user_id TEXT NOT NULL,
  time_ms BIGINT NOT NULL,
  reason TEXT NOT NULL
);
CREATE INDEX gate_decisions_by_model ON gate_decisions (name, id);
CREATE TABLE deployments (
  name TEXT PRIMARY KEY,
  model TEXT NOT NULL,
  alias TEXT NOT NULL,
  canary_version BIGINT,
  canary_percent INTEGER NOT NULL,
  shadow_version BIGINT,
  config TEXT NOT NULL,
  created_time BIGINT NOT NULL,
  updated_time BIGINT NOT NULL,
  generation BIGINT NOT NULL
);
CREATE INDEX deployments_by_model ON deployments (model);
CREATE TABLE registry_changes (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  counter BIGINT NOT NULL
);
INSERT INTO registry_changes (id, counter) VALUES (1, 0);
)sql";

constexpr db::Migration kMigrations[] = {
    {1, "registered models, versions, tags, aliases and their history, policies, approvals, roles, gate "
        "decisions, deployments",
     kV1},
};

}  // namespace

std::span<const db::Migration> RegistryMigrations() { return kMigrations; }

}  // namespace cairn::registry
