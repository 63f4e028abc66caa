// MemEnv: an in-memory Env for tests, with a crash simulator and a fake clock.
//
// Files and directories live in a map; paths are normalised ("a//b/" is
// "a/b"). "/" and "." always exist. As on POSIX, creating a file needs its
// parent directory, FileExists() is true for directories too, and a file
// object keeps working on the file's contents after the file is renamed.
// NewWritableFile on an existing path starts a new, empty file (readers
// holding the old one keep seeing the old bytes, like an unlinked inode).
//
// Crash model (DropUnsyncedData), kept deliberately simple:
//   * a file's bytes appended after its last successful Sync() are lost
//     (its contents are truncated to the length at that Sync);
//   * a file that was never synced disappears;
//   * directory operations (create, rename, delete) are durable at once,
//     so SyncDir() only checks that the directory exists.
//
// Clock: the real clock until SetNowMicros() or AdvanceMicros() is called;
// from then on NowMicros() and MonotonicMicros() are fake and only move when
// told to, and SleepForMicros() advances the fake clock instead of sleeping.
//
// Thread-safety: thread-safe (one mutex for the namespace, one per file).
//
// Usage:
//   std::unique_ptr<MemEnv> env = NewMemEnv();
//   ASSERT_OK(env->CreateDirs("/data"));
//   ASSERT_OK(env->WriteFileAtomic("/data/x", "hello"));
//   env->DropUnsyncedData();          // "power loss"
//   env->SetNowMicros(1'700'000'000'000'000);
#ifndef CAIRN_BASE_MEM_ENV_H_
#define CAIRN_BASE_MEM_ENV_H_

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/env.h"

namespace cairn {

class MemEnv : public Env {
 public:
  MemEnv();
  ~MemEnv() override;
  MemEnv(const MemEnv&) = delete;
  MemEnv& operator=(const MemEnv&) = delete;

  absl::StatusOr<std::unique_ptr<SequentialFile>> NewSequentialFile(const std::string& path) override;
  absl::StatusOr<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override;
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override;
  bool FileExists(const std::string& path) override;
  absl::StatusOr<uint64_t> GetFileSize(const std::string& path) override;
  absl::StatusOr<std::vector<FileInfo>> GetChildren(const std::string& dir) override;
  absl::Status DeleteFile(const std::string& path) override;
  absl::Status CreateDirs(const std::string& dir) override;
  absl::Status DeleteDir(const std::string& dir) override;
  absl::Status RenameFile(const std::string& from, const std::string& to) override;
  absl::Status SyncDir(const std::string& dir) override;
  // The modification time is the file's creation time or its last touch.
  absl::Status TouchFile(const std::string& path) override;
  absl::Status SyncFile(const std::string& path) override;
  // Syncs every file (the MemEnv is one file system).
  absl::Status SyncFileSystem(const std::string& path) override;
  absl::StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) override;
  int64_t NowMicros() override;
  int64_t MonotonicMicros() override;
  void SleepForMicros(int64_t micros) override;

  // Simulates a crash: see the crash model above.
  void DropUnsyncedData();

  // Switches to the fake clock, set to `micros` (wall clock); the fake
  // monotonic clock moves by the same amount.
  void SetNowMicros(int64_t micros);
  // Switches to the fake clock (starting from the real time if it was not
  // fake yet) and moves both fake clocks forward by `micros`.
  void AdvanceMicros(int64_t micros);

  // Total bytes held in files (for tests checking memory use).
  uint64_t TotalFileBytes();

  struct FileState;

 private:
  static std::string Normalize(const std::string& path);
  bool DirExistsLocked(const std::string& norm) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::shared_ptr<FileState>> FindFile(const std::string& path, std::string_view op);

  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<FileState>> files_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> dirs_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> locked_ ABSL_GUARDED_BY(mu_);

  absl::Mutex clock_mu_;
  std::optional<int64_t> fake_now_ ABSL_GUARDED_BY(clock_mu_);
  int64_t fake_monotonic_ ABSL_GUARDED_BY(clock_mu_) = 0;
};

std::unique_ptr<MemEnv> NewMemEnv();

}  // namespace cairn

#endif  // CAIRN_BASE_MEM_ENV_H_
