// oip_load: a closed-loop load generator for Open Inference Protocol v2
// servers (Cairn, or the Flask + gunicorn comparison). `--concurrency`
// keep-alive connections each send the same request body back to back for
// `--seconds` (after `--warmup` seconds not counted), and one JSON line
// reports throughput, client latency percentiles, the server-side time Cairn
// reports (X-Cairn-Server-Time-Us) and the versions that answered. Failed
// requests are counted, never hidden.
//
// One thread drives every connection through epoll, as wrk does: a thread per
// connection would spend the shared cores on context switches, and the
// figures would measure the load generator as much as the server. HTTP/1.1
// only, no pipelining; answers need a Content-Length (Cairn's and gunicorn's
// have one).
//
// Usage: oip_load --url http://127.0.0.1:5000 --model xgb --body FILE
//                 [--concurrency 32] [--seconds 5] [--warmup 1] [--label NAME]
//                 [--json-length N]   (the body is binary: N bytes of JSON header, then tensor data)
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "percentile.h"

namespace {

using Clock = std::chrono::steady_clock;

using ::cairn::bench::Percentile;

struct Target {
  std::string host;
  std::string port;
};

std::optional<Target> ParseUrl(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) return std::nullopt;
  url.remove_prefix(kScheme.size());
  if (const size_t slash = url.find('/'); slash != std::string_view::npos) url = url.substr(0, slash);
  const size_t colon = url.rfind(':');
  if (colon == std::string_view::npos) return Target{std::string(url), "80"};
  return Target{std::string(url.substr(0, colon)), std::string(url.substr(colon + 1))};
}

// A header's value in a raw header block (names compared case-insensitively).
std::optional<std::string_view> HeaderValue(std::string_view head, std::string_view name) {
  size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    const size_t start = pos + 2;
    const size_t end = head.find("\r\n", start);
    const std::string_view line = head.substr(start, end == std::string_view::npos ? head.npos : end - start);
    if (line.size() > name.size() && line[name.size()] == ':' &&
        strncasecmp(line.data(), name.data(), name.size()) == 0) {
      std::string_view value = line.substr(name.size() + 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      return value;
    }
    pos = end;
  }
  return std::nullopt;
}

struct Connection {
  int fd = -1;
  std::string in;           // bytes received of the current answer
  size_t sent = 0;          // bytes of the request written so far
  Clock::time_point start;  // when the current request's first byte went out
};

class Load {
 public:
  Load(Target target, std::string request) : target_(std::move(target)), request_(std::move(request)) {}

  // Runs until `end`; answers are counted from `measure_from` on.
  int Run(int concurrency, Clock::time_point measure_from, Clock::time_point end);

  std::vector<double> latencies_us, server_us;
  std::map<std::string, int64_t> versions, failures;

 private:
  bool Connect(Connection& c);
  void Close(Connection& c) {
    if (c.fd >= 0) ::close(c.fd);
    c.fd = -1;
  }
  // Sends (the rest of) the request; false if the connection broke.
  bool Send(Connection& c);
  // Reads what arrived; handles complete answers. False if the connection broke.
  bool Receive(Connection& c, Clock::time_point now);
  void Fail(const std::string& why) {
    if (measuring_) failures[why.substr(0, 80)]++;
  }

  Target target_;
  std::string request_;
  int epoll_ = -1;
  bool measuring_ = false;
  sockaddr_storage address_{};
  socklen_t address_length_ = 0;
};

bool Load::Connect(Connection& c) {
  c.fd = ::socket(address_.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c.fd < 0) return false;
  if (::connect(c.fd, reinterpret_cast<sockaddr*>(&address_), address_length_) != 0) {
    Close(c);
    return false;
  }
  int one = 1;
  ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ::fcntl(c.fd, F_SETFL, ::fcntl(c.fd, F_GETFL) | O_NONBLOCK);
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.ptr = &c;
  if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &event) != 0) {
    Close(c);
    return false;
  }
  c.in.clear();
  c.sent = 0;
  return true;
}

bool Load::Send(Connection& c) {
  if (c.sent == 0) c.start = Clock::now();
  while (c.sent < request_.size()) {
    const ssize_t n = ::send(c.fd, request_.data() + c.sent, request_.size() - c.sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      epoll_event event{};
      event.events = EPOLLIN | EPOLLOUT;
      event.data.ptr = &c;
      ::epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &event);
      return true;
    }
    if (n <= 0) return false;
    c.sent += static_cast<size_t>(n);
  }
  return true;
}

bool Load::Receive(Connection& c, Clock::time_point now) {
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::recv(c.fd, buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) return false;
    c.in.append(buffer, static_cast<size_t>(n));
  }
  const size_t head_end = c.in.find("\r\n\r\n");
  if (head_end == std::string::npos) return true;
  const std::string_view head(c.in.data(), head_end);
  const std::optional<std::string_view> length = HeaderValue(head, "content-length");
  if (!length) {
    Fail("answer without Content-Length");
    return false;
  }
  const size_t body_length = std::strtoull(std::string(*length).c_str(), nullptr, 10);
  if (c.in.size() < head_end + 4 + body_length) return true;  // more to come

  const double us = std::chrono::duration<double, std::micro>(now - c.start).count();
  const int status = head.size() > 12 ? std::atoi(std::string(head.substr(9, 3)).c_str()) : 0;
  if (measuring_) {
    if (status != 200) {
      Fail(fmt::format("HTTP {}: {}", status, c.in.substr(head_end + 4, 80)));
    } else {
      latencies_us.push_back(us);
      if (auto h = HeaderValue(head, "x-cairn-server-time-us")) server_us.push_back(std::stod(std::string(*h)));
      if (auto h = HeaderValue(head, "x-cairn-model-version")) versions[std::string(*h)]++;
    }
  }
  const bool close = HeaderValue(head, "connection").value_or("") == "close";
  if (c.in.size() > head_end + 4 + body_length) {
    Fail("more bytes than the answer's Content-Length");
    return false;
  }
  c.in.clear();
  c.sent = 0;  // answered: nothing in flight
  if (close) return false;
  return Send(c);
}

int Load::Run(int concurrency, Clock::time_point measure_from, Clock::time_point end) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(target_.host.c_str(), target_.port.c_str(), &hints, &found) != 0 || found == nullptr) {
    std::fprintf(stderr, "oip_load: cannot resolve %s:%s\n", target_.host.c_str(), target_.port.c_str());
    return 2;
  }
  std::memcpy(&address_, found->ai_addr, found->ai_addrlen);
  address_length_ = found->ai_addrlen;
  ::freeaddrinfo(found);

  epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  std::vector<Connection> connections(static_cast<size_t>(concurrency));
  for (Connection& c : connections) {
    if (!Connect(c) || !Send(c)) {
      std::fprintf(stderr, "oip_load: cannot connect to %s:%s: %s\n", target_.host.c_str(), target_.port.c_str(),
                   strerror(errno));
      return 2;
    }
  }
  std::vector<epoll_event> events(connections.size());
  for (;;) {
    const Clock::time_point now = Clock::now();
    if (now >= end) break;
    measuring_ = now >= measure_from;
    const int n = ::epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), 10);
    if (n < 0 && errno != EINTR) break;
    const Clock::time_point arrived = Clock::now();
    for (int i = 0; i < n; ++i) {
      Connection& c = *static_cast<Connection*>(events[static_cast<size_t>(i)].data.ptr);
      bool ok = true;
      if (events[static_cast<size_t>(i)].events & EPOLLOUT) {
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.ptr = &c;
        ::epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &event);
        ok = Send(c);
      }
      if (ok && (events[static_cast<size_t>(i)].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) ok = Receive(c, arrived);
      if (!ok) {
        // The server closed the connection: a request still in flight
        // failed. Open a new one and go on.
        if (c.sent != 0) Fail(c.in.empty() ? "connection closed" : "connection closed mid-answer");
        Close(c);
        if (!Connect(c) || !Send(c)) {
          Fail(fmt::format("reconnect: {}", strerror(errno)));
          Close(c);
        }
      }
    }
  }
  for (Connection& c : connections) Close(c);
  ::close(epoll_);
  return 0;
}

int Main(int argc, char** argv) {
  std::string url, model, body_file, label = "oip_load";
  int concurrency = 1;
  double seconds = 5, warmup = 1;
  std::string json_length;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--url") url = v;
    else if (a == "--model") model = v;
    else if (a == "--body") body_file = v;
    else if (a == "--concurrency") concurrency = std::stoi(v);
    else if (a == "--seconds") seconds = std::stod(v);
    else if (a == "--warmup") warmup = std::stod(v);
    else if (a == "--label") label = v;
    else if (a == "--json-length") json_length = v;
    else {
      std::fprintf(stderr, "oip_load: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  const std::optional<Target> target = ParseUrl(url);
  if (!target || model.empty() || body_file.empty() || concurrency < 1) {
    std::fprintf(stderr,
                 "usage: oip_load --url http://HOST:PORT --model NAME --body FILE [--concurrency N] [--seconds S]\n");
    return 2;
  }
  std::ifstream in(body_file, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "oip_load: cannot read %s\n", body_file.c_str());
    return 2;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string body = ss.str();
  std::string request = fmt::format(
      "POST /v2/models/{}/infer HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: {}\r\nContent-Length: {}\r\n", model,
      target->host, target->port, json_length.empty() ? "application/json" : "application/octet-stream",
      body.size());
  if (!json_length.empty()) request += fmt::format("Inference-Header-Content-Length: {}\r\n", json_length);
  request += "\r\n" + body;

  Load load(*target, std::move(request));
  const Clock::time_point begin = Clock::now();
  const auto measure_from = begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(warmup));
  const auto end = measure_from + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  if (const int rc = load.Run(concurrency, measure_from, end); rc != 0) return rc;
  const double elapsed = std::chrono::duration<double>(end - measure_from).count();

  int64_t failed = 0;
  for (auto& [k, v] : load.failures) failed += v;
  cairn::Json out = {{"bench", label},
                     {"concurrency", concurrency},
                     {"requests", load.latencies_us.size()},
                     {"failed", failed},
                     {"throughput_rps", static_cast<double>(load.latencies_us.size()) / elapsed},
                     {"client_p50_us", Percentile(load.latencies_us, 0.50)},
                     {"client_p99_us", Percentile(load.latencies_us, 0.99)},
                     {"versions", load.versions}};
  if (!load.server_us.empty()) {
    out["server_p50_us"] = Percentile(load.server_us, 0.50);
    out["server_p99_us"] = Percentile(load.server_us, 0.99);
  }
  if (!load.failures.empty()) out["failures"] = load.failures;
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
