#include "data/gc.h"

#include <optional>

#include <fmt/format.h>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "data/internal/digest_blob.h"

namespace cairn::data {
namespace {

using internal::DigestBlob;

using LiveKeys = absl::flat_hash_map<std::string, absl::flat_hash_set<Digest>>;  // scope -> keys

// Adds the keys of a commit's manifest and chunks.
absl::Status MarkCommit(DatasetStore& datasets, const Dataset& ds, const DatasetCommit& c, LiveKeys& live,
                        absl::flat_hash_set<Digest>& manifests_seen) {
  ASSIGN_OR_RETURN(ChunkScope scope, datasets.ScopeOf(ds));
  auto& keys = live[scope.id];
  keys.insert(ChunkStore::KeyOf(scope, c.manifest));
  if (!manifests_seen.insert(ChunkStore::KeyOf(scope, c.manifest)).second) return absl::OkStatus();
  absl::StatusOr<DatasetManifest> m = datasets.GetManifest(ds, c.manifest);
  if (!m.ok()) {
    // A commit whose manifest cannot be read must stop the collection:
    // sweeping without its chunks marked would delete live data.
    return absl::Status(m.status().code(), fmt::format("gc: cannot read the manifest of commit {} ({}): {}", c.id,
                                                       ds.name, m.status().message()));
  }
  for (const ManifestFile& f : m->files) {
    for (const ChunkRef& ch : f.chunks) keys.insert(ChunkStore::KeyOf(scope, ch.digest));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GcReport> CollectGarbage(DatasetStore& datasets, store::ObjectStore& objects, Env& env,
                                        const GcOptions& options) {
  if (options.grace_ms < 0 || (options.grace_ms < kMinGraceMs && !options.allow_short_grace_for_test)) {
    return absl::InvalidArgumentError(
        fmt::format("gc grace period must be at least {} minutes (writers refresh what they use once a minute)",
                    kMinGraceMs / 60000));
  }
  GcReport report;
  const int64_t start_ms = env.NowMicros() / 1000;
  const int64_t cutoff_ms = start_ms - options.grace_ms;

  // Mark.
  LiveKeys live;
  absl::flat_hash_set<Digest> manifests_seen;
  int64_t max_seq = 0;
  RETURN_IF_ERROR(datasets.ForEachCommit(0, [&](const Dataset& ds, const DatasetCommit& c, int64_t seq) {
    ++report.commits;
    max_seq = std::max(max_seq, seq);
    return MarkCommit(datasets, ds, c, live, manifests_seen);
  }));

  db::Database& db = datasets.chunks().database();
  ASSIGN_OR_RETURN(std::unique_ptr<db::Connection> conn, db.Connect());

  struct Candidate {
    std::string scope;
    Digest key;
  };
  std::vector<Candidate> candidates;
  {
    ASSIGN_OR_RETURN(std::unique_ptr<db::Statement> st,
                     conn->Prepare("SELECT scope, chunk_key, touched_at FROM data_chunks"));
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st->Step());
      if (!row) break;
      std::optional<Digest> parsed = internal::DigestFromBlob(st->ColumnBlob(1));
      if (!parsed) return absl::DataLossError("gc: a chunk index key is damaged");
      const Digest key = *parsed;
      std::string scope(st->ColumnText(0));
      auto it = live.find(scope);
      const bool marked = it != live.end() && it->second.contains(key);
      if (!marked && st->ColumnInt(2) < cutoff_ms) candidates.push_back({std::move(scope), key});
    }
  }

  // Sweep the index, serialized with commits: commits made since marking
  // began protect their chunks; touched rows are spared by the WHERE clause.
  {
    db::Transaction txn(*conn);
    RETURN_IF_ERROR(txn.Begin());
    LiveKeys late;
    RETURN_IF_ERROR(datasets.ForEachCommit(max_seq, [&](const Dataset& ds, const DatasetCommit& c, int64_t) {
      ++report.commits;
      return MarkCommit(datasets, ds, c, late, manifests_seen);
    }));
    ASSIGN_OR_RETURN(std::unique_ptr<db::Statement> del,
                     conn->Prepare(options.dry_run
                                       ? "SELECT 1 FROM data_chunks WHERE scope = ? AND chunk_key = ? AND touched_at < ?"
                                       : "DELETE FROM data_chunks WHERE scope = ? AND chunk_key = ? AND touched_at < ?"));
    for (const Candidate& c : candidates) {
      if (auto it = late.find(c.scope); it != late.end() && it->second.contains(c.key)) continue;
      del->BindText(1, c.scope);
      del->BindBlob(2, DigestBlob(c.key));
      del->BindInt(3, cutoff_ms);
      if (options.dry_run) {
        ASSIGN_OR_RETURN(bool row, del->Step());
        if (row) ++report.freed_chunks;
        del->Reset();
      } else {
        RETURN_IF_ERROR(del->Run());
        report.freed_chunks += static_cast<uint64_t>(del->ChangedRows());
      }
    }
    RETURN_IF_ERROR(txn.Commit());
  }

  // Objects still named by the index, or by the extra roots.
  absl::flat_hash_map<Digest, uint64_t> live_objects;  // object -> live stored bytes in it
  absl::flat_hash_set<Digest> candidate_set;
  if (options.dry_run) {
    for (const Candidate& c : candidates) candidate_set.insert(c.key);
  }
  {
    ASSIGN_OR_RETURN(std::unique_ptr<db::Statement> st,
                     conn->Prepare("SELECT object, stored_size, chunk_key FROM data_chunks"));
    for (;;) {
      ASSIGN_OR_RETURN(bool row, st->Step());
      if (!row) break;
      std::optional<Digest> object = internal::DigestFromBlob(st->ColumnBlob(0));
      std::optional<Digest> key = internal::DigestFromBlob(st->ColumnBlob(2));
      if (!object || !key) return absl::DataLossError("gc: a chunk index entry is damaged");
      if (options.dry_run && candidate_set.contains(*key)) continue;
      live_objects[*object] += static_cast<uint64_t>(st->ColumnInt(1));
      ++report.live_chunks;
    }
  }
  if (options.extra_roots) {
    RETURN_IF_ERROR(options.extra_roots([&](const Digest& d) { live_objects.try_emplace(d, 0); }));
  }

  std::vector<store::ObjectInfo> garbage;
  RETURN_IF_ERROR(objects.List([&](const store::ObjectInfo& info) {
    ++report.objects;
    auto it = live_objects.find(info.digest);
    if (it != live_objects.end()) {
      if (it->second > 0 && it->second < info.size) report.dead_bytes_in_live_packs += info.size - it->second;
      return absl::OkStatus();
    }
    if (info.mtime_micros / 1000 >= cutoff_ms) {
      ++report.young_objects;
      return absl::OkStatus();
    }
    garbage.push_back(info);
    return absl::OkStatus();
  }));
  for (const store::ObjectInfo& info : garbage) {
    if (!options.dry_run) RETURN_IF_ERROR(objects.Delete(info.digest));
    ++report.freed_objects;
    report.freed_bytes += info.size;
  }
  return report;
}

}  // namespace cairn::data
