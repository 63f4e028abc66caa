#include "api/mlflow_api.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <utility>

#include "api/data_api.h"
#include "api/errors.h"
#include "api/mlflow_messages.h"
#include "api/pipeline_api.h"
#include "api/registry_api.h"
#include "base/json.h"
#include "store/object_store.h"

namespace cairn::api {
namespace {

using http::Method;
using http::Request;
using http::Response;
using tracking::ArtifactEntry;
using tracking::DatasetInput;
using tracking::Experiment;
using tracking::LifecycleStage;
using tracking::Metric;
using tracking::Run;
using tracking::RunInfo;
using tracking::Tag;
using tracking::ViewType;

constexpr const char kArtifactScheme[] = "mlflow-artifacts:/";

// ----------------------------------------------------------- JSON responses

const char* StageName(LifecycleStage s) { return s == LifecycleStage::kActive ? "active" : "deleted"; }

Json TagsJson(const std::vector<Tag>& tags) {
  Json out = Json::array();
  for (const Tag& t : tags) out.push_back({{"key", t.key}, {"value", t.value}});
  return out;
}

Json MetricJson(const Metric& m) {
  return {{"key", m.key}, {"value", JsonDouble(m.value)}, {"timestamp", m.timestamp}, {"step", m.step}};
}

Json ExperimentJson(const Experiment& e) {
  Json j = {{"experiment_id", e.experiment_id},
            {"name", e.name},
            {"artifact_location", e.artifact_location},
            {"lifecycle_stage", StageName(e.lifecycle_stage)},
            {"last_update_time", e.last_update_time},
            {"creation_time", e.creation_time}};
  if (!e.tags.empty()) j["tags"] = TagsJson(e.tags);
  return j;
}

Json RunInfoJson(const RunInfo& info) {
  Json j = {{"run_id", info.run_id},
            {"run_uuid", info.run_id},
            {"run_name", info.run_name},
            {"experiment_id", info.experiment_id},
            {"user_id", info.user_id},
            {"status", info.status},
            {"artifact_uri", info.artifact_uri},
            {"lifecycle_stage", StageName(info.lifecycle_stage)}};
  if (info.start_time) j["start_time"] = *info.start_time;
  if (info.end_time) j["end_time"] = *info.end_time;
  return j;
}

Json RunJson(const Run& run) {
  Json data = Json::object();
  if (!run.metrics.empty()) {
    Json metrics = Json::array();
    for (const Metric& m : run.metrics) metrics.push_back(MetricJson(m));
    data["metrics"] = std::move(metrics);
  }
  if (!run.params.empty()) data["params"] = TagsJson(run.params);
  if (!run.tags.empty()) data["tags"] = TagsJson(run.tags);
  Json inputs = Json::object();
  if (!run.inputs.empty()) {
    Json list = Json::array();
    for (const DatasetInput& in : run.inputs) {
      Json ds = {{"name", in.dataset.name},
                 {"digest", in.dataset.digest},
                 {"source_type", in.dataset.source_type},
                 {"source", in.dataset.source}};
      if (!in.dataset.schema.empty()) ds["schema"] = in.dataset.schema;
      if (!in.dataset.profile.empty()) ds["profile"] = in.dataset.profile;
      Json item = {{"dataset", std::move(ds)}};
      if (!in.tags.empty()) item["tags"] = TagsJson(in.tags);
      list.push_back(std::move(item));
    }
    inputs["dataset_inputs"] = std::move(list);
  }
  return {{"info", RunInfoJson(run.info)}, {"data", std::move(data)}, {"inputs", std::move(inputs)}};
}

// ------------------------------------------------------------------ routing

using JsonHandler = std::function<absl::StatusOr<Json>(const Json& msg)>;
// For hot paths that write their JSON text directly.
using TextHandler = std::function<absl::StatusOr<std::string>(const Json& msg)>;

http::Handler WrapText(TextHandler fn) {
  return [fn = std::move(fn)](Request& req) -> Response {
    try {
      auto msg = RequestMessage(req);
      if (!msg.ok()) return ErrorResponse(msg.status());
      auto out = fn(*msg);
      if (!out.ok()) return ErrorResponse(out.status());
      Response r;
      r.body = std::move(out).value();
      return r;
    } catch (const std::exception& e) {
      // Handlers use the non-throwing accessors; this is a last line of defence.
      return ErrorResponse(BadRequest(fmt::format("Malformed request: {}", e.what())));
    }
  };
}

http::Handler Wrap(JsonHandler fn) {
  return WrapText([fn = std::move(fn)](const Json& msg) -> absl::StatusOr<std::string> {
    ASSIGN_OR_RETURN(Json out, fn(msg));
    return out.dump();
  });
}

// Writes `v` as JSON the way proto3 does: non-finite values as strings,
// finite ones in the shortest form that reads back exactly, always as a
// float. REQUIRES: 32 bytes of room at `p`. Returns the end of what it wrote.
char* WriteDouble(char* p, double v) {
  if (std::isnan(v)) return std::copy_n("\"NaN\"", 5, p);
  if (std::isinf(v)) return v > 0 ? std::copy_n("\"Infinity\"", 10, p) : std::copy_n("\"-Infinity\"", 11, p);
  char* end = std::to_chars(p, p + 32, v).ptr;
  if (std::find_if(p, end, [](char c) { return c == '.' || c == 'e'; }) == end) end = std::copy_n(".0", 2, end);
  return end;
}

// {"metrics":[...],"next_page_token":"..."} for a history page, written
// straight into one buffer: a million points take ~0.1 s this way, seconds
// with a JSON DOM.
std::string HistoryJson(const tracking::MetricHistoryPage& page) {
  const std::string head = "{\"key\":" + Json(page.key).dump() + ",\"value\":";
  // Per point: head + value (<= 32) + two int64 fields with their names (<= 60) + "},".
  const size_t per_point = head.size() + 100;
  std::string out(32 + page.points.size() * per_point + page.next_page_token.size() * 2 + 64, '\0');
  char* p = std::copy_n("{\"metrics\":[", 12, out.data());
  for (size_t i = 0; i < page.points.size(); ++i) {
    const tracking::MetricPoint& m = page.points[i];
    if (i) *p++ = ',';
    p = std::copy(head.begin(), head.end(), p);
    p = WriteDouble(p, m.value);
    p = std::copy_n(",\"timestamp\":", 13, p);
    p = std::to_chars(p, p + 20, m.timestamp).ptr;
    p = std::copy_n(",\"step\":", 8, p);
    p = std::to_chars(p, p + 20, m.step).ptr;
    *p++ = '}';
  }
  *p++ = ']';
  out.resize(p - out.data());
  if (!page.next_page_token.empty()) out += ",\"next_page_token\":" + Json(page.next_page_token).dump();
  out += '}';
  return out;
}

void Add(http::Router& router, const std::vector<Method>& methods, const std::string& path, const http::Handler& handler,
         http::RouteOptions options = {}) {
  for (Method m : methods) {
    router.Add(m, "/api/2.0/mlflow/" + path, handler, options);
    router.Add(m, "/ajax-api/2.0/mlflow/" + path, handler, options);
  }
}

// ------------------------------------------------------------ artifact paths

// Rejects paths that could escape the artifact root (MLflow's
// validate_path_is_safe): absolute, "..", ".", empty segments, NUL, backslash.
absl::Status ValidateArtifactPath(std::string_view path, bool allow_empty) {
  if (path.empty()) {
    if (allow_empty) return absl::OkStatus();
    return absl::InvalidArgumentError("Artifact path must not be empty");
  }
  auto bad = [&] { return absl::InvalidArgumentError(fmt::format("Invalid path: '{}'", path)); };
  if (path.front() == '/' || path.find('\0') != std::string_view::npos || path.find('\\') != std::string_view::npos ||
      path.size() > 4096) {
    return bad();
  }
  size_t start = 0;
  for (;;) {
    size_t slash = path.find('/', start);
    std::string_view seg = path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (seg.empty() || seg == "." || seg == "..") return bad();
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return absl::OkStatus();
}

std::string StripSlashes(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  while (!s.empty() && s.front() == '/') s.erase(0, 1);
  return s;
}

}  // namespace

void AddMlflowRoutes(DataDirectory& dir, http::Router& router) {
  tracking::TrackingStore& store = dir.tracking();
  store::ObjectStore& objects = dir.objects();
  const std::vector<Method> kPost = {Method::kPost};
  const std::vector<Method> kGet = {Method::kGet};

  // ------------------------------------------------------------ experiments
  Add(router, kPost, "experiments/create", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        ASSIGN_OR_RETURN(std::string name, GetString(msg, "name"));
        ASSIGN_OR_RETURN(auto location, GetOptionalString(msg, "artifact_location"));
        ASSIGN_OR_RETURN(auto tags, GetTags(msg, "tags"));
        ASSIGN_OR_RETURN(std::string id, store.CreateExperiment(name, location.value_or(""), tags));
        return Json{{"experiment_id", id}};
      }));
  Add(router, kGet, "experiments/get", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        ASSIGN_OR_RETURN(std::string id, GetString(msg, "experiment_id"));
        ASSIGN_OR_RETURN(Experiment e, store.GetExperiment(id));
        return Json{{"experiment", ExperimentJson(e)}};
      }));
  Add(router, kGet, "experiments/get-by-name", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        ASSIGN_OR_RETURN(std::string name, GetString(msg, "experiment_name"));
        ASSIGN_OR_RETURN(Experiment e, store.GetExperimentByName(name));
        return Json{{"experiment", ExperimentJson(e)}};
      }));
  Add(router, {Method::kPost, Method::kGet}, "experiments/search",
      Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        tracking::SearchExperimentsRequest r;
        ASSIGN_OR_RETURN(r.max_results, GetMaxResults(msg, tracking::kMaxResultsDefault));
        ASSIGN_OR_RETURN(auto token, GetOptionalString(msg, "page_token"));
        r.page_token = token.value_or("");
        ASSIGN_OR_RETURN(auto filter, GetOptionalString(msg, "filter"));
        r.filter = filter.value_or("");
        ASSIGN_OR_RETURN(r.order_by, GetStringList(msg, "order_by"));
        ASSIGN_OR_RETURN(r.view_type, GetViewType(msg, "view_type"));
        ASSIGN_OR_RETURN(auto result, store.SearchExperiments(r));
        Json out = Json::object();
        if (!result.experiments.empty()) {
          Json list = Json::array();
          for (const Experiment& e : result.experiments) list.push_back(ExperimentJson(e));
          out["experiments"] = std::move(list);
        }
        if (!result.next_page_token.empty()) out["next_page_token"] = result.next_page_token;
        return out;
      }));
  Add(router, kPost, "experiments/update", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        ASSIGN_OR_RETURN(std::string id, GetString(msg, "experiment_id"));
        ASSIGN_OR_RETURN(auto name, GetOptionalString(msg, "new_name"));
        if (name) RETURN_IF_ERROR(store.RenameExperiment(id, *name));
        else RETURN_IF_ERROR(store.GetExperiment(id).status());
        return Json::object();
      }));
  Add(router, kPost, "experiments/delete", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        ASSIGN_OR_RETURN(std::string id, GetString(msg, "experiment_id"));
        RETURN_IF_ERROR(store.DeleteExperiment(id));
        return Json::object();
      }));
  Add(router, kPost, "experiments/restore", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        ASSIGN_OR_RETURN(std::string id, GetString(msg, "experiment_id"));
        RETURN_IF_ERROR(store.RestoreExperiment(id));
        return Json::object();
      }));
  Add(router, kPost, "experiments/set-experiment-tag", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        ASSIGN_OR_RETURN(std::string id, GetString(msg, "experiment_id"));
        ASSIGN_OR_RETURN(std::string key, GetString(msg, "key"));
        ASSIGN_OR_RETURN(std::string value, GetString(msg, "value"));
        RETURN_IF_ERROR(store.SetExperimentTag(id, key, value));
        return Json::object();
      }));
  Add(router, kPost, "experiments/delete-experiment-tag", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        ASSIGN_OR_RETURN(std::string id, GetString(msg, "experiment_id"));
        ASSIGN_OR_RETURN(std::string key, GetString(msg, "key"));
        RETURN_IF_ERROR(store.DeleteExperimentTag(id, key));
        return Json::object();
      }));

  // ------------------------------------------------------------------- runs
  Add(router, kPost, "runs/create", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        tracking::CreateRunRequest r;
        ASSIGN_OR_RETURN(auto exp, GetOptionalString(msg, "experiment_id"));
        r.experiment_id = exp.value_or("0");
        ASSIGN_OR_RETURN(auto user, GetOptionalString(msg, "user_id"));
        r.user_id = user.value_or("");
        ASSIGN_OR_RETURN(auto name, GetOptionalString(msg, "run_name"));
        r.run_name = name.value_or("");
        ASSIGN_OR_RETURN(r.start_time, GetOptionalInt(msg, "start_time"));
        ASSIGN_OR_RETURN(r.tags, GetTags(msg, "tags"));
        ASSIGN_OR_RETURN(Run run, store.CreateRun(r));
        return Json{{"run", RunJson(run)}};
      }));
  Add(router, kGet, "runs/get", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        ASSIGN_OR_RETURN(std::string id, RunIdOf(msg));
        ASSIGN_OR_RETURN(Run run, store.GetRun(id));
        return Json{{"run", RunJson(run)}};
      }));
  Add(router, kPost, "runs/update", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        tracking::UpdateRunRequest r;
        ASSIGN_OR_RETURN(r.run_id, RunIdOf(msg));
        ASSIGN_OR_RETURN(r.status, GetOptionalString(msg, "status"));
        ASSIGN_OR_RETURN(r.end_time, GetOptionalInt(msg, "end_time"));
        ASSIGN_OR_RETURN(r.run_name, GetOptionalString(msg, "run_name"));
        ASSIGN_OR_RETURN(RunInfo info, store.UpdateRun(r));
        return Json{{"run_info", RunInfoJson(info)}};
      }));
  Add(router, kPost, "runs/delete", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        ASSIGN_OR_RETURN(std::string id, RunIdOf(msg));
        RETURN_IF_ERROR(store.DeleteRun(id));
        return Json::object();
      }));
  Add(router, kPost, "runs/restore", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        ASSIGN_OR_RETURN(std::string id, RunIdOf(msg));
        RETURN_IF_ERROR(store.RestoreRun(id));
        return Json::object();
      }));
  Add(router, kPost, "runs/log-metric", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        ASSIGN_OR_RETURN(std::string id, RunIdOf(msg));
        ASSIGN_OR_RETURN(Metric m, ParseMetric(msg));
        RETURN_IF_ERROR(store.LogBatch(id, {&m, 1}, {}, {}));
        return Json::object();
      }));
  Add(router, kPost, "runs/log-parameter", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        ASSIGN_OR_RETURN(std::string id, RunIdOf(msg));
        tracking::Param p;
        ASSIGN_OR_RETURN(p.key, GetString(msg, "key"));
        ASSIGN_OR_RETURN(p.value, GetString(msg, "value"));
        RETURN_IF_ERROR(store.LogBatch(id, {}, {&p, 1}, {}));
        return Json::object();
      }));
  Add(router, kPost, "runs/set-tag", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        ASSIGN_OR_RETURN(std::string id, RunIdOf(msg));
        Tag t;
        ASSIGN_OR_RETURN(t.key, GetString(msg, "key"));
        ASSIGN_OR_RETURN(t.value, GetString(msg, "value"));
        RETURN_IF_ERROR(store.LogBatch(id, {}, {}, {&t, 1}));
        return Json::object();
      }));
  Add(router, kPost, "runs/delete-tag", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        ASSIGN_OR_RETURN(std::string id, RunIdOf(msg));
        ASSIGN_OR_RETURN(std::string key, GetString(msg, "key"));
        RETURN_IF_ERROR(store.DeleteTag(id, key));
        return Json::object();
      }));
  // The ingest hot path: parsed straight from the body (no JSON DOM).
  Add(
      router, kPost, "runs/log-batch",
      [&store](Request& req) -> Response {
        auto batch = ParseLogBatchBody(req.body);
        if (!batch.ok()) return ErrorResponse(batch.status());
        absl::Status s = store.LogBatch(batch->run_id, batch->metrics, batch->params, batch->tags);
        if (!s.ok()) return ErrorResponse(s);
        return Response::JsonBody(200, Json::object());
      },
      {.max_body_bytes = 16 << 20});
  Add(router, kPost, "runs/log-inputs", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        ASSIGN_OR_RETURN(std::string id, RunIdOf(msg));
        ASSIGN_OR_RETURN(auto items, GetOptionalArray(msg, "datasets"));
        std::vector<DatasetInput> inputs;
        for (const Json& item : items) {
          if (!item.is_object()) return absl::InvalidArgumentError("Invalid dataset input: expected an object");
          DatasetInput in;
          ASSIGN_OR_RETURN(in.tags, GetTags(item, "tags"));
          auto ds = item.find("dataset");
          if (ds == item.end() || !ds->is_object()) {
            return absl::InvalidArgumentError("Missing value for required parameter 'datasets.dataset'.");
          }
          ASSIGN_OR_RETURN(in.dataset.name, GetString(*ds, "name"));
          ASSIGN_OR_RETURN(in.dataset.digest, GetString(*ds, "digest"));
          ASSIGN_OR_RETURN(in.dataset.source_type, GetString(*ds, "source_type"));
          ASSIGN_OR_RETURN(in.dataset.source, GetString(*ds, "source"));
          ASSIGN_OR_RETURN(auto schema, GetOptionalString(*ds, "schema"));
          in.dataset.schema = schema.value_or("");
          ASSIGN_OR_RETURN(auto profile, GetOptionalString(*ds, "profile"));
          in.dataset.profile = profile.value_or("");
          inputs.push_back(std::move(in));
        }
        RETURN_IF_ERROR(store.LogInputs(id, inputs));
        return Json::object();
      }));
  Add(router, {Method::kPost, Method::kGet}, "runs/search", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        tracking::SearchRunsRequest r;
        ASSIGN_OR_RETURN(r.experiment_ids, GetStringList(msg, "experiment_ids"));
        ASSIGN_OR_RETURN(auto filter, GetOptionalString(msg, "filter"));
        r.filter = filter.value_or("");
        ASSIGN_OR_RETURN(r.view_type, GetViewType(msg, "run_view_type"));
        ASSIGN_OR_RETURN(r.max_results, GetMaxResults(msg, tracking::kMaxResultsDefault));
        ASSIGN_OR_RETURN(r.order_by, GetStringList(msg, "order_by"));
        ASSIGN_OR_RETURN(auto token, GetOptionalString(msg, "page_token"));
        r.page_token = token.value_or("");
        ASSIGN_OR_RETURN(auto result, store.SearchRuns(r));
        Json out = Json::object();
        if (!result.runs.empty()) {
          Json list = Json::array();
          for (const Run& run : result.runs) list.push_back(RunJson(run));
          out["runs"] = std::move(list);
        }
        if (!result.next_page_token.empty()) out["next_page_token"] = result.next_page_token;
        return out;
      }));
  Add(router, kGet, "metrics/get-history", WrapText([&store](const Json& msg) -> absl::StatusOr<std::string> {
        ASSIGN_OR_RETURN(std::string id, RunIdOf(msg));
        ASSIGN_OR_RETURN(std::string key, GetString(msg, "metric_key"));
        ASSIGN_OR_RETURN(int max_results, GetMaxResults(msg, 0));
        ASSIGN_OR_RETURN(auto token, GetOptionalString(msg, "page_token"));
        ASSIGN_OR_RETURN(auto page, store.GetMetricHistory(id, key, max_results, token.value_or("")));
        return HistoryJson(page);
      }));
  Add(router, kGet, "artifacts/list", Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
        ASSIGN_OR_RETURN(std::string id, RunIdOf(msg));
        ASSIGN_OR_RETURN(auto path_arg, GetOptionalString(msg, "path"));
        std::string path = StripSlashes(path_arg.value_or(""));
        RETURN_IF_ERROR(ValidateArtifactPath(path, /*allow_empty=*/true));
        ASSIGN_OR_RETURN(Run run, store.GetRun(id));
        Json out = {{"root_uri", run.info.artifact_uri}};
        const std::string& uri = run.info.artifact_uri;
        if (uri.rfind(kArtifactScheme, 0) != 0) return out;  // not stored by this server
        std::string root = StripSlashes(uri.substr(sizeof(kArtifactScheme) - 1));
        ASSIGN_OR_RETURN(auto entries, store.ListArtifacts(path.empty() ? root : root + "/" + path));
        Json files = Json::array();
        for (const ArtifactEntry& e : entries) {
          Json f = {{"path", path.empty() ? e.path : path + "/" + e.path}, {"is_dir", e.is_dir}};
          if (!e.is_dir) f["file_size"] = e.file_size;
          files.push_back(std::move(f));
        }
        if (!files.empty()) out["files"] = std::move(files);
        return out;
      }));

  // ------------------------------------------------- mlflow-artifacts proxy
  const std::string kProxy = "/api/2.0/mlflow-artifacts/artifacts";
  router.Add(Method::kGet, kProxy, Wrap([&store](const Json& msg) -> absl::StatusOr<Json> {
               ASSIGN_OR_RETURN(auto path_arg, GetOptionalString(msg, "path"));
               std::string path = StripSlashes(path_arg.value_or(""));
               RETURN_IF_ERROR(ValidateArtifactPath(path, /*allow_empty=*/true));
               ASSIGN_OR_RETURN(auto entries, store.ListArtifacts(path));
               Json files = Json::array();
               for (const ArtifactEntry& e : entries) {
                 Json f = {{"path", e.path}, {"is_dir", e.is_dir}};
                 if (!e.is_dir) f["file_size"] = e.file_size;
                 files.push_back(std::move(f));
               }
               Json out = Json::object();
               if (!files.empty()) out["files"] = std::move(files);
               return out;
             }));
  router.Add(
      Method::kPut, kProxy + "/*",
      [&store, &objects](Request& req) -> Response {
        std::string path = req.path_rest;
        if (absl::Status s = ValidateArtifactPath(path, false); !s.ok()) return ErrorResponse(s);
        auto writer = objects.NewWriter();
        if (!writer.ok()) return ErrorResponse(writer.status());
        std::vector<char> buf(1 << 20);
        for (;;) {
          auto n = req.body_stream->Read(buf.data(), buf.size());
          if (!n.ok()) return ErrorResponse(BadRequest(fmt::format("Reading the upload failed: {}", n.status().message())));
          if (*n == 0) break;
          if (absl::Status s = (*writer)->Append(std::string_view(buf.data(), *n)); !s.ok()) return ErrorResponse(s);
        }
        auto info = (*writer)->Commit();
        if (!info.ok()) return ErrorResponse(info.status());
        absl::Status s = store.PutArtifact(path, {info->digest.ToHex(), static_cast<int64_t>(info->size)});
        if (!s.ok()) return ErrorResponse(s);
        return Response::JsonBody(200, Json::object());
      },
      {.stream_body = true});
  auto download = [&store, &objects](Request& req) -> Response {
    std::string path = req.path_rest;
    if (absl::Status s = ValidateArtifactPath(path, false); !s.ok()) return ErrorResponse(s);
    auto file = store.GetArtifact(path);
    if (!file.ok()) return ErrorResponse(file.status());
    auto digest = Digest::FromHex(file->digest);
    if (!digest.ok()) return ErrorResponse(absl::DataLossError("artifact record holds a malformed digest"));
    auto reader = objects.Open(*digest);
    if (!reader.ok()) return ErrorResponse(reader.status());
    Response r;
    r.content_type = "application/octet-stream";
    size_t slash = path.rfind('/');
    std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    r.headers.push_back({"Content-Disposition", fmt::format("attachment; filename=\"{}\"", base)});
    r.headers.push_back({"X-Content-Digest", "sha256:" + file->digest});
    r.content_length = (*reader)->size();
    std::shared_ptr<store::ObjectReader> shared(std::move(reader).value());
    r.body_source = [shared](char* scratch, size_t n) { return shared->Read(scratch, n); };
    return r;
  };
  router.Add(Method::kGet, kProxy + "/*", download);
  router.Add(Method::kHead, kProxy + "/*", download);
  router.Add(Method::kDelete, kProxy + "/*", [&store](Request& req) -> Response {
    std::string path = StripSlashes(req.path_rest);
    if (absl::Status s = ValidateArtifactPath(path, false); !s.ok()) return ErrorResponse(s);
    if (absl::Status s = store.DeleteArtifacts(path); !s.ok()) return ErrorResponse(s);
    return Response::JsonBody(200, Json::object());
  });
}

void AddServerRoutes(http::Router& router) {
  router.Add(Method::kGet, "/health", [](Request&) { return Response::Text(200, "OK"); });
  router.Add(Method::kGet, "/version", [](Request&) { return Response::Text(200, CAIRN_VERSION); });
  router.SetNotFound([](Request& req, const std::vector<Method>& allowed) {
    if (!allowed.empty()) {
      std::string names;
      for (Method m : allowed) names += (names.empty() ? "" : ", ") + std::string(http::MethodName(m));
      Response r = ErrorResponse(WithErrorCode(
          absl::InvalidArgumentError(fmt::format("Method {} is not allowed for {}; allowed: {}",
                                                 http::MethodName(req.method), req.path, names)),
          "BAD_REQUEST"));
      r.status = 405;
      r.headers.push_back({"Allow", names});
      return r;
    }
    return ErrorResponse(WithErrorCode(absl::NotFoundError(fmt::format("No endpoint {} {}", http::MethodName(req.method), req.path)),
                                       "ENDPOINT_NOT_FOUND"));
  });
}

http::Router BuildRouter(DataDirectory& dir) {
  http::Router router;
  AddServerRoutes(router);
  AddMlflowRoutes(dir, router);
  AddDataRoutes(dir, router);
  AddPipelineRoutes(dir, router);
  AddRegistryRoutes(dir, router);
  return router;
}

}  // namespace cairn::api
