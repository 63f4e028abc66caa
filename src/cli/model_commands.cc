#include "cli/model_commands.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "cli/table.h"
#include "cli/transport.h"
#include "http/http.h"

namespace cairn::cli {
namespace {

constexpr char kMlflow[] = "/api/2.0/mlflow/";
constexpr char kModels[] = "/api/cairn/v1/models/";
constexpr char kDeployments[] = "/api/cairn/v1/deployments";

// Cairn's paths carry the model name as one path segment.
std::string ModelPath(const std::string& name) { return kModels + http::UrlEncode(name); }

// A quoted string literal for an MLflow search filter.
std::string FilterLiteral(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

bool AllDigits(const std::string& s) {
  return !s.empty() && s.size() <= 18 && s.find_first_not_of("0123456789") == std::string::npos;
}

std::string Aliases(const Json& version) {
  std::vector<std::string> out;
  for (const Json& a : version.value("aliases", Json::array())) {
    if (a.is_string()) out.push_back(a.get<std::string>());
  }
  return out.empty() ? "-" : fmt::format("{}", fmt::join(out, ", "));
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

// "✔ name (detail)" lines of a gate decision.
void PrintConditions(const Json& decision) {
  const Json conditions = decision.value("conditions", Json::array());
  if (conditions.empty()) {
    std::printf("  (no policy guards alias '%s')\n", JsonStr(decision, "alias").c_str());
    return;
  }
  for (const Json& c : conditions) {
    const std::string detail = JsonStr(c, "detail");
    std::printf("  %s %s%s\n", c.value("met", false) ? "✔" : "✘", JsonStr(c, "name").c_str(),
                detail.empty() ? "" : fmt::format("  ({})", detail).c_str());
  }
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(fmt::format("cannot read {}", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// All registered models (every page).
absl::StatusOr<std::vector<Json>> AllModels(Transport& t, const std::string& filter) {
  std::vector<Json> out;
  std::string token;
  do {
    std::string target = std::string(kMlflow) + "registered-models/search?max_results=1000";
    if (!filter.empty()) target += "&filter=" + http::UrlEncode(filter);
    if (!token.empty()) target += "&page_token=" + http::UrlEncode(token);
    ASSIGN_OR_RETURN(Json r, t.Get(target));
    for (const Json& m : r.value("registered_models", Json::array())) out.push_back(m);
    token = JsonStr(r, "next_page_token");
  } while (!token.empty());
  return out;
}

absl::StatusOr<std::vector<Json>> AllVersions(Transport& t, const std::string& name) {
  std::vector<Json> out;
  std::string token;
  do {
    std::string target = std::string(kMlflow) + "model-versions/search?max_results=10000&order_by=" +
                         http::UrlEncode("version_number DESC") +
                         "&filter=" + http::UrlEncode("name = " + FilterLiteral(name));
    if (!token.empty()) target += "&page_token=" + http::UrlEncode(token);
    ASSIGN_OR_RETURN(Json r, t.Get(target));
    for (const Json& v : r.value("model_versions", Json::array())) out.push_back(v);
    token = JsonStr(r, "next_page_token");
  } while (!token.empty());
  return out;
}

// ---------------------------------------------------------------- lineage

struct Graph {
  std::map<std::string, Json> nodes;
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> out;  // id -> (kind, to)
};

std::string NodeText(const Json& node) {
  const std::string type = JsonStr(node, "type");
  std::string text = type + " " + JsonStr(node, "label");
  const Json attrs = node.value("attrs", Json::object());
  if (type == "dataset_commit") {
    if (!JsonStr(attrs, "split").empty()) {
      text += fmt::format("  split {}{}", JsonStr(attrs, "split"), attrs.value("sealed", false) ? " (sealed)" : "");
    }
  } else if (type == "params" && attrs.is_object() && !attrs.empty()) {
    std::vector<std::string> kv;
    for (const auto& [k, v] : attrs.items()) kv.push_back(k + "=" + (v.is_string() ? v.get<std::string>() : v.dump()));
    text += "  " + fmt::format("{}", fmt::join(kv, " "));
  }
  return text;
}

void PrintTree(const Graph& g, const std::string& id, const std::string& via, int depth, std::set<std::string>& seen) {
  auto it = g.nodes.find(id);
  const std::string text = it == g.nodes.end() ? id : NodeText(it->second);
  std::printf("%*s%s%s%s\n", depth * 2, "", depth > 0 ? "└─ " : "", via.empty() ? "" : (via + ": ").c_str(),
              text.c_str());
  if (!seen.insert(id).second) return;  // shared upstream: printed once in full
  auto edges = g.out.find(id);
  if (edges == g.out.end() || depth > 32) return;
  for (const auto& [kind, to] : edges->second) PrintTree(g, to, kind, depth + 1, seen);
}

void PrintLineage(const Json& graph) {
  Graph g;
  std::string root = JsonStr(graph, "root");
  for (const Json& n : graph.value("nodes", Json::array())) {
    const std::string id = JsonStr(n, "id");
    g.nodes[id] = n;
    if (root.empty() && JsonStr(n, "type") == "model_version") root = id;
  }
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> in;
  for (const Json& e : graph.value("edges", Json::array())) {
    g.out[JsonStr(e, "from")].push_back({JsonStr(e, "kind"), JsonStr(e, "to")});
    in[JsonStr(e, "to")].push_back({JsonStr(e, "kind"), JsonStr(e, "from")});
  }
  if (root.empty()) {
    std::printf("(empty lineage)\n");
    return;
  }
  if (graph.value("truncated", false)) std::printf("(the graph was cut short: it is deeper than shown)\n");
  // The chain reads from the version back to its sources, whichever way the
  // graph's edges point.
  if (g.out.find(root) == g.out.end()) g.out = std::move(in);
  std::set<std::string> seen;
  PrintTree(g, root, "", 0, seen);
}

// ------------------------------------------------------------ deployments

void PrintDeployments(const std::vector<Json>& deployments) {
  Table table({"NAME", "MODEL", "ALIAS", "CANARY", "SHADOW", "GENERATION", "UPDATED"});
  for (const Json& d : deployments) {
    const Json canary = d.value("canary", Json());
    const Json shadow = d.value("shadow", Json());
    table.AddRow({JsonStr(d, "name"), JsonStr(d, "model"), JsonStr(d, "alias"),
                  canary.is_object() ? fmt::format("v{} {}%", JsonInt(canary, "version"), JsonInt(canary, "percent"))
                                     : "-",
                  shadow.is_object() ? fmt::format("v{}", JsonInt(shadow, "version")) : "-",
                  JsonStr(d, "generation"), FormatTime(JsonInt(d, "updated_time"))});
  }
  std::printf("%s", table.Render().c_str());
  if (deployments.empty()) std::printf("(no deployments)\n");
}

// "VERSION:PCT" of --canary.
absl::StatusOr<std::pair<int64_t, int64_t>> ParseCanary(const std::string& text) {
  size_t colon = text.find(':');
  std::string v = text.substr(0, colon), p = colon == std::string::npos ? "" : text.substr(colon + 1);
  if (!p.empty() && p.back() == '%') p.pop_back();
  if (!AllDigits(v) || !AllDigits(p)) {
    return absl::InvalidArgumentError(fmt::format("--canary wants VERSION:PERCENT (e.g. 4:10), not '{}'", text));
  }
  return std::pair<int64_t, int64_t>{std::stoll(v), std::stoll(p)};
}

}  // namespace

absl::StatusOr<ModelRef> ResolveModelRef(Transport& t, const std::string& text) {
  size_t at = text.rfind('@');
  if (at == std::string::npos || at == 0 || at + 1 == text.size()) {
    return absl::InvalidArgumentError(fmt::format("expected NAME@ALIAS or NAME@VERSION, not '{}'", text));
  }
  ModelRef ref{.name = text.substr(0, at)};
  const std::string rest = text.substr(at + 1);
  if (AllDigits(rest)) {
    ref.version = std::stoll(rest);
    return ref;
  }
  ref.alias = rest;
  ASSIGN_OR_RETURN(Json r, t.Get(std::string(kMlflow) + "registered-models/alias?name=" + http::UrlEncode(ref.name) +
                                 "&alias=" + http::UrlEncode(ref.alias)));
  ref.version = JsonInt(r["model_version"], "version");
  return ref;
}

void AddModelCommands(CLI::App& app, GlobalOptions& g, int& exit_code) {
  auto with_transport = [&g, &exit_code](const std::function<absl::Status(Transport&)>& fn) {
    WithTransport(g, exit_code, fn);
  };
  // Option values live as long as the App (callbacks run during parse).
  struct State {
    std::string name, alias, ref, run_id, path = "model", reason, at, file, comment, filter;
    std::string deploy_name, canary;
    int64_t version = 0, shadow = 0, max_batch_size = 0, max_queue_delay_us = 0, instances = 0;
  };
  auto st = std::make_shared<State>();

  auto* models = app.add_subcommand("models", "The model registry: models, versions, aliases, gates, lineage");
  models->require_subcommand(1);

  // ------------------------------------------------------------------ list
  auto* list = models->add_subcommand("list", "List registered models with their aliases and latest version");
  list->add_option("-f,--filter", st->filter, "MLflow filter, e.g. \"name LIKE 'churn%'\"");
  list->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      ASSIGN_OR_RETURN(auto all, AllModels(t, st->filter));
      if (g.json) {
        PrintJson(all);
        return absl::OkStatus();
      }
      Table table({"NAME", "LATEST", "ALIASES", "UPDATED", "DESCRIPTION"});
      for (const Json& m : all) {
        int64_t latest = 0;
        for (const Json& v : m.value("latest_versions", Json::array())) latest = std::max(latest, JsonInt(v, "version"));
        std::vector<std::string> aliases;
        for (const Json& a : m.value("aliases", Json::array())) {
          aliases.push_back(JsonStr(a, "alias") + "=v" + JsonStr(a, "version"));
        }
        table.AddRow({JsonStr(m, "name"), latest > 0 ? fmt::format("v{}", latest) : "-",
                      aliases.empty() ? "-" : fmt::format("{}", fmt::join(aliases, " ")),
                      FormatTime(JsonInt(m, "last_updated_timestamp")), OrDash(JsonStr(m, "description"))});
      }
      std::printf("%s", table.Render().c_str());
      if (all.empty()) std::printf("(no registered models)\n");
      return absl::OkStatus();
    });
  });

  // ------------------------------------------------------------------ show
  auto* show = models->add_subcommand("show", "Show a model: description, tags, aliases, policy, versions");
  show->add_option("NAME", st->name, "registered model")->required();
  show->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      ASSIGN_OR_RETURN(Json r, t.Get(std::string(kMlflow) + "registered-models/get?name=" + http::UrlEncode(st->name)));
      ASSIGN_OR_RETURN(Json policy, t.Get(ModelPath(st->name) + "/policy"));
      ASSIGN_OR_RETURN(auto versions, AllVersions(t, st->name));
      if (g.json) {
        PrintJson({{"registered_model", r["registered_model"]}, {"policy", policy["policy"]}, {"versions", versions}});
        return absl::OkStatus();
      }
      const Json& m = r["registered_model"];
      std::printf("model        %s\n", JsonStr(m, "name").c_str());
      std::printf("description  %s\n", OrDash(JsonStr(m, "description")).c_str());
      std::printf("created      %s\n", FormatTime(JsonInt(m, "creation_timestamp")).c_str());
      std::printf("updated      %s\n", FormatTime(JsonInt(m, "last_updated_timestamp")).c_str());
      std::printf("versions     %zu\n", versions.size());
      for (const Json& a : m.value("aliases", Json::array())) {
        std::printf("alias        %s -> v%s\n", JsonStr(a, "alias").c_str(), JsonStr(a, "version").c_str());
      }
      for (const Json& tag : m.value("tags", Json::array())) {
        std::printf("tag          %s = %s\n", JsonStr(tag, "key").c_str(), JsonStr(tag, "value").c_str());
      }
      std::printf("policy       %s\n", policy["policy"].is_object() ? policy["policy"].dump().c_str() : "none");
      return absl::OkStatus();
    });
  });

  // -------------------------------------------------------------- versions
  auto* versions = models->add_subcommand("versions", "List a model's versions, newest first");
  versions->add_option("NAME", st->name, "registered model")->required();
  versions->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      ASSIGN_OR_RETURN(Json model, t.Get(std::string(kMlflow) + "registered-models/get?name=" +
                                         http::UrlEncode(st->name)));  // an unknown model is an error, not "none"
      ASSIGN_OR_RETURN(auto all, AllVersions(t, st->name));
      if (g.json) {
        PrintJson(all);
        return absl::OkStatus();
      }
      Table table({"VERSION", "ALIASES", "STAGE", "RUN", "CREATED", "USER", "SOURCE"});
      for (const Json& v : all) {
        table.AddRow({"v" + JsonStr(v, "version"), Aliases(v), JsonStr(v, "current_stage"), OrDash(JsonStr(v, "run_id")),
                      FormatTime(JsonInt(v, "creation_timestamp")), OrDash(JsonStr(v, "user_id")),
                      JsonStr(v, "source")});
      }
      std::printf("%s", table.Render().c_str());
      if (all.empty()) std::printf("(no versions)\n");
      return absl::OkStatus();
    });
  });

  // -------------------------------------------------------------- register
  auto* reg = models->add_subcommand(
      "register", "Register a run's model folder as a new version (creating the model if it does not exist)");
  reg->add_option("NAME", st->name, "registered model")->required();
  reg->add_option("--run", st->run_id, "the run that logged the model")->required();
  reg->add_option("--path", st->path, "the model folder inside the run's artifacts")->capture_default_str();
  reg->add_option("--description", st->comment, "the version's description");
  reg->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      absl::StatusOr<Json> created = t.Post(std::string(kMlflow) + "registered-models/create", {{"name", st->name}});
      if (!created.ok() && !absl::IsAlreadyExists(created.status())) return created.status();
      Json body = {{"name", st->name}, {"source", "runs:/" + st->run_id + "/" + st->path}, {"run_id", st->run_id}};
      if (!st->comment.empty()) body["description"] = st->comment;
      ASSIGN_OR_RETURN(Json r, t.Post(std::string(kMlflow) + "model-versions/create", body));
      const Json& v = r["model_version"];
      if (g.json) {
        PrintJson(v);
        return absl::OkStatus();
      }
      ASSIGN_OR_RETURN(Json files, t.Get(ModelPath(st->name) + "/versions/" + JsonStr(v, "version") + "/files"));
      std::printf("registered %s version %s from run %s (%zu files, artifact sha256:%s)\n", st->name.c_str(),
                  JsonStr(v, "version").c_str(), st->run_id.c_str(), files.value("files", Json::array()).size(),
                  JsonStr(files, "artifact_digest").c_str());
      return absl::OkStatus();
    });
  });

  // --------------------------------------------------------------- lineage
  auto* lineage = models->add_subcommand(
      "lineage", "Print where a version came from: run -> code, environment, params -> datasets (recursively)");
  lineage->add_option("REF", st->ref, "NAME@ALIAS or NAME@VERSION")->required();
  lineage->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      ASSIGN_OR_RETURN(ModelRef ref, ResolveModelRef(t, st->ref));
      ASSIGN_OR_RETURN(Json graph, t.Get(ModelPath(ref.name) + "/versions/" + std::to_string(ref.version) + "/lineage"));
      if (g.json) {
        PrintJson(graph);
        return absl::OkStatus();
      }
      if (!ref.alias.empty()) std::printf("%s@%s is version %lld\n", ref.name.c_str(), ref.alias.c_str(),
                                          static_cast<long long>(ref.version));
      PrintLineage(graph);
      return absl::OkStatus();
    });
  });

  // ----------------------------------------------------------------- alias
  auto* alias = models->add_subcommand("alias", "Move aliases (through the promotion gate) and read their history");
  alias->require_subcommand(1);
  auto* alias_set = alias->add_subcommand(
      "set", "Point ALIAS at VERSION if the model's promotion policy allows it; prints every gate condition\n"
             "(exit 1 when the gate refuses)");
  alias_set->add_option("NAME", st->name, "registered model")->required();
  alias_set->add_option("ALIAS", st->alias, "alias, e.g. production")->required();
  alias_set->add_option("VERSION", st->version, "version number")->required();
  alias_set->add_option("--reason", st->reason, "why (kept in the alias history)");
  alias_set->callback([=, &g, &exit_code] {
    with_transport([&](Transport& t) -> absl::Status {
      const std::string base = ModelPath(st->name) + "/aliases/" + http::UrlEncode(st->alias);
      absl::StatusOr<Json> r = t.Post(base, {{"version", st->version}, {"reason", st->reason}});
      if (absl::IsFailedPrecondition(r.status())) {
        // Refused: the body's decision does not survive the Transport's
        // error mapping, but the gate recorded it; show it from there.
        ASSIGN_OR_RETURN(Json d, t.Get(ModelPath(st->name) + "/decisions?limit=1&alias=" + http::UrlEncode(st->alias)));
        const Json decisions = d.value("decisions", Json::array());
        // Not the gate's refusal (the alias moved under us, say): say what happened.
        if (decisions.empty() || decisions[0].value("allowed", false)) return r.status();
        if (g.json) {
          PrintJson(decisions.empty() ? Json::object() : decisions[0]);
        } else {
          std::printf("refused: %s@%s stays where it was; version %lld does not pass the gate:\n", st->name.c_str(),
                      st->alias.c_str(), static_cast<long long>(st->version));
          if (!decisions.empty()) PrintConditions(decisions[0]);
          std::fprintf(stderr, "cairn: error: %s\n", std::string(r.status().message()).c_str());
        }
        exit_code = 1;
        return absl::OkStatus();
      }
      RETURN_IF_ERROR(r.status());
      if (g.json) {
        PrintJson(*r);
        return absl::OkStatus();
      }
      const Json& decision = (*r)["decision"];
      std::printf("%s@%s -> version %lld\n", st->name.c_str(), st->alias.c_str(), static_cast<long long>(st->version));
      PrintConditions(decision);
      return absl::OkStatus();
    });
  });
  auto* alias_history = alias->add_subcommand(
      "history", "Every move of an alias, newest first (who, when, from, to, why); --at: the version at a time");
  alias_history->add_option("NAME", st->name, "registered model")->required();
  alias_history->add_option("ALIAS", st->alias, "alias")->required();
  alias_history->add_option("--at", st->at, "a time: unix milliseconds or ISO-8601 (2026-03-03, 2026-03-03T12:00:00Z)");
  alias_history->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      std::string target = ModelPath(st->name) + "/aliases/" + http::UrlEncode(st->alias) + "/history";
      if (!st->at.empty()) target += "?at=" + http::UrlEncode(st->at);
      ASSIGN_OR_RETURN(Json r, t.Get(target));
      if (g.json) {
        PrintJson(r);
        return absl::OkStatus();
      }
      if (!st->at.empty()) {
        if (r["version"].is_null()) {
          std::printf("%s@%s pointed at no version at %s\n", st->name.c_str(), st->alias.c_str(),
                      FormatTime(JsonInt(r, "at")).c_str());
        } else {
          std::printf("%s@%s was version %lld at %s\n", st->name.c_str(), st->alias.c_str(),
                      static_cast<long long>(JsonInt(r, "version")), FormatTime(JsonInt(r, "at")).c_str());
        }
        return absl::OkStatus();
      }
      Table table({"WHEN", "FROM", "TO", "USER", "REASON", "DECISION"});
      const Json history = r.value("history", Json::array());
      for (const Json& h : history) {
        auto v = [&](const char* k) { return h[k].is_null() ? std::string("-") : "v" + JsonStr(h, k); };
        table.AddRow({FormatTime(JsonInt(h, "time_ms")), v("from_version"), v("to_version"), JsonStr(h, "user"),
                      OrDash(JsonStr(h, "reason")), h["decision_id"].is_null() ? "-" : JsonStr(h, "decision_id")});
      }
      std::printf("%s", table.Render().c_str());
      if (history.empty()) std::printf("(alias '%s' was never set)\n", st->alias.c_str());
      return absl::OkStatus();
    });
  });

  // ---------------------------------------------------------------- policy
  auto* policy = models->add_subcommand("policy", "A model's promotion policy (docs/api-registry.md)");
  policy->require_subcommand(1);
  auto* policy_set = policy->add_subcommand("set", "Set the policy from a YAML (or JSON) file");
  policy_set->add_option("NAME", st->name, "registered model")->required();
  policy_set->add_option("FILE", st->file, "policy file")->required();
  policy_set->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      ASSIGN_OR_RETURN(std::string text, ReadFile(st->file));
      ASSIGN_OR_RETURN(Json r, t.Post(ModelPath(st->name) + "/policy", {{"yaml", text}}));
      if (g.json) {
        PrintJson(r);
      } else {
        std::printf("policy of %s set:\n%s\n", st->name.c_str(), r["policy"].dump(2).c_str());
      }
      return absl::OkStatus();
    });
  });
  auto* policy_show = policy->add_subcommand("show", "Print the policy");
  policy_show->add_option("NAME", st->name, "registered model")->required();
  policy_show->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      ASSIGN_OR_RETURN(Json r, t.Get(ModelPath(st->name) + "/policy"));
      if (g.json) {
        PrintJson(r);
      } else if (r["policy"].is_null()) {
        std::printf("%s has no promotion policy: every alias move is allowed\n", st->name.c_str());
      } else {
        std::printf("%s\n", r["policy"].dump(2).c_str());
      }
      return absl::OkStatus();
    });
  });

  // --------------------------------------------------------------- approve
  auto* approve = models->add_subcommand("approve", "Approve a version for an alias (counts for policies asking for approvals)");
  approve->add_option("NAME", st->name, "registered model")->required();
  approve->add_option("VERSION", st->version, "version number")->required();
  approve->add_option("--alias", st->alias, "the alias the approval is for")->required();
  approve->add_option("--comment", st->comment, "a note kept with the approval");
  approve->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      ASSIGN_OR_RETURN(Json r, t.Post(ModelPath(st->name) + "/versions/" + std::to_string(st->version) + "/approvals",
                                      {{"alias", st->alias}, {"comment", st->comment}}));
      if (g.json) {
        PrintJson(r);
      } else {
        std::printf("%s approved %s version %lld for '%s'\n", JsonStr(r["approval"], "user").c_str(), st->name.c_str(),
                    static_cast<long long>(st->version), st->alias.c_str());
      }
      return absl::OkStatus();
    });
  });

  // ---------------------------------------------------------------- deploy
  auto* deploy = app.add_subcommand(
      "deploy", "Serve NAME@ALIAS: the inference plane follows the alias (hot swap when it moves)");
  deploy->add_option("REF", st->ref, "NAME@ALIAS")->required();
  deploy->add_option("--name", st->deploy_name, "deployment name, the OIP model name (default: the model's name)");
  deploy->add_option("--canary", st->canary, "VERSION:PCT, send PCT% of requests to VERSION");
  deploy->add_option("--shadow", st->shadow, "VERSION: mirror requests to it (responses recorded, not returned)");
  deploy->add_option("--max-batch-size", st->max_batch_size, "dynamic batching: largest batch");
  deploy->add_option("--max-queue-delay-us", st->max_queue_delay_us, "dynamic batching: longest wait for a batch");
  deploy->add_option("--instances", st->instances, "model instances (parallel backends)");
  deploy->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      size_t at = st->ref.rfind('@');
      if (at == std::string::npos || at == 0 || AllDigits(st->ref.substr(at + 1))) {
        return absl::InvalidArgumentError(
            fmt::format("deploy wants NAME@ALIAS (a deployment follows an alias), not '{}'", st->ref));
      }
      const std::string model = st->ref.substr(0, at), alias = st->ref.substr(at + 1);
      const std::string name = st->deploy_name.empty() ? model : st->deploy_name;
      Json body = {{"model", model}, {"alias", alias}};
      if (!st->canary.empty()) {
        ASSIGN_OR_RETURN(auto canary, ParseCanary(st->canary));
        body["canary"] = {{"version", canary.first}, {"percent", canary.second}};
      }
      if (st->shadow > 0) body["shadow"] = {{"version", st->shadow}};
      Json config = Json::object();
      if (st->max_batch_size > 0) config["max_batch_size"] = st->max_batch_size;
      if (st->max_queue_delay_us > 0) config["max_queue_delay_us"] = st->max_queue_delay_us;
      if (st->instances > 0) config["instances"] = st->instances;
      body["config"] = config;
      ASSIGN_OR_RETURN(Json r, t.Post(std::string(kDeployments) + "/" + http::UrlEncode(name), body));
      if (g.json) {
        PrintJson(r);
        return absl::OkStatus();
      }
      const Json& d = r["deployment"];
      std::printf("deployment %s serves %s@%s (generation %s)\n", JsonStr(d, "name").c_str(), model.c_str(),
                  alias.c_str(), JsonStr(d, "generation").c_str());
      return absl::OkStatus();
    });
  });

  auto* deployments = app.add_subcommand("deployments", "What the inference planes serve");
  deployments->require_subcommand(1);
  auto* dep_list = deployments->add_subcommand("list", "List deployments");
  dep_list->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      ASSIGN_OR_RETURN(Json r, t.Get(kDeployments));
      const Json all = r.value("deployments", Json::array());
      if (g.json) {
        PrintJson(all);
      } else {
        PrintDeployments(std::vector<Json>(all.begin(), all.end()));
      }
      return absl::OkStatus();
    });
  });
  auto* dep_show = deployments->add_subcommand("show", "Show one deployment with its configuration");
  dep_show->add_option("NAME", st->name, "deployment")->required();
  dep_show->callback([=] {
    with_transport([&](Transport& t) -> absl::Status {
      ASSIGN_OR_RETURN(Json r, t.Get(std::string(kDeployments) + "/" + http::UrlEncode(st->name)));
      PrintJson(r["deployment"]);
      return absl::OkStatus();
    });
  });
  auto* dep_delete = deployments->add_subcommand("delete", "Stop serving a deployment");
  dep_delete->add_option("NAME", st->name, "deployment")->required();
  dep_delete->callback([=, &g] {
    with_transport([&](Transport& t) -> absl::Status {
      RETURN_IF_ERROR(t.Delete(std::string(kDeployments) + "/" + http::UrlEncode(st->name)).status());
      if (!g.json) std::printf("deleted deployment %s\n", st->name.c_str());
      return absl::OkStatus();
    });
  });
}

}  // namespace cairn::cli
