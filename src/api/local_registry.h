// LocalRegistry: the ModelSource of the inference plane `cairn server` hosts
// in-process: deployments and aliases straight from the data directory's
// registry, model files straight from its object store (no HTTP hop).
// `cairn serve` replicas use serving::RemoteRegistry instead; both feed the
// same InferencePlane.
//
// Thread-safety: thread-safe. `dir` must outlive it.
//
// Usage:
//   LocalRegistry source(dir);
//   ASSIGN_OR_RETURN(auto plane, serving::InferencePlane::Create(source, options, dir.env()));
#ifndef CAIRN_API_LOCAL_REGISTRY_H_
#define CAIRN_API_LOCAL_REGISTRY_H_

#include <string>
#include <vector>

#include "api/data_directory.h"
#include "serving/deployment.h"

namespace cairn::api {

class LocalRegistry : public serving::ModelSource {
 public:
  explicit LocalRegistry(DataDirectory& dir) : dir_(dir) {}

  absl::StatusOr<int64_t> ChangeCounter() override;
  absl::StatusOr<std::vector<serving::DeploymentSpec>> ListDeployments() override;
  absl::StatusOr<int64_t> ResolveAlias(const std::string& model, const std::string& alias) override;
  absl::StatusOr<std::string> FetchVersion(const std::string& model, int64_t version,
                                           const std::string& cache_dir) override;

 private:
  DataDirectory& dir_;
};

}  // namespace cairn::api

#endif  // CAIRN_API_LOCAL_REGISTRY_H_
