// Client: one keep-alive connection, reopened when the server closed it.
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include "http/http.h"
#include "http/internal/socket_stream.h"

namespace cairn::http {

namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using internal::kNoBodyLimit;
using internal::SocketStream;

constexpr int64_t kConnectTimeoutMs = 10000;
constexpr int64_t kIoTimeoutMs = 300000;
constexpr size_t kReadBufferSize = 64 * 1024;
constexpr size_t kChunk = 256 * 1024;
constexpr uint32_t kHeaderLimit = 64 * 1024;
constexpr size_t kMaxErrorBody = 1000;  // of a non-JSON error body quoted in a Status

beast::string_view ToBeast(std::string_view s) { return {s.data(), s.size()}; }
std::string_view ToStd(beast::string_view s) { return {s.data(), s.size()}; }

bhttp::verb ToVerb(Method m) {
  switch (m) {
    case Method::kGet:
      return bhttp::verb::get;
    case Method::kHead:
      return bhttp::verb::head;
    case Method::kPost:
      return bhttp::verb::post;
    case Method::kPut:
      return bhttp::verb::put;
    case Method::kDelete:
      return bhttp::verb::delete_;
    case Method::kPatch:
      return bhttp::verb::patch;
    case Method::kOptions:
      return bhttp::verb::options;
  }
  return bhttp::verb::get;
}

template <class Fields>
void CopyHeaders(const Fields& fields, ClientResponse& out) {
  for (const auto& field : fields) {
    std::string name(ToStd(field.name_string()));
    for (char& c : name) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    out.headers.emplace_back(std::move(name), std::string(ToStd(field.value())));
  }
}

class ClientImpl final : public Client {
 public:
  ClientImpl(std::string host, int port) : host_(std::move(host)), port_(port) {}

  absl::StatusOr<ClientResponse> Send(Method method, std::string_view target, std::string_view body,
                                      std::string_view content_type,
                                      const std::vector<std::pair<std::string, std::string>>& headers) override {
    bhttp::request<bhttp::span_body<const char>> req(ToVerb(method), ToBeast(target), 11);
    SetCommonHeaders(req);
    for (const auto& [name, value] : headers) req.set(ToBeast(name), ToBeast(value));
    bool has_body = !body.empty() || method == Method::kPost || method == Method::kPut || method == Method::kPatch;
    if (has_body && !content_type.empty()) req.set(bhttp::field::content_type, ToBeast(content_type));
    req.body() = beast::span<const char>(body.data(), body.size());
    if (has_body) req.content_length(body.size());
    return Exchange(
        method,
        [&](beast::error_code& ec) {
          bhttp::write(*stream_, req, ec);
          return true;  // the body is in memory: a retry can send it again
        },
        nullptr);
  }

  absl::StatusOr<ClientResponse> SendStream(Method method, std::string_view target, uint64_t length,
                                            const std::function<absl::StatusOr<size_t>(char*, size_t)>& source,
                                            std::string_view content_type) override {
    bhttp::request<bhttp::empty_body> req(ToVerb(method), ToBeast(target), 11);
    SetCommonHeaders(req);
    if (!content_type.empty()) req.set(bhttp::field::content_type, ToBeast(content_type));
    req.content_length(length);
    absl::Status source_error;
    auto result = Exchange(
        method,
        [&](beast::error_code& ec) {
          bhttp::request_serializer<bhttp::empty_body> serializer(req);
          bhttp::write_header(*stream_, serializer, ec);
          if (ec) return true;  // nothing taken from `source` yet: can retry
          if (!chunk_) chunk_ = std::make_unique<char[]>(kChunk);
          uint64_t left = length;
          while (left > 0) {
            size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, left));
            absl::StatusOr<size_t> n = source(chunk_.get(), want);
            if (!n.ok() || *n == 0 || *n > want) {
              source_error = !n.ok() ? n.status()
                                     : absl::InvalidArgumentError(fmt::format(
                                           "body source gave {} bytes, {} expected", length - left, length));
              ec = boost::asio::error::operation_aborted;
              return false;
            }
            stream_->WriteAll(chunk_.get(), *n, ec);
            if (ec) return false;
            left -= *n;
          }
          return false;
        },
        nullptr);
    if (!source_error.ok()) return source_error;
    return result;
  }

  absl::StatusOr<ClientResponse> Download(std::string_view target,
                                          const std::function<absl::Status(std::string_view)>& sink) override {
    bhttp::request<bhttp::empty_body> req(bhttp::verb::get, ToBeast(target), 11);
    SetCommonHeaders(req);
    return Exchange(
        Method::kGet,
        [&](beast::error_code& ec) {
          bhttp::write(*stream_, req, ec);
          return true;
        },
        &sink);
  }

 private:
  template <class Req>
  void SetCommonHeaders(Req& req) {
    req.set(bhttp::field::host, host_header_);
    req.keep_alive(true);
  }

  absl::Status Connect();
  void Disconnect() {
    stream_.reset();
    buffer_.clear();
  }

  // Sends a request with `write` (which returns whether the request may be
  // sent again after a failure) and reads the response. Retries once on a
  // reused connection that turns out to be closed before any byte of a
  // response arrived.
  template <class WriteFn>
  absl::StatusOr<ClientResponse> Exchange(Method method, WriteFn write,
                                          const std::function<absl::Status(std::string_view)>* sink);

  // Reads one response; `received` tells whether any byte of it arrived.
  absl::StatusOr<ClientResponse> ReadResponse(Method method, const std::function<absl::Status(std::string_view)>* sink,
                                              bool& received, bool& keep_alive);

  std::string Where() const { return fmt::format("{}:{}", host_, port_); }

  const std::string host_;
  const int port_;
  const std::string host_header_ =
      host_.find(':') != std::string::npos ? fmt::format("[{}]:{}", host_, port_) : fmt::format("{}:{}", host_, port_);
  std::unique_ptr<SocketStream> stream_;
  beast::flat_buffer buffer_;
  bool reused_ = false;  // the connection has carried a complete exchange
  std::unique_ptr<char[]> chunk_;
};

absl::Status ClientImpl::Connect() {
  Disconnect();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* addrs = nullptr;
  std::string port_text = std::to_string(port_);
  int rc = ::getaddrinfo(host_.c_str(), port_text.c_str(), &hints, &addrs);
  if (rc != 0) return absl::UnavailableError(fmt::format("cannot connect to {}: {}", Where(), gai_strerror(rc)));
  int err = 0;
  for (addrinfo* ai = addrs; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        err = errno;
        ::close(fd);
        continue;
      }
      pollfd p{fd, POLLOUT, 0};
      int r;
      do {
        r = ::poll(&p, 1, static_cast<int>(kConnectTimeoutMs));
      } while (r < 0 && errno == EINTR);
      int so_error = 0;
      socklen_t len = sizeof(so_error);
      if (r == 0) {
        so_error = ETIMEDOUT;
      } else if (r < 0) {
        so_error = errno;
      } else {
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
      }
      if (so_error != 0) {
        err = so_error;
        ::close(fd);
        continue;
      }
    }
    ::freeaddrinfo(addrs);
    stream_ = std::make_unique<SocketStream>(fd, kIoTimeoutMs);
    buffer_.reserve(kReadBufferSize);
    reused_ = false;
    return absl::OkStatus();
  }
  ::freeaddrinfo(addrs);
  return absl::UnavailableError(fmt::format("cannot connect to {}: {}", Where(), strerror(err)));
}

template <class WriteFn>
absl::StatusOr<ClientResponse> ClientImpl::Exchange(Method method, WriteFn write,
                                                    const std::function<absl::Status(std::string_view)>* sink) {
  for (int attempt = 0;; ++attempt) {
    // An idle connection the server has closed shows as readable (EOF).
    if (!stream_ || buffer_.size() > 0 || stream_->PeerClosedOrReadable()) RETURN_IF_ERROR(Connect());
    const bool was_reused = reused_;
    beast::error_code ec;
    bool replayable = write(ec);
    if (ec) {
      Disconnect();
      if (ec != boost::asio::error::operation_aborted && was_reused && replayable && attempt == 0) continue;
      return absl::UnavailableError(fmt::format("sending request to {}: {}", Where(), ec.message()));
    }
    bool received = false;
    bool keep_alive = false;
    absl::StatusOr<ClientResponse> response = ReadResponse(method, sink, received, keep_alive);
    if (!response.ok()) {
      Disconnect();
      if (!received && was_reused && replayable && attempt == 0) continue;
      return response.status();
    }
    if (keep_alive) {
      reused_ = true;
    } else {
      Disconnect();
    }
    return response;
  }
}

absl::StatusOr<ClientResponse> ClientImpl::ReadResponse(Method method,
                                                        const std::function<absl::Status(std::string_view)>* sink,
                                                        bool& received, bool& keep_alive) {
  beast::error_code ec;
  for (;;) {
    bhttp::response_parser<bhttp::empty_body> header_parser;
    header_parser.header_limit(kHeaderLimit);
    header_parser.body_limit(kNoBodyLimit);
    if (method == Method::kHead) header_parser.skip(true);
    bhttp::read_header(*stream_, buffer_, header_parser, ec);
    received = received || header_parser.got_some() || buffer_.size() > 0;
    if (ec) return absl::UnavailableError(fmt::format("reading response from {}: {}", Where(), ec.message()));
    const auto& header = header_parser.get();
    const unsigned status = header.result_int();
    if (status >= 100 && status < 200 && status != 101) continue;  // interim (e.g. 100 Continue)

    ClientResponse out;
    out.status = static_cast<int>(status);
    CopyHeaders(header, out);
    keep_alive = header.keep_alive();
    if (header_parser.is_done()) return out;

    if (sink != nullptr && status >= 200 && status < 300) {
      bhttp::response_parser<bhttp::buffer_body> parser(std::move(header_parser));
      if (!chunk_) chunk_ = std::make_unique<char[]>(kChunk);
      while (!parser.is_done()) {
        auto& body = parser.get().body();
        body.data = chunk_.get();
        body.size = kChunk;
        body.more = true;
        bhttp::read(*stream_, buffer_, parser, ec);
        if (ec == bhttp::error::need_buffer) ec = {};
        if (ec) return absl::UnavailableError(fmt::format("reading response from {}: {}", Where(), ec.message()));
        size_t n = kChunk - body.size;
        if (n > 0) {
          absl::Status s = (*sink)(std::string_view(chunk_.get(), n));
          if (!s.ok()) return s;  // the connection is dropped with the unread rest
        }
      }
      keep_alive = keep_alive && parser.get().keep_alive();
      return out;
    }

    bhttp::response_parser<bhttp::string_body> parser(std::move(header_parser));
    bhttp::read(*stream_, buffer_, parser, ec);
    if (ec) return absl::UnavailableError(fmt::format("reading response from {}: {}", Where(), ec.message()));
    out.body = std::move(parser.get().body());
    return out;
  }
}

absl::StatusCode CodeForHttpStatus(int status) {
  switch (status) {
    case 400:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 409:
      return absl::StatusCode::kAlreadyExists;
    case 412:
      return absl::StatusCode::kFailedPrecondition;
    case 413:
    case 429:
      return absl::StatusCode::kResourceExhausted;
    case 501:
      return absl::StatusCode::kUnimplemented;
    case 503:
      return absl::StatusCode::kUnavailable;
    case 504:
      return absl::StatusCode::kDeadlineExceeded;
    default:
      return absl::StatusCode::kInternal;
  }
}

// Turns a non-2xx response into a Status carrying the server's message and
// protocol error code.
absl::Status StatusFromResponse(const ClientResponse& response) {
  std::string message;
  std::optional<std::string> error_code;
  Json body = Json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_object()) {
    for (const char* key : {"message", "error"}) {
      auto it = body.find(key);
      if (it != body.end() && it->is_string()) {
        message = it->get<std::string>();
        break;
      }
    }
    auto code = body.find("error_code");
    if (code != body.end() && code->is_string()) error_code = code->get<std::string>();
  }
  if (message.empty()) {
    message = response.body.size() > kMaxErrorBody ? response.body.substr(0, kMaxErrorBody) + "..." : response.body;
    while (!message.empty() && (message.back() == '\n' || message.back() == '\r')) message.pop_back();
  }
  absl::Status status(CodeForHttpStatus(response.status), fmt::format("HTTP {}: {}", response.status, message));
  if (error_code) status = WithErrorCode(std::move(status), *error_code);
  return status;
}

absl::StatusOr<Json> JsonFromResponse(const ClientResponse& response) {
  if (response.status < 200 || response.status >= 300) return StatusFromResponse(response);
  if (response.body.empty()) return Json::object();
  auto parsed = ParseJson(response.body);
  if (!parsed.ok()) {
    return absl::InternalError("invalid JSON in response: " + std::string(parsed.status().message()));
  }
  return parsed;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::Create(std::string host, int port) {
  if (host.empty()) return absl::InvalidArgumentError("empty host");
  if (port <= 0 || port > 65535) return absl::InvalidArgumentError(fmt::format("invalid port {}", port));
  // Accept "[::1]" as well as "::1".
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return std::unique_ptr<Client>(new ClientImpl(std::move(host), port));
}

absl::StatusOr<std::unique_ptr<Client>> Client::FromUrl(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    if (url.substr(0, 8) == "https://") return absl::UnimplementedError("https is not supported: " + std::string(url));
    return absl::InvalidArgumentError("not an http:// URL: " + std::string(url));
  }
  std::string_view rest = url.substr(kScheme.size());
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  std::string_view host = authority;
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {  // [v6]:port
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return absl::InvalidArgumentError("bad URL: " + std::string(url));
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return absl::InvalidArgumentError("bad URL: " + std::string(url));
      port_text = after.substr(1);
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port_text = authority.substr(colon + 1);
  }
  int port = 80;
  if (!port_text.empty()) {
    port = 0;
    for (char c : port_text) {
      if (c < '0' || c > '9' || port > 65535) return absl::InvalidArgumentError("bad port in URL: " + std::string(url));
      port = port * 10 + (c - '0');
    }
  }
  if (host.empty()) return absl::InvalidArgumentError("no host in URL: " + std::string(url));
  return Create(std::string(host), port);
}

absl::StatusOr<Json> Client::GetJson(std::string_view target) {
  ASSIGN_OR_RETURN(ClientResponse response, Send(Method::kGet, target, {}, "", {{"accept", "application/json"}}));
  return JsonFromResponse(response);
}

absl::StatusOr<Json> Client::PostJson(std::string_view target, const Json& body) {
  std::string text = body.dump(-1, ' ', false, Json::error_handler_t::replace);
  ASSIGN_OR_RETURN(ClientResponse response,
                   Send(Method::kPost, target, text, "application/json", {{"accept", "application/json"}}));
  return JsonFromResponse(response);
}

}  // namespace cairn::http
