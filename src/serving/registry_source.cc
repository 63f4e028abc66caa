#include "serving/registry_source.h"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "base/sha256.h"

namespace cairn::serving {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<int64_t> ConfigInt(const Json& config, const char* field, int64_t fallback, int64_t min,
                                  int64_t max) {
  auto it = config.find(field);
  if (it == config.end() || it->is_null()) return fallback;
  if (!it->is_number_integer()) return absl::InvalidArgumentError(fmt::format("config.{}: an integer", field));
  int64_t v = it->get<int64_t>();
  if (v < min || v > max) {
    return absl::InvalidArgumentError(fmt::format("config.{}: {} is outside {}..{}", field, v, min, max));
  }
  return v;
}

bool SafeRelativePath(std::string_view p) {
  if (p.empty() || p.front() == '/' || p.find('\0') != std::string_view::npos) return false;
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    std::string_view part = p.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

std::string EncodePath(std::string_view path) { return http::UrlEncodePath(path); }

}  // namespace

absl::StatusOr<RunnerOptions> RunnerOptionsFromConfig(const Json& config) {
  RunnerOptions o;
  if (config.is_null()) return o;
  if (!config.is_object()) return absl::InvalidArgumentError("config: a JSON object");
  ASSIGN_OR_RETURN(int64_t batch, ConfigInt(config, "max_batch_size", o.max_batch_size, 1, 65536));
  ASSIGN_OR_RETURN(o.max_queue_delay_us, ConfigInt(config, "max_queue_delay_us", o.max_queue_delay_us, 0, 10'000'000));
  ASSIGN_OR_RETURN(int64_t instances, ConfigInt(config, "instances", o.instances, 1, 256));
  ASSIGN_OR_RETURN(int64_t capacity, ConfigInt(config, "queue_capacity", o.queue_capacity, 1, 1'000'000));
  ASSIGN_OR_RETURN(o.default_timeout_ms, ConfigInt(config, "timeout_ms", o.default_timeout_ms, 0, 3'600'000));
  o.max_batch_size = static_cast<int>(batch);
  o.instances = static_cast<int>(instances);
  o.queue_capacity = static_cast<int>(capacity);
  return o;
}

absl::StatusOr<DeploymentSpec> DeploymentSpecFromJson(const Json& d) {
  if (!d.is_object()) return absl::InvalidArgumentError("deployment: a JSON object");
  DeploymentSpec spec;
  ASSIGN_OR_RETURN(spec.name, GetString(d, "name"));
  ASSIGN_OR_RETURN(spec.model, GetString(d, "model"));
  ASSIGN_OR_RETURN(spec.alias, GetString(d, "alias"));
  if (auto c = d.find("canary"); c != d.end() && !c->is_null()) {
    ASSIGN_OR_RETURN(int64_t v, GetInt(*c, "version"));
    ASSIGN_OR_RETURN(int64_t pct, GetInt(*c, "percent"));
    spec.canary_version = v;
    spec.canary_percent = static_cast<int>(pct);
  }
  if (auto s = d.find("shadow"); s != d.end() && !s->is_null()) {
    ASSIGN_OR_RETURN(int64_t v, GetInt(*s, "version"));
    spec.shadow_version = v;
  }
  ASSIGN_OR_RETURN(std::optional<int64_t> generation, GetOptionalInt(d, "generation"));
  spec.generation = generation.value_or(0);
  auto config = d.find("config");
  ASSIGN_OR_RETURN(spec.runner, RunnerOptionsFromConfig(config == d.end() ? Json() : *config));
  RETURN_IF_ERROR(CheckDeploymentSpec(spec));
  return spec;
}

absl::StatusOr<std::string> MaterializeVersion(
    const std::string& cache_dir, const std::string& artifact_digest, const std::vector<VersionFile>& files,
    const std::function<absl::Status(const VersionFile&, const std::function<absl::Status(std::string_view)>&)>&
        write) {
  if (!Digest::IsValidHex(artifact_digest)) {
    return absl::InvalidArgumentError(fmt::format("bad artifact digest '{}'", artifact_digest));
  }
  const std::string final_dir = cache_dir + "/" + artifact_digest;
  std::error_code ec;
  if (fs::is_directory(final_dir, ec)) return final_dir;
  fs::create_directories(cache_dir, ec);
  if (ec) return absl::PermissionDeniedError(fmt::format("cannot create {}: {}", cache_dir, ec.message()));
  static std::atomic<uint64_t> counter{0};
  const std::string tmp_dir = fmt::format("{}/.tmp-{}-{}-{}", cache_dir, artifact_digest.substr(0, 12), getpid(),
                                          counter.fetch_add(1));
  fs::remove_all(tmp_dir, ec);
  auto fail = [&](absl::Status s) {
    std::error_code ignored;
    fs::remove_all(tmp_dir, ignored);
    return s;
  };
  for (const VersionFile& f : files) {
    if (!SafeRelativePath(f.path)) {
      return fail(absl::InvalidArgumentError(fmt::format("unsafe file path '{}' in the model's file list", f.path)));
    }
    const std::string path = tmp_dir + "/" + f.path;
    fs::create_directories(fs::path(path).parent_path(), ec);
    if (ec) return fail(absl::PermissionDeniedError(fmt::format("cannot create {}: {}", path, ec.message())));
    std::FILE* out = std::fopen(path.c_str(), "wb");
    if (out == nullptr) return fail(absl::PermissionDeniedError(fmt::format("cannot write {}", path)));
    Sha256 hash;
    int64_t written = 0;
    absl::Status s = write(f, [&](std::string_view bytes) -> absl::Status {
      hash.Update(bytes);
      written += static_cast<int64_t>(bytes.size());
      if (std::fwrite(bytes.data(), 1, bytes.size(), out) != bytes.size()) {
        return absl::ResourceExhaustedError(fmt::format("cannot write {}", path));
      }
      return absl::OkStatus();
    });
    if (std::fclose(out) != 0 && s.ok()) s = absl::ResourceExhaustedError(fmt::format("cannot write {}", path));
    if (!s.ok()) return fail(s);
    std::string got = hash.Finish().ToHex();
    if (got != f.digest || written != f.size) {
      return fail(absl::DataLossError(fmt::format("model file {}: got {} bytes with SHA-256 {}, expected {} bytes {}",
                                                  f.path, written, got, f.size, f.digest)));
    }
  }
  fs::rename(tmp_dir, final_dir, ec);
  if (ec) {
    // Another fetch of the same version won the race: its folder is complete.
    if (fs::is_directory(final_dir)) {
      fs::remove_all(tmp_dir, ec);
      return final_dir;
    }
    return fail(absl::InternalError(fmt::format("cannot rename {} to {}: {}", tmp_dir, final_dir, ec.message())));
  }
  return final_dir;
}

absl::StatusOr<std::unique_ptr<RemoteRegistry>> RemoteRegistry::Create(const std::string& url) {
  ASSIGN_OR_RETURN(auto client, http::Client::FromUrl(url));
  return std::unique_ptr<RemoteRegistry>(new RemoteRegistry(std::move(client)));
}

absl::StatusOr<int64_t> RemoteRegistry::ChangeCounter() {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Json j, client_->GetJson("/api/cairn/v1/registry/changes"));
  return GetInt(j, "counter");
}

absl::StatusOr<std::vector<DeploymentSpec>> RemoteRegistry::ListDeployments() {
  Json j;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(j, client_->GetJson("/api/cairn/v1/deployments"));
  }
  ASSIGN_OR_RETURN(std::vector<Json> list, GetOptionalArray(j, "deployments"));
  std::vector<DeploymentSpec> out;
  for (const Json& d : list) {
    auto spec = DeploymentSpecFromJson(d);
    if (!spec.ok()) return Annotate(spec.status(), "the server sent a deployment Cairn cannot read");
    out.push_back(std::move(*spec));
  }
  return out;
}

absl::StatusOr<int64_t> RemoteRegistry::ResolveAlias(const std::string& model, const std::string& alias) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Json j, client_->GetJson(fmt::format("/api/2.0/mlflow/registered-models/alias?name={}&alias={}",
                                                        http::UrlEncode(model), http::UrlEncode(alias))));
  auto mv = j.find("model_version");
  if (mv == j.end()) return absl::InternalError("alias answer without model_version");
  return GetInt(*mv, "version");
}

absl::StatusOr<std::string> RemoteRegistry::FetchVersion(const std::string& model, int64_t version,
                                                         const std::string& cache_dir) {
  const std::string base =
      fmt::format("/api/cairn/v1/models/{}/versions/{}/files", http::UrlEncode(model), version);
  Json listing;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(listing, client_->GetJson(base));
  }
  ASSIGN_OR_RETURN(std::string digest, GetString(listing, "artifact_digest"));
  ASSIGN_OR_RETURN(std::vector<Json> list, GetOptionalArray(listing, "files"));
  std::vector<VersionFile> files;
  for (const Json& f : list) {
    VersionFile v;
    ASSIGN_OR_RETURN(v.path, GetString(f, "path"));
    ASSIGN_OR_RETURN(v.size, GetInt(f, "size"));
    ASSIGN_OR_RETURN(v.digest, GetString(f, "digest"));
    files.push_back(std::move(v));
  }
  return MaterializeVersion(cache_dir, digest, files, [&](const VersionFile& f, const auto& sink) -> absl::Status {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(http::ClientResponse r, client_->Download(base + "/" + EncodePath(f.path), sink));
    if (r.status != 200) {
      return absl::UnavailableError(fmt::format("downloading {} of {} version {}: HTTP {}: {}", f.path, model,
                                                version, r.status, r.body.substr(0, 200)));
    }
    return absl::OkStatus();
  });
}

}  // namespace cairn::serving
