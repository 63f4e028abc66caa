#include "data/schema.h"

namespace cairn::data {
namespace {

constexpr char kV1[] = R"sql(
CREATE TABLE data_datasets (
  id           TEXT PRIMARY KEY,         -- 32 hex characters, random
  project      TEXT NOT NULL,
  name         TEXT NOT NULL,
  description  TEXT NOT NULL DEFAULT '',
  encrypted    INTEGER NOT NULL,         -- 0 or 1
  wrapped_key  BLOB,                     -- the data key sealed by a master key (store/encryption.h)
  created_at   INTEGER NOT NULL,         -- ms since the epoch
  UNIQUE (project, name)
);

-- One row per commit. `seq` orders commits by insertion, which garbage
-- collection uses to find the commits created while it was marking.
CREATE TABLE data_commits (
  seq             INTEGER PRIMARY KEY AUTOINCREMENT,
  id              TEXT NOT NULL UNIQUE,  -- 64 hex: SHA-256 of the canonical commit text
  dataset_id      TEXT NOT NULL REFERENCES data_datasets(id),
  manifest        BLOB NOT NULL,         -- 32 bytes: SHA-256 of the canonical manifest text
  parents         TEXT NOT NULL,         -- parent commit ids, space separated (first = first parent)
  message         TEXT NOT NULL,
  author          TEXT NOT NULL,
  created_at      INTEGER NOT NULL,      -- ms since the epoch
  file_count      INTEGER NOT NULL,
  total_bytes     INTEGER NOT NULL,
  splits          TEXT NOT NULL          -- JSON: [{"name","globs":[..],"sealed","files","bytes"}]
);
CREATE INDEX data_commits_dataset ON data_commits(dataset_id, seq);

-- Branches move (compare-and-swap); tags never move.
CREATE TABLE data_refs (
  dataset_id  TEXT NOT NULL,
  kind        TEXT NOT NULL,             -- 'branch' or 'tag'
  name        TEXT NOT NULL,
  commit_id   TEXT NOT NULL,
  updated_at  INTEGER NOT NULL,
  PRIMARY KEY (dataset_id, kind, name)
) WITHOUT ROWID;

CREATE TABLE data_profiles (
  commit_id  TEXT NOT NULL,
  path       TEXT NOT NULL,
  profile    TEXT NOT NULL,              -- JSON: docs/data-profiles.md
  PRIMARY KEY (commit_id, path)
) WITHOUT ROWID;

-- Where each chunk's bytes are. A chunk is named by the SHA-256 of its plain
-- bytes; in an encrypted dataset's scope by an HMAC of that digest instead
-- (store::DataKey::Mac), so the index does not reveal plaintext digests.
CREATE TABLE data_chunks (
  scope        TEXT NOT NULL,            -- '' (shared, plaintext) or an encrypted dataset's id
  chunk_key    BLOB NOT NULL,            -- 32 bytes
  object       BLOB NOT NULL,            -- 32 bytes: the object holding the chunk
  offset       INTEGER NOT NULL,         -- where its stored bytes start in the object
  stored_size  INTEGER NOT NULL,         -- stored (encoded) length
  size         INTEGER NOT NULL,         -- plain length
  codec        INTEGER NOT NULL,         -- bit 0: zstd; bit 1: AES-256-GCM sealed
  touched_at   INTEGER NOT NULL,         -- ms; last store or dedup hit (gc grace period)
  PRIMARY KEY (scope, chunk_key)
) WITHOUT ROWID;
CREATE INDEX data_chunks_object ON data_chunks(object);
)sql";

constexpr db::Migration kMigrations[] = {
    {1, "datasets, commits, refs, profiles, chunk index", kV1},
};

}  // namespace

std::span<const db::Migration> DataMigrations() { return kMigrations; }

}  // namespace cairn::data
