#include "cli/cli.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "base/config.h"
#include "base/json.h"
#include "cli/cli_common.h"
#include "cli/data_commands.h"
#include "cli/exec_commands.h"
#include "cli/model_commands.h"
#include "cli/pipeline_commands.h"
#include "cli/server_command.h"
#include "cli/serving_commands.h"
#include "cli/table.h"
#include "cli/transport.h"
#include "http/http.h"

namespace cairn::cli {
namespace {

constexpr const char kApi[] = "/api/2.0/mlflow/";

// Resolves an experiment given by id or by name.
absl::StatusOr<std::string> ResolveExperiment(Transport& t, const std::string& id_or_name) {
  bool numeric = !id_or_name.empty() && id_or_name.find_first_not_of("0123456789") == std::string::npos;
  if (numeric) return id_or_name;
  ASSIGN_OR_RETURN(Json r, t.Get(std::string(kApi) + "experiments/get-by-name?experiment_name=" +
                                 http::UrlEncode(id_or_name)));
  return JsonStr(r["experiment"], "experiment_id");
}

// All pages of runs/search.
absl::StatusOr<std::vector<Json>> SearchRuns(Transport& t, const std::vector<std::string>& experiment_ids,
                                             const std::string& filter, const std::vector<std::string>& order_by,
                                             int limit) {
  std::vector<Json> runs;
  std::string token;
  do {
    Json body = {{"experiment_ids", experiment_ids},
                 {"filter", filter},
                 {"order_by", order_by},
                 {"max_results", std::min(limit - static_cast<int>(runs.size()), 1000)}};
    if (!token.empty()) body["page_token"] = token;
    ASSIGN_OR_RETURN(Json r, t.Post(std::string(kApi) + "runs/search", body));
    for (const Json& run : r.value("runs", Json::array())) runs.push_back(run);
    token = JsonStr(r, "next_page_token");
  } while (!token.empty() && static_cast<int>(runs.size()) < limit);
  return runs;
}

absl::StatusOr<std::vector<std::string>> AllExperimentIds(Transport& t) {
  std::vector<std::string> ids;
  std::string token;
  do {
    Json body = {{"max_results", 1000}};
    if (!token.empty()) body["page_token"] = token;
    ASSIGN_OR_RETURN(Json r, t.Post(std::string(kApi) + "experiments/search", body));
    for (const Json& e : r.value("experiments", Json::array())) ids.push_back(JsonStr(e, "experiment_id"));
    token = JsonStr(r, "next_page_token");
  } while (!token.empty());
  return ids;
}

void PrintRunsTable(const std::vector<Json>& runs, const std::vector<std::string>& metric_columns) {
  std::vector<std::string> header = {"RUN ID", "NAME", "STATUS", "STARTED"};
  for (const std::string& m : metric_columns) header.push_back(m);
  Table table(header);
  for (const Json& run : runs) {
    const Json& info = run["info"];
    std::vector<std::string> row = {JsonStr(info, "run_id"), JsonStr(info, "run_name"), JsonStr(info, "status"),
                                    FormatTime(JsonInt(info, "start_time"))};
    for (const std::string& key : metric_columns) {
      std::string cell = "-";
      for (const Json& m : run["data"].value("metrics", Json::array())) {
        if (JsonStr(m, "key") == key) cell = FormatValue(m["value"]);
      }
      row.push_back(cell);
    }
    table.AddRow(std::move(row));
  }
  std::printf("%s", table.Render().c_str());
  if (runs.empty()) std::printf("(no runs)\n");
}

// The metric keys worth showing as columns: those in the first runs, up to 4.
std::vector<std::string> MetricColumns(const std::vector<Json>& runs, const std::vector<std::string>& order_by) {
  std::vector<std::string> keys;
  for (const std::string& o : order_by) {
    if (o.rfind("metrics.", 0) == 0) {
      std::string k = o.substr(8);
      k = k.substr(0, k.find(' '));
      if (k.size() >= 2 && (k.front() == '`' || k.front() == '"')) k = k.substr(1, k.size() - 2);
      keys.push_back(k);
    }
  }
  for (const Json& run : runs) {
    for (const Json& m : run["data"].value("metrics", Json::array())) {
      std::string k = JsonStr(m, "key");
      if (std::find(keys.begin(), keys.end(), k) == keys.end() && keys.size() < 4) keys.push_back(k);
    }
    if (keys.size() >= 4) break;
  }
  return keys;
}

void PrintRun(const Json& run) {
  const Json& info = run["info"];
  std::printf("Run %s (%s)\n", JsonStr(info, "run_id").c_str(), JsonStr(info, "run_name").c_str());
  std::printf("  experiment:   %s\n", JsonStr(info, "experiment_id").c_str());
  std::printf("  status:       %s\n", JsonStr(info, "status").c_str());
  std::printf("  user:         %s\n", JsonStr(info, "user_id").c_str());
  std::printf("  started:      %s\n", FormatTime(JsonInt(info, "start_time")).c_str());
  std::printf("  ended:        %s\n", FormatTime(JsonInt(info, "end_time")).c_str());
  std::printf("  artifacts:    %s\n", JsonStr(info, "artifact_uri").c_str());
  std::printf("  lifecycle:    %s\n", JsonStr(info, "lifecycle_stage").c_str());
  const Json& data = run["data"];
  auto section = [](const char* title, const Json& items, bool metric) {
    if (items.empty()) return;
    std::printf("\n%s\n", title);
    Table t(metric ? std::vector<std::string>{"KEY", "VALUE", "STEP", "TIME"}
                   : std::vector<std::string>{"KEY", "VALUE"});
    for (const Json& i : items) {
      if (metric) {
        t.AddRow({JsonStr(i, "key"), FormatValue(i["value"]), JsonStr(i, "step"), FormatTime(JsonInt(i, "timestamp"))});
      } else {
        t.AddRow({JsonStr(i, "key"), JsonStr(i, "value")});
      }
    }
    std::string rendered = t.Render();
    // Indent every line by two spaces.
    std::string out = "  ";
    for (char c : rendered) {
      out += c;
      if (c == '\n') out += "  ";
    }
    out.resize(out.size() - 2);
    std::printf("%s", out.c_str());
  };
  section("Params", data.value("params", Json::array()), false);
  section("Metrics (latest)", data.value("metrics", Json::array()), true);
  section("Tags", data.value("tags", Json::array()), false);
  const Json inputs = run.value("inputs", Json::object()).value("dataset_inputs", Json::array());
  if (!inputs.empty()) {
    std::printf("\nInputs\n");
    for (const Json& in : inputs) {
      std::printf("  %s @ %s\n", JsonStr(in["dataset"], "name").c_str(), JsonStr(in["dataset"], "digest").c_str());
    }
  }
}

// Maps a failed Status to one clear line and exit code 1.

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{"Cairn: a self-hosted machine-learning lifecycle platform.\n"
               "Client commands talk to the server at --url / CAIRN_URL; without one they open the data\n"
               "directory (--data-dir / CAIRN_HOME, default ./cairn-data) directly."};
  app.name("cairn");
  app.require_subcommand(1);
  GlobalOptions g;
  g.url = EnvOr("CAIRN_URL", "");
  g.data_dir = EnvOr("CAIRN_HOME", "./cairn-data");
  app.add_option("--url", g.url, "Cairn server URL, e.g. http://127.0.0.1:5000 (env CAIRN_URL)");
  app.add_option("--data-dir", g.data_dir, "data directory for embedded use (env CAIRN_HOME)");
  app.add_flag("--json", g.json, "print machine-readable JSON instead of tables");
  app.set_version_flag("--version", std::string("cairn ") + CAIRN_VERSION);

  int exit_code = 0;
  auto with_transport = [&](const std::function<absl::Status(Transport&)>& fn) { WithTransport(g, exit_code, fn); };

  // ----------------------------------------------------------------- server
  auto* server = app.add_subcommand("server", "Run the tracking server (MLflow REST API) on a data directory");
  std::string host = "127.0.0.1", config_file, log_level = "info", payload_sample = "1";
  int port = 5000;
  server->add_option("--host", host, "address to bind (env CAIRN_HOST)")->capture_default_str();
  server->add_option("--port", port, "TCP port; 0 picks a free one (env CAIRN_PORT)")->capture_default_str();
  server->add_option("--config", config_file, "YAML file with host, port, data_dir, log_level");
  server->add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();
  server->add_option("--data-dir", g.data_dir, "data directory (env CAIRN_HOME; default ./cairn-data)");
  server->add_option("--payload-sample", payload_sample,
                     "fraction of predictions written to the payload log, 0 to 1 (env CAIRN_PAYLOAD_SAMPLE)")
      ->type_name("FRACTION")
      ->capture_default_str();
  server->callback([&] {
    Config::Sources src;
    src.defaults = {{"host", "127.0.0.1"},
                    {"port", "5000"},
                    {"data_dir", "./cairn-data"},
                    {"log_level", "info"},
                    {"payload_sample", "1"}};
    if (server->count("--host")) src.flags["host"] = host;
    if (server->count("--port")) src.flags["port"] = std::to_string(port);
    if (server->count("--log-level")) src.flags["log_level"] = log_level;
    if (server->count("--payload-sample")) src.flags["payload_sample"] = payload_sample;
    if (app.count("--data-dir") || server->count("--data-dir")) src.flags["data_dir"] = g.data_dir;
    src.environment = Config::ProcessEnvironment();
    if (auto it = src.environment.find("CAIRN_HOME"); it != src.environment.end()) {
      src.environment["CAIRN_DATA_DIR"] = it->second;
    }
    if (!config_file.empty()) src.file = config_file;
    auto env = NewPosixEnv();
    auto config = Config::Load(*env, src);
    if (!config.ok()) {
      exit_code = Fail(config.status());
      return;
    }
    ServerOptions options;
    auto p = config->GetInt("port");
    if (!p.ok() || *p < 0 || *p > 65535) {
      exit_code = Fail(p.ok() ? absl::InvalidArgumentError(fmt::format("port {} is out of range", *p)) : p.status());
      return;
    }
    options.port = static_cast<int>(*p);
    options.host = *config->GetString("host");
    options.data_dir = *config->GetString("data_dir");
    options.log_level = *config->GetString("log_level");
    auto sample = ParseFraction("payload_sample", *config->GetString("payload_sample"));
    if (!sample.ok()) {
      exit_code = Fail(sample.status());
      return;
    }
    options.payload_sample = *sample;
    absl::Status s = RunServer(options);
    if (!s.ok()) exit_code = Fail(s);
  });

  // ------------------------------------------------------------------- fsck
  auto* fsck = app.add_subcommand("fsck", "Verify every object, the database and the references between them");
  fsck->add_option("--data-dir", g.data_dir, "data directory to check (env CAIRN_HOME)");
  fsck->callback([&] {
    auto problems = RunFsck(g.data_dir, g.json);
    if (!problems.ok()) {
      exit_code = Fail(problems.status());
    } else if (*problems > 0) {
      exit_code = 1;
    }
  });

  // ------------------------------------------------------------ experiments
  auto* experiments = app.add_subcommand("experiments", "List and create experiments");
  experiments->require_subcommand(1);
  auto* exp_list = experiments->add_subcommand("list", "List experiments");
  bool exp_all = false;
  exp_list->add_flag("--all", exp_all, "include deleted experiments");
  exp_list->callback([&] {
    with_transport([&](Transport& t) -> absl::Status {
      std::vector<Json> all;
      std::string token;
      do {
        Json body = {{"max_results", 1000}, {"view_type", exp_all ? "ALL" : "ACTIVE_ONLY"}};
        if (!token.empty()) body["page_token"] = token;
        ASSIGN_OR_RETURN(Json r, t.Post(std::string(kApi) + "experiments/search", body));
        for (const Json& e : r.value("experiments", Json::array())) all.push_back(e);
        token = JsonStr(r, "next_page_token");
      } while (!token.empty());
      if (g.json) {
        PrintJson(all);
        return absl::OkStatus();
      }
      Table table({"ID", "NAME", "STAGE", "CREATED", "ARTIFACT LOCATION"});
      for (const Json& e : all) {
        table.AddRow({JsonStr(e, "experiment_id"), JsonStr(e, "name"), JsonStr(e, "lifecycle_stage"),
                      FormatTime(JsonInt(e, "creation_time")), JsonStr(e, "artifact_location")});
      }
      std::printf("%s", table.Render().c_str());
      return absl::OkStatus();
    });
  });
  auto* exp_create = experiments->add_subcommand("create", "Create an experiment");
  std::string exp_name, exp_location;
  exp_create->add_option("NAME", exp_name, "experiment name")->required();
  exp_create->add_option("--artifact-location", exp_location, "where its runs' artifacts go (default: this server)");
  exp_create->callback([&] {
    with_transport([&](Transport& t) -> absl::Status {
      Json body = {{"name", exp_name}};
      if (!exp_location.empty()) body["artifact_location"] = exp_location;
      ASSIGN_OR_RETURN(Json r, t.Post(std::string(kApi) + "experiments/create", body));
      if (g.json) {
        PrintJson(r);
      } else {
        std::printf("created experiment '%s' with id %s\n", exp_name.c_str(), JsonStr(r, "experiment_id").c_str());
      }
      return absl::OkStatus();
    });
  });

  // ------------------------------------------------------------------- runs
  auto* runs = app.add_subcommand("runs", "List, show and search runs");
  runs->require_subcommand(1);
  std::string run_experiment, run_filter, run_id, metric_key;
  std::vector<std::string> run_order;
  int run_limit = 100;
  auto add_search_options = [&](CLI::App* cmd, bool with_filter) {
    cmd->add_option("-e,--experiment", run_experiment, "experiment id or name (default: all experiments)");
    if (with_filter) {
      cmd->add_option("-f,--filter", run_filter,
                      "MLflow filter, e.g. \"metrics.accuracy > 0.9 and params.model = 'rf'\"");
    }
    cmd->add_option("-o,--order-by", run_order, "e.g. \"metrics.accuracy DESC\" (repeatable)");
    cmd->add_option("-n,--limit", run_limit, "show at most this many runs")->capture_default_str();
  };
  auto search_callback = [&] {
    with_transport([&](Transport& t) -> absl::Status {
      std::vector<std::string> ids;
      if (run_experiment.empty()) {
        ASSIGN_OR_RETURN(ids, AllExperimentIds(t));
      } else {
        ASSIGN_OR_RETURN(std::string id, ResolveExperiment(t, run_experiment));
        ids.push_back(id);
      }
      ASSIGN_OR_RETURN(auto found, SearchRuns(t, ids, run_filter, run_order, run_limit));
      if (g.json) {
        PrintJson(found);
      } else {
        PrintRunsTable(found, MetricColumns(found, run_order));
      }
      return absl::OkStatus();
    });
  };
  auto* runs_list = runs->add_subcommand("list", "List runs, newest first");
  add_search_options(runs_list, false);
  runs_list->callback(search_callback);
  auto* runs_search = runs->add_subcommand("search", "Search runs with MLflow's filter grammar");
  add_search_options(runs_search, true);
  runs_search->callback(search_callback);
  auto* runs_show = runs->add_subcommand("show", "Show a run: info, params, latest metrics, tags, inputs");
  runs_show->add_option("RUN_ID", run_id, "run id")->required();
  runs_show->callback([&] {
    with_transport([&](Transport& t) -> absl::Status {
      ASSIGN_OR_RETURN(Json r, t.Get(std::string(kApi) + "runs/get?run_id=" + http::UrlEncode(run_id)));
      if (g.json) {
        PrintJson(r["run"]);
      } else {
        PrintRun(r["run"]);
      }
      return absl::OkStatus();
    });
  });
  auto* runs_metric = runs->add_subcommand("metric", "Print the full history of one metric of a run");
  runs_metric->add_option("RUN_ID", run_id, "run id")->required();
  runs_metric->add_option("KEY", metric_key, "metric key")->required();
  runs_metric->callback([&] {
    with_transport([&](Transport& t) -> absl::Status {
      std::vector<Json> points;
      std::string token;
      do {
        std::string target = std::string(kApi) + "metrics/get-history?run_id=" + http::UrlEncode(run_id) +
                             "&metric_key=" + http::UrlEncode(metric_key) + "&max_results=25000";
        if (!token.empty()) target += "&page_token=" + http::UrlEncode(token);
        ASSIGN_OR_RETURN(Json r, t.Get(target));
        for (const Json& m : r.value("metrics", Json::array())) points.push_back(m);
        token = JsonStr(r, "next_page_token");
      } while (!token.empty());
      if (g.json) {
        PrintJson(points);
        return absl::OkStatus();
      }
      Table table({"STEP", "VALUE", "TIME"});
      for (const Json& m : points) {
        table.AddRow({JsonStr(m, "step"), FormatValue(m["value"]), FormatTime(JsonInt(m, "timestamp"))});
      }
      std::printf("%s", table.Render().c_str());
      if (points.empty()) std::printf("(no points for metric '%s')\n", metric_key.c_str());
      return absl::OkStatus();
    });
  });

  // -------------------------------------------------------------- artifacts
  auto* artifacts = app.add_subcommand("artifacts", "List and download a run's artifacts");
  artifacts->require_subcommand(1);
  std::string art_path, art_out;
  auto* art_ls = artifacts->add_subcommand("ls", "List a run's artifacts (one directory level)");
  art_ls->add_option("RUN_ID", run_id, "run id")->required();
  art_ls->add_option("PATH", art_path, "directory inside the run's artifacts");
  art_ls->callback([&] {
    with_transport([&](Transport& t) -> absl::Status {
      std::string target = std::string(kApi) + "artifacts/list?run_id=" + http::UrlEncode(run_id);
      if (!art_path.empty()) target += "&path=" + http::UrlEncode(art_path);
      ASSIGN_OR_RETURN(Json r, t.Get(target));
      Json files = r.value("files", Json::array());
      if (g.json) {
        PrintJson(files);
        return absl::OkStatus();
      }
      Table table({"PATH", "SIZE"});
      for (const Json& f : files) {
        bool dir = f.value("is_dir", false);
        table.AddRow({JsonStr(f, "path") + (dir ? "/" : ""), dir ? "-" : FormatBytes(JsonInt(f, "file_size"))});
      }
      std::printf("%s", table.Render().c_str());
      if (files.empty()) std::printf("(no artifacts)\n");
      return absl::OkStatus();
    });
  });
  auto* art_get = artifacts->add_subcommand("get", "Download one artifact file");
  art_get->add_option("RUN_ID", run_id, "run id")->required();
  art_get->add_option("PATH", art_path, "file path inside the run's artifacts")->required();
  art_get->add_option("-o,--output", art_out, "where to write it (default: the file's name; '-' for stdout)");
  art_get->callback([&] {
    with_transport([&](Transport& t) -> absl::Status {
      ASSIGN_OR_RETURN(Json r, t.Get(std::string(kApi) + "runs/get?run_id=" + http::UrlEncode(run_id)));
      std::string uri = JsonStr(r["run"]["info"], "artifact_uri");
      const std::string scheme = "mlflow-artifacts:/";
      if (uri.rfind(scheme, 0) != 0) {
        return absl::FailedPreconditionError(
            fmt::format("run {} stores its artifacts at {}, not on this server", run_id, uri));
      }
      std::string root = uri.substr(scheme.size());
      while (!root.empty() && root.front() == '/') root.erase(0, 1);
      std::string out = art_out;
      if (out.empty()) out = art_path.substr(art_path.rfind('/') + 1);
      std::FILE* f = out == "-" ? stdout : std::fopen((out + ".part").c_str(), "wb");
      if (f == nullptr) return absl::PermissionDeniedError(fmt::format("cannot write {}", out));
      uint64_t written = 0;
      absl::Status s = t.Download("/api/2.0/mlflow-artifacts/artifacts/" + http::UrlEncodePath(root + "/" + art_path),
                                  [&](std::string_view chunk) -> absl::Status {
                                    if (std::fwrite(chunk.data(), 1, chunk.size(), f) != chunk.size()) {
                                      return absl::ResourceExhaustedError(fmt::format("writing {} failed", out));
                                    }
                                    written += chunk.size();
                                    return absl::OkStatus();
                                  });
      if (out == "-") return s;
      std::fclose(f);
      if (!s.ok()) {
        std::remove((out + ".part").c_str());
        return s;
      }
      if (std::rename((out + ".part").c_str(), out.c_str()) != 0) {
        return absl::PermissionDeniedError(fmt::format("cannot rename to {}", out));
      }
      if (!g.json) std::fprintf(stderr, "wrote %s (%s)\n", out.c_str(), FormatBytes(written).c_str());
      return absl::OkStatus();
    });
  });

  AddDataCommands(app, g, exit_code);
  AddExecCommands(app, exit_code);
  AddPipelineCommands(app, *runs, g, exit_code);
  AddModelCommands(app, g, exit_code);
  AddServingCommands(app, g, exit_code);
  // Global options (--json, --url, --data-dir) are accepted after a
  // subcommand too: `cairn data add ... --json`.
  std::function<void(CLI::App*)> fall_through = [&](CLI::App* a) {
    for (CLI::App* sub : a->get_subcommands({})) {
      sub->fallthrough();
      fall_through(sub);
    }
  };
  fall_through(&app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  return exit_code;
}

}  // namespace cairn::cli
