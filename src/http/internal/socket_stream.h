// A connected TCP socket wrapped as a Boost.Beast synchronous stream
// (SyncReadStream + SyncWriteStream) with poll()-based timeouts. Used by the
// http server and client instead of asio sockets because asio's synchronous
// operations cannot time out, and because another thread must be able to wake
// a blocked reader (Server::Stop) with shutdown().
//
// Thread-safety: one thread does I/O; Shutdown() may be called from any thread
// while the fd is open.
//
// Usage:
//   SocketStream stream(fd, /*timeout_ms=*/30000);  // owns fd
//   beast::flat_buffer buffer;
//   http::read(stream, buffer, parser, ec);
#ifndef CAIRN_HTTP_INTERNAL_SOCKET_STREAM_H_
#define CAIRN_HTTP_INTERNAL_SOCKET_STREAM_H_

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

namespace cairn::http::internal {

// "No limit" for Beast parsers' body_limit. Not boost::none: Beast 1.74
// compares lengths against an empty optional as "over the limit".
inline constexpr uint64_t kNoBodyLimit = std::numeric_limits<uint64_t>::max();

class SocketStream {
 public:
  // Takes ownership of `fd` (a connected stream socket); makes it
  // non-blocking and disables Nagle's algorithm.
  SocketStream(int fd, int64_t timeout_ms);
  ~SocketStream();
  SocketStream(const SocketStream&) = delete;
  SocketStream& operator=(const SocketStream&) = delete;

  int fd() const { return fd_; }
  // Each wait for readiness gives up after this long (boost::asio::error::timed_out).
  void set_timeout_ms(int64_t timeout_ms) { timeout_ms_ = timeout_ms; }

  // Beast stream concept. End of stream is boost::asio::error::eof.
  template <class MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers, boost::system::error_code& ec) {
    iovec iov[kMaxIov];
    int n = ToIov(buffers, iov);
    return ReadV(iov, n, ec);
  }
  template <class MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers) {
    boost::system::error_code ec;
    size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }
  template <class ConstBufferSequence>
  size_t write_some(const ConstBufferSequence& buffers, boost::system::error_code& ec) {
    iovec iov[kMaxIov];
    int n = ToIov(buffers, iov);
    return WriteV(iov, n, ec);
  }
  template <class ConstBufferSequence>
  size_t write_some(const ConstBufferSequence& buffers) {
    boost::system::error_code ec;
    size_t n = write_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

  // Writes all `n` bytes.
  void WriteAll(const char* data, size_t n, boost::system::error_code& ec);
  // shutdown(SHUT_RDWR): wakes a thread blocked in a read. Any thread.
  void Shutdown();
  // Sends FIN, then reads and discards what the peer still sends until it
  // closes, for at most `total_ms` (and `read_ms` per wait), so that closing
  // does not reset the connection before the peer has read our last response.
  // The socket stays open (the destructor closes it).
  void Linger(int64_t total_ms, int64_t read_ms);
  // True when the peer closed the connection or sent unexpected bytes (checked
  // without blocking).
  bool PeerClosedOrReadable() const;

 private:
  static constexpr int kMaxIov = 32;

  template <class BufferSequence>
  static int ToIov(const BufferSequence& buffers, iovec* iov) {
    int n = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers); it != boost::asio::buffer_sequence_end(buffers);
         ++it) {
      auto b = boost::asio::const_buffer(*it);
      if (b.size() == 0) continue;
      if (n == kMaxIov) break;
      iov[n].iov_base = const_cast<void*>(b.data());
      iov[n].iov_len = b.size();
      ++n;
    }
    return n;
  }
  size_t ReadV(iovec* iov, int n, boost::system::error_code& ec);
  size_t WriteV(const iovec* iov, int n, boost::system::error_code& ec);
  // Waits until the fd is ready for `events`; false (and ec set) on timeout/error.
  bool Wait(short events, boost::system::error_code& ec);

  int fd_;
  int64_t timeout_ms_;
};

}  // namespace cairn::http::internal

#endif  // CAIRN_HTTP_INTERNAL_SOCKET_STREAM_H_
