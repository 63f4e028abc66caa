#include "cli/pipeline_commands.h"

#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "absl/strings/ascii.h"
#include "cli/table.h"
#include "cli/transport.h"
#include "http/http.h"

namespace cairn::cli {
namespace {

constexpr char kPipelines[] = "/api/cairn/v1/pipelines";
constexpr char kPipelineRuns[] = "/api/cairn/v1/pipeline-runs";
constexpr char kStepRuns[] = "/api/cairn/v1/runs";

std::atomic<bool> interrupted{false};
void OnInterrupt(int) { interrupted = true; }

std::string Short(const std::string& id) { return id.substr(0, 12); }

std::string Seconds(int64_t from_ms, int64_t to_ms) {
  if (from_ms <= 0 || to_ms < from_ms) return "";
  return fmt::format("{:.1f} s", static_cast<double>(to_ms - from_ms) / 1000);
}

std::string CauseText(const Json& cause) {
  const std::string kind = JsonStr(cause, "kind");
  if (kind == "dataset_commit" && cause.contains("commits") && cause["commits"].is_array()) {
    std::string out = "new data:";
    for (const Json& c : cause["commits"]) {
      out += fmt::format(" {}@{}={}", JsonStr(c, "dataset"), JsonStr(c, "branch"), Short(JsonStr(c, "commit")));
    }
    return out;
  }
  if (kind == "cron") return "cron " + JsonStr(cause, "schedule");
  if (kind == "webhook") return "webhook" + (cause.contains("ref") ? " " + JsonStr(cause, "ref") : std::string());
  return kind.empty() ? "-" : kind;
}

std::string StepCounts(const Json& run) {
  std::map<std::string, int> counts;
  for (const Json& s : run.value("steps", Json::array())) counts[JsonStr(s, "status")]++;
  std::string out;
  for (const auto& [status, n] : counts) {
    if (!out.empty()) out += ", ";
    out += fmt::format("{} {}", n, absl::AsciiStrToLower(status));
  }
  return out;
}

struct RunOptions {
  std::string target, file = "cairn.yaml", executor = "local";
  std::vector<std::string> params;
  bool no_cache = false, detach = false;
};

// Prints each step's changes as they come; returns the final run.
absl::StatusOr<Json> FollowRun(Transport& t, const GlobalOptions& g, const std::string& id) {
  std::map<std::string, std::string> shown;  // step -> "STATUS attempt"
  bool cancel_sent = false;
  int width = 8;
  for (;;) {
    ASSIGN_OR_RETURN(Json r, t.Get(std::string(kPipelineRuns) + "/" + id));
    const Json& run = r["run"];
    for (const Json& s : run.value("steps", Json::array())) {
      width = std::max<int>(width, static_cast<int>(JsonStr(s, "step").size()));
    }
    for (const Json& s : run.value("steps", Json::array())) {
      const std::string step = JsonStr(s, "step"), status = JsonStr(s, "status");
      const std::string key = status + " " + std::to_string(JsonInt(s, "attempt")) + JsonStr(s, "reason");
      if (shown[step] == key || (status == "PENDING" && shown[step].empty())) continue;
      shown[step] = key;
      if (g.json) continue;
      std::string detail;
      const std::string run_id = JsonStr(s, "run_id");
      if (status == "RUNNING") {
        detail = fmt::format("run {}{}", Short(run_id),
                             JsonInt(s, "attempt") > 1 ? fmt::format(" (attempt {})", JsonInt(s, "attempt")) : "");
      } else if (status == "SUCCEEDED") {
        detail = fmt::format("{:>8}  run {}", Seconds(JsonInt(s, "started_at"), JsonInt(s, "ended_at")), Short(run_id));
      } else if (status == "CACHED") {
        detail = fmt::format("{:>8}  run {} (cache hit: nothing ran)", "", Short(run_id));
      } else {
        detail = JsonStr(s, "reason");
        if (!run_id.empty() && status == "FAILED") detail += fmt::format("  (cairn runs logs {})", run_id);
      }
      std::printf("  %-*s  %-9s  %s\n", width, step.c_str(), status.c_str(), detail.c_str());
      std::fflush(stdout);
    }
    const std::string status = JsonStr(run, "status");
    if (status != "PENDING" && status != "RUNNING") return run;
    if (interrupted && !cancel_sent) {
      cancel_sent = true;
      std::fprintf(stderr, "cairn: interrupted: cancelling pipeline run %s...\n", Short(id).c_str());
      RETURN_IF_ERROR(t.Post(std::string(kPipelineRuns) + "/" + id + "/cancel", Json::object()).status());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

absl::Status Run(Transport& t, const GlobalOptions& g, const RunOptions& o, int& exit_code) {
  std::string pipeline = o.target;
  std::string step;
  std::error_code ec;
  if (std::filesystem::exists(o.file, ec)) {
    std::ifstream in(o.file);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) return absl::PermissionDeniedError(fmt::format("cannot read {}", o.file));
    const std::filesystem::path abs = std::filesystem::absolute(o.file, ec).lexically_normal();
    ASSIGN_OR_RETURN(Json reg, t.Post(kPipelines, {{"spec", text.str()},
                                                   {"file_name", abs.filename().string()},
                                                   {"project_dir", abs.parent_path().string()}}));
    pipeline = JsonStr(reg["pipeline"], "name");
    if (!o.target.empty() && o.target != pipeline) step = o.target;  // a step of this pipeline
  } else if (o.target.empty()) {
    return absl::NotFoundError(
        fmt::format("no {} here: give the spec with -f FILE, or name a registered pipeline", o.file));
  }
  Json body = {{"params", o.params}, {"executor", o.executor}, {"no_cache", o.no_cache}};
  if (!step.empty()) body["step"] = step;
  ASSIGN_OR_RETURN(Json started, t.Post(std::string(kPipelines) + "/" + http::UrlEncode(pipeline) + "/runs", body));
  const std::string id = JsonStr(started["run"], "id");
  if (!g.json) {
    std::printf("pipeline %s: run %s (%s%s, executor %s)\n", pipeline.c_str(), id.c_str(),
                step.empty() ? "all steps" : ("step " + step + " and its ancestors").c_str(),
                o.no_cache ? ", cache off" : "", o.executor.c_str());
    std::fflush(stdout);
  }
  if (o.detach) {
    if (g.json) PrintJson(started["run"]);
    return absl::OkStatus();
  }
  struct sigaction sa {};
  sa.sa_handler = OnInterrupt;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  ASSIGN_OR_RETURN(Json run, FollowRun(t, g, id));
  const std::string status = JsonStr(run, "status");
  if (g.json) {
    PrintJson(run);
  } else {
    std::printf("%s in %s: %s%s\n", status.c_str(),
                Seconds(JsonInt(run, "started_at"), JsonInt(run, "ended_at")).c_str(), StepCounts(run).c_str(),
                JsonStr(run, "reason").empty() ? "" : ("; " + JsonStr(run, "reason")).c_str());
  }
  if (status != "SUCCEEDED") {
    exit_code = interrupted ? 130 : 1;
  }
  return absl::OkStatus();
}

absl::Status Logs(Transport& t, const std::string& run_id, bool follow) {
  uint64_t offset = 0;
  const std::string base = std::string(kStepRuns) + "/" + http::UrlEncode(run_id);
  bool final_seen = false;
  for (;;) {
    uint64_t got = 0;
    RETURN_IF_ERROR(t.Download(base + "/logs?offset=" + std::to_string(offset), [&](std::string_view b) {
      std::fwrite(b.data(), 1, b.size(), stdout);
      got += b.size();
      return absl::OkStatus();
    }));
    std::fflush(stdout);
    offset += got;
    if (got > 0) continue;
    if (!follow || final_seen) return absl::OkStatus();
    ASSIGN_OR_RETURN(Json st, t.Get(base + "/step"));
    const std::string status = JsonStr(st["step"], "status");
    if (status != "PENDING" && status != "RUNNING") {
      final_seen = true;  // one more read drains what was written before it ended
      continue;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

}  // namespace

void AddPipelineCommands(CLI::App& app, CLI::App& runs, GlobalOptions& g, int& exit_code) {
  auto with_transport = [&g, &exit_code](const std::function<absl::Status(Transport&)>& fn) {
    WithTransport(g, exit_code, fn);
  };
  struct State {
    RunOptions run;
    std::string name, run_id;
    bool secret = false, follow = false;
    int limit = 20;
  };
  auto st = std::make_shared<State>();

  auto* run = app.add_subcommand(
      "run",
      "Run a pipeline (cairn.yaml) or one step and its ancestors: each step in a sandbox, as a tracked run,\n"
      "skipping steps whose code, environment, params and inputs already ran (the run cache)");
  run->add_option("TARGET", st->run.target, "a step of the spec, or a registered pipeline's name (default: all steps)");
  run->add_option("-f,--file", st->run.file, "the pipeline spec")->capture_default_str();
  run->add_option("-p,--param", st->run.params, "override a param: k=v (every step declaring k) or step.k=v");
  run->add_option("--executor", st->run.executor, "local (bubblewrap sandbox) or slurm")->capture_default_str();
  run->add_flag("--no-cache", st->run.no_cache, "run every step even if the run cache has it");
  run->add_flag("-d,--detach", st->run.detach, "start the run and return (a server keeps running it)");
  run->callback([=, &g, &exit_code] {
    with_transport([&](Transport& t) -> absl::Status {
      if (st->run.detach && t.embedded() != nullptr) {
        return absl::InvalidArgumentError("--detach needs a server (--url): embedded runs stop with this process");
      }
      return Run(t, g, st->run, exit_code);
    });
  });

  auto* pipelines = app.add_subcommand("pipelines", "Registered pipelines and their runs");
  pipelines->require_subcommand(1);
  auto* list = pipelines->add_subcommand("list", "List pipelines with their triggers and last run");
  list->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      ASSIGN_OR_RETURN(Json r, t.Get(kPipelines));
      if (g.json) {
        PrintJson(r["pipelines"]);
        return absl::OkStatus();
      }
      Table table({"NAME", "STEPS", "TRIGGERS", "LAST RUN", "STATUS", "WHEN"});
      for (const Json& p : r.value("pipelines", Json::array())) {
        std::vector<std::string> trig;
        const Json& tr = p.value("triggers", Json::object());
        if (tr.value("datasets", false)) trig.push_back("datasets");
        if (!JsonStr(tr, "cron").empty()) trig.push_back("cron " + JsonStr(tr, "cron"));
        if (tr.value("webhook", false)) trig.push_back("webhook");
        const Json& last = p.value("last_run", Json::object());
        table.AddRow({JsonStr(p, "name"), std::to_string(p.value("steps", Json::array()).size()),
                      trig.empty() ? "-" : fmt::format("{}", fmt::join(trig, ", ")),
                      last.empty() ? "-" : Short(JsonStr(last, "id")), last.empty() ? "-" : JsonStr(last, "status"),
                      last.empty() ? "-" : FormatTime(JsonInt(last, "created_at"))});
      }
      std::printf("%s", table.Render().c_str());
      return absl::OkStatus();
    });
  });

  auto* show = pipelines->add_subcommand("show", "Show a pipeline: steps, triggers, recent runs");
  show->add_option("NAME", st->name, "pipeline")->required();
  show->add_flag("--secret", st->secret, "also print the webhook secret (HMAC key of the trigger webhook)");
  show->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      ASSIGN_OR_RETURN(Json r, t.Get(std::string(kPipelines) + "/" + http::UrlEncode(st->name) +
                                     (st->secret ? "?secret=1" : "")));
      if (g.json) {
        PrintJson(r);
        return absl::OkStatus();
      }
      const Json& p = r["pipeline"];
      std::printf("pipeline     %s\nspec         %s/%s\n", JsonStr(p, "name").c_str(), JsonStr(p, "project_dir").c_str(),
                  JsonStr(p, "file_name").c_str());
      const Json& tr = p.value("triggers", Json::object());
      std::printf("triggers     datasets: %s, cron: %s, webhook: %s\n", tr.value("datasets", false) ? "yes" : "no",
                  JsonStr(tr, "cron").empty() ? "-" : JsonStr(tr, "cron").c_str(),
                  tr.value("webhook", false) ? "yes" : "no");
      if (st->secret) std::printf("secret       %s\n", JsonStr(p, "webhook_secret").c_str());
      const Json spec = p.value("spec_json", Json::object());
      Table steps({"STEP", "ROLE", "INPUTS", "OUTPUTS"});
      for (const Json& s : spec.value("steps", Json::array())) {
        std::vector<std::string> ins;
        const Json inputs = s.value("inputs", Json::array());
        for (const Json& i : inputs) {
          if (i.is_object()) ins.push_back(JsonStr(i, "name") + "=" + JsonStr(i, "ref"));
        }
        if (inputs.is_object()) {
          for (const auto& [k, v] : inputs.items()) ins.push_back(k + "=" + (v.is_string() ? v.get<std::string>() : v.dump()));
        }
        std::vector<std::string> outs;
        for (const Json& o : s.value("outputs", Json::array())) outs.push_back(o.is_string() ? o.get<std::string>() : o.dump());
        steps.AddRow({JsonStr(s, "name"), JsonStr(s, "role").empty() ? "-" : JsonStr(s, "role"),
                      ins.empty() ? "-" : fmt::format("{}", fmt::join(ins, " ")),
                      outs.empty() ? "-" : fmt::format("{}", fmt::join(outs, " "))});
      }
      std::printf("\n%s", steps.Render().c_str());
      Table runs_table({"RUN", "STATUS", "CAUSE", "STARTED", "DURATION", "STEPS"});
      for (const Json& run : r.value("runs", Json::array())) {
        runs_table.AddRow({Short(JsonStr(run, "id")), JsonStr(run, "status"), CauseText(run["cause"]),
                           FormatTime(JsonInt(run, "created_at")),
                           Seconds(JsonInt(run, "started_at"), JsonInt(run, "ended_at")), StepCounts(run)});
      }
      std::printf("\nrecent runs\n%s", runs_table.Render().c_str());
      return absl::OkStatus();
    });
  });

  auto* pruns = pipelines->add_subcommand("runs", "List a pipeline's runs (newest first), or show one run's steps");
  pruns->add_option("NAME", st->name, "pipeline")->required();
  pruns->add_option("RUN", st->run_id, "a pipeline run id: show its steps");
  pruns->add_option("-n,--limit", st->limit, "show at most this many runs")->capture_default_str();
  pruns->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      if (!st->run_id.empty()) {
        ASSIGN_OR_RETURN(Json r, t.Get(std::string(kPipelineRuns) + "/" + http::UrlEncode(st->run_id)));
        if (g.json) {
          PrintJson(r["run"]);
          return absl::OkStatus();
        }
        const Json& run = r["run"];
        std::printf("run %s of %s: %s (%s)%s\n", JsonStr(run, "id").c_str(), JsonStr(run, "pipeline").c_str(),
                    JsonStr(run, "status").c_str(), CauseText(run["cause"]).c_str(),
                    JsonStr(run, "reason").empty() ? "" : ("; " + JsonStr(run, "reason")).c_str());
        Table table({"STEP", "STATUS", "RUN", "ATTEMPT", "DURATION", "REASON"});
        for (const Json& s : run.value("steps", Json::array())) {
          const bool ran = JsonStr(s, "status") != "CACHED" && JsonInt(s, "attempt") > 0;
          table.AddRow({JsonStr(s, "step"), JsonStr(s, "status"), JsonStr(s, "run_id"),
                        ran ? std::to_string(JsonInt(s, "attempt")) : "-",
                        ran ? Seconds(JsonInt(s, "started_at"), JsonInt(s, "ended_at")) : "-",
                        JsonStr(s, "reason")});
        }
        std::printf("%s", table.Render().c_str());
        return absl::OkStatus();
      }
      ASSIGN_OR_RETURN(Json r, t.Get(std::string(kPipelines) + "/" + http::UrlEncode(st->name) +
                                     "/runs?limit=" + std::to_string(st->limit)));
      if (g.json) {
        PrintJson(r["runs"]);
        return absl::OkStatus();
      }
      Table table({"RUN", "STATUS", "CAUSE", "STARTED", "DURATION", "STEPS"});
      for (const Json& run : r.value("runs", Json::array())) {
        table.AddRow({JsonStr(run, "id"), JsonStr(run, "status"), CauseText(run["cause"]),
                      FormatTime(JsonInt(run, "created_at")),
                      Seconds(JsonInt(run, "started_at"), JsonInt(run, "ended_at")), StepCounts(run)});
      }
      std::printf("%s", table.Render().c_str());
      return absl::OkStatus();
    });
  });

  auto* logs = runs.add_subcommand("logs", "Print a pipeline step run's output (stdout and stderr)");
  logs->add_option("RUN_ID", st->run_id, "the step's run id")->required();
  logs->add_flag("-f,--follow", st->follow, "keep printing while the step runs");
  logs->callback([=] { with_transport([&](Transport& t) { return Logs(t, st->run_id, st->follow); }); });

  auto* cancel = runs.add_subcommand("cancel", "Cancel a running pipeline run (given its id or a step's run id)");
  cancel->add_option("RUN_ID", st->run_id, "pipeline run id or step run id")->required();
  cancel->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      absl::StatusOr<Json> r = t.Post(std::string(kStepRuns) + "/" + http::UrlEncode(st->run_id) + "/cancel",
                                      Json::object());
      if (absl::IsNotFound(r.status())) {
        r = t.Post(std::string(kPipelineRuns) + "/" + http::UrlEncode(st->run_id) + "/cancel", Json::object());
      }
      RETURN_IF_ERROR(r.status());
      if (g.json) {
        PrintJson((*r)["run"]);
      } else {
        std::printf("cancel requested for pipeline run %s (now %s)\n", JsonStr((*r)["run"], "id").c_str(),
                    JsonStr((*r)["run"], "status").c_str());
      }
      return absl::OkStatus();
    });
  });
}

}  // namespace cairn::cli
