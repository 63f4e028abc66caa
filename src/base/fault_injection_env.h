// FaultInjectionEnv: an Env wrapper for tests that makes chosen operations
// fail, to check that callers leave consistent state behind (no partial
// objects, no acknowledged-but-lost writes) and recover afterwards.
//
// Each intercepted operation belongs to an Op. FailAfter(op, n, s) lets the
// next `n` calls of `op` succeed and fails every later one with `s` (the
// underlying Env is not called for a failed operation) until Reset() or
// ClearFailure(op). CallCount(op) counts every call, failed or not.
// Operations that are not intercepted (GetChildren, FileExists, clock...)
// pass straight through.
//
// Ops and where they are checked:
//   kCreate     Env::NewWritableFile       kAppend   WritableFile::Append
//   kSync       WritableFile::Sync         kClose    WritableFile::Close
//   kRead       Sequential/RandomAccessFile::Read (opening a file is free)
//   kRename     Env::RenameFile            kDeleteFile Env::DeleteFile
//   kSyncDir    Env::SyncDir               kCreateDirs Env::CreateDirs
//
// Thread-safety: thread-safe. Ownership: does not own `base`, which must
// outlive this Env and every file it returned.
//
// Usage:
//   std::unique_ptr<MemEnv> mem = NewMemEnv();
//   FaultInjectionEnv env(*mem);
//   env.FailAfter(FaultInjectionEnv::Op::kSync, 0, absl::InternalError("injected"));
//   EXPECT_THAT(WriteSomething(env), StatusIs(absl::StatusCode::kInternal));
//   env.Reset();
#ifndef CAIRN_BASE_FAULT_INJECTION_ENV_H_
#define CAIRN_BASE_FAULT_INJECTION_ENV_H_

#include <array>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/env.h"

namespace cairn {

class FaultInjectionEnv : public Env {
 public:
  enum class Op { kCreate, kAppend, kSync, kClose, kRead, kRename, kDeleteFile, kSyncDir, kCreateDirs };
  static constexpr int kNumOps = 9;
  static std::string_view OpName(Op op);

  explicit FaultInjectionEnv(Env& base);
  FaultInjectionEnv(const FaultInjectionEnv&) = delete;
  FaultInjectionEnv& operator=(const FaultInjectionEnv&) = delete;

  // After `n` more successful calls of `op`, every call fails with `status`
  // (REQUIRES: !status.ok(), n >= 0).
  void FailAfter(Op op, int n, absl::Status status);
  // Every create/append/sync/close fails with kResourceExhausted (ENOSPC).
  void FailWritesWithNoSpace();
  void ClearFailure(Op op);
  // Clears every failure and every call count.
  void Reset();
  // Calls of `op` since construction or the last Reset().
  int CallCount(Op op);

  // Returns the error to inject for one call of `op` (OK if none) and
  // counts the call. Used by the wrapped file objects.
  absl::Status MaybeFail(Op op);

  absl::StatusOr<std::unique_ptr<SequentialFile>> NewSequentialFile(const std::string& path) override;
  absl::StatusOr<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override;
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override;
  bool FileExists(const std::string& path) override { return base_.FileExists(path); }
  absl::StatusOr<uint64_t> GetFileSize(const std::string& path) override { return base_.GetFileSize(path); }
  absl::StatusOr<std::vector<FileInfo>> GetChildren(const std::string& dir) override {
    return base_.GetChildren(dir);
  }
  absl::Status DeleteFile(const std::string& path) override;
  absl::Status CreateDirs(const std::string& dir) override;
  absl::Status DeleteDir(const std::string& dir) override { return base_.DeleteDir(dir); }
  absl::Status RenameFile(const std::string& from, const std::string& to) override;
  absl::Status TouchFile(const std::string& path) override { return base_.TouchFile(path); }
  // Counts as kSync.
  absl::Status SyncFile(const std::string& path) override;
  // Counts as kSync.
  absl::Status SyncFileSystem(const std::string& path) override;
  absl::StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) override { return base_.LockFile(path); }
  absl::Status SyncDir(const std::string& dir) override;
  int64_t NowMicros() override { return base_.NowMicros(); }
  int64_t MonotonicMicros() override { return base_.MonotonicMicros(); }
  void SleepForMicros(int64_t micros) override { base_.SleepForMicros(micros); }

 private:
  struct Rule {
    int remaining_ok = 0;
    absl::Status status;
  };

  Env& base_;
  absl::Mutex mu_;
  std::array<std::optional<Rule>, kNumOps> rules_ ABSL_GUARDED_BY(mu_);
  std::array<int, kNumOps> counts_ ABSL_GUARDED_BY(mu_){};
};

}  // namespace cairn

#endif  // CAIRN_BASE_FAULT_INJECTION_ENV_H_
