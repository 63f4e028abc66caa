// HTTP/1.1 server and client (Boost.Beast), protocol-neutral: the api module
// puts MLflow, Open Inference Protocol and Cairn handlers on top.
//
// Server model: one acceptor thread hands accepted connections to
// Options::loop_threads event loops (epoll), up to Options::max_connections
// (beyond that new connections wait in the kernel backlog). A loop reads and
// parses requests; a request for an asynchronous route (Router::AddAsync)
// whose body is complete is handled on the loop itself, without a thread
// hand-off, and answered through its Responder from whichever thread
// completes it (e.g. a model's batch worker); the loop writes the answer.
// A handler on a loop may put work off to the end of the loop's pass over
// its ready connections (DeferredTasks::Current(), base/deferred.h), e.g. to
// handle the pass's requests together.
// Any other request moves its connection to a connection thread, which
// serves it and every later request on that connection as before
// (keep-alive; requests on one connection are sequential). Connection
// threads are pooled and reused, not created per request. Synchronous
// handlers may block (e.g. waiting for a group commit); asynchronous
// handlers must not (Responder::SendFrom runs blocking work on a connection
// thread). A handler that throws is answered 500 (handlers should not
// throw); malformed HTTP is answered 400 and the connection closed. HEAD
// requests with no HEAD route are served by the GET route, without the
// body. "Expect: 100-continue" is honoured. TCP_NODELAY is set on every
// connection.
//
// Bodies: by default a request body is read fully into Request::body (up to
// the route's max_body_bytes, else 413). A route added with
// RouteOptions::stream_body = true instead gets Request::body_stream and reads
// the body itself (bounded memory for any size). A Response may stream its
// body from Response::body_source. A streaming handler that returns without
// reading the whole body: up to 1 MiB of the rest is read and dropped, beyond
// that the connection is closed after the response. Options::idle_timeout_ms
// bounds every wait on a connection's socket (the next request, body bytes,
// the client reading our response).
//
// Thread-safety: Router is built before Server::Create and then read-only.
// Server is thread-safe. Client is not (one request at a time).
//
// Usage:
//   Router router;
//   router.Add(Method::kGet, "/health", [](Request&) { return Response::Text(200, "OK"); });
//   router.Add(Method::kPut, "/files/*", PutFile, {.stream_body = true});  // Request::path_rest holds "*"
//   ASSIGN_OR_RETURN(auto server, Server::Create({.host = "127.0.0.1", .port = 0}, std::move(router)));
//   int port = server->port();
//   ...
//   server->Stop();
#ifndef CAIRN_HTTP_HTTP_H_
#define CAIRN_HTTP_HTTP_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/json.h"
#include "base/status.h"

namespace cairn::http {

enum class Method { kGet, kHead, kPost, kPut, kDelete, kPatch, kOptions };
std::string_view MethodName(Method m);

// A streamed request body.
class BodyStream {
 public:
  virtual ~BodyStream() = default;
  // Reads up to `n` body bytes; 0 at the end of the body.
  virtual absl::StatusOr<size_t> Read(char* scratch, size_t n) = 0;
  // Content-Length when the client sent one (not for chunked bodies).
  virtual std::optional<uint64_t> content_length() const = 0;
};

struct Request {
  Method method = Method::kGet;
  std::string path;        // percent-decoded path, without the query string
  std::string raw_path;    // the path as sent (still percent-encoded), without the query string
  std::string query;       // raw query string (after '?'), not decoded
  std::string path_rest;   // for routes ending in "/*": the decoded rest of the path
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;                     // when the route does not stream
  BodyStream* body_stream = nullptr;    // when it does; owned by the server
  std::string remote_address;  // "ip:port" of the peer

  // First header with this (case-insensitive) name.
  std::optional<std::string_view> Header(std::string_view name) const;
  // First query parameter with this name, percent- and '+'-decoded.
  std::optional<std::string> Query(std::string_view name) const;
  // Every value of a repeated query parameter (e.g. experiment_ids=1&experiment_ids=2).
  std::vector<std::string> QueryAll(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // When set, the body is produced by repeated calls (returning 0 at the
  // end) and exactly `content_length` bytes are sent. An error mid-stream
  // closes the connection.
  std::function<absl::StatusOr<size_t>(char* scratch, size_t n)> body_source;
  uint64_t content_length = 0;

  static Response JsonBody(int status, const Json& body);
  static Response Text(int status, std::string body, std::string content_type = "text/plain; charset=utf-8");
};

using Handler = std::function<Response(Request&)>;

// Answers one request of an asynchronous handler. Call Send (or SendFrom)
// exactly once, from any thread; the Request stays valid until then, not
// after. Dropping a Responder without sending answers 500. Move-only.
class Responder {
 public:
  using SendFn = std::function<void(Response)>;
  using RunFn = std::function<void(std::function<void()>)>;  // runs a task where it may block

  Responder() = default;
  Responder(SendFn send, RunFn run_blocking) : send_(std::move(send)), run_blocking_(std::move(run_blocking)) {}
  Responder(Responder&& other) noexcept = default;
  Responder& operator=(Responder&& other) noexcept;
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;
  ~Responder();

  void Send(Response response);
  // Runs `blocking` on a connection thread (where it may block) and sends
  // its result.
  void SendFrom(std::function<Response()> blocking);

 private:
  SendFn send_;
  RunFn run_blocking_;
};

// Must not block; see Responder. A thrown exception answers 500.
using AsyncHandler = std::function<void(Request&, Responder)>;

struct RouteOptions {
  bool stream_body = false;
  uint64_t max_body_bytes = 64ull << 20;  // for non-streaming routes
};

class Router {
 public:
  // `pattern` is an exact path, or a prefix ending in "/*" that matches
  // anything below it (the rest goes to Request::path_rest). Exact routes win
  // over prefix routes; longer prefixes over shorter ones. "/a/*" matches
  // "/a/" (path_rest "") and "/a/x/y" (path_rest "x/y") but not "/a". An
  // exact route for another method does not hide a prefix route for this one.
  void Add(Method method, std::string pattern, Handler handler, RouteOptions options = {});
  // An asynchronous route (see the top). RouteOptions::stream_body is not
  // supported (kept false).
  void AddAsync(Method method, std::string pattern, AsyncHandler handler, RouteOptions options = {});
  // Called for paths no route matches (default: 404 text). `allowed` lists
  // the methods of routes matching the path, if any (for a 405).
  void SetNotFound(std::function<Response(Request&, const std::vector<Method>& allowed)> handler);

  struct Match {
    const Handler* handler = nullptr;              // a synchronous route, or
    const AsyncHandler* async_handler = nullptr;   // an asynchronous one
    const RouteOptions* options = nullptr;
    std::string path_rest;
    std::vector<Method> allowed;  // when neither handler is set
    bool found() const { return handler != nullptr || async_handler != nullptr; }
  };
  Match Find(Method method, std::string_view path) const;
  // Runs a found route's handler on this thread and returns its response;
  // an asynchronous handler is waited for (its SendFrom work runs on this
  // thread). A handler that throws gives 500.
  static Response Call(const Match& match, Request& request);
  Response NotFound(Request& request, const std::vector<Method>& allowed) const;

 private:
  struct Route {
    Method method;
    std::string pattern;
    bool prefix;
    Handler handler;
    AsyncHandler async_handler;  // set instead of `handler` for AddAsync routes
    RouteOptions options;
  };
  void AddRoute(Route route);
  static void SetHandler(const Route& route, Match& match);
  struct PathHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::vector<Route> routes_;
  // Indices into routes_: exact patterns by path; prefix patterns, longest first.
  std::unordered_map<std::string, std::vector<size_t>, PathHash, std::equal_to<>> exact_;
  std::vector<size_t> prefixes_;
  std::function<Response(Request&, const std::vector<Method>&)> not_found_;
};

class Server {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    int port = 5000;           // 0: pick a free port (see port())
    int max_connections = 512;
    int64_t idle_timeout_ms = 120000;  // keep-alive connections idle longer are closed
    int loop_threads = 0;              // event loops; 0: one per core, at most 4
  };
  // Binds and starts serving. kUnavailable if the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<Server>> Create(const Options& options, Router router);
  virtual ~Server() = default;
  virtual int port() const = 0;
  // Stops accepting, closes idle connections and waits for in-flight
  // requests to finish (their responses say "Connection: close"). Idempotent;
  // also done by the destructor.
  virtual void Stop() = 0;
};

struct ClientResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::optional<std::string_view> Header(std::string_view name) const;
};

// A keep-alive HTTP/1.1 client to one host:port. Reconnects when the server
// closed the connection: before each request it checks (without blocking)
// whether the idle connection was closed, and it retries a request once on a
// fresh connection if sending it on a reused one failed before any byte of
// the response arrived (never after a SendStream source was read from).
// Connecting gives up after 10 s, each read/write wait after 300 s.
// Errors: kUnavailable "cannot connect to host:port: ..." when the server
// cannot be reached; kUnavailable for a connection broken mid-exchange.
class Client {
 public:
  static absl::StatusOr<std::unique_ptr<Client>> Create(std::string host, int port);
  // Parses "http://host:port[/...]".
  static absl::StatusOr<std::unique_ptr<Client>> FromUrl(std::string_view url);
  virtual ~Client() = default;

  // `target` is the path plus optional "?query", already encoded.
  virtual absl::StatusOr<ClientResponse> Send(Method method, std::string_view target, std::string_view body = {},
                                              std::string_view content_type = "application/json",
                                              const std::vector<std::pair<std::string, std::string>>& headers = {}) = 0;
  // Streams the body from `source` (returns 0 at end), `length` bytes in all.
  // A source error (or a source that ends early) is returned as is, and the
  // connection is dropped.
  virtual absl::StatusOr<ClientResponse> SendStream(Method method, std::string_view target, uint64_t length,
                                                    const std::function<absl::StatusOr<size_t>(char*, size_t)>& source,
                                                    std::string_view content_type = "application/octet-stream") = 0;
  // Streams a 2xx response body to `sink` instead of keeping it; other
  // statuses are returned with their body in ClientResponse::body.
  virtual absl::StatusOr<ClientResponse> Download(std::string_view target,
                                                  const std::function<absl::Status(std::string_view)>& sink) = 0;

  // Convenience for JSON APIs: returns the parsed body for 2xx (an empty body
  // gives {}; invalid JSON is kInternal); otherwise an error status whose
  // message is "HTTP <status>: " plus the body's "message" (MLflow) or
  // "error" (Open Inference Protocol) string field, else the raw body
  // (truncated); the body's "error_code" string, if any, is attached with
  // cairn::WithErrorCode. Codes: 400 kInvalidArgument, 401 kUnauthenticated,
  // 403 kPermissionDenied, 404 kNotFound, 409 kAlreadyExists,
  // 412 kFailedPrecondition, 413 and 429 kResourceExhausted,
  // 501 kUnimplemented, 503 kUnavailable, 504 kDeadlineExceeded, others
  // kInternal.
  absl::StatusOr<Json> GetJson(std::string_view target);
  absl::StatusOr<Json> PostJson(std::string_view target, const Json& body);
};

// Percent-encoding helpers (RFC 3986 unreserved: A-Z a-z 0-9 - . _ ~).
// UrlDecode: kInvalidArgument for a '%' not followed by two hex digits.
std::string UrlEncode(std::string_view s);  // encodes everything but unreserved chars
std::string UrlEncodePath(std::string_view s);  // like UrlEncode but keeps '/'
absl::StatusOr<std::string> UrlDecode(std::string_view s, bool plus_is_space);

}  // namespace cairn::http

#endif  // CAIRN_HTTP_HTTP_H_
