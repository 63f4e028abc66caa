#include "data/chunk_store.h"

#include <zstd.h>

#include <algorithm>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "absl/container/flat_hash_map.h"
#include "data/internal/digest_blob.h"
#include "data/schema.h"

namespace cairn::data {
namespace {

// Chunks below this are not worth a compression attempt.
constexpr size_t kMinCompressSize = 512;
// Large chunks are compressed only if a sample of this size compresses.
constexpr size_t kCompressSample = 64 << 10;
// zstd pays when it saves at least 10%.
constexpr double kCompressRatio = 0.9;
// A dedup hit refreshes touched_at only when it is older than this, so that
// re-adding a tree does not rewrite every index row.
constexpr int64_t kTouchIntervalMs = 60'000;
// Keys per index query (SQLite allows 32766 parameters).
constexpr size_t kLookupBlock = 256;

struct CctxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DctxDeleter {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

// One compression context per thread: creating one costs more than
// compressing a small chunk.
ZSTD_CCtx* ThreadCctx() {
  thread_local std::unique_ptr<ZSTD_CCtx, CctxDeleter> ctx(ZSTD_createCCtx());
  return ctx.get();
}
ZSTD_DCtx* ThreadDctx() {
  thread_local std::unique_ptr<ZSTD_DCtx, DctxDeleter> ctx(ZSTD_createDCtx());
  return ctx.get();
}

// Compresses `data` at `level` into `out`; false if it fails or is not
// smaller than `limit` bytes.
bool Compress(std::string_view data, int level, size_t limit, std::string& out) {
  out.resize(ZSTD_compressBound(data.size()));
  size_t n = ZSTD_compressCCtx(ThreadCctx(), out.data(), out.size(), data.data(), data.size(), level);
  if (ZSTD_isError(n) || n >= limit) return false;
  out.resize(n);
  return true;
}

int64_t NowMs(Env& env) { return env.NowMicros() / 1000; }

using internal::DigestBlob;

absl::StatusOr<Digest> DigestFromBlob(std::string_view blob) {
  std::optional<Digest> d = internal::DigestFromBlob(blob);
  if (!d) return absl::DataLossError(fmt::format("chunk index: a digest of {} bytes", blob.size()));
  return *d;
}

// Associated data of a sealed chunk: binds it to its scope and name.
std::string SealAad(const ChunkScope& scope, const Digest& digest) {
  std::string aad = "cairn-chunk:";
  aad.append(scope.id).append(":").append(DigestBlob(digest));
  return aad;
}

}  // namespace

struct ChunkStore::Batch::Lane {
  absl::Mutex mu;
  std::string buffer ABSL_GUARDED_BY(mu);
  std::vector<Row> rows ABSL_GUARDED_BY(mu);  // object not yet known
};

absl::StatusOr<std::unique_ptr<ChunkStore>> ChunkStore::Create(db::Database& db, store::ObjectStore& objects,
                                                               Env& env) {
  RETURN_IF_ERROR(db.Migrate("data", DataMigrations()));
  ASSIGN_OR_RETURN(auto pool, db::ConnectionPool::Create(db, 4));
  return std::unique_ptr<ChunkStore>(new ChunkStore(db, objects, env, std::move(pool)));
}

ChunkStore::~ChunkStore() = default;

Digest ChunkStore::KeyOf(const ChunkScope& scope, const Digest& digest) {
  if (!scope.encrypted()) return digest;
  return scope.key->Mac(DigestBlob(digest));
}

absl::StatusOr<std::unique_ptr<ChunkStore::Batch>> ChunkStore::NewBatch(const ChunkScope& scope, bool verify) {
  ASSIGN_OR_RETURN(std::unique_ptr<store::ObjectWriteBatch> objects, objects_.NewWriteBatch());
  return std::unique_ptr<Batch>(new Batch(*this, scope, verify, std::move(objects)));
}

ChunkStore::Batch::Batch(ChunkStore& store, ChunkScope scope, bool verify,
                         std::unique_ptr<store::ObjectWriteBatch> objects)
    : store_(store), scope_(std::move(scope)), verify_(verify), objects_(std::move(objects)) {
  const unsigned n = std::max(1u, std::min(8u, std::thread::hardware_concurrency()));
  for (unsigned i = 0; i < n; ++i) lanes_.push_back(std::make_unique<Lane>());
}

ChunkStore::Batch::~Batch() = default;

void ChunkStore::Batch::AddRows(std::vector<Row> rows) {
  absl::MutexLock lock(&mu_);
  for (Row& r : rows) rows_.push_back(std::move(r));
}

absl::Status ChunkStore::Batch::Add(const Digest& digest, std::string_view data) {
  if (committed_) return absl::FailedPreconditionError("chunk batch: Add after Commit");
  if (verify_) {
    Digest actual = Sha256::Of(data);
    if (actual != digest) {
      return absl::InvalidArgumentError(
          fmt::format("chunk {} does not match its content (which hashes to {})", digest.ToHex(), actual.ToHex()));
    }
  }
  const Digest key = KeyOf(scope_, digest);
  if (data.size() < kPackThreshold) {
    std::vector<Queued> full;
    {
      absl::MutexLock lock(&mu_);
      if (!pending_.insert(key).second) return absl::OkStatus();
      queued_.push_back(Queued{digest, key, std::string(data)});
      if (queued_.size() < kLookupBlock) return absl::OkStatus();
      full.swap(queued_);
    }
    return StoreQueued(std::move(full));
  }
  {
    absl::MutexLock lock(&mu_);
    if (!pending_.insert(key).second) return absl::OkStatus();
  }
  std::vector<std::optional<int64_t>> touched;
  {
    ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, store_.pool_->Acquire());
    ASSIGN_OR_RETURN(touched, LookupKeys(*conn, scope_.id, std::span<const Digest>(&key, 1)));
  }
  if (touched[0]) {
    if (*touched[0] < NowMs(store_.env_) - kTouchIntervalMs) {
      absl::MutexLock lock(&mu_);
      reused_.push_back(key);
    }
    return absl::OkStatus();
  }
  return Store(digest, key, data);
}

absl::Status ChunkStore::Batch::StoreQueued(std::vector<Queued> queued) {
  if (queued.empty()) return absl::OkStatus();
  std::vector<Digest> keys;
  keys.reserve(queued.size());
  for (const Queued& q : queued) keys.push_back(q.key);
  std::vector<std::optional<int64_t>> touched;
  {
    ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, store_.pool_->Acquire());
    ASSIGN_OR_RETURN(touched, LookupKeys(*conn, scope_.id, keys));
  }
  const int64_t stale_before = NowMs(store_.env_) - kTouchIntervalMs;
  for (size_t i = 0; i < queued.size(); ++i) {
    if (touched[i]) {
      if (*touched[i] < stale_before) {
        absl::MutexLock lock(&mu_);
        reused_.push_back(queued[i].key);
      }
      continue;
    }
    RETURN_IF_ERROR(Store(queued[i].digest, queued[i].key, queued[i].data));
  }
  return absl::OkStatus();
}

absl::Status ChunkStore::Batch::Store(const Digest& digest, const Digest& key, std::string_view data) {
  // Encode: compress when it pays, then seal in an encrypted scope.
  int codec = 0;
  std::string compressed;
  std::string_view encoded = data;
  if (data.size() >= kMinCompressSize) {
    bool try_full = true;
    if (data.size() > 2 * kCompressSample) {
      std::string sample;
      try_full = Compress(data.substr(0, kCompressSample), 1,
                          static_cast<size_t>(kCompressSample * kCompressRatio), sample);
    }
    if (try_full && Compress(data, data.size() > kPackThreshold ? 3 : 1,
                             static_cast<size_t>(static_cast<double>(data.size()) * kCompressRatio), compressed)) {
      codec |= kCodecZstd;
      encoded = compressed;
    }
  }
  std::string sealed;
  if (scope_.encrypted()) {
    sealed = scope_.key->Seal(encoded, SealAad(scope_, digest));
    codec |= kCodecSealed;
    encoded = sealed;
  }

  ChunkLocation loc{.offset = 0, .stored_size = encoded.size(), .size = data.size(), .codec = codec};
  if (encoded.size() >= kPackThreshold) {
    if (codec == 0) {
      RETURN_IF_ERROR(objects_->PutHashed(digest, data));
      loc.object = digest;
    } else {
      ASSIGN_OR_RETURN(loc.object, objects_->Put(encoded));
    }
    AddRows({Row{key, loc}});
  } else {
    RETURN_IF_ERROR(AddToPack(key, loc, encoded));
  }
  stored_bytes_ += encoded.size();
  ++stored_chunks_;
  return absl::OkStatus();
}

// The lane is picked at run time (any free one), which the thread-safety
// analysis cannot follow; the lock is taken and released in this function.
absl::Status ChunkStore::Batch::AddToPack(const Digest& key, ChunkLocation loc, std::string_view encoded)
    ABSL_NO_THREAD_SAFETY_ANALYSIS {
  Lane* lane = nullptr;
  for (auto& l : lanes_) {
    if (l->mu.TryLock()) {
      lane = l.get();
      break;
    }
  }
  if (lane == nullptr) {  // all busy: wait for one
    lane = lanes_[std::hash<std::thread::id>()(std::this_thread::get_id()) % lanes_.size()].get();
    lane->mu.Lock();
  }
  loc.offset = lane->buffer.size();
  // Exactly one pack's worth, once: growing by doubling would leave a 32 MiB
  // buffer per lane.
  if (lane->buffer.capacity() < kPackTargetSize + kPackThreshold) lane->buffer.reserve(kPackTargetSize + kPackThreshold);
  lane->buffer.append(encoded);
  lane->rows.push_back(Row{key, loc});
  absl::Status s = lane->buffer.size() >= kPackTargetSize ? SealLane(*lane) : absl::OkStatus();
  lane->mu.Unlock();
  return s;
}

absl::Status ChunkStore::Batch::SealLane(Lane& lane) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  // REQUIRES: lane.mu held.
  if (lane.rows.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(Digest pack, objects_->Put(lane.buffer));
  for (Row& r : lane.rows) r.loc.object = pack;
  AddRows(std::move(lane.rows));
  lane.rows.clear();
  lane.buffer.clear();  // keeps its capacity for the next pack
  return absl::OkStatus();
}

absl::Status ChunkStore::Batch::Commit() {
  if (committed_) return absl::FailedPreconditionError("chunk batch: Commit called twice");
  {
    std::vector<Queued> rest;
    {
      absl::MutexLock lock(&mu_);
      rest.swap(queued_);
    }
    RETURN_IF_ERROR(StoreQueued(std::move(rest)));
  }
  committed_ = true;
  for (auto& lane : lanes_) {
    absl::MutexLock lock(&lane->mu);
    RETURN_IF_ERROR(SealLane(*lane));
  }
  // Objects first: an index row never names bytes that are not durable.
  RETURN_IF_ERROR(objects_->Commit());
  std::vector<Row> rows;
  std::vector<Digest> reused;
  {
    absl::MutexLock lock(&mu_);
    rows.swap(rows_);
    reused.swap(reused_);
    pending_ = {};  // no more Adds: free the dedup set
  }
  if (rows.empty() && reused.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, store_.pool_->Acquire());
  db::Transaction txn(*conn);
  RETURN_IF_ERROR(txn.Begin());
  if (!reused.empty()) {
    // Serialized with garbage collection's sweep: either the row is still
    // there and is now fresh (gc will spare it), or it is gone.
    ASSIGN_OR_RETURN(db::Statement * up,
                     conn->Cached("UPDATE data_chunks SET touched_at = ? WHERE scope = ? AND chunk_key = ?"));
    for (const Digest& key : reused) {
      up->BindInt(1, NowMs(store_.env_));
      up->BindText(2, scope_.id);
      up->BindBlob(3, DigestBlob(key));
      RETURN_IF_ERROR(up->Run());
      if (up->ChangedRows() == 0) {
        return absl::AbortedError(
            "a stored chunk this operation reuses was garbage-collected while it ran; run it again");
      }
    }
  }
  // A row already present (another writer stored the same chunk meanwhile)
  // keeps its location; only its touched_at moves.
  ASSIGN_OR_RETURN(db::Statement * st, conn->Cached(
      "INSERT INTO data_chunks (scope, chunk_key, object, offset, stored_size, size, codec, touched_at) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
      "ON CONFLICT (scope, chunk_key) DO UPDATE SET touched_at = excluded.touched_at"));
  const int64_t now = NowMs(store_.env_);
  for (const Row& r : rows) {
    st->BindText(1, scope_.id);
    st->BindBlob(2, DigestBlob(r.key));
    st->BindBlob(3, DigestBlob(r.loc.object));
    st->BindInt(4, static_cast<int64_t>(r.loc.offset));
    st->BindInt(5, static_cast<int64_t>(r.loc.stored_size));
    st->BindInt(6, static_cast<int64_t>(r.loc.size));
    st->BindInt(7, r.loc.codec);
    st->BindInt(8, now);
    RETURN_IF_ERROR(st->Run());
  }
  return txn.Commit();
}

absl::StatusOr<std::vector<bool>> ChunkStore::Contains(const ChunkScope& scope, std::span<const Digest> digests) {
  std::vector<bool> present(digests.size(), false);
  std::vector<Digest> stale;
  const int64_t now = NowMs(env_);
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  {
    db::Transaction txn(*conn);
    RETURN_IF_ERROR(txn.Begin());
    std::vector<Digest> keys;
    keys.reserve(digests.size());
    for (const Digest& d : digests) keys.push_back(KeyOf(scope, d));
    ASSIGN_OR_RETURN(std::vector<std::optional<int64_t>> touched, LookupKeys(*conn, scope.id, keys));
    for (size_t i = 0; i < digests.size(); ++i) {
      if (touched[i]) {
        present[i] = true;
        if (*touched[i] < now - kTouchIntervalMs) stale.push_back(keys[i]);
      }
    }
    if (!stale.empty()) {
      ASSIGN_OR_RETURN(db::Statement * up,
                       conn->Cached("UPDATE data_chunks SET touched_at = ? WHERE scope = ? AND chunk_key = ?"));
      for (const Digest& key : stale) {
        up->BindInt(1, now);
        up->BindText(2, scope.id);
        up->BindBlob(3, DigestBlob(key));
        RETURN_IF_ERROR(up->Run());
      }
    }
    RETURN_IF_ERROR(txn.Commit());
  }
  return present;
}

absl::StatusOr<std::vector<std::optional<int64_t>>> ChunkStore::LookupKeys(db::Connection& conn,
                                                                           std::string_view scope_id,
                                                                           std::span<const Digest> keys) {
  // One statement of a fixed shape (cached): the block is padded with copies
  // of its first key.
  static const std::string kSql = [] {
    std::string sql = "SELECT chunk_key, touched_at FROM data_chunks WHERE scope = ? AND chunk_key IN (?";
    for (size_t i = 1; i < kLookupBlock; ++i) sql += ", ?";
    return sql + ")";
  }();
  std::vector<std::optional<int64_t>> out(keys.size());
  ASSIGN_OR_RETURN(db::Statement * st, conn.Cached(kSql));
  for (size_t begin = 0; begin < keys.size(); begin += kLookupBlock) {
    const size_t n = std::min(kLookupBlock, keys.size() - begin);
    absl::flat_hash_map<Digest, size_t> where;  // key -> first index in this block
    st->BindText(1, scope_id);
    for (size_t i = 0; i < kLookupBlock; ++i) {
      const Digest& k = keys[begin + (i < n ? i : 0)];
      st->BindBlob(static_cast<int>(i + 2), DigestBlob(k));
      if (i < n) where.try_emplace(k, begin + i);
    }
    for (;;) {
      absl::StatusOr<bool> row = st->Step();
      if (!row.ok()) {
        st->Reset();
        return row.status();
      }
      if (!*row) break;
      absl::StatusOr<Digest> k = DigestFromBlob(st->ColumnBlob(0));
      if (!k.ok()) {
        st->Reset();
        return k.status();
      }
      if (auto it = where.find(*k); it != where.end()) out[it->second] = st->ColumnInt(1);
    }
    st->Reset();
    // Duplicates within the block share the first one's answer.
    for (size_t i = 0; i < n; ++i) {
      if (!out[begin + i]) {
        auto it = where.find(keys[begin + i]);
        if (it != where.end() && it->second != begin + i) out[begin + i] = out[it->second];
      }
    }
  }
  return out;
}

absl::StatusOr<size_t> ChunkStore::CountMissing(db::Connection& conn, const ChunkScope& scope,
                                                std::span<const Digest> digests, std::string* example) {
  std::vector<Digest> keys;
  keys.reserve(digests.size());
  for (const Digest& d : digests) keys.push_back(KeyOf(scope, d));
  ASSIGN_OR_RETURN(std::vector<std::optional<int64_t>> touched, LookupKeys(conn, scope.id, keys));
  size_t missing = 0;
  for (size_t i = 0; i < digests.size(); ++i) {
    if (!touched[i] && missing++ == 0 && example != nullptr) *example = digests[i].ToHex();
  }
  return missing;
}

absl::StatusOr<ChunkLocation> ChunkStore::Locate(const ChunkScope& scope, const Digest& digest) {
  ASSIGN_OR_RETURN(db::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st,
                   conn->Cached("SELECT object, offset, stored_size, size, codec FROM data_chunks "
                                "WHERE scope = ? AND chunk_key = ?"));
  st->BindText(1, scope.id);
  st->BindBlob(2, DigestBlob(KeyOf(scope, digest)));
  ASSIGN_OR_RETURN(bool found, st->Step());
  if (!found) {
    return absl::NotFoundError(fmt::format("chunk {} is not stored{}", digest.ToHex(),
                                           scope.id.empty() ? "" : " in this dataset"));
  }
  ChunkLocation loc;
  ASSIGN_OR_RETURN(loc.object, DigestFromBlob(st->ColumnBlob(0)));
  const int64_t offset = st->ColumnInt(1), stored = st->ColumnInt(2), size = st->ColumnInt(3);
  loc.codec = static_cast<int>(st->ColumnInt(4));
  st->Reset();
  if (offset < 0 || stored < 0 || size < 0 || (loc.codec & ~(kCodecZstd | kCodecSealed)) != 0) {
    return absl::DataLossError(fmt::format("chunk index entry of {} is damaged", digest.ToHex()));
  }
  loc.offset = static_cast<uint64_t>(offset);
  loc.stored_size = static_cast<uint64_t>(stored);
  loc.size = static_cast<uint64_t>(size);
  return loc;
}

absl::StatusOr<std::string> ChunkStore::Read(const ChunkScope& scope, const Digest& digest) {
  ASSIGN_OR_RETURN(ChunkLocation loc, Locate(scope, digest));
  if (loc.codec == 0 && loc.object == digest && loc.offset == 0) {
    // A raw chunk stored under its own name: the store verifies the digest.
    return objects_.Get(digest);
  }
  ASSIGN_OR_RETURN(auto reader, objects_.OpenRange(loc.object, loc.offset, loc.stored_size));
  if (reader->size() != loc.stored_size) {
    return absl::DataLossError(fmt::format("chunk {}: object {} is shorter than its index says", digest.ToHex(),
                                           loc.object.ToHex()));
  }
  std::string stored(loc.stored_size, '\0');
  size_t got = 0;
  while (got < stored.size()) {
    ASSIGN_OR_RETURN(size_t n, reader->Read(stored.data() + got, stored.size() - got));
    if (n == 0) return absl::DataLossError(fmt::format("chunk {}: object {} is truncated", digest.ToHex(), loc.object.ToHex()));
    got += n;
  }
  std::string plain;
  if (loc.codec & kCodecSealed) {
    if (!scope.encrypted()) return absl::DataLossError(fmt::format("chunk {} is sealed but its scope has no key", digest.ToHex()));
    absl::StatusOr<std::string> opened = scope.key->Open(stored, SealAad(scope, digest));
    if (!opened.ok()) {
      return absl::DataLossError(fmt::format("chunk {} failed authentication (damaged or tampered with)", digest.ToHex()));
    }
    stored = std::move(*opened);
  }
  if (loc.codec & kCodecZstd) {
    const unsigned long long frame = ZSTD_getFrameContentSize(stored.data(), stored.size());
    if (frame != loc.size) return absl::DataLossError(fmt::format("chunk {}: compressed frame is damaged", digest.ToHex()));
    plain.resize(loc.size);
    size_t n = ZSTD_decompressDCtx(ThreadDctx(), plain.data(), plain.size(), stored.data(), stored.size());
    if (ZSTD_isError(n) || n != loc.size) {
      return absl::DataLossError(fmt::format("chunk {}: compressed bytes are damaged", digest.ToHex()));
    }
  } else {
    plain = std::move(stored);
  }
  if (plain.size() != loc.size || Sha256::Of(plain) != digest) {
    return absl::DataLossError(fmt::format("chunk {} is corrupt: its bytes do not hash to its name", digest.ToHex()));
  }
  return plain;
}

}  // namespace cairn::data
