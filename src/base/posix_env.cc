// The real Env: POSIX file descriptors and clock_gettime.
//
// Error mapping (errno -> absl code): ENOENT/ENOTDIR -> kNotFound,
// EEXIST -> kAlreadyExists, ENOSPC/EDQUOT -> kResourceExhausted,
// EACCES/EPERM/EROFS -> kPermissionDenied, ENOTEMPTY -> kFailedPrecondition,
// anything else -> kInternal. Messages read "<op> <path>: <strerror>".
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include <fmt/format.h>

#include "base/env.h"

namespace cairn {

namespace {
class PosixFileLock final : public FileLock {
 public:
  explicit PosixFileLock(int fd) : fd_(fd) {}
  ~PosixFileLock() override { ::close(fd_); }  // closing releases the flock

 private:
  int fd_;
};
}  // namespace
namespace {

absl::Status ErrnoStatus(std::string_view op, const std::string& path, int err) {
  std::string message = fmt::format("{} {}: {}", op, path, std::generic_category().message(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EEXIST:
      return absl::AlreadyExistsError(message);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    case ENOTEMPTY:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

class PosixSequentialFile final : public SequentialFile {
 public:
  PosixSequentialFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixSequentialFile() override { ::close(fd_); }

  absl::StatusOr<size_t> Read(char* scratch, size_t n) override {
    for (;;) {
      ssize_t r = ::read(fd_, scratch, n);
      if (r >= 0) return static_cast<size_t>(r);
      if (errno != EINTR) return ErrnoStatus("read", path_, errno);
    }
  }

  absl::Status Skip(uint64_t n) override {
    if (::lseek(fd_, static_cast<off_t>(n), SEEK_CUR) < 0) return ErrnoStatus("lseek", path_, errno);
    return absl::OkStatus();
  }

 private:
  const std::string path_;
  const int fd_;
};

class PosixRandomAccessFile final : public RandomAccessFile {
 public:
  PosixRandomAccessFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixRandomAccessFile() override { ::close(fd_); }

  absl::StatusOr<size_t> Read(uint64_t offset, char* scratch, size_t n) const override {
    // pread may return fewer bytes than asked before end of file; keep going
    // so that a short count means end of file, as the interface promises.
    size_t done = 0;
    while (done < n) {
      ssize_t r = ::pread(fd_, scratch + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("pread", path_, errno);
      }
      if (r == 0) break;
      done += static_cast<size_t>(r);
    }
    return done;
  }

 private:
  const std::string path_;
  const int fd_;
};

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  // Writes go straight to the kernel: callers that append small pieces keep
  // their own buffer (the object store uses 1 MiB).
  absl::Status Append(std::string_view data) override {
    if (fd_ < 0) return absl::FailedPreconditionError(fmt::format("append {}: file is closed", path_));
    const char* p = data.data();
    size_t left = data.size();
    while (left > 0) {
      ssize_t r = ::write(fd_, p, left);
      if (r < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("write", path_, errno);
      }
      p += r;
      left -= static_cast<size_t>(r);
    }
    return absl::OkStatus();
  }

  absl::Status Sync() override {
    if (fd_ < 0) return absl::FailedPreconditionError(fmt::format("sync {}: file is closed", path_));
    if (::fsync(fd_) != 0) return ErrnoStatus("fsync", path_, errno);
    return absl::OkStatus();
  }

  absl::Status Close() override {
    if (fd_ < 0) return absl::FailedPreconditionError(fmt::format("close {}: file is closed", path_));
    int fd = fd_;
    fd_ = -1;
    // No retry on EINTR: on Linux the descriptor is released anyway.
    if (::close(fd) != 0 && errno != EINTR) return ErrnoStatus("close", path_, errno);
    return absl::OkStatus();
  }

 private:
  const std::string path_;
  int fd_;
};

int OpenRetrying(const std::string& path, int flags, mode_t mode = 0) {
  for (;;) {
    int fd = ::open(path.c_str(), flags, mode);
    if (fd >= 0 || errno != EINTR) return fd;
  }
}

class PosixEnv final : public Env {
 public:
  absl::StatusOr<std::unique_ptr<SequentialFile>> NewSequentialFile(const std::string& path) override {
    int fd = OpenRetrying(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open", path, errno);
#ifdef POSIX_FADV_SEQUENTIAL
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    return std::make_unique<PosixSequentialFile>(path, fd);
  }

  absl::StatusOr<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override {
    int fd = OpenRetrying(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open", path, errno);
    return std::make_unique<PosixRandomAccessFile>(path, fd);
  }

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    int fd = OpenRetrying(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoStatus("create", path, errno);
    return std::make_unique<PosixWritableFile>(path, fd);
  }

  bool FileExists(const std::string& path) override { return ::access(path.c_str(), F_OK) == 0; }

  absl::StatusOr<uint64_t> GetFileSize(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return ErrnoStatus("stat", path, errno);
    return static_cast<uint64_t>(st.st_size);
  }

  absl::StatusOr<std::vector<FileInfo>> GetChildren(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return ErrnoStatus("opendir", dir, errno);
    std::vector<FileInfo> out;
    const int dfd = ::dirfd(d);
    for (;;) {
      errno = 0;
      struct dirent* e = ::readdir(d);
      if (e == nullptr) {
        if (errno != 0) {
          int err = errno;
          ::closedir(d);
          return ErrnoStatus("readdir", dir, err);
        }
        break;
      }
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      struct stat st;
      if (::fstatat(dfd, e->d_name, &st, 0) != 0) {
        if (errno == ENOENT) continue;  // Removed since readdir saw it.
        int err = errno;
        ::closedir(d);
        return ErrnoStatus("stat", JoinPath(dir, e->d_name), err);
      }
      FileInfo info;
      info.name = e->d_name;
      info.is_dir = S_ISDIR(st.st_mode);
      info.size = info.is_dir ? 0 : static_cast<uint64_t>(st.st_size);
      info.mtime_micros = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000 + st.st_mtim.tv_nsec / 1000;
      out.push_back(std::move(info));
    }
    ::closedir(d);
    return out;
  }

  absl::Status SyncFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open", path, errno);
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0) return ErrnoStatus("fsync", path, err);
    return absl::OkStatus();
  }

  absl::Status SyncFileSystem(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open", path, errno);
    int rc = ::syncfs(fd);  // reports writeback errors since Linux 5.8
    int err = errno;
    ::close(fd);
    if (rc != 0) return ErrnoStatus("syncfs", path, err);
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) override {
    for (int attempt = 0; attempt < 100; ++attempt) {
      int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (fd < 0) return ErrnoStatus("open", path, errno);
      // flock locks belong to the open file description: a second LockFile
      // in this process conflicts too (fcntl locks would not).
      if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        ::close(fd);
        if (err == EWOULDBLOCK) return absl::UnavailableError(fmt::format("{} is locked by another writer", path));
        return ErrnoStatus("flock", path, err);
      }
      // Someone who held the lock before us may have deleted the file in
      // between: then we locked a file nobody can see. Lock the new one.
      struct stat held, now;
      if (::fstat(fd, &held) == 0 && ::stat(path.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
          held.st_dev == now.st_dev) {
        return std::unique_ptr<FileLock>(new PosixFileLock(fd));
      }
      ::close(fd);
    }
    return absl::UnavailableError(fmt::format("{} keeps being replaced; cannot lock it", path));
  }

  void StartWriteback(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    ::close(fd);
  }

  absl::Status TouchFile(const std::string& path) override {
    if (::utimensat(AT_FDCWD, path.c_str(), nullptr, 0) != 0) return ErrnoStatus("utimensat", path, errno);
    return absl::OkStatus();
  }

  absl::Status DeleteFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return ErrnoStatus("unlink", path, errno);
    return absl::OkStatus();
  }

  absl::Status CreateDirs(const std::string& dir) override {
    if (dir.empty()) return absl::InvalidArgumentError("CreateDirs: empty path");
    // Fast path: usually the directory or its parent exists.
    if (IsDir(dir)) return absl::OkStatus();
    std::string partial;
    partial.reserve(dir.size());
    size_t pos = 0;
    while (pos <= dir.size()) {
      size_t slash = dir.find('/', pos);
      if (slash == std::string::npos) slash = dir.size();
      partial.assign(dir, 0, slash);
      pos = slash + 1;
      if (partial.empty() || partial.back() == '/') continue;  // Leading or doubled '/'.
      if (::mkdir(partial.c_str(), 0755) == 0) continue;
      int err = errno;
      if (err == EEXIST) {
        if (IsDir(partial)) continue;
        return absl::AlreadyExistsError(fmt::format("mkdir {}: exists and is not a directory", partial));
      }
      return ErrnoStatus("mkdir", partial, err);
    }
    return absl::OkStatus();
  }

  absl::Status DeleteDir(const std::string& dir) override {
    if (::rmdir(dir.c_str()) != 0) return ErrnoStatus("rmdir", dir, errno);
    return absl::OkStatus();
  }

  absl::Status RenameFile(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return ErrnoStatus("rename", fmt::format("{} -> {}", from, to), errno);
    }
    return absl::OkStatus();
  }

  absl::Status SyncDir(const std::string& dir) override {
    int fd = OpenRetrying(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open", dir, errno);
    absl::Status status;
    if (::fsync(fd) != 0) status = ErrnoStatus("fsync", dir, errno);
    ::close(fd);
    return status;
  }

  int64_t NowMicros() override { return ClockMicros(CLOCK_REALTIME); }
  int64_t MonotonicMicros() override { return ClockMicros(CLOCK_MONOTONIC); }

  void SleepForMicros(int64_t micros) override {
    if (micros <= 0) return;
    struct timespec ts;
    ts.tv_sec = static_cast<time_t>(micros / 1000000);
    ts.tv_nsec = static_cast<long>((micros % 1000000) * 1000);
    while (::nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }

 private:
  static bool IsDir(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  }

  static int64_t ClockMicros(clockid_t clock) {
    struct timespec ts;
    ::clock_gettime(clock, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
  }
};

}  // namespace

std::unique_ptr<Env> NewPosixEnv() { return std::make_unique<PosixEnv>(); }

}  // namespace cairn
