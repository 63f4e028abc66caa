// Promotion gates: a per-model policy saying what a version needs before an
// alias such as `production` may point at it, and EvaluateGate, the pure
// function that checks collected evidence against it. No database here: the
// API layer gathers GateEvidence (evaluation runs, lineage, approvals),
// calls EvaluateGate and records the GateDecision in the RegistryStore.
//
// Policy text (YAML, or JSON, which is read the same way):
//
//   aliases: [production]        # aliases the policy guards (absent: all)
//   evaluation:
//     dataset: tumours           # the evaluation run must have read this dataset's
//     split: test                # split, sealed in the commit it read
//     metrics:
//       accuracy: {min: 0.90, max_regression: 0.01}   # higher is better (default)
//       log_loss: {max: 0.35, higher_is_better: false, max_regression: 0.0}
//   approvals: {count: 1, role: reviewer}
//
// `max_regression` compares with the evaluation of the version the alias
// points to now: the candidate may be worse by at most that much (absolute
// difference, in the metric's "worse" direction).
//
// Conditions, in this order (names are stable; tests and the CLI show them):
//   "evaluation on sealed split D#S"          an evaluation run of D's split S exists and S was sealed
//   "metric M >= X" / "metric M <= X"         absolute thresholds (min / max)
//   "metric M regression <= R vs version N"   only when the alias points at a version N now
//   "lineage excludes sealed split D#S"       no contamination reported
//   "approvals N by role R"                   N distinct approving users holding role R
// A refusal lists every unmet condition. An alias the policy does not guard
// is allowed with no conditions.
//
// Thread-safety: plain values and stateless functions.
//
// Usage:
//   ASSIGN_OR_RETURN(PromotionPolicy policy, ParsePromotionPolicy(yaml_text));
//   GateDecision d = EvaluateGate(policy, "production", evidence);
//   if (!d.allowed) return absl::FailedPreconditionError(DescribeUnmet(d));
#ifndef CAIRN_REGISTRY_PROMOTION_GATE_H_
#define CAIRN_REGISTRY_PROMOTION_GATE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "base/status.h"

namespace cairn::registry {

struct MetricRule {
  std::string metric;
  std::optional<double> min;             // candidate value must be >= min
  std::optional<double> max;             // candidate value must be <= max
  std::optional<double> max_regression;  // >= 0; vs the version the alias points at now
  bool higher_is_better = true;          // direction for max_regression
};

struct EvaluationRule {
  std::string dataset;
  std::string split;
  std::vector<MetricRule> metrics;  // ordered by metric name
};

struct ApprovalRule {
  int count = 1;  // >= 1
  std::string role;  // "" means any user's approval counts
};

struct PromotionPolicy {
  std::vector<std::string> aliases;  // empty: guards every alias
  std::optional<EvaluationRule> evaluation;
  std::optional<ApprovalRule> approvals;

  // Whether moving `alias` is subject to this policy.
  bool Guards(const std::string& alias) const;
};

// Parses a policy from YAML or JSON text. kInvalidArgument naming the field
// (and the line, for YAML) on bad input: unknown keys, wrong types, negative
// max_regression, min > max, count < 1, a rule with no bound, etc.
absl::StatusOr<PromotionPolicy> ParsePromotionPolicy(std::string_view text);
// The same from parsed JSON (the API's request body).
absl::StatusOr<PromotionPolicy> PromotionPolicyFromJson(const Json& json);
// Inverse of PromotionPolicyFromJson; the storage and API form.
Json PromotionPolicyToJson(const PromotionPolicy& policy);

// The evaluation run found for the candidate.
struct EvaluationEvidence {
  std::string run_id;
  std::string dataset;
  std::string split;
  std::string commit_id;  // the dataset commit the run read
  bool split_sealed = false;
  std::map<std::string, double> metrics;
};

// The version the alias points at now.
struct CurrentEvidence {
  int64_t version = 0;
  std::optional<std::map<std::string, double>> metrics;  // its evaluation, if one was found
};

struct ApproverEvidence {
  std::string user;
  std::vector<std::string> roles;  // the user's roles now
};

struct GateEvidence {
  std::string name;  // candidate model
  int64_t version = 0;
  std::optional<EvaluationEvidence> evaluation;
  std::optional<CurrentEvidence> current;
  // Each a human description of where the candidate's training lineage read
  // the sealed split (e.g. "run 4f2a read tumours@c81e#test").
  std::vector<std::string> contamination;
  std::vector<ApproverEvidence> approvals;
};

struct GateCondition {
  std::string name;
  bool met = false;
  std::string detail;  // the actual value, or why not met
};

struct GateDecision {
  bool allowed = true;
  std::vector<GateCondition> conditions;
};

// Checks `evidence` for moving `alias` against `policy`. Never fails: missing
// evidence makes the conditions that need it unmet.
//
// Missing baseline: when the alias points at a version whose evaluation (or
// metric) is unknown, the regression condition is met with a detail saying
// there was nothing to compare with — a gate cannot demand evidence about a
// version promoted before the policy existed. No current version (first
// promotion): no regression condition at all.
GateDecision EvaluateGate(const PromotionPolicy& policy, const std::string& alias, const GateEvidence& evidence);

// {"allowed": bool, "conditions": [{"name", "met", "detail"}, ...]}.
Json GateDecisionToJson(const GateDecision& decision);
// One line listing the unmet conditions with their details ("" if none),
// for error messages: "metric accuracy >= 0.9 (0.85); approvals 1 by role reviewer (0 of 1)".
std::string DescribeUnmet(const GateDecision& decision);

}  // namespace cairn::registry

#endif  // CAIRN_REGISTRY_PROMOTION_GATE_H_
