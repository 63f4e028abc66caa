// MLflow's search grammar for runs and experiments (the `filter` and
// `order_by` fields of runs/search and experiments/search), parsed into a
// small AST and compiled to SQL fragments over Cairn's tracking schema
// (docs: src/tracking/schema.cc). The grammar and its semantics follow
// MLflow's SearchUtils / SearchExperimentsUtils and its SQLAlchemy store:
//
//   filter     := [ comparison { AND comparison } ]        (AND is case-insensitive;
//                                                           OR and parentheses are rejected)
//   comparison := identifier comparator value
//   identifier := [ entity "." ] key
//     entity   := metric(s) | param(s) | parameter(s) | tag(s)
//                 | attribute(s) | attr | run | dataset(s)     (runs)
//              := attribute(s) | tag(s)                        (experiments)
//                 An identifier without entity is an attribute ("status").
//     key      := word { "." word } | `back ticked` | "double quoted"
//                 (quoted keys may hold any character; double the quote to
//                 embed it; word chars are [A-Za-z0-9_$#] and non-ASCII)
//   comparator := = != < <= > >= LIKE ILIKE IN NOT IN   (keywords case-insensitive)
//   value      := 'string' | "string" | number | ( 'a', "b", ... )
//
// Which comparators and values each entity takes (MLflow's rules):
//   metrics.k            = != < <= > >=  with a number; compares the latest
//                        value (latest_metrics). NaN (stored NULL, is_nan=1)
//                        satisfies only `!=`, as in IEEE/Python.
//   params.k, tags.k     = != LIKE ILIKE with a string; the key must exist.
//   attributes           run_id: = != LIKE ILIKE IN NOT IN;
//                        run_name, status, user_id, artifact_uri: = != LIKE ILIKE;
//                        start_time, end_time (alias created): numeric comparators
//                        with a number. Aliases "run name"/"Run name"/"Run Name"
//                        mean run_name. lifecycle_stage is not searchable (the
//                        view type selects it).
//   datasets.name/digest/context  = != LIKE ILIKE IN NOT IN; true when some
//                        dataset input of the run matches.
//   experiments          name: = != LIKE ILIKE; creation_time, last_update_time:
//                        numeric comparators; tags.k: = != LIKE ILIKE.
//
// LIKE is case-sensitive and ILIKE case-insensitive on both databases, as in
// MLflow: `%` matches any sequence, `_` any one character, and a backslash
// makes the next character literal (PostgreSQL's default). On PostgreSQL the
// pattern is compiled to LIKE/ILIKE; on SQLite to GLOB (always
// case-sensitive, unlike SQLite's LIKE) with a translated pattern, and ILIKE
// to `lower(x) GLOB <lowered pattern>` (ASCII case folding only, as SQLite's
// lower()). This keeps the result independent of PRAGMA case_sensitive_like.
// String literals in SQL are never used: every value is a `?` parameter.
//
// order_by: each entry is `identifier [ASC|DESC]` (default ASC). Runs:
// metrics/params/tags or attributes (run_id, run_name, status, user_id,
// artifact_uri, start_time, end_time, created); experiments: attributes
// name, experiment_id, creation_time, last_update_time only. A field may
// appear once. Rows lacking the sorted value come last in either direction
// (for metrics: values, then NaN, then missing), via a leading `CASE ... END`
// sort key, which both databases accept (SQLite has no NULLS LAST before
// 3.30). Runs then sort by `start_time DESC` (unless ordered explicitly;
// NULL start times last) and `run_uuid`. Experiments default to
// `creation_time DESC, experiment_id ASC`; otherwise `experiment_id DESC` is
// appended as tie-breaker unless present (MLflow's rules). On PostgreSQL,
// text sort keys use COLLATE "C" so both databases order strings bytewise.
//
// The SQL refers to the tables of the enclosing query by name: `runs` for
// run fragments, `experiments` for experiment fragments, e.g.
//   SELECT ... FROM runs WHERE runs.experiment_id IN (...) AND <lifecycle>
//     AND (<where.sql>) ORDER BY <order.sql> LIMIT ? OFFSET ?
// binding where.params, then order.params, then the limit and offset.
//
// Errors: every malformed or unsupported input gives kInvalidArgument with
// an MLflow-like message and, for filters, the 0-based byte position.
// Input must be valid UTF-8 without NUL bytes.
//
// Thread-safety: stateless functions; safe to call concurrently.
//
// Usage:
//   ASSIGN_OR_RETURN(RunFilter filter, ParseRunFilter(request.filter));
//   ASSIGN_OR_RETURN(SqlFragment where, RunFilterToSql(filter, SqlDialect::kSqlite));
//   ASSIGN_OR_RETURN(SqlFragment order, RunOrderByToSql(request.order_by, SqlDialect::kSqlite));
//   std::string sql = "SELECT runs.run_uuid FROM runs WHERE (" + where.sql +
//                     ") ORDER BY " + order.sql + " LIMIT ? OFFSET ?";
//   // bind where.params, then order.params, then limit, offset.
#ifndef CAIRN_TRACKING_SEARCH_FILTER_H_
#define CAIRN_TRACKING_SEARCH_FILTER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/status.h"

namespace cairn::tracking {

// Which SQL dialect to emit.
enum class SqlDialect { kSqlite, kPostgres };

// A value bound to one `?` placeholder.
using SqlValue = std::variant<int64_t, double, std::string>;

// A piece of SQL with `?` placeholders and their values, in order.
struct SqlFragment {
  std::string sql;
  std::vector<SqlValue> params;
  // For a runs filter: true when one clause is written as
  // `runs.run_uuid IN (SELECT ... index range ...)` to drive the search. The
  // caller should then keep other indexes of `runs` from driving it (SQLite:
  // write `+runs.experiment_id`), or the database probes every run instead.
  bool has_driver = false;
};

enum class EntityType { kMetric, kParam, kTag, kAttribute, kDataset };

enum class Comparator { kEq, kNe, kLt, kLe, kGt, kGe, kLike, kILike, kIn, kNotIn };

// A parsed right-hand side: a number (int64 when written as an integer that
// fits, else double), a string, or a list of strings (IN / NOT IN).
using FilterValue = std::variant<int64_t, double, std::string, std::vector<std::string>>;

// One `identifier comparator value` clause. For attributes `key` is the
// canonical name ("start_time" for "created", "run_name" for "Run name").
struct FilterClause {
  EntityType entity = EntityType::kAttribute;
  std::string key;
  Comparator comparator = Comparator::kEq;
  FilterValue value;
};

// An AND of clauses; empty means "everything".
struct RunFilter {
  std::vector<FilterClause> clauses;
};
struct ExperimentFilter {
  std::vector<FilterClause> clauses;
};

// One parsed order_by entry.
struct OrderByClause {
  EntityType entity = EntityType::kAttribute;
  std::string key;  // canonical attribute name for attributes
  bool ascending = true;
};

// Runs (runs/search). An empty or all-blank filter parses to no clauses.
absl::StatusOr<RunFilter> ParseRunFilter(std::string_view filter);
// The WHERE condition; "1 = 1" for an empty filter. kInvalidArgument if the
// filter breaks the rules above (possible only for hand-built filters).
absl::StatusOr<SqlFragment> RunFilterToSql(const RunFilter& filter, SqlDialect dialect);
absl::StatusOr<OrderByClause> ParseRunOrderBy(std::string_view order_by);
// The full ORDER BY list (without the keywords), tie-breakers included.
absl::StatusOr<SqlFragment> RunOrderByToSql(const std::vector<std::string>& order_by, SqlDialect dialect);

// Experiments (experiments/search).
absl::StatusOr<ExperimentFilter> ParseExperimentFilter(std::string_view filter);
absl::StatusOr<SqlFragment> ExperimentFilterToSql(const ExperimentFilter& filter, SqlDialect dialect);
absl::StatusOr<OrderByClause> ParseExperimentOrderBy(std::string_view order_by);
absl::StatusOr<SqlFragment> ExperimentOrderByToSql(const std::vector<std::string>& order_by, SqlDialect dialect);

// "=", "LIKE", "NOT IN", ...
std::string_view ComparatorName(Comparator comparator);

}  // namespace cairn::tracking

#endif  // CAIRN_TRACKING_SEARCH_FILTER_H_
