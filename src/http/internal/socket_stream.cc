#include "http/internal/socket_stream.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

#include <boost/asio/error.hpp>

namespace cairn::http::internal {

namespace {

boost::system::error_code Errno(int err) { return {err, boost::system::system_category()}; }

}  // namespace

SocketStream::SocketStream(int fd, int64_t timeout_ms) : fd_(fd), timeout_ms_(timeout_ms) {
  int flags = ::fcntl(fd_, F_GETFL, 0);
  if (flags >= 0 && !(flags & O_NONBLOCK)) ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

SocketStream::~SocketStream() {
  if (fd_ >= 0) ::close(fd_);
}

bool SocketStream::Wait(short events, boost::system::error_code& ec) {
  pollfd p{fd_, events, 0};
  for (;;) {
    int timeout = timeout_ms_ < 0 ? -1 : static_cast<int>(std::min<int64_t>(timeout_ms_, 1 << 30));
    int r = ::poll(&p, 1, timeout);
    if (r > 0) return true;  // including POLLHUP/POLLERR: the next syscall reports it
    if (r == 0) {
      ec = boost::asio::error::timed_out;
      return false;
    }
    if (errno != EINTR) {
      ec = Errno(errno);
      return false;
    }
  }
}

size_t SocketStream::ReadV(iovec* iov, int n, boost::system::error_code& ec) {
  ec = {};
  if (n == 0) return 0;
  for (;;) {
    ssize_t r = ::readv(fd_, iov, n);
    if (r > 0) return static_cast<size_t>(r);
    if (r == 0) {
      ec = boost::asio::error::eof;
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!Wait(POLLIN, ec)) return 0;
      continue;
    }
    ec = Errno(errno);
    return 0;
  }
}

size_t SocketStream::WriteV(const iovec* iov, int n, boost::system::error_code& ec) {
  ec = {};
  if (n == 0) return 0;
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = static_cast<size_t>(n);
  for (;;) {
    ssize_t r = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (r >= 0) return static_cast<size_t>(r);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!Wait(POLLOUT, ec)) return 0;
      continue;
    }
    ec = Errno(errno);
    return 0;
  }
}

void SocketStream::WriteAll(const char* data, size_t n, boost::system::error_code& ec) {
  ec = {};
  while (n > 0) {
    iovec iov{const_cast<char*>(data), n};
    size_t w = WriteV(&iov, 1, ec);
    if (ec) return;
    data += w;
    n -= w;
  }
}

void SocketStream::Shutdown() { ::shutdown(fd_, SHUT_RDWR); }

void SocketStream::Linger(int64_t total_ms, int64_t read_ms) {
  ::shutdown(fd_, SHUT_WR);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(total_ms);
  char scratch[65536];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    timeout_ms_ = std::min<int64_t>(left.count(), read_ms);
    iovec iov{scratch, sizeof(scratch)};
    boost::system::error_code ec;
    ReadV(&iov, 1, ec);
    if (ec) break;  // EOF, timeout, reset or shut down by another thread
  }
}

bool SocketStream::PeerClosedOrReadable() const {
  char c;
  ssize_t r = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return false;
  return true;
}

}  // namespace cairn::http::internal
