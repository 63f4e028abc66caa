// Garbage collection: mark and sweep of objects that nothing references any
// more — dataset chunks and manifests no commit names, packs holding only
// such chunks, run artifacts that were replaced or deleted, leftovers of
// crashed writers.
//
// Roots: every commit of every dataset (branches come and go; commits are
// never deleted, so a commit's data stays reachable), plus the caller's
// extra roots (run artifacts; models later). Safe while writers are active:
//   - nothing touched within the grace period is collected: chunk index rows
//     carry touched_at (set on store, dedup hit and Contains()), objects
//     carry their modification time (refreshed when re-put);
//   - the index rows are deleted in one transaction that re-reads the
//     commits created since marking began and re-checks touched_at, so a
//     commit landing during the collection keeps all its chunks;
//   - objects are deleted only after their index rows, and only when no
//     remaining row names them.
// A pack with some live chunks is kept whole (its dead bytes are reported).
//
// Thread-safety: CollectGarbage may run beside any other operation; run one
// collection at a time.
//
// Usage:
//   ASSIGN_OR_RETURN(GcReport r, CollectGarbage(datasets, objects, env, {.grace_ms = 3600'000}));
#ifndef CAIRN_DATA_GC_H_
#define CAIRN_DATA_GC_H_

#include <cstdint>
#include <functional>

#include "base/env.h"
#include "base/sha256.h"
#include "base/status.h"
#include "data/dataset_store.h"
#include "store/object_store.h"

namespace cairn::data {

// Grace periods below this are refused (unless ForTest): the chunk store
// refreshes touched_at at most once a minute.
inline constexpr int64_t kMinGraceMs = 5 * 60 * 1000;

struct GcOptions {
  int64_t grace_ms = 60 * 60 * 1000;
  bool dry_run = false;  // report what would be freed, delete nothing
  // Calls `add` for every object referenced outside datasets.
  std::function<absl::Status(const std::function<void(const Digest&)>& add)> extra_roots;
  // Lets tests use a grace period shorter than kMinGraceMs.
  bool allow_short_grace_for_test = false;
};

struct GcReport {
  uint64_t commits = 0;           // commits marked from
  uint64_t live_chunks = 0;       // index rows kept
  uint64_t freed_chunks = 0;      // index rows deleted
  uint64_t objects = 0;           // objects looked at
  uint64_t freed_objects = 0;
  uint64_t freed_bytes = 0;
  uint64_t young_objects = 0;     // unreferenced but inside the grace period
  uint64_t dead_bytes_in_live_packs = 0;
};

absl::StatusOr<GcReport> CollectGarbage(DatasetStore& datasets, store::ObjectStore& objects, Env& env,
                                        const GcOptions& options);

}  // namespace cairn::data

#endif  // CAIRN_DATA_GC_H_
