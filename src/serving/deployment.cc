#include "serving/deployment.h"

#include <algorithm>
#include <random>
#include <utility>

#include <fmt/format.h>

namespace cairn::serving {

absl::Status CheckDeploymentSpec(const DeploymentSpec& spec) {
  if (spec.name.empty()) return absl::InvalidArgumentError("deployment: empty name");
  if (spec.model.empty()) return absl::InvalidArgumentError(fmt::format("deployment '{}': empty model", spec.name));
  if (spec.alias.empty()) return absl::InvalidArgumentError(fmt::format("deployment '{}': empty alias", spec.name));
  if (spec.canary_percent < 0 || spec.canary_percent > 100) {
    return absl::InvalidArgumentError(
        fmt::format("deployment '{}': canary_percent must be 0..100, got {}", spec.name, spec.canary_percent));
  }
  if (spec.canary_percent > 0 && !spec.canary_version.has_value()) {
    return absl::InvalidArgumentError(
        fmt::format("deployment '{}': canary_percent {} without a canary version", spec.name, spec.canary_percent));
  }
  return Annotate(CheckRunnerOptions(spec.runner), fmt::format("deployment '{}'", spec.name));
}

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kPrimary:
      return "primary";
    case Role::kCanary:
      return "canary";
    case Role::kShadow:
      return "shadow";
  }
  return "primary";
}

std::shared_ptr<ModelRunner> Routing::Find(int64_t version) const {
  for (const auto* r : {&primary, &canary, &shadow}) {
    if (*r != nullptr && (*r)->labels().version == version) return *r;
  }
  return nullptr;
}

std::optional<Role> Routing::RoleOf(int64_t version) const {
  if (primary != nullptr && primary->labels().version == version) return Role::kPrimary;
  if (canary != nullptr && canary->labels().version == version) return Role::kCanary;
  if (shadow != nullptr && shadow->labels().version == version) return Role::kShadow;
  return std::nullopt;
}

std::vector<int64_t> Routing::Versions() const {
  std::vector<int64_t> versions;
  for (const auto* r : {&primary, &canary, &shadow}) {
    if (*r != nullptr) versions.push_back((*r)->labels().version);
  }
  std::sort(versions.begin(), versions.end());
  versions.erase(std::unique(versions.begin(), versions.end()), versions.end());
  return versions;
}

bool ChooseCanary(std::string_view request_id, int percent) {
  if (percent <= 0) return false;
  if (percent >= 100) return true;
  uint64_t draw;
  if (!request_id.empty()) {
    // FNV-1a: stable across processes and builds (std::hash is not), so
    // every replica sends a given request id the same way.
    uint64_t h = 14695981039346656037ULL;
    for (unsigned char c : request_id) {
      h ^= c;
      h *= 1099511628211ULL;
    }
    draw = h;
  } else {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    draw = rng();
  }
  return static_cast<int>(draw % 100) < percent;
}

Deployment::Deployment(DeploymentSpec spec)
    : name_(spec.name), spec_(std::move(spec)), routing_(std::make_shared<const Routing>()) {}

DeploymentSpec Deployment::spec() const {
  absl::MutexLock lock(&mu_);
  return spec_;
}

void Deployment::set_spec(DeploymentSpec spec) {
  absl::MutexLock lock(&mu_);
  spec_ = std::move(spec);
}

std::shared_ptr<const Routing> Deployment::routing() const {
  absl::MutexLock lock(&mu_);
  return routing_;
}

std::shared_ptr<const Routing> Deployment::Publish(std::shared_ptr<const Routing> next) {
  absl::MutexLock lock(&mu_);
  std::swap(routing_, next);
  return next;
}

absl::StatusOr<Route> Deployment::Choose(std::optional<int64_t> version, std::string_view request_id) const {
  Route route;
  route.routing = routing();
  const Routing& r = *route.routing;
  if (version.has_value()) {
    route.runner = r.Find(*version);
    if (route.runner == nullptr) {
      return absl::NotFoundError(fmt::format("model '{}' version {} is not loaded", name_, *version));
    }
    route.role = *r.RoleOf(*version);
    return route;
  }
  if (r.primary == nullptr) {
    absl::MutexLock lock(&mu_);
    std::string why = error_.empty() ? "it is being loaded" : error_;
    return absl::UnavailableError(fmt::format("model '{}' has no version loaded yet: {}", name_, why));
  }
  if (r.canary != nullptr && ChooseCanary(request_id, r.canary_percent)) {
    route.runner = r.canary;
    route.role = Role::kCanary;
  } else {
    route.runner = r.primary;
    route.role = Role::kPrimary;
  }
  route.shadow = r.shadow;
  return route;
}

void Deployment::set_resolved_version(std::optional<int64_t> version) {
  absl::MutexLock lock(&mu_);
  resolved_version_ = version;
}

void Deployment::set_error(std::optional<int64_t> version, std::string message) {
  absl::MutexLock lock(&mu_);
  error_version_ = version;
  error_ = std::move(message);
}

void Deployment::clear_error() {
  absl::MutexLock lock(&mu_);
  error_version_.reset();
  error_.clear();
}

Json Deployment::StatusJson() const {
  absl::MutexLock lock(&mu_);
  auto runner_json = [](const std::shared_ptr<ModelRunner>& runner) -> Json {
    if (runner == nullptr) return nullptr;
    Json j = runner->Statistics();
    j["platform"] = std::string(runner->platform());
    return j;
  };
  Json out = {{"name", name_},
              {"model", spec_.model},
              {"alias", spec_.alias},
              {"generation", spec_.generation},
              {"resolved_version", resolved_version_.has_value() ? Json(*resolved_version_) : Json(nullptr)},
              {"ready", routing_->primary != nullptr},
              {"primary", runner_json(routing_->primary)},
              {"canary", runner_json(routing_->canary)},
              {"shadow", runner_json(routing_->shadow)},
              {"error", nullptr}};
  if (routing_->canary != nullptr) out["canary"]["percent"] = routing_->canary_percent;
  if (!error_.empty()) {
    out["error"] = {{"version", error_version_.has_value() ? Json(*error_version_) : Json(nullptr)},
                    {"message", error_}};
  }
  return out;
}

}  // namespace cairn::serving
