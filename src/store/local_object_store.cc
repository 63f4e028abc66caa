#include "store/local_object_store.h"

#include <algorithm>
#include <optional>
#include <set>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"

#include <fmt/format.h>

#include "base/ids.h"

namespace cairn::store {
namespace {

// Writes reach the Env in pieces of at least this size (unless the object is
// smaller): few syscalls, bounded memory per writer.
constexpr size_t kWriteBufferSize = 1 << 20;

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

class LocalObjectWriter final : public ObjectWriter {
 public:
  // With `known_digest`, the caller vouches for the content's digest and the
  // writer does not hash (ObjectStore::PutHashed).
  LocalObjectWriter(Env& env, const LocalObjectStore& store, std::string tmp_path,
                    std::unique_ptr<WritableFile> file, std::optional<Digest> known_digest = std::nullopt)
      : env_(env),
        store_(store),
        tmp_path_(std::move(tmp_path)),
        file_(std::move(file)),
        known_digest_(known_digest) {}

  ~LocalObjectWriter() override {
    if (!done_) Discard();
  }

  absl::Status Append(std::string_view data) override {
    if (done_) return absl::FailedPreconditionError("object writer: Append after Commit");
    RETURN_IF_ERROR(status_);
    if (!known_digest_) hasher_.Update(data);
    size_ += data.size();
    if (buffer_.size() + data.size() <= kWriteBufferSize) {
      if (buffer_.capacity() < kWriteBufferSize) buffer_.reserve(kWriteBufferSize);
      buffer_.append(data);
      return absl::OkStatus();
    }
    status_ = Flush();
    if (status_.ok()) {
      if (data.size() >= kWriteBufferSize) {
        status_ = file_->Append(data);  // Large pieces skip the copy.
      } else {
        buffer_.append(data);
      }
    }
    return status_;
  }

  absl::StatusOr<ObjectInfo> Commit() override {
    if (done_) return absl::FailedPreconditionError("object writer: Commit called twice");
    absl::StatusOr<ObjectInfo> result = status_.ok() ? Publish() : status_;
    if (!result.ok()) Discard();
    done_ = true;
    return result;
  }

 private:
  absl::Status Flush() {
    if (buffer_.empty()) return absl::OkStatus();
    absl::Status s = file_->Append(buffer_);
    buffer_.clear();
    return s;
  }

  absl::StatusOr<ObjectInfo> Publish() {
    RETURN_IF_ERROR(Flush());
    RETURN_IF_ERROR(file_->Sync());
    RETURN_IF_ERROR(file_->Close());
    file_.reset();
    ObjectInfo info{known_digest_ ? *known_digest_ : hasher_.Finish(), size_};
    const std::string path = store_.ObjectPath(info.digest);

    // Dedup: the same bytes are already stored. A copy of the wrong size
    // (damaged) is replaced instead.
    absl::StatusOr<uint64_t> existing = env_.GetFileSize(path);
    if (existing.ok() && *existing == info.size) {
      // The object is already durable; a temp file we fail to delete here
      // is removed by the next Create(). Freshen it, so that garbage
      // collection's grace period covers this writer's use of it.
      env_.DeleteFile(tmp_path_).IgnoreError();
      RETURN_IF_ERROR(env_.TouchFile(path));
      return info;
    }

    const std::string shard2 = DirName(path);
    if (!env_.FileExists(shard2)) {
      // New directories are durable only once their parents are synced.
      const std::string shard1 = DirName(shard2);
      RETURN_IF_ERROR(env_.CreateDirs(shard2));
      RETURN_IF_ERROR(env_.SyncDir(shard1));
      RETURN_IF_ERROR(env_.SyncDir(store_.root()));
    }
    RETURN_IF_ERROR(env_.RenameFile(tmp_path_, path));
    // From here the object is visible and complete; if this sync fails the
    // caller gets an error (not durable) but the object is left in place,
    // as another writer may already rely on it.
    RETURN_IF_ERROR(env_.SyncDir(shard2));
    return info;
  }

  // Drops the temp file; best effort (Create() removes leftovers).
  void Discard() {
    file_.reset();
    if (env_.FileExists(tmp_path_)) env_.DeleteFile(tmp_path_).IgnoreError();
  }

  Env& env_;
  const LocalObjectStore& store_;
  const std::string tmp_path_;
  std::unique_ptr<WritableFile> file_;
  const std::optional<Digest> known_digest_;
  Sha256 hasher_;
  std::string buffer_;
  uint64_t size_ = 0;
  absl::Status status_;  // First write error; the writer is dead after one.
  bool done_ = false;
};

class LocalObjectReader final : public ObjectReader {
 public:
  // Reads [begin, end) of `file`; when `verify`, the whole object is read
  // (begin == 0, end == size) and checked against `digest` at the end.
  LocalObjectReader(std::unique_ptr<RandomAccessFile> file, std::string path, const Digest& digest,
                    uint64_t begin, uint64_t end, bool verify)
      : file_(std::move(file)),
        path_(std::move(path)),
        digest_(digest),
        pos_(begin),
        begin_(begin),
        end_(end),
        verify_(verify) {}

  uint64_t size() const override { return end_ - begin_; }

  absl::StatusOr<size_t> Read(char* scratch, size_t n) override {
    RETURN_IF_ERROR(status_);
    if (pos_ == end_) {
      if (verify_ && !verified_) RETURN_IF_ERROR(Verify());
      return size_t{0};
    }
    n = static_cast<size_t>(std::min<uint64_t>(n, end_ - pos_));
    if (n == 0) return size_t{0};
    absl::StatusOr<size_t> got = file_->Read(pos_, scratch, n);
    if (!got.ok()) return status_ = got.status();
    if (*got == 0) {
      return status_ = absl::DataLossError(fmt::format("object {} at {} is truncated: expected {} bytes, found {}",
                                                       digest_.ToHex(), path_, end_, pos_));
    }
    pos_ += *got;
    if (verify_) {
      hasher_.Update(std::string_view(scratch, *got));
      // The bytes that complete the object are returned only if it checks out.
      if (pos_ == end_) RETURN_IF_ERROR(Verify());
    }
    return *got;
  }

 private:
  absl::Status Verify() {
    verified_ = true;
    char probe;
    absl::StatusOr<size_t> extra = file_->Read(end_, &probe, 1);
    if (!extra.ok()) return status_ = extra.status();
    if (*extra != 0) {
      return status_ = absl::DataLossError(fmt::format("object {} at {} is corrupt: longer than its expected {} bytes",
                                                       digest_.ToHex(), path_, end_));
    }
    Digest actual = hasher_.Finish();
    if (actual != digest_) {
      return status_ = absl::DataLossError(fmt::format("object {} at {} is corrupt: its content hashes to {}",
                                                       digest_.ToHex(), path_, actual.ToHex()));
    }
    return absl::OkStatus();
  }

  std::unique_ptr<RandomAccessFile> file_;
  const std::string path_;
  const Digest digest_;
  uint64_t pos_;
  const uint64_t begin_;
  const uint64_t end_;
  const bool verify_;
  bool verified_ = false;
  Sha256 hasher_;
  absl::Status status_;  // Sticky: a failed reader keeps failing.
};

}  // namespace

bool IsShardName(std::string_view name) {
  return name.size() == 2 && IsLowerHex(name[0]) && IsLowerHex(name[1]);
}

bool IsObjectName(std::string_view name) {
  return name.size() == 64 && std::all_of(name.begin(), name.end(), IsLowerHex);
}

absl::StatusOr<std::unique_ptr<LocalObjectStore>> LocalObjectStore::Create(Env& env, std::string root) {
  return Create(env, std::move(root), Options());
}

absl::StatusOr<std::unique_ptr<LocalObjectStore>> LocalObjectStore::Create(Env& env, std::string root,
                                                                           const Options& options) {
  if (root.empty()) return absl::InvalidArgumentError("object store root is empty");
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  std::unique_ptr<LocalObjectStore> store(new LocalObjectStore(env, std::move(root)));
  RETURN_IF_ERROR(env.CreateDirs(store->TempDir()));
  store->owner_ = NewRandomHex(8);
  ASSIGN_OR_RETURN(store->owner_lock_, env.LockFile(JoinPath(store->TempDir(), store->owner_ + ".lock")));
  if (options.remove_temp_files) RETURN_IF_ERROR(store->RemoveTempFiles().status());
  return store;
}

std::string LocalObjectStore::ObjectPath(const Digest& digest) const {
  const std::string hex = digest.ToHex();
  std::string path;
  path.reserve(root_.size() + 72);
  path.append(root_).append("/").append(hex, 0, 2).append("/").append(hex, 2, 2).append("/").append(hex);
  return path;
}

std::string LocalObjectStore::TempDir() const { return JoinPath(root_, "tmp"); }

std::string_view TempFileOwner(std::string_view name) {
  auto hex16 = [](std::string_view s) {
    return s.size() == 16 && std::all_of(s.begin(), s.end(), IsLowerHex);
  };
  if (name.size() == 21 && name.substr(16) == ".lock" && hex16(name.substr(0, 16))) return name.substr(0, 16);
  if (name.size() == 16 + 1 + 32 + 4 && name[16] == '-' && name.substr(49) == ".tmp" && hex16(name.substr(0, 16))) {
    return name.substr(0, 16);
  }
  return {};
}

bool IsOwnerLockName(std::string_view name) { return name.size() == 21 && !TempFileOwner(name).empty(); }

LocalObjectStore::~LocalObjectStore() {
  if (owner_lock_) {
    // Deleted while still held: nobody can take over the name meanwhile.
    env_.DeleteFile(JoinPath(TempDir(), owner_ + ".lock")).IgnoreError();
    owner_lock_.reset();
  }
}

std::string LocalObjectStore::NewTempPath() const {
  return JoinPath(TempDir(), owner_ + "-" + NewRandomHex(16) + ".tmp");
}

absl::StatusOr<int> LocalObjectStore::RemoveTempFiles() {
  const std::string dir = TempDir();
  ASSIGN_OR_RETURN(std::vector<FileInfo> entries, env_.GetChildren(dir));
  // Owners whose lock we can take are gone; hold their locks while their
  // files are removed, so no new owner can reuse the name meanwhile.
  absl::flat_hash_set<std::string> alive;
  std::vector<std::pair<std::string, std::unique_ptr<FileLock>>> dead;
  for (const FileInfo& e : entries) {
    if (e.is_dir || !IsOwnerLockName(e.name)) continue;
    std::string owner(TempFileOwner(e.name));
    if (owner == owner_) {
      alive.insert(owner);
      continue;
    }
    absl::StatusOr<std::unique_ptr<FileLock>> lock = env_.LockFile(JoinPath(dir, e.name));
    if (lock.ok()) {
      dead.emplace_back(owner, std::move(*lock));
    } else if (absl::IsUnavailable(lock.status())) {
      alive.insert(owner);
    } else {
      return lock.status();
    }
  }
  int removed = 0;
  for (const FileInfo& e : entries) {
    if (e.is_dir || IsOwnerLockName(e.name)) continue;
    std::string_view owner = TempFileOwner(e.name);
    if (!owner.empty() && alive.contains(std::string(owner))) continue;
    absl::Status s = env_.DeleteFile(JoinPath(dir, e.name));
    if (!s.ok() && !absl::IsNotFound(s)) return s;
    ++removed;
  }
  for (auto& [owner, lock] : dead) {
    absl::Status s = env_.DeleteFile(JoinPath(dir, owner + ".lock"));
    if (!s.ok() && !absl::IsNotFound(s)) return s;
    ++removed;
    lock.reset();
  }
  return removed;
}

absl::StatusOr<std::unique_ptr<ObjectWriter>> LocalObjectStore::NewWriter() {
  std::string tmp_path = NewTempPath();
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, env_.NewWritableFile(tmp_path));
  return std::make_unique<LocalObjectWriter>(env_, *this, std::move(tmp_path), std::move(file));
}

namespace {

// Batches of at least this many objects are synced file-system-wide.
constexpr size_t kWideSyncThreshold = 32;

class LocalWriteBatch final : public ObjectWriteBatch {
 public:
  LocalWriteBatch(Env& env, LocalObjectStore& store) : env_(env), store_(store) {}
  ~LocalWriteBatch() override {
    absl::MutexLock lock(&mu_);
    for (const Pending& p : pending_) env_.DeleteFile(p.tmp).IgnoreError();
  }

  absl::Status PutHashed(const Digest& digest, std::string_view data) override {
    const std::string path = store_.ObjectPath(digest);
    absl::StatusOr<uint64_t> existing = env_.GetFileSize(path);
    if (existing.ok() && *existing == data.size()) return env_.TouchFile(path);  // already durable
    {
      absl::MutexLock lock(&mu_);
      if (!queued_.insert(digest).second) return absl::OkStatus();
    }
    std::string tmp = store_.NewTempPath();
    absl::Status s = [&]() -> absl::Status {
      ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, env_.NewWritableFile(tmp));
      RETURN_IF_ERROR(file->Append(data));
      return file->Close();
    }();
    // The disk starts on it now, while the caller produces more, instead of
    // all at once in Commit's sync.
    if (s.ok()) env_.StartWriteback(tmp);
    absl::MutexLock lock(&mu_);
    if (!s.ok()) {
      queued_.erase(digest);
      env_.DeleteFile(tmp).IgnoreError();
      return s;
    }
    pending_.push_back({std::move(tmp), path, data.size()});
    return absl::OkStatus();
  }

  absl::Status Commit() override {
    std::vector<Pending> pending;
    {
      absl::MutexLock lock(&mu_);
      pending.swap(pending_);
      queued_.clear();
    }
    if (pending.empty()) return absl::OkStatus();
    // Until every rename is done, a failure leaves only temp files (removed
    // here or by the next Create()).
    auto cleanup = [&](size_t from) {
      for (size_t i = from; i < pending.size(); ++i) env_.DeleteFile(pending[i].tmp).IgnoreError();
    };
    // A large batch pays two file-system-wide syncs (contents, then
    // directory entries) instead of several fsyncs per object.
    const bool wide = pending.size() >= kWideSyncThreshold;
    absl::Status synced = absl::OkStatus();
    if (wide) {
      synced = env_.SyncFileSystem(store_.TempDir());
    } else {
      for (const Pending& p : pending) {
        synced = env_.SyncFile(p.tmp);
        if (!synced.ok()) break;
      }
    }
    if (!synced.ok()) {
      cleanup(0);
      return synced;
    }
    std::set<std::string> dirs_to_sync;  // shard directories, and parents of new ones
    for (size_t i = 0; i < pending.size(); ++i) {
      const Pending& p = pending[i];
      const std::string shard2 = DirName(p.path);
      absl::Status s = [&]() -> absl::Status {
        if (!env_.FileExists(shard2)) {
          RETURN_IF_ERROR(env_.CreateDirs(shard2));
          dirs_to_sync.insert(DirName(shard2));
          dirs_to_sync.insert(store_.root());
        }
        absl::StatusOr<uint64_t> existing = env_.GetFileSize(p.path);
        if (existing.ok() && *existing == p.size) {
          // Another writer stored it meanwhile.
          env_.DeleteFile(p.tmp).IgnoreError();
          return env_.TouchFile(p.path);
        }
        return env_.RenameFile(p.tmp, p.path);
      }();
      if (!s.ok()) {
        cleanup(i);
        return s;
      }
      dirs_to_sync.insert(shard2);
    }
    if (wide) return env_.SyncFileSystem(store_.root());
    for (const std::string& dir : dirs_to_sync) RETURN_IF_ERROR(env_.SyncDir(dir));
    return absl::OkStatus();
  }

 private:
  struct Pending {
    std::string tmp;
    std::string path;
    uint64_t size;
  };
  Env& env_;
  LocalObjectStore& store_;
  absl::Mutex mu_;
  std::vector<Pending> pending_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<Digest> queued_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<ObjectWriteBatch>> LocalObjectStore::NewWriteBatch() {
  return std::make_unique<LocalWriteBatch>(env_, *this);
}

absl::Status LocalObjectStore::PutHashed(const Digest& digest, std::string_view data) {
  const std::string path = ObjectPath(digest);
  absl::StatusOr<uint64_t> existing = env_.GetFileSize(path);
  if (existing.ok() && *existing == data.size()) return env_.TouchFile(path);
  std::string tmp_path = NewTempPath();
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, env_.NewWritableFile(tmp_path));
  LocalObjectWriter writer(env_, *this, std::move(tmp_path), std::move(file), digest);
  RETURN_IF_ERROR(writer.Append(data));
  return writer.Commit().status();
}

absl::StatusOr<std::unique_ptr<ObjectReader>> LocalObjectStore::Open(const Digest& digest) {
  const std::string path = ObjectPath(digest);
  ASSIGN_OR_RETURN(uint64_t size, Size(digest));
  ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file, env_.NewRandomAccessFile(path));
  return std::make_unique<LocalObjectReader>(std::move(file), path, digest, 0, size, /*verify=*/true);
}

absl::StatusOr<std::unique_ptr<ObjectReader>> LocalObjectStore::OpenRange(const Digest& digest, uint64_t offset,
                                                                          uint64_t length) {
  const std::string path = ObjectPath(digest);
  ASSIGN_OR_RETURN(uint64_t size, Size(digest));
  if (offset > size) {
    return absl::OutOfRangeError(
        fmt::format("offset {} is past the end of object {} ({} bytes)", offset, digest.ToHex(), size));
  }
  const uint64_t end = offset + std::min(length, size - offset);
  ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file, env_.NewRandomAccessFile(path));
  return std::make_unique<LocalObjectReader>(std::move(file), path, digest, offset, end, /*verify=*/false);
}

absl::StatusOr<bool> LocalObjectStore::Has(const Digest& digest) { return env_.FileExists(ObjectPath(digest)); }

absl::StatusOr<uint64_t> LocalObjectStore::Size(const Digest& digest) {
  absl::StatusOr<uint64_t> size = env_.GetFileSize(ObjectPath(digest));
  if (absl::IsNotFound(size.status())) {
    return absl::NotFoundError(fmt::format("object {} not found in {}", digest.ToHex(), root_));
  }
  return size;
}

absl::Status LocalObjectStore::Delete(const Digest& digest) {
  absl::Status s = env_.DeleteFile(ObjectPath(digest));
  if (absl::IsNotFound(s)) return absl::OkStatus();
  return s;
}

absl::Status LocalObjectStore::List(const std::function<absl::Status(const ObjectInfo&)>& fn) {
  auto sorted_children = [&](const std::string& dir) -> absl::StatusOr<std::vector<FileInfo>> {
    ASSIGN_OR_RETURN(std::vector<FileInfo> entries, env_.GetChildren(dir));
    std::sort(entries.begin(), entries.end(), [](const FileInfo& a, const FileInfo& b) { return a.name < b.name; });
    return entries;
  };
  ASSIGN_OR_RETURN(std::vector<FileInfo> level1, sorted_children(root_));
  for (const FileInfo& s1 : level1) {
    if (!s1.is_dir || !IsShardName(s1.name)) continue;  // tmp/ and strays: fsck's business.
    const std::string dir1 = JoinPath(root_, s1.name);
    ASSIGN_OR_RETURN(std::vector<FileInfo> level2, sorted_children(dir1));
    for (const FileInfo& s2 : level2) {
      if (!s2.is_dir || !IsShardName(s2.name)) continue;
      const std::string dir2 = JoinPath(dir1, s2.name);
      ASSIGN_OR_RETURN(std::vector<FileInfo> objects, sorted_children(dir2));
      for (const FileInfo& o : objects) {
        if (o.is_dir || !IsObjectName(o.name)) continue;
        if (o.name.compare(0, 2, s1.name) != 0 || o.name.compare(2, 2, s2.name) != 0) continue;
        ASSIGN_OR_RETURN(Digest digest, Digest::FromHex(o.name));
        RETURN_IF_ERROR(fn(ObjectInfo{digest, o.size, o.mtime_micros}));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace cairn::store
