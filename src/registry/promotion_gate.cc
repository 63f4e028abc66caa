#include "registry/promotion_gate.h"

#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <set>
#include <utility>

#include "registry/registry_store.h"

namespace cairn::registry {
namespace {

// Policies are a few lines; these bound what hostile text can cost (YAML
// aliases can make a small document expand exponentially).
constexpr size_t kMaxPolicyText = 64 * 1024;
constexpr int kMaxYamlNodes = 10000;
constexpr int kMaxYamlDepth = 32;

// Where each value of a YAML policy was written, by dotted path, so that
// errors found while reading the JSON form can name the line.
using LineMap = std::map<std::string, int>;

absl::Status PolicyError(const LineMap* lines, const std::string& path, std::string_view what) {
  std::string where;
  if (lines != nullptr) {
    auto it = lines->find(path);
    if (it != lines->end()) where = fmt::format(" (line {})", it->second);
  }
  return absl::InvalidArgumentError(
      fmt::format("promotion policy: {}: {}{}", path.empty() ? "(top level)" : path, what, where));
}

std::string Join(const std::string& path, const std::string& key) { return path.empty() ? key : path + "." + key; }

// A plain YAML scalar read as JSON's types would be (YAML 1.2 core schema,
// roughly); quoted scalars stay strings.
Json ScalarToJson(const YAML::Node& node) {
  const std::string& s = node.Scalar();
  if (node.Tag() == "!") return s;
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  int64_t i = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), i);
  if (ec == std::errc() && p == s.data() + s.size()) return i;
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (end == s.c_str() + s.size() && std::isfinite(d)) return d;
  return s;
}

absl::StatusOr<Json> YamlToJson(const YAML::Node& node, const std::string& path, int depth, int& budget,
                                LineMap& lines) {
  if (--budget < 0) return absl::InvalidArgumentError("promotion policy: document too large");
  if (depth > kMaxYamlDepth) return PolicyError(nullptr, path, "nested too deeply");
  lines.emplace(path, node.Mark().line + 1);
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null: return Json(nullptr);
    case YAML::NodeType::Scalar: return ScalarToJson(node);
    case YAML::NodeType::Sequence: {
      Json out = Json::array();
      int i = 0;
      for (const YAML::Node& item : node) {
        ASSIGN_OR_RETURN(Json v, YamlToJson(item, fmt::format("{}[{}]", path, i++), depth + 1, budget, lines));
        out.push_back(std::move(v));
      }
      return out;
    }
    case YAML::NodeType::Map: {
      Json out = Json::object();
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) return PolicyError(&lines, path, "map keys must be plain strings");
        std::string key = kv.first.Scalar();
        if (out.contains(key)) return PolicyError(&lines, Join(path, key), "duplicate key");
        ASSIGN_OR_RETURN(Json v, YamlToJson(kv.second, Join(path, key), depth + 1, budget, lines));
        out[key] = std::move(v);
      }
      return out;
    }
  }
  return Json(nullptr);
}

absl::Status CheckKeys(const Json& obj, const std::string& path, std::initializer_list<std::string_view> allowed,
                       const LineMap* lines) {
  if (!obj.is_object()) return PolicyError(lines, path, "must be a map");
  for (const auto& [key, value] : obj.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string names;
      for (std::string_view a : allowed) names += (names.empty() ? "" : ", ") + std::string(a);
      return PolicyError(lines, Join(path, key), fmt::format("unknown key; expected one of: {}", names));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadString(const Json& obj, const std::string& path, const std::string& key,
                                       const LineMap* lines) {
  std::string p = Join(path, key);
  if (!obj.contains(key) || obj[key].is_null()) return PolicyError(lines, p, "is required");
  if (!obj[key].is_string() || obj[key].get_ref<const std::string&>().empty()) {
    return PolicyError(lines, p, "must be a non-empty string");
  }
  const std::string& s = obj[key].get_ref<const std::string&>();
  if (s.size() > 256 || s.find('\0') != std::string::npos) return PolicyError(lines, p, "is not a valid name");
  return s;
}

absl::StatusOr<std::optional<double>> ReadNumber(const Json& obj, const std::string& path, const std::string& key,
                                                 const LineMap* lines) {
  if (!obj.contains(key) || obj[key].is_null()) return std::nullopt;
  if (!obj[key].is_number()) return PolicyError(lines, Join(path, key), "must be a number");
  double v = obj[key].get<double>();
  if (!std::isfinite(v)) return PolicyError(lines, Join(path, key), "must be finite");
  return v;
}

absl::StatusOr<MetricRule> ReadMetricRule(const std::string& metric, const Json& obj, const std::string& path,
                                          const LineMap* lines) {
  RETURN_IF_ERROR(CheckKeys(obj, path, {"min", "max", "max_regression", "higher_is_better"}, lines));
  MetricRule rule;
  rule.metric = metric;
  ASSIGN_OR_RETURN(rule.min, ReadNumber(obj, path, "min", lines));
  ASSIGN_OR_RETURN(rule.max, ReadNumber(obj, path, "max", lines));
  ASSIGN_OR_RETURN(rule.max_regression, ReadNumber(obj, path, "max_regression", lines));
  if (obj.contains("higher_is_better") && !obj["higher_is_better"].is_null()) {
    if (!obj["higher_is_better"].is_boolean()) {
      return PolicyError(lines, Join(path, "higher_is_better"), "must be true or false");
    }
    rule.higher_is_better = obj["higher_is_better"].get<bool>();
  }
  if (rule.max_regression && *rule.max_regression < 0) {
    return PolicyError(lines, Join(path, "max_regression"), "must be >= 0");
  }
  if (rule.min && rule.max && *rule.min > *rule.max) return PolicyError(lines, path, "min is greater than max");
  if (!rule.min && !rule.max && !rule.max_regression) {
    return PolicyError(lines, path, "needs at least one of min, max, max_regression");
  }
  return rule;
}

absl::StatusOr<PromotionPolicy> ReadPolicy(const Json& json, const LineMap* lines) {
  RETURN_IF_ERROR(CheckKeys(json, "", {"aliases", "evaluation", "approvals"}, lines));
  PromotionPolicy policy;
  if (json.contains("aliases") && !json["aliases"].is_null()) {
    const Json& aliases = json["aliases"];
    std::vector<Json> items;
    if (aliases.is_string()) items.push_back(aliases);
    else if (aliases.is_array()) items.assign(aliases.begin(), aliases.end());
    else return PolicyError(lines, "aliases", "must be a list of alias names");
    for (size_t i = 0; i < items.size(); ++i) {
      std::string p = fmt::format("aliases[{}]", i);
      if (!items[i].is_string()) return PolicyError(lines, p, "must be a string");
      std::string alias = items[i].get<std::string>();
      absl::Status valid = ValidateAlias(alias);
      if (!valid.ok()) return PolicyError(lines, p, std::string(valid.message()));
      if (std::find(policy.aliases.begin(), policy.aliases.end(), alias) == policy.aliases.end()) {
        policy.aliases.push_back(std::move(alias));
      }
    }
  }
  if (json.contains("evaluation") && !json["evaluation"].is_null()) {
    const Json& e = json["evaluation"];
    RETURN_IF_ERROR(CheckKeys(e, "evaluation", {"dataset", "split", "metrics"}, lines));
    EvaluationRule rule;
    ASSIGN_OR_RETURN(rule.dataset, ReadString(e, "evaluation", "dataset", lines));
    ASSIGN_OR_RETURN(rule.split, ReadString(e, "evaluation", "split", lines));
    if (e.contains("metrics") && !e["metrics"].is_null()) {
      if (!e["metrics"].is_object()) return PolicyError(lines, "evaluation.metrics", "must be a map of metric rules");
      for (const auto& [name, body] : e["metrics"].items()) {
        std::string p = Join("evaluation.metrics", name);
        if (name.empty() || name.size() > 250) return PolicyError(lines, p, "is not a valid metric name");
        ASSIGN_OR_RETURN(MetricRule m, ReadMetricRule(name, body, p, lines));
        rule.metrics.push_back(std::move(m));
      }
    }
    std::sort(rule.metrics.begin(), rule.metrics.end(),
              [](const MetricRule& a, const MetricRule& b) { return a.metric < b.metric; });
    policy.evaluation = std::move(rule);
  }
  if (json.contains("approvals") && !json["approvals"].is_null()) {
    const Json& a = json["approvals"];
    RETURN_IF_ERROR(CheckKeys(a, "approvals", {"count", "role"}, lines));
    ApprovalRule rule;
    if (a.contains("count") && !a["count"].is_null()) {
      if (!a["count"].is_number_integer()) return PolicyError(lines, "approvals.count", "must be an integer");
      int64_t count = a["count"].get<int64_t>();
      if (count < 1 || count > 100) return PolicyError(lines, "approvals.count", "must be between 1 and 100");
      rule.count = static_cast<int>(count);
    }
    if (a.contains("role") && !a["role"].is_null()) {
      ASSIGN_OR_RETURN(rule.role, ReadString(a, "approvals", "role", lines));
    }
    policy.approvals = std::move(rule);
  }
  return policy;
}

std::string FormatValue(double v) { return fmt::format("{}", v); }

const double* FindMetric(const std::map<std::string, double>& metrics, const std::string& name) {
  auto it = metrics.find(name);
  return it == metrics.end() ? nullptr : &it->second;
}

// Floating-point slack for the regression check, a computed difference:
// 0.92 - 0.91 is 0.010000000000000009, which must still pass
// `max_regression: 0.01`. Absolute thresholds compare exactly.
bool AtMost(double value, double bound) { return value <= bound + 1e-9 * std::max(1.0, std::fabs(bound)); }

}  // namespace

bool PromotionPolicy::Guards(const std::string& alias) const {
  return aliases.empty() || std::find(aliases.begin(), aliases.end(), alias) != aliases.end();
}

absl::StatusOr<PromotionPolicy> ParsePromotionPolicy(std::string_view text) {
  if (text.size() > kMaxPolicyText) {
    return absl::InvalidArgumentError(
        fmt::format("promotion policy: {} bytes; the limit is {}", text.size(), kMaxPolicyText));
  }
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && text[first] == '{') {
    ASSIGN_OR_RETURN(Json json, ParseJson(text));
    return ReadPolicy(json, nullptr);
  }
  if (text.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError("promotion policy: NUL byte in text");
  }
  LineMap lines;
  Json json;
  // yaml-cpp throws; nothing of it escapes this block.
  try {
    YAML::Node root = YAML::Load(std::string(text));
    if (!root.IsDefined() || root.IsNull()) return absl::InvalidArgumentError("promotion policy: empty document");
    int budget = kMaxYamlNodes;
    ASSIGN_OR_RETURN(json, YamlToJson(root, "", 0, budget, lines));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        fmt::format("promotion policy: YAML error at line {}, column {}: {}", e.mark.line + 1, e.mark.column + 1,
                    e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(fmt::format("promotion policy: {}", e.what()));
  }
  return ReadPolicy(json, &lines);
}

absl::StatusOr<PromotionPolicy> PromotionPolicyFromJson(const Json& json) { return ReadPolicy(json, nullptr); }

Json PromotionPolicyToJson(const PromotionPolicy& policy) {
  Json out = Json::object();
  if (!policy.aliases.empty()) out["aliases"] = policy.aliases;
  if (policy.evaluation) {
    Json metrics = Json::object();
    for (const MetricRule& m : policy.evaluation->metrics) {
      Json rule = Json::object();
      if (m.min) rule["min"] = *m.min;
      if (m.max) rule["max"] = *m.max;
      if (m.max_regression) rule["max_regression"] = *m.max_regression;
      rule["higher_is_better"] = m.higher_is_better;
      metrics[m.metric] = std::move(rule);
    }
    out["evaluation"] = {{"dataset", policy.evaluation->dataset},
                         {"split", policy.evaluation->split},
                         {"metrics", std::move(metrics)}};
  }
  if (policy.approvals) {
    Json approvals = {{"count", policy.approvals->count}};
    if (!policy.approvals->role.empty()) approvals["role"] = policy.approvals->role;
    out["approvals"] = std::move(approvals);
  }
  return out;
}

GateDecision EvaluateGate(const PromotionPolicy& policy, const std::string& alias, const GateEvidence& evidence) {
  GateDecision decision;
  if (!policy.Guards(alias)) return decision;
  auto add = [&](std::string name, bool met, std::string detail) {
    decision.conditions.push_back({std::move(name), met, std::move(detail)});
  };

  if (policy.evaluation) {
    const EvaluationRule& rule = *policy.evaluation;
    const std::string split = fmt::format("{}#{}", rule.dataset, rule.split);
    const EvaluationEvidence* eval = evidence.evaluation ? &*evidence.evaluation : nullptr;
    {
      std::string name = "evaluation on sealed split " + split;
      if (eval == nullptr) {
        add(name, false, fmt::format("no evaluation run of {} version {} read {}", evidence.name, evidence.version,
                                     split));
      } else if (eval->dataset != rule.dataset || eval->split != rule.split) {
        add(name, false, fmt::format("run {} evaluated {}#{}, not {}", eval->run_id, eval->dataset, eval->split,
                                     split));
      } else if (!eval->split_sealed) {
        add(name, false, fmt::format("run {} read {}@{}, where split {} is not sealed", eval->run_id,
                                     eval->dataset, eval->commit_id, eval->split));
      } else {
        add(name, true, fmt::format("run {} read {}@{}#{}", eval->run_id, eval->dataset, eval->commit_id,
                                    eval->split));
      }
    }
    for (const MetricRule& m : rule.metrics) {
      const double* value = eval != nullptr ? FindMetric(eval->metrics, m.metric) : nullptr;
      std::string missing = eval == nullptr ? std::string("no evaluation run")
                                            : fmt::format("run {} logged no metric {}", eval->run_id, m.metric);
      if (m.min) {
        std::string name = fmt::format("metric {} >= {}", m.metric, FormatValue(*m.min));
        if (value == nullptr) add(name, false, missing);
        else add(name, *value >= *m.min, fmt::format("{} = {}", m.metric, FormatValue(*value)));
      }
      if (m.max) {
        std::string name = fmt::format("metric {} <= {}", m.metric, FormatValue(*m.max));
        if (value == nullptr) add(name, false, missing);
        else add(name, *value <= *m.max, fmt::format("{} = {}", m.metric, FormatValue(*value)));
      }
      if (m.max_regression && evidence.current) {
        const CurrentEvidence& current = *evidence.current;
        std::string name = fmt::format("metric {} regression <= {} vs version {}", m.metric,
                                       FormatValue(*m.max_regression), current.version);
        const double* baseline = current.metrics ? FindMetric(*current.metrics, m.metric) : nullptr;
        if (value == nullptr) {
          add(name, false, missing);
        } else if (baseline == nullptr) {
          add(name, true, fmt::format("version {} has no evaluated {}; nothing to compare with", current.version,
                                      m.metric));
        } else {
          double regression = m.higher_is_better ? *baseline - *value : *value - *baseline;
          add(name, AtMost(regression, *m.max_regression),
              fmt::format("{} = {} vs {} (regression {})", m.metric, FormatValue(*value), FormatValue(*baseline),
                          FormatValue(std::max(regression, 0.0))));
        }
      }
    }
    {
      std::string name = "lineage excludes sealed split " + split;
      if (evidence.contamination.empty()) {
        add(name, true, "no training input read it");
      } else {
        std::string detail;
        for (const std::string& c : evidence.contamination) detail += (detail.empty() ? "" : "; ") + c;
        add(name, false, std::move(detail));
      }
    }
  }

  if (policy.approvals) {
    const ApprovalRule& rule = *policy.approvals;
    std::string name = rule.role.empty() ? fmt::format("approvals {}", rule.count)
                                         : fmt::format("approvals {} by role {}", rule.count, rule.role);
    std::set<std::string> counted, lacking;
    for (const ApproverEvidence& a : evidence.approvals) {
      bool has_role = rule.role.empty() ||
                      std::find(a.roles.begin(), a.roles.end(), rule.role) != a.roles.end();
      (has_role ? counted : lacking).insert(a.user);
    }
    for (const std::string& u : counted) lacking.erase(u);
    std::string detail = fmt::format("{} of {}", counted.size(), rule.count);
    if (!counted.empty()) detail += fmt::format(": {}", fmt::join(counted, ", "));
    if (!lacking.empty()) detail += fmt::format(" (without role {}: {})", rule.role, fmt::join(lacking, ", "));
    add(name, static_cast<int>(counted.size()) >= rule.count, std::move(detail));
  }

  for (const GateCondition& c : decision.conditions) decision.allowed = decision.allowed && c.met;
  return decision;
}

Json GateDecisionToJson(const GateDecision& decision) {
  Json conditions = Json::array();
  for (const GateCondition& c : decision.conditions) {
    conditions.push_back({{"name", c.name}, {"met", c.met}, {"detail", c.detail}});
  }
  return {{"allowed", decision.allowed}, {"conditions", std::move(conditions)}};
}

std::string DescribeUnmet(const GateDecision& decision) {
  std::string out;
  for (const GateCondition& c : decision.conditions) {
    if (c.met) continue;
    if (!out.empty()) out += "; ";
    out += c.detail.empty() ? c.name : fmt::format("{} ({})", c.name, c.detail);
  }
  return out;
}

}  // namespace cairn::registry
