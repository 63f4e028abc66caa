// Deployments: what the inference plane serves and how it routes.
//
// A deployment serves MODEL@ALIAS under its own name (the OIP model name):
// a primary version (whatever the alias points at), optionally a canary
// version taking canary_percent of the requests, and optionally a shadow
// version receiving a mirror of every request whose answer is only logged.
// ModelSource is where the plane learns the deployments and resolves aliases:
// the registry in-process (`cairn server`) or over HTTP (`cairn serve`).
//
// A Deployment holds its current Routing, an immutable snapshot (which
// runner serves which role) behind a std::shared_ptr: the plane builds a new
// one when something changes and swaps it in under a short mutex, so a
// request sees either the old routing or the new one, never a mix, and the
// runners it uses stay alive while it holds the snapshot.
//
// Thread-safety: ModelSource implementations must be thread-safe (the
// plane's reconcile thread calls them). Routing is immutable. Deployment is
// thread-safe.
//
// Usage:
//   auto d = std::make_shared<Deployment>(spec);
//   d->Publish(std::make_shared<const Routing>(Routing{.primary = runner}));
//   ASSIGN_OR_RETURN(Route route, d->Choose(std::nullopt, request_id));
//   ASSIGN_OR_RETURN(RunResult r, route.runner->Infer(std::move(inputs)));
#ifndef CAIRN_SERVING_DEPLOYMENT_H_
#define CAIRN_SERVING_DEPLOYMENT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/json.h"
#include "base/status.h"
#include "serving/model_runner.h"

namespace cairn::serving {

// Where the plane learns what to serve.
class ModelSource {
 public:
  virtual ~ModelSource() = default;

  struct DeploymentSpec {
    std::string name;   // the deployment (OIP model) name
    std::string model;  // registered model
    std::string alias;  // e.g. "production"
    std::optional<int64_t> canary_version;
    int canary_percent = 0;  // 0..100
    std::optional<int64_t> shadow_version;
    RunnerOptions runner;
    int64_t generation = 0;  // bumped by the source whenever the spec changes
  };

  // A number that changes whenever deployments or aliases may have changed:
  // a cheap poll (unchanged -> nothing to do).
  virtual absl::StatusOr<int64_t> ChangeCounter() = 0;
  virtual absl::StatusOr<std::vector<DeploymentSpec>> ListDeployments() = 0;
  // The version `alias` points at; kNotFound when the model or alias is unknown.
  virtual absl::StatusOr<int64_t> ResolveAlias(const std::string& model, const std::string& alias) = 0;
  // Makes the version's artifact folder available locally under `cache_dir`
  // (content-addressed; reused if already there) and returns its path.
  virtual absl::StatusOr<std::string> FetchVersion(const std::string& model, int64_t version,
                                                   const std::string& cache_dir) = 0;
};
using DeploymentSpec = ModelSource::DeploymentSpec;

// kInvalidArgument naming the field: empty name/model/alias, canary_percent
// outside 0..100, a canary percent without a canary version, bad runner options.
absl::Status CheckDeploymentSpec(const DeploymentSpec& spec);

enum class Role { kPrimary, kCanary, kShadow };
std::string_view RoleName(Role role);  // "primary", "canary", "shadow"

// Which runner serves which role, at one moment. Immutable once published.
// A runner may hold several roles (e.g. canary == primary version).
struct Routing {
  std::shared_ptr<ModelRunner> primary;  // null while no version could be loaded yet
  std::shared_ptr<ModelRunner> canary;   // null: no canary
  int canary_percent = 0;
  std::shared_ptr<ModelRunner> shadow;   // null: no shadow

  // The runner of `version` in any role (primary first), or null.
  std::shared_ptr<ModelRunner> Find(int64_t version) const;
  // The role `version` has here (primary before canary before shadow).
  std::optional<Role> RoleOf(int64_t version) const;
  // Distinct loaded versions, ascending.
  std::vector<int64_t> Versions() const;
};

// Where one request goes.
struct Route {
  std::shared_ptr<ModelRunner> runner;
  Role role = Role::kPrimary;
  std::shared_ptr<ModelRunner> shadow;  // also send a copy here (null: none)
  std::shared_ptr<const Routing> routing;  // the snapshot the choice was made from
};

// Picks whether a request goes to the canary: FNV-1a of `request_id` mod
// 100 < percent when an id is given (so every replica agrees on a request),
// a random draw otherwise.
bool ChooseCanary(std::string_view request_id, int percent);

class Deployment {
 public:
  explicit Deployment(DeploymentSpec spec);
  Deployment(const Deployment&) = delete;
  Deployment& operator=(const Deployment&) = delete;

  const std::string& name() const { return name_; }
  DeploymentSpec spec() const;
  void set_spec(DeploymentSpec spec);

  std::shared_ptr<const Routing> routing() const;
  // Installs `next`; returns the routing it replaced (never null).
  std::shared_ptr<const Routing> Publish(std::shared_ptr<const Routing> next);

  // The route for a request: `version` given -> that version in whatever
  // role it has (no shadow copy), kNotFound "model 'NAME' version N is not
  // loaded" if absent; otherwise primary or canary (ChooseCanary) plus the
  // shadow. kUnavailable "model 'NAME' has no version loaded yet: ..." while
  // there is no primary.
  absl::StatusOr<Route> Choose(std::optional<int64_t> version, std::string_view request_id) const;

  // What the plane reports about this deployment in Deployments():
  // the alias's current version, and the last load failure (cleared on success).
  void set_resolved_version(std::optional<int64_t> version);
  void set_error(std::optional<int64_t> version, std::string message);
  void clear_error();
  // {"name", "model", "alias", "generation", "resolved_version", "ready",
  //  "primary": {"version", ...runner statistics} | null, "canary": {..., "percent"} | null,
  //  "shadow": {...} | null, "error": {"version", "message"} | null}
  Json StatusJson() const;

 private:
  const std::string name_;
  mutable absl::Mutex mu_;
  DeploymentSpec spec_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const Routing> routing_ ABSL_GUARDED_BY(mu_);
  std::optional<int64_t> resolved_version_ ABSL_GUARDED_BY(mu_);
  std::optional<int64_t> error_version_ ABSL_GUARDED_BY(mu_);
  std::string error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cairn::serving

#endif  // CAIRN_SERVING_DEPLOYMENT_H_
