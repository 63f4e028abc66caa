// LocalObjectStore: the ObjectStore on a local file system (through Env).
//
// On-disk layout under `root` (readable without the code):
//   <root>/<h0h1>/<h2h3>/<h0...h63>   an object: its exact bytes, named by the
//                                     lowercase hex SHA-256 of those bytes and
//                                     sharded by the first two bytes of it
//   <root>/tmp/<owner>.lock           one per open store (process), locked
//                                     (flock) while it is open
//   <root>/tmp/<owner>-<random>.tmp   objects being written by that owner;
//                                     never read
// Nothing else belongs in `root`; FsckObjectStore (store/fsck.h) reports
// anything else it finds.
//
// Writing: bytes stream into a temp file (1 MiB buffer) while being hashed,
// then Sync, create the shard directories (syncing their parents when new),
// rename into place, SyncDir the shard. If an object with that digest is
// already there (and has the right size) the temp file is dropped instead.
// Any failure removes the temp file, so a failed or abandoned write leaves
// nothing visible. A crash can leave temp files behind; they are removed by
// RemoveTempFiles() (Create() calls it): a temp file whose owner's lock
// file is no longer locked belongs to a dead process. Several processes may
// share a store directory.
//
// Reading: full reads hash as they go and fail with kDataLoss on the read
// that reaches the end if the digest or size is wrong.
//
// Thread-safety: thread-safe (stateless apart from the Env, which is).
// Ownership: does not own `env`, which must outlive the store.
//
// Usage:
//   ASSIGN_OR_RETURN(auto store, LocalObjectStore::Create(env, data_dir + "/objects"));
//   ASSIGN_OR_RETURN(Digest d, store->Put("bytes"));
#ifndef CAIRN_STORE_LOCAL_OBJECT_STORE_H_
#define CAIRN_STORE_LOCAL_OBJECT_STORE_H_

#include <memory>
#include <string>

#include "base/env.h"
#include "store/object_store.h"

namespace cairn::store {

class LocalObjectStore final : public ObjectStore {
 public:
  struct Options {
    // Remove dead writers' temp files at Create (see the note above).
    bool remove_temp_files = true;
  };

  // Opens (creating if needed) the store at `root`.
  static absl::StatusOr<std::unique_ptr<LocalObjectStore>> Create(Env& env, std::string root);
  static absl::StatusOr<std::unique_ptr<LocalObjectStore>> Create(Env& env, std::string root,
                                                                  const Options& options);

  ~LocalObjectStore() override;  // removes its owner lock file
  LocalObjectStore(const LocalObjectStore&) = delete;
  LocalObjectStore& operator=(const LocalObjectStore&) = delete;

  absl::StatusOr<std::unique_ptr<ObjectWriter>> NewWriter() override;
  // Writes without hashing (see ObjectStore::PutHashed).
  absl::Status PutHashed(const Digest& digest, std::string_view data) override;
  // Objects are written to temp files as they come; Commit() syncs them all,
  // renames them into place and syncs each shard directory once.
  absl::StatusOr<std::unique_ptr<ObjectWriteBatch>> NewWriteBatch() override;
  absl::StatusOr<std::unique_ptr<ObjectReader>> Open(const Digest& digest) override;
  absl::StatusOr<std::unique_ptr<ObjectReader>> OpenRange(const Digest& digest, uint64_t offset,
                                                          uint64_t length) override;
  absl::StatusOr<bool> Has(const Digest& digest) override;
  absl::StatusOr<uint64_t> Size(const Digest& digest) override;
  absl::Status Delete(const Digest& digest) override;
  absl::Status List(const std::function<absl::Status(const ObjectInfo&)>& fn) override;

  // Deletes the temp files (and lock files) of owners that are gone: their
  // lock is free. Live writers' files, in any process, are left alone.
  // Returns how many files were deleted.
  absl::StatusOr<int> RemoveTempFiles();
  // A new temp file name of this store's owner.
  std::string NewTempPath() const;

  const std::string& root() const { return root_; }
  // Where the object `digest` lives: <root>/ab/cd/abcd....
  std::string ObjectPath(const Digest& digest) const;
  std::string TempDir() const;

 private:
  LocalObjectStore(Env& env, std::string root) : env_(env), root_(std::move(root)) {}

  Env& env_;
  const std::string root_;
  std::string owner_;                      // 16 hex characters
  std::unique_ptr<FileLock> owner_lock_;   // tmp/<owner_>.lock, held while open
};

// Name checks shared with fsck: two lowercase hex characters, and a full
// lowercase 64-hex-character object name.
bool IsShardName(std::string_view name);
bool IsObjectName(std::string_view name);
// The owner of a name in tmp/: "<owner>" of "<owner>.lock" or
// "<owner>-<random>.tmp"; empty for anything else.
std::string_view TempFileOwner(std::string_view name);
bool IsOwnerLockName(std::string_view name);

}  // namespace cairn::store

#endif  // CAIRN_STORE_LOCAL_OBJECT_STORE_H_
