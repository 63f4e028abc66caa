#include "cli/serving_commands.h"

#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <charconv>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "api/data_directory.h"
#include "api/inference_api.h"
#include "api/local_registry.h"
#include "api/mlflow_api.h"
#include "base/logging.h"
#include "http/http.h"
#include "serving/inference_plane.h"
#include "serving/oip_codec.h"
#include "serving/registry_source.h"

namespace cairn::cli {
namespace {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string cache_dir;
  int64_t poll_ms = 500;
  int threads = 1;
  int python_workers = 1;
  std::string payload_log;
  double payload_sample = 1.0;
  std::string log_level = "info";
};

serving::PlaneOptions PlaneOptionsFrom(const ServeOptions& o) {
  serving::PlaneOptions p;
  p.cache_dir = o.cache_dir;
  p.poll_interval_ms = o.poll_ms;
  p.backend.threads = o.threads;
  p.backend.python_workers = o.python_workers;
  p.payload_log_dir = o.payload_log;
  p.payload_sample_rate = o.payload_sample;
  return p;
}

absl::Status Serve(const GlobalOptions& g, ServeOptions o) {
  RETURN_IF_ERROR(InitLogging(o.log_level));
  const sigset_t stop_signals = BlockStopSignals();

  auto env = NewPosixEnv();
  std::unique_ptr<serving::ModelSource> source;
  std::unique_ptr<api::DataDirectory> dir;
  std::string following;
  if (!g.url.empty()) {
    ASSIGN_OR_RETURN(source, serving::RemoteRegistry::Create(g.url));
    following = g.url;
    if (o.cache_dir.empty()) o.cache_dir = "./cairn-serve-cache";
  } else {
    // A replica beside the data directory (same machine): read the registry directly.
    std::string data_dir = g.data_dir.empty() ? EnvOr("CAIRN_HOME", "./cairn-data") : g.data_dir;
    ASSIGN_OR_RETURN(dir, api::DataDirectory::Open(*env, data_dir, api::DataDirectory::Role::kClient));
    source = std::make_unique<api::LocalRegistry>(*dir);
    following = data_dir;
    if (o.cache_dir.empty()) o.cache_dir = data_dir + "/serving/models";
  }
  ASSIGN_OR_RETURN(auto plane, serving::InferencePlane::Create(*source, PlaneOptionsFrom(o), *env));
  RETURN_IF_ERROR(plane->Start());
  http::Router router;
  api::AddServerRoutes(router);
  api::AddInferenceRoutes(*plane, router);
  auto server = http::Server::Create({.host = o.host, .port = o.port}, std::move(router));
  if (!server.ok()) return Annotate(server.status(), fmt::format("cannot listen on {}:{}", o.host, o.port));
  std::printf("Cairn inference server listening on http://%s:%d (following %s)\n", o.host.c_str(),
              (*server)->port(), following.c_str());
  std::fflush(stdout);
  spdlog::info("inference plane following {}; model cache {}", following, o.cache_dir);
  int sig = WaitForStopSignal(stop_signals);
  spdlog::info("received signal {}, shutting down", sig);
  (*server)->Stop();
  plane->Stop();
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadInput(const std::string& input) {
  std::string trimmed = input;
  size_t first = trimmed.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && (trimmed[first] == '{' || trimmed[first] == '[')) return trimmed;
  if (input == "-") {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    return ss.str();
  }
  std::ifstream f(input, std::ios::binary);
  if (!f) return absl::NotFoundError(fmt::format("--input {}: no such file (give a file, '-' or inline JSON)", input));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The request to send: an OIP request body as is, or rows ([[...], ...] or
// {"rows": ...}) for the model's first input, typed from its metadata.
absl::StatusOr<serving::InferRequest> BuildRequest(const std::string& text, const Json& metadata) {
  ASSIGN_OR_RETURN(Json j, ParseJson(text));
  if (j.is_object() && j.contains("inputs")) return serving::DecodeInferRequest(text, std::nullopt);
  const Json& rows = j.is_object() && j.contains("rows") ? j["rows"] : j;
  if (!rows.is_array() || rows.empty()) {
    return absl::InvalidArgumentError("--input: an OIP request ({\"inputs\": [...]}) or a non-empty array of rows");
  }
  const Json& inputs = metadata.value("inputs", Json::array());
  if (inputs.size() != 1) {
    return absl::InvalidArgumentError(fmt::format(
        "the model takes {} inputs: give a full OIP request ({{\"inputs\": [...]}}) rather than rows", inputs.size()));
  }
  std::string name = inputs[0].value("name", "input");
  std::string datatype = inputs[0].value("datatype", "FP32");
  bool matrix = rows[0].is_array();
  Json shape = matrix ? Json::array({rows.size(), rows[0].size()}) : Json::array({rows.size()});
  Json request = {{"inputs", Json::array({{{"name", name}, {"datatype", datatype}, {"shape", shape}, {"data", rows}}})}};
  return serving::DecodeInferRequest(request.dump(), std::nullopt);
}

absl::StatusOr<Json> ResponseJson(const serving::InferResponse& r) {
  // Re-encode as all-JSON for printing.
  serving::InferRequest asked;
  serving::EncodedBody body = serving::EncodeInferResponse(r, asked);
  if (body.json_header_length) return Json{{"model_name", r.model_name}, {"model_version", r.model_version}};
  return ParseJson(body.body);
}

absl::Status Predict(const GlobalOptions& g, const std::string& model, const std::string& input,
                     std::optional<int64_t> version, bool binary) {
  ASSIGN_OR_RETURN(std::string text, ReadInput(input));
  std::string target = fmt::format("/v2/models/{}{}", http::UrlEncode(model),
                                    version ? fmt::format("/versions/{}", *version) : std::string());
  serving::InferResponse response;
  if (!g.url.empty()) {
    ASSIGN_OR_RETURN(auto client, http::Client::FromUrl(g.url));
    ASSIGN_OR_RETURN(Json metadata, client->GetJson(target));
    ASSIGN_OR_RETURN(serving::InferRequest request, BuildRequest(text, metadata));
    serving::EncodedBody body = serving::EncodeInferRequest(request, binary);
    std::vector<std::pair<std::string, std::string>> headers;
    if (body.json_header_length) {
      headers.emplace_back("Inference-Header-Content-Length", std::to_string(*body.json_header_length));
    }
    ASSIGN_OR_RETURN(http::ClientResponse r,
                     client->Send(http::Method::kPost, target + "/infer", body.body, body.content_type, headers));
    if (r.status != 200) {
      auto err = ParseJson(r.body);
      std::string message = err.ok() && err->is_object() ? err->value("error", r.body) : r.body;
      return absl::Status(r.status == 404   ? absl::StatusCode::kNotFound
                          : r.status == 400 ? absl::StatusCode::kInvalidArgument
                                            : absl::StatusCode::kUnavailable,
                          fmt::format("HTTP {}: {}", r.status, message));
    }
    std::optional<size_t> json_length;
    if (auto h = r.Header("inference-header-content-length")) {
      size_t n = 0;
      auto [end, ec] = std::from_chars(h->data(), h->data() + h->size(), n);
      if (ec != std::errc() || end != h->data() + h->size()) {
        return absl::DataLossError(fmt::format("bad Inference-Header-Content-Length '{}' in the answer", *h));
      }
      json_length = n;
    }
    ASSIGN_OR_RETURN(response, serving::DecodeInferResponse(r.body, json_length));
  } else {
    // Embedded: load the deployment in this process, answer once.
    auto env = NewPosixEnv();
    std::string data_dir = g.data_dir.empty() ? EnvOr("CAIRN_HOME", "./cairn-data") : g.data_dir;
    ASSIGN_OR_RETURN(auto dir, api::DataDirectory::Open(*env, data_dir, api::DataDirectory::Role::kClient));
    api::LocalRegistry source(*dir);
    serving::PlaneOptions options;
    options.cache_dir = data_dir + "/serving/models";
    ASSIGN_OR_RETURN(auto plane, serving::InferencePlane::Create(source, options, *env));
    RETURN_IF_ERROR(plane->Reconcile());
    ASSIGN_OR_RETURN(serving::ModelMetadata m, plane->Metadata(model, version));
    Json metadata = {{"inputs", Json::array()}};
    for (const auto& s : m.signature.inputs) {
      metadata["inputs"].push_back({{"name", s.name}, {"datatype", std::string(serving::DataTypeName(s.datatype))}});
    }
    ASSIGN_OR_RETURN(serving::InferRequest request, BuildRequest(text, metadata));
    ASSIGN_OR_RETURN(serving::PlaneResult r, plane->Infer(model, version, std::move(request.inputs), request.id));
    response.model_name = model;
    response.model_version = std::to_string(r.version);
    response.id = r.prediction_id;
    response.outputs = std::move(r.outputs);
    plane->Stop();
  }
  ASSIGN_OR_RETURN(Json out, ResponseJson(response));
  if (g.json) {
    PrintJson(out);
    return absl::OkStatus();
  }
  std::printf("model %s version %s\n", response.model_name.c_str(), response.model_version.c_str());
  for (const Json& o : out.value("outputs", Json::array())) {
    std::printf("%s %s %s: %s\n", o.value("name", "").c_str(), o.value("datatype", "").c_str(),
                o["shape"].dump().c_str(), o["data"].dump().c_str());
  }
  return absl::OkStatus();
}

}  // namespace

void AddServingCommands(CLI::App& app, GlobalOptions& g, int& exit_code) {
  auto* serve = app.add_subcommand(
      "serve",
      "Run a stand-alone inference server (Open Inference Protocol v2) that follows the registry's deployments:\n"
      "the server at --url / CAIRN_URL, else the data directory. Run several to scale serving out.");
  auto o = std::make_shared<ServeOptions>();
  serve->add_option("--host", o->host, "address to bind")->capture_default_str();
  serve->add_option("--port", o->port, "TCP port; 0 picks a free one")->capture_default_str();
  serve->add_option("--cache-dir", o->cache_dir, "where model versions are unpacked (default ./cairn-serve-cache)");
  serve->add_option("--poll-ms", o->poll_ms, "how often to check the registry for alias moves")->capture_default_str();
  serve->add_option("--threads", o->threads, "threads per model call (XGBoost, TorchScript)")->capture_default_str();
  serve->add_option("--python-workers", o->python_workers, "worker processes per Python model")->capture_default_str();
  serve->add_option("--payload-log", o->payload_log, "folder for the prediction log (default: off)");
  serve->add_option("--payload-sample", o->payload_sample, "fraction of predictions logged")->capture_default_str();
  serve->add_option("--log-level", o->log_level, "trace, debug, info, warn, error")->capture_default_str();
  serve->callback([&g, &exit_code, o] {
    absl::Status s = Serve(g, *o);
    if (!s.ok()) exit_code = Fail(s);
  });

  auto* predict = app.add_subcommand(
      "predict",
      "Send one inference request to a deployment and print the answer (and the version that gave it).\n"
      "--input: a file, '-' for stdin, or inline JSON: a full OIP request {\"inputs\": [...]} or rows [[...], ...]\n"
      "for a model with one input. With --url it asks that server; otherwise it loads the model in this process.");
  auto model = std::make_shared<std::string>();
  auto input = std::make_shared<std::string>();
  auto version = std::make_shared<int64_t>(0);
  auto binary = std::make_shared<bool>(false);
  predict->add_option("NAME", *model, "deployment (model) name")->required();
  predict->add_option("--input,-i", *input, "request: FILE, '-' or JSON")->required();
  predict->add_option("--version", *version, "ask this loaded version instead of the routed one");
  predict->add_flag("--binary", *binary, "send the tensors with the binary extension");
  predict->callback([&g, &exit_code, model, input, version, binary] {
    absl::Status s = Predict(g, *model, *input, *version > 0 ? std::optional<int64_t>(*version) : std::nullopt,
                             *binary);
    if (!s.ok()) exit_code = Fail(s);
  });
}

}  // namespace cairn::cli
