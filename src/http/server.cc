// Server: an acceptor thread hands accepted sockets to event loops (epoll).
// A loop answers the requests of asynchronous routes itself; at the first
// request it does not take (a synchronous or streaming route, a malformed
// or unusual request) it hands the connection, with the bytes it has read,
// to a pool of connection threads (grown on demand, reused across
// connections), where one thread serves it from then on.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "base/deferred.h"
#include "base/task_queue.h"
#include "http/http.h"
#include "http/internal/socket_stream.h"

namespace cairn::http {

namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using internal::kNoBodyLimit;
using internal::SocketStream;

constexpr uint32_t kHeaderLimit = 64 * 1024;
constexpr size_t kReadBufferSize = 64 * 1024;
constexpr size_t kSourceChunk = 256 * 1024;
// An unread request body up to this size is read and dropped so that the
// connection can be kept; a larger one closes the connection.
constexpr uint64_t kDrainLimit = 1 << 20;
// Before closing a connection after a response, what the client still sends
// (e.g. the rest of a rejected upload) is read and dropped for up to
// kLingerTotalMs, so that it reads our response instead of a reset.
constexpr int64_t kLingerTotalMs = 5000;
constexpr int64_t kLingerReadMs = 1000;
// An event loop computes and answers what it has read after this many ready
// connections, then reads on: a quick model's pass batch holds up to this
// many requests (more only when requests are pipelined).
constexpr int kPassSlice = 8;

std::optional<Method> FromVerb(bhttp::verb v) {
  switch (v) {
    case bhttp::verb::get:
      return Method::kGet;
    case bhttp::verb::head:
      return Method::kHead;
    case bhttp::verb::post:
      return Method::kPost;
    case bhttp::verb::put:
      return Method::kPut;
    case bhttp::verb::delete_:
      return Method::kDelete;
    case bhttp::verb::patch:
      return Method::kPatch;
    case bhttp::verb::options:
      return Method::kOptions;
    default:
      return std::nullopt;
  }
}

// True for errors in the HTTP grammar (as opposed to I/O errors and the peer
// closing the connection).
bool IsParseError(const beast::error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category() &&
         ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message && ec != bhttp::error::need_buffer;
}

std::string_view ToStd(beast::string_view s) { return {s.data(), s.size()}; }
beast::string_view ToBeast(std::string_view s) { return {s.data(), s.size()}; }

// Splits a request target into the decoded path and the raw query.
absl::Status SplitTarget(std::string_view target, Request& req) {
  if (target == "*") {
    req.path = "*";
    return absl::OkStatus();
  }
  for (std::string_view scheme : {"http://", "https://"}) {  // absolute-form
    if (target.substr(0, scheme.size()) == scheme) {
      size_t slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
      break;
    }
  }
  if (target.empty() || target[0] != '/') return absl::InvalidArgumentError("bad request target");
  size_t q = target.find('?');
  std::string_view raw_path = target.substr(0, q);
  if (q != std::string_view::npos) {
    std::string_view query = target.substr(q + 1);
    query = query.substr(0, query.find('#'));
    req.query = std::string(query);
  }
  ASSIGN_OR_RETURN(req.path, UrlDecode(raw_path, /*plus_is_space=*/false));
  req.raw_path = std::string(raw_path);
  if (req.path.find('\0') != std::string::npos) return absl::InvalidArgumentError("NUL in request path");
  return absl::OkStatus();
}

std::string FormatAddress(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = "";
  int port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
    return fmt::format("{}:{}", host, port);
  }
  if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    port = ntohs(a->sin6_port);
    return fmt::format("[{}]:{}", host, port);
  }
  return "unknown";
}

// Copies the header fields into `req`, names lower-cased.
template <class Fields>
void CopyHeaders(const Fields& fields, Request& req) {
  req.headers.reserve(16);
  for (const auto& field : fields) {
    std::string name(ToStd(field.name_string()));
    for (char& c : name) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    req.headers.emplace_back(std::move(name), std::string(ToStd(field.value())));
  }
}

bool IsFramingHeader(std::string_view name) {
  return beast::iequals(ToBeast(name), "content-length") || beast::iequals(ToBeast(name), "transfer-encoding") ||
         beast::iequals(ToBeast(name), "connection");
}

// The response as bytes on the wire: head (status line and header) and,
// unless `head_only`, the body. For responses without body_source.
std::string SerializeResponse(Response& resp, unsigned version, bool head_only, bool keep_alive) {
  const unsigned status = resp.status >= 100 && resp.status <= 999 ? static_cast<unsigned>(resp.status) : 500;
  const bool bodyless = status < 200 || status == 204 || status == 304;
  std::string out;
  out.reserve(160 + (bodyless || head_only ? 0 : resp.body.size()));
  beast::string_view reason = bhttp::obsolete_reason(static_cast<bhttp::status>(status));
  out += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out.append(reason.data(), reason.size());
  out += "\r\n";
  std::string_view content_type = resp.content_type;
  for (const auto& [name, value] : resp.headers) {
    if (beast::iequals(ToBeast(name), "content-type")) content_type = value;
  }
  if (!content_type.empty()) {
    out += "Content-Type: ";
    out += content_type;
    out += "\r\n";
  }
  for (const auto& [name, value] : resp.headers) {
    if (IsFramingHeader(name) || beast::iequals(ToBeast(name), "content-type")) continue;
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  if (!bodyless) {
    out += "Content-Length: ";
    out += std::to_string(resp.body.size());
    out += "\r\n";
  }
  if (version == 10 && keep_alive) out += "Connection: keep-alive\r\n";
  if (version != 10 && !keep_alive) out += "Connection: close\r\n";
  out += "\r\n";
  if (!bodyless && !head_only) out += resp.body;
  return out;
}

// The request body of a streaming route, read from the socket on demand.
class StreamedBody final : public BodyStream {
 public:
  // `header` has read the request header; no body yet.
  StreamedBody(SocketStream& stream, beast::flat_buffer& buffer, bhttp::request_parser<bhttp::empty_body>&& header)
      : stream_(stream), buffer_(buffer), length_(ToOptional(header.content_length())) {
    if (!header.is_done()) {
      parser_.emplace(std::move(header));
      parser_->body_limit(kNoBodyLimit);
    }
  }

  absl::StatusOr<size_t> Read(char* scratch, size_t n) override {
    if (!error_.ok()) return error_;
    if (done() || n == 0) return 0;
    auto& body = parser_->get().body();
    body.data = scratch;
    body.size = n;
    body.more = true;
    beast::error_code ec;
    bhttp::read(stream_, buffer_, *parser_, ec);
    if (ec == bhttp::error::need_buffer) ec = {};
    if (ec) {
      error_ = IsParseError(ec) ? absl::InvalidArgumentError("malformed request body: " + ec.message())
                                : absl::UnavailableError("reading request body: " + ec.message());
      return error_;
    }
    return n - body.size;
  }

  std::optional<uint64_t> content_length() const override { return length_; }

  bool done() const { return !parser_ || parser_->is_done(); }
  bool failed() const { return !error_.ok(); }

 private:
  static std::optional<uint64_t> ToOptional(const boost::optional<uint64_t>& v) {
    return v ? std::optional<uint64_t>(*v) : std::nullopt;
  }

  SocketStream& stream_;
  beast::flat_buffer& buffer_;
  std::optional<uint64_t> length_;
  std::optional<bhttp::request_parser<bhttp::buffer_body>> parser_;
  absl::Status error_;
};

class ServerImpl;

struct Accepted {
  int fd = -1;
  std::string remote;
  std::string buffered;  // bytes an event loop read before handing the connection over
};

// A connection served by an event loop.
struct LoopConnection {
  enum class State { kReading, kBusy, kWriting };
  // LoopConnection::completion bits: the loop returned from the handler /
  // the response was written (as far as it could be without waiting).
  static constexpr int kHandlerReturned = 1;
  static constexpr int kResponded = 2;

  int fd = -1;
  std::string remote;
  std::string in;   // read, not yet consumed
  State state = State::kReading;  // the loop's thread only
  int64_t last_active_ms = 0;     // the loop's thread only
  // The request being answered, and how to answer it.
  Request request;
  unsigned version = 11;
  bool keep_alive = true;
  std::atomic<int> completion{0};
  // Written by the responder before it sets kResponded, then the loop's.
  std::string out;        // the response
  size_t out_sent = 0;    // bytes of `out` already sent (the loop's thread only)
  bool broken = false;    // writing failed (the loop's thread only)
};

// One epoll loop and the connections it serves. Connections are registered
// EPOLLONESHOT: an event reaches the loop only while the loop waits for
// that connection, so the responder (any thread) may fill in the response
// without racing the loop. Only the loop reads and writes the sockets. It is
// its thread's TaskQueue: a handler's later work may be posted back to it.
class EventLoop : public TaskQueue {
 public:
  explicit EventLoop(ServerImpl& server) : server_(server) {}
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  absl::Status Init();
  void Start() { thread_ = std::thread([this] { Run(); }); }
  // Any thread.
  void Adopt(Accepted accepted) { PostOp(Op{Op::kAdopt, nullptr, std::move(accepted)}); }
  // Any thread: close idle connections, finish busy ones, then end.
  void RequestStop() { PostOp(Op{Op::kStop, nullptr, {}}); }
  // Any thread (TaskQueue). The loop does not stop while a request it read is
  // unanswered, so a task that answers one always runs.
  void Post(std::function<void()> task) override { PostOp(Op{Op::kTask, nullptr, {}, std::move(task)}); }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  struct Op {
    enum Kind { kAdopt, kResume, kStop, kTask } kind;
    LoopConnection* connection;
    Accepted accepted;
    std::function<void()> task;
  };

  void PostOp(Op op);
  void Run();
  // Runs what other threads posted; false when there was nothing.
  bool RunPosted() ABSL_LOCKS_EXCLUDED(mu_);
  // Runs the work a pass (or a slice of one) left, until none is left: the
  // deferred tasks (a quick model's pass batch), then sends the answers they
  // gave (which lets pipelined requests in), then, with `run_posted`, what
  // other threads posted.
  void Settle(DeferredTasks& later, bool run_posted);
  void OnReadable(LoopConnection* c);
  void OnWritable(LoopConnection* c);
  // Answers the complete requests buffered in `c`, until one is pending or
  // more bytes are needed (then waits for them).
  void Process(LoopConnection* c);
  // Any thread: serializes `response` for `c`'s request; the loop sends it.
  void Respond(LoopConnection* c, Response response);
  // Sends what it can of `c->out` without waiting; AfterResponse decides what next.
  void Flush(LoopConnection* c);
  // After a response: true when `c` is ready for its next request.
  bool AfterResponse(LoopConnection* c);
  // Waits for `events` on `c` (once); `op` EPOLL_CTL_ADD for a new connection.
  void Arm(LoopConnection* c, uint32_t events, int op = EPOLL_CTL_MOD);
  void Close(LoopConnection* c);
  void HandOff(LoopConnection* c);
  void Sweep();

  ServerImpl& server_;
  int epoll_fd_ = -1;
  int event_fd_ = -1;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<Op> posted_ ABSL_GUARDED_BY(mu_);
  // The loop's thread only:
  absl::flat_hash_set<LoopConnection*> connections_;
  std::vector<LoopConnection*> answered_;  // answered on this thread after their handler returned: to send
  bool stopping_ = false;
};

// One accepted connection, served by one thread.
class Connection {
 public:
  // `buffered`: bytes already read from the socket (by an event loop).
  Connection(ServerImpl& server, SocketStream& stream, std::string remote, std::string_view buffered)
      : server_(server), stream_(stream), remote_(std::move(remote)) {
    buffer_.reserve(std::max(kReadBufferSize, buffered.size()));
    auto space = buffer_.prepare(buffered.size());
    std::memcpy(space.data(), buffered.data(), buffered.size());
    buffer_.commit(buffered.size());
  }

  // Serves requests until the connection ends. Returns true when the socket
  // should be closed gracefully (we sent a final response), false when it is
  // broken or idle.
  bool Run();

 private:
  enum class Outcome { kKeepAlive, kClose, kAbort };

  Outcome ServeOne();
  // Writes a response; false on I/O error or a failing body source.
  bool WriteResponse(Response& resp, unsigned version, bool head, bool keep_alive);
  // Answers a request that we did not (fully) read, then closes.
  Outcome Reject(int status, std::string text, unsigned version);
  // Reads and drops the rest of a request body; false if the body exceeds
  // `limit` or the connection broke.
  bool Drain(bhttp::request_parser<bhttp::buffer_body>& parser, uint64_t limit);

  ServerImpl& server_;
  SocketStream& stream_;
  std::string remote_;
  beast::flat_buffer buffer_;
  std::unique_ptr<char[]> scratch_;  // kSourceChunk bytes, allocated on first use
};

class ServerImpl final : public Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Create(const Options& options, Router router);
  ~ServerImpl() override { Stop(); }

  int port() const override { return port_; }
  void Stop() override;

  const Router& router() const { return router_; }
  const Options& options() const { return options_; }

  // Records whether `stream` waits for a new request (idle: Stop may shut it
  // down). Returns false when the server is stopping and `idle` is true.
  bool SetIdle(SocketStream* stream, bool idle) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    connections_[stream] = idle;
    return !(idle && stopping_);
  }
  bool stopping() const { return stopping_flag_.load(std::memory_order_acquire); }

  // A connection thread takes over `accepted` (from an event loop).
  void HandOff(Accepted accepted) ABSL_LOCKS_EXCLUDED(mu_);
  // Runs `task` on a connection thread.
  void RunBlocking(std::function<void()> task) ABSL_LOCKS_EXCLUDED(mu_);
  // An event loop closed one of its connections.
  void ConnectionClosed() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    --open_connections_;
  }

 private:

  ServerImpl(const Options& options, Router router, int listen_fd, int port, int wake_read, int wake_write)
      : options_(options),
        router_(std::move(router)),
        listen_fd_(listen_fd),
        port_(port),
        wake_read_(wake_read),
        wake_write_(wake_write) {}

  void AcceptLoop() ABSL_LOCKS_EXCLUDED(mu_);
  void WorkerLoop() ABSL_LOCKS_EXCLUDED(mu_);
  void Serve(Accepted accepted) ABSL_LOCKS_EXCLUDED(mu_);
  // Starts a connection thread when queued work outnumbers idle threads.
  void GrowPool() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  bool CanAccept() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || open_connections_ < options_.max_connections;
  }
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return loops_done_ || !pending_.empty() || !tasks_.empty();
  }

  const Options options_;
  const Router router_;
  const int listen_fd_;
  const int port_;
  const int wake_read_;   // a pipe that wakes the acceptor on Stop
  const int wake_write_;
  std::thread acceptor_;

  absl::Mutex stop_mu_;
  bool stopped_ ABSL_GUARDED_BY(stop_mu_) = false;

  std::vector<std::unique_ptr<EventLoop>> loops_;
  size_t next_loop_ = 0;  // the acceptor's: round robin
  std::atomic<bool> stopping_flag_{false};

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool loops_done_ ABSL_GUARDED_BY(mu_) = false;  // the event loops have ended (Stop)
  int open_connections_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<Accepted> pending_ ABSL_GUARDED_BY(mu_);  // handed off, waiting for a connection thread
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);  // RunBlocking's
  std::vector<std::thread> workers_ ABSL_GUARDED_BY(mu_);
  int idle_workers_ ABSL_GUARDED_BY(mu_) = 0;
  // Open connections -> whether each is idle (waiting for a request).
  absl::flat_hash_map<SocketStream*, bool> connections_ ABSL_GUARDED_BY(mu_);
};

bool Connection::Run() {
  for (;;) {
    if (!server_.SetIdle(&stream_, true)) return false;
    switch (ServeOne()) {
      case Outcome::kKeepAlive:
        continue;
      case Outcome::kClose:
        return true;
      case Outcome::kAbort:
        return false;
    }
  }
}

Connection::Outcome Connection::Reject(int status, std::string text, unsigned version) {
  Response resp = Response::Text(status, std::move(text));
  WriteResponse(resp, version, /*head=*/false, /*keep_alive=*/false);
  return Outcome::kClose;
}

bool Connection::Drain(bhttp::request_parser<bhttp::buffer_body>& parser, uint64_t limit) {
  char scratch[16384];
  uint64_t total = 0;
  while (!parser.is_done()) {
    auto& body = parser.get().body();
    body.data = scratch;
    body.size = sizeof(scratch);
    body.more = true;
    beast::error_code ec;
    bhttp::read(stream_, buffer_, parser, ec);
    if (ec == bhttp::error::need_buffer) ec = {};
    if (ec) return false;
    total += sizeof(scratch) - body.size;
    if (total > limit) return false;
  }
  return true;
}

Connection::Outcome Connection::ServeOne() {
  bhttp::request_parser<bhttp::empty_body> header_parser;
  header_parser.header_limit(kHeaderLimit);
  header_parser.body_limit(kNoBodyLimit);
  beast::error_code ec;
  bhttp::read_header(stream_, buffer_, header_parser, ec);
  if (ec) {
    if (ec == bhttp::error::header_limit) return Reject(431, "request header too large\n", 11);
    if (IsParseError(ec)) return Reject(400, "malformed HTTP request\n", 11);
    return Outcome::kAbort;  // closed, timed out, shut down by Stop, or broken
  }
  server_.SetIdle(&stream_, false);

  const auto& header = header_parser.get();
  const unsigned version = header.version() == 10 ? 10 : 11;
  std::optional<Method> method = FromVerb(header.method());
  if (!method) return Reject(501, "method not implemented\n", version);

  Request req;
  req.method = *method;
  if (absl::Status s = SplitTarget(ToStd(header.target()), req); !s.ok()) {
    return Reject(400, std::string(s.message()) + "\n", version);
  }
  CopyHeaders(header, req);
  req.remote_address = remote_;

  const bool has_body = !header_parser.is_done();
  bool expect_continue = false;
  if (has_body && version == 11) {
    auto it = header.find(bhttp::field::expect);
    expect_continue = it != header.end() && beast::iequals(it->value(), "100-continue");
  }
  bool keep_alive = header.keep_alive();
  const bool head = req.method == Method::kHead;

  Router::Match match = server_.router().Find(req.method, req.path);
  if (!match.found() && head) {  // HEAD is served by the GET route, without the body
    Router::Match get = server_.router().Find(Method::kGet, req.path);
    if (get.found()) match = std::move(get);
  }
  req.path_rest = std::move(match.path_rest);

  auto send_continue = [&]() -> bool {
    if (!expect_continue) return true;
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    beast::error_code wec;
    stream_.WriteAll(kContinue.data(), kContinue.size(), wec);
    return !wec;
  };

  Response resp;
  if (!match.found()) {
    try {
      resp = server_.router().NotFound(req, match.allowed);
    } catch (...) {
      resp = Response::Text(500, "internal server error\n");
    }
    if (has_body) {
      // A client waiting for "100 Continue" would not send the body; one
      // that sends a large body is not worth reading.
      auto length = header_parser.content_length();
      if (expect_continue || (length && *length > kDrainLimit)) {
        keep_alive = false;
      } else {
        bhttp::request_parser<bhttp::buffer_body> drain(std::move(header_parser));
        if (!Drain(drain, kDrainLimit)) keep_alive = false;
      }
    }
  } else if (!match.options->stream_body) {
    const uint64_t max = match.options->max_body_bytes;
    if (has_body) {
      auto length = header_parser.content_length();
      if (length && *length > max) return Reject(413, "request body too large\n", version);
      if (!send_continue()) return Outcome::kAbort;
      bhttp::request_parser<bhttp::string_body> body_parser(std::move(header_parser));
      body_parser.body_limit(max);
      bhttp::read(stream_, buffer_, body_parser, ec);
      if (ec == bhttp::error::body_limit) return Reject(413, "request body too large\n", version);
      if (IsParseError(ec)) return Reject(400, "malformed request body\n", version);
      if (ec) return Outcome::kAbort;
      req.body = std::move(body_parser.get().body());
    }
    resp = Router::Call(match, req);
  } else {
    if (has_body && !send_continue()) return Outcome::kAbort;
    StreamedBody body(stream_, buffer_, std::move(header_parser));
    req.body_stream = &body;
    resp = Router::Call(match, req);
    req.body_stream = nullptr;
    if (body.failed()) {
      keep_alive = false;
    } else if (!body.done()) {
      // The handler did not read the whole body: drop a small rest, else close.
      char scratch[16384];
      uint64_t dropped = 0;
      while (!body.done() && dropped <= kDrainLimit) {
        auto n = body.Read(scratch, sizeof(scratch));
        if (!n.ok()) break;
        dropped += *n;
      }
      if (!body.done()) keep_alive = false;
    }
  }

  if (keep_alive && server_.stopping()) keep_alive = false;
  if (!WriteResponse(resp, version, head, keep_alive)) return Outcome::kAbort;
  return keep_alive ? Outcome::kKeepAlive : Outcome::kClose;
}

template <class Fields>
void SetResponseHeaders(Fields& fields, const Response& resp) {
  if (!resp.content_type.empty()) fields.set(bhttp::field::content_type, ToBeast(resp.content_type));
  for (const auto& [name, value] : resp.headers) {
    // Framing headers are the server's business.
    if (IsFramingHeader(name)) continue;
    if (beast::iequals(name, "content-type")) {
      fields.set(bhttp::field::content_type, ToBeast(value));
    } else {
      fields.insert(ToBeast(name), ToBeast(value));
    }
  }
}

bool Connection::WriteResponse(Response& resp, unsigned version, bool head, bool keep_alive) {
  const unsigned status = resp.status >= 100 && resp.status <= 999 ? static_cast<unsigned>(resp.status) : 500;
  beast::error_code ec;
  if (!resp.body_source) {
    bhttp::response<bhttp::string_body> res(static_cast<bhttp::status>(status), version);
    SetResponseHeaders(res, resp);
    res.keep_alive(keep_alive);
    if (status < 200 || status == 204 || status == 304) {
      resp.body.clear();  // these have no body (and no Content-Length for 1xx/204)
    } else {
      res.body() = std::move(resp.body);
    }
    res.prepare_payload();
    if (head) {
      bhttp::response_serializer<bhttp::string_body> serializer(res);
      bhttp::write_header(stream_, serializer, ec);
    } else {
      bhttp::write(stream_, res, ec);
    }
    return !ec;
  }

  bhttp::response<bhttp::empty_body> res(static_cast<bhttp::status>(status), version);
  SetResponseHeaders(res, resp);
  res.keep_alive(keep_alive);
  res.content_length(resp.content_length);
  bhttp::response_serializer<bhttp::empty_body> serializer(res);
  bhttp::write_header(stream_, serializer, ec);
  if (ec) return false;
  if (head) return true;
  if (!scratch_) scratch_ = std::make_unique<char[]>(kSourceChunk);
  uint64_t left = resp.content_length;
  while (left > 0) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(kSourceChunk, left));
    absl::StatusOr<size_t> n = size_t{0};
    try {
      n = resp.body_source(scratch_.get(), want);
    } catch (...) {
      n = absl::InternalError("body source threw");
    }
    if (!n.ok() || *n == 0 || *n > want) {
      spdlog::warn("http: response body source for {} failed after {} of {} bytes: {}", remote_,
                   resp.content_length - left, resp.content_length,
                   n.ok() ? std::string("ended early") : std::string(n.status().message()));
      return false;
    }
    stream_.WriteAll(scratch_.get(), *n, ec);
    if (ec) return false;
    left -= *n;
  }
  return true;
}

absl::StatusOr<std::unique_ptr<Server>> ServerImpl::Create(const Options& options, Router router) {
  if (options.max_connections < 1) return absl::InvalidArgumentError("max_connections must be at least 1");
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(fmt::format("invalid port {}", options.port));
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* addrs = nullptr;
  std::string port_text = std::to_string(options.port);
  int rc = ::getaddrinfo(options.host.empty() ? nullptr : options.host.c_str(), port_text.c_str(), &hints, &addrs);
  if (rc != 0) {
    return absl::UnavailableError(fmt::format("cannot resolve {}: {}", options.host, gai_strerror(rc)));
  }
  // IPv4 first: "localhost" should not end up bound to ::1 only.
  std::vector<addrinfo*> candidates;
  for (addrinfo* ai = addrs; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET) candidates.push_back(ai);
  }
  for (addrinfo* ai = addrs; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET) candidates.push_back(ai);
  }
  int fd = -1;
  int err = 0;
  for (addrinfo* ai : candidates) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, SOMAXCONN) == 0) break;
    err = errno;
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(addrs);
  if (fd < 0) {
    return absl::UnavailableError(fmt::format("cannot listen on {}:{}: {}", options.host, options.port, strerror(err)));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  int port = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                         : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    err = errno;
    ::close(fd);
    return absl::InternalError(fmt::format("pipe: {}", strerror(err)));
  }
  std::unique_ptr<ServerImpl> server(new ServerImpl(options, std::move(router), fd, port, wake[0], wake[1]));
  int loops = options.loop_threads;
  if (loops <= 0) loops = static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
  for (int i = 0; i < loops; ++i) {
    auto loop = std::make_unique<EventLoop>(*server);
    if (absl::Status s = loop->Init(); !s.ok()) {
      server->Stop();
      return s;
    }
    server->loops_.push_back(std::move(loop));
  }
  for (auto& loop : server->loops_) loop->Start();
  server->acceptor_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  return std::unique_ptr<Server>(std::move(server));
}

void ServerImpl::AcceptLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &ServerImpl::CanAccept));
      if (stopping_) return;
    }
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_read_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("http: poll on listening socket: {}", strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        spdlog::warn("http: accept: {}", strerror(err));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      continue;
    }
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        ::close(fd);
        return;
      }
      ++open_connections_;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    loops_[next_loop_]->Adopt(Accepted{fd, FormatAddress(addr), {}});
    next_loop_ = (next_loop_ + 1) % loops_.size();
  }
}

void ServerImpl::GrowPool() {
  if (static_cast<int>(pending_.size() + tasks_.size()) <= idle_workers_) return;
  try {
    workers_.emplace_back([this] { WorkerLoop(); });
  } catch (const std::system_error& e) {
    // Out of threads: the work waits for a busy thread to finish.
    spdlog::error("http: cannot start a connection thread: {}", e.what());
  }
}

void ServerImpl::HandOff(Accepted accepted) {
  absl::MutexLock lock(&mu_);
  pending_.push_back(std::move(accepted));
  GrowPool();
}

void ServerImpl::RunBlocking(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(std::move(task));
  GrowPool();
}

void ServerImpl::WorkerLoop() {
  for (;;) {
    Accepted accepted;
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      ++idle_workers_;
      mu_.Await(absl::Condition(this, &ServerImpl::HasWork));
      --idle_workers_;
      if (!tasks_.empty()) {
        task = std::move(tasks_.front());
        tasks_.pop_front();
      } else if (!pending_.empty()) {
        accepted = std::move(pending_.front());
        pending_.pop_front();
      } else {
        return;  // stopped
      }
    }
    if (task) {
      task();
    } else {
      Serve(std::move(accepted));
    }
  }
}

void ServerImpl::Serve(Accepted accepted) {
  SocketStream stream(accepted.fd, options_.idle_timeout_ms);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      --open_connections_;
      return;
    }
    connections_[&stream] = true;
  }
  bool graceful = false;
  try {
    Connection connection(*this, stream, std::move(accepted.remote), accepted.buffered);
    graceful = connection.Run();
  } catch (const std::exception& e) {
    spdlog::warn("http: connection error: {}", e.what());
  } catch (...) {
    spdlog::warn("http: unknown connection error");
  }
  // Lingering counts as idle: Stop() cuts it short.
  if (graceful && SetIdle(&stream, true)) stream.Linger(kLingerTotalMs, kLingerReadMs);
  absl::MutexLock lock(&mu_);
  connections_.erase(&stream);
  --open_connections_;
}  // `stream` closes the socket only now, when Stop() can no longer touch it

void ServerImpl::Stop() {
  absl::MutexLock stop_lock(&stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    stopping_flag_.store(true, std::memory_order_release);
    for (auto& [stream, idle] : connections_) {
      if (idle) stream->Shutdown();
    }
  }
  char byte = 1;
  while (::write(wake_write_, &byte, 1) < 0 && errno == EINTR) {
  }
  if (acceptor_.joinable()) acceptor_.join();
  // The loops close their idle connections and end once their requests
  // are answered; connection threads keep running tasks for them till then.
  for (auto& loop : loops_) loop->RequestStop();
  for (auto& loop : loops_) loop->Join();
  loops_.clear();
  {
    absl::MutexLock lock(&mu_);
    loops_done_ = true;
  }
  std::vector<std::thread> workers;
  {
    absl::MutexLock lock(&mu_);
    workers.swap(workers_);
  }
  for (auto& t : workers) t.join();
  {
    absl::MutexLock lock(&mu_);
    for (auto& a : pending_) ::close(a.fd);
    pending_.clear();
  }
  ::close(listen_fd_);
  ::close(wake_read_);
  ::close(wake_write_);
}


// ---------------------------------------------------------------------------
// EventLoop

int64_t MonotonicMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

EventLoop::~EventLoop() {
  for (LoopConnection* c : connections_) {
    ::close(c->fd);
    delete c;
  }
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  if (event_fd_ >= 0) ::close(event_fd_);
}

absl::Status EventLoop::Init() {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) return absl::InternalError(fmt::format("epoll_create1: {}", strerror(errno)));
  event_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (event_fd_ < 0) return absl::InternalError(fmt::format("eventfd: {}", strerror(errno)));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the event fd
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, event_fd_, &ev) != 0) {
    return absl::InternalError(fmt::format("epoll_ctl: {}", strerror(errno)));
  }
  return absl::OkStatus();
}

void EventLoop::PostOp(Op op) {
  bool wake;
  {
    absl::MutexLock lock(&mu_);
    // The loop's own thread runs what it posts before it waits again.
    wake = posted_.empty() && TaskQueue::Current() != this;
    posted_.push_back(std::move(op));
  }
  if (wake) {
    uint64_t one = 1;
    while (::write(event_fd_, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
  }
}

void EventLoop::Run() {
  SetCurrent(this);
  // Work the handlers put off until the end of a pass (or slice of one) over
  // the ready connections: a quick model computes its requests as one batch.
  DeferredTasks later;
  constexpr int kMaxEvents = 128;
  epoll_event events[kMaxEvents];
  int64_t next_sweep = MonotonicMs() + 1000;
  for (;;) {
    int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, 1000);
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::error("http: epoll_wait: {}", strerror(errno));
      n = 0;
    }
    bool posted = false;
    int handled = 0;
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<LoopConnection*>(events[i].data.ptr);
      if (c == nullptr) {
        posted = true;
        continue;
      }
      if (c->state == LoopConnection::State::kReading) {
        OnReadable(c);
      } else if (c->state == LoopConnection::State::kWriting) {
        OnWritable(c);
      }
      // A request read early in a long pass would wait for every other one
      // (and for their answers) before its own is computed and sent: the
      // pass is answered in slices of kPassSlice connections.
      if (++handled % kPassSlice == 0 && i + 1 < n) Settle(later, /*run_posted=*/false);
    }
    if (posted) {
      uint64_t count;
      while (::read(event_fd_, &count, sizeof(count)) < 0 && errno == EINTR) {
      }
    }
    // After the events: a posted stop closes connections that may have had
    // an event in this batch, so posted work runs only now.
    Settle(later, /*run_posted=*/true);
    const int64_t now = MonotonicMs();
    if (now >= next_sweep) {
      Sweep();
      next_sweep = now + 1000;
    }
    if (stopping_ && connections_.empty()) {
      SetCurrent(nullptr);
      return;
    }
  }
}

void EventLoop::Settle(DeferredTasks& later, bool run_posted) {
  for (;;) {
    later.RunAll();
    if (!answered_.empty()) {
      std::vector<LoopConnection*> now;
      now.swap(answered_);
      for (LoopConnection* c : now) OnWritable(c);
      continue;
    }
    if (!run_posted || !RunPosted()) return;
  }
}

bool EventLoop::RunPosted() {
  std::vector<Op> ops;
  {
    absl::MutexLock lock(&mu_);
    ops.swap(posted_);
  }
  if (ops.empty()) return false;
  for (Op& op : ops) {
    switch (op.kind) {
      case Op::kAdopt: {
        if (stopping_) {
          ::close(op.accepted.fd);
          server_.ConnectionClosed();
          break;
        }
        auto* c = new LoopConnection;
        c->fd = op.accepted.fd;
        c->remote = std::move(op.accepted.remote);
        c->last_active_ms = MonotonicMs();
        connections_.insert(c);
        Arm(c, EPOLLIN, EPOLL_CTL_ADD);
        break;
      }
      case Op::kResume:
        OnWritable(op.connection);
        break;
      case Op::kTask:
        try {
          op.task();
        } catch (const std::exception& e) {
          spdlog::error("http: a task posted to an event loop threw: {}", e.what());
        }
        break;
      case Op::kStop: {
        stopping_ = true;
        std::vector<LoopConnection*> idle;
        for (LoopConnection* c : connections_) {
          if (c->state == LoopConnection::State::kReading) idle.push_back(c);
        }
        for (LoopConnection* c : idle) Close(c);
        break;
      }
    }
  }
  return true;
}

void EventLoop::Arm(LoopConnection* c, uint32_t events, int op) {
  epoll_event ev{};
  ev.events = events | EPOLLONESHOT;
  ev.data.ptr = c;
  if (::epoll_ctl(epoll_fd_, op, c->fd, &ev) != 0) {
    spdlog::warn("http: epoll_ctl: {}", strerror(errno));
    Close(c);
  }
}

void EventLoop::Close(LoopConnection* c) {
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->fd, nullptr);
  ::close(c->fd);
  connections_.erase(c);
  delete c;
  server_.ConnectionClosed();
}

void EventLoop::HandOff(LoopConnection* c) {
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->fd, nullptr);
  server_.HandOff(Accepted{c->fd, std::move(c->remote), std::move(c->in)});
  connections_.erase(c);
  delete c;
}

void EventLoop::Sweep() {
  const int64_t now = MonotonicMs();
  const int64_t limit = server_.options().idle_timeout_ms;
  std::vector<LoopConnection*> expired;
  for (LoopConnection* c : connections_) {
    if (c->state != LoopConnection::State::kBusy && now - c->last_active_ms > limit) expired.push_back(c);
  }
  for (LoopConnection* c : expired) Close(c);
}

void EventLoop::OnReadable(LoopConnection* c) {
  char chunk[kReadBufferSize];
  for (;;) {
    ssize_t n = ::recv(c->fd, chunk, sizeof(chunk), 0);
    if (n > 0) {
      c->in.append(chunk, static_cast<size_t>(n));
      if (static_cast<size_t>(n) < sizeof(chunk)) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    Close(c);  // closed by the peer (mid-request or not), or broken
    return;
  }
  c->last_active_ms = MonotonicMs();
  Process(c);
}

void EventLoop::OnWritable(LoopConnection* c) {
  Flush(c);
  if (AfterResponse(c)) Process(c);
}

void EventLoop::Process(LoopConnection* c) {
  const Router& router = server_.router();
  for (;;) {
    if (c->in.empty()) {
      Arm(c, EPOLLIN);
      return;
    }
    bhttp::request_parser<bhttp::empty_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(kNoBodyLimit);
    beast::error_code ec;
    const size_t header_size = parser.put(boost::asio::buffer(c->in.data(), c->in.size()), ec);
    if (ec == bhttp::error::need_more) {
      if (c->in.size() > kHeaderLimit) return HandOff(c);  // the thread answers 431
      Arm(c, EPOLLIN);
      return;
    }
    // Anything unusual is left to a connection thread, which parses the
    // request again and answers it (errors included).
    if (ec || !parser.is_header_done()) return HandOff(c);
    const auto& header = parser.get();
    std::optional<Method> method = FromVerb(header.method());
    if (!method || *method == Method::kHead || parser.chunked()) return HandOff(c);
    if (header.find(bhttp::field::expect) != header.end()) return HandOff(c);
    Request req;
    req.method = *method;
    if (!SplitTarget(ToStd(header.target()), req).ok()) return HandOff(c);
    Router::Match match = router.Find(req.method, req.path);
    if (match.async_handler == nullptr) return HandOff(c);
    const uint64_t length = parser.is_done() ? 0 : parser.content_length().value_or(0);
    if (length > match.options->max_body_bytes) return HandOff(c);  // the thread answers 413
    if (c->in.size() - header_size < length) {
      Arm(c, EPOLLIN);  // the body is still coming
      return;
    }
    req.path_rest = std::move(match.path_rest);
    CopyHeaders(header, req);
    req.remote_address = c->remote;
    req.body.assign(c->in, header_size, static_cast<size_t>(length));
    c->in.erase(0, header_size + static_cast<size_t>(length));
    // A large body leaves a large buffer behind: give it back rather than
    // keep it for the life of the connection.
    if (c->in.capacity() > 4 * kReadBufferSize && c->in.size() < kReadBufferSize) c->in.shrink_to_fit();
    c->version = header.version() == 10 ? 10 : 11;
    c->keep_alive = header.keep_alive();
    c->request = std::move(req);
    c->state = LoopConnection::State::kBusy;
    c->completion.store(0, std::memory_order_relaxed);
    try {
      (*match.async_handler)(
          c->request, Responder([this, c](Response response) { Respond(c, std::move(response)); },
                                [this](std::function<void()> task) { server_.RunBlocking(std::move(task)); }));
    } catch (const std::exception& e) {
      spdlog::error("http: handler for {} {} threw: {}", MethodName(c->request.method), c->request.path, e.what());
    } catch (...) {
      spdlog::error("http: handler for {} {} threw", MethodName(c->request.method), c->request.path);
    }
    if (!(c->completion.fetch_or(LoopConnection::kHandlerReturned, std::memory_order_acq_rel) &
          LoopConnection::kResponded)) {
      return;  // answered later: the responder posts kResume
    }
    Flush(c);
    if (!AfterResponse(c)) return;
  }
}

void EventLoop::Respond(LoopConnection* c, Response response) {
  if (response.body_source) {
    spdlog::error("http: asynchronous handler for {} returned a streamed body", c->request.path);
    response = Response::Text(500, "internal server error\n");
  }
  c->keep_alive = c->keep_alive && !server_.stopping();
  c->out = SerializeResponse(response, c->version, /*head_only=*/false, c->keep_alive);
  // The loop writes it: a model's worker that answers a batch goes back to
  // computing instead of spending a quarter of its time in send().
  if (c->completion.fetch_or(LoopConnection::kResponded, std::memory_order_acq_rel) &
      LoopConnection::kHandlerReturned) {
    if (TaskQueue::Current() == this) {
      answered_.push_back(c);  // sent when the loop settles its pass (or slice)
    } else {
      PostOp(Op{Op::kResume, c, {}});
    }
  }
}

void EventLoop::Flush(LoopConnection* c) {
  while (c->out_sent < c->out.size()) {
    ssize_t n = ::send(c->fd, c->out.data() + c->out_sent, c->out.size() - c->out_sent, MSG_NOSIGNAL);
    if (n >= 0) {
      c->out_sent += static_cast<size_t>(n);
      c->last_active_ms = MonotonicMs();
    } else if (errno != EINTR) {
      c->broken = errno != EAGAIN && errno != EWOULDBLOCK;
      return;  // AfterResponse waits for the socket to take the rest
    }
  }
}

bool EventLoop::AfterResponse(LoopConnection* c) {
  if (c->broken) {
    Close(c);
    return false;
  }
  c->last_active_ms = MonotonicMs();
  if (c->out_sent < c->out.size()) {
    c->state = LoopConnection::State::kWriting;
    Arm(c, EPOLLOUT);
    return false;
  }
  std::string().swap(c->out);  // the next response brings its own buffer
  c->out_sent = 0;
  c->request = Request();
  if (!c->keep_alive || stopping_) {
    Close(c);
    return false;
  }
  c->state = LoopConnection::State::kReading;
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Create(const Options& options, Router router) {
  return ServerImpl::Create(options, std::move(router));
}

}  // namespace cairn::http
