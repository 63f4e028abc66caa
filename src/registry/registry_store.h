// RegistryStore: the model registry's durable state on a db::Database —
// registered models, their versions, tags and aliases (with every alias move
// recorded in an append-only history), promotion policies, approvals, role
// membership, gate decisions, and deployments (what inference planes serve).
//
// Semantics follow MLflow's model registry (mlflow/protos/model_registry.proto
// and its SQLAlchemy store), so that the REST layer (api/registry_api) maps
// each call and field 1:1 to MLflow's JSON: field names below are MLflow's.
// Times are Unix milliseconds taken from Env::NowMicros().
//
// Durability and atomicity: every mutation is one transaction, committed
// through a db::GroupCommitter, and returns only once it is durable (fsync'd
// when the database is opened durable). A call that fails changes nothing.
// The committer runs units one at a time, so a read-modify-write inside one
// unit (an alias move reading where the alias points now) is serialised with
// every other mutation: concurrent alias moves on one model produce a history
// whose from/to versions chain without gaps.
//
// Deletion keeps the audit trail: deleting a model or version removes its
// aliases (recording each removal in the alias history) but keeps the alias
// history, approvals and gate decisions.
//
// Errors: kInvalidArgument for malformed input (nothing is changed),
// kNotFound for a missing model/version/alias/deployment, kAlreadyExists for a
// duplicate name or approval, kFailedPrecondition for a state conflict (e.g.
// deleting a model a deployment serves, an alias move whose expected origin
// no longer holds). Database errors pass through (see db/database.h).
//
// Thread-safety: thread-safe. Reads use a pool of connections and never block
// writers (WAL).
//
// Ownership: the store does not own `db` or `env`; both must outlive it.
// Results are returned by value.
//
// Usage:
//   ASSIGN_OR_RETURN(auto store, RegistryStore::Create(db, env));
//   ASSIGN_OR_RETURN(RegisteredModel m, store->CreateRegisteredModel("churn", "", {}));
//   ASSIGN_OR_RETURN(ModelVersion v, store->CreateModelVersion(
//       {.name = "churn", .source = "runs:/abc/model", .run_id = "abc", .user_id = "ana"}));
//   RETURN_IF_ERROR(store->SetAlias("churn", "production", v.version,
//                                   {.user = "ana", .reason = "beats v1 by 2%"}));
//   ASSIGN_OR_RETURN(std::optional<int64_t> then,
//                    store->AliasAt("churn", "production", march_3rd_ms));
#ifndef CAIRN_REGISTRY_REGISTRY_STORE_H_
#define CAIRN_REGISTRY_REGISTRY_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/env.h"
#include "base/json.h"
#include "base/status.h"
#include "db/connection_pool.h"
#include "db/database.h"
#include "db/group_commit.h"
#include "registry/promotion_gate.h"

namespace cairn::registry {

// Limits on input (kInvalidArgument beyond them).
inline constexpr size_t kMaxModelNameLength = 256;
inline constexpr size_t kMaxAliasLength = 255;            // MLflow's alias rule
inline constexpr size_t kMaxTagKeyLength = 250;           // MLflow's MAX_MODEL_REGISTRY_TAG_KEY_LENGTH
inline constexpr size_t kMaxTagValueLength = 100000;      // MLflow's MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH
inline constexpr size_t kMaxDescriptionLength = 65536;
inline constexpr size_t kMaxTextFieldLength = 65536;      // source, run_link, reason, comment, ...
inline constexpr int kSearchModelsMaxResultsDefault = 100;    // MLflow's defaults and limits
inline constexpr int kSearchModelsMaxResultsLimit = 1000;
inline constexpr int kSearchVersionsMaxResultsDefault = 10000;
inline constexpr int kSearchVersionsMaxResultsLimit = 200000;

// MLflow's legacy stages ("current_stage"); matched case-insensitively on
// input and stored in this spelling.
inline constexpr char kStageNone[] = "None";
inline constexpr char kStageStaging[] = "Staging";
inline constexpr char kStageProduction[] = "Production";
inline constexpr char kStageArchived[] = "Archived";

// The canonical spelling of a stage name ("production" -> "Production");
// kInvalidArgument for anything else.
absl::StatusOr<std::string> CanonicalStage(const std::string& stage);

// kInvalidArgument unless `alias` follows MLflow's rules: 1..255 characters
// of [A-Za-z0-9_-], not "latest" (any case), not of the form v<digits>
// (which would read as a version reference).
absl::Status ValidateAlias(const std::string& alias);
// kInvalidArgument unless `name` is a valid registered model (or deployment)
// name: 1..256 bytes of valid UTF-8 without control characters.
absl::Status ValidateModelName(const std::string& name);

using TagMap = std::map<std::string, std::string>;

struct ModelVersion {
  std::string name;
  int64_t version = 0;  // 1, 2, ... per model; never reused while the model lives
  int64_t creation_timestamp = 0;
  int64_t last_updated_timestamp = 0;
  std::string user_id;
  std::string current_stage = kStageNone;
  std::string description;
  std::string source;  // artifact location, e.g. "runs:/<run_id>/model" or "mlflow-artifacts:/..."
  std::string run_id;
  std::string run_link;
  std::string status = "READY";
  std::string status_message;
  TagMap tags;
  std::vector<std::string> aliases;  // aliases pointing at this version, sorted
  std::string artifact_digest;       // digest of the artifact's file list, as given at creation ("" if none)
};

struct RegisteredModel {
  std::string name;
  int64_t creation_timestamp = 0;
  int64_t last_updated_timestamp = 0;
  std::string user_id;
  std::string description;
  TagMap tags;
  std::map<std::string, int64_t> aliases;  // alias -> version
  // MLflow's latest_versions: for each stage that has versions, the highest
  // version in it, ordered by stage name.
  std::vector<ModelVersion> latest_versions;
};

struct CreateModelVersionRequest {
  std::string name;
  std::string source;
  std::string run_id;
  std::string run_link;
  std::string description;
  std::string user_id;
  TagMap tags;
  std::string artifact_digest;
};

struct SearchRequest {
  std::string filter;   // grammar: model_filter.h
  int max_results = 0;  // <= 0: the default for the kind of search
  std::vector<std::string> order_by;
  std::string page_token;  // from a previous result; "" for the first page
};

struct SearchModelsResult {
  std::vector<RegisteredModel> registered_models;
  std::string next_page_token;  // "" when there are no more
};

struct SearchVersionsResult {
  std::vector<ModelVersion> model_versions;
  std::string next_page_token;
};

// Who moves an alias and why; recorded in the alias history.
struct AliasMove {
  std::string user;
  std::string reason;
  std::optional<int64_t> decision_id;  // the gate decision that allowed it, if any
  // Optimistic check: when `check_expected` is set, the move happens only if
  // the alias points at `expected_from` now (nullopt: not set), else
  // kFailedPrecondition. Lets a gate evaluated against version N refuse to
  // move an alias that someone moved off N meanwhile.
  bool check_expected = false;
  std::optional<int64_t> expected_from;
};

// One move of an alias. from_version nullopt: the alias was created;
// to_version nullopt: it was deleted (directly, or with its version/model).
struct AliasHistoryEntry {
  int64_t id = 0;  // increasing in commit order
  std::string name;
  std::string alias;
  std::optional<int64_t> from_version;
  std::optional<int64_t> to_version;
  std::string user;
  int64_t time_ms = 0;
  std::string reason;
  std::optional<int64_t> decision_id;
};

struct Approval {
  std::string name;
  int64_t version = 0;
  std::string alias;
  std::string user;
  std::string comment;
  int64_t time_ms = 0;
};

// A stored promotion policy with who set it and when.
struct PolicyRecord {
  PromotionPolicy policy;
  std::string user;
  int64_t updated_time = 0;
};

// The outcome of one gate evaluation, as recorded for audit.
struct GateDecisionRecord {
  int64_t id = 0;  // assigned by RecordDecision
  std::string name;
  std::string alias;
  int64_t version = 0;
  bool allowed = false;
  Json conditions = Json::array();  // GateDecisionToJson(...)["conditions"] or any JSON array
  std::string user;
  int64_t time_ms = 0;  // 0 on input: now
  std::string reason;
};

// What an inference plane serves under one Open Inference Protocol model name.
struct Deployment {
  std::string name;   // the OIP model name; unique
  std::string model;  // registered model
  std::string alias;  // serves model@alias
  std::optional<int64_t> canary_version;
  int canary_percent = 0;  // 0..100: share of requests sent to canary_version
  std::optional<int64_t> shadow_version;  // mirrored; responses recorded, not returned
  // Serving settings, passed through: max_batch_size, max_queue_delay_us,
  // instances, queue_capacity, timeout_ms, ... Must be a JSON object.
  Json config = Json::object();
  int64_t created_time = 0;  // set by the store
  int64_t updated_time = 0;  // set by the store
  int64_t generation = 0;    // set by the store: 1 on creation, +1 on every change
};

class RegistryStore {
 public:
  // Migrates the "registry" schema. `db` and `env` are not owned and must
  // outlive the store.
  static absl::StatusOr<std::unique_ptr<RegistryStore>> Create(db::Database& db, Env& env);
  ~RegistryStore();
  RegistryStore(const RegistryStore&) = delete;
  RegistryStore& operator=(const RegistryStore&) = delete;

  // ------------------------------------------------------- registered models
  // kAlreadyExists if the name is taken.
  absl::StatusOr<RegisteredModel> CreateRegisteredModel(const std::string& name, const std::string& description,
                                                        const TagMap& tags, const std::string& user_id = "");
  absl::StatusOr<RegisteredModel> GetRegisteredModel(const std::string& name);
  // Renames the model and, in the same transaction, its versions, tags,
  // aliases, alias history, approvals, decisions, policy and the `model`
  // field of deployments. kAlreadyExists if new_name is taken.
  absl::StatusOr<RegisteredModel> RenameRegisteredModel(const std::string& name, const std::string& new_name);
  absl::StatusOr<RegisteredModel> UpdateRegisteredModel(const std::string& name, const std::string& description);
  // Deletes the model, its versions, tags, aliases (recording their removal),
  // approvals and policy; alias history and gate decisions stay.
  // kFailedPrecondition while a deployment serves the model.
  absl::Status DeleteRegisteredModel(const std::string& name, const std::string& user = "");
  absl::Status SetRegisteredModelTag(const std::string& name, const std::string& key, const std::string& value);
  // kNotFound if the model does not exist; deleting a tag that is not set is
  // OK (as in MLflow).
  absl::Status DeleteRegisteredModelTag(const std::string& name, const std::string& key);
  // Filter grammar and order_by keys: model_filter.h. Default order: name ASC.
  absl::StatusOr<SearchModelsResult> SearchRegisteredModels(const SearchRequest& request);

  // ---------------------------------------------------------- model versions
  // The new version is max(existing) + 1, assigned inside the transaction.
  // kNotFound if the model does not exist.
  absl::StatusOr<ModelVersion> CreateModelVersion(const CreateModelVersionRequest& request);
  absl::StatusOr<ModelVersion> GetModelVersion(const std::string& name, int64_t version);
  absl::StatusOr<ModelVersion> UpdateModelVersion(const std::string& name, int64_t version,
                                                  const std::string& description);
  // Moves the version to `stage` (any case; see CanonicalStage). With
  // archive_existing and stage Staging or Production, other versions in that
  // stage move to Archived.
  absl::StatusOr<ModelVersion> TransitionModelVersionStage(const std::string& name, int64_t version,
                                                           const std::string& stage, bool archive_existing);
  // Deletes the version. Aliases pointing at it are removed (each removal
  // recorded, by `user`); deployments pinning it as canary or shadow lose
  // that pin (their generation bumps). Its approvals go too, so that a
  // later version can never inherit them.
  absl::Status DeleteModelVersion(const std::string& name, int64_t version, const std::string& user = "");
  absl::Status SetModelVersionTag(const std::string& name, int64_t version, const std::string& key,
                                  const std::string& value);
  // kNotFound if the version does not exist; a tag that is not set is OK.
  absl::Status DeleteModelVersionTag(const std::string& name, int64_t version, const std::string& key);
  // Default order: last_updated_timestamp DESC, name ASC, version_number DESC (MLflow's).
  absl::StatusOr<SearchVersionsResult> SearchModelVersions(const SearchRequest& request);
  // MLflow's get-latest-versions: for each stage in `stages` (all stages if
  // empty), the highest version in it. kInvalidArgument for an unknown stage.
  absl::StatusOr<std::vector<ModelVersion>> GetLatestVersions(const std::string& name,
                                                              const std::vector<std::string>& stages);

  // ----------------------------------------------------------------- aliases
  // Points `alias` at `version` and appends the move to the alias history,
  // in one transaction. Setting an alias to the version it already points at
  // changes nothing and records nothing. kNotFound if model or version is
  // missing; kFailedPrecondition if move.check_expected fails.
  absl::Status SetAlias(const std::string& name, const std::string& alias, int64_t version, const AliasMove& move);
  // Removes the alias and records the removal. kNotFound if it is not set.
  absl::Status DeleteAlias(const std::string& name, const std::string& alias, const AliasMove& move);
  // kNotFound if the model or alias does not exist.
  absl::StatusOr<ModelVersion> GetModelVersionByAlias(const std::string& name, const std::string& alias);
  // Moves of `alias` of model `name`, newest first; at most `limit` (<= 0:
  // all). Empty (not kNotFound) for an alias that never existed.
  absl::StatusOr<std::vector<AliasHistoryEntry>> AliasHistory(const std::string& name, const std::string& alias,
                                                              int limit);
  // The version `alias` pointed at, at time `time_ms` (after every move
  // recorded at or before it); nullopt if it was not set then.
  absl::StatusOr<std::optional<int64_t>> AliasAt(const std::string& name, const std::string& alias, int64_t time_ms);

  // --------------------------------------------------------------- policies
  // Replaces the model's promotion policy. kNotFound if the model is missing.
  absl::Status SetPolicy(const std::string& name, const PromotionPolicy& policy, const std::string& user);
  // nullopt if the model has none; kNotFound if the model is missing.
  absl::StatusOr<std::optional<PolicyRecord>> GetPolicy(const std::string& name);
  // kNotFound if the model has no policy.
  absl::Status DeletePolicy(const std::string& name);

  // -------------------------------------------------------------- approvals
  // Records `user`'s approval of moving `alias` to `version`. One per user
  // per (version, alias): kAlreadyExists on a repeat. kNotFound if the
  // version is missing.
  absl::Status AddApproval(const std::string& name, int64_t version, const std::string& alias,
                           const std::string& user, const std::string& comment);
  // Oldest first.
  absl::StatusOr<std::vector<Approval>> ListApprovals(const std::string& name, int64_t version,
                                                      const std::string& alias);
  // Role membership (no auth module yet). Granting twice, or revoking what
  // was not granted, is OK.
  absl::Status GrantRole(const std::string& role, const std::string& user);
  absl::Status RevokeRole(const std::string& role, const std::string& user);
  absl::StatusOr<std::vector<std::string>> RolesOf(const std::string& user);     // sorted
  absl::StatusOr<std::vector<std::string>> MembersOf(const std::string& role);   // sorted

  // ---------------------------------------------------------- gate decisions
  // Appends a decision; returns its id. The model need not exist any more
  // (decisions are audit records); conditions must be a JSON array.
  absl::StatusOr<int64_t> RecordDecision(const GateDecisionRecord& decision);
  absl::StatusOr<GateDecisionRecord> GetDecision(int64_t id);
  // Newest first; at most `limit` (<= 0: all); optionally one alias only.
  absl::StatusOr<std::vector<GateDecisionRecord>> ListDecisions(const std::string& name,
                                                                const std::optional<std::string>& alias, int limit);

  // ------------------------------------------------------------ deployments
  // Creates or replaces the deployment `deployment.name`; the store sets its
  // times and generation and returns what it stored. kNotFound if the model,
  // or a canary/shadow version, is missing; kFailedPrecondition if the alias
  // is not set; kInvalidArgument for a bad name, percent outside 0..100, a
  // percent without canary version, or a config that is not an object.
  absl::StatusOr<Deployment> PutDeployment(const Deployment& deployment);
  absl::StatusOr<Deployment> GetDeployment(const std::string& name);
  // Ordered by name.
  absl::StatusOr<std::vector<Deployment>> ListDeployments();
  absl::Status DeleteDeployment(const std::string& name);

  // A counter that grows with every change an inference plane must react to:
  // alias moves, version and model deletions, renames, deployment changes.
  // One indexed read; poll it and reload only when it moved.
  absl::StatusOr<int64_t> ChangeCounter();

 private:
  RegistryStore(Env& env, std::unique_ptr<db::GroupCommitter> committer,
                std::unique_ptr<db::ConnectionPool> readers);
  int64_t NowMs() const;

  Env& env_;
  std::unique_ptr<db::GroupCommitter> committer_;
  std::unique_ptr<db::ConnectionPool> readers_;
};

}  // namespace cairn::registry

#endif  // CAIRN_REGISTRY_REGISTRY_STORE_H_
