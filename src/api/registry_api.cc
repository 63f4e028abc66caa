#include "api/registry_api.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <memory>
#include <optional>
#include <utility>

#include "api/errors.h"
#include "api/mlflow_messages.h"
#include "api/model_lineage.h"
#include "api/registry_messages.h"
#include "api/step_outputs.h"
#include "base/json.h"
#include "registry/promotion_gate.h"
#include "store/object_store.h"

namespace cairn::api {
namespace {

using http::Method;
using http::Request;
using http::Response;
using registry::AliasMove;
using registry::Deployment;
using registry::GateDecision;
using registry::GateDecisionRecord;
using registry::ModelVersion;
using registry::RegisteredModel;
using registry::RegistryStore;

constexpr char kArtifactScheme[] = "mlflow-artifacts:";
constexpr char kProxyPath[] = "/api/2.0/mlflow-artifacts/artifacts/";
constexpr char kCairn[] = "/api/cairn/v1/";
constexpr size_t kMaxModelFiles = 100000;

// ------------------------------------------------------------------ routing

// A handler of a parsed request message that may need the request itself
// (for the caller's name).
using MessageHandler = std::function<absl::StatusOr<Json>(const Json& msg, Request& req)>;

http::Handler Wrap(MessageHandler fn) {
  return [fn = std::move(fn)](Request& req) -> Response {
    try {
      auto msg = RegistryRequestMessage(req);
      if (!msg.ok()) return ErrorResponse(msg.status());
      return JsonOrError(fn(*msg, req));
    } catch (const std::exception& e) {
      // Handlers use the non-throwing accessors; this is a last line of defence.
      return ErrorResponse(BadRequest(fmt::format("Malformed request: {}", e.what())));
    }
  };
}

void AddMlflow(http::Router& router, Method method, const std::string& path, const http::Handler& handler) {
  router.Add(method, "/api/2.0/mlflow/" + path, handler);
  router.Add(method, "/ajax-api/2.0/mlflow/" + path, handler);
}

absl::StatusOr<std::string> OptionalString(const Json& msg, std::string_view field) {
  ASSIGN_OR_RETURN(auto v, GetOptionalString(msg, field));
  return v.value_or("");
}

absl::StatusOr<int> MaxResults(const Json& msg, int limit) {
  ASSIGN_OR_RETURN(int n, GetMaxResults(msg, 0));
  if (n > limit) {
    return absl::InvalidArgumentError(fmt::format(
        "Invalid value for request parameter max_results. It must be at most {}, but got value {}", limit, n));
  }
  return n;
}

absl::StatusOr<registry::SearchRequest> SearchRequestOf(const Json& msg, int limit) {
  registry::SearchRequest r;
  ASSIGN_OR_RETURN(r.filter, OptionalString(msg, "filter"));
  ASSIGN_OR_RETURN(r.max_results, MaxResults(msg, limit));
  ASSIGN_OR_RETURN(r.order_by, GetStringList(msg, "order_by"));
  ASSIGN_OR_RETURN(r.page_token, OptionalString(msg, "page_token"));
  return r;
}

// ------------------------------------------------------- artifact folders

// Splits `path` into segments, refusing anything that could leave the folder
// it names (MLflow's _validate_non_local_source_contains_relative_paths).
absl::StatusOr<std::string> NormalizeArtifactPath(const std::string& source, std::string_view path) {
  auto bad = [&] {
    return absl::InvalidArgumentError(fmt::format(
        "Invalid model version source: '{}'. The path must be absolute, without relative path references", source));
  };
  // Decode until stable, so that "%252e%252e" cannot hide a "..".
  std::string decoded(path);
  for (int i = 0; i < 4; ++i) {
    auto d = http::UrlDecode(decoded, false);
    if (!d.ok()) return bad();
    if (*d == decoded) break;
    decoded = std::move(d).value();
  }
  if (decoded.find('\0') != std::string::npos || decoded.find('\\') != std::string::npos) return bad();
  std::string out;
  size_t start = 0;
  while (start <= decoded.size()) {
    size_t slash = decoded.find('/', start);
    std::string_view seg = std::string_view(decoded).substr(
        start, slash == std::string::npos ? std::string::npos : slash - start);
    if (seg == "." || seg == "..") return bad();
    if (!seg.empty()) {
      if (!out.empty()) out += '/';
      out += seg;
    }
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return out;
}

// The folder below the artifact root of an "mlflow-artifacts:" URI, with or
// without an authority ("mlflow-artifacts://host:5000/0/...").
absl::StatusOr<std::string> ProxiedFolder(const std::string& source, std::string_view uri) {
  std::string_view rest = uri.substr(sizeof(kArtifactScheme) - 1);
  if (rest.substr(0, 2) == "//") {
    size_t slash = rest.find('/', 2);
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  }
  return NormalizeArtifactPath(source, rest);
}

bool IsBelow(const std::string& folder, const std::string& root) {
  return root.empty() || folder == root || (folder.size() > root.size() && folder.compare(0, root.size(), root) == 0 &&
                                            folder[root.size()] == '/');
}

absl::Status NotStoredHere(const std::string& source) {
  return absl::InvalidArgumentError(fmt::format(
      "Invalid model version source: '{}'. Cairn registers models whose files it stores: give runs:/RUN_ID/PATH "
      "or an mlflow-artifacts:/ URI of a run logged to this server",
      source));
}

void ListFolder(tracking::TrackingStore& tracking, const std::string& folder, const std::string& prefix,
                std::vector<ModelFile>& out, absl::Status& status) {
  auto entries = tracking.ListArtifacts(folder);
  if (!entries.ok()) {
    status = entries.status();
    return;
  }
  for (const tracking::ArtifactEntry& e : *entries) {
    if (!status.ok()) return;
    const std::string rel = prefix.empty() ? e.path : prefix + "/" + e.path;
    if (e.is_dir) {
      ListFolder(tracking, folder + "/" + e.path, rel, out, status);
      continue;
    }
    if (out.size() >= kMaxModelFiles) {
      status = absl::InvalidArgumentError(fmt::format("A model folder may hold at most {} files", kMaxModelFiles));
      return;
    }
    auto file = tracking.GetArtifact(folder + "/" + e.path);
    if (!file.ok()) {
      status = file.status();
      return;
    }
    out.push_back({rel, file->size, file->digest});
  }
}

// ---------------------------------------------------------- gated moves

struct MoveOutcome {
  GateDecision gate;
  std::optional<GateDecisionRecord> record;  // the decision as recorded, when the gate recorded one
  std::optional<int64_t> previous;           // where the alias pointed before
  bool moved = false;
};

Json OutcomeDecisionJson(const std::string& name, const std::string& alias, int64_t version, const std::string& user,
                         const std::string& reason, const MoveOutcome& o) {
  if (o.record) return DecisionJson(*o.record);
  Json j = registry::GateDecisionToJson(o.gate);
  j["id"] = Json();
  j["name"] = name;
  j["alias"] = alias;
  j["version"] = version;
  j["user"] = user;
  j["reason"] = reason;
  return j;
}

// Evaluates the gate for moving `alias` to `version` and, if it allows the
// move, makes it, recording the decision's id in the alias history. The move
// only happens if the alias still points where it did when the gate looked
// (the gate's regression check compared against that version).
absl::StatusOr<MoveOutcome> GatedAliasMove(DataDirectory& dir, const std::string& name, const std::string& alias,
                                           int64_t version, const std::string& user, const std::string& reason) {
  RegistryStore& store = dir.registry();
  RETURN_IF_ERROR(registry::ValidateAlias(alias));
  ASSIGN_OR_RETURN(AliasMoveCheck check, CheckAliasMoveRecorded(dir, name, alias, version, user, reason));
  MoveOutcome out;
  out.gate = std::move(check.decision);
  out.previous = check.current_version;
  if (check.decision_id > 0) {
    ASSIGN_OR_RETURN(out.record, store.GetDecision(check.decision_id));
  }
  if (!out.gate.allowed) return out;
  AliasMove move{.user = user, .reason = reason, .check_expected = true, .expected_from = out.previous};
  if (check.decision_id > 0) move.decision_id = check.decision_id;
  absl::Status s = store.SetAlias(name, alias, version, move);
  if (absl::IsFailedPrecondition(s)) {
    return absl::FailedPreconditionError(fmt::format(
        "Alias '{}' of model '{}' moved while its promotion gate was evaluated; try again ({})", alias, name,
        s.message()));
  }
  RETURN_IF_ERROR(s);
  out.moved = true;
  return out;
}

std::string RefusalMessage(const std::string& name, const std::string& alias, int64_t version,
                           const GateDecision& gate) {
  return fmt::format("The promotion gate refused moving alias '{}' of model '{}' to version {}: {}", alias, name,
                     version, registry::DescribeUnmet(gate));
}

// --------------------------------------------------------- MLflow routes

void AddMlflowRegistryRoutes(DataDirectory& dir, http::Router& router) {
  RegistryStore& store = dir.registry();
  tracking::TrackingStore& tracking = dir.tracking();

  // ---------------------------------------------------- registered models
  AddMlflow(router, Method::kPost, "registered-models/create",
            Wrap([&store](const Json& msg, Request& req) -> absl::StatusOr<Json> {
              ASSIGN_OR_RETURN(std::string name, GetString(msg, "name"));
              ASSIGN_OR_RETURN(auto tags, GetTagMap(msg, "tags"));
              ASSIGN_OR_RETURN(std::string description, OptionalString(msg, "description"));
              ASSIGN_OR_RETURN(std::string user, RequestUser(req));
              ASSIGN_OR_RETURN(RegisteredModel m, store.CreateRegisteredModel(name, description, tags, user));
              return Json{{"registered_model", RegisteredModelJson(m)}};
            }));
  AddMlflow(router, Method::kGet, "registered-models/get", Wrap([&store](const Json& msg, Request&) -> absl::StatusOr<Json> {
              ASSIGN_OR_RETURN(std::string name, GetString(msg, "name"));
              ASSIGN_OR_RETURN(RegisteredModel m, store.GetRegisteredModel(name));
              return Json{{"registered_model", RegisteredModelJson(m)}};
            }));
  AddMlflow(router, Method::kPost, "registered-models/rename",
            Wrap([&store](const Json& msg, Request&) -> absl::StatusOr<Json> {
              ASSIGN_OR_RETURN(std::string name, GetString(msg, "name"));
              ASSIGN_OR_RETURN(std::string new_name, GetString(msg, "new_name"));
              ASSIGN_OR_RETURN(RegisteredModel m, store.RenameRegisteredModel(name, new_name));
              return Json{{"registered_model", RegisteredModelJson(m)}};
            }));
  AddMlflow(router, Method::kPatch, "registered-models/update",
            Wrap([&store](const Json& msg, Request&) -> absl::StatusOr<Json> {
              ASSIGN_OR_RETURN(std::string name, GetString(msg, "name"));
              ASSIGN_OR_RETURN(auto description, GetOptionalString(msg, "description"));
              ASSIGN_OR_RETURN(RegisteredModel m, description ? store.UpdateRegisteredModel(name, *description)
                                                              : store.GetRegisteredModel(name));
              return Json{{"registered_model", RegisteredModelJson(m)}};
            }));
  AddMlflow(router, Method::kDelete, "registered-models/delete",
            Wrap([&store](const Json& msg, Request& req) -> absl::StatusOr<Json> {
              ASSIGN_OR_RETURN(std::string name, GetString(msg, "name"));
              ASSIGN_OR_RETURN(std::string user, RequestUser(req));
              RETURN_IF_ERROR(store.DeleteRegisteredModel(name, user));
              return Json::object();
            }));
  const http::Handler search_models = Wrap([&store](const Json& msg, Request&) -> absl::StatusOr<Json> {
    ASSIGN_OR_RETURN(auto r, SearchRequestOf(msg, registry::kSearchModelsMaxResultsLimit));
    ASSIGN_OR_RETURN(auto result, store.SearchRegisteredModels(r));
    Json out = Json::object();
    if (!result.registered_models.empty()) {
      Json list = Json::array();
      for (const RegisteredModel& m : result.registered_models) list.push_back(RegisteredModelJson(m));
      out["registered_models"] = std::move(list);
    }
    if (!result.next_page_token.empty()) out["next_page_token"] = result.next_page_token;
    return out;
  });
  AddMlflow(router, Method::kGet, "registered-models/search", search_models);
  AddMlflow(router, Method::kPost, "registered-models/search", search_models);  // older clients POST it
  const http::Handler latest = Wrap([&store](const Json& msg, Request&) -> absl::StatusOr<Json> {
    ASSIGN_OR_RETURN(std::string name, GetString(msg, "name"));
    ASSIGN_OR_RETURN(std::vector<std::string> stages, GetStringList(msg, "stages"));
    ASSIGN_OR_RETURN(auto versions, store.GetLatestVersions(name, stages));
    Json out = Json::object();
    if (!versions.empty()) {
      Json list = Json::array();
      for (const ModelVersion& v : versions) list.push_back(ModelVersionJson(v));
      out["model_versions"] = std::move(list);
    }
    return out;
  });
  AddMlflow(router, Method::kPost, "registered-models/get-latest-versions", latest);
  AddMlflow(router, Method::kGet, "registered-models/get-latest-versions", latest);
  AddMlflow(router, Method::kPost, "registered-models/set-tag",
            Wrap([&store](const Json& msg, Request&) -> absl::StatusOr<Json> {
              ASSIGN_OR_RETURN(std::string name, GetString(msg, "name"));
              ASSIGN_OR_RETURN(std::string key, GetString(msg, "key"));
              ASSIGN_OR_RETURN(std::string value, OptionalString(msg, "value"));
              RETURN_IF_ERROR(store.SetRegisteredModelTag(name, key, value));
              return Json::object();
            }));
  AddMlflow(router, Method::kDelete, "registered-models/delete-tag",
            Wrap([&store](const Json& msg, Request&) -> absl::StatusOr<Json> {
              ASSIGN_OR_RETURN(std::string name, GetString(msg, "name"));
              ASSIGN_OR_RETURN(std::string key, GetString(msg, "key"));
              RETURN_IF_ERROR(store.DeleteRegisteredModelTag(name, key));
              return Json::object();
            }));

  // --------------------------------------------------------------- aliases
  AddMlflow(router, Method::kPost, "registered-models/alias",
            Wrap([&dir](const Json& msg, Request& req) -> absl::StatusOr<Json> {
              ASSIGN_OR_RETURN(std::string name, GetString(msg, "name"));
              ASSIGN_OR_RETURN(std::string alias, GetString(msg, "alias"));
              ASSIGN_OR_RETURN(int64_t version, GetVersion(msg, "version"));
              ASSIGN_OR_RETURN(std::string user, RequestUser(req));
              ASSIGN_OR_RETURN(MoveOutcome o, GatedAliasMove(dir, name, alias, version, user, ""));
              if (!o.gate.allowed) {
                // MLflow clients know INVALID_STATE (HTTP 400), not 412.
                return WithErrorCode(absl::FailedPreconditionError(RefusalMessage(name, alias, version, o.gate)),
                                     "INVALID_STATE");
              }
              return Json::object();
            }));
  AddMlflow(router, Method::kDelete, "registered-models/alias",
            Wrap([&store](const Json& msg, Request& req) -> absl::StatusOr<Json> {
              ASSIGN_OR_RETURN(std::string name, GetString(msg, "name"));
              ASSIGN_OR_RETURN(std::string alias, GetString(msg, "alias"));
              ASSIGN_OR_RETURN(std::string user, RequestUser(req));
              RETURN_IF_ERROR(store.DeleteAlias(name, alias, {.user = user}));
              return Json::object();
            }));
  AddMlflow(router, Method::kGet, "registered-models/alias",
            Wrap([&store](const Json& msg, Request&) -> absl::StatusOr<Json> {
              ASSIGN_OR_RETURN(std::string name, GetString(msg, "name"));
              ASSIGN_OR_RETURN(std::string alias, GetString(msg, "alias"));
              ASSIGN_OR_RETURN(ModelVersion v, store.GetModelVersionByAlias(name, alias));
              return Json{{"model_version", ModelVersionJson(v)}};
            }));

  // -------------------------------------------------------- model versions
  AddMlflow(router, Method::kPost, "model-versions/create",
            Wrap([&dir, &store, &tracking](const Json& msg, Request& req) -> absl::StatusOr<Json> {
              registry::CreateModelVersionRequest r;
              ASSIGN_OR_RETURN(r.name, GetString(msg, "name"));
              ASSIGN_OR_RETURN(r.source, GetString(msg, "source"));
              ASSIGN_OR_RETURN(r.run_id, OptionalString(msg, "run_id"));
              ASSIGN_OR_RETURN(r.run_link, OptionalString(msg, "run_link"));
              ASSIGN_OR_RETURN(r.description, OptionalString(msg, "description"));
              ASSIGN_OR_RETURN(r.tags, GetTagMap(msg, "tags"));
              ASSIGN_OR_RETURN(r.user_id, RequestUser(req));
              // The model first: an unknown model is RESOURCE_DOES_NOT_EXIST
              // whatever the source.
              RETURN_IF_ERROR(store.GetRegisteredModel(r.name).status());
              // runs:/STEP_RUN/OUTPUT of a pipeline step: its output becomes the run's artifacts first.
              if (r.source.rfind("runs:/", 0) == 0) {
                std::string rest = r.source.substr(6);
                size_t slash = rest.find('/');
                if (slash != std::string::npos) {
                  RETURN_IF_ERROR(PublishStepOutput(dir, rest.substr(0, slash), rest.substr(slash + 1)));
                }
              }
              ASSIGN_OR_RETURN(std::string folder, ResolveArtifactFolder(tracking, r.source, r.run_id));
              if (r.run_id.empty() && r.source.rfind("runs:/", 0) == 0) {
                r.run_id = r.source.substr(6, r.source.find('/', 6) == std::string::npos
                                                  ? std::string::npos
                                                  : r.source.find('/', 6) - 6);
              }
              ASSIGN_OR_RETURN(ModelArtifact artifact, ReadModelArtifact(tracking, folder));
              // The manifest, stored content-addressed, is what the version
              // serves from now on: its name is the artifact digest.
              ASSIGN_OR_RETURN(Digest manifest, dir.objects().Put(artifact.manifest));
              r.artifact_digest = manifest.ToHex();
              ASSIGN_OR_RETURN(ModelVersion v, store.CreateModelVersion(r));
              return Json{{"model_version", ModelVersionJson(v)}};
            }));
  AddMlflow(router, Method::kGet, "model-versions/get", Wrap([&store](const Json& msg, Request&) -> absl::StatusOr<Json> {
              ASSIGN_OR_RETURN(std::string name, GetString(msg, "name"));
              ASSIGN_OR_RETURN(int64_t version, GetVersion(msg, "version"));
              ASSIGN_OR_RETURN(ModelVersion v, store.GetModelVersion(name, version));
              return Json{{"model_version", ModelVersionJson(v)}};
            }));
  AddMlflow(router, Method::kPatch, "model-versions/update",
            Wrap([&store](const Json& msg, Request&) -> absl::StatusOr<Json> {
              ASSIGN_OR_RETURN(std::string name, GetString(msg, "name"));
              ASSIGN_OR_RETURN(int64_t version, GetVersion(msg, "version"));
              ASSIGN_OR_RETURN(auto description, GetOptionalString(msg, "description"));
              ASSIGN_OR_RETURN(ModelVersion v, description ? store.UpdateModelVersion(name, version, *description)
                                                           : store.GetModelVersion(name, version));
              return Json{{"model_version", ModelVersionJson(v)}};
            }));
  AddMlflow(router, Method::kDelete, "model-versions/delete",
            Wrap([&store](const Json& msg, Request& req) -> absl::StatusOr<Json> {
              ASSIGN_OR_RETURN(std::string name, GetString(msg, "name"));
              ASSIGN_OR_RETURN(int64_t version, GetVersion(msg, "version"));
              ASSIGN_OR_RETURN(std::string user, RequestUser(req));
              RETURN_IF_ERROR(store.DeleteModelVersion(name, version, user));
              return Json::object();
            }));
  AddMlflow(router, Method::kPost, "model-versions/transition-stage",
            Wrap([&store](const Json& msg, Request&) -> absl::StatusOr<Json> {
              ASSIGN_OR_RETURN(std::string name, GetString(msg, "name"));
              ASSIGN_OR_RETURN(int64_t version, GetVersion(msg, "version"));
              ASSIGN_OR_RETURN(std::string stage, GetString(msg, "stage"));
              ASSIGN_OR_RETURN(auto archive, GetOptionalBool(msg, "archive_existing_versions"));
              ASSIGN_OR_RETURN(ModelVersion v,
                               store.TransitionModelVersionStage(name, version, stage, archive.value_or(false)));
              return Json{{"model_version", ModelVersionJson(v)}};
            }));
  const http::Handler search_versions = Wrap([&store](const Json& msg, Request&) -> absl::StatusOr<Json> {
    ASSIGN_OR_RETURN(auto r, SearchRequestOf(msg, registry::kSearchVersionsMaxResultsLimit));
    ASSIGN_OR_RETURN(auto result, store.SearchModelVersions(r));
    Json out = Json::object();
    if (!result.model_versions.empty()) {
      Json list = Json::array();
      for (const ModelVersion& v : result.model_versions) list.push_back(ModelVersionJson(v));
      out["model_versions"] = std::move(list);
    }
    if (!result.next_page_token.empty()) out["next_page_token"] = result.next_page_token;
    return out;
  });
  AddMlflow(router, Method::kGet, "model-versions/search", search_versions);
  AddMlflow(router, Method::kPost, "model-versions/search", search_versions);  // older clients POST it
  AddMlflow(router, Method::kGet, "model-versions/get-download-uri",
            Wrap([&store, &tracking](const Json& msg, Request&) -> absl::StatusOr<Json> {
              ASSIGN_OR_RETURN(std::string name, GetString(msg, "name"));
              ASSIGN_OR_RETURN(int64_t version, GetVersion(msg, "version"));
              ASSIGN_OR_RETURN(ModelVersion v, store.GetModelVersion(name, version));
              // MLflow answers the storage location a runs:/ source resolves
              // to; the client then downloads through the artifact proxy.
              absl::StatusOr<std::string> folder = ResolveArtifactFolder(tracking, v.source, v.run_id);
              return Json{{"artifact_uri", folder.ok() ? "mlflow-artifacts:/" + *folder : v.source}};
            }));
  AddMlflow(router, Method::kPost, "model-versions/set-tag",
            Wrap([&store](const Json& msg, Request&) -> absl::StatusOr<Json> {
              ASSIGN_OR_RETURN(std::string name, GetString(msg, "name"));
              ASSIGN_OR_RETURN(int64_t version, GetVersion(msg, "version"));
              ASSIGN_OR_RETURN(std::string key, GetString(msg, "key"));
              ASSIGN_OR_RETURN(std::string value, OptionalString(msg, "value"));
              RETURN_IF_ERROR(store.SetModelVersionTag(name, version, key, value));
              return Json::object();
            }));
  AddMlflow(router, Method::kDelete, "model-versions/delete-tag",
            Wrap([&store](const Json& msg, Request&) -> absl::StatusOr<Json> {
              ASSIGN_OR_RETURN(std::string name, GetString(msg, "name"));
              ASSIGN_OR_RETURN(int64_t version, GetVersion(msg, "version"));
              ASSIGN_OR_RETURN(std::string key, GetString(msg, "key"));
              RETURN_IF_ERROR(store.DeleteModelVersionTag(name, version, key));
              return Json::object();
            }));
}

// ---------------------------------------------------------- Cairn routes

// Splits a path rest ("NAME/versions/3/files/a/b") into segments.
std::vector<std::string> Segments(const std::string& rest) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= rest.size()) {
    size_t slash = rest.find('/', start);
    out.push_back(rest.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return out;
}

// The segments of the path after `prefix`, each percent-decoded on its own,
// so that a model name holding '/' (sent as %2F) stays one segment. Falls
// back to the decoded rest when the client encoded the prefix itself.
absl::StatusOr<std::vector<std::string>> RawSegments(const Request& req, std::string_view prefix) {
  std::string_view raw = req.raw_path;
  if (raw.substr(0, prefix.size()) != prefix) return Segments(req.path_rest);
  std::vector<std::string> out;
  for (const std::string& segment : Segments(std::string(raw.substr(prefix.size())))) {
    ASSIGN_OR_RETURN(std::string decoded, http::UrlDecode(segment, /*plus_is_space=*/false));
    out.push_back(std::move(decoded));
  }
  return out;
}

absl::StatusOr<Json> JsonBody(const Request& req) {
  if (req.body.empty()) return Json::object();
  auto parsed = ParseJson(req.body);
  if (!parsed.ok()) return BadRequest(fmt::format("Malformed JSON request body: {}", parsed.status().message()));
  if (!parsed->is_object()) return BadRequest("The request body must be a JSON object");
  return std::move(parsed).value();
}

absl::Status NoRoute(const Request& req) {
  return WithErrorCode(
      absl::NotFoundError(fmt::format("No endpoint {} {}", http::MethodName(req.method), req.path)),
      "ENDPOINT_NOT_FOUND");
}

class CairnRegistryApi {
 public:
  explicit CairnRegistryApi(DataDirectory& dir) : dir_(dir), store_(dir.registry()) {}

  // /api/cairn/v1/models/NAME/...
  Response Models(Request& req) {
    try {
      absl::StatusOr<std::vector<std::string>> segments = RawSegments(req, std::string(kCairn) + "models/");
      if (!segments.ok()) return ErrorResponse(BadRequest(std::string(segments.status().message())));
      const std::vector<std::string>& seg = *segments;
      if (seg.size() < 2 || seg[0].empty()) return ErrorResponse(NoRoute(req));
      const std::string& name = seg[0];
      const std::string& what = seg[1];
      if (what == "aliases" && seg.size() == 4 && seg[3] == "history" && req.method == Method::kGet) {
        return JsonOrError(AliasHistory(req, name, seg[2]));
      }
      if (what == "aliases" && seg.size() == 3) {
        if (req.method == Method::kPost || req.method == Method::kPut) return MoveAlias(req, name, seg[2]);
        if (req.method == Method::kDelete) return JsonOrError(DeleteAlias(req, name, seg[2]));
      }
      if (what == "policy" && seg.size() == 2) {
        if (req.method == Method::kGet) return JsonOrError(GetPolicy(name));
        if (req.method == Method::kPut || req.method == Method::kPost) return JsonOrError(SetPolicy(req, name));
        if (req.method == Method::kDelete) return JsonOrError(DeletePolicy(name));
      }
      if (what == "decisions" && seg.size() == 2 && req.method == Method::kGet) return JsonOrError(Decisions(req, name));
      if (what == "versions" && seg.size() >= 3) {
        auto version = ParseVersion(seg[2]);
        if (!version.ok()) return ErrorResponse(version.status());
        if (seg.size() == 4 && seg[3] == "approvals") {
          if (req.method == Method::kPost) return JsonOrError(Approve(req, name, *version));
          if (req.method == Method::kGet) return JsonOrError(Approvals(req, name, *version));
        }
        if (seg.size() == 4 && seg[3] == "lineage" && req.method == Method::kGet) {
          return JsonOrError(ModelLineageGraph(dir_, name, *version));
        }
        if (seg.size() == 4 && seg[3] == "files" && req.method == Method::kGet) return JsonOrError(Files(name, *version));
        if (seg.size() >= 5 && seg[3] == "files" && (req.method == Method::kGet || req.method == Method::kHead)) {
          std::string path = seg[4];
          for (size_t i = 5; i < seg.size(); ++i) path += "/" + seg[i];
          return DownloadFile(name, *version, path);
        }
      }
      return ErrorResponse(NoRoute(req));
    } catch (const std::exception& e) {
      return ErrorResponse(BadRequest(fmt::format("Malformed request: {}", e.what())));
    }
  }

  // /api/cairn/v1/roles/ROLE/members
  Response Roles(Request& req) {
    std::vector<std::string> seg = Segments(req.path_rest);
    if (seg.size() != 2 || seg[0].empty() || seg[1] != "members") return ErrorResponse(NoRoute(req));
    const std::string& role = seg[0];
    return JsonOrError([&]() -> absl::StatusOr<Json> {
      if (req.method != Method::kGet) {
        ASSIGN_OR_RETURN(Json msg, RegistryRequestMessage(req));
        ASSIGN_OR_RETURN(std::string user, GetString(msg, "user"));
        if (req.method == Method::kDelete) {
          RETURN_IF_ERROR(store_.RevokeRole(role, user));
        } else {
          RETURN_IF_ERROR(store_.GrantRole(role, user));
        }
      }
      ASSIGN_OR_RETURN(auto members, store_.MembersOf(role));
      return Json{{"role", role}, {"members", members}};
    }());
  }

  // /api/cairn/v1/deployments[/NAME]
  Response Deployments(Request& req) {
    return JsonOrError([&]() -> absl::StatusOr<Json> {
      const std::string name = req.path_rest;
      if (name.empty() || name.find('/') != std::string::npos) return NoRoute(req);
      if (req.method == Method::kGet) {
        ASSIGN_OR_RETURN(Deployment d, store_.GetDeployment(name));
        return Json{{"deployment", WithVersion(d)}};
      }
      if (req.method == Method::kDelete) {
        RETURN_IF_ERROR(store_.DeleteDeployment(name));
        return Json::object();
      }
      ASSIGN_OR_RETURN(Json body, JsonBody(req));
      ASSIGN_OR_RETURN(Deployment d, DeploymentFromJson(name, body));
      ASSIGN_OR_RETURN(Deployment stored, store_.PutDeployment(d));
      return Json{{"deployment", WithVersion(stored)}};
    }());
  }

  Response ListDeployments() {
    return JsonOrError([&]() -> absl::StatusOr<Json> {
      ASSIGN_OR_RETURN(auto all, store_.ListDeployments());
      Json list = Json::array();
      for (const Deployment& d : all) list.push_back(WithVersion(d));
      return Json{{"deployments", std::move(list)}};
    }());
  }

  Response Changes() {
    return JsonOrError([&]() -> absl::StatusOr<Json> {
      ASSIGN_OR_RETURN(int64_t counter, store_.ChangeCounter());
      return Json{{"counter", counter}};
    }());
  }

 private:
  // The deployment with the version its alias names now ("version": null if
  // the alias was removed since).
  Json WithVersion(const Deployment& d) {
    Json j = DeploymentJson(d);
    absl::StatusOr<ModelVersion> v = store_.GetModelVersionByAlias(d.model, d.alias);
    j["version"] = v.ok() ? Json(v->version) : Json();
    return j;
  }

  absl::StatusOr<Json> AliasHistory(Request& req, const std::string& name, const std::string& alias) {
    ASSIGN_OR_RETURN(Json msg, RegistryRequestMessage(req));
    ASSIGN_OR_RETURN(auto at, GetOptionalString(msg, "at"));
    if (at) {
      ASSIGN_OR_RETURN(int64_t at_ms, ParseTimeMs(*at));
      ASSIGN_OR_RETURN(std::optional<int64_t> version, store_.AliasAt(name, alias, at_ms));
      return Json{{"name", name}, {"alias", alias}, {"at", at_ms}, {"version", version ? Json(*version) : Json()}};
    }
    ASSIGN_OR_RETURN(auto limit, GetOptionalInt(msg, "limit"));
    if (limit && *limit < 0) return absl::InvalidArgumentError("'limit' must not be negative");
    ASSIGN_OR_RETURN(auto entries, store_.AliasHistory(name, alias, limit ? static_cast<int>(std::min<int64_t>(*limit, 1 << 30)) : 0));
    Json list = Json::array();
    for (const registry::AliasHistoryEntry& e : entries) list.push_back(AliasHistoryEntryJson(e));
    return Json{{"name", name}, {"alias", alias}, {"history", std::move(list)}};
  }

  Response MoveAlias(Request& req, const std::string& name, const std::string& alias) {
    absl::StatusOr<Json> body = JsonBody(req);
    if (!body.ok()) return ErrorResponse(body.status());
    absl::StatusOr<int64_t> version = GetVersion(*body, "version");
    if (!version.ok()) return ErrorResponse(version.status());
    absl::StatusOr<std::optional<std::string>> reason = GetOptionalString(*body, "reason");
    if (!reason.ok()) return ErrorResponse(reason.status());
    absl::StatusOr<std::string> user = RequestUser(req);
    if (!user.ok()) return ErrorResponse(user.status());
    const std::string why = reason->value_or("");
    absl::StatusOr<MoveOutcome> o = GatedAliasMove(dir_, name, alias, *version, *user, why);
    if (!o.ok()) return ErrorResponse(o.status());
    Json decision = OutcomeDecisionJson(name, alias, *version, *user, why, *o);
    if (!o->gate.allowed) {
      return Response::JsonBody(412, Json{{"error_code", "INVALID_STATE"},
                                          {"message", RefusalMessage(name, alias, *version, o->gate)},
                                          {"decision", std::move(decision)}});
    }
    return Response::JsonBody(200, Json{{"name", name},
                                        {"alias", alias},
                                        {"version", *version},
                                        {"previous_version", o->previous ? Json(*o->previous) : Json()},
                                        {"decision", std::move(decision)}});
  }

  absl::StatusOr<Json> DeleteAlias(Request& req, const std::string& name, const std::string& alias) {
    ASSIGN_OR_RETURN(Json msg, RegistryRequestMessage(req));
    ASSIGN_OR_RETURN(std::string reason, OptionalString(msg, "reason"));
    ASSIGN_OR_RETURN(std::string user, RequestUser(req));
    RETURN_IF_ERROR(store_.DeleteAlias(name, alias, {.user = user, .reason = reason}));
    return Json::object();
  }

  absl::StatusOr<Json> GetPolicy(const std::string& name) {
    ASSIGN_OR_RETURN(auto record, store_.GetPolicy(name));
    if (!record) return Json{{"name", name}, {"policy", Json()}};
    return Json{{"name", name},
                {"policy", registry::PromotionPolicyToJson(record->policy)},
                {"user", record->user},
                {"updated_time", record->updated_time}};
  }

  absl::StatusOr<Json> SetPolicy(Request& req, const std::string& name) {
    ASSIGN_OR_RETURN(Json body, JsonBody(req));
    registry::PromotionPolicy policy;
    if (auto it = body.find("yaml"); it != body.end()) {
      if (!it->is_string()) return absl::InvalidArgumentError("'yaml' must be a string holding the policy");
      ASSIGN_OR_RETURN(policy, registry::ParsePromotionPolicy(it->get<std::string>()));
    } else if (auto p = body.find("policy"); p != body.end()) {
      ASSIGN_OR_RETURN(policy, registry::PromotionPolicyFromJson(*p));
    } else {
      ASSIGN_OR_RETURN(policy, registry::PromotionPolicyFromJson(body));
    }
    ASSIGN_OR_RETURN(std::string user, RequestUser(req));
    RETURN_IF_ERROR(store_.SetPolicy(name, policy, user));
    return GetPolicy(name);
  }

  absl::StatusOr<Json> DeletePolicy(const std::string& name) {
    RETURN_IF_ERROR(store_.DeletePolicy(name));
    return Json::object();
  }

  absl::StatusOr<Json> Decisions(Request& req, const std::string& name) {
    ASSIGN_OR_RETURN(Json msg, RegistryRequestMessage(req));
    ASSIGN_OR_RETURN(auto alias, GetOptionalString(msg, "alias"));
    ASSIGN_OR_RETURN(auto limit, GetOptionalInt(msg, "limit"));
    if (limit && *limit < 0) return absl::InvalidArgumentError("'limit' must not be negative");
    ASSIGN_OR_RETURN(auto decisions,
                     store_.ListDecisions(name, alias, limit ? static_cast<int>(std::min<int64_t>(*limit, 1 << 30)) : 0));
    Json list = Json::array();
    for (const GateDecisionRecord& d : decisions) list.push_back(DecisionJson(d));
    return Json{{"decisions", std::move(list)}};
  }

  absl::StatusOr<Json> Approve(Request& req, const std::string& name, int64_t version) {
    ASSIGN_OR_RETURN(Json body, JsonBody(req));
    ASSIGN_OR_RETURN(std::string alias, GetString(body, "alias"));
    RETURN_IF_ERROR(registry::ValidateAlias(alias));
    ASSIGN_OR_RETURN(std::string comment, OptionalString(body, "comment"));
    ASSIGN_OR_RETURN(std::string user, RequestUser(req));
    RETURN_IF_ERROR(store_.AddApproval(name, version, alias, user, comment));
    ASSIGN_OR_RETURN(auto approvals, store_.ListApprovals(name, version, alias));
    for (const registry::Approval& a : approvals) {
      if (a.user == user) return Json{{"approval", ApprovalJson(a)}};
    }
    return absl::InternalError("the approval was recorded but cannot be read back");
  }

  absl::StatusOr<Json> Approvals(Request& req, const std::string& name, int64_t version) {
    ASSIGN_OR_RETURN(Json msg, RegistryRequestMessage(req));
    ASSIGN_OR_RETURN(std::string alias, GetString(msg, "alias"));
    RETURN_IF_ERROR(store_.GetModelVersion(name, version).status());
    ASSIGN_OR_RETURN(auto approvals, store_.ListApprovals(name, version, alias));
    Json list = Json::array();
    for (const registry::Approval& a : approvals) list.push_back(ApprovalJson(a));
    return Json{{"approvals", std::move(list)}};
  }

  absl::StatusOr<Json> Files(const std::string& name, int64_t version) {
    ASSIGN_OR_RETURN(ModelArtifact artifact, ModelVersionFiles(dir_, name, version));
    Json files = Json::array();
    for (const ModelFile& f : artifact.files) files.push_back({{"path", f.path}, {"size", f.size}, {"digest", f.digest}});
    return Json{{"name", name}, {"version", version}, {"artifact_digest", artifact.digest}, {"files", std::move(files)}};
  }

  Response DownloadFile(const std::string& name, int64_t version, const std::string& path) {
    absl::StatusOr<ModelArtifact> artifact = ModelVersionFiles(dir_, name, version);
    if (!artifact.ok()) return ErrorResponse(artifact.status());
    auto it = std::find_if(artifact->files.begin(), artifact->files.end(),
                           [&](const ModelFile& f) { return f.path == path; });
    if (it == artifact->files.end()) {
      return ErrorResponse(absl::NotFoundError(
          fmt::format("Model '{}' version {} has no file '{}'", name, version, path)));
    }
    absl::StatusOr<Digest> digest = Digest::FromHex(it->digest);
    if (!digest.ok()) return ErrorResponse(absl::DataLossError("a model manifest holds a malformed digest"));
    auto reader = dir_.objects().Open(*digest);
    if (!reader.ok()) return ErrorResponse(reader.status());
    Response r;
    r.content_type = "application/octet-stream";
    r.headers.push_back({"X-Content-Digest", "sha256:" + it->digest});
    r.headers.push_back({"X-Model-Version", std::to_string(version)});
    r.content_length = (*reader)->size();
    std::shared_ptr<store::ObjectReader> shared(std::move(reader).value());
    r.body_source = [shared](char* scratch, size_t n) { return shared->Read(scratch, n); };
    return r;
  }

  DataDirectory& dir_;
  RegistryStore& store_;
};

}  // namespace

// ------------------------------------------------------ artifact helpers

absl::StatusOr<std::string> ResolveArtifactFolder(tracking::TrackingStore& tracking, const std::string& source,
                                                  const std::string& run_id) {
  std::optional<tracking::Run> run;
  if (!run_id.empty()) {
    ASSIGN_OR_RETURN(run, tracking.GetRun(run_id));
  }
  // The run's own artifact root on this server, if it has one here.
  auto root_of = [&](const tracking::Run& r) -> absl::StatusOr<std::string> {
    const std::string& uri = r.info.artifact_uri;
    if (uri.rfind(kArtifactScheme, 0) != 0) {
      return absl::InvalidArgumentError(fmt::format(
          "Invalid model version source: '{}'. Run {} stores its artifacts at {}, not on this server", source,
          r.info.run_id, uri));
    }
    return ProxiedFolder(source, uri);
  };

  std::string folder;
  if (source.rfind("runs:/", 0) == 0) {
    ASSIGN_OR_RETURN(std::string rest, NormalizeArtifactPath(source, std::string_view(source).substr(6)));
    const size_t slash = rest.find('/');
    const std::string source_run = rest.substr(0, slash);
    if (source_run.empty()) return absl::InvalidArgumentError(fmt::format("Invalid model version source: '{}'", source));
    if (run && source_run != run_id) {
      return absl::InvalidArgumentError(fmt::format(
          "Invalid model version source: '{}' names run {}, but run_id is {}", source, source_run, run_id));
    }
    if (!run) {
      ASSIGN_OR_RETURN(run, tracking.GetRun(source_run));
    }
    ASSIGN_OR_RETURN(std::string root, root_of(*run));
    return slash == std::string::npos ? root : root + "/" + rest.substr(slash + 1);
  }
  if (source.rfind(kArtifactScheme, 0) == 0) {
    ASSIGN_OR_RETURN(folder, ProxiedFolder(source, source));
  } else if (size_t p = source.find(kProxyPath);
             p != std::string::npos && (source.rfind("http://", 0) == 0 || source.rfind("https://", 0) == 0)) {
    ASSIGN_OR_RETURN(folder, NormalizeArtifactPath(source, std::string_view(source).substr(p + sizeof(kProxyPath) - 1)));
  } else if (run && source.rfind(run->info.artifact_uri, 0) == 0 &&
             (source.size() == run->info.artifact_uri.size() || source[run->info.artifact_uri.size()] == '/')) {
    ASSIGN_OR_RETURN(std::string root, root_of(*run));
    ASSIGN_OR_RETURN(std::string rest, NormalizeArtifactPath(source, std::string_view(source).substr(
                                                                          run->info.artifact_uri.size())));
    return rest.empty() ? root : root + "/" + rest;
  } else {
    return NotStoredHere(source);
  }
  if (run) {
    ASSIGN_OR_RETURN(std::string root, root_of(*run));
    if (!IsBelow(folder, root)) {
      return absl::InvalidArgumentError(fmt::format(
          "Invalid model version source: '{}' lies outside the artifacts of run {} (mlflow-artifacts:/{})", source,
          run_id, root));
    }
  }
  return folder;
}

absl::StatusOr<ModelArtifact> ReadModelArtifact(tracking::TrackingStore& tracking, const std::string& folder) {
  ModelArtifact out;
  out.folder = folder;
  absl::Status status;
  if (!folder.empty()) {
    // A source naming one file (a bare model.json) is a one-file model.
    absl::StatusOr<tracking::ArtifactFile> file = tracking.GetArtifact(folder);
    if (file.ok()) {
      const size_t slash = folder.rfind('/');
      out.files.push_back({slash == std::string::npos ? folder : folder.substr(slash + 1), file->size, file->digest});
    } else if (!absl::IsNotFound(file.status())) {
      return file.status();
    }
  }
  if (out.files.empty()) ListFolder(tracking, folder, "", out.files, status);
  RETURN_IF_ERROR(status);
  if (out.files.empty()) {
    return absl::InvalidArgumentError(fmt::format(
        "Invalid model version source: nothing is stored at mlflow-artifacts:/{} (no files): log the model's "
        "files to the run first",
        folder));
  }
  for (const ModelFile& f : out.files) {
    if (f.path.find_first_of("\t\n") != std::string::npos) {
      return absl::InvalidArgumentError(fmt::format("Model file path '{}' holds a tab or newline", f.path));
    }
  }
  out.manifest = ArtifactManifest(out.files);
  std::sort(out.files.begin(), out.files.end(), [](const ModelFile& a, const ModelFile& b) { return a.path < b.path; });
  out.digest = Sha256::Of(out.manifest).ToHex();
  return out;
}

std::string ArtifactManifest(std::vector<ModelFile> files) {
  std::sort(files.begin(), files.end(), [](const ModelFile& a, const ModelFile& b) { return a.path < b.path; });
  std::string out;
  for (const ModelFile& f : files) out += fmt::format("{}\t{}\t{}\n", f.path, f.digest, f.size);
  return out;
}

absl::StatusOr<std::vector<ModelFile>> ParseArtifactManifest(std::string_view text) {
  std::vector<ModelFile> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    if (nl == std::string_view::npos) return absl::DataLossError("model manifest: the last line is unterminated");
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    size_t t1 = line.find('\t');
    size_t t2 = t1 == std::string_view::npos ? t1 : line.find('\t', t1 + 1);
    if (t2 == std::string_view::npos) return absl::DataLossError("model manifest: a line lacks its fields");
    ModelFile f{.path = std::string(line.substr(0, t1)), .digest = std::string(line.substr(t1 + 1, t2 - t1 - 1))};
    std::string_view size = line.substr(t2 + 1);
    auto [ptr, ec] = std::from_chars(size.data(), size.data() + size.size(), f.size);
    if (f.path.empty() || !Digest::IsValidHex(f.digest) || ec != std::errc() || ptr != size.data() + size.size() ||
        f.size < 0) {
      return absl::DataLossError("model manifest: a malformed line");
    }
    out.push_back(std::move(f));
  }
  return out;
}

absl::StatusOr<ModelArtifact> ModelVersionFiles(DataDirectory& dir, const std::string& name, int64_t version) {
  ASSIGN_OR_RETURN(ModelVersion v, dir.registry().GetModelVersion(name, version));
  if (!v.artifact_digest.empty()) {
    ASSIGN_OR_RETURN(Digest digest, Digest::FromHex(v.artifact_digest));
    absl::StatusOr<std::string> manifest = dir.objects().Get(digest);
    if (manifest.ok()) {
      ModelArtifact out;
      ASSIGN_OR_RETURN(out.files, ParseArtifactManifest(*manifest));
      out.manifest = std::move(manifest).value();
      out.digest = v.artifact_digest;
      return out;
    }
    if (!absl::IsNotFound(manifest.status())) return manifest.status();
  }
  // No manifest object (collected, or a version registered without one):
  // the source's files now, which must still be the ones registered.
  ASSIGN_OR_RETURN(std::string folder, ResolveArtifactFolder(dir.tracking(), v.source, v.run_id));
  ASSIGN_OR_RETURN(ModelArtifact artifact, ReadModelArtifact(dir.tracking(), folder));
  if (!v.artifact_digest.empty() && artifact.digest != v.artifact_digest) {
    return absl::DataLossError(fmt::format(
        "The files of model '{}' version {} changed since it was registered (artifact sha256:{} expected, "
        "sha256:{} found)",
        name, version, v.artifact_digest, artifact.digest));
  }
  return artifact;
}

absl::Status ForEachModelVersionObject(DataDirectory& dir, const std::function<void(const Digest&)>& add) {
  registry::SearchRequest r{.max_results = registry::kSearchVersionsMaxResultsLimit};
  for (;;) {
    ASSIGN_OR_RETURN(auto page, dir.registry().SearchModelVersions(r));
    for (const ModelVersion& v : page.model_versions) {
      if (v.artifact_digest.empty()) continue;
      ASSIGN_OR_RETURN(Digest manifest, Digest::FromHex(v.artifact_digest));
      add(manifest);
      absl::StatusOr<std::string> text = dir.objects().Get(manifest);
      if (absl::IsNotFound(text.status())) continue;  // nothing left to keep alive
      RETURN_IF_ERROR(text.status());
      ASSIGN_OR_RETURN(auto files, ParseArtifactManifest(*text));
      for (const ModelFile& f : files) {
        ASSIGN_OR_RETURN(Digest d, Digest::FromHex(f.digest));
        add(d);
      }
    }
    if (page.next_page_token.empty()) return absl::OkStatus();
    r.page_token = page.next_page_token;
  }
}

void AddRegistryRoutes(DataDirectory& dir, http::Router& router) {
  AddMlflowRegistryRoutes(dir, router);
  auto api = std::make_shared<CairnRegistryApi>(dir);
  const std::string models = std::string(kCairn) + "models/*";
  for (Method m : {Method::kGet, Method::kHead, Method::kPost, Method::kPut, Method::kDelete}) {
    router.Add(m, models, [api](Request& req) { return api->Models(req); });
  }
  const std::string roles = std::string(kCairn) + "roles/*";
  for (Method m : {Method::kGet, Method::kPost, Method::kDelete}) {
    router.Add(m, roles, [api](Request& req) { return api->Roles(req); });
  }
  router.Add(Method::kGet, std::string(kCairn) + "deployments", [api](Request&) { return api->ListDeployments(); });
  // PUT creates or replaces; POST does the same for clients without PUT.
  for (Method m : {Method::kGet, Method::kPut, Method::kPost, Method::kDelete}) {
    router.Add(m, std::string(kCairn) + "deployments/*", [api](Request& req) { return api->Deployments(req); });
  }
  router.Add(Method::kGet, std::string(kCairn) + "registry/changes", [api](Request&) { return api->Changes(); });
}

}  // namespace cairn::api
