// The model registry over HTTP, served from a DataDirectory:
//
//  * MLflow's registry REST API (/api/2.0/mlflow/registered-models/...,
//    /api/2.0/mlflow/model-versions/..., and the same under /ajax-api/), so
//    that the `mlflow` client's registry calls work unchanged. Paths, fields
//    and error codes follow mlflow/protos/model_registry.proto and
//    mlflow/server/handlers.py.
//  * Cairn's extensions under /api/cairn/v1/: gated alias moves and their
//    history, promotion policies, approvals, roles, gate decisions, lineage,
//    a version's files (what inference planes download), deployments, and a
//    change counter inference planes poll.
//
// Every alias move, through either API, passes the promotion gate
// (api/model_lineage.h: CheckAliasMove). The caller is named by the
// X-Cairn-User header, else "local" (no auth module yet).
//
// A version's artifact: at model-versions/create the source (runs:/RUN/PATH,
// mlflow-artifacts:/..., or a path below the run's artifact_uri) is resolved
// to a folder of the run's artifacts stored on this server; its file list is
// written to the object store as a manifest ("PATH\tSHA256\tSIZE\n" lines,
// sorted by path) whose SHA-256 is the version's artifact_digest. The files
// a version serves are the ones listed then, whatever happens to the run's
// artifacts later. Full reference: docs/api-registry.md.
//
// Thread-safety: handlers are thread-safe; `dir` must outlive the router.
#ifndef CAIRN_API_REGISTRY_API_H_
#define CAIRN_API_REGISTRY_API_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "api/data_directory.h"
#include "base/sha256.h"
#include "base/status.h"
#include "http/http.h"

namespace cairn::api {

void AddRegistryRoutes(DataDirectory& dir, http::Router& router);

// One file of a model version's artifact.
struct ModelFile {
  std::string path;    // relative to the model folder, '/'-separated
  int64_t size = 0;
  std::string digest;  // hex SHA-256 of the content (its object's name)
};

// A model folder read from the tracking store's artifacts.
struct ModelArtifact {
  std::string folder;            // below the artifact root, e.g. "0/<run_id>/artifacts/model"
  std::vector<ModelFile> files;  // sorted by path
  std::string manifest;          // ArtifactManifest(files)
  std::string digest;            // hex SHA-256 of `manifest`: the version's artifact_digest
};

// Where `source` lies in this server's artifact store: the folder below the
// artifact root. Accepts runs:/RUN_ID[/PATH], mlflow-artifacts:[//HOST]/PATH,
// http(s)://.../api/2.0/mlflow-artifacts/artifacts/PATH, and any path below
// the run's artifact_uri. `run_id` may be empty; when given, runs:/ must name
// the same run and the folder must lie inside that run's artifacts.
// kInvalidArgument (INVALID_PARAMETER_VALUE) for sources stored elsewhere
// (s3://, file:, models:/...), relative path tricks ("..", "%2e%2e"), or a
// mismatched run; kNotFound for an unknown run.
absl::StatusOr<std::string> ResolveArtifactFolder(tracking::TrackingStore& tracking, const std::string& source,
                                                  const std::string& run_id);

// Lists every file below `folder` (or the one file at `folder`) with its
// digest. kInvalidArgument if there is none ("no files"), or a file's path
// holds a tab or newline.
absl::StatusOr<ModelArtifact> ReadModelArtifact(tracking::TrackingStore& tracking, const std::string& folder);

// "PATH\tSHA256\tSIZE\n" per file, sorted by path.
std::string ArtifactManifest(std::vector<ModelFile> files);
// Inverse of ArtifactManifest; kDataLoss for malformed text.
absl::StatusOr<std::vector<ModelFile>> ParseArtifactManifest(std::string_view text);

// The files of model version `name`/`version`: from its manifest object, or
// (when that object is gone) re-read from its source and checked against
// artifact_digest (kDataLoss if the run's artifacts changed since).
absl::StatusOr<ModelArtifact> ModelVersionFiles(DataDirectory& dir, const std::string& name, int64_t version);

// Calls `add` for every object registered versions need (their manifests and
// files): roots for garbage collection beside the runs' artifacts.
absl::Status ForEachModelVersionObject(DataDirectory& dir, const std::function<void(const Digest&)>& add);

}  // namespace cairn::api

#endif  // CAIRN_API_REGISTRY_API_H_
