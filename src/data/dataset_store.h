// DatasetStore: datasets, their immutable commits, movable branches and fixed
// tags, splits (with sealing) and per-file profiles.
//
// A commit names a manifest (data/manifest.h, stored as a chunk of the
// dataset's scope) plus parents, message, author, time and splits; its id is
// the SHA-256 of its canonical text (docs/data-commits.md), so a commit id
// vouches for every byte of the data it names. Branch updates are
// compare-and-swap: a commit states the head it was built on and fails with
// kAborted if the branch moved meanwhile, so two concurrent commits never
// silently lose one. A commit is one database transaction, after its chunks
// and manifest are durable: a crash leaves the branch at the old or the new
// commit.
//
// Encrypted datasets have a random data key, stored wrapped by the KeyRing's
// master key; their chunks and manifests live in the dataset's own chunk
// scope (data/chunk_store.h).
//
// Thread-safety: thread-safe.
//
// Usage:
//   ASSIGN_OR_RETURN(auto datasets, DatasetStore::Create(db, chunks, &keys, env));
//   ASSIGN_OR_RETURN(Dataset ds, datasets->CreateDataset("default", "mnist", "", /*encrypted=*/false));
//   ASSIGN_OR_RETURN(Digest m, datasets->PutManifest(ds, manifest));   // chunks stored before
//   ASSIGN_OR_RETURN(CommitResult c, datasets->Commit(ds, {.branch = "main", .expected_head = "",
//                                                          .manifest = m, .message = "first"}));
#ifndef CAIRN_DATA_DATASET_STORE_H_
#define CAIRN_DATA_DATASET_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/node_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "base/env.h"
#include "base/json.h"
#include "base/status.h"
#include "data/chunk_store.h"
#include "data/manifest.h"
#include "db/connection_pool.h"
#include "store/encryption.h"

namespace cairn::data {

inline constexpr char kDefaultProject[] = "default";
inline constexpr char kDefaultBranch[] = "main";

struct Dataset {
  std::string id;
  std::string project;
  std::string name;
  std::string description;
  bool encrypted = false;
  int64_t created_at_ms = 0;
};

struct Split {
  std::string name;                // [A-Za-z0-9_.-], 1 to 64 characters
  std::vector<std::string> globs;  // data/glob.h patterns over dataset paths
  bool sealed = false;
  uint64_t files = 0;  // filled in by Commit
  uint64_t bytes = 0;
};

struct DatasetCommit {
  std::string id;  // 64 hex
  std::string dataset_id;
  Digest manifest;
  std::vector<std::string> parents;
  std::string message;
  std::string author;
  int64_t created_at_ms = 0;
  uint64_t file_count = 0;
  uint64_t total_bytes = 0;
  std::vector<Split> splits;

  const Split* FindSplit(std::string_view name) const;
};

struct NewCommit {
  std::string branch = kDefaultBranch;
  // The head the commit was built on ("" when creating the branch). If the
  // branch is elsewhere by the time of the commit: kAborted.
  std::string expected_head;
  Digest manifest;  // stored with PutManifest first
  std::string message;
  std::string author;
  // nullopt: keep the parent's splits. Sealed splits stay sealed.
  std::optional<std::vector<Split>> splits;
  std::vector<std::string> seal;  // names of splits to seal
  int64_t time_ms = 0;            // 0: now
  // Optional copies the caller already holds, saving a read and a parse
  // each (not owned; used during Commit only). REQUIRES: `manifest_hint` is
  // the manifest named `manifest`; `parent_manifest_hint` is the manifest of
  // the commit `expected_head` (ignored if the branch is elsewhere).
  const DatasetManifest* manifest_hint = nullptr;
  const DatasetManifest* parent_manifest_hint = nullptr;
};

struct CommitResult {
  DatasetCommit commit;
  bool created = false;  // false: nothing changed, `commit` is the head
};

struct Ref {
  std::string kind;  // "branch" or "tag"
  std::string name;
  std::string commit_id;
  int64_t updated_at_ms = 0;
};

struct FileChange {
  enum class Kind { kAdded, kRemoved, kModified };
  Kind kind;
  std::string path;
  uint64_t old_size = 0;
  uint64_t new_size = 0;
};
std::string_view FileChangeKindName(FileChange::Kind kind);

// kInvalidArgument unless `name` is 1-128 of [A-Za-z0-9_.-], not starting with
// '.' or '-' (datasets, branches, tags).
absl::Status ValidateName(std::string_view what, std::string_view name);

// Changes from `from` to `to`, sorted by path.
std::vector<FileChange> DiffManifests(const DatasetManifest& from, const DatasetManifest& to);

// The files of `manifest` in `split`.
std::vector<const ManifestFile*> SplitFiles(const DatasetManifest& manifest, const Split& split);

// Computes a tabular file's profile (JSON, docs/data-profiles.md) from its
// bytes; returns nullopt for files that are not tabular. Set by the caller
// so that this store does not decide which formats are profiled.
using Profiler = std::function<std::optional<Json>(const ManifestFile& file,
                                                   const std::function<absl::StatusOr<std::string>(const ChunkRef&)>& read)>;

class DatasetStore {
 public:
  // None of the arguments is owned; all must outlive the store. Without a
  // KeyRing, encrypted datasets cannot be created or read
  // (kFailedPrecondition).
  static absl::StatusOr<std::unique_ptr<DatasetStore>> Create(db::Database& db, ChunkStore& chunks,
                                                              const store::KeyRing* keys, Env& env);
  ~DatasetStore();
  DatasetStore(const DatasetStore&) = delete;
  DatasetStore& operator=(const DatasetStore&) = delete;

  void set_profiler(Profiler profiler) { profiler_ = std::move(profiler); }

  // kAlreadyExists if the project has a dataset of that name.
  absl::StatusOr<Dataset> CreateDataset(std::string_view project, std::string_view name,
                                        std::string_view description, bool encrypted);
  absl::StatusOr<Dataset> GetDataset(std::string_view project, std::string_view name);
  absl::StatusOr<Dataset> GetDatasetById(std::string_view id);
  absl::StatusOr<std::vector<Dataset>> ListDatasets(std::string_view project);

  // The chunk scope of `ds` (its own, with its key, when encrypted). The key
  // stays valid for the store's lifetime.
  absl::StatusOr<ChunkScope> ScopeOf(const Dataset& ds);

  // Stores the manifest's canonical text as a chunk of the dataset's scope.
  // REQUIRES: manifest.Normalize() succeeded.
  absl::StatusOr<Digest> PutManifest(const Dataset& ds, const DatasetManifest& manifest);
  // The same, given the manifest's canonical text (Serialize()).
  absl::StatusOr<Digest> PutManifestText(const Dataset& ds, std::string_view text);
  absl::StatusOr<DatasetManifest> GetManifest(const Dataset& ds, const Digest& digest);

  // Validates (manifest present and parsable, every chunk present, splits
  // well-formed and disjoint), profiles tabular files that changed, and
  // moves the branch in one transaction.
  absl::StatusOr<CommitResult> Commit(const Dataset& ds, const NewCommit& request);

  // A branch, a tag, a full commit id or a unique id prefix (>= 6 hex).
  // kNotFound, or kInvalidArgument for an ambiguous prefix.
  absl::StatusOr<DatasetCommit> Resolve(const Dataset& ds, std::string_view ref);
  absl::StatusOr<DatasetCommit> GetCommit(std::string_view commit_id);
  // The branch head, or nullopt for a branch with no commit yet.
  absl::StatusOr<std::optional<DatasetCommit>> Head(const Dataset& ds, std::string_view branch);
  // First-parent history from `ref`, newest first, at most `limit`.
  absl::StatusOr<std::vector<DatasetCommit>> Log(const Dataset& ds, std::string_view ref, int limit);

  absl::StatusOr<std::vector<Ref>> ListRefs(const Dataset& ds);
  // kAlreadyExists if the name is taken (tags never move).
  absl::Status CreateRef(const Dataset& ds, std::string_view kind, std::string_view name, std::string_view target);
  absl::Status DeleteRef(const Dataset& ds, std::string_view kind, std::string_view name);

  // Profiles stored with a commit: path -> JSON.
  absl::StatusOr<std::vector<std::pair<std::string, Json>>> Profiles(std::string_view commit_id);

  // Streams bytes [offset, offset + length) of `file` (clamped to its size)
  // to `sink`, chunk by chunk, each verified.
  absl::Status ReadFile(const Dataset& ds, const ManifestFile& file, uint64_t offset, uint64_t length,
                        const std::function<absl::Status(std::string_view)>& sink);

  // Every commit of every dataset with seq > `after_seq`, in seq order
  // (garbage collection's roots). `fn` gets the dataset, commit and seq.
  absl::Status ForEachCommit(int64_t after_seq,
                             const std::function<absl::Status(const Dataset&, const DatasetCommit&, int64_t)>& fn);

  // Read-only consistency check for fsck, one line per problem: every chunk
  // index entry lies inside an existing object; every commit's manifest
  // reads back and every chunk it names is indexed; every ref names a
  // commit. `files_checked` gets the number of manifest entries seen.
  absl::StatusOr<std::vector<std::string>> CheckConsistency(store::ObjectStore& objects, uint64_t* files_checked);

  // Re-wraps every encrypted dataset's key with `keys`' current master key
  // (key rotation); returns how many were re-wrapped.
  absl::StatusOr<int> RewrapKeys(const store::KeyRing& keys);

  ChunkStore& chunks() { return chunks_; }

 private:
  DatasetStore(ChunkStore& chunks, const store::KeyRing* keys, Env& env,
               std::unique_ptr<db::ConnectionPool> pool)
      : chunks_(chunks), keys_(keys), env_(env), pool_(std::move(pool)) {}

  absl::StatusOr<const store::DataKey*> KeyOf(const Dataset& ds);
  absl::StatusOr<std::optional<DatasetCommit>> FindCommit(db::Connection& conn, std::string_view id);
  absl::StatusOr<DatasetCommit> ResolveIn(db::Connection& conn, const Dataset& ds, std::string_view ref);

  ChunkStore& chunks_;
  const store::KeyRing* keys_;
  Env& env_;
  std::unique_ptr<db::ConnectionPool> pool_;
  Profiler profiler_;
  absl::Mutex keys_mu_;
  absl::node_hash_map<std::string, std::unique_ptr<store::DataKey>> data_keys_ ABSL_GUARDED_BY(keys_mu_);
};

}  // namespace cairn::data

#endif  // CAIRN_DATA_DATASET_STORE_H_
