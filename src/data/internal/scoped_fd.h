// ScopedFd: owns a POSIX file descriptor and closes it when destroyed. For
// the data module's client-side code that reads real directories and files
// directly (tree scanning, ingest), where Env's abstractions would cost a
// path lookup per call.
//
// Thread-safety: not thread-safe; one owner.
//
// Usage:
//   ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
//   if (fd.get() < 0) return ErrnoError(...);
#ifndef CAIRN_DATA_INTERNAL_SCOPED_FD_H_
#define CAIRN_DATA_INTERNAL_SCOPED_FD_H_

#include <unistd.h>

namespace cairn::data::internal {

class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace cairn::data::internal

#endif  // CAIRN_DATA_INTERNAL_SCOPED_FD_H_
