// Where an inference plane learns what to serve when the registry is
// elsewhere: RemoteRegistry is a ModelSource over a Cairn server's HTTP API
// (what `cairn serve` replicas use). Also the pieces every ModelSource
// shares: reading a deployment's serving settings, and materialising a
// version's files into the plane's content-addressed model cache.
//
// API used (docs/api-registry.md): GET /api/cairn/v1/registry/changes,
// GET /api/cairn/v1/deployments, GET /api/2.0/mlflow/registered-models/alias,
// GET /api/cairn/v1/models/NAME/versions/V/files[/PATH].
//
// Model cache layout: CACHE/<artifact digest>/<files>, written into a
// temporary sibling folder, every file checked against its SHA-256, then
// renamed into place, so a folder under its digest is always complete.
//
// Thread-safety: RemoteRegistry is thread-safe (one connection, used under a
// mutex); the functions are stateless.
//
// Usage:
//   ASSIGN_OR_RETURN(auto source, RemoteRegistry::Create("http://cairn:5000"));
//   ASSIGN_OR_RETURN(auto plane, InferencePlane::Create(*source, options, env));
#ifndef CAIRN_SERVING_REGISTRY_SOURCE_H_
#define CAIRN_SERVING_REGISTRY_SOURCE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/json.h"
#include "base/status.h"
#include "http/http.h"
#include "serving/deployment.h"

namespace cairn::serving {

// A deployment's "config" object (max_batch_size, max_queue_delay_us,
// instances, queue_capacity, timeout_ms) as RunnerOptions; absent fields keep
// their defaults. kInvalidArgument naming the field for a wrong type or range.
absl::StatusOr<RunnerOptions> RunnerOptionsFromConfig(const Json& config);

// A deployment as the deployments API writes it:
// {"name","model","alias","canary":{"version","percent"}|null,"shadow":{"version"}|null,"config":{},"generation"}.
absl::StatusOr<DeploymentSpec> DeploymentSpecFromJson(const Json& deployment);

// One file of a version's artifact.
struct VersionFile {
  std::string path;    // relative, '/'-separated, no ".."
  int64_t size = 0;
  std::string digest;  // hex SHA-256
};

// Makes CACHE/`artifact_digest` hold `files` (unless it already does) and
// returns its path. `write(file, sink)` streams one file's bytes to `sink`.
// kDataLoss when a file's bytes do not match its digest or size;
// kInvalidArgument for an unsafe path.
absl::StatusOr<std::string> MaterializeVersion(
    const std::string& cache_dir, const std::string& artifact_digest, const std::vector<VersionFile>& files,
    const std::function<absl::Status(const VersionFile&, const std::function<absl::Status(std::string_view)>&)>&
        write);

class RemoteRegistry : public ModelSource {
 public:
  // `url`: "http://host:port" of a Cairn server. Connects lazily.
  static absl::StatusOr<std::unique_ptr<RemoteRegistry>> Create(const std::string& url);

  absl::StatusOr<int64_t> ChangeCounter() override;
  absl::StatusOr<std::vector<DeploymentSpec>> ListDeployments() override;
  absl::StatusOr<int64_t> ResolveAlias(const std::string& model, const std::string& alias) override;
  absl::StatusOr<std::string> FetchVersion(const std::string& model, int64_t version,
                                           const std::string& cache_dir) override;

 private:
  explicit RemoteRegistry(std::unique_ptr<http::Client> client) : client_(std::move(client)) {}
  absl::Mutex mu_;
  std::unique_ptr<http::Client> client_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cairn::serving

#endif  // CAIRN_SERVING_REGISTRY_SOURCE_H_
