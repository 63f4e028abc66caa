// ChunkStore: where dataset chunks (and manifests) are kept — encoded,
// deduplicated and indexed — on top of the ObjectStore and the database.
//
// A chunk is named by the SHA-256 of its plain bytes. Storing it:
//   - picks a codec: zstd when a sample shows it pays (>= 10% smaller),
//     otherwise raw; then, in an encrypted scope, AES-256-GCM sealing with the
//     dataset's key (associated data: scope id + chunk digest, so a sealed
//     chunk cannot be passed off as another);
//   - picks a home: a chunk of >= kPackThreshold encoded bytes is an object of
//     its own (a raw plaintext chunk is stored under its own digest, with no
//     second hash); smaller ones are appended to a pack object (up to
//     kPackTargetSize), so 200,000 small files make about a hundred objects, not
//     200,000 fsynced files;
//   - records (scope, key) -> (object, offset, stored size, size, codec) in
//     table data_chunks. The key is the digest, or in an encrypted scope the
//     dataset key's HMAC of it (the index does not reveal plaintext digests).
// Objects are durable before their index rows are committed, so a crash
// leaves at most unreferenced objects (garbage collection's business), never
// an index row without its bytes.
//
// Reads decode and verify: every chunk returned hashes to its name, or the
// read fails with kDataLoss (and a tampered sealed chunk never decrypts).
// Format details: docs/data-storage.md.
//
// Thread-safety: ChunkStore is thread-safe. A Batch is thread-safe too: the
// ingest pipeline's workers add to one batch concurrently.
//
// Usage:
//   ASSIGN_OR_RETURN(auto chunks, ChunkStore::Create(db, objects, env));
//   ChunkScope scope;                                   // shared, plaintext
//   ASSIGN_OR_RETURN(auto batch, chunks->NewBatch(scope, /*verify=*/false));
//   RETURN_IF_ERROR(batch->Add(Sha256::Of(bytes), bytes));
//   RETURN_IF_ERROR(batch->Commit());                   // durable and indexed
//   ASSIGN_OR_RETURN(std::string back, chunks->Read(scope, digest));
#ifndef CAIRN_DATA_CHUNK_STORE_H_
#define CAIRN_DATA_CHUNK_STORE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "base/env.h"
#include "base/sha256.h"
#include "base/status.h"
#include "db/connection_pool.h"
#include "db/database.h"
#include "store/encryption.h"
#include "store/object_store.h"

namespace cairn::data {

// Which chunks a caller means: the shared plaintext scope (id empty, no key)
// or one encrypted dataset's own scope (its id and its data key; not owned,
// must outlive every call using the scope).
struct ChunkScope {
  std::string id;
  const store::DataKey* key = nullptr;

  bool encrypted() const { return key != nullptr; }
};

inline constexpr size_t kPackThreshold = 64 << 10;
inline constexpr size_t kPackTargetSize = 8 << 20;

// Codec bits in data_chunks.codec.
inline constexpr int kCodecZstd = 1;
inline constexpr int kCodecSealed = 2;

struct ChunkLocation {
  Digest object;
  uint64_t offset = 0;
  uint64_t stored_size = 0;
  uint64_t size = 0;
  int codec = 0;
};

class ChunkStore {
 public:
  // Neither `db`, `objects` nor `env` is owned; all must outlive the store.
  // Applies the data schema's migrations.
  static absl::StatusOr<std::unique_ptr<ChunkStore>> Create(db::Database& db, store::ObjectStore& objects, Env& env);
  ~ChunkStore();
  ChunkStore(const ChunkStore&) = delete;
  ChunkStore& operator=(const ChunkStore&) = delete;

  // A set of chunk writes that become durable and visible together.
  class Batch {
   public:
    ~Batch();  // without Commit(): nothing is indexed (objects are left to gc)
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;

    // Stores one chunk unless the scope (or this batch) has it already. With
    // `verify` (data from the network) the digest is checked first:
    // kInvalidArgument on a mismatch. Small chunks are queued and looked up
    // in the index a few hundred at a time (one query instead of hundreds),
    // so whether a chunk was new is known after Commit (stored_chunks()).
    absl::Status Add(const Digest& digest, std::string_view data);
    // Seals open packs and commits the index rows in one transaction. If a
    // chunk this batch found already stored was garbage-collected meanwhile:
    // kAborted (run the operation again).
    absl::Status Commit();

    uint64_t stored_bytes() const { return stored_bytes_.load(); }  // encoded bytes written
    uint64_t stored_chunks() const { return stored_chunks_.load(); }  // chunks that were new

   private:
    friend class ChunkStore;
    struct Lane;
    struct Row {
      Digest key;
      ChunkLocation loc;
    };
    Batch(ChunkStore& store, ChunkScope scope, bool verify, std::unique_ptr<store::ObjectWriteBatch> objects);
    absl::Status SealLane(Lane& lane);  // REQUIRES: lane.mu held
    absl::Status AddToPack(const Digest& key, ChunkLocation loc, std::string_view encoded);
    void AddRows(std::vector<Row> rows);
    struct Queued {
      Digest digest;
      Digest key;
      std::string data;
    };
    // Looks `queued` up in the index and stores the missing ones.
    absl::Status StoreQueued(std::vector<Queued> queued);
    // Encodes and writes one chunk known to be missing.
    absl::Status Store(const Digest& digest, const Digest& key, std::string_view data);

    ChunkStore& store_;
    const ChunkScope scope_;
    const bool verify_;
    std::unique_ptr<store::ObjectWriteBatch> objects_;  // synced once, at Commit
    std::vector<std::unique_ptr<Lane>> lanes_;
    absl::Mutex mu_;
    absl::flat_hash_set<Digest> pending_ ABSL_GUARDED_BY(mu_);  // keys added by this batch
    std::vector<Row> rows_ ABSL_GUARDED_BY(mu_);
    std::vector<Digest> reused_ ABSL_GUARDED_BY(mu_);  // stale dedup hits, refreshed at Commit
    std::vector<Queued> queued_ ABSL_GUARDED_BY(mu_);  // small chunks awaiting their lookup
    std::atomic<uint64_t> stored_bytes_{0};
    std::atomic<uint64_t> stored_chunks_{0};
    bool committed_ = false;
  };
  absl::StatusOr<std::unique_ptr<Batch>> NewBatch(const ChunkScope& scope, bool verify);

  // For each digest, whether the scope has it. Present chunks are freshened
  // (touched_at), so garbage collection spares them for its grace period
  // while the caller builds a commit on them.
  absl::StatusOr<std::vector<bool>> Contains(const ChunkScope& scope, std::span<const Digest> digests);
  // The chunk's plain bytes, verified. kNotFound if the scope lacks it,
  // kDataLoss if its stored bytes are damaged or tampered with.
  absl::StatusOr<std::string> Read(const ChunkScope& scope, const Digest& digest);
  absl::StatusOr<ChunkLocation> Locate(const ChunkScope& scope, const Digest& digest);
  // How many of `digests` the scope lacks, read through `conn` (so a caller
  // can check inside its own transaction); `example` gets the first one.
  static absl::StatusOr<size_t> CountMissing(db::Connection& conn, const ChunkScope& scope,
                                             std::span<const Digest> digests, std::string* example);
  // touched_at of each key present in `scope_id`, nullopt for absent ones;
  // a few hundred keys per query.
  static absl::StatusOr<std::vector<std::optional<int64_t>>> LookupKeys(db::Connection& conn,
                                                                        std::string_view scope_id,
                                                                        std::span<const Digest> keys);

  // The index key of `digest` in `scope`.
  static Digest KeyOf(const ChunkScope& scope, const Digest& digest);

  db::Database& database() { return db_; }
  store::ObjectStore& objects() { return objects_; }

 private:
  ChunkStore(db::Database& db, store::ObjectStore& objects, Env& env, std::unique_ptr<db::ConnectionPool> pool)
      : db_(db), objects_(objects), env_(env), pool_(std::move(pool)) {}

  db::Database& db_;
  store::ObjectStore& objects_;
  Env& env_;
  std::unique_ptr<db::ConnectionPool> pool_;
};

}  // namespace cairn::data

#endif  // CAIRN_DATA_CHUNK_STORE_H_
