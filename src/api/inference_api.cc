#include "api/inference_api.h"

#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "serving/oip_codec.h"

namespace cairn::api {
namespace {

using http::Method;
using http::Request;
using http::Response;
using serving::InferencePlane;

// OIP errors are {"error": "..."}; the status follows the Status code.
Response OipError(const absl::Status& status) {
  int code = 500;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
      code = 400;
      break;
    case absl::StatusCode::kNotFound:
      code = 404;
      break;
    case absl::StatusCode::kResourceExhausted:
      code = 429;
      break;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kAborted:
      code = 503;
      break;
    case absl::StatusCode::kDeadlineExceeded:
      code = 504;
      break;
    default:
      break;
  }
  return Response::JsonBody(code, Json{{"error", std::string(status.message())}});
}

Response OipError(int code, std::string message) { return Response::JsonBody(code, Json{{"error", std::move(message)}}); }

// The parts of a /v2/models/... path.
struct ModelPath {
  std::string name;
  std::optional<int64_t> version;
  std::string action;  // "", "ready", "infer", "stats"
};

absl::StatusOr<ModelPath> ParseModelPath(std::string_view rest) {
  ModelPath p;
  size_t slash = rest.find('/');
  p.name = std::string(rest.substr(0, slash));
  if (p.name.empty()) return absl::InvalidArgumentError("missing model name in the path");
  rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  if (rest.starts_with("versions/")) {
    rest.remove_prefix(9);
    slash = rest.find('/');
    std::string_view v = rest.substr(0, slash);
    int64_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || ec != std::errc() || end != v.data() + v.size() || n < 1) {
      return absl::InvalidArgumentError(fmt::format("bad model version '{}' in the path: a positive integer", v));
    }
    p.version = n;
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  }
  if (rest != "" && rest != "ready" && rest != "infer" && rest != "stats") {
    return absl::NotFoundError(fmt::format("no such endpoint: /v2/models/{}/{}", p.name, rest));
  }
  p.action = std::string(rest);
  return p;
}

Json SpecJson(const serving::TensorSpec& spec) {
  return {{"name", spec.name}, {"datatype", std::string(serving::DataTypeName(spec.datatype))}, {"shape", spec.shape}};
}

Response ModelMetadata(InferencePlane& plane, const ModelPath& p) {
  auto m = plane.Metadata(p.name, p.version);
  if (!m.ok()) return OipError(m.status());
  Json versions = Json::array();
  for (int64_t v : m->versions) versions.push_back(std::to_string(v));
  Json inputs = Json::array();
  Json outputs = Json::array();
  for (const auto& s : m->signature.inputs) inputs.push_back(SpecJson(s));
  for (const auto& s : m->signature.outputs) outputs.push_back(SpecJson(s));
  return Response::JsonBody(200, Json{{"name", m->name},
                                      {"versions", std::move(versions)},
                                      {"platform", m->platform},
                                      {"inputs", std::move(inputs)},
                                      {"outputs", std::move(outputs)},
                                      {"parameters", {{"registered_model", m->model}}}});
}

std::optional<int64_t> ParsePositive(std::string_view s) {
  int64_t n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || end != s.data() + s.size() || n <= 0) return std::nullopt;
  return n;
}

// A decoded infer request.
struct InferCall {
  ModelPath path;
  serving::InferRequest request;  // its inputs are moved out to run
  std::optional<absl::Time> deadline;
  std::chrono::steady_clock::time_point started;
};

// Decodes `request` into `call`; the error response for a bad one.
std::optional<Response> DecodeInfer(Request& request, InferCall& call) {
  call.started = std::chrono::steady_clock::now();
  std::optional<size_t> json_length;
  if (auto h = request.Header("inference-header-content-length")) {
    auto n = ParsePositive(*h);
    if (!n && *h != "0") {
      return OipError(400, fmt::format("bad Inference-Header-Content-Length '{}': a byte count", *h));
    }
    json_length = n ? static_cast<size_t>(*n) : 0;
  }
  auto decoded = serving::DecodeInferRequest(request.body, json_length);
  if (!decoded.ok()) return OipError(decoded.status());
  call.request = *std::move(decoded);

  std::optional<int64_t> timeout_ms;
  if (auto h = request.Header("x-cairn-timeout-ms")) {
    timeout_ms = ParsePositive(*h);
    if (!timeout_ms) return OipError(400, fmt::format("bad X-Cairn-Timeout-Ms '{}': a positive integer", *h));
  } else if (auto it = call.request.parameters.find("timeout_ms"); it != call.request.parameters.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() <= 0) {
      return OipError(400, "parameter timeout_ms: a positive integer (milliseconds)");
    }
    timeout_ms = it->get<int64_t>();
  }
  if (timeout_ms) call.deadline = absl::Now() + absl::Milliseconds(*timeout_ms);
  return std::nullopt;
}

// The response to `call` once the plane answered `result`.
Response AnswerInfer(const InferCall& call, absl::StatusOr<serving::PlaneResult> result) {
  if (!result.ok()) return OipError(result.status());
  // Outputs asked for by name must be ones the model returns.
  for (const serving::RequestedOutput& o : call.request.outputs) {
    bool found = false;
    for (const serving::Tensor& t : result->outputs) found = found || t.name == o.name;
    if (!found) return OipError(400, fmt::format("unknown output '{}' requested", o.name));
  }
  serving::InferResponse response;
  response.model_name = call.path.name;
  response.model_version = std::to_string(result->version);
  response.id = call.request.id;
  response.outputs = std::move(result->outputs);
  serving::EncodedBody encoded = serving::EncodeInferResponse(response, call.request);

  Response out;
  out.status = 200;
  out.content_type = std::move(encoded.content_type);
  out.body = std::move(encoded.body);
  if (encoded.json_header_length) {
    out.headers.emplace_back("Inference-Header-Content-Length", std::to_string(*encoded.json_header_length));
  }
  out.headers.emplace_back("X-Cairn-Model-Version", response.model_version);
  out.headers.emplace_back("X-Cairn-Prediction-Id", result->prediction_id);
  if (result->role != serving::Role::kPrimary) {
    out.headers.emplace_back("X-Cairn-Route", std::string(serving::RoleName(result->role)));
  }
  // Time spent on the request: decode, queue, model, encode (not HTTP parsing).
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - call.started)
                .count();
  out.headers.emplace_back("X-Cairn-Server-Time-Us", std::to_string(us));
  return out;
}

// Bodies larger than this are decoded on a connection thread rather than
// on the event loop, whose other connections would wait meanwhile.
constexpr size_t kDecodeOnLoopLimit = 256 << 10;

// Runs a decoded `call` on this thread, blocking (a connection thread).
Response RunInfer(InferencePlane& plane, InferCall& call) {
  return AnswerInfer(call, plane.Infer(call.path.name, call.path.version, std::move(call.request.inputs),
                                       call.request.id, call.deadline));
}

// Answers without blocking when the plane can (InferencePlane::InferAsync),
// else runs the blocking Infer on a connection thread.
void Infer(InferencePlane& plane, ModelPath p, Request& request, http::Responder reply) {
  if (request.body.size() > kDecodeOnLoopLimit) {
    // `request` stays valid until the answer is sent.
    reply.SendFrom([&plane, p = std::move(p), &request] {
      InferCall call;
      call.path = p;
      if (std::optional<Response> error = DecodeInfer(request, call)) return *std::move(error);
      return RunInfer(plane, call);
    });
    return;
  }
  auto call = std::make_shared<InferCall>();
  call->path = std::move(p);
  if (std::optional<Response> error = DecodeInfer(request, *call)) {
    reply.Send(*std::move(error));
    return;
  }
  // std::function needs a copyable callback; the Responder is move-only.
  auto shared_reply = std::make_shared<http::Responder>(std::move(reply));
  InferencePlane::InferCallback done = [call, shared_reply](absl::StatusOr<serving::PlaneResult> result) {
    shared_reply->Send(AnswerInfer(*call, std::move(result)));
  };
  if (plane.InferAsync(call->path.name, call->path.version, call->request.inputs, call->request.id, call->deadline,
                       done)) {
    return;
  }
  shared_reply->SendFrom([&plane, call] { return RunInfer(plane, *call); });
}

}  // namespace

void AddInferenceRoutes(InferencePlane& plane, http::Router& router) {
  auto server_metadata = [](Request&) {
    return Response::JsonBody(200, Json{{"name", "cairn"},
                                        {"version", CAIRN_VERSION},
                                        {"extensions", {"binary_tensor_data", "statistics", "model_repository"}}});
  };
  router.Add(Method::kGet, "/v2", server_metadata);
  router.Add(Method::kGet, "/v2/", server_metadata);
  router.Add(Method::kGet, "/v2/health/live", [&plane](Request&) {
    return plane.Live() ? Response::JsonBody(200, Json{{"live", true}}) : OipError(503, "not live");
  });
  router.Add(Method::kGet, "/v2/health/ready", [&plane](Request&) {
    return plane.Ready() ? Response::JsonBody(200, Json{{"ready", true}})
                         : OipError(503, "not ready: a deployment has no version loaded yet");
  });
  router.Add(Method::kGet, "/v2/models/*", [&plane](Request& request) {
    if (request.path_rest == "stats") {
      Json all = Json::array();
      for (const std::string& name : plane.DeploymentNames()) {
        if (auto s = plane.Statistics(name); s.ok()) all.push_back(*s);
      }
      return Response::JsonBody(200, Json{{"model_stats", std::move(all)}});
    }
    auto p = ParseModelPath(request.path_rest);
    if (!p.ok()) return OipError(p.status());
    if (p->action == "") return ModelMetadata(plane, *p);
    if (p->action == "ready") {
      if (plane.Ready(p->name, p->version)) {
        return Response::JsonBody(200, Json{{"name", p->name}, {"ready", true}});
      }
      auto m = plane.Metadata(p->name, std::nullopt);
      if (!m.ok() && m.status().code() == absl::StatusCode::kNotFound) return OipError(m.status());
      return OipError(503, p->version ? fmt::format("model '{}' version {} is not loaded", p->name, *p->version)
                                      : fmt::format("model '{}' has no version loaded yet", p->name));
    }
    if (p->action == "stats") {
      auto s = plane.Statistics(p->name);
      if (!s.ok()) return OipError(s.status());
      return Response::JsonBody(200, Json{{"model_stats", Json::array({*s})}});
    }
    return OipError(405, "infer takes POST");
  });
  router.AddAsync(
      Method::kPost, "/v2/models/*",
      [&plane](Request& request, http::Responder reply) {
        auto p = ParseModelPath(request.path_rest);
        if (!p.ok()) return reply.Send(OipError(p.status()));
        if (p->action != "infer") {
          return reply.Send(
              OipError(405, fmt::format("POST /v2/models/{}: only .../infer takes POST", request.path_rest)));
        }
        Infer(plane, *std::move(p), request, std::move(reply));
      },
      {.max_body_bytes = 256ull << 20});
  router.Add(Method::kGet, "/metrics", [&plane](Request&) {
    return Response::Text(200, plane.RenderMetrics(), "text/plain; version=0.0.4; charset=utf-8");
  });
  router.Add(Method::kGet, "/api/cairn/v1/serving", [&plane](Request&) {
    return Response::JsonBody(200, plane.Deployments());
  });
}

}  // namespace cairn::api
