#include "api/pipeline_api.h"

#include <unistd.h>

#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "absl/strings/numbers.h"
#include "api/data_directory.h"
#include "api/errors.h"
#include "api/mlflow_messages.h"
#include "exec/sandbox_executor.h"
#include "exec/slurm_executor.h"
#include "pipeline/spec.h"

namespace cairn::api {
namespace {

using http::Method;
using http::Request;
using http::Response;

constexpr char kPipelines[] = "/api/cairn/v1/pipelines";
constexpr char kPipelineRuns[] = "/api/cairn/v1/pipeline-runs";
constexpr char kStepRuns[] = "/api/cairn/v1/runs";
constexpr size_t kMaxLogRead = 4 << 20;

std::pair<std::string, std::string> Split1(std::string_view path) {
  size_t slash = path.find('/');
  if (slash == std::string_view::npos) return {std::string(path), ""};
  return {std::string(path.substr(0, slash)), std::string(path.substr(slash + 1))};
}

Response Handle(const std::function<absl::StatusOr<Json>()>& fn, int ok_status = 200) {
  return JsonOrError(fn(), ok_status);
}

std::string SelfExecutable() {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.string();
}

Json PipelineJson(const pipeline::PipelineRecord& p, bool with_spec, bool with_secret) {
  Json out = {{"name", p.name},
              {"file_name", p.file_name},
              {"project_dir", p.project_dir},
              {"created_at", p.created_at_ms},
              {"updated_at", p.updated_at_ms}};
  absl::StatusOr<pipeline::PipelineSpec> spec = pipeline::ParsePipelineSpec(p.spec_text, p.file_name);
  if (spec.ok()) {
    Json steps = Json::array();
    for (const std::string& s : pipeline::TopologicalOrder(*spec)) steps.push_back(s);
    out["steps"] = steps;
    out["triggers"] = {{"datasets", spec->triggers.datasets},
                       {"cron", spec->triggers.cron},
                       {"webhook", spec->triggers.webhook}};
    if (with_spec) out["spec_json"] = pipeline::PipelineToJson(*spec);
  } else {
    out["spec_error"] = std::string(spec.status().message());
  }
  if (with_spec) out["spec"] = p.spec_text;
  if (with_secret) out["webhook_secret"] = p.webhook_secret;
  return out;
}

absl::StatusOr<pipeline::PipelineScheduler*> Scheduler(DataDirectory& dir) {
  ASSIGN_OR_RETURN(PipelineService * svc, dir.pipelines());
  return &svc->scheduler();
}

absl::StatusOr<std::vector<std::string>> StringArray(const Json& body, const char* field) {
  std::vector<std::string> out;
  if (!body.contains(field)) return out;
  if (!body[field].is_array()) return BadRequest(fmt::format("'{}' must be an array of strings", field));
  for (const Json& v : body[field]) {
    if (!v.is_string()) return BadRequest(fmt::format("'{}' must be an array of strings", field));
    out.push_back(v.get<std::string>());
  }
  return out;
}

Response StartRun(DataDirectory& dir, const std::string& name, Request& req) {
  return Handle(
      [&]() -> absl::StatusOr<Json> {
        ASSIGN_OR_RETURN(Json body, ParseJson(req.body.empty() ? "{}" : req.body));
        if (!body.is_object()) return BadRequest("the body must be a JSON object");
        pipeline::RunRequest r{.pipeline = name};
        ASSIGN_OR_RETURN(r.overrides, StringArray(body, "params"));
        ASSIGN_OR_RETURN(std::optional<std::string> step, GetOptionalString(body, "step"));
        ASSIGN_OR_RETURN(std::optional<std::string> executor, GetOptionalString(body, "executor"));
        ASSIGN_OR_RETURN(std::optional<bool> no_cache, GetOptionalBool(body, "no_cache"));
        r.step = step.value_or("");
        r.executor = executor.value_or("local");
        r.no_cache = no_cache.value_or(false);
        r.cause = {{"kind", "manual"}};
        if (body.contains("cause")) {
          if (!body["cause"].is_object()) return BadRequest("'cause' must be an object");
          r.cause = body["cause"];
          r.cause["kind"] = "manual";
        }
        ASSIGN_OR_RETURN(PipelineService * svc, dir.pipelines());
        RETURN_IF_ERROR(svc->EnsureExecutor(r.executor));
        ASSIGN_OR_RETURN(std::string id, svc->scheduler().Start(r));
        ASSIGN_OR_RETURN(pipeline::PipelineRunRecord run, svc->store().GetRun(id));
        return Json{{"run", PipelineRunJson(run)}};
      },
      202);
}

Response Trigger(DataDirectory& dir, const std::string& name, Request& req) {
  return Handle(
      [&]() -> absl::StatusOr<Json> {
        ASSIGN_OR_RETURN(PipelineService * svc, dir.pipelines());
        ASSIGN_OR_RETURN(pipeline::PipelineRecord p, svc->store().GetPipeline(name));
        std::string_view sig = req.Header("x-cairn-signature").value_or(req.Header("x-hub-signature-256").value_or(""));
        RETURN_IF_ERROR(pipeline::VerifyWebhook(p.webhook_secret, req.body, sig));
        ASSIGN_OR_RETURN(pipeline::PipelineSpec spec, pipeline::ParsePipelineSpec(p.spec_text, p.file_name));
        if (!spec.triggers.webhook) {
          return absl::FailedPreconditionError(
              fmt::format("pipeline '{}' does not accept webhook triggers (set triggers.webhook: true)", name));
        }
        Json cause = {{"kind", "webhook"}};
        // A git server's push payload names the commit; keep what helps a human.
        Json payload = Json::parse(req.body, nullptr, /*allow_exceptions=*/false);
        if (payload.is_object()) {
          for (const char* k : {"ref", "after", "before"}) {
            if (payload.contains(k) && payload[k].is_string()) cause[k] = payload[k];
          }
        }
        if (auto d = req.Header("x-github-delivery")) cause["delivery"] = std::string(*d);
        if (auto d = req.Header("x-cairn-delivery")) cause["delivery"] = std::string(*d);
        ASSIGN_OR_RETURN(std::string id, svc->scheduler().Start({.pipeline = name, .cause = cause}));
        ASSIGN_OR_RETURN(pipeline::PipelineRunRecord run, svc->store().GetRun(id));
        return Json{{"run", PipelineRunJson(run)}};
      },
      202);
}

Response Pipelines(DataDirectory& dir, Request& req) {
  const auto parts = Split1(req.path_rest);  // no structured binding: lambdas below capture these
  const std::string& name = parts.first;
  const std::string& rest = parts.second;
  const Method m = req.method;
  if (name.empty()) return ErrorResponse(absl::NotFoundError("no pipeline named ''"));
  if (rest.empty() && m == Method::kGet) {
    return Handle([&]() -> absl::StatusOr<Json> {
      ASSIGN_OR_RETURN(PipelineService * svc, dir.pipelines());
      ASSIGN_OR_RETURN(pipeline::PipelineRecord p, svc->store().GetPipeline(name));
      const std::string secret = req.Query("secret").value_or("");
      ASSIGN_OR_RETURN(auto runs, svc->store().ListRuns(name, 10));
      Json out = {{"pipeline", PipelineJson(p, true, secret == "1" || secret == "true")}, {"runs", Json::array()}};
      for (const auto& r : runs) out["runs"].push_back(PipelineRunJson(r));
      return out;
    });
  }
  if (rest == "runs" && m == Method::kPost) return StartRun(dir, name, req);
  if (rest == "runs" && m == Method::kGet) {
    return Handle([&]() -> absl::StatusOr<Json> {
      int64_t limit = 20;
      if (auto l = req.Query("limit"); l && (!absl::SimpleAtoi(*l, &limit) || limit < 1 || limit > 1000)) {
        return BadRequest("limit must be an integer from 1 to 1000");
      }
      ASSIGN_OR_RETURN(PipelineService * svc, dir.pipelines());
      RETURN_IF_ERROR(svc->store().GetPipeline(name).status());
      ASSIGN_OR_RETURN(auto runs, svc->store().ListRuns(name, static_cast<int>(limit)));
      Json out = {{"runs", Json::array()}};
      for (const auto& r : runs) out["runs"].push_back(PipelineRunJson(r));
      return out;
    });
  }
  if (rest == "trigger" && m == Method::kPost) return Trigger(dir, name, req);
  return ErrorResponse(absl::NotFoundError(fmt::format("no pipeline endpoint {} {}", http::MethodName(m), req.path)));
}

Response PipelineRuns(DataDirectory& dir, Request& req) {
  const auto parts = Split1(req.path_rest);
  const std::string& id = parts.first;
  const std::string& rest = parts.second;
  if (rest.empty() && req.method == Method::kGet) {
    return Handle([&]() -> absl::StatusOr<Json> {
      ASSIGN_OR_RETURN(PipelineService * svc, dir.pipelines());
      ASSIGN_OR_RETURN(pipeline::PipelineRunRecord run, svc->store().GetRun(id));
      return Json{{"run", PipelineRunJson(run)}};
    });
  }
  if (rest == "cancel" && req.method == Method::kPost) {
    return Handle([&]() -> absl::StatusOr<Json> {
      ASSIGN_OR_RETURN(PipelineService * svc, dir.pipelines());
      RETURN_IF_ERROR(svc->store().GetRun(id).status());
      RETURN_IF_ERROR(svc->scheduler().Cancel(id));
      ASSIGN_OR_RETURN(pipeline::PipelineRunRecord run, svc->store().GetRun(id));
      return Json{{"run", PipelineRunJson(run)}};
    });
  }
  return ErrorResponse(
      absl::NotFoundError(fmt::format("no pipeline run endpoint {} {}", http::MethodName(req.method), req.path)));
}

Response StepRuns(DataDirectory& dir, Request& req) {
  const auto parts = Split1(req.path_rest);
  const std::string& id = parts.first;
  const std::string& rest = parts.second;
  if (rest == "logs" && req.method == Method::kGet) {
    uint64_t offset = 0;
    uint64_t max_bytes = 1 << 20;
    if (auto o = req.Query("offset"); o && !absl::SimpleAtoi(*o, &offset)) {
      return ErrorResponse(BadRequest("offset must be a non-negative integer"));
    }
    if (auto mb = req.Query("max_bytes"); mb && (!absl::SimpleAtoi(*mb, &max_bytes) || max_bytes == 0)) {
      return ErrorResponse(BadRequest("max_bytes must be a positive integer"));
    }
    max_bytes = std::min<uint64_t>(max_bytes, kMaxLogRead);
    absl::StatusOr<pipeline::PipelineScheduler*> sched = Scheduler(dir);
    if (!sched.ok()) return ErrorResponse(sched.status());
    absl::StatusOr<exec::LogChunk> chunk = (*sched)->ReadLog(id, offset, max_bytes);
    if (!chunk.ok()) return ErrorResponse(chunk.status());
    Response r = Response::Text(200, std::move(chunk->bytes), "application/octet-stream");
    r.headers.push_back({"X-Cairn-Next-Offset", std::to_string(chunk->next_offset)});
    r.headers.push_back({"X-Cairn-Finished", chunk->finished ? "true" : "false"});
    return r;
  }
  if (rest == "step" && req.method == Method::kGet) {
    return Handle([&]() -> absl::StatusOr<Json> {
      ASSIGN_OR_RETURN(PipelineService * svc, dir.pipelines());
      ASSIGN_OR_RETURN(auto found, svc->store().FindStepByRunId(id));
      return Json{{"pipeline_run", found.first}, {"step", StepJson(found.second)}};
    });
  }
  if (rest == "cancel" && req.method == Method::kPost) {
    return Handle([&]() -> absl::StatusOr<Json> {
      ASSIGN_OR_RETURN(PipelineService * svc, dir.pipelines());
      ASSIGN_OR_RETURN(auto found, svc->store().FindStepByRunId(id));
      RETURN_IF_ERROR(svc->scheduler().Cancel(found.first));
      ASSIGN_OR_RETURN(pipeline::PipelineRunRecord run, svc->store().GetRun(found.first));
      return Json{{"run", PipelineRunJson(run)}};
    });
  }
  return ErrorResponse(
      absl::NotFoundError(fmt::format("no run endpoint {} {}", http::MethodName(req.method), req.path)));
}

}  // namespace

Json StepJson(const pipeline::StepRecord& s) {
  return {{"step", s.step},          {"status", s.status},         {"run_id", s.run_id},
          {"cache_key", s.cache_key}, {"executor", s.executor},     {"job_id", s.job_id},
          {"attempt", s.attempt},    {"reason", s.reason},         {"started_at", s.started_at_ms},
          {"ended_at", s.ended_at_ms}, {"outputs", s.outputs},     {"inputs", s.inputs}};
}

Json PipelineRunJson(const pipeline::PipelineRunRecord& r) {
  Json steps = Json::array();
  for (const pipeline::StepRecord& s : r.steps) steps.push_back(StepJson(s));
  return {{"id", r.id},
          {"pipeline", r.pipeline},
          {"status", r.status},
          {"cause", r.cause},
          {"params", r.overrides},
          {"step", r.target_step},
          {"executor", r.executor},
          {"no_cache", r.no_cache},
          {"reason", r.reason},
          {"code_digest", r.code_digest},
          {"env_digest", r.env_digest},
          {"created_at", r.created_at_ms},
          {"started_at", r.started_at_ms},
          {"ended_at", r.ended_at_ms},
          {"steps", steps}};
}

absl::StatusOr<std::unique_ptr<PipelineService>> PipelineService::Create(DataDirectory& dir,
                                                                         const PipelineServiceOptions& options) {
  auto svc = std::unique_ptr<PipelineService>(new PipelineService());
  svc->dir_ = &dir;
  ASSIGN_OR_RETURN(svc->store_, pipeline::PipelineStore::Create(dir.database(), dir.env()));
  pipeline::SchedulerDeps deps{.env = &dir.env(),
                               .tracking = &dir.tracking(),
                               .datasets = &dir.datasets(),
                               .chunks = &dir.chunks(),
                               .objects = &dir.objects(),
                               .store = svc->store_.get(),
                               .work_dir = dir.work_path(),
                               .is_server = options.server};
  absl::StatusOr<std::unique_ptr<exec::SandboxExecutor>> local = exec::SandboxExecutor::Create(exec::SandboxOptions{});
  if (local.ok()) {
    deps.executors.push_back(local->get());
    absl::MutexLock l(&svc->mu_);
    svc->executors_["local"] = std::move(*local);
  } else {
    svc->local_error_ = std::string(local.status().message());
    spdlog::warn("the local sandbox is unavailable: {}", svc->local_error_);
  }
  // Slurm jobs outlive this process: when Slurm is configured, make it now so
  // that recovery can reach the jobs of runs a crashed server left.
  if (std::getenv("SLURM_CONF") != nullptr || std::getenv("CAIRN_SLURM") != nullptr) {
    if (absl::Status s = svc->EnsureExecutor("slurm"); s.ok()) {
      absl::MutexLock l(&svc->mu_);
      deps.executors.push_back(svc->executors_["slurm"].get());
    } else {
      spdlog::warn("Slurm is configured but unavailable: {}", s.message());
    }
  }
  ASSIGN_OR_RETURN(svc->scheduler_, pipeline::PipelineScheduler::Create(deps));
  if (options.server) {
    ASSIGN_OR_RETURN(svc->triggers_, pipeline::TriggerLoop::Create(*svc->store_, dir.datasets(), *svc->scheduler_,
                                                                   dir.env(), options.trigger_interval));
    svc->triggers_->Start();
  }
  return svc;
}

PipelineService::~PipelineService() {
  triggers_.reset();
  scheduler_.reset();  // joins its threads before the executors go
}

absl::Status PipelineService::EnsureExecutor(const std::string& name) {
  absl::MutexLock l(&mu_);
  if (executors_.contains(name)) return absl::OkStatus();
  if (name == "local") {
    return absl::FailedPreconditionError(fmt::format("the local sandbox is unavailable: {}", local_error_));
  }
  if (name != "slurm") {
    return absl::InvalidArgumentError(fmt::format("unknown executor '{}' (expected local or slurm)", name));
  }
  exec::SlurmOptions o;
  o.cairn_binary = SelfExecutable();
  if (const char* conf = std::getenv("SLURM_CONF")) o.env["SLURM_CONF"] = conf;
  absl::StatusOr<std::unique_ptr<exec::SlurmExecutor>> slurm = exec::SlurmExecutor::Create(o);
  if (!slurm.ok()) {
    return absl::FailedPreconditionError(fmt::format("the Slurm executor is unavailable: {}", slurm.status().message()));
  }
  exec::Executor* e = slurm->get();
  executors_["slurm"] = std::move(*slurm);
  if (scheduler_) scheduler_->AddExecutor(e);
  return absl::OkStatus();
}

void AddPipelineRoutes(DataDirectory& dir, http::Router& router) {
  router.Add(Method::kPost, kPipelines, [&dir](Request& req) -> Response {
    return Handle([&]() -> absl::StatusOr<Json> {
      ASSIGN_OR_RETURN(Json body, ParseJson(req.body));
      ASSIGN_OR_RETURN(std::string spec, GetString(body, "spec"));
      ASSIGN_OR_RETURN(std::optional<std::string> file_name, GetOptionalString(body, "file_name"));
      ASSIGN_OR_RETURN(std::string project_dir, GetString(body, "project_dir"));
      ASSIGN_OR_RETURN(PipelineService * svc, dir.pipelines());
      ASSIGN_OR_RETURN(pipeline::PipelineRecord p,
                       svc->scheduler().Register(spec, file_name.value_or("cairn.yaml"), project_dir));
      return Json{{"pipeline", PipelineJson(p, false, false)}};
    });
  });
  router.Add(Method::kGet, kPipelines, [&dir](Request& req) -> Response {
    return Handle([&]() -> absl::StatusOr<Json> {
      ASSIGN_OR_RETURN(PipelineService * svc, dir.pipelines());
      ASSIGN_OR_RETURN(auto list, svc->store().ListPipelines());
      Json out = {{"pipelines", Json::array()}};
      for (const auto& p : list) {
        Json j = PipelineJson(p, false, false);
        ASSIGN_OR_RETURN(auto last, svc->store().ListRuns(p.name, 1));
        if (!last.empty()) {
          j["last_run"] = {{"id", last[0].id}, {"status", last[0].status}, {"created_at", last[0].created_at_ms},
                           {"cause", last[0].cause}};
        }
        out["pipelines"].push_back(std::move(j));
      }
      return out;
    });
  });
  for (Method m : {Method::kGet, Method::kPost}) {
    router.Add(m, std::string(kPipelines) + "/*", [&dir](Request& req) { return Pipelines(dir, req); });
    router.Add(m, std::string(kPipelineRuns) + "/*", [&dir](Request& req) { return PipelineRuns(dir, req); });
    router.Add(m, std::string(kStepRuns) + "/*", [&dir](Request& req) { return StepRuns(dir, req); });
  }
}

}  // namespace cairn::api
