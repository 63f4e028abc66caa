// Env: the process's window on files, the clock and sleeping. Every module
// that touches the file system or the clock takes an Env& so that tests can
// substitute an in-memory Env (NewMemEnv), a fault-injecting one
// (FaultInjectionEnv) or a fake clock.
//
// Thread-safety: every Env implementation is thread-safe. File objects are
// not: one thread at a time may use a given file object.
//
// Ownership: the caller owns every file object an Env returns; file objects
// must not outlive their Env.
//
// Usage:
//   std::unique_ptr<Env> env = NewPosixEnv();
//   ASSIGN_OR_RETURN(auto file, env->NewWritableFile("/data/x.tmp"));
//   RETURN_IF_ERROR(file->Append("hello"));
//   RETURN_IF_ERROR(file->Sync());
//   RETURN_IF_ERROR(file->Close());
//   RETURN_IF_ERROR(env->RenameFile("/data/x.tmp", "/data/x"));
//   RETURN_IF_ERROR(env->SyncDir("/data"));
#ifndef CAIRN_BASE_ENV_H_
#define CAIRN_BASE_ENV_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace cairn {

// A file read from start to end.
class SequentialFile {
 public:
  virtual ~SequentialFile() = default;
  // Reads up to `n` bytes into `scratch`; returns the number read, 0 at end of file.
  virtual absl::StatusOr<size_t> Read(char* scratch, size_t n) = 0;
  // Skips `n` bytes (or to end of file).
  virtual absl::Status Skip(uint64_t n) = 0;
};

// A file read at arbitrary offsets.
class RandomAccessFile {
 public:
  virtual ~RandomAccessFile() = default;
  // Reads up to `n` bytes at `offset` into `scratch`; returns the number read
  // (fewer than `n` only at end of file).
  virtual absl::StatusOr<size_t> Read(uint64_t offset, char* scratch, size_t n) const = 0;
};

// A file written sequentially. Data is durable only after Sync() returns OK.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual absl::Status Append(std::string_view data) = 0;
  // Makes everything appended so far durable (fsync).
  virtual absl::Status Sync() = 0;
  // Closes the file; further calls are errors. The destructor closes too,
  // ignoring errors.
  virtual absl::Status Close() = 0;
};

struct FileInfo {
  std::string name;  // Entry name within its directory (no path).
  bool is_dir = false;
  uint64_t size = 0;
  int64_t mtime_micros = 0;  // Last modification (files); garbage collection's grace period reads it.
};

// A held lock on a file (Env::LockFile); released when destroyed.
class FileLock {
 public:
  virtual ~FileLock() = default;
};

class Env {
 public:
  virtual ~Env() = default;

  virtual absl::StatusOr<std::unique_ptr<SequentialFile>> NewSequentialFile(const std::string& path) = 0;
  virtual absl::StatusOr<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) = 0;
  // Creates or truncates `path`.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) = 0;

  virtual bool FileExists(const std::string& path) = 0;
  // kNotFound when `path` does not exist.
  virtual absl::StatusOr<uint64_t> GetFileSize(const std::string& path) = 0;
  // Entries of directory `dir` (without "." and ".."), in no particular order.
  virtual absl::StatusOr<std::vector<FileInfo>> GetChildren(const std::string& dir) = 0;
  virtual absl::Status DeleteFile(const std::string& path) = 0;
  // Creates `dir` and any missing parents; OK if it already exists.
  virtual absl::Status CreateDirs(const std::string& dir) = 0;
  // Removes an empty directory.
  virtual absl::Status DeleteDir(const std::string& dir) = 0;
  // Atomically replaces `to` with `from`.
  virtual absl::Status RenameFile(const std::string& from, const std::string& to) = 0;
  // Makes directory entries (creations, renames) in `dir` durable.
  virtual absl::Status SyncDir(const std::string& dir) = 0;
  // Sets the modification time of file `path` to now (kNotFound if absent).
  // Stores "freshen" an object they were asked to write again, so garbage
  // collection's grace period also protects objects reused by a new writer.
  virtual absl::Status TouchFile(const std::string& path) = 0;
  // Makes the content of the (closed) file `path` durable, like
  // WritableFile::Sync: lets a writer write many files and sync them all at
  // the end, when most of their data has already been written back.
  virtual absl::Status SyncFile(const std::string& path) = 0;
  // Makes everything written so far to the file system holding `path` (file
  // contents, directory entries) durable: one wait for a batch of thousands
  // of files (Linux syncfs). It also flushes other writers' data on that
  // file system, so use it for large batches only.
  virtual absl::Status SyncFileSystem(const std::string& path) = 0;
  // Starts writing the file's dirty pages to disk without waiting (Linux
  // sync_file_range WRITE), so that a later sync finds little left to do.
  // A hint: guarantees nothing; the default does nothing.
  virtual void StartWriteback(const std::string& path) {}
  // Takes an exclusive lock on `path` (created if missing), held until the
  // returned object is destroyed; kUnavailable if anyone (another process, or
  // another LockFile in this one) holds it. A crashed holder's lock is
  // released by the system, so "can I lock it?" tells whether its owner is
  // alive.
  virtual absl::StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) = 0;

  // Microseconds since the Unix epoch (wall clock).
  virtual int64_t NowMicros() = 0;
  // Monotonic microseconds, for measuring durations.
  virtual int64_t MonotonicMicros() = 0;
  virtual void SleepForMicros(int64_t micros) = 0;

  // Convenience helpers built on the virtual methods above.
  absl::StatusOr<std::string> ReadFileToString(const std::string& path);
  // Writes `data` durably: temp file + Sync + rename + SyncDir.
  absl::Status WriteFileAtomic(const std::string& path, std::string_view data);
};

// The real file system and clock.
std::unique_ptr<Env> NewPosixEnv();

// In-memory and fault-injecting Envs for tests live in base/mem_env.h and
// base/fault_injection_env.h.

// Joins path components with '/'.
std::string JoinPath(std::string_view a, std::string_view b);
// The directory part of `path` ("a/b/c" -> "a/b"; "c" -> ".").
std::string DirName(std::string_view path);
// The first executable `dir/program` for the dirs of the ':'-separated
// `search_path` (like $PATH), or "" when there is none.
std::string FindExecutable(const std::string& program, const std::string& search_path);

}  // namespace cairn

#endif  // CAIRN_BASE_ENV_H_
