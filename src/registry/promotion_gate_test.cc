#include "registry/promotion_gate.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/testing.h"

namespace cairn::registry {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kPolicyYaml[] = R"(
aliases: [production]
evaluation:
  dataset: tumours
  split: test
  metrics:
    accuracy: {min: 0.90, max_regression: 0.01}
    log_loss: {max: 0.35, higher_is_better: false, max_regression: 0.0}
approvals: {count: 1, role: reviewer}
)";

PromotionPolicy Policy() {
  auto p = ParsePromotionPolicy(kPolicyYaml);
  EXPECT_THAT(p, IsOk());
  return p.ok() ? *p : PromotionPolicy{};
}

// Evidence that meets every condition of kPolicyYaml, with version 3 current.
GateEvidence Passing() {
  GateEvidence e;
  e.name = "tumour-net";
  e.version = 4;
  e.evaluation = EvaluationEvidence{.run_id = "r4",
                                    .dataset = "tumours",
                                    .split = "test",
                                    .commit_id = "c81e",
                                    .split_sealed = true,
                                    .metrics = {{"accuracy", 0.93}, {"log_loss", 0.20}}};
  e.current = CurrentEvidence{.version = 3, .metrics = std::map<std::string, double>{{"accuracy", 0.935},
                                                                                     {"log_loss", 0.25}}};
  e.approvals = {{.user = "rita", .roles = {"reviewer"}}};
  return e;
}

const GateCondition* Find(const GateDecision& d, const std::string& name) {
  for (const GateCondition& c : d.conditions) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::vector<std::string> Unmet(const GateDecision& d) {
  std::vector<std::string> out;
  for (const GateCondition& c : d.conditions) {
    if (!c.met) out.push_back(c.name);
  }
  return out;
}

TEST(PromotionPolicyTest, ParsesYaml) {
  PromotionPolicy p = Policy();
  EXPECT_EQ(p.aliases, std::vector<std::string>{"production"});
  ASSERT_TRUE(p.evaluation.has_value());
  EXPECT_EQ(p.evaluation->dataset, "tumours");
  EXPECT_EQ(p.evaluation->split, "test");
  ASSERT_EQ(p.evaluation->metrics.size(), 2u);
  const MetricRule& acc = p.evaluation->metrics[0];
  EXPECT_EQ(acc.metric, "accuracy");
  EXPECT_EQ(acc.min, 0.90);
  EXPECT_FALSE(acc.max.has_value());
  EXPECT_EQ(acc.max_regression, 0.01);
  EXPECT_TRUE(acc.higher_is_better);
  const MetricRule& loss = p.evaluation->metrics[1];
  EXPECT_EQ(loss.metric, "log_loss");
  EXPECT_EQ(loss.max, 0.35);
  EXPECT_FALSE(loss.higher_is_better);
  EXPECT_EQ(loss.max_regression, 0.0);
  ASSERT_TRUE(p.approvals.has_value());
  EXPECT_EQ(p.approvals->count, 1);
  EXPECT_EQ(p.approvals->role, "reviewer");
}

TEST(PromotionPolicyTest, JsonRoundTrip) {
  PromotionPolicy p = Policy();
  Json json = PromotionPolicyToJson(p);
  auto back = PromotionPolicyFromJson(json);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(PromotionPolicyToJson(*back), json);
  auto from_text = ParsePromotionPolicy(json.dump());
  ASSERT_THAT(from_text, IsOk());
  EXPECT_EQ(PromotionPolicyToJson(*from_text), json);
}

TEST(PromotionPolicyTest, RoleLessApprovalsRoundTrip) {
  auto p = ParsePromotionPolicy("approvals: {count: 2}");
  ASSERT_THAT(p, IsOk());
  auto back = PromotionPolicyFromJson(PromotionPolicyToJson(*p));
  ASSERT_THAT(back, IsOk());
  ASSERT_TRUE(back->approvals.has_value());
  EXPECT_EQ(back->approvals->count, 2);
  EXPECT_EQ(back->approvals->role, "");
  EXPECT_FALSE(back->evaluation.has_value());
  EXPECT_TRUE(back->aliases.empty());
}

TEST(PromotionPolicyTest, QuotedNumbersStayStrings) {
  EXPECT_THAT(ParsePromotionPolicy("evaluation: {dataset: d, split: s, metrics: {acc: {min: '0.9'}}}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("evaluation.metrics.acc.min: must be a number")));
}

TEST(PromotionPolicyTest, ErrorsNameFieldAndLine) {
  EXPECT_THAT(ParsePromotionPolicy("aliases: [production]\nevaluation:\n  dataset: d\n  split: s\n  metrics:\n"
                                   "    acc: {min: 0.9, max_regresion: 0.1}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("evaluation.metrics.acc.max_regresion"), HasSubstr("unknown key"),
                                        HasSubstr("line 6"))));
  EXPECT_THAT(ParsePromotionPolicy("evaluation:\n  split: s\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("evaluation.dataset: is required")));
  EXPECT_THAT(ParsePromotionPolicy("approvals: {count: 0}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("approvals.count")));
  EXPECT_THAT(ParsePromotionPolicy("evaluation: {dataset: d, split: s, metrics: {acc: {max_regression: -1}}}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must be >= 0")));
  EXPECT_THAT(ParsePromotionPolicy("evaluation: {dataset: d, split: s, metrics: {acc: {min: 2, max: 1}}}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("min is greater than max")));
  EXPECT_THAT(ParsePromotionPolicy("evaluation: {dataset: d, split: s, metrics: {acc: {}}}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at least one of")));
  EXPECT_THAT(ParsePromotionPolicy("aliases: [latest]"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParsePromotionPolicy("[1, 2]"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must be a map")));
  EXPECT_THAT(ParsePromotionPolicy("aliases: [a\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("YAML error at line")));
  EXPECT_THAT(ParsePromotionPolicy("{\"aliases\": "), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParsePromotionPolicy(""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParsePromotionPolicy("approvals: {count: 1}\napprovals: {count: 2}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate")));
}

TEST(PromotionPolicyTest, AliasBombIsRefused) {
  std::string text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'h'; ++c) {
    text += fmt::format("{}: &{} [*{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}, *{}]\n", c, c, c - 1, c - 1, c - 1,
                        c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1);
  }
  EXPECT_THAT(ParsePromotionPolicy(text), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(EvaluateGateTest, AllConditionsMet) {
  GateDecision d = EvaluateGate(Policy(), "production", Passing());
  EXPECT_TRUE(d.allowed) << DescribeUnmet(d);
  std::vector<std::string> names;
  for (const GateCondition& c : d.conditions) names.push_back(c.name);
  EXPECT_THAT(names, ::testing::ElementsAre("evaluation on sealed split tumours#test", "metric accuracy >= 0.9",
                                            "metric accuracy regression <= 0.01 vs version 3",
                                            "metric log_loss <= 0.35", "metric log_loss regression <= 0 vs version 3",
                                            "lineage excludes sealed split tumours#test",
                                            "approvals 1 by role reviewer"));
  EXPECT_EQ(DescribeUnmet(d), "");
  Json json = GateDecisionToJson(d);
  EXPECT_EQ(json["allowed"], true);
  EXPECT_EQ(json["conditions"].size(), 7u);
}

TEST(EvaluateGateTest, UnguardedAliasIsAllowedWithoutConditions) {
  GateEvidence e;  // no evidence at all
  GateDecision d = EvaluateGate(Policy(), "staging", e);
  EXPECT_TRUE(d.allowed);
  EXPECT_TRUE(d.conditions.empty());
}

TEST(EvaluateGateTest, PolicyWithoutAliasesGuardsEverything) {
  auto p = ParsePromotionPolicy("approvals: {count: 1}");
  ASSERT_THAT(p, IsOk());
  GateDecision d = EvaluateGate(*p, "staging", GateEvidence{});
  EXPECT_FALSE(d.allowed);
  EXPECT_THAT(Unmet(d), ::testing::ElementsAre("approvals 1"));
}

TEST(EvaluateGateTest, MissingEvaluationFailsEveryEvaluationCondition) {
  GateEvidence e = Passing();
  e.evaluation.reset();
  GateDecision d = EvaluateGate(Policy(), "production", e);
  EXPECT_FALSE(d.allowed);
  EXPECT_THAT(Unmet(d), ::testing::ElementsAre("evaluation on sealed split tumours#test", "metric accuracy >= 0.9",
                                               "metric accuracy regression <= 0.01 vs version 3",
                                               "metric log_loss <= 0.35",
                                               "metric log_loss regression <= 0 vs version 3"));
  EXPECT_THAT(Find(d, "metric accuracy >= 0.9")->detail, HasSubstr("no evaluation run"));
}

TEST(EvaluateGateTest, UnsealedSplit) {
  GateEvidence e = Passing();
  e.evaluation->split_sealed = false;
  GateDecision d = EvaluateGate(Policy(), "production", e);
  EXPECT_FALSE(d.allowed);
  EXPECT_THAT(Unmet(d), ::testing::ElementsAre("evaluation on sealed split tumours#test"));
  EXPECT_THAT(Find(d, "evaluation on sealed split tumours#test")->detail, HasSubstr("not sealed"));
}

TEST(EvaluateGateTest, EvaluationOfAnotherSplit) {
  GateEvidence e = Passing();
  e.evaluation->split = "validation";
  GateDecision d = EvaluateGate(Policy(), "production", e);
  EXPECT_THAT(Unmet(d), ::testing::ElementsAre("evaluation on sealed split tumours#test"));
  EXPECT_THAT(Find(d, "evaluation on sealed split tumours#test")->detail, HasSubstr("tumours#validation"));
}

TEST(EvaluateGateTest, AbsoluteThresholds) {
  GateEvidence e = Passing();
  e.evaluation->metrics["accuracy"] = 0.85;
  e.evaluation->metrics["log_loss"] = 0.40;
  e.current.reset();
  GateDecision d = EvaluateGate(Policy(), "production", e);
  EXPECT_FALSE(d.allowed);
  EXPECT_THAT(Unmet(d), ::testing::ElementsAre("metric accuracy >= 0.9", "metric log_loss <= 0.35"));
  EXPECT_EQ(Find(d, "metric accuracy >= 0.9")->detail, "accuracy = 0.85");
  EXPECT_EQ(DescribeUnmet(d), "metric accuracy >= 0.9 (accuracy = 0.85); metric log_loss <= 0.35 (log_loss = 0.4)");
}

TEST(EvaluateGateTest, ThresholdsAreInclusive) {
  GateEvidence e = Passing();
  e.evaluation->metrics["accuracy"] = 0.90;
  e.evaluation->metrics["log_loss"] = 0.35;
  e.current.reset();
  EXPECT_TRUE(EvaluateGate(Policy(), "production", e).allowed);
}

TEST(EvaluateGateTest, MissingMetric) {
  GateEvidence e = Passing();
  e.evaluation->metrics.erase("log_loss");
  GateDecision d = EvaluateGate(Policy(), "production", e);
  EXPECT_THAT(Unmet(d), ::testing::ElementsAre("metric log_loss <= 0.35",
                                               "metric log_loss regression <= 0 vs version 3"));
  EXPECT_THAT(Find(d, "metric log_loss <= 0.35")->detail, HasSubstr("logged no metric log_loss"));
}

TEST(EvaluateGateTest, NanMetricFails) {
  GateEvidence e = Passing();
  e.evaluation->metrics["accuracy"] = std::nan("");
  GateDecision d = EvaluateGate(Policy(), "production", e);
  EXPECT_FALSE(Find(d, "metric accuracy >= 0.9")->met);
  EXPECT_FALSE(Find(d, "metric accuracy regression <= 0.01 vs version 3")->met);
}

TEST(EvaluateGateTest, RegressionAgainstCurrentVersion) {
  GateEvidence e = Passing();
  // Higher is better: 0.935 -> 0.92 regresses by 0.015 > 0.01.
  e.evaluation->metrics["accuracy"] = 0.92;
  // Lower is better with zero tolerance: 0.25 -> 0.26 regresses.
  e.evaluation->metrics["log_loss"] = 0.26;
  GateDecision d = EvaluateGate(Policy(), "production", e);
  EXPECT_THAT(Unmet(d), ::testing::ElementsAre("metric accuracy regression <= 0.01 vs version 3",
                                               "metric log_loss regression <= 0 vs version 3"));
  EXPECT_THAT(Find(d, "metric accuracy regression <= 0.01 vs version 3")->detail, HasSubstr("vs 0.935"));
}

TEST(EvaluateGateTest, RegressionExactlyAtToleranceIsAllowed) {
  GateEvidence e = Passing();
  e.current->metrics = std::map<std::string, double>{{"accuracy", 0.92}, {"log_loss", 0.20}};
  e.evaluation->metrics["accuracy"] = 0.91;  // 0.92 - 0.91 = 0.010000000000000009 in binary
  GateDecision d = EvaluateGate(Policy(), "production", e);
  EXPECT_TRUE(d.allowed) << DescribeUnmet(d);
}

TEST(EvaluateGateTest, FirstPromotionHasNoRegressionCondition) {
  GateEvidence e = Passing();
  e.current.reset();
  GateDecision d = EvaluateGate(Policy(), "production", e);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.conditions.size(), 5u);
  EXPECT_EQ(Find(d, "metric accuracy regression <= 0.01 vs version 3"), nullptr);
}

TEST(EvaluateGateTest, CurrentVersionWithoutEvaluationIsNoBaseline) {
  GateEvidence e = Passing();
  e.current->metrics.reset();
  GateDecision d = EvaluateGate(Policy(), "production", e);
  EXPECT_TRUE(d.allowed);
  const GateCondition* c = Find(d, "metric accuracy regression <= 0.01 vs version 3");
  ASSERT_NE(c, nullptr);
  EXPECT_THAT(c->detail, HasSubstr("nothing to compare"));
}

TEST(EvaluateGateTest, Contamination) {
  GateEvidence e = Passing();
  e.contamination = {"run r1 read tumours@c81e#test", "run r2 read tumours@d00d#test"};
  GateDecision d = EvaluateGate(Policy(), "production", e);
  EXPECT_FALSE(d.allowed);
  EXPECT_THAT(Unmet(d), ::testing::ElementsAre("lineage excludes sealed split tumours#test"));
  EXPECT_EQ(Find(d, "lineage excludes sealed split tumours#test")->detail,
            "run r1 read tumours@c81e#test; run r2 read tumours@d00d#test");
}

TEST(EvaluateGateTest, ApprovalByWrongRoleDoesNotCount) {
  GateEvidence e = Passing();
  e.approvals = {{.user = "bob", .roles = {"engineer"}}};
  GateDecision d = EvaluateGate(Policy(), "production", e);
  EXPECT_THAT(Unmet(d), ::testing::ElementsAre("approvals 1 by role reviewer"));
  EXPECT_THAT(Find(d, "approvals 1 by role reviewer")->detail, HasSubstr("without role reviewer: bob"));
}

TEST(EvaluateGateTest, TooFewApprovalsAndDuplicatesCountOnce) {
  auto p = ParsePromotionPolicy("approvals: {count: 2, role: reviewer}");
  ASSERT_THAT(p, IsOk());
  GateEvidence e;
  e.approvals = {{.user = "rita", .roles = {"reviewer"}}, {.user = "rita", .roles = {"reviewer"}}};
  GateDecision d = EvaluateGate(*p, "production", e);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.conditions[0].detail, "1 of 2: rita");
  e.approvals.push_back({.user = "sam", .roles = {"admin", "reviewer"}});
  EXPECT_TRUE(EvaluateGate(*p, "production", e).allowed);
}

TEST(EvaluateGateTest, RefusalListsEveryUnmetCondition) {
  GateEvidence e = Passing();
  e.evaluation->split_sealed = false;
  e.evaluation->metrics["accuracy"] = 0.5;
  e.contamination = {"run r1 read tumours@c81e#test"};
  e.approvals.clear();
  GateDecision d = EvaluateGate(Policy(), "production", e);
  EXPECT_FALSE(d.allowed);
  EXPECT_THAT(Unmet(d), ::testing::ElementsAre("evaluation on sealed split tumours#test", "metric accuracy >= 0.9",
                                               "metric accuracy regression <= 0.01 vs version 3",
                                               "lineage excludes sealed split tumours#test",
                                               "approvals 1 by role reviewer"));
}

}  // namespace
}  // namespace cairn::registry
