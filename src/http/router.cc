// Request/Response helpers and the Router.
#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "absl/synchronization/notification.h"
#include "http/http.h"

namespace cairn::http {

namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// Query components are decoded leniently: a malformed escape stays as written.
std::string DecodeQueryComponent(std::string_view s) {
  auto decoded = UrlDecode(s, /*plus_is_space=*/true);
  if (decoded.ok()) return *std::move(decoded);
  std::string out(s);
  std::replace(out.begin(), out.end(), '+', ' ');
  return out;
}

// Calls fn(name, raw_value) for each "name=value" of `query` whose decoded
// name equals `name`; stops when fn returns false.
template <class Fn>
void ForEachParam(std::string_view query, std::string_view name, Fn fn) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    std::string_view key = part.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1);
    bool match = key.find_first_of("%+") == std::string_view::npos ? key == name : DecodeQueryComponent(key) == name;
    if (match && !fn(value)) return;
  }
}

}  // namespace

std::string_view MethodName(Method m) {
  switch (m) {
    case Method::kGet:
      return "GET";
    case Method::kHead:
      return "HEAD";
    case Method::kPost:
      return "POST";
    case Method::kPut:
      return "PUT";
    case Method::kDelete:
      return "DELETE";
    case Method::kPatch:
      return "PATCH";
    case Method::kOptions:
      return "OPTIONS";
  }
  return "UNKNOWN";
}

std::optional<std::string_view> Request::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (EqualsIgnoreCase(key, name)) return std::string_view(value);
  }
  return std::nullopt;
}

std::optional<std::string> Request::Query(std::string_view name) const {
  std::optional<std::string> result;
  ForEachParam(query, name, [&](std::string_view value) {
    result = DecodeQueryComponent(value);
    return false;
  });
  return result;
}

std::vector<std::string> Request::QueryAll(std::string_view name) const {
  std::vector<std::string> result;
  ForEachParam(query, name, [&](std::string_view value) {
    result.push_back(DecodeQueryComponent(value));
    return true;
  });
  return result;
}

std::optional<std::string_view> ClientResponse::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (EqualsIgnoreCase(key, name)) return std::string_view(value);
  }
  return std::nullopt;
}

Response Response::JsonBody(int status, const Json& body) {
  Response r;
  r.status = status;
  r.content_type = "application/json";
  // `replace` so that invalid UTF-8 in a string never throws here.
  r.body = body.dump(-1, ' ', false, Json::error_handler_t::replace);
  return r;
}

Response Response::Text(int status, std::string body, std::string content_type) {
  Response r;
  r.status = status;
  r.content_type = std::move(content_type);
  r.body = std::move(body);
  return r;
}

Responder& Responder::operator=(Responder&& other) noexcept {
  if (this != &other) {
    Send(Response::Text(500, "internal server error: the request was dropped\n"));
    send_ = std::move(other.send_);
    run_blocking_ = std::move(other.run_blocking_);
    other.send_ = nullptr;
  }
  return *this;
}

Responder::~Responder() { Send(Response::Text(500, "internal server error: the request was dropped\n")); }

void Responder::Send(Response response) {
  if (!send_) return;  // sent already
  SendFn send = std::move(send_);
  send_ = nullptr;
  send(std::move(response));
}

void Responder::SendFrom(std::function<Response()> blocking) {
  if (!send_) return;
  SendFn send = std::move(send_);
  send_ = nullptr;
  run_blocking_([send = std::move(send), blocking = std::move(blocking)] {
    Response response;
    try {
      response = blocking();
    } catch (...) {
      response = Response::Text(500, "internal server error\n");
    }
    send(std::move(response));
  });
}

void Router::Add(Method method, std::string pattern, Handler handler, RouteOptions options) {
  AddRoute(Route{method, std::move(pattern), false, std::move(handler), nullptr, options});
}

void Router::AddAsync(Method method, std::string pattern, AsyncHandler handler, RouteOptions options) {
  options.stream_body = false;
  AddRoute(Route{method, std::move(pattern), false, nullptr, std::move(handler), options});
}

void Router::AddRoute(Route route) {
  std::string& pattern = route.pattern;
  route.prefix = pattern.size() >= 2 && pattern.compare(pattern.size() - 2, 2, "/*") == 0;
  if (route.prefix) pattern.pop_back();  // keep the trailing '/'
  const bool prefix = route.prefix;
  size_t index = routes_.size();
  routes_.push_back(std::move(route));
  const std::string& stored = routes_.back().pattern;
  if (prefix) {
    auto pos = std::find_if(prefixes_.begin(), prefixes_.end(),
                            [&](size_t i) { return routes_[i].pattern.size() < stored.size(); });
    prefixes_.insert(pos, index);
  } else {
    exact_[stored].push_back(index);
  }
}

void Router::SetNotFound(std::function<Response(Request&, const std::vector<Method>& allowed)> handler) {
  not_found_ = std::move(handler);
}

void Router::SetHandler(const Route& route, Match& match) {
  if (route.async_handler) {
    match.async_handler = &route.async_handler;
  } else {
    match.handler = &route.handler;
  }
  match.options = &route.options;
}

Response Router::Call(const Match& match, Request& request) {
  try {
    if (match.handler != nullptr) return (*match.handler)(request);
    if (match.async_handler != nullptr) {
      Response response;
      absl::Notification done;
      bool threw = false;
      try {
        (*match.async_handler)(request, Responder(
                                            [&](Response r) {
                                              response = std::move(r);
                                              done.Notify();
                                            },
                                            [](std::function<void()> task) { task(); }));
      } catch (...) {
        threw = true;
        spdlog::error("http: handler for {} {} threw", MethodName(request.method), request.path);
      }
      done.WaitForNotification();  // the Responder may live on elsewhere
      return threw ? Response::Text(500, "internal server error\n") : std::move(response);
    }
    return Response::Text(500, "internal server error: no handler\n");
  } catch (const std::exception& e) {
    spdlog::error("http: handler for {} {} threw: {}", MethodName(request.method), request.path, e.what());
  } catch (...) {
    spdlog::error("http: handler for {} {} threw a non-standard exception", MethodName(request.method), request.path);
  }
  return Response::Text(500, "internal server error\n");
}

Router::Match Router::Find(Method method, std::string_view path) const {
  Match match;
  auto exact = exact_.find(path);
  if (exact != exact_.end()) {
    for (size_t i : exact->second) {
      if (routes_[i].method == method) {
        SetHandler(routes_[i], match);
        return match;
      }
    }
  }
  for (size_t i : prefixes_) {
    const Route& r = routes_[i];
    if (r.method == method && path.size() >= r.pattern.size() && path.compare(0, r.pattern.size(), r.pattern) == 0) {
      SetHandler(r, match);
      match.path_rest = std::string(path.substr(r.pattern.size()));
      return match;
    }
  }
  // No route for this method: collect the methods that would have matched.
  auto add = [&](Method m) {
    if (std::find(match.allowed.begin(), match.allowed.end(), m) == match.allowed.end()) match.allowed.push_back(m);
  };
  if (exact != exact_.end()) {
    for (size_t i : exact->second) add(routes_[i].method);
  }
  for (size_t i : prefixes_) {
    const Route& r = routes_[i];
    if (path.size() >= r.pattern.size() && path.compare(0, r.pattern.size(), r.pattern) == 0) add(r.method);
  }
  std::sort(match.allowed.begin(), match.allowed.end());
  return match;
}

Response Router::NotFound(Request& request, const std::vector<Method>& allowed) const {
  if (not_found_) return not_found_(request, allowed);
  if (allowed.empty()) return Response::Text(404, "not found\n");
  Response r = Response::Text(405, "method not allowed\n");
  std::string allow;
  for (Method m : allowed) {
    if (!allow.empty()) allow += ", ";
    allow += MethodName(m);
  }
  r.headers.emplace_back("allow", std::move(allow));
  return r;
}

}  // namespace cairn::http
