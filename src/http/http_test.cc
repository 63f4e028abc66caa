#include "http/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/synchronization/notification.h"
#include "base/deferred.h"
#include "base/task_queue.h"
#include "base/testing.h"

namespace cairn::http {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Byte `i` of the test pattern used for large bodies.
char PatternByte(uint64_t i) { return static_cast<char>((i * 7 + i / 251) & 0xff); }

// FNV-1a, to compare large bodies without keeping them.
struct Fnv {
  uint64_t h = 1469598103934665603ull;
  void Add(const char* p, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      h ^= static_cast<unsigned char>(p[i]);
      h *= 1099511628211ull;
    }
  }
};

uint64_t PatternHash(uint64_t size) {
  Fnv f;
  std::vector<char> buf(65536);
  for (uint64_t off = 0; off < size;) {
    size_t n = std::min<uint64_t>(buf.size(), size - off);
    for (size_t i = 0; i < n; ++i) buf[i] = PatternByte(off + i);
    f.Add(buf.data(), n);
    off += n;
  }
  return f.h;
}

// For ALongPassIsAnsweredInSlices: requests /async/counted has read so far,
// and the gate /async/hold waits at (on the loop) until the test opens it.
std::atomic<int> counted_reads{0};
std::atomic<bool> holding{false};
absl::Notification* hold_gate = nullptr;

Router TestRouter() {
  Router r;
  r.Add(Method::kGet, "/hello", [](Request&) { return Response::Text(200, "hello"); });
  r.Add(Method::kPost, "/echo", [](Request& req) {
    Response resp = Response::Text(200, req.body, "application/octet-stream");
    if (auto ct = req.Header("Content-Type")) resp.headers.emplace_back("x-request-content-type", std::string(*ct));
    return resp;
  });
  r.Add(Method::kPost, "/json", [](Request& req) {
    auto body = ParseJson(req.body);
    if (!body.ok()) return Response::JsonBody(400, {{"error_code", "BAD_REQUEST"}, {"message", "bad json"}});
    return Response::JsonBody(200, {{"got", *body}});
  });
  r.Add(Method::kGet, "/query", [](Request& req) {
    Json out = {{"a", req.Query("a").value_or("<none>")}, {"id", req.QueryAll("id")}, {"raw", req.query}};
    return Response::JsonBody(200, out);
  });
  r.Add(Method::kGet, "/files/*", [](Request& req) { return Response::Text(200, "files:" + req.path_rest); });
  r.Add(Method::kGet, "/files/special/*", [](Request& req) { return Response::Text(200, "special:" + req.path_rest); });
  r.Add(Method::kGet, "/files/exact", [](Request&) { return Response::Text(200, "exact"); });
  r.Add(Method::kPut, "/files/*", [](Request& req) { return Response::Text(200, "put:" + req.path_rest); });
  r.Add(Method::kPost, "/small", [](Request& req) { return Response::Text(200, std::to_string(req.body.size())); },
        {.max_body_bytes = 1024});
  r.Add(
      Method::kPut, "/upload/*",
      [](Request& req) {
        Fnv f;
        uint64_t total = 0;
        std::vector<char> buf(100000);  // not a power of two on purpose
        for (;;) {
          auto n = req.body_stream->Read(buf.data(), buf.size());
          if (!n.ok()) return Response::Text(400, std::string(n.status().message()));
          if (*n == 0) break;
          f.Add(buf.data(), *n);
          total += *n;
        }
        auto length = req.body_stream->content_length();
        return Response::JsonBody(200, {{"bytes", total},
                                        {"hash", std::to_string(f.h)},
                                        {"content_length", length ? Json(*length) : Json(nullptr)},
                                        {"name", req.path_rest}});
      },
      {.stream_body = true});
  r.Add(
      Method::kPut, "/partial",
      [](Request& req) {
        char buf[10];
        auto n = req.body_stream->Read(buf, sizeof(buf));
        return Response::Text(200, n.ok() ? std::string(buf, *n) : "error");
      },
      {.stream_body = true});
  r.Add(Method::kGet, "/download", [](Request& req) {
    uint64_t size = std::stoull(req.Query("size").value_or("0"));
    Response resp;
    resp.content_type = "application/octet-stream";
    resp.content_length = size;
    auto offset = std::make_shared<uint64_t>(0);
    resp.body_source = [offset, size](char* scratch, size_t n) -> absl::StatusOr<size_t> {
      size_t k = static_cast<size_t>(std::min<uint64_t>(n, size - *offset));
      for (size_t i = 0; i < k; ++i) scratch[i] = PatternByte(*offset + i);
      *offset += k;
      return k;
    };
    return resp;
  });
  r.Add(Method::kGet, "/throw", [](Request&) -> Response { throw std::runtime_error("boom"); });
  r.Add(Method::kGet, "/sleep", [](Request& req) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::stoi(req.Query("ms").value_or("0"))));
    return Response::Text(200, "slept");
  });
  r.Add(Method::kGet, "/remote", [](Request& req) { return Response::Text(200, req.remote_address); });
  r.Add(Method::kGet, "/error", [](Request& req) {
    return Response::Text(std::stoi(req.Query("status").value_or("500")), req.Query("body").value_or(""),
                          "application/json");
  });
  // Asynchronous routes: answered on the loop, later from another thread,
  // from a blocking task, or not at all.
  r.AddAsync(Method::kPost, "/async/now", [](Request& req, Responder reply) {
    reply.Send(Response::Text(200, "now:" + req.body));
  });
  r.AddAsync(Method::kPost, "/async/later", [](Request& req, Responder reply) {
    int ms = std::stoi(req.Query("ms").value_or("20"));
    std::string answer = "later:" + req.body;
    std::thread([reply = std::move(reply), ms, answer]() mutable {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      reply.Send(Response::Text(200, answer));
    }).detach();
  });
  r.AddAsync(Method::kPost, "/async/blocking", [](Request& req, Responder reply) {
    reply.SendFrom([body = req.body] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      return Response::Text(200, "blocking:" + body);
    });
  });
  r.AddAsync(Method::kPost, "/async/drop", [](Request&, Responder) {});
  r.AddAsync(Method::kPost, "/async/throw", [](Request&, Responder) { throw std::runtime_error("boom"); });
  r.AddAsync(Method::kPost, "/async/big", [](Request& req, Responder reply) {
    uint64_t size = std::stoull(req.Query("size").value_or("0"));
    std::string body(size, '\0');
    for (uint64_t i = 0; i < size; ++i) body[i] = PatternByte(i);
    reply.Send(Response::Text(200, std::move(body), "application/octet-stream"));
  });
  // Answered at the end of the loop's pass over its ready connections.
  r.AddAsync(Method::kPost, "/async/deferred", [](Request& req, Responder reply) {
    DeferredTasks* later = DeferredTasks::Current();
    if (later == nullptr) return reply.Send(Response::Text(500, "not on an event loop"));
    later->Add([reply = std::make_shared<Responder>(std::move(reply)), body = req.body] {
      reply->Send(Response::Text(200, "deferred:" + body));
    });
  });
  // Holds its event loop until the test opens hold_gate.
  r.AddAsync(Method::kPost, "/async/hold", [](Request&, Responder reply) {
    holding = true;
    hold_gate->WaitForNotification();
    reply.Send(Response::Text(200, "released"));
  });
  // Answered at the end of the loop's pass (or slice of one) with how many
  // such requests had been read by then.
  r.AddAsync(Method::kPost, "/async/counted", [](Request&, Responder reply) {
    ++counted_reads;
    DeferredTasks::Current()->Add([reply = std::make_shared<Responder>(std::move(reply))] {
      reply->Send(Response::Text(200, std::to_string(counted_reads.load())));
    });
  });
  // Answered by a task another thread posts back to the loop that read the request.
  r.AddAsync(Method::kPost, "/async/posted", [](Request& req, Responder reply) {
    TaskQueue* home = TaskQueue::Current();
    if (home == nullptr) return reply.Send(Response::Text(500, "no task queue on an event loop"));
    std::thread([home, reply = std::make_shared<Responder>(std::move(reply)), body = req.body] {
      home->Post([home, reply, body] {
        reply->Send(TaskQueue::Current() == home ? Response::Text(200, "posted:" + body)
                                                 : Response::Text(500, "ran on another thread"));
      });
    }).detach();
  });
  r.AddAsync(Method::kPost, "/async/small", [](Request& req, Responder reply) {
    reply.Send(Response::Text(200, std::to_string(req.body.size())));
  }, {.max_body_bytes = 1024});
  return r;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer({.host = "127.0.0.1", .port = 0}); }
  void TearDown() override {
    if (server_) server_->Stop();
  }

  void StartServer(Server::Options options) {
    if (server_) server_->Stop();
    auto server = Server::Create(options, TestRouter());
    ASSERT_THAT(server, IsOk());
    server_ = *std::move(server);
    port_ = server_->port();
    auto client = Client::Create("127.0.0.1", port_);
    ASSERT_THAT(client, IsOk());
    client_ = *std::move(client);
  }

  std::unique_ptr<Client> NewClient() { return *Client::Create("127.0.0.1", port_); }

  // A raw TCP connection to the server.
  int RawConnect() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
  }
  static void SendAll(int fd, std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      ASSERT_GT(n, 0);
      data.remove_prefix(static_cast<size_t>(n));
    }
  }
  // Reads until `n` bytes or the end of the stream.
  static std::string ReadN(int fd, size_t n) {
    std::string out;
    char buf[4096];
    while (out.size() < n) {
      ssize_t r = ::recv(fd, buf, std::min(sizeof(buf), n - out.size()), 0);
      if (r <= 0) break;
      out.append(buf, static_cast<size_t>(r));
    }
    return out;
  }
  // Reads one response with a Content-Length: the head and the body.
  static std::pair<std::string, std::string> ReadResponse(int fd) {
    std::string head;
    char c;
    while (head.find("\r\n\r\n") == std::string::npos && ::recv(fd, &c, 1, 0) == 1) head.push_back(c);
    size_t length = 0;
    auto pos = head.find("Content-Length: ");
    if (pos != std::string::npos) length = std::stoul(head.substr(pos + 16));
    return {head, ReadN(fd, length)};
  }

  std::unique_ptr<Server> server_;
  std::unique_ptr<Client> client_;
  int port_ = 0;
};

TEST(UrlTest, EncodeDecode) {
  EXPECT_EQ(UrlEncode("a b/c?d=e&f~_.-"), "a%20b%2Fc%3Fd%3De%26f~_.-");
  EXPECT_EQ(UrlEncodePath("dir/a b+c"), "dir/a%20b%2Bc");
  EXPECT_EQ(UrlEncode("\xff\x01"), "%FF%01");
  EXPECT_EQ(*UrlDecode("a%20b+c%2f", false), "a b+c/");
  EXPECT_EQ(*UrlDecode("a%20b+c", true), "a b c");
  EXPECT_EQ(*UrlDecode(UrlEncode("x/\xe2\x82\xac y"), false), "x/\xe2\x82\xac y");
  EXPECT_THAT(UrlDecode("%zz", false), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(UrlDecode("abc%4", false), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(UrlDecode("abc%", false), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(RouterTest, ExactPrefixAndAllowed) {
  Router r = TestRouter();
  auto m = r.Find(Method::kGet, "/files/exact");
  ASSERT_NE(m.handler, nullptr);
  Request req;
  EXPECT_EQ((*m.handler)(req).body, "exact");
  m = r.Find(Method::kGet, "/files/special/a/b");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(m.path_rest, "a/b");
  EXPECT_EQ((*m.handler)(req).body, "special:");
  m = r.Find(Method::kGet, "/files/other");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(m.path_rest, "other");
  m = r.Find(Method::kGet, "/files/");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(m.path_rest, "");
  EXPECT_EQ(r.Find(Method::kGet, "/files").handler, nullptr);  // a prefix route needs the slash
  m = r.Find(Method::kDelete, "/files/x");
  EXPECT_EQ(m.handler, nullptr);
  EXPECT_THAT(m.allowed, ElementsAre(Method::kGet, Method::kPut));
  m = r.Find(Method::kGet, "/nowhere");
  EXPECT_EQ(m.handler, nullptr);
  EXPECT_TRUE(m.allowed.empty());
}

TEST(RouterTest, CustomNotFound) {
  Router r;
  r.Add(Method::kPost, "/x", [](Request&) { return Response::Text(200, ""); });
  r.SetNotFound([](Request&, const std::vector<Method>& allowed) {
    return Response::JsonBody(allowed.empty() ? 404 : 405, {{"allowed", allowed.size()}});
  });
  Request req;
  EXPECT_EQ(r.NotFound(req, r.Find(Method::kGet, "/x").allowed).status, 405);
  EXPECT_EQ(r.NotFound(req, r.Find(Method::kGet, "/y").allowed).status, 404);
}

TEST(RequestTest, HeaderAndQuery) {
  Request req;
  req.headers = {{"content-type", "text/plain"}, {"x-a", "1"}};
  req.query = "a=1+2%21&b&id=1&id=2&a=second&bad=%zz&sp%20ace=yes";
  EXPECT_EQ(req.Header("Content-Type"), "text/plain");
  EXPECT_EQ(req.Header("missing"), std::nullopt);
  EXPECT_EQ(req.Query("a"), "1 2!");
  EXPECT_EQ(req.Query("b"), "");
  EXPECT_EQ(req.Query("c"), std::nullopt);
  EXPECT_EQ(req.Query("bad"), "%zz");
  EXPECT_EQ(req.Query("sp ace"), "yes");
  EXPECT_THAT(req.QueryAll("id"), ElementsAre("1", "2"));
  EXPECT_THAT(req.QueryAll("a"), ElementsAre("1 2!", "second"));
}

TEST(ClientTest, FromUrl) {
  EXPECT_THAT(Client::FromUrl("http://localhost:5000/api"), IsOk());
  EXPECT_THAT(Client::FromUrl("http://[::1]:5000"), IsOk());
  EXPECT_THAT(Client::FromUrl("http://example.com"), IsOk());
  EXPECT_THAT(Client::FromUrl("ftp://x"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Client::FromUrl("https://x"), StatusIs(absl::StatusCode::kUnimplemented));
  EXPECT_THAT(Client::FromUrl("http://x:99999"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Client::FromUrl("http://:80"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ClientTest, ConnectionRefused) {
  // Find a free port, then close it.
  int port;
  {
    auto server = Server::Create({.host = "127.0.0.1", .port = 0}, Router());
    ASSERT_THAT(server, IsOk());
    port = (*server)->port();
  }
  auto client = Client::Create("127.0.0.1", port);
  ASSERT_THAT(client, IsOk());
  EXPECT_THAT((*client)->Send(Method::kGet, "/"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot connect to 127.0.0.1:")));
  EXPECT_THAT((*client)->GetJson("/"), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(HttpServerTest, BindingAUsedPortIsUnavailable) {
  EXPECT_THAT(Server::Create({.host = "127.0.0.1", .port = port_}, Router()),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(HttpServerTest, Routing) {
  auto r = client_->Send(Method::kGet, "/hello");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello");
  EXPECT_EQ(r->Header("Content-Type"), "text/plain; charset=utf-8");

  r = client_->Send(Method::kGet, "/files/a%20b/c%2Fd");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->body, "files:a b/c/d");
  EXPECT_EQ(client_->Send(Method::kGet, "/files/special/x")->body, "special:x");
  EXPECT_EQ(client_->Send(Method::kGet, "/files/exact")->body, "exact");
  EXPECT_EQ(client_->Send(Method::kPut, "/files/exact", "x")->body, "put:exact");

  r = client_->Send(Method::kGet, "/nowhere");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 404);
  r = client_->Send(Method::kDelete, "/files/x");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(r->Header("allow"), "GET, PUT");
  // A body sent to an unknown route is dropped and the connection kept.
  r = client_->Send(Method::kPost, "/nowhere", std::string(5000, 'x'));
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 404);

  r = client_->Send(Method::kGet, "/files/%zz");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 400);
  r = client_->Send(Method::kGet, "/files/a%00b");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(client_->Send(Method::kGet, "/hello")->status, 200);
}

TEST_F(HttpServerTest, QueryDecoding) {
  auto j = client_->GetJson("/query?a=x+y%21%26&id=1&id=2&other=3");
  ASSERT_THAT(j, IsOk());
  EXPECT_EQ((*j)["a"], "x y!&");
  EXPECT_EQ((*j)["id"], Json::array({"1", "2"}));
  EXPECT_EQ((*j)["raw"], "a=x+y%21%26&id=1&id=2&other=3");
  j = client_->GetJson("/query?" + UrlEncode("a") + "=" + UrlEncode("p/q r+s"));
  ASSERT_THAT(j, IsOk());
  EXPECT_EQ((*j)["a"], "p/q r+s");
}

TEST_F(HttpServerTest, JsonRoundTrip) {
  Json body = {{"name", "exp \xe2\x82\xac"}, {"tags", {{{"key", "k"}, {"value", "v"}}}}, {"n", 1.5}};
  auto j = client_->PostJson("/json", body);
  ASSERT_THAT(j, IsOk());
  EXPECT_EQ((*j)["got"], body);
  auto r = client_->Send(Method::kPost, "/json", "{bad");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->Header("content-type"), "application/json");
  Response resp = Response::JsonBody(201, {{"bad_utf8", "\xff"}});  // never throws
  EXPECT_EQ(resp.status, 201);
  EXPECT_THAT(resp.body, HasSubstr("bad_utf8"));
}

TEST_F(HttpServerTest, GetJsonMapsErrors) {
  auto get = [&](int status, const std::string& body) {
    return client_->GetJson("/error?status=" + std::to_string(status) + "&body=" + UrlEncode(body));
  };
  auto s = get(404, R"({"error_code":"RESOURCE_DOES_NOT_EXIST","message":"run 42 not found"})");
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kNotFound, HasSubstr("run 42 not found")));
  EXPECT_EQ(ErrorCodeOf(s.status()), "RESOURCE_DOES_NOT_EXIST");
  s = get(400, R"({"error":"bad tensor"})");
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad tensor")));
  EXPECT_EQ(ErrorCodeOf(s.status()), std::nullopt);
  EXPECT_THAT(get(503, "overloaded"), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("overloaded")));
  EXPECT_THAT(get(401, ""), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(get(403, ""), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(get(409, ""), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(get(429, ""), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(get(500, "x"), StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(get(200, "not json"), StatusIs(absl::StatusCode::kInternal));
  auto ok = get(200, R"({"a":1})");
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ((*ok)["a"], 1);
  auto empty = get(200, "");
  ASSERT_THAT(empty, IsOk());
  EXPECT_TRUE(empty->is_object());
}

TEST_F(HttpServerTest, BodyLimit) {
  auto r = client_->Send(Method::kPost, "/small", std::string(1024, 'x'));
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "1024");
  r = client_->Send(Method::kPost, "/small", std::string(1025, 'x'));
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 413);
  // The server closed that connection; the client reconnects.
  r = client_->Send(Method::kPost, "/small", "abc");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->body, "3");

  // A chunked body over the limit.
  int fd = RawConnect();
  SendAll(fd, "POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 3; ++i) SendAll(fd, "200\r\n" + std::string(512, 'y') + "\r\n");
  SendAll(fd, "0\r\n\r\n");
  auto [head, body] = ReadResponse(fd);
  EXPECT_THAT(head, StartsWith("HTTP/1.1 413"));
  ::close(fd);
}

TEST_F(HttpServerTest, StreamingUploadWithContentLength) {
  const uint64_t size = 50ull << 20;
  uint64_t offset = 0;
  auto r = client_->SendStream(Method::kPut, "/upload/big%20file", size, [&](char* buf, size_t n) -> absl::StatusOr<size_t> {
    size_t k = std::min<uint64_t>(n, size - offset);
    for (size_t i = 0; i < k; ++i) buf[i] = PatternByte(offset + i);
    offset += k;
    return k;
  });
  ASSERT_THAT(r, IsOk());
  ASSERT_EQ(r->status, 200) << r->body;
  Json j = Json::parse(r->body);
  EXPECT_EQ(j["bytes"], size);
  EXPECT_EQ(j["content_length"], size);
  EXPECT_EQ(j["hash"], std::to_string(PatternHash(size)));
  EXPECT_EQ(j["name"], "big file");
}

TEST_F(HttpServerTest, StreamingUploadChunked) {
  const uint64_t size = 50ull << 20;
  int fd = RawConnect();
  SendAll(fd, "PUT /upload/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
  std::string chunk;
  uint64_t offset = 0;
  size_t chunk_size = 1;  // varying chunk sizes, from tiny to large
  while (offset < size) {
    size_t n = std::min<uint64_t>(chunk_size, size - offset);
    chunk.clear();
    char len[32];
    snprintf(len, sizeof(len), "%zx\r\n", n);
    chunk += len;
    for (size_t i = 0; i < n; ++i) chunk.push_back(PatternByte(offset + i));
    chunk += "\r\n";
    SendAll(fd, chunk);
    offset += n;
    chunk_size = chunk_size * 3 % 1000003 + 1;
  }
  SendAll(fd, "0\r\n\r\n");
  auto [head, body] = ReadResponse(fd);
  EXPECT_THAT(head, StartsWith("HTTP/1.1 200"));
  Json j = Json::parse(body);
  EXPECT_EQ(j["bytes"], size);
  EXPECT_TRUE(j["content_length"].is_null());
  EXPECT_EQ(j["hash"], std::to_string(PatternHash(size)));
  // The connection is still usable.
  SendAll(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  auto [head2, body2] = ReadResponse(fd);
  EXPECT_THAT(head2, StartsWith("HTTP/1.1 200"));
  EXPECT_EQ(body2, "hello");
  ::close(fd);
}

TEST_F(HttpServerTest, StreamingHandlerThatStopsReading) {
  // A small unread rest is drained: the connection is kept.
  auto r = client_->Send(Method::kPut, "/partial", std::string(100000, 'z'));
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->body, std::string(10, 'z'));
  std::string remote = client_->Send(Method::kGet, "/remote")->body;
  EXPECT_EQ(client_->Send(Method::kGet, "/remote")->body, remote);
  // A large one closes the connection, after the response was delivered.
  r = client_->Send(Method::kPut, "/partial", std::string(20 << 20, 'q'));
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, std::string(10, 'q'));
  EXPECT_EQ(r->Header("connection"), "close");
  EXPECT_EQ(client_->Send(Method::kGet, "/hello")->body, "hello");
}

TEST_F(HttpServerTest, StreamingDownload) {
  const uint64_t size = (30ull << 20) + 17;
  Fnv f;
  uint64_t got = 0;
  auto r = client_->Download("/download?size=" + std::to_string(size), [&](std::string_view data) {
    f.Add(data.data(), data.size());
    got += data.size();
    return absl::OkStatus();
  });
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(got, size);
  EXPECT_EQ(f.h, PatternHash(size));
  EXPECT_EQ(r->Header("content-length"), std::to_string(size));
  EXPECT_TRUE(r->body.empty());

  // Non-2xx answers come back with their body.
  r = client_->Download("/nowhere", [&](std::string_view) { return absl::InternalError("not called"); });
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->body, "not found\n");

  // A failing sink aborts the download with its status; the client recovers.
  r = client_->Download("/download?size=10000000", [&](std::string_view) { return absl::DataLossError("disk"); });
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kDataLoss));
  auto full = client_->Send(Method::kGet, "/download?size=1000");
  ASSERT_THAT(full, IsOk());
  ASSERT_EQ(full->body.size(), 1000u);
  EXPECT_EQ(full->body[999], PatternByte(999));
}

TEST_F(HttpServerTest, KeepAliveReusesOneConnection) {
  std::string first = client_->Send(Method::kGet, "/remote")->body;
  EXPECT_THAT(first, StartsWith("127.0.0.1:"));
  for (int i = 0; i < 500; ++i) {
    auto r = client_->Send(Method::kGet, "/remote");
    ASSERT_THAT(r, IsOk());
    ASSERT_EQ(r->body, first);
  }
}

TEST_F(HttpServerTest, ReconnectsAfterServerIdleClose) {
  StartServer({.host = "127.0.0.1", .port = 0, .idle_timeout_ms = 100});
  std::string first = client_->Send(Method::kGet, "/remote")->body;
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  auto r = client_->Send(Method::kPost, "/echo", "after idle");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->body, "after idle");
  EXPECT_NE(client_->Send(Method::kGet, "/remote")->body, first);
}

TEST_F(HttpServerTest, Head) {
  auto r = client_->Send(Method::kHead, "/hello");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "");
  EXPECT_EQ(r->Header("content-length"), "5");
  r = client_->Send(Method::kHead, "/download?size=123456");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->Header("content-length"), "123456");
  EXPECT_EQ(r->body, "");
  // No body bytes were sent: the connection still parses the next response.
  EXPECT_EQ(client_->Send(Method::kGet, "/hello")->body, "hello");

  int fd = RawConnect();
  SendAll(fd, "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  // ReadResponse reads Content-Length bytes after the HEAD's header: they must
  // be the start of the next response.
  auto [head1, body1] = ReadResponse(fd);
  EXPECT_THAT(head1, StartsWith("HTTP/1.1 200"));
  EXPECT_EQ(body1, "HTTP/");
  ::close(fd);
}

TEST_F(HttpServerTest, ExpectContinue) {
  int fd = RawConnect();
  SendAll(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  EXPECT_EQ(ReadN(fd, 25), "HTTP/1.1 100 Continue\r\n\r\n");
  SendAll(fd, "12345");
  auto [head, body] = ReadResponse(fd);
  EXPECT_THAT(head, StartsWith("HTTP/1.1 200"));
  EXPECT_EQ(body, "12345");

  SendAll(fd, "PUT /upload/e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
  EXPECT_EQ(ReadN(fd, 25), "HTTP/1.1 100 Continue\r\n\r\n");
  SendAll(fd, "abc");
  auto [head2, body2] = ReadResponse(fd);
  EXPECT_THAT(head2, StartsWith("HTTP/1.1 200"));
  EXPECT_EQ(Json::parse(body2)["bytes"], 3);

  // Too large: answered 413 at once, without 100 Continue.
  SendAll(fd, "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n");
  auto [head3, body3] = ReadResponse(fd);
  EXPECT_THAT(head3, StartsWith("HTTP/1.1 413"));
  ::close(fd);
}

TEST_F(HttpServerTest, MalformedRequestGets400) {
  for (std::string_view bad : {"GARBAGE\r\n\r\n", "GET /x HTTP/9\r\n\r\n", "GET /x HTTP/1.1\r\nNo colon\r\n\r\n",
                               "GET relative HTTP/1.1\r\nHost: x\r\n\r\n",
                               "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"}) {
    int fd = RawConnect();
    SendAll(fd, bad);
    auto [head, body] = ReadResponse(fd);
    EXPECT_THAT(head, StartsWith("HTTP/1.1 400")) << bad;
    EXPECT_EQ(ReadN(fd, 1), "");  // closed
    ::close(fd);
  }
  int fd = RawConnect();
  SendAll(fd, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(100000, 'b') + "\r\n\r\n");
  EXPECT_THAT(ReadResponse(fd).first, StartsWith("HTTP/1.1 431"));
  ::close(fd);
  fd = RawConnect();
  SendAll(fd, "BREW /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(ReadResponse(fd).first, StartsWith("HTTP/1.1 501"));
  ::close(fd);
  // A client that disconnects mid-request does no harm either.
  fd = RawConnect();
  SendAll(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc");
  ::close(fd);
  EXPECT_EQ(client_->Send(Method::kGet, "/hello")->body, "hello");
}

TEST_F(HttpServerTest, HandlerThatThrowsGets500) {
  auto r = client_->Send(Method::kGet, "/throw");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(r->body, "internal server error\n");
  EXPECT_EQ(client_->Send(Method::kGet, "/hello")->body, "hello");
}

TEST_F(HttpServerTest, Http10ClosesUnlessKeepAlive) {
  int fd = RawConnect();
  SendAll(fd, "GET /hello HTTP/1.0\r\n\r\n");
  auto [head, body] = ReadResponse(fd);
  EXPECT_THAT(head, StartsWith("HTTP/1.0 200"));
  EXPECT_EQ(body, "hello");
  EXPECT_EQ(ReadN(fd, 1), "");
  ::close(fd);
  fd = RawConnect();
  SendAll(fd, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  auto [head2, body2] = ReadResponse(fd);
  EXPECT_THAT(head2, HasSubstr("Connection: keep-alive"));
  SendAll(fd, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  EXPECT_EQ(ReadResponse(fd).second, "hello");
  ::close(fd);
}

TEST_F(HttpServerTest, StopWithIdleConnectionsReturnsPromptly) {
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 8; ++i) {
    clients.push_back(NewClient());
    ASSERT_EQ(clients.back()->Send(Method::kGet, "/hello")->status, 200);
  }
  int raw = RawConnect();  // connected, never sends anything
  int partial = RawConnect();
  SendAll(partial, "GET /hel");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto start = std::chrono::steady_clock::now();
  server_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  server_->Stop();  // idempotent
  EXPECT_THAT(clients[0]->Send(Method::kGet, "/hello"), StatusIs(absl::StatusCode::kUnavailable));
  ::close(raw);
  ::close(partial);
}

TEST_F(HttpServerTest, StopWaitsForInFlightRequests) {
  // A synchronous handler on a connection thread, an asynchronous one answered later.
  struct Case {
    Method method;
    const char* target;
    const char* answer;
  };
  for (const Case& c : {Case{Method::kGet, "/sleep?ms=300", "slept"},
                        Case{Method::kPost, "/async/later?ms=300", "later:s"}}) {
    SCOPED_TRACE(c.target);
    StartServer({.host = "127.0.0.1", .port = 0});
    absl::StatusOr<ClientResponse> slow;
    std::thread t([&] { slow = NewClient()->Send(c.method, c.target, "s", "text/plain"); });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    server_->Stop();
    t.join();
    ASSERT_THAT(slow, IsOk());
    EXPECT_EQ(slow->body, c.answer);
    EXPECT_EQ(slow->Header("connection"), "close");
  }
}

TEST_F(HttpServerTest, AsyncRoutesAnswerOnTheLoopLaterOrFromABlockingTask) {
  for (int i = 0; i < 3; ++i) {  // one keep-alive connection throughout
    auto now = client_->Send(Method::kPost, "/async/now", "a" + std::to_string(i), "text/plain");
    ASSERT_THAT(now, IsOk());
    EXPECT_EQ(now->status, 200);
    EXPECT_EQ(now->body, "now:a" + std::to_string(i));
    auto later = client_->Send(Method::kPost, "/async/later?ms=5", "b", "text/plain");
    ASSERT_THAT(later, IsOk());
    EXPECT_EQ(later->body, "later:b");
    auto blocking = client_->Send(Method::kPost, "/async/blocking", "c", "text/plain");
    ASSERT_THAT(blocking, IsOk());
    EXPECT_EQ(blocking->body, "blocking:c");
    // A synchronous route moves the connection to a thread, where
    // asynchronous routes still work.
    auto hello = client_->Send(Method::kGet, "/hello");
    ASSERT_THAT(hello, IsOk());
    EXPECT_EQ(hello->body, "hello");
  }
}

TEST_F(HttpServerTest, AsyncHandlerThatDropsOrThrowsIs500) {
  auto dropped = client_->Send(Method::kPost, "/async/drop", "x", "text/plain");
  ASSERT_THAT(dropped, IsOk());
  EXPECT_EQ(dropped->status, 500);
  EXPECT_THAT(dropped->body, HasSubstr("dropped"));
  auto threw = client_->Send(Method::kPost, "/async/throw", "x", "text/plain");
  ASSERT_THAT(threw, IsOk());
  EXPECT_EQ(threw->status, 500);
  auto after = client_->Send(Method::kPost, "/async/now", "ok", "text/plain");  // the connection still works
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->body, "now:ok");
}

TEST_F(HttpServerTest, AsyncPipelinedAndSplitRequests) {
  int fd = RawConnect();
  // Two requests in one write, then a third, a synchronous one, whose
  // bytes the loop has read when it hands the connection over.
  SendAll(fd,
          "POST /async/later?ms=30 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
          "POST /async/now HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\ntwo"
          "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  auto [head1, body1] = ReadResponse(fd);
  EXPECT_THAT(head1, StartsWith("HTTP/1.1 200"));
  EXPECT_EQ(body1, "later:one");
  auto [head2, body2] = ReadResponse(fd);
  EXPECT_EQ(body2, "now:two");
  auto [head3, body3] = ReadResponse(fd);
  EXPECT_EQ(body3, "hello");
  ::close(fd);

  // A header and body arriving in pieces.
  fd = RawConnect();
  SendAll(fd, "POST /async/now HTTP/1.1\r\nHo");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  SendAll(fd, "st: x\r\nContent-Length: 6\r\n\r\nab");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  SendAll(fd, "cdef");
  auto [head4, body4] = ReadResponse(fd);
  EXPECT_THAT(head4, StartsWith("HTTP/1.1 200"));
  EXPECT_EQ(body4, "now:abcdef");
  // "Connection: close": answered, then closed.
  SendAll(fd, "POST /async/now HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nz");
  auto [head5, body5] = ReadResponse(fd);
  EXPECT_THAT(head5, HasSubstr("Connection: close"));
  EXPECT_EQ(body5, "now:z");
  char c;
  EXPECT_EQ(::recv(fd, &c, 1, 0), 0);
  ::close(fd);
}

TEST_F(HttpServerTest, AsyncHandlersMayAnswerAtTheEndOfTheLoopsPass) {
  auto one = client_->Send(Method::kPost, "/async/deferred", "a", "text/plain");
  ASSERT_THAT(one, IsOk());
  EXPECT_EQ(one->status, 200);
  EXPECT_EQ(one->body, "deferred:a");
  // Pipelined: each answer lets the next request in, in order, on one connection.
  int fd = RawConnect();
  SendAll(fd,
          "POST /async/deferred HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nb"
          "POST /async/now HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nc"
          "POST /async/deferred HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nd");
  EXPECT_EQ(ReadResponse(fd).second, "deferred:b");
  EXPECT_EQ(ReadResponse(fd).second, "now:c");
  EXPECT_EQ(ReadResponse(fd).second, "deferred:d");
  ::close(fd);
}

TEST_F(HttpServerTest, ALongPassIsAnsweredInSlices) {
  StartServer({.host = "127.0.0.1", .port = 0, .loop_threads = 1});
  absl::Notification gate;
  hold_gate = &gate;
  holding = false;
  counted_reads = 0;
  // The only loop waits in /async/hold while 16 requests arrive on 16 new
  // connections; once open, it finds them all ready in one pass.
  int held = RawConnect();
  SendAll(held, "POST /async/hold HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  while (!holding) std::this_thread::yield();
  std::vector<int> fds;
  for (int i = 0; i < 16; ++i) {
    fds.push_back(RawConnect());
    SendAll(fds.back(), "POST /async/counted HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  gate.Notify();
  EXPECT_EQ(ReadResponse(held).second, "released");
  std::vector<int> read_when_answered;
  for (int fd : fds) {
    read_when_answered.push_back(std::stoi(ReadResponse(fd).second));
    ::close(fd);
  }
  ::close(held);
  // The first slice (8 connections) was answered before the rest were read.
  std::sort(read_when_answered.begin(), read_when_answered.end());
  EXPECT_EQ(read_when_answered.front(), 8);
  EXPECT_EQ(read_when_answered.back(), 16);
  hold_gate = nullptr;
}

TEST_F(HttpServerTest, AnEventLoopRunsTasksPostedToItOnItsThread) {
  for (const char* body : {"a", "b", "c"}) {
    auto r = client_->Send(Method::kPost, "/async/posted", body, "text/plain");
    ASSERT_THAT(r, IsOk());
    EXPECT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(r->body, std::string("posted:") + body);
  }
}

TEST_F(HttpServerTest, AsyncBodyLimitAndMalformedRequests) {
  auto big = client_->Send(Method::kPost, "/async/small", std::string(2000, 'x'), "text/plain");
  ASSERT_THAT(big, IsOk());
  EXPECT_EQ(big->status, 413);
  auto ok = client_->Send(Method::kPost, "/async/small", std::string(1000, 'x'), "text/plain");
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ(ok->body, "1000");
  int fd = RawConnect();
  SendAll(fd, "POST /async/now HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n");
  auto [head, body] = ReadResponse(fd);
  EXPECT_THAT(head, StartsWith("HTTP/1.1 400"));
  ::close(fd);
}

TEST_F(HttpServerTest, AsyncLargeResponseToASlowReader) {
  constexpr uint64_t kSize = 16 << 20;  // more than the socket buffers hold
  int fd = RawConnect();
  SendAll(fd, "POST /async/big?size=" + std::to_string(kSize) + " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the loop has to wait for us
  auto [head, body] = ReadResponse(fd);
  EXPECT_THAT(head, StartsWith("HTTP/1.1 200"));
  ASSERT_EQ(body.size(), kSize);
  Fnv f;
  f.Add(body.data(), body.size());
  EXPECT_EQ(f.h, PatternHash(kSize));
  SendAll(fd, "POST /async/now HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nq");
  EXPECT_EQ(ReadResponse(fd).second, "now:q");
  ::close(fd);
}

TEST_F(HttpServerTest, LoopClosesIdleConnections) {
  StartServer({.host = "127.0.0.1", .port = 0, .idle_timeout_ms = 100});
  int fd = RawConnect();
  SendAll(fd, "POST /async/now HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nq");
  EXPECT_EQ(ReadResponse(fd).second, "now:q");
  auto start = std::chrono::steady_clock::now();
  char c;
  EXPECT_EQ(::recv(fd, &c, 1, 0), 0);  // closed by the server
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  ::close(fd);
}

TEST_F(HttpServerTest, MaxConnectionsQueuesNewConnections) {
  StartServer({.host = "127.0.0.1", .port = 0, .max_connections = 1});
  ASSERT_EQ(client_->Send(Method::kGet, "/hello")->status, 200);  // holds the only slot
  std::atomic<bool> done{false};
  absl::StatusOr<ClientResponse> second;
  std::thread t([&] {
    second = NewClient()->Send(Method::kGet, "/hello");
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(done);
  client_.reset();  // frees the slot
  t.join();
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->body, "hello");
}

TEST_F(HttpServerTest, ConcurrentClients) {
  constexpr int kThreads = 16;
  constexpr int kRequests = 200;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto client = NewClient();
      for (int i = 0; i < kRequests; ++i) {
        std::string body = "thread " + std::to_string(t) + " request " + std::to_string(i);
        body += std::string(static_cast<size_t>(i * 37 % 5000), 'p');
        auto r = client->Send(Method::kPost, "/echo", body, "text/x-test");
        if (!r.ok() || r->status != 200 || r->body != body || r->Header("x-request-content-type") != "text/x-test") {
          ++failures;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
}

}  // namespace
}  // namespace cairn::http
