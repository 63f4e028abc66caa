#include "api/local_registry.h"

#include <fmt/format.h>

#include "api/registry_api.h"
#include "registry/registry_store.h"
#include "serving/registry_source.h"

namespace cairn::api {

absl::StatusOr<int64_t> LocalRegistry::ChangeCounter() { return dir_.registry().ChangeCounter(); }

absl::StatusOr<std::vector<serving::DeploymentSpec>> LocalRegistry::ListDeployments() {
  ASSIGN_OR_RETURN(std::vector<registry::Deployment> list, dir_.registry().ListDeployments());
  std::vector<serving::DeploymentSpec> out;
  for (const registry::Deployment& d : list) {
    serving::DeploymentSpec spec;
    spec.name = d.name;
    spec.model = d.model;
    spec.alias = d.alias;
    spec.canary_version = d.canary_version;
    spec.canary_percent = d.canary_percent;
    spec.shadow_version = d.shadow_version;
    spec.generation = d.generation;
    auto runner = serving::RunnerOptionsFromConfig(d.config);
    if (!runner.ok()) return Annotate(runner.status(), fmt::format("deployment '{}'", d.name));
    spec.runner = *runner;
    out.push_back(std::move(spec));
  }
  return out;
}

absl::StatusOr<int64_t> LocalRegistry::ResolveAlias(const std::string& model, const std::string& alias) {
  ASSIGN_OR_RETURN(registry::ModelVersion v, dir_.registry().GetModelVersionByAlias(model, alias));
  return v.version;
}

absl::StatusOr<std::string> LocalRegistry::FetchVersion(const std::string& model, int64_t version,
                                                        const std::string& cache_dir) {
  ASSIGN_OR_RETURN(ModelArtifact artifact, ModelVersionFiles(dir_, model, version));
  std::vector<serving::VersionFile> files;
  for (const ModelFile& f : artifact.files) files.push_back({f.path, f.size, f.digest});
  return serving::MaterializeVersion(
      cache_dir, artifact.digest, files,
      [&](const serving::VersionFile& f, const std::function<absl::Status(std::string_view)>& sink) -> absl::Status {
        ASSIGN_OR_RETURN(Digest digest, Digest::FromHex(f.digest));
        ASSIGN_OR_RETURN(auto reader, dir_.objects().Open(digest));
        std::string buffer(1 << 16, '\0');
        for (;;) {
          ASSIGN_OR_RETURN(size_t n, reader->Read(buffer.data(), buffer.size()));
          if (n == 0) return absl::OkStatus();
          RETURN_IF_ERROR(sink(std::string_view(buffer.data(), n)));
        }
      });
}

}  // namespace cairn::api
