#include "tracking/search_filter.h"
#include "tracking/schema.h"

#include <sqlite3.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn::tracking {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// ---------------------------------------------------------------------------
// Parsing.

FilterClause ParseOne(std::string_view filter) {
  auto parsed = ParseRunFilter(filter);
  EXPECT_TRUE(parsed.ok()) << filter << ": " << parsed.status();
  if (!parsed.ok() || parsed->clauses.size() != 1) {
    ADD_FAILURE() << "expected one clause for " << filter;
    return {};
  }
  return parsed->clauses[0];
}

TEST(ParseRunFilterTest, EmptyAndBlankFiltersHaveNoClauses) {
  for (std::string_view f : {"", "   ", "\t\n "}) {
    auto parsed = ParseRunFilter(f);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_THAT(parsed->clauses, IsEmpty());
  }
}

TEST(ParseRunFilterTest, MetricComparisons) {
  struct Case {
    std::string_view filter;
    Comparator comparator;
    double value;
  };
  for (const Case& c : std::vector<Case>{
           {"metrics.acc > 0.5", Comparator::kGt, 0.5},
           {"metrics.acc>=1", Comparator::kGe, 1.0},
           {"metric.acc < -2.5", Comparator::kLt, -2.5},
           {"metrics.acc <= 1e3", Comparator::kLe, 1000.0},
           {"metrics.acc = .25", Comparator::kEq, 0.25},
           {"metrics.acc != 2.5E-1", Comparator::kNe, 0.25},
           {"metrics.acc = +7", Comparator::kEq, 7.0},
           {"metrics.acc=-1.", Comparator::kEq, -1.0},
       }) {
    FilterClause clause = ParseOne(c.filter);
    EXPECT_EQ(clause.entity, EntityType::kMetric) << c.filter;
    EXPECT_EQ(clause.key, "acc") << c.filter;
    EXPECT_EQ(clause.comparator, c.comparator) << c.filter;
    ASSERT_TRUE(std::holds_alternative<double>(clause.value)) << c.filter;
    EXPECT_DOUBLE_EQ(std::get<double>(clause.value), c.value) << c.filter;
  }
}

TEST(ParseRunFilterTest, EntityAliases) {
  EXPECT_EQ(ParseOne("metric.a > 1").entity, EntityType::kMetric);
  for (std::string_view f : {"params.a = 'x'", "param.a = 'x'", "parameter.a = 'x'", "parameters.a = 'x'"}) {
    EXPECT_EQ(ParseOne(f).entity, EntityType::kParam) << f;
  }
  EXPECT_EQ(ParseOne("tag.a = 'x'").entity, EntityType::kTag);
  EXPECT_EQ(ParseOne("tags.a = 'x'").entity, EntityType::kTag);
  for (std::string_view f : {"attributes.status = 'x'", "attribute.status = 'x'", "attr.status = 'x'",
                             "run.status = 'x'", "status = 'x'", "`attributes`.status = 'x'"}) {
    FilterClause c = ParseOne(f);
    EXPECT_EQ(c.entity, EntityType::kAttribute) << f;
    EXPECT_EQ(c.key, "status") << f;
  }
  EXPECT_EQ(ParseOne("datasets.name = 'x'").entity, EntityType::kDataset);
  EXPECT_EQ(ParseOne("dataset.digest = 'x'").entity, EntityType::kDataset);
}

TEST(ParseRunFilterTest, QuotedAndDottedKeys) {
  EXPECT_EQ(ParseOne("metrics.`my key` > 1").key, "my key");
  EXPECT_EQ(ParseOne("metrics.\"my key\" > 1").key, "my key");
  EXPECT_EQ(ParseOne("params.`a-b.c d` = 'x'").key, "a-b.c d");
  EXPECT_EQ(ParseOne("tags.mlflow.runName = 'x'").key, "mlflow.runName");
  EXPECT_EQ(ParseOne("tags.`we``ird` = 'x'").key, "we`ird");
  EXPECT_EQ(ParseOne("tags.\"say \"\"hi\"\"\" = 'x'").key, "say \"hi\"");
  EXPECT_EQ(ParseOne("metrics.0 > 1").key, "0");
  EXPECT_EQ(ParseOne("params.température = 'x'").key, "température");
}

TEST(ParseRunFilterTest, StringValues) {
  EXPECT_EQ(std::get<std::string>(ParseOne("params.a = 'x y'").value), "x y");
  EXPECT_EQ(std::get<std::string>(ParseOne("params.a = \"x y\"").value), "x y");
  EXPECT_EQ(std::get<std::string>(ParseOne("params.a = ''").value), "");
  EXPECT_EQ(std::get<std::string>(ParseOne("params.a = 'it''s'").value), "it's");
  EXPECT_EQ(std::get<std::string>(ParseOne("params.a = 'AND b = 1'").value), "AND b = 1");
  EXPECT_EQ(std::get<std::string>(ParseOne("tags.a != '\"'").value), "\"");
  EXPECT_EQ(std::get<std::string>(ParseOne("tags.a LIKE '%x_'").value), "%x_");
}

TEST(ParseRunFilterTest, KeywordsAreCaseInsensitive) {
  auto parsed = ParseRunFilter(
      "params.a like 'x' and tags.b ILike 'y' AND run_id in ('a') And run_id NoT   In ('b') AnD "
      "datasets.name Not In ('c')");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->clauses.size(), 5u);
  EXPECT_EQ(parsed->clauses[0].comparator, Comparator::kLike);
  EXPECT_EQ(parsed->clauses[1].comparator, Comparator::kILike);
  EXPECT_EQ(parsed->clauses[2].comparator, Comparator::kIn);
  EXPECT_EQ(parsed->clauses[3].comparator, Comparator::kNotIn);
  EXPECT_EQ(parsed->clauses[4].comparator, Comparator::kNotIn);
}

TEST(ParseRunFilterTest, Attributes) {
  FilterClause c = ParseOne("attributes.start_time >= 1700000000000");
  EXPECT_EQ(c.key, "start_time");
  EXPECT_EQ(std::get<int64_t>(c.value), 1700000000000);
  c = ParseOne("created < 5");  // alias
  EXPECT_EQ(c.key, "start_time");
  EXPECT_EQ(std::get<int64_t>(c.value), 5);
  c = ParseOne("end_time > 1.5");
  EXPECT_EQ(std::get<double>(c.value), 1.5);
  c = ParseOne("attributes.`Run name` = 'x'");
  EXPECT_EQ(c.key, "run_name");
  c = ParseOne("run_name ILIKE '%x%'");
  EXPECT_EQ(c.key, "run_name");
  c = ParseOne("attributes.run_id IN ('a', \"b\",'c' )");
  EXPECT_EQ(c.key, "run_id");
  EXPECT_THAT(std::get<std::vector<std::string>>(c.value), ElementsAre("a", "b", "c"));
  c = ParseOne("run_id IN ('only')");
  EXPECT_THAT(std::get<std::vector<std::string>>(c.value), ElementsAre("only"));
  for (std::string_view f : {"user_id = 'u'", "artifact_uri LIKE 's3://%'", "status != 'FAILED'"}) {
    EXPECT_EQ(ParseOne(f).entity, EntityType::kAttribute) << f;
  }
}

TEST(ParseRunFilterTest, ManyClauses) {
  auto parsed = ParseRunFilter(
      "  metrics.acc > 0.9 AND params.lr = '0.01'\nAND tags.`team name` ILIKE '%vision%' AND "
      "attributes.status = 'FINISHED'  ");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->clauses.size(), 4u);
  EXPECT_EQ(parsed->clauses[2].key, "team name");
  EXPECT_EQ(parsed->clauses[3].key, "status");
}

void ExpectInvalid(std::string_view filter, std::string_view message_part = "") {
  auto parsed = ParseRunFilter(filter);
  ASSERT_FALSE(parsed.ok()) << "accepted: " << filter;
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << filter;
  if (!message_part.empty()) {
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(std::string(message_part))) << filter;
  }
}

TEST(ParseRunFilterTest, RejectsMalformedInput) {
  ExpectInvalid("params.a = 'x", "Unclosed quote");
  ExpectInvalid("params.`a = 'x'", "Unclosed quote");
  ExpectInvalid("params.a = ", "missing value");
  ExpectInvalid("params.a", "expected a comparator");
  ExpectInvalid("params.a 'x'", "expected a comparator");
  ExpectInvalid("metrics.a == 1", "Invalid comparator '=='");
  ExpectInvalid("metrics.a <> 1", "Invalid comparator '<>'");
  ExpectInvalid("params.a NOT LIKE 'x'", "NOT IN");
  ExpectInvalid("metrics.a > 1 OR metrics.b > 2", "OR is not supported");
  ExpectInvalid("metrics.a > 1 or metrics.b > 2", "OR is not supported");
  ExpectInvalid("metrics.a > 1 AND", "after AND");
  ExpectInvalid("metrics.a > 1 AND AND metrics.b > 1");
  ExpectInvalid("AND metrics.a > 1");
  ExpectInvalid("metrics.a > 1 metrics.b > 2", "expected AND");
  ExpectInvalid("metrics.a > 1 garbage", "expected AND");
  ExpectInvalid("metrics.a > 1;", "Invalid clause");
  ExpectInvalid("metrics.a > 1 AND (metrics.b > 2)", "Invalid clause");
  ExpectInvalid("(metrics.a > 1)", "Invalid clause");
  ExpectInvalid("metrics.a > 1abc", "Invalid numeric value");
  ExpectInvalid("metrics.a > 1.2.3", "Invalid numeric value");
  ExpectInvalid("metrics.a > 1e", "Invalid numeric value");
  ExpectInvalid("metrics.a > -", "Invalid numeric value");
  ExpectInvalid("metrics.a > 1e999", "out of range");
  ExpectInvalid("metrics. > 1", "expected a key");
  ExpectInvalid("metrics.`` > 1", "empty key");
  ExpectInvalid("metrics.a > 1 AND params.b = 'x' OR tags.c = 'y'", "OR");
  ExpectInvalid("params.a = 'x' AND\x01 tags.b = 'y'");
  ExpectInvalid(std::string_view("params.a = 'x\0y'", 16), "NUL");
  ExpectInvalid("params.a = '\xff'", "UTF-8");
  ExpectInvalid("params.a = '\xc0\xaf'", "UTF-8");  // overlong
}

TEST(ParseRunFilterTest, RejectsTypeAndVocabularyErrors) {
  ExpectInvalid("metrics.a LIKE 'x'", "Invalid comparator 'LIKE'");
  ExpectInvalid("metrics.a IN ('x')", "Invalid comparator 'IN'");
  ExpectInvalid("metrics.a = 'x'", "Expected numeric value");
  ExpectInvalid("metrics.a = \"1\"", "Expected numeric value");
  ExpectInvalid("params.a = 1", "Expected a quoted string value");
  ExpectInvalid("params.a > 'x'", "Invalid comparator '>'");
  ExpectInvalid("params.a IN ('x')", "Invalid comparator 'IN'");
  ExpectInvalid("tags.a = abc", "not quoted");
  ExpectInvalid("tags.a = `abc`", "not quoted");
  ExpectInvalid("attributes.nope = 'x'", "Invalid attribute key 'nope'");
  ExpectInvalid("acc > 1", "Invalid attribute key 'acc'");
  ExpectInvalid("lifecycle_stage = 'active'", "Invalid attribute key");
  ExpectInvalid("experiment_id = '1'", "Invalid attribute key");
  ExpectInvalid("foo.bar = 'x'", "Invalid entity type 'foo'");
  ExpectInvalid("Metrics.a > 1", "Invalid entity type 'Metrics'");
  ExpectInvalid("datasets.source = 'x'", "Invalid dataset key");
  ExpectInvalid("start_time = 'x'", "Expected numeric value");
  ExpectInvalid("start_time LIKE '1%'", "Invalid comparator 'LIKE'");
  ExpectInvalid("status > 'A'", "Invalid comparator '>'");
  ExpectInvalid("status IN ('A')", "Invalid comparator 'IN'");
  ExpectInvalid("run_id IN ()", "empty list");
  ExpectInvalid("run_id IN ( )", "empty list");
  ExpectInvalid("run_id IN ('a',)", "expected a quoted string");
  ExpectInvalid("run_id IN ('a' 'b')", "expected ',' or ')'");
  ExpectInvalid("run_id IN ('a', 1)", "expected a quoted string");
  ExpectInvalid("run_id IN ('a'", "expected ',' or ')'");
  ExpectInvalid("run_id IN 'a'", "Expected a list");
  ExpectInvalid("run_id = ('a')", "only supported with IN");
  ExpectInvalid("datasets.name IN 'a'", "Expected a list");
}

TEST(ParseRunFilterTest, ErrorsCarryThePosition) {
  auto parsed = ParseRunFilter("metrics.a > 1 AND params.b > 'x'");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("position 27"));
}

// ---------------------------------------------------------------------------
// Compilation to SQL.

SqlFragment RunWhere(std::string_view filter, SqlDialect dialect = SqlDialect::kSqlite) {
  auto parsed = ParseRunFilter(filter);
  EXPECT_TRUE(parsed.ok()) << filter << ": " << parsed.status();
  if (!parsed.ok()) return {};
  auto sql = RunFilterToSql(*parsed, dialect);
  EXPECT_TRUE(sql.ok()) << sql.status();
  return sql.ok() ? *sql : SqlFragment{};
}

std::vector<std::string> Strings(const SqlFragment& f) {
  std::vector<std::string> out;
  for (const auto& p : f.params) {
    if (const auto* s = std::get_if<std::string>(&p)) {
      out.push_back(*s);
    } else if (const auto* i = std::get_if<int64_t>(&p)) {
      out.push_back("i:" + std::to_string(*i));
    } else {
      out.push_back("d:" + std::to_string(std::get<double>(p)));
    }
  }
  return out;
}

TEST(RunFilterToSqlTest, EmptyFilterIsTrue) {
  SqlFragment f = RunWhere("");
  EXPECT_EQ(f.sql, "1 = 1");
  EXPECT_THAT(f.params, IsEmpty());
}

TEST(RunFilterToSqlTest, ExactSql) {
  SqlFragment f = RunWhere("metrics.acc > 0.5 AND params.lr = '0.1' AND status = 'FINISHED'");
  EXPECT_EQ(f.sql,
            "EXISTS (SELECT 1 FROM latest_metrics m0 WHERE m0.run_uuid = runs.run_uuid AND m0.key = ? AND "
            "m0.value > ?) AND runs.run_uuid IN (SELECT p1.run_uuid FROM params p1 WHERE p1.key = ? AND "
            "p1.value = ?) AND runs.status = ?");
  EXPECT_TRUE(f.has_driver);  // the param equality drives
  ASSERT_EQ(f.params.size(), 5u);
  EXPECT_EQ(std::get<std::string>(f.params[0]), "acc");
  EXPECT_EQ(std::get<double>(f.params[1]), 0.5);
  EXPECT_THAT(Strings(f), ElementsAre("acc", "d:0.500000", "lr", "0.1", "FINISHED"));

  f = RunWhere("metrics.loss != 1");
  EXPECT_EQ(f.sql,
            "EXISTS (SELECT 1 FROM latest_metrics m0 WHERE m0.run_uuid = runs.run_uuid AND m0.key = ? AND "
            "(m0.value <> ? OR m0.is_nan <> 0))");
  EXPECT_FALSE(f.has_driver);  // != matches most runs: nothing to drive with

  f = RunWhere("tags.t ILIKE 'A%b' AND run_id NOT IN ('x', 'y')");
  EXPECT_EQ(f.sql,
            "runs.run_uuid IN (SELECT t0.run_uuid FROM tags t0 WHERE t0.key = ? AND lower(t0.value) GLOB ?) AND "
            "runs.run_uuid NOT IN (?, ?)");
  EXPECT_THAT(Strings(f), ElementsAre("t", "a*b", "x", "y"));

  f = RunWhere("tags.t ILIKE 'A%b' AND run_id NOT IN ('x', 'y')", SqlDialect::kPostgres);
  EXPECT_EQ(f.sql,
            "runs.run_uuid IN (SELECT t0.run_uuid FROM tags t0 WHERE t0.key = ? AND t0.value ILIKE ?) AND "
            "runs.run_uuid NOT IN (?, ?)");
  EXPECT_THAT(Strings(f), ElementsAre("t", "A%b", "x", "y"));

  f = RunWhere("datasets.name IN ('a') AND datasets.context = 'train'");
  EXPECT_EQ(f.sql,
            "EXISTS (SELECT 1 FROM run_inputs i0 JOIN datasets d0 ON d0.dataset_uuid = i0.dataset_uuid WHERE "
            "i0.run_uuid = runs.run_uuid AND d0.name IN (?)) AND EXISTS (SELECT 1 FROM run_inputs i1 WHERE "
            "i1.run_uuid = runs.run_uuid AND i1.context = ?)");
}

TEST(RunFilterToSqlTest, ColumnsAndParams) {
  struct Case {
    std::string_view filter;
    std::string_view sql_part;
    std::vector<std::string> params;
  };
  for (const Case& c : std::vector<Case>{
           {"run_name = 'x'", "runs.name = ?", {"x"}},
           {"attributes.run_id = 'abc'", "runs.run_uuid = ?", {"abc"}},
           {"user_id != 'u'", "runs.user_id <> ?", {"u"}},
           {"artifact_uri LIKE 's3://b/%'", "runs.artifact_uri GLOB ?", {"s3://b/*"}},
           {"created >= 10", "runs.start_time >= ?", {"i:10"}},
           {"end_time < 2.5", "runs.end_time < ?", {"d:2.500000"}},
           {"datasets.digest = 'd'", "d0.digest = ?", {"d"}},
           {"params.`a b` LIKE 'x\\_y\\%z\\\\'", "p0.value GLOB ?", {"a b", "x_y%z\\"}},
           {"params.a LIKE '*?[_%'", "p0.value GLOB ?", {"a", "[*][?][[]?*"}},
           {"params.a ILIKE 'ÀB_c'", "lower(p0.value) GLOB ?", {"a", "Àb?c"}},
           {"metrics.m = -3", "m0.value = ?", {"m", "d:-3.000000"}},
       }) {
    SqlFragment f = RunWhere(c.filter);
    EXPECT_THAT(f.sql, HasSubstr(std::string(c.sql_part))) << c.filter;
    EXPECT_EQ(Strings(f), c.params) << c.filter;
  }
}

TEST(RunFilterToSqlTest, PostgresLikePatterns) {
  SqlFragment f =
      RunWhere("params.a LIKE 'x\\_y%' AND params.b LIKE '50\\\\' AND params.c LIKE 'tail\\'", SqlDialect::kPostgres);
  EXPECT_THAT(f.sql, HasSubstr("p0.value LIKE ?"));
  EXPECT_THAT(Strings(f), ElementsAre("a", "x\\_y%", "b", "50\\\\", "c", "tail\\\\"));
}

TEST(RunFilterToSqlTest, RejectsInvalidHandBuiltFilters) {
  RunFilter bad;
  bad.clauses.push_back({EntityType::kMetric, "a", Comparator::kLike, std::string("x")});
  EXPECT_EQ(RunFilterToSql(bad, SqlDialect::kSqlite).status().code(), absl::StatusCode::kInvalidArgument);
  bad.clauses = {{EntityType::kAttribute, "run_id", Comparator::kIn, std::vector<std::string>{}}};
  EXPECT_EQ(RunFilterToSql(bad, SqlDialect::kSqlite).status().code(), absl::StatusCode::kInvalidArgument);
  bad.clauses = {{EntityType::kAttribute, "nope", Comparator::kEq, std::string("x")}};
  EXPECT_EQ(RunFilterToSql(bad, SqlDialect::kSqlite).status().code(), absl::StatusCode::kInvalidArgument);
  bad.clauses = {{EntityType::kParam, "p", Comparator::kEq, int64_t{1}}};
  EXPECT_EQ(RunFilterToSql(bad, SqlDialect::kSqlite).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// order_by.

TEST(RunOrderByTest, ParsesEntries) {
  auto c = ParseRunOrderBy("metrics.acc DESC");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->entity, EntityType::kMetric);
  EXPECT_EQ(c->key, "acc");
  EXPECT_FALSE(c->ascending);
  c = ParseRunOrderBy("  params.`my key`   asc ");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->key, "my key");
  EXPECT_TRUE(c->ascending);
  c = ParseRunOrderBy("created");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->entity, EntityType::kAttribute);
  EXPECT_EQ(c->key, "start_time");
  c = ParseRunOrderBy("attributes.run_name Desc");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->key, "run_name");
  c = ParseRunOrderBy("tags.\"a.b\"");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->entity, EntityType::kTag);
  EXPECT_EQ(c->key, "a.b");
}

TEST(RunOrderByTest, RejectsBadEntries) {
  for (std::string_view o :
       {"", "  ", "metrics.acc DESC extra", "metrics.acc UP", "metrics.acc,", "nope", "datasets.name", "foo.bar",
        "metrics.", "metrics.`x", "`Run name`", "metrics.acc DESC;", "lifecycle_stage"}) {
    auto c = ParseRunOrderBy(o);
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << "'" << o << "'";
  }
  EXPECT_THAT(std::string(ParseRunOrderBy("metrics.a UP").status().message()), HasSubstr("Invalid ordering key"));
}

TEST(RunOrderByTest, DefaultOrder) {
  auto f = RunOrderByToSql({}, SqlDialect::kSqlite);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->sql, "CASE WHEN runs.start_time IS NULL THEN 1 ELSE 0 END, runs.start_time DESC, runs.run_uuid ASC");
  EXPECT_THAT(f->params, IsEmpty());
  f = RunOrderByToSql({}, SqlDialect::kPostgres);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->sql,
            "CASE WHEN runs.start_time IS NULL THEN 1 ELSE 0 END, runs.start_time DESC, runs.run_uuid COLLATE \"C\" "
            "ASC");
}

TEST(RunOrderByTest, ExactSql) {
  auto f = RunOrderByToSql({"metrics.acc DESC", "params.lr"}, SqlDialect::kSqlite);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->sql,
            "COALESCE((SELECT CASE WHEN o0.is_nan <> 0 THEN 1 WHEN o0.value IS NULL THEN 2 ELSE 0 END FROM "
            "latest_metrics o0 WHERE o0.run_uuid = runs.run_uuid AND o0.key = ?), 2), (SELECT o0.value FROM "
            "latest_metrics o0 WHERE o0.run_uuid = runs.run_uuid AND o0.key = ?) DESC, CASE WHEN EXISTS (SELECT 1 "
            "FROM params o1 WHERE o1.run_uuid = runs.run_uuid AND o1.key = ?) THEN 0 ELSE 1 END, (SELECT o1.value "
            "FROM params o1 WHERE o1.run_uuid = runs.run_uuid AND o1.key = ?) ASC, CASE WHEN runs.start_time IS "
            "NULL THEN 1 ELSE 0 END, runs.start_time DESC, runs.run_uuid ASC");
  EXPECT_THAT(Strings(*f), ElementsAre("acc", "acc", "lr", "lr"));

  f = RunOrderByToSql({"start_time ASC", "run_id DESC"}, SqlDialect::kSqlite);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->sql, "CASE WHEN runs.start_time IS NULL THEN 1 ELSE 0 END, runs.start_time ASC, runs.run_uuid DESC");

  f = RunOrderByToSql({"status"}, SqlDialect::kPostgres);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->sql,
            "runs.status COLLATE \"C\" ASC, CASE WHEN runs.start_time IS NULL THEN 1 ELSE 0 END, runs.start_time "
            "DESC, runs.run_uuid COLLATE \"C\" ASC");
}

TEST(RunOrderByTest, RejectsDuplicatesAndBadEntries) {
  auto f = RunOrderByToSql({"metrics.a", "metrics.a DESC"}, SqlDialect::kSqlite);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("duplicate"));
  f = RunOrderByToSql({"created", "start_time"}, SqlDialect::kSqlite);  // alias of the same field
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(RunOrderByToSql({"metrics.a", "params.a", "tags.a"}, SqlDialect::kSqlite).ok());
  EXPECT_EQ(RunOrderByToSql({"metrics.a", "bogus"}, SqlDialect::kSqlite).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// Experiments.

TEST(ExperimentFilterTest, ParsesAndCompiles) {
  auto parsed = ParseExperimentFilter(
      "name LIKE 'churn%' AND attribute.creation_time > 100 AND tags.owner = 'ana' AND "
      "attributes.last_update_time <= 5");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->clauses.size(), 4u);
  auto sql = ExperimentFilterToSql(*parsed, SqlDialect::kPostgres);
  ASSERT_TRUE(sql.ok()) << sql.status();
  EXPECT_EQ(sql->sql,
            "experiments.name LIKE ? AND experiments.creation_time > ? AND experiments.experiment_id IN (SELECT "
            "t2.experiment_id FROM experiment_tags t2 WHERE t2.key = ? AND t2.value = ?) AND "
            "experiments.last_update_time <= ?");
  EXPECT_THAT(Strings(*sql), ElementsAre("churn%", "i:100", "owner", "ana", "i:5"));
  auto empty = ParseExperimentFilter(" ");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(ExperimentFilterToSql(*empty, SqlDialect::kSqlite)->sql, "1 = 1");
}

TEST(ExperimentFilterTest, RejectsInvalid) {
  for (std::string_view f :
       {"metrics.a > 1", "params.a = 'x'", "datasets.name = 'x'", "run.name = 'x'", "experiment_id = '1'",
        "name IN ('a')", "name > 'a'", "creation_time = 'x'", "creation_time LIKE 'x'", "tags.a > 'x'",
        "name = 'a' OR name = 'b'", "lifecycle_stage = 'active'", "name = 1", "status = 'x'"}) {
    auto parsed = ParseExperimentFilter(f);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << f;
  }
}

TEST(ExperimentOrderByTest, DefaultsAndTieBreaker) {
  auto f = ExperimentOrderByToSql({}, SqlDialect::kSqlite);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->sql, "experiments.creation_time DESC, experiments.experiment_id ASC");
  f = ExperimentOrderByToSql({"name ASC", "last_update_time DESC"}, SqlDialect::kPostgres);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->sql,
            "experiments.name COLLATE \"C\" ASC, experiments.last_update_time DESC, experiments.experiment_id DESC");
  f = ExperimentOrderByToSql({"attribute.experiment_id"}, SqlDialect::kSqlite);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->sql, "experiments.experiment_id ASC");
  for (auto bad : std::vector<std::vector<std::string>>{
           {"tags.a"}, {"metrics.a"}, {"status"}, {"name", "name DESC"}, {"name sideways"}}) {
    EXPECT_EQ(ExperimentOrderByToSql(bad, SqlDialect::kSqlite).status().code(), absl::StatusCode::kInvalidArgument)
        << bad[0];
  }
}

// ---------------------------------------------------------------------------
// End to end on SQLite: the compiled SQL against the real schema.

// The schema is the real one (tracking/schema.h).

// Four runs: r1 (start 1000), r2 (2000), r3 (3000), r4 (no start time).
constexpr const char kData[] = R"sql(
INSERT INTO experiments VALUES (1, 'Default', 'a', 'active', 100, 100);
INSERT INTO experiments VALUES (2, 'churn', 'a', 'active', 300, 300);
INSERT INTO experiments VALUES (3, 'Churn-2', 'a', 'active', 200, 900);
INSERT INTO experiment_tags VALUES (2, 'owner', 'ana');
INSERT INTO runs VALUES ('r1', 1, 'Alpha', 'ana', 'FINISHED', 1000, 2000, 'active', 's3://b/r1', NULL);
INSERT INTO runs VALUES ('r2', 1, 'beta', 'bob', 'FAILED', 2000, NULL, 'active', 's3://b/r2', NULL);
INSERT INTO runs VALUES ('r3', 1, 'Gamma run', 'ana', 'RUNNING', 3000, NULL, 'active', 'file:///r3', NULL);
INSERT INTO runs VALUES ('r4', 1, 'delta', 'cy', 'FINISHED', NULL, NULL, 'active', 'file:///r4', NULL);
INSERT INTO latest_metrics VALUES ('r1', 'acc', 0.9, 0, 0, 0);
INSERT INTO latest_metrics VALUES ('r1', 'loss', 0.1, 0, 0, 0);
INSERT INTO latest_metrics VALUES ('r1', 'my key', 5, 0, 0, 0);
INSERT INTO latest_metrics VALUES ('r2', 'acc', 0.7, 0, 0, 0);
INSERT INTO latest_metrics VALUES ('r2', 'loss', NULL, 1, 0, 0);
INSERT INTO latest_metrics VALUES ('r3', 'acc', 0.95, 0, 0, 0);
INSERT INTO params VALUES ('r1', 'lr', '0.01');
INSERT INTO params VALUES ('r1', 'model', 'ResNet');
INSERT INTO params VALUES ('r2', 'lr', '0.1');
INSERT INTO params VALUES ('r2', 'model', 'resnet');
INSERT INTO params VALUES ('r3', 'model', 'VGG');
INSERT INTO tags VALUES ('r1', 'team', 'Vision');
INSERT INTO tags VALUES ('r2', 'team', 'vision');
INSERT INTO tags VALUES ('r1', 'star', 'a*b');
INSERT INTO tags VALUES ('r2', 'star', 'aXb');
INSERT INTO tags VALUES ('r3', 'my tag', 'x_y%z');
INSERT INTO tags VALUES ('r4', 'my tag', 'xAyBz');
INSERT INTO datasets VALUES ('d1', 1, 'train', 'abc', 'x', 'y', NULL, NULL);
INSERT INTO datasets VALUES ('d2', 1, 'eval', 'def', 'x', 'y', NULL, NULL);
INSERT INTO run_inputs VALUES ('r1', 'd1', 'training', NULL);
INSERT INTO run_inputs VALUES ('r2', 'd2', 'evaluation', NULL);
INSERT INTO run_inputs VALUES ('r3', 'd2', NULL, NULL);
)sql";

class SqliteSearchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(sqlite3_open(":memory:", &db_), SQLITE_OK);
    for (const db::Migration& m : TrackingMigrations()) Exec(std::string(m.sql).c_str());
    Exec(kData);
  }
  void TearDown() override { sqlite3_close(db_); }

  void Exec(const char* sql) {
    char* error = nullptr;
    ASSERT_EQ(sqlite3_exec(db_, sql, nullptr, nullptr, &error), SQLITE_OK) << (error ? error : "");
  }

  // Ids returned by `SELECT <id> FROM <table> WHERE (filter) ORDER BY order`.
  std::vector<std::string> Query(const std::string& id_column, const std::string& table, const SqlFragment& where,
                                 const SqlFragment& order) {
    const std::string sql =
        "SELECT " + id_column + " FROM " + table + " WHERE (" + where.sql + ") ORDER BY " + order.sql;
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
        << sql << ": " << sqlite3_errmsg(db_);
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> guard(stmt, sqlite3_finalize);
    int i = 1;
    for (const auto* params : {&where.params, &order.params}) {
      for (const SqlValue& v : *params) {
        if (const auto* n = std::get_if<int64_t>(&v)) {
          sqlite3_bind_int64(stmt, i, *n);
        } else if (const auto* d = std::get_if<double>(&v)) {
          sqlite3_bind_double(stmt, i, *d);
        } else {
          const auto& s = std::get<std::string>(v);
          sqlite3_bind_text(stmt, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
        }
        ++i;
      }
    }
    std::vector<std::string> ids;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      ids.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)));
    }
    EXPECT_EQ(rc, SQLITE_DONE) << sqlite3_errmsg(db_);
    return ids;
  }

  std::vector<std::string> Runs(std::string_view filter, const std::vector<std::string>& order_by = {}) {
    auto parsed = ParseRunFilter(filter);
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    if (!parsed.ok()) return {"<error>"};
    auto where = RunFilterToSql(*parsed, SqlDialect::kSqlite);
    auto order = RunOrderByToSql(order_by, SqlDialect::kSqlite);
    EXPECT_TRUE(where.ok() && order.ok());
    if (!where.ok() || !order.ok()) return {"<error>"};
    return Query("runs.run_uuid", "runs", *where, *order);
  }

  std::vector<std::string> Experiments(std::string_view filter, const std::vector<std::string>& order_by = {}) {
    auto parsed = ParseExperimentFilter(filter);
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    if (!parsed.ok()) return {"<error>"};
    auto where = ExperimentFilterToSql(*parsed, SqlDialect::kSqlite);
    auto order = ExperimentOrderByToSql(order_by, SqlDialect::kSqlite);
    EXPECT_TRUE(where.ok() && order.ok());
    if (!where.ok() || !order.ok()) return {"<error>"};
    return Query("CAST(experiments.experiment_id AS TEXT)", "experiments", *where, *order);
  }

  sqlite3* db_ = nullptr;
};

TEST_F(SqliteSearchTest, DefaultOrderIsStartTimeDescWithNullsLast) {
  EXPECT_THAT(Runs(""), ElementsAre("r3", "r2", "r1", "r4"));
}

TEST_F(SqliteSearchTest, MetricFilters) {
  EXPECT_THAT(Runs("metrics.acc > 0.8"), ElementsAre("r3", "r1"));
  EXPECT_THAT(Runs("metrics.acc >= 0.7 AND metrics.acc < 0.95"), ElementsAre("r2", "r1"));
  EXPECT_THAT(Runs("metrics.`my key` = 5"), ElementsAre("r1"));
  EXPECT_THAT(Runs("metrics.\"my key\" >= 5"), ElementsAre("r1"));
  EXPECT_THAT(Runs("metrics.acc > -1e9 AND metrics.acc <= 0.9"), ElementsAre("r2", "r1"));
  // NaN satisfies only !=; runs without the metric never match.
  EXPECT_THAT(Runs("metrics.loss != 0.1"), ElementsAre("r2"));
  EXPECT_THAT(Runs("metrics.loss < 1"), ElementsAre("r1"));
  EXPECT_THAT(Runs("metrics.loss >= 0"), ElementsAre("r1"));
  EXPECT_THAT(Runs("metrics.missing != 0"), IsEmpty());
}

TEST_F(SqliteSearchTest, ParamAndTagFilters) {
  EXPECT_THAT(Runs("params.model = 'ResNet'"), ElementsAre("r1"));
  EXPECT_THAT(Runs("params.model != 'ResNet'"), ElementsAre("r3", "r2"));  // r4 lacks the param
  // LIKE is case-sensitive, ILIKE is not.
  EXPECT_THAT(Runs("params.model LIKE 'Res%'"), ElementsAre("r1"));
  EXPECT_THAT(Runs("params.model LIKE 'res%'"), ElementsAre("r2"));
  EXPECT_THAT(Runs("params.model ILIKE 'RES%'"), ElementsAre("r2", "r1"));
  EXPECT_THAT(Runs("params.model ILIKE '%g%'"), ElementsAre("r3"));
  EXPECT_THAT(Runs("tags.team = 'vision'"), ElementsAre("r2"));
  EXPECT_THAT(Runs("tags.team ILIKE 'VISION'"), ElementsAre("r2", "r1"));
  // Wildcards versus GLOB metacharacters.
  EXPECT_THAT(Runs("tags.star LIKE 'a*b'"), ElementsAre("r1"));
  EXPECT_THAT(Runs("tags.star LIKE 'a_b'"), ElementsAre("r2", "r1"));
  EXPECT_THAT(Runs("tags.star ILIKE 'A_B'"), ElementsAre("r2", "r1"));
  EXPECT_THAT(Runs("tags.`my tag` LIKE 'x_y%z'"), ElementsAre("r3", "r4"));
  EXPECT_THAT(Runs("tags.`my tag` LIKE 'x\\_y\\%z'"), ElementsAre("r3"));
  EXPECT_THAT(Runs("tags.\"my tag\" LIKE 'x%'"), ElementsAre("r3", "r4"));
}

TEST_F(SqliteSearchTest, AttributeFilters) {
  EXPECT_THAT(Runs("status = 'FINISHED' AND user_id = 'ana'"), ElementsAre("r1"));
  EXPECT_THAT(Runs("attributes.status != 'FINISHED'"), ElementsAre("r3", "r2"));
  EXPECT_THAT(Runs("attributes.run_id IN ('r1', 'r3', 'zz')"), ElementsAre("r3", "r1"));
  EXPECT_THAT(Runs("run_id NOT IN ('r1')"), ElementsAre("r3", "r2", "r4"));
  EXPECT_THAT(Runs("run_name LIKE '%run'"), ElementsAre("r3"));
  EXPECT_THAT(Runs("run_name LIKE 'alpha'"), IsEmpty());
  EXPECT_THAT(Runs("attributes.run_name ILIKE 'alpha'"), ElementsAre("r1"));
  EXPECT_THAT(Runs("`Run name` = 'beta'"), ElementsAre("r2"));
  EXPECT_THAT(Runs("start_time >= 2000"), ElementsAre("r3", "r2"));
  EXPECT_THAT(Runs("created < 2500"), ElementsAre("r2", "r1"));
  EXPECT_THAT(Runs("end_time > 0"), ElementsAre("r1"));
  EXPECT_THAT(Runs("artifact_uri LIKE 's3://%'"), ElementsAre("r2", "r1"));
}

TEST_F(SqliteSearchTest, DatasetFilters) {
  EXPECT_THAT(Runs("datasets.name = 'train'"), ElementsAre("r1"));
  EXPECT_THAT(Runs("datasets.name IN ('eval', 'x')"), ElementsAre("r3", "r2"));
  EXPECT_THAT(Runs("datasets.digest NOT IN ('abc')"), ElementsAre("r3", "r2"));
  EXPECT_THAT(Runs("datasets.context = 'training'"), ElementsAre("r1"));
  EXPECT_THAT(Runs("datasets.context ILIKE '%ING'"), ElementsAre("r1"));
}

TEST_F(SqliteSearchTest, OrderByMetricsPutsNanThenMissingLast) {
  EXPECT_THAT(Runs("", {"metrics.acc DESC"}), ElementsAre("r3", "r1", "r2", "r4"));
  EXPECT_THAT(Runs("", {"metrics.acc"}), ElementsAre("r2", "r1", "r3", "r4"));
  EXPECT_THAT(Runs("", {"metrics.loss ASC"}), ElementsAre("r1", "r2", "r3", "r4"));
  EXPECT_THAT(Runs("", {"metrics.loss DESC"}), ElementsAre("r1", "r2", "r3", "r4"));
  EXPECT_THAT(Runs("metrics.acc > 0.8", {"metrics.acc ASC"}), ElementsAre("r1", "r3"));
}

TEST_F(SqliteSearchTest, OrderByParamsTagsAndAttributes) {
  EXPECT_THAT(Runs("", {"params.lr DESC"}), ElementsAre("r2", "r1", "r3", "r4"));
  EXPECT_THAT(Runs("", {"params.model"}), ElementsAre("r1", "r3", "r2", "r4"));        // bytewise: R < V < r
  EXPECT_THAT(Runs("", {"tags.`my tag` DESC"}), ElementsAre("r3", "r4", "r2", "r1"));  // bytewise: A < _
  EXPECT_THAT(Runs("", {"end_time ASC"}), ElementsAre("r1", "r3", "r2", "r4"));
  EXPECT_THAT(Runs("", {"run_name"}), ElementsAre("r1", "r3", "r2", "r4"));
  EXPECT_THAT(Runs("", {"start_time ASC"}), ElementsAre("r1", "r2", "r3", "r4"));
  EXPECT_THAT(Runs("", {"attributes.start_time DESC"}), ElementsAre("r3", "r2", "r1", "r4"));
  EXPECT_THAT(Runs("", {"user_id DESC", "run_id DESC"}), ElementsAre("r4", "r2", "r3", "r1"));
  EXPECT_THAT(Runs("", {"status", "metrics.acc DESC"}), ElementsAre("r2", "r1", "r4", "r3"));
}

TEST_F(SqliteSearchTest, Experiments) {
  EXPECT_THAT(Experiments(""), ElementsAre("2", "3", "1"));
  EXPECT_THAT(Experiments("name LIKE 'churn%'"), ElementsAre("2"));
  EXPECT_THAT(Experiments("name ILIKE 'churn%'"), ElementsAre("2", "3"));
  EXPECT_THAT(Experiments("tags.owner = 'ana'"), ElementsAre("2"));
  EXPECT_THAT(Experiments("creation_time > 150", {"name ASC"}), ElementsAre("3", "2"));
  EXPECT_THAT(Experiments("", {"creation_time"}), ElementsAre("1", "3", "2"));
  EXPECT_THAT(Experiments("last_update_time >= 300", {"last_update_time DESC"}), ElementsAre("3", "2"));
  EXPECT_THAT(Experiments("attributes.name != 'Default'", {"experiment_id ASC"}), ElementsAre("2", "3"));
}

}  // namespace
}  // namespace cairn::tracking
