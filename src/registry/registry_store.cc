#include "registry/registry_store.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <limits>
#include <set>
#include <utility>

#include "registry/model_filter.h"
#include "registry/schema.h"

namespace cairn::registry {
namespace {

constexpr const char* kAllStages[] = {kStageNone, kStageStaging, kStageProduction, kStageArchived};
constexpr size_t kMaxUserLength = 256;
constexpr size_t kMaxConfigLength = 64 * 1024;
constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();

// ------------------------------------------------------------- validation

bool ValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (int k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

// Text the database can store (valid UTF-8, no NUL) within `max` bytes.
absl::Status ValidateText(std::string_view field, const std::string& value, size_t max) {
  if (value.size() > max) {
    return absl::InvalidArgumentError(
        fmt::format("'{}' is {} bytes long; the limit is {}", field, value.size(), max));
  }
  if (value.find('\0') != std::string::npos || !ValidUtf8(value)) {
    return absl::InvalidArgumentError(fmt::format("'{}' must be valid UTF-8 without NUL characters", field));
  }
  return absl::OkStatus();
}

// A name-like field: required, no control characters.
absl::Status ValidateName(std::string_view field, const std::string& value, size_t max) {
  if (value.empty()) return absl::InvalidArgumentError(fmt::format("Missing value for required parameter '{}'", field));
  RETURN_IF_ERROR(ValidateText(field, value, max));
  for (char c : value) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(fmt::format("'{}' must not contain control characters", field));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateVersion(int64_t version) {
  if (version < 1) {
    return absl::InvalidArgumentError(fmt::format("Model version must be a positive integer, got {}", version));
  }
  return absl::OkStatus();
}

absl::Status ValidateTag(const std::string& key, const std::string& value) {
  RETURN_IF_ERROR(ValidateName("key", key, kMaxTagKeyLength));
  return ValidateText("value", value, kMaxTagValueLength);
}

absl::Status ValidateTags(const TagMap& tags) {
  for (const auto& [k, v] : tags) RETURN_IF_ERROR(ValidateTag(k, v));
  return absl::OkStatus();
}

absl::Status ValidateUser(const std::string& user) { return ValidateText("user", user, kMaxUserLength); }

// ---------------------------------------------------------- SQL plumbing

void BindOne(db::Statement& st, int i, int64_t v) { st.BindInt(i, v); }
void BindOne(db::Statement& st, int i, int v) { st.BindInt(i, v); }
void BindOne(db::Statement& st, int i, const std::string& v) { st.BindText(i, v); }
void BindOne(db::Statement& st, int i, const char* v) { st.BindText(i, v); }
void BindOne(db::Statement& st, int i, const std::optional<int64_t>& v) {
  if (v) st.BindInt(i, *v);
  else st.BindNull(i);
}

// The cached statement for `sql` with `args` bound to its parameters in order.
template <typename... Args>
absl::StatusOr<db::Statement*> Bound(db::Connection& conn, std::string_view sql, const Args&... args) {
  ASSIGN_OR_RETURN(db::Statement * st, conn.Cached(sql));
  int i = 1;
  (BindOne(*st, i++, args), ...);
  return st;
}

template <typename... Args>
absl::Status Exec(db::Connection& conn, std::string_view sql, const Args&... args) {
  ASSIGN_OR_RETURN(db::Statement * st, Bound(conn, sql, args...));
  return st->Run();
}

// Steps `st` to the end, calling `fn(st)` on each row; then resets it.
template <typename Fn>
absl::Status ForEachRow(db::Statement* st, Fn&& fn) {
  for (;;) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    fn(*st);
  }
  st->Reset();
  return absl::OkStatus();
}

// Runs `select` (a query without WHERE whose rows belong to models) over every
// row, or, when the filter names one model, only over that model's rows.
template <typename Fn>
absl::Status ForEachRowOfModels(db::Connection& conn, std::string_view select, const std::optional<std::string>& only,
                                Fn&& fn) {
  if (only) {
    ASSIGN_OR_RETURN(db::Statement * st, Bound(conn, std::string(select) + " WHERE name = ?", *only));
    return ForEachRow(st, fn);
  }
  ASSIGN_OR_RETURN(db::Statement * st, Bound(conn, select));
  return ForEachRow(st, fn);
}

// The first column of the first row as an integer; nullopt if no row or NULL.
template <typename... Args>
absl::StatusOr<std::optional<int64_t>> QueryInt(db::Connection& conn, std::string_view sql, const Args&... args) {
  ASSIGN_OR_RETURN(db::Statement * st, Bound(conn, sql, args...));
  ASSIGN_OR_RETURN(bool row, st->Step());
  std::optional<int64_t> out;
  if (row && !st->IsNull(0)) out = st->ColumnInt(0);
  st->Reset();
  return out;
}

std::optional<int64_t> OptInt(db::Statement& st, int i) {
  if (st.IsNull(i)) return std::nullopt;
  return st.ColumnInt(i);
}

std::string Text(db::Statement& st, int i) { return std::string(st.ColumnText(i)); }

// ------------------------------------------------------------ error texts

absl::Status ModelNotFound(const std::string& name) {
  return absl::NotFoundError(fmt::format("Registered Model with name={} not found", name));
}
absl::Status VersionNotFound(const std::string& name, int64_t version) {
  return absl::NotFoundError(fmt::format("Model Version (name={}, version={}) not found", name, version));
}

// ---------------------------------------------------------------- loading

constexpr std::string_view kSelectVersion =
    "SELECT name, version, creation_time, last_updated_time, user_id, current_stage, description, source, run_id, "
    "run_link, status, status_message, artifact_digest FROM model_versions WHERE name = ? AND version = ?";

absl::Status CheckModelExists(db::Connection& conn, const std::string& name) {
  ASSIGN_OR_RETURN(std::optional<int64_t> found, QueryInt(conn, "SELECT 1 FROM registered_models WHERE name = ?", name));
  if (!found) return ModelNotFound(name);
  return absl::OkStatus();
}

absl::Status CheckVersionExists(db::Connection& conn, const std::string& name, int64_t version) {
  ASSIGN_OR_RETURN(std::optional<int64_t> found,
                   QueryInt(conn, "SELECT 1 FROM model_versions WHERE name = ? AND version = ?", name, version));
  if (!found) return VersionNotFound(name, version);
  return absl::OkStatus();
}

absl::StatusOr<ModelVersion> LoadVersion(db::Connection& conn, const std::string& name, int64_t version) {
  ASSIGN_OR_RETURN(db::Statement * st, Bound(conn, kSelectVersion, name, version));
  ASSIGN_OR_RETURN(bool found, st->Step());
  if (!found) {
    st->Reset();
    return VersionNotFound(name, version);
  }
  ModelVersion v;
  v.name = Text(*st, 0);
  v.version = st->ColumnInt(1);
  v.creation_timestamp = st->ColumnInt(2);
  v.last_updated_timestamp = st->ColumnInt(3);
  v.user_id = Text(*st, 4);
  v.current_stage = Text(*st, 5);
  v.description = Text(*st, 6);
  v.source = Text(*st, 7);
  v.run_id = Text(*st, 8);
  v.run_link = Text(*st, 9);
  v.status = Text(*st, 10);
  v.status_message = Text(*st, 11);
  v.artifact_digest = Text(*st, 12);
  st->Reset();
  ASSIGN_OR_RETURN(db::Statement * tags,
                   Bound(conn, "SELECT key, value FROM model_version_tags WHERE name = ? AND version = ?", name,
                         version));
  RETURN_IF_ERROR(ForEachRow(tags, [&](db::Statement& r) { v.tags.emplace(Text(r, 0), Text(r, 1)); }));
  ASSIGN_OR_RETURN(db::Statement * aliases,
                   Bound(conn, "SELECT alias FROM model_aliases WHERE name = ? AND version = ? ORDER BY alias", name,
                         version));
  RETURN_IF_ERROR(ForEachRow(aliases, [&](db::Statement& r) { v.aliases.push_back(Text(r, 0)); }));
  return v;
}

// For each stage in `stages` that has versions, the highest version in it.
absl::StatusOr<std::vector<ModelVersion>> LoadLatestVersions(db::Connection& conn, const std::string& name,
                                                             const std::vector<std::string>& stages) {
  std::map<std::string, int64_t> latest;
  ASSIGN_OR_RETURN(db::Statement * st,
                   Bound(conn, "SELECT current_stage, MAX(version) FROM model_versions WHERE name = ? "
                               "GROUP BY current_stage",
                         name));
  RETURN_IF_ERROR(ForEachRow(st, [&](db::Statement& r) { latest[Text(r, 0)] = r.ColumnInt(1); }));
  std::vector<ModelVersion> out;
  for (const std::string& stage : stages) {
    auto it = latest.find(stage);
    if (it == latest.end()) continue;
    ASSIGN_OR_RETURN(ModelVersion v, LoadVersion(conn, name, it->second));
    out.push_back(std::move(v));
  }
  return out;
}

absl::StatusOr<RegisteredModel> LoadModel(db::Connection& conn, const std::string& name) {
  ASSIGN_OR_RETURN(db::Statement * st,
                   Bound(conn, "SELECT name, creation_time, last_updated_time, user_id, description FROM "
                               "registered_models WHERE name = ?",
                         name));
  ASSIGN_OR_RETURN(bool found, st->Step());
  if (!found) {
    st->Reset();
    return ModelNotFound(name);
  }
  RegisteredModel m;
  m.name = Text(*st, 0);
  m.creation_timestamp = st->ColumnInt(1);
  m.last_updated_timestamp = st->ColumnInt(2);
  m.user_id = Text(*st, 3);
  m.description = Text(*st, 4);
  st->Reset();
  ASSIGN_OR_RETURN(db::Statement * tags, Bound(conn, "SELECT key, value FROM registered_model_tags WHERE name = ?", name));
  RETURN_IF_ERROR(ForEachRow(tags, [&](db::Statement& r) { m.tags.emplace(Text(r, 0), Text(r, 1)); }));
  ASSIGN_OR_RETURN(db::Statement * aliases, Bound(conn, "SELECT alias, version FROM model_aliases WHERE name = ?", name));
  RETURN_IF_ERROR(ForEachRow(aliases, [&](db::Statement& r) { m.aliases.emplace(Text(r, 0), r.ColumnInt(1)); }));
  std::vector<std::string> stages(std::begin(kAllStages), std::end(kAllStages));
  std::sort(stages.begin(), stages.end());
  ASSIGN_OR_RETURN(m.latest_versions, LoadLatestVersions(conn, name, stages));
  return m;
}

absl::Status BumpChangeCounter(db::Connection& conn) {
  return Exec(conn, "UPDATE registry_changes SET counter = counter + 1 WHERE id = 1");
}

// Appends one alias move to the history.
absl::Status AppendAliasHistory(db::Connection& conn, const std::string& name, const std::string& alias,
                                std::optional<int64_t> from, std::optional<int64_t> to, const std::string& user,
                                int64_t time_ms, const std::string& reason, std::optional<int64_t> decision_id) {
  ASSIGN_OR_RETURN(std::optional<int64_t> max_id, QueryInt(conn, "SELECT MAX(id) FROM alias_history"));
  return Exec(conn,
              "INSERT INTO alias_history (id, name, alias, from_version, to_version, user_id, time_ms, reason, "
              "decision_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
              max_id.value_or(0) + 1, name, alias, from, to, user, time_ms, reason, decision_id);
}

// Removes every alias of `name` that points at `version` (every alias when
// `version` is nullopt), recording each removal.
absl::Status RemoveAliases(db::Connection& conn, const std::string& name, std::optional<int64_t> version,
                           const std::string& user, int64_t now, const std::string& reason) {
  std::vector<std::pair<std::string, int64_t>> aliases;
  ASSIGN_OR_RETURN(db::Statement * st, Bound(conn, "SELECT alias, version FROM model_aliases WHERE name = ? ORDER BY alias", name));
  RETURN_IF_ERROR(ForEachRow(st, [&](db::Statement& r) {
    if (!version || r.ColumnInt(1) == *version) aliases.emplace_back(Text(r, 0), r.ColumnInt(1));
  }));
  for (const auto& [alias, v] : aliases) {
    RETURN_IF_ERROR(Exec(conn, "DELETE FROM model_aliases WHERE name = ? AND alias = ?", name, alias));
    RETURN_IF_ERROR(AppendAliasHistory(conn, name, alias, v, std::nullopt, user, now, reason, std::nullopt));
  }
  return absl::OkStatus();
}

absl::Status CheckExpected(const AliasMove& move, const std::string& alias, std::optional<int64_t> current) {
  if (!move.check_expected || move.expected_from == current) return absl::OkStatus();
  auto show = [](std::optional<int64_t> v) { return v ? fmt::format("version {}", *v) : std::string("nothing"); };
  return absl::FailedPreconditionError(fmt::format("Alias '{}' points at {} now, not at {} as expected", alias,
                                                   show(current), show(move.expected_from)));
}

absl::Status ValidateMove(const AliasMove& move) {
  RETURN_IF_ERROR(ValidateUser(move.user));
  RETURN_IF_ERROR(ValidateText("reason", move.reason, kMaxTextFieldLength));
  if (move.expected_from) RETURN_IF_ERROR(ValidateVersion(*move.expected_from));
  return absl::OkStatus();
}

AliasHistoryEntry ReadHistoryEntry(db::Statement& r) {
  AliasHistoryEntry e;
  e.id = r.ColumnInt(0);
  e.name = Text(r, 1);
  e.alias = Text(r, 2);
  e.from_version = OptInt(r, 3);
  e.to_version = OptInt(r, 4);
  e.user = Text(r, 5);
  e.time_ms = r.ColumnInt(6);
  e.reason = Text(r, 7);
  e.decision_id = OptInt(r, 8);
  return e;
}

constexpr std::string_view kDecisionColumns =
    "SELECT id, name, alias, version, allowed, conditions, user_id, time_ms, reason FROM gate_decisions ";

absl::StatusOr<GateDecisionRecord> ReadDecision(db::Statement& r) {
  GateDecisionRecord d;
  d.id = r.ColumnInt(0);
  d.name = Text(r, 1);
  d.alias = Text(r, 2);
  d.version = r.ColumnInt(3);
  d.allowed = r.ColumnInt(4) != 0;
  auto conditions = ParseJson(r.ColumnText(5));
  if (!conditions.ok()) return absl::DataLossError(fmt::format("gate decision {}: stored conditions are not JSON", d.id));
  d.conditions = std::move(*conditions);
  d.user = Text(r, 6);
  d.time_ms = r.ColumnInt(7);
  d.reason = Text(r, 8);
  return d;
}

constexpr std::string_view kSelectDeployment =
    "SELECT name, model, alias, canary_version, canary_percent, shadow_version, config, created_time, updated_time, "
    "generation FROM deployments ";

absl::StatusOr<Deployment> ReadDeployment(db::Statement& r) {
  Deployment d;
  d.name = Text(r, 0);
  d.model = Text(r, 1);
  d.alias = Text(r, 2);
  d.canary_version = OptInt(r, 3);
  d.canary_percent = static_cast<int>(r.ColumnInt(4));
  d.shadow_version = OptInt(r, 5);
  auto config = ParseJson(r.ColumnText(6));
  if (!config.ok()) return absl::DataLossError(fmt::format("deployment {}: stored config is not JSON", d.name));
  d.config = std::move(*config);
  d.created_time = r.ColumnInt(7);
  d.updated_time = r.ColumnInt(8);
  d.generation = r.ColumnInt(9);
  return d;
}

absl::StatusOr<int> CheckMaxResults(int max_results, int default_value, int limit) {
  if (max_results <= 0) return default_value;
  if (max_results > limit) {
    return absl::InvalidArgumentError(fmt::format(
        "Invalid value {} for parameter 'max_results' supplied. It must be at most {}", max_results, limit));
  }
  return max_results;
}

// The single `name = 'x'` clause of a filter, if any: lets a search read one
// model's rows instead of all of them.
std::optional<std::string> NameEquality(const ModelFilter& filter) {
  for (const FilterClause& c : filter.clauses) {
    if (c.field == FilterField::kName && c.op == FilterOp::kEq) return c.strings[0];
  }
  return std::nullopt;
}

bool NeedsTags(const ModelFilter& filter) {
  return std::any_of(filter.clauses.begin(), filter.clauses.end(),
                     [](const FilterClause& c) { return c.field == FilterField::kTag; });
}

// Compares a and b under `keys`: negative, zero or positive.
template <typename Row>
int CompareRows(const Row& a, const Row& b, const std::vector<OrderKey>& keys) {
  for (const OrderKey& k : keys) {
    int c = 0;
    switch (k.field) {
      case OrderField::kName: c = a.name.compare(b.name); break;
      case OrderField::kLastUpdated: c = (a.last_updated > b.last_updated) - (a.last_updated < b.last_updated); break;
      case OrderField::kCreation: c = (a.creation > b.creation) - (a.creation < b.creation); break;
      case OrderField::kVersionNumber: c = (a.version > b.version) - (a.version < b.version); break;
    }
    if (c != 0) return k.ascending ? c : -c;
  }
  return 0;
}

struct Candidate {
  std::string name;
  int64_t version = 0;
  int64_t creation = 0;
  int64_t last_updated = 0;
  std::string run_id;
  std::string source;
  TagMap tags;
};

// Sorts `rows` by `keys` and cuts the page [offset, offset + limit).
// Returns the next page token ("" at the end).
template <typename Row>
std::string SortAndPage(std::vector<Row>& rows, const std::vector<OrderKey>& keys, int64_t offset, int limit) {
  std::stable_sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) { return CompareRows(a, b, keys) < 0; });
  std::string next;
  if (offset >= static_cast<int64_t>(rows.size())) {
    rows.clear();
    return next;
  }
  rows.erase(rows.begin(), rows.begin() + offset);
  if (static_cast<int64_t>(rows.size()) > limit) {
    rows.resize(limit);
    next = EncodePageToken(offset + limit);
  }
  return next;
}

}  // namespace

// ------------------------------------------------------------ public checks

absl::StatusOr<std::string> CanonicalStage(const std::string& stage) {
  for (const char* s : kAllStages) {
    std::string_view canon(s);
    if (stage.size() == canon.size() &&
        std::equal(stage.begin(), stage.end(), canon.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
        })) {
      return std::string(canon);
    }
  }
  return absl::InvalidArgumentError(
      fmt::format("Invalid Model Version stage: {}. Value must be one of None, Staging, Production, Archived.", stage));
}

absl::Status ValidateAlias(const std::string& alias) {
  if (alias.empty()) return absl::InvalidArgumentError("Missing value for required parameter 'alias'");
  if (alias.size() > kMaxAliasLength) {
    return absl::InvalidArgumentError(
        fmt::format("Alias name is {} characters long; the limit is {}", alias.size(), kMaxAliasLength));
  }
  for (char c : alias) {
    if (std::isalnum(static_cast<unsigned char>(c)) == 0 && c != '_' && c != '-') {
      return absl::InvalidArgumentError(
          fmt::format("Invalid alias name: '{}'. Names may only contain alphanumerics, underscores and dashes",
                      ValidUtf8(alias) ? alias : std::string("(not UTF-8)")));
    }
  }
  std::string lower = alias;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "latest") {
    return absl::InvalidArgumentError("'latest' alias name (case insensitive) is reserved.");
  }
  if (lower.size() >= 2 && lower[0] == 'v' &&
      std::all_of(lower.begin() + 1, lower.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    return absl::InvalidArgumentError(fmt::format(
        "Version alias name '{}' is reserved: an alias may not be 'v' followed by digits", alias));
  }
  return absl::OkStatus();
}

absl::Status ValidateModelName(const std::string& name) { return ValidateName("name", name, kMaxModelNameLength); }

// ------------------------------------------------------------------- store

RegistryStore::RegistryStore(Env& env, std::unique_ptr<db::GroupCommitter> committer,
                             std::unique_ptr<db::ConnectionPool> readers)
    : env_(env), committer_(std::move(committer)), readers_(std::move(readers)) {}

RegistryStore::~RegistryStore() = default;

absl::StatusOr<std::unique_ptr<RegistryStore>> RegistryStore::Create(db::Database& db, Env& env) {
  RETURN_IF_ERROR(db.Migrate("registry", RegistryMigrations()));
  ASSIGN_OR_RETURN(auto committer, db::GroupCommitter::Create(db));
  ASSIGN_OR_RETURN(auto readers, db::ConnectionPool::Create(db, 8));
  return std::unique_ptr<RegistryStore>(new RegistryStore(env, std::move(committer), std::move(readers)));
}

int64_t RegistryStore::NowMs() const { return env_.NowMicros() / 1000; }

// ------------------------------------------------------- registered models

absl::StatusOr<RegisteredModel> RegistryStore::CreateRegisteredModel(const std::string& name,
                                                                     const std::string& description,
                                                                     const TagMap& tags, const std::string& user_id) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateText("description", description, kMaxDescriptionLength));
  RETURN_IF_ERROR(ValidateTags(tags));
  RETURN_IF_ERROR(ValidateUser(user_id));
  const int64_t now = NowMs();
  RETURN_IF_ERROR(committer_->Submit([&](db::Connection& conn) -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<int64_t> exists, QueryInt(conn, "SELECT 1 FROM registered_models WHERE name = ?", name));
    if (exists) return absl::AlreadyExistsError(fmt::format("Registered Model (name={}) already exists.", name));
    RETURN_IF_ERROR(Exec(conn,
                         "INSERT INTO registered_models (name, creation_time, last_updated_time, user_id, "
                         "description, max_version) VALUES (?, ?, ?, ?, ?, 0)",
                         name, now, now, user_id, description));
    for (const auto& [k, v] : tags) {
      RETURN_IF_ERROR(Exec(conn, "INSERT INTO registered_model_tags (name, key, value) VALUES (?, ?, ?)", name, k, v));
    }
    return absl::OkStatus();
  }));
  RegisteredModel m;
  m.name = name;
  m.creation_timestamp = now;
  m.last_updated_timestamp = now;
  m.user_id = user_id;
  m.description = description;
  m.tags = tags;
  return m;
}

absl::StatusOr<RegisteredModel> RegistryStore::GetRegisteredModel(const std::string& name) {
  RETURN_IF_ERROR(ValidateModelName(name));
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  return LoadModel(*lease, name);
}

absl::StatusOr<RegisteredModel> RegistryStore::RenameRegisteredModel(const std::string& name,
                                                                     const std::string& new_name) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateName("new_name", new_name, kMaxModelNameLength));
  const int64_t now = NowMs();
  RegisteredModel out;
  RETURN_IF_ERROR(committer_->Submit([&](db::Connection& conn) -> absl::Status {
    RETURN_IF_ERROR(CheckModelExists(conn, name));
    if (new_name != name) {
      ASSIGN_OR_RETURN(std::optional<int64_t> taken,
                       QueryInt(conn, "SELECT 1 FROM registered_models WHERE name = ?", new_name));
      if (taken) return absl::AlreadyExistsError(fmt::format("Registered Model (name={}) already exists.", new_name));
      // Every table naming the model, audit tables included: history stays
      // attached to the model under its new name.
      static constexpr std::string_view kRenames[] = {
          "UPDATE registered_model_tags SET name = ? WHERE name = ?",
          "UPDATE model_versions SET name = ? WHERE name = ?",
          "UPDATE model_version_tags SET name = ? WHERE name = ?",
          "UPDATE model_aliases SET name = ? WHERE name = ?",
          "UPDATE alias_history SET name = ? WHERE name = ?",
          "UPDATE promotion_policies SET name = ? WHERE name = ?",
          "UPDATE approvals SET name = ? WHERE name = ?",
          "UPDATE gate_decisions SET name = ? WHERE name = ?",
          "UPDATE registered_models SET name = ? WHERE name = ?",
      };
      for (std::string_view sql : kRenames) RETURN_IF_ERROR(Exec(conn, sql, new_name, name));
      RETURN_IF_ERROR(Exec(conn,
                           "UPDATE deployments SET model = ?, updated_time = ?, generation = generation + 1 "
                           "WHERE model = ?",
                           new_name, now, name));
      RETURN_IF_ERROR(Exec(conn, "UPDATE registered_models SET last_updated_time = ? WHERE name = ?", now, new_name));
      RETURN_IF_ERROR(BumpChangeCounter(conn));
    }
    ASSIGN_OR_RETURN(out, LoadModel(conn, new_name));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<RegisteredModel> RegistryStore::UpdateRegisteredModel(const std::string& name,
                                                                     const std::string& description) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateText("description", description, kMaxDescriptionLength));
  const int64_t now = NowMs();
  RegisteredModel out;
  RETURN_IF_ERROR(committer_->Submit([&](db::Connection& conn) -> absl::Status {
    RETURN_IF_ERROR(CheckModelExists(conn, name));
    RETURN_IF_ERROR(Exec(conn, "UPDATE registered_models SET description = ?, last_updated_time = ? WHERE name = ?",
                         description, now, name));
    ASSIGN_OR_RETURN(out, LoadModel(conn, name));
    return absl::OkStatus();
  }));
  return out;
}

absl::Status RegistryStore::DeleteRegisteredModel(const std::string& name, const std::string& user) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateUser(user));
  const int64_t now = NowMs();
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    RETURN_IF_ERROR(CheckModelExists(conn, name));
    std::vector<std::string> serving;
    ASSIGN_OR_RETURN(db::Statement * deps, Bound(conn, "SELECT name FROM deployments WHERE model = ? ORDER BY name", name));
    RETURN_IF_ERROR(ForEachRow(deps, [&](db::Statement& r) { serving.push_back(Text(r, 0)); }));
    if (!serving.empty()) {
      return absl::FailedPreconditionError(
          fmt::format("Registered Model {} is served by deployment(s) {}; delete them first", name,
                      fmt::join(serving, ", ")));
    }
    RETURN_IF_ERROR(RemoveAliases(conn, name, std::nullopt, user, now, "registered model deleted"));
    static constexpr std::string_view kDeletes[] = {
        "DELETE FROM model_version_tags WHERE name = ?", "DELETE FROM model_versions WHERE name = ?",
        "DELETE FROM registered_model_tags WHERE name = ?", "DELETE FROM approvals WHERE name = ?",
        "DELETE FROM promotion_policies WHERE name = ?",  "DELETE FROM registered_models WHERE name = ?",
    };
    for (std::string_view sql : kDeletes) RETURN_IF_ERROR(Exec(conn, sql, name));
    return BumpChangeCounter(conn);
  });
}

absl::Status RegistryStore::SetRegisteredModelTag(const std::string& name, const std::string& key,
                                                  const std::string& value) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateTag(key, value));
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    RETURN_IF_ERROR(CheckModelExists(conn, name));
    return Exec(conn,
                "INSERT INTO registered_model_tags (name, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (name, key) DO UPDATE SET value = excluded.value",
                name, key, value);
  });
}

absl::Status RegistryStore::DeleteRegisteredModelTag(const std::string& name, const std::string& key) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateName("key", key, kMaxTagKeyLength));
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    RETURN_IF_ERROR(CheckModelExists(conn, name));
    return Exec(conn, "DELETE FROM registered_model_tags WHERE name = ? AND key = ?", name, key);
  });
}

absl::StatusOr<SearchModelsResult> RegistryStore::SearchRegisteredModels(const SearchRequest& request) {
  ASSIGN_OR_RETURN(int limit, CheckMaxResults(request.max_results, kSearchModelsMaxResultsDefault,
                                              kSearchModelsMaxResultsLimit));
  ASSIGN_OR_RETURN(ModelFilter filter, ParseModelFilter(request.filter, FilterTarget::kRegisteredModels));
  ASSIGN_OR_RETURN(std::vector<OrderKey> order, ParseModelOrderBy(request.order_by, FilterTarget::kRegisteredModels));
  ASSIGN_OR_RETURN(int64_t offset, DecodePageToken(request.page_token));
  order.push_back({OrderField::kName, true});  // unique: makes paging stable

  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  db::Connection& conn = *lease;
  std::optional<std::string> only = NameEquality(filter);
  std::map<std::string, Candidate> rows;
  auto add_row = [&](db::Statement& r) {
    Candidate c;
    c.name = Text(r, 0);
    c.creation = r.ColumnInt(1);
    c.last_updated = r.ColumnInt(2);
    rows.emplace(c.name, std::move(c));
  };
  auto add_tag = [&](db::Statement& r) {
    auto it = rows.find(Text(r, 0));
    if (it != rows.end()) it->second.tags.emplace(Text(r, 1), Text(r, 2));
  };
  constexpr std::string_view kSelect = "SELECT name, creation_time, last_updated_time FROM registered_models";
  RETURN_IF_ERROR(ForEachRowOfModels(conn, kSelect, only, add_row));
  if (NeedsTags(filter)) {
    RETURN_IF_ERROR(ForEachRowOfModels(conn, "SELECT name, key, value FROM registered_model_tags", only, add_tag));
  }
  std::vector<Candidate> matched;
  for (auto& [name, c] : rows) {
    if (Matches(filter, {.name = c.name, .tags = &c.tags})) matched.push_back(std::move(c));
  }
  SearchModelsResult result;
  result.next_page_token = SortAndPage(matched, order, offset, limit);
  for (const Candidate& c : matched) {
    ASSIGN_OR_RETURN(RegisteredModel m, LoadModel(conn, c.name));
    result.registered_models.push_back(std::move(m));
  }
  return result;
}

// ---------------------------------------------------------- model versions

absl::StatusOr<ModelVersion> RegistryStore::CreateModelVersion(const CreateModelVersionRequest& request) {
  RETURN_IF_ERROR(ValidateModelName(request.name));
  if (request.source.empty()) return absl::InvalidArgumentError("Missing value for required parameter 'source'");
  RETURN_IF_ERROR(ValidateText("source", request.source, kMaxTextFieldLength));
  RETURN_IF_ERROR(ValidateText("run_id", request.run_id, kMaxUserLength));
  RETURN_IF_ERROR(ValidateText("run_link", request.run_link, kMaxTextFieldLength));
  RETURN_IF_ERROR(ValidateText("description", request.description, kMaxDescriptionLength));
  RETURN_IF_ERROR(ValidateText("artifact_digest", request.artifact_digest, kMaxUserLength));
  RETURN_IF_ERROR(ValidateUser(request.user_id));
  RETURN_IF_ERROR(ValidateTags(request.tags));
  const int64_t now = NowMs();
  ModelVersion out;
  RETURN_IF_ERROR(committer_->Submit([&](db::Connection& conn) -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<int64_t> max_version,
                     QueryInt(conn, "SELECT max_version FROM registered_models WHERE name = ?", request.name));
    if (!max_version) return ModelNotFound(request.name);
    // max_version only grows, so a deleted version's number is never reused.
    const int64_t version = *max_version + 1;
    RETURN_IF_ERROR(Exec(conn, "UPDATE registered_models SET max_version = ?, last_updated_time = ? WHERE name = ?",
                         version, now, request.name));
    RETURN_IF_ERROR(Exec(conn,
                         "INSERT INTO model_versions (name, version, creation_time, last_updated_time, user_id, "
                         "current_stage, description, source, run_id, run_link, status, status_message, "
                         "artifact_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'READY', '', ?)",
                         request.name, version, now, now, request.user_id, kStageNone, request.description,
                         request.source, request.run_id, request.run_link, request.artifact_digest));
    for (const auto& [k, v] : request.tags) {
      RETURN_IF_ERROR(Exec(conn, "INSERT INTO model_version_tags (name, version, key, value) VALUES (?, ?, ?, ?)",
                           request.name, version, k, v));
    }
    ASSIGN_OR_RETURN(out, LoadVersion(conn, request.name, version));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<ModelVersion> RegistryStore::GetModelVersion(const std::string& name, int64_t version) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateVersion(version));
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  return LoadVersion(*lease, name, version);
}

absl::StatusOr<ModelVersion> RegistryStore::UpdateModelVersion(const std::string& name, int64_t version,
                                                               const std::string& description) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateVersion(version));
  RETURN_IF_ERROR(ValidateText("description", description, kMaxDescriptionLength));
  const int64_t now = NowMs();
  ModelVersion out;
  RETURN_IF_ERROR(committer_->Submit([&](db::Connection& conn) -> absl::Status {
    RETURN_IF_ERROR(CheckVersionExists(conn, name, version));
    RETURN_IF_ERROR(Exec(conn,
                         "UPDATE model_versions SET description = ?, last_updated_time = ? WHERE name = ? AND "
                         "version = ?",
                         description, now, name, version));
    ASSIGN_OR_RETURN(out, LoadVersion(conn, name, version));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<ModelVersion> RegistryStore::TransitionModelVersionStage(const std::string& name, int64_t version,
                                                                        const std::string& stage,
                                                                        bool archive_existing) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateVersion(version));
  ASSIGN_OR_RETURN(std::string canonical, CanonicalStage(stage));
  const int64_t now = NowMs();
  ModelVersion out;
  RETURN_IF_ERROR(committer_->Submit([&](db::Connection& conn) -> absl::Status {
    RETURN_IF_ERROR(CheckVersionExists(conn, name, version));
    if (archive_existing && (canonical == kStageStaging || canonical == kStageProduction)) {
      RETURN_IF_ERROR(Exec(conn,
                           "UPDATE model_versions SET current_stage = ?, last_updated_time = ? WHERE name = ? AND "
                           "current_stage = ? AND version != ?",
                           kStageArchived, now, name, canonical, version));
    }
    RETURN_IF_ERROR(Exec(conn,
                         "UPDATE model_versions SET current_stage = ?, last_updated_time = ? WHERE name = ? AND "
                         "version = ?",
                         canonical, now, name, version));
    RETURN_IF_ERROR(Exec(conn, "UPDATE registered_models SET last_updated_time = ? WHERE name = ?", now, name));
    ASSIGN_OR_RETURN(out, LoadVersion(conn, name, version));
    return absl::OkStatus();
  }));
  return out;
}

absl::Status RegistryStore::DeleteModelVersion(const std::string& name, int64_t version, const std::string& user) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateVersion(version));
  RETURN_IF_ERROR(ValidateUser(user));
  const int64_t now = NowMs();
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    RETURN_IF_ERROR(CheckVersionExists(conn, name, version));
    RETURN_IF_ERROR(RemoveAliases(conn, name, version, user, now, fmt::format("version {} deleted", version)));
    // A deployment keeps serving its alias; only the pin on this version goes.
    RETURN_IF_ERROR(Exec(conn,
                         "UPDATE deployments SET canary_version = NULL, canary_percent = 0, updated_time = ?, "
                         "generation = generation + 1 WHERE model = ? AND canary_version = ?",
                         now, name, version));
    RETURN_IF_ERROR(Exec(conn,
                         "UPDATE deployments SET shadow_version = NULL, updated_time = ?, generation = generation + 1 "
                         "WHERE model = ? AND shadow_version = ?",
                         now, name, version));
    static constexpr std::string_view kDeletes[] = {
        "DELETE FROM model_version_tags WHERE name = ? AND version = ?",
        "DELETE FROM approvals WHERE name = ? AND version = ?",
        "DELETE FROM model_versions WHERE name = ? AND version = ?",
    };
    for (std::string_view sql : kDeletes) RETURN_IF_ERROR(Exec(conn, sql, name, version));
    RETURN_IF_ERROR(Exec(conn, "UPDATE registered_models SET last_updated_time = ? WHERE name = ?", now, name));
    return BumpChangeCounter(conn);
  });
}

absl::Status RegistryStore::SetModelVersionTag(const std::string& name, int64_t version, const std::string& key,
                                               const std::string& value) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateVersion(version));
  RETURN_IF_ERROR(ValidateTag(key, value));
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    RETURN_IF_ERROR(CheckVersionExists(conn, name, version));
    return Exec(conn,
                "INSERT INTO model_version_tags (name, version, key, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name, version, key) DO UPDATE SET value = excluded.value",
                name, version, key, value);
  });
}

absl::Status RegistryStore::DeleteModelVersionTag(const std::string& name, int64_t version, const std::string& key) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateVersion(version));
  RETURN_IF_ERROR(ValidateName("key", key, kMaxTagKeyLength));
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    RETURN_IF_ERROR(CheckVersionExists(conn, name, version));
    return Exec(conn, "DELETE FROM model_version_tags WHERE name = ? AND version = ? AND key = ?", name, version, key);
  });
}

absl::StatusOr<SearchVersionsResult> RegistryStore::SearchModelVersions(const SearchRequest& request) {
  ASSIGN_OR_RETURN(int limit, CheckMaxResults(request.max_results, kSearchVersionsMaxResultsDefault,
                                              kSearchVersionsMaxResultsLimit));
  ASSIGN_OR_RETURN(ModelFilter filter, ParseModelFilter(request.filter, FilterTarget::kModelVersions));
  ASSIGN_OR_RETURN(std::vector<OrderKey> order, ParseModelOrderBy(request.order_by, FilterTarget::kModelVersions));
  ASSIGN_OR_RETURN(int64_t offset, DecodePageToken(request.page_token));
  if (order.empty()) {
    order = {{OrderField::kLastUpdated, false}, {OrderField::kName, true}, {OrderField::kVersionNumber, false}};
  }
  // (name, version) is unique: with both as tie-breakers paging is stable.
  order.push_back({OrderField::kName, true});
  order.push_back({OrderField::kVersionNumber, false});

  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  db::Connection& conn = *lease;
  std::optional<std::string> only = NameEquality(filter);
  std::map<std::pair<std::string, int64_t>, Candidate> rows;
  auto add_row = [&](db::Statement& r) {
    Candidate c;
    c.name = Text(r, 0);
    c.version = r.ColumnInt(1);
    c.creation = r.ColumnInt(2);
    c.last_updated = r.ColumnInt(3);
    c.run_id = Text(r, 4);
    c.source = Text(r, 5);
    rows.emplace(std::make_pair(c.name, c.version), std::move(c));
  };
  auto add_tag = [&](db::Statement& r) {
    auto it = rows.find({Text(r, 0), r.ColumnInt(1)});
    if (it != rows.end()) it->second.tags.emplace(Text(r, 2), Text(r, 3));
  };
  constexpr std::string_view kSelect =
      "SELECT name, version, creation_time, last_updated_time, run_id, source FROM model_versions";
  constexpr std::string_view kSelectTags = "SELECT name, version, key, value FROM model_version_tags";
  RETURN_IF_ERROR(ForEachRowOfModels(conn, kSelect, only, add_row));
  if (NeedsTags(filter)) RETURN_IF_ERROR(ForEachRowOfModels(conn, kSelectTags, only, add_tag));
  std::vector<Candidate> matched;
  for (auto& [key, c] : rows) {
    if (Matches(filter, {.name = c.name, .tags = &c.tags, .run_id = c.run_id, .source = c.source,
                         .version = c.version})) {
      matched.push_back(std::move(c));
    }
  }
  SearchVersionsResult result;
  result.next_page_token = SortAndPage(matched, order, offset, limit);
  for (const Candidate& c : matched) {
    ASSIGN_OR_RETURN(ModelVersion v, LoadVersion(conn, c.name, c.version));
    result.model_versions.push_back(std::move(v));
  }
  return result;
}

absl::StatusOr<std::vector<ModelVersion>> RegistryStore::GetLatestVersions(const std::string& name,
                                                                           const std::vector<std::string>& stages) {
  RETURN_IF_ERROR(ValidateModelName(name));
  std::vector<std::string> wanted;
  for (const std::string& s : stages) {
    ASSIGN_OR_RETURN(std::string canonical, CanonicalStage(s));
    if (std::find(wanted.begin(), wanted.end(), canonical) == wanted.end()) wanted.push_back(canonical);
  }
  if (wanted.empty()) wanted.assign(std::begin(kAllStages), std::end(kAllStages));
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  RETURN_IF_ERROR(CheckModelExists(*lease, name));
  return LoadLatestVersions(*lease, name, wanted);
}

// ----------------------------------------------------------------- aliases

absl::Status RegistryStore::SetAlias(const std::string& name, const std::string& alias, int64_t version,
                                     const AliasMove& move) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateAlias(alias));
  RETURN_IF_ERROR(ValidateVersion(version));
  RETURN_IF_ERROR(ValidateMove(move));
  const int64_t now = NowMs();
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    RETURN_IF_ERROR(CheckModelExists(conn, name));
    RETURN_IF_ERROR(CheckVersionExists(conn, name, version));
    // Read inside the unit: units run one at a time, so `current` is still
    // current when the move is written and the history chain has no gaps.
    ASSIGN_OR_RETURN(std::optional<int64_t> current,
                     QueryInt(conn, "SELECT version FROM model_aliases WHERE name = ? AND alias = ?", name, alias));
    RETURN_IF_ERROR(CheckExpected(move, alias, current));
    if (current == version) return absl::OkStatus();
    RETURN_IF_ERROR(Exec(conn,
                         "INSERT INTO model_aliases (name, alias, version) VALUES (?, ?, ?) "
                         "ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
                         name, alias, version));
    RETURN_IF_ERROR(AppendAliasHistory(conn, name, alias, current, version, move.user, now, move.reason,
                                       move.decision_id));
    return BumpChangeCounter(conn);
  });
}

absl::Status RegistryStore::DeleteAlias(const std::string& name, const std::string& alias, const AliasMove& move) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateAlias(alias));
  RETURN_IF_ERROR(ValidateMove(move));
  const int64_t now = NowMs();
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    RETURN_IF_ERROR(CheckModelExists(conn, name));
    ASSIGN_OR_RETURN(std::optional<int64_t> current,
                     QueryInt(conn, "SELECT version FROM model_aliases WHERE name = ? AND alias = ?", name, alias));
    if (!current) return absl::NotFoundError(fmt::format("Registered model alias {} not found.", alias));
    RETURN_IF_ERROR(CheckExpected(move, alias, current));
    RETURN_IF_ERROR(Exec(conn, "DELETE FROM model_aliases WHERE name = ? AND alias = ?", name, alias));
    RETURN_IF_ERROR(AppendAliasHistory(conn, name, alias, current, std::nullopt, move.user, now, move.reason,
                                       move.decision_id));
    return BumpChangeCounter(conn);
  });
}

absl::StatusOr<ModelVersion> RegistryStore::GetModelVersionByAlias(const std::string& name, const std::string& alias) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateAlias(alias));
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  RETURN_IF_ERROR(CheckModelExists(*lease, name));
  ASSIGN_OR_RETURN(std::optional<int64_t> version,
                   QueryInt(*lease, "SELECT version FROM model_aliases WHERE name = ? AND alias = ?", name, alias));
  if (!version) return absl::NotFoundError(fmt::format("Registered model alias {} not found.", alias));
  return LoadVersion(*lease, name, *version);
}

absl::StatusOr<std::vector<AliasHistoryEntry>> RegistryStore::AliasHistory(const std::string& name,
                                                                           const std::string& alias, int limit) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateAlias(alias));
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st,
                   Bound(*lease,
                         "SELECT id, name, alias, from_version, to_version, user_id, time_ms, reason, decision_id "
                         "FROM alias_history WHERE name = ? AND alias = ? ORDER BY id DESC LIMIT ?",
                         name, alias, limit > 0 ? int64_t{limit} : kNoLimit));
  std::vector<AliasHistoryEntry> out;
  RETURN_IF_ERROR(ForEachRow(st, [&](db::Statement& r) { out.push_back(ReadHistoryEntry(r)); }));
  return out;
}

absl::StatusOr<std::optional<int64_t>> RegistryStore::AliasAt(const std::string& name, const std::string& alias,
                                                              int64_t time_ms) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateAlias(alias));
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st,
                   Bound(*lease,
                         "SELECT to_version FROM alias_history WHERE name = ? AND alias = ? AND time_ms <= ? "
                         "ORDER BY id DESC LIMIT 1",
                         name, alias, time_ms));
  ASSIGN_OR_RETURN(bool row, st->Step());
  std::optional<int64_t> out;
  if (row) out = OptInt(*st, 0);
  st->Reset();
  return out;
}

// --------------------------------------------------------------- policies

absl::Status RegistryStore::SetPolicy(const std::string& name, const PromotionPolicy& policy,
                                      const std::string& user) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateUser(user));
  // Round-trip through the parser: what is stored is always readable back.
  const std::string text = PromotionPolicyToJson(policy).dump();
  RETURN_IF_ERROR(PromotionPolicyFromJson(PromotionPolicyToJson(policy)).status());
  const int64_t now = NowMs();
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    RETURN_IF_ERROR(CheckModelExists(conn, name));
    return Exec(conn,
                "INSERT INTO promotion_policies (name, policy, user_id, updated_time) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET policy = excluded.policy, user_id = excluded.user_id, "
                "updated_time = excluded.updated_time",
                name, text, user, now);
  });
}

absl::StatusOr<std::optional<PolicyRecord>> RegistryStore::GetPolicy(const std::string& name) {
  RETURN_IF_ERROR(ValidateModelName(name));
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  RETURN_IF_ERROR(CheckModelExists(*lease, name));
  ASSIGN_OR_RETURN(db::Statement * st,
                   Bound(*lease, "SELECT policy, user_id, updated_time FROM promotion_policies WHERE name = ?", name));
  ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) {
    st->Reset();
    return std::optional<PolicyRecord>();
  }
  std::string text = Text(*st, 0);
  PolicyRecord record;
  record.user = Text(*st, 1);
  record.updated_time = st->ColumnInt(2);
  st->Reset();
  auto json = ParseJson(text);
  if (!json.ok()) return absl::DataLossError(fmt::format("promotion policy of {}: stored text is not JSON", name));
  auto policy = PromotionPolicyFromJson(*json);
  if (!policy.ok()) {
    return absl::DataLossError(fmt::format("promotion policy of {}: {}", name, policy.status().message()));
  }
  record.policy = std::move(*policy);
  return std::optional<PolicyRecord>(std::move(record));
}

absl::Status RegistryStore::DeletePolicy(const std::string& name) {
  RETURN_IF_ERROR(ValidateModelName(name));
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<int64_t> found,
                     QueryInt(conn, "SELECT 1 FROM promotion_policies WHERE name = ?", name));
    if (!found) return absl::NotFoundError(fmt::format("Registered Model {} has no promotion policy", name));
    return Exec(conn, "DELETE FROM promotion_policies WHERE name = ?", name);
  });
}

// -------------------------------------------------------------- approvals

absl::Status RegistryStore::AddApproval(const std::string& name, int64_t version, const std::string& alias,
                                        const std::string& user, const std::string& comment) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateVersion(version));
  RETURN_IF_ERROR(ValidateAlias(alias));
  RETURN_IF_ERROR(ValidateName("user", user, kMaxUserLength));
  RETURN_IF_ERROR(ValidateText("comment", comment, kMaxTextFieldLength));
  const int64_t now = NowMs();
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    RETURN_IF_ERROR(CheckVersionExists(conn, name, version));
    ASSIGN_OR_RETURN(std::optional<int64_t> found,
                     QueryInt(conn,
                              "SELECT 1 FROM approvals WHERE name = ? AND version = ? AND alias = ? AND user_id = ?",
                              name, version, alias, user));
    if (found) {
      return absl::AlreadyExistsError(
          fmt::format("{} has already approved moving {} of {} to version {}", user, alias, name, version));
    }
    return Exec(conn,
                "INSERT INTO approvals (name, version, alias, user_id, comment, time_ms) VALUES (?, ?, ?, ?, ?, ?)",
                name, version, alias, user, comment, now);
  });
}

absl::StatusOr<std::vector<Approval>> RegistryStore::ListApprovals(const std::string& name, int64_t version,
                                                                   const std::string& alias) {
  RETURN_IF_ERROR(ValidateModelName(name));
  RETURN_IF_ERROR(ValidateVersion(version));
  RETURN_IF_ERROR(ValidateAlias(alias));
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st,
                   Bound(*lease,
                         "SELECT user_id, comment, time_ms FROM approvals WHERE name = ? AND version = ? AND "
                         "alias = ? ORDER BY time_ms, user_id",
                         name, version, alias));
  std::vector<Approval> out;
  RETURN_IF_ERROR(ForEachRow(st, [&](db::Statement& r) {
    out.push_back({name, version, alias, Text(r, 0), Text(r, 1), r.ColumnInt(2)});
  }));
  return out;
}

absl::Status RegistryStore::GrantRole(const std::string& role, const std::string& user) {
  RETURN_IF_ERROR(ValidateName("role", role, kMaxUserLength));
  RETURN_IF_ERROR(ValidateName("user", user, kMaxUserLength));
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    return Exec(conn, "INSERT INTO role_members (role, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING", role, user);
  });
}

absl::Status RegistryStore::RevokeRole(const std::string& role, const std::string& user) {
  RETURN_IF_ERROR(ValidateName("role", role, kMaxUserLength));
  RETURN_IF_ERROR(ValidateName("user", user, kMaxUserLength));
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    return Exec(conn, "DELETE FROM role_members WHERE role = ? AND user_id = ?", role, user);
  });
}

absl::StatusOr<std::vector<std::string>> RegistryStore::RolesOf(const std::string& user) {
  RETURN_IF_ERROR(ValidateName("user", user, kMaxUserLength));
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st, Bound(*lease, "SELECT role FROM role_members WHERE user_id = ? ORDER BY role", user));
  std::vector<std::string> out;
  RETURN_IF_ERROR(ForEachRow(st, [&](db::Statement& r) { out.push_back(Text(r, 0)); }));
  return out;
}

absl::StatusOr<std::vector<std::string>> RegistryStore::MembersOf(const std::string& role) {
  RETURN_IF_ERROR(ValidateName("role", role, kMaxUserLength));
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st, Bound(*lease, "SELECT user_id FROM role_members WHERE role = ? ORDER BY user_id", role));
  std::vector<std::string> out;
  RETURN_IF_ERROR(ForEachRow(st, [&](db::Statement& r) { out.push_back(Text(r, 0)); }));
  return out;
}

// ---------------------------------------------------------- gate decisions

absl::StatusOr<int64_t> RegistryStore::RecordDecision(const GateDecisionRecord& decision) {
  RETURN_IF_ERROR(ValidateModelName(decision.name));
  RETURN_IF_ERROR(ValidateAlias(decision.alias));
  RETURN_IF_ERROR(ValidateVersion(decision.version));
  RETURN_IF_ERROR(ValidateUser(decision.user));
  RETURN_IF_ERROR(ValidateText("reason", decision.reason, kMaxTextFieldLength));
  if (!decision.conditions.is_array()) return absl::InvalidArgumentError("'conditions' must be a JSON array");
  const std::string conditions = decision.conditions.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (conditions.size() > kMaxConfigLength) {
    return absl::InvalidArgumentError(fmt::format("'conditions' is {} bytes; the limit is {}", conditions.size(),
                                                  kMaxConfigLength));
  }
  const int64_t time = decision.time_ms != 0 ? decision.time_ms : NowMs();
  int64_t id = 0;
  RETURN_IF_ERROR(committer_->Submit([&](db::Connection& conn) -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<int64_t> max_id, QueryInt(conn, "SELECT MAX(id) FROM gate_decisions"));
    id = max_id.value_or(0) + 1;
    return Exec(conn,
                "INSERT INTO gate_decisions (id, name, alias, version, allowed, conditions, user_id, time_ms, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                id, decision.name, decision.alias, decision.version, decision.allowed ? 1 : 0, conditions,
                decision.user, time, decision.reason);
  }));
  return id;
}

absl::StatusOr<GateDecisionRecord> RegistryStore::GetDecision(int64_t id) {
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st, Bound(*lease, std::string(kDecisionColumns) + "WHERE id = ?", id));
  ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) {
    st->Reset();
    return absl::NotFoundError(fmt::format("Gate decision {} not found", id));
  }
  auto out = ReadDecision(*st);
  st->Reset();
  return out;
}

absl::StatusOr<std::vector<GateDecisionRecord>> RegistryStore::ListDecisions(const std::string& name,
                                                                             const std::optional<std::string>& alias,
                                                                             int limit) {
  RETURN_IF_ERROR(ValidateModelName(name));
  if (alias) RETURN_IF_ERROR(ValidateAlias(*alias));
  const int64_t n = limit > 0 ? int64_t{limit} : kNoLimit;
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  db::Statement* st = nullptr;
  if (alias) {
    ASSIGN_OR_RETURN(st, Bound(*lease, std::string(kDecisionColumns) + "WHERE name = ? AND alias = ? ORDER BY id DESC LIMIT ?",
                               name, *alias, n));
  } else {
    ASSIGN_OR_RETURN(st, Bound(*lease, std::string(kDecisionColumns) + "WHERE name = ? ORDER BY id DESC LIMIT ?", name, n));
  }
  std::vector<GateDecisionRecord> out;
  absl::Status bad;
  RETURN_IF_ERROR(ForEachRow(st, [&](db::Statement& r) {
    auto d = ReadDecision(r);
    if (d.ok()) out.push_back(std::move(*d));
    else if (bad.ok()) bad = d.status();
  }));
  RETURN_IF_ERROR(bad);
  return out;
}

// ------------------------------------------------------------ deployments

absl::StatusOr<Deployment> RegistryStore::PutDeployment(const Deployment& deployment) {
  const Deployment& d = deployment;
  RETURN_IF_ERROR(ValidateName("deployment name", d.name, kMaxModelNameLength));
  RETURN_IF_ERROR(ValidateModelName(d.model));
  RETURN_IF_ERROR(ValidateAlias(d.alias));
  if (d.canary_percent < 0 || d.canary_percent > 100) {
    return absl::InvalidArgumentError(fmt::format("canary_percent must be within 0..100, got {}", d.canary_percent));
  }
  if (d.canary_percent > 0 && !d.canary_version) {
    return absl::InvalidArgumentError("canary_percent is set but no canary_version");
  }
  if (d.canary_version) RETURN_IF_ERROR(ValidateVersion(*d.canary_version));
  if (d.shadow_version) RETURN_IF_ERROR(ValidateVersion(*d.shadow_version));
  if (!d.config.is_object()) return absl::InvalidArgumentError("Deployment config must be a JSON object");
  const std::string config = d.config.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (config.size() > kMaxConfigLength) {
    return absl::InvalidArgumentError(
        fmt::format("Deployment config is {} bytes; the limit is {}", config.size(), kMaxConfigLength));
  }
  const int64_t now = NowMs();
  Deployment out;
  RETURN_IF_ERROR(committer_->Submit([&](db::Connection& conn) -> absl::Status {
    RETURN_IF_ERROR(CheckModelExists(conn, d.model));
    ASSIGN_OR_RETURN(std::optional<int64_t> target,
                     QueryInt(conn, "SELECT version FROM model_aliases WHERE name = ? AND alias = ?", d.model, d.alias));
    if (!target) {
      return absl::FailedPreconditionError(
          fmt::format("Alias {} of Registered Model {} is not set; set it before deploying", d.alias, d.model));
    }
    if (d.canary_version) RETURN_IF_ERROR(CheckVersionExists(conn, d.model, *d.canary_version));
    if (d.shadow_version) RETURN_IF_ERROR(CheckVersionExists(conn, d.model, *d.shadow_version));
    ASSIGN_OR_RETURN(db::Statement * existing,
                     Bound(conn, "SELECT created_time, generation FROM deployments WHERE name = ?", d.name));
    ASSIGN_OR_RETURN(bool found, existing->Step());
    int64_t created = now, generation = 1;
    if (found) {
      created = existing->ColumnInt(0);
      generation = existing->ColumnInt(1) + 1;
    }
    existing->Reset();
    RETURN_IF_ERROR(Exec(conn,
                         "INSERT INTO deployments (name, model, alias, canary_version, canary_percent, shadow_version, "
                         "config, created_time, updated_time, generation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET model = excluded.model, alias = excluded.alias, "
                         "canary_version = excluded.canary_version, canary_percent = excluded.canary_percent, "
                         "shadow_version = excluded.shadow_version, config = excluded.config, "
                         "updated_time = excluded.updated_time, generation = excluded.generation",
                         d.name, d.model, d.alias, d.canary_version, d.canary_percent, d.shadow_version, config,
                         created, now, generation));
    RETURN_IF_ERROR(BumpChangeCounter(conn));
    out = d;
    out.created_time = created;
    out.updated_time = now;
    out.generation = generation;
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Deployment> RegistryStore::GetDeployment(const std::string& name) {
  RETURN_IF_ERROR(ValidateName("deployment name", name, kMaxModelNameLength));
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st, Bound(*lease, std::string(kSelectDeployment) + "WHERE name = ?", name));
  ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) {
    st->Reset();
    return absl::NotFoundError(fmt::format("Deployment {} not found", name));
  }
  auto out = ReadDeployment(*st);
  st->Reset();
  return out;
}

absl::StatusOr<std::vector<Deployment>> RegistryStore::ListDeployments() {
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  ASSIGN_OR_RETURN(db::Statement * st, Bound(*lease, std::string(kSelectDeployment) + "ORDER BY name"));
  std::vector<Deployment> out;
  absl::Status bad;
  RETURN_IF_ERROR(ForEachRow(st, [&](db::Statement& r) {
    auto d = ReadDeployment(r);
    if (d.ok()) out.push_back(std::move(*d));
    else if (bad.ok()) bad = d.status();
  }));
  RETURN_IF_ERROR(bad);
  return out;
}

absl::Status RegistryStore::DeleteDeployment(const std::string& name) {
  RETURN_IF_ERROR(ValidateName("deployment name", name, kMaxModelNameLength));
  return committer_->Submit([&](db::Connection& conn) -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<int64_t> found, QueryInt(conn, "SELECT 1 FROM deployments WHERE name = ?", name));
    if (!found) return absl::NotFoundError(fmt::format("Deployment {} not found", name));
    RETURN_IF_ERROR(Exec(conn, "DELETE FROM deployments WHERE name = ?", name));
    return BumpChangeCounter(conn);
  });
}

absl::StatusOr<int64_t> RegistryStore::ChangeCounter() {
  ASSIGN_OR_RETURN(auto lease, readers_->Acquire());
  ASSIGN_OR_RETURN(std::optional<int64_t> counter, QueryInt(*lease, "SELECT counter FROM registry_changes WHERE id = 1"));
  if (!counter) return absl::DataLossError("registry_changes has no row");
  return *counter;
}

}  // namespace cairn::registry
