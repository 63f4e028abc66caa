#include "store/fsck.h"

#include "absl/container/flat_hash_set.h"

#include <algorithm>
#include <memory>

#include <fmt/format.h>

#include "base/sha256.h"
#include "store/local_object_store.h"

namespace cairn::store {
namespace {

constexpr size_t kReadChunk = 1 << 20;
using Kind = FsckProblem::Kind;

class Checker {
 public:
  Checker(Env& env, std::function<void(uint64_t)> progress) : env_(env), progress_(std::move(progress)) {}

  absl::StatusOr<FsckReport> Run(const std::string& root) {
    ASSIGN_OR_RETURN(std::vector<FileInfo> level1, env_.GetChildren(root));
    Sort(level1);
    for (const FileInfo& e : level1) {
      const std::string path = JoinPath(root, e.name);
      if (e.name == "tmp" && e.is_dir) {
        CheckTempDir(path);
      } else if (!e.is_dir) {
        Report(Kind::kBadName, path, "unexpected file at the top of the store");
      } else if (!IsShardName(e.name)) {
        Report(Kind::kBadName, path, "unexpected directory: shard names are two lowercase hex digits");
      } else {
        CheckShard1(path, e.name);
      }
    }
    return std::move(report_);
  }

 private:
  static void Sort(std::vector<FileInfo>& v) {
    std::sort(v.begin(), v.end(), [](const FileInfo& a, const FileInfo& b) { return a.name < b.name; });
  }

  void Report(Kind kind, std::string path, std::string detail) {
    report_.problems.push_back(FsckProblem{kind, std::move(path), std::move(detail)});
  }

  // The entries of `dir`, or nullopt after reporting it unreadable.
  std::optional<std::vector<FileInfo>> List(const std::string& dir) {
    absl::StatusOr<std::vector<FileInfo>> entries = env_.GetChildren(dir);
    if (!entries.ok()) {
      Report(Kind::kUnreadable, dir, std::string(entries.status().message()));
      return std::nullopt;
    }
    Sort(*entries);
    return std::move(*entries);
  }

  // Files of live writers (their owner lock is held) are writes in
  // progress, not problems; anything else is a crashed writer's leftover.
  void CheckTempDir(const std::string& dir) {
    std::optional<std::vector<FileInfo>> entries = List(dir);
    if (!entries) return;
    absl::flat_hash_set<std::string> alive;
    for (const FileInfo& e : *entries) {
      if (e.is_dir || !IsOwnerLockName(e.name)) continue;
      absl::StatusOr<std::unique_ptr<FileLock>> lock = env_.LockFile(JoinPath(dir, e.name));
      if (absl::IsUnavailable(lock.status())) alive.insert(std::string(TempFileOwner(e.name)));
    }
    for (const FileInfo& e : *entries) {
      std::string_view owner = e.is_dir ? std::string_view() : TempFileOwner(e.name);
      if (!owner.empty() && alive.contains(std::string(owner))) continue;
      Report(Kind::kStrayTempFile, JoinPath(dir, e.name),
             e.is_dir ? "directory in tmp/"
                      : fmt::format("temp file of {} bytes left by a writer that is gone", e.size));
    }
  }

  void CheckShard1(const std::string& dir, const std::string& name1) {
    std::optional<std::vector<FileInfo>> entries = List(dir);
    if (!entries) return;
    for (const FileInfo& e : *entries) {
      const std::string path = JoinPath(dir, e.name);
      if (!e.is_dir) {
        Report(Kind::kBadName, path, "unexpected file in a first-level shard directory");
      } else if (!IsShardName(e.name)) {
        Report(Kind::kBadName, path, "unexpected directory: shard names are two lowercase hex digits");
      } else {
        CheckShard2(path, name1 + e.name);
      }
    }
  }

  void CheckShard2(const std::string& dir, const std::string& prefix) {
    std::optional<std::vector<FileInfo>> entries = List(dir);
    if (!entries) return;
    for (const FileInfo& e : *entries) {
      const std::string path = JoinPath(dir, e.name);
      if (e.is_dir) {
        Report(Kind::kBadName, path, "unexpected directory where objects belong");
      } else if (!IsObjectName(e.name)) {
        Report(Kind::kBadName, path, "file name is not a lowercase hex SHA-256 digest");
      } else if (e.name.compare(0, 4, prefix) != 0) {
        Report(Kind::kMisplaced, path,
               fmt::format("object belongs in {}/{}/", e.name.substr(0, 2), e.name.substr(2, 2)));
      } else {
        CheckObject(path, e.name);
      }
    }
  }

  void CheckObject(const std::string& path, const std::string& name) {
    absl::StatusOr<std::unique_ptr<SequentialFile>> file = env_.NewSequentialFile(path);
    if (!file.ok()) {
      Report(Kind::kUnreadable, path, std::string(file.status().message()));
      return;
    }
    if (!buffer_) buffer_.reset(new char[kReadChunk]);
    hasher_.Finish();  // Reset, in case an earlier object stopped halfway.
    uint64_t size = 0;
    for (;;) {
      absl::StatusOr<size_t> n = (*file)->Read(buffer_.get(), kReadChunk);
      if (!n.ok()) {
        Report(Kind::kUnreadable, path, std::string(n.status().message()));
        return;
      }
      if (*n == 0) break;
      hasher_.Update(std::string_view(buffer_.get(), *n));
      size += *n;
      report_.bytes_checked += *n;
      if (progress_) progress_(report_.bytes_checked);
    }
    ++report_.objects_checked;
    const std::string actual = hasher_.Finish().ToHex();
    if (actual != name) {
      Report(Kind::kCorrupt, path, fmt::format("content ({} bytes) hashes to {}", size, actual));
    }
  }

  Env& env_;
  std::function<void(uint64_t)> progress_;
  FsckReport report_;
  Sha256 hasher_;
  std::unique_ptr<char[]> buffer_;
};

}  // namespace

std::string_view FsckProblemKindName(FsckProblem::Kind kind) {
  switch (kind) {
    case Kind::kCorrupt: return "corrupt";
    case Kind::kMisplaced: return "misplaced";
    case Kind::kBadName: return "bad_name";
    case Kind::kStrayTempFile: return "stray_temp_file";
    case Kind::kUnreadable: return "unreadable";
  }
  return "?";
}

absl::StatusOr<FsckReport> FsckObjectStore(Env& env, const std::string& root,
                                           std::function<void(uint64_t done_bytes)> progress) {
  return Checker(env, std::move(progress)).Run(root);
}

}  // namespace cairn::store
