#include "cli/transport.h"

#include <fmt/format.h>

#include <vector>

#include "api/data_directory.h"
#include "api/mlflow_api.h"
#include "http/http.h"

namespace cairn::cli {
namespace {

// Turns an HTTP answer into JSON or a Status with the server's message.
absl::StatusOr<Json> Decode(int status, const std::string& body) {
  auto parsed = ParseJson(body.empty() ? std::string_view("{}") : std::string_view(body));
  if (status >= 200 && status < 300) {
    if (!parsed.ok()) return absl::InternalError("the server answered with malformed JSON");
    return std::move(parsed).value();
  }
  std::string message = body.substr(0, 500);
  std::string code;
  if (parsed.ok() && parsed->is_object()) {
    if (parsed->contains("message") && (*parsed)["message"].is_string()) message = (*parsed)["message"];
    if (parsed->contains("error_code") && (*parsed)["error_code"].is_string()) code = (*parsed)["error_code"];
  }
  absl::StatusCode sc = status == 404   ? absl::StatusCode::kNotFound
                        : status == 400 ? absl::StatusCode::kInvalidArgument
                        : status == 401 ? absl::StatusCode::kUnauthenticated
                        : status == 403 ? absl::StatusCode::kPermissionDenied
                        : status == 429 ? absl::StatusCode::kResourceExhausted
                        : status == 503 ? absl::StatusCode::kUnavailable
                                        : absl::StatusCode::kInternal;
  // The error code is more precise than the HTTP status where both exist.
  if (code == "RESOURCE_CONFLICT") sc = absl::StatusCode::kAborted;
  if (code == "INVALID_STATE") sc = absl::StatusCode::kFailedPrecondition;
  if (code == "RESOURCE_ALREADY_EXISTS") sc = absl::StatusCode::kAlreadyExists;
  if (code == "DATA_LOSS") sc = absl::StatusCode::kDataLoss;
  absl::Status s(sc, message);
  return code.empty() ? s : WithErrorCode(s, code);
}

class HttpTransport : public Transport {
 public:
  HttpTransport(std::string url, std::unique_ptr<http::Client> client) : url_(std::move(url)), client_(std::move(client)) {}

  absl::StatusOr<Json> Get(std::string_view target) override {
    ASSIGN_OR_RETURN(auto r, client_->Send(http::Method::kGet, target));
    return Decode(r.status, r.body);
  }
  absl::StatusOr<Json> Post(std::string_view target, const Json& body) override {
    ASSIGN_OR_RETURN(auto r, client_->Send(http::Method::kPost, target, body.dump()));
    return Decode(r.status, r.body);
  }
  absl::Status Download(std::string_view target, const std::function<absl::Status(std::string_view)>& sink) override {
    ASSIGN_OR_RETURN(auto r, client_->Download(target, sink));
    if (r.status >= 200 && r.status < 300) return absl::OkStatus();
    return Decode(r.status, r.body).status();
  }
  absl::StatusOr<Json> PostBytes(std::string_view target, std::string_view body) override {
    ASSIGN_OR_RETURN(auto r, client_->Send(http::Method::kPost, target, body, "application/octet-stream"));
    return Decode(r.status, r.body);
  }
  absl::StatusOr<Json> Delete(std::string_view target) override {
    ASSIGN_OR_RETURN(auto r, client_->Send(http::Method::kDelete, target));
    return Decode(r.status, r.body);
  }
  std::string Describe() const override { return url_; }

 private:
  std::string url_;
  std::unique_ptr<http::Client> client_;
};

// Dispatches requests straight into the server's router.
class EmbeddedTransport : public Transport {
 public:
  static absl::StatusOr<std::unique_ptr<Transport>> Open(const std::string& data_dir) {
    auto t = std::unique_ptr<EmbeddedTransport>(new EmbeddedTransport());
    t->env_ = NewPosixEnv();
    ASSIGN_OR_RETURN(t->dir_, api::DataDirectory::Open(*t->env_, data_dir, api::DataDirectory::Role::kClient));
    t->router_ = std::make_unique<http::Router>(api::BuildRouter(*t->dir_));
    return std::unique_ptr<Transport>(std::move(t));
  }

  absl::StatusOr<Json> Get(std::string_view target) override {
    http::Response r = Dispatch(http::Method::kGet, target, "");
    ASSIGN_OR_RETURN(std::string body, Drain(r));
    return Decode(r.status, body);
  }
  absl::StatusOr<Json> Post(std::string_view target, const Json& body) override {
    http::Response r = Dispatch(http::Method::kPost, target, body.dump());
    ASSIGN_OR_RETURN(std::string out, Drain(r));
    return Decode(r.status, out);
  }
  absl::Status Download(std::string_view target, const std::function<absl::Status(std::string_view)>& sink) override {
    http::Response r = Dispatch(http::Method::kGet, target, "");
    if (r.status < 200 || r.status >= 300) return Decode(r.status, r.body).status();
    if (!r.body_source) return sink(r.body);
    std::vector<char> buf(1 << 20);
    for (;;) {
      ASSIGN_OR_RETURN(size_t n, r.body_source(buf.data(), buf.size()));
      if (n == 0) return absl::OkStatus();
      RETURN_IF_ERROR(sink(std::string_view(buf.data(), n)));
    }
  }
  absl::StatusOr<Json> PostBytes(std::string_view target, std::string_view body) override {
    http::Response r = Dispatch(http::Method::kPost, target, std::string(body));
    ASSIGN_OR_RETURN(std::string out, Drain(r));
    return Decode(r.status, out);
  }
  absl::StatusOr<Json> Delete(std::string_view target) override {
    http::Response r = Dispatch(http::Method::kDelete, target, "");
    ASSIGN_OR_RETURN(std::string out, Drain(r));
    return Decode(r.status, out);
  }
  std::string Describe() const override { return dir_->path(); }
  api::DataDirectory* embedded() override { return dir_.get(); }

 private:
  EmbeddedTransport() = default;

  http::Response Dispatch(http::Method method, std::string_view target, std::string body) {
    http::Request req;
    req.method = method;
    size_t q = target.find('?');
    auto path = http::UrlDecode(target.substr(0, q), false);
    req.path = path.ok() ? *path : std::string(target.substr(0, q));
    if (q != std::string_view::npos) req.query = std::string(target.substr(q + 1));
    req.body = std::move(body);
    req.remote_address = "embedded";
    http::Router::Match match = router_->Find(method, req.path);
    if (!match.found()) return router_->NotFound(req, match.allowed);
    req.path_rest = match.path_rest;
    return http::Router::Call(match, req);
  }

  static absl::StatusOr<std::string> Drain(http::Response& r) {
    if (!r.body_source) return std::move(r.body);
    std::string out;
    std::vector<char> buf(1 << 16);
    for (;;) {
      ASSIGN_OR_RETURN(size_t n, r.body_source(buf.data(), buf.size()));
      if (n == 0) return out;
      out.append(buf.data(), n);
    }
  }

  std::unique_ptr<Env> env_;
  std::unique_ptr<api::DataDirectory> dir_;
  std::unique_ptr<http::Router> router_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Transport>> Transport::Connect(const TransportOptions& options) {
  if (!options.url.empty()) {
    ASSIGN_OR_RETURN(auto client, http::Client::FromUrl(options.url));
    return std::unique_ptr<Transport>(new HttpTransport(options.url, std::move(client)));
  }
  return EmbeddedTransport::Open(options.data_dir);
}

}  // namespace cairn::cli
