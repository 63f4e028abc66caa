// The search grammar of MLflow's registry (the `filter` and `order_by` of
// registered-models/search and model-versions/search): the subset MLflow's
// SQL store accepts, parsed into clauses that the RegistryStore evaluates
// against each candidate row.
//
//   filter     := [ comparison { AND comparison } ]   (AND case-insensitive;
//                                                      OR and parentheses rejected)
//   comparison := identifier comparator value
//   value      := 'string' | "string" | integer | ( 'a', "b", ... )
//
// Registered models:
//   name  = != LIKE ILIKE  'string'
//   tags.<key> (also tag.<key>, tags.`key with spaces`)  = != LIKE ILIKE 'string'
// Model versions:
//   name, source_path  = != LIKE ILIKE 'string'
//   run_id             = != LIKE ILIKE 'string', IN / NOT IN ('a', ...)
//   version_number     = != < <= > >= integer
//   tags.<key>         = != LIKE ILIKE 'string'
// A tag clause holds only for rows that have the tag (as in MLflow).
// LIKE is case-sensitive, ILIKE case-insensitive (ASCII folding): `%` is any
// sequence, `_` any one character, a backslash makes the next one literal.
//
// order_by entries: `key [ASC|DESC]`, keys `name`, `last_updated_timestamp`
// (alias `timestamp`), `creation_timestamp`, and for versions
// `version_number`. Each key at most once.
//
// Errors: kInvalidArgument with an MLflow-like message and, for filters, the
// 0-based byte position of the problem.
//
// Thread-safety: stateless functions and plain values.
//
// Usage:
//   ASSIGN_OR_RETURN(ModelFilter f, ParseModelFilter("name LIKE 'churn%'", FilterTarget::kRegisteredModels));
//   if (Matches(f, {.name = m.name, .tags = &m.tags})) ...
//   ASSIGN_OR_RETURN(std::vector<OrderKey> order, ParseModelOrderBy({"name DESC"}, FilterTarget::kRegisteredModels));
#ifndef CAIRN_REGISTRY_MODEL_FILTER_H_
#define CAIRN_REGISTRY_MODEL_FILTER_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace cairn::registry {

enum class FilterTarget { kRegisteredModels, kModelVersions };

enum class FilterField { kName, kRunId, kSourcePath, kVersionNumber, kTag };

enum class FilterOp { kEq, kNe, kLt, kLe, kGt, kGe, kLike, kILike, kIn, kNotIn };

struct FilterClause {
  FilterField field = FilterField::kName;
  std::string tag_key;  // for kTag
  FilterOp op = FilterOp::kEq;
  std::vector<std::string> strings;  // one value, or the IN list
  int64_t number = 0;                // for kVersionNumber
};

struct ModelFilter {
  std::vector<FilterClause> clauses;  // all must hold; empty matches everything
};

absl::StatusOr<ModelFilter> ParseModelFilter(std::string_view filter, FilterTarget target);

// What a filter is evaluated on. Fields a target lacks are left empty.
struct FilterSubject {
  std::string_view name;
  const std::map<std::string, std::string>* tags = nullptr;  // may be null: no tags
  std::string_view run_id;
  std::string_view source;
  int64_t version = 0;
};

bool Matches(const ModelFilter& filter, const FilterSubject& subject);

// MLflow's LIKE semantics (see above); `case_insensitive` for ILIKE.
bool LikeMatch(std::string_view value, std::string_view pattern, bool case_insensitive);

enum class OrderField { kName, kLastUpdated, kCreation, kVersionNumber };

struct OrderKey {
  OrderField field = OrderField::kName;
  bool ascending = true;
};

absl::StatusOr<std::vector<OrderKey>> ParseModelOrderBy(const std::vector<std::string>& order_by,
                                                        FilterTarget target);

// Page tokens: opaque to clients; base64 of {"offset": N}, like MLflow's.
std::string EncodePageToken(int64_t offset);
// "" decodes to 0; anything malformed is kInvalidArgument.
absl::StatusOr<int64_t> DecodePageToken(std::string_view token);

}  // namespace cairn::registry

#endif  // CAIRN_REGISTRY_MODEL_FILTER_H_
