// Model lineage and promotion-gate evidence: where a registered model
// version came from, read out of the tracking and dataset stores, and the
// evidence a promotion gate (registry/promotion_gate.h) needs about it.
//
// Lineage walk. A version names the run that logged it (run_id). That run
// has code (tags cairn.code.digest / cairn.code.git_commit, or MLflow's
// mlflow.source.git.commit), an environment (cairn.env.*), params, and
// dataset inputs. An input whose digest is a Cairn dataset commit id is
// resolved against the dataset store: dataset name, split (the input is named
// "DATASET#SPLIT", or tagged cairn.data.split), whether that split is sealed
// there. A commit whose author is "cairn-run:RUN" was produced by that run (a
// pipeline step's output, docs/pipelines.md), which is walked the same way,
// recursively: this is the version's TRAINING lineage. Evaluation runs are
// not part of it (they consume the model, they do not produce it). The walk
// guards against cycles and stops at kMaxLineageDepth producer hops and
// kMaxLineageRuns runs.
//
// Gate evidence, for a candidate version and a policy's evaluation rule
// (dataset D, split S):
//   - evaluation: the newest FINISHED run that read D#S at a Cairn commit and
//     is linked to the candidate: tagged cairn.model_version = "NAME/VERSION"
//     (or "NAME@VERSION"), or it read a commit the version's run produced
//     (tags cairn.output.*: a pipeline's evaluate step consuming train's
//     model). Its latest metric values, the commit read, whether S is sealed
//     there.
//   - current: the version the alias points at now, and its evaluation found
//     the same way (the baseline for max_regression).
//   - contamination: every place the training lineage read S's files: an
//     input of D naming S, or a whole-dataset input of D at a commit having S
//     (unless the read left S out: a pipeline step that is not `evaluate`
//     reads whole datasets without their sealed splits, tag cairn.data_read).
//   - approvals of (name, version, alias), each with the approver's roles.
//
// Thread-safety: the functions are thread-safe (the stores are); each call
// works on its own state.
//
// Ownership: nothing is retained; `dir` must outlive the call.
//
// Usage:
//   ASSIGN_OR_RETURN(registry::GateDecision d,
//                    CheckAliasMove(dir, "churn", "production", 4, "ana", "beats v3"));
//   if (!d.allowed) return absl::FailedPreconditionError(registry::DescribeUnmet(d));
//   ASSIGN_OR_RETURN(Json graph, ModelLineageGraph(dir, "churn", 4));
#ifndef CAIRN_API_MODEL_LINEAGE_H_
#define CAIRN_API_MODEL_LINEAGE_H_

#include <cstdint>
#include <optional>
#include <string>

#include "api/data_directory.h"
#include "base/json.h"
#include "base/status.h"
#include "registry/promotion_gate.h"

namespace cairn::api {

// How far the lineage walk follows runs that produced a commit another run
// read, and how many runs it visits at most; a graph cut short says so
// ("truncated": true).
inline constexpr int kMaxLineageDepth = 16;
inline constexpr int kMaxLineageRuns = 256;

// The tag a run carries to say which model version it evaluated:
// "NAME/VERSION" (or "NAME@VERSION").
inline constexpr char kModelVersionTag[] = "cairn.model_version";

// Evaluates the promotion policy of `name` (if any guards `alias`) for moving
// it to `version`, records the decision in the registry (RecordDecision) and
// returns it. allowed==true with no conditions when no policy guards the
// alias. kNotFound for an unknown model/version; kInvalidArgument for a
// malformed alias.
absl::StatusOr<registry::GateDecision> CheckAliasMove(DataDirectory& dir, const std::string& name,
                                                      const std::string& alias, int64_t version,
                                                      const std::string& user, const std::string& reason);

// What CheckAliasMove decided, with what a caller needs to make the move
// safely: the recorded decision's id (for AliasMove::decision_id) and the
// version the alias pointed at when the gate was evaluated (for
// AliasMove::expected_from with check_expected, so that a gate checked
// against version N never moves an alias someone moved off N meanwhile).
struct AliasMoveCheck {
  registry::GateDecision decision;
  int64_t decision_id = 0;
  std::optional<int64_t> current_version;
};
// CheckAliasMove, returning the decision's id and baseline too.
absl::StatusOr<AliasMoveCheck> CheckAliasMoveRecorded(DataDirectory& dir, const std::string& name,
                                                      const std::string& alias, int64_t version,
                                                      const std::string& user, const std::string& reason);

// The evidence EvaluateGate needs to move `alias` of `name` to `version`
// under `policy` (see the top of this file). Reads only. kNotFound for an
// unknown model/version.
absl::StatusOr<registry::GateEvidence> CollectGateEvidence(DataDirectory& dir, const registry::PromotionPolicy& policy,
                                                           const std::string& name, const std::string& alias,
                                                           int64_t version);

// The lineage of a model version as a graph:
//   {"root": ID, "truncated": bool,
//    "nodes": [{"id", "type", "label", "attrs"}], "edges": [{"from", "to", "kind"}]}
// Node types and their attrs:
//   model_version   name, version, run_id, source, aliases, artifact_digest
//   run             run_id, run_name, experiment_id, status, user_id,
//                   start_time, end_time, pipeline, step, role (missing: true
//                   when the version names a run that does not exist)
//   code            digest, git_commit, git_dirty, source_name
//   environment     digest, python, os, host
//   params          the run's params, name -> value
//   dataset_commit  dataset, commit, split ("" = whole dataset), sealed (the
//                   split is sealed there; for a whole-dataset read: the read
//                   included a sealed split's files), sealed_excluded,
//                   message, author, created_at_ms
//   dataset         an input whose digest is no Cairn commit (a plain MLflow
//                   script's dataset): name, digest, source_type, source
// Edges point from a thing to what it came from: model_version -trained_by->
// run; run -code-> code; run -environment-> environment; run -params->
// params; run -read-> dataset_commit|dataset (with "context", the input's
// mlflow.data.context); dataset_commit -produced_by-> run (the upstream run
// that committed it). kNotFound for an unknown model/version.
absl::StatusOr<Json> ModelLineageGraph(DataDirectory& dir, const std::string& name, int64_t version);

}  // namespace cairn::api

#endif  // CAIRN_API_MODEL_LINEAGE_H_
