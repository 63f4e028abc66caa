#include "serving/inference_plane.h"

#include <algorithm>
#include <random>
#include <set>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/ids.h"

namespace cairn::serving {
namespace {

// How often a request that met a runner just as it began draining is
// re-routed. One is enough for a single swap; a few cover swaps in quick
// succession.
constexpr int kMaxRouteAttempts = 4;

absl::Status NotDeployed(const std::string& deployment) {
  return absl::NotFoundError(fmt::format("model '{}' is not deployed", deployment));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelBackend>> LoadModelFromDir(const std::string& model_dir,
                                                               const BackendOptions& options) {
  ASSIGN_OR_RETURN(ModelDescriptor descriptor, ReadModelDescriptor(model_dir));
  return LoadModel(descriptor, options);
}

absl::StatusOr<std::unique_ptr<InferencePlane>> InferencePlane::Create(ModelSource& source, PlaneOptions options,
                                                                       Env& env) {
  if (options.poll_interval_ms <= 0) {
    return absl::InvalidArgumentError(
        fmt::format("inference plane: poll_interval_ms must be > 0, got {}", options.poll_interval_ms));
  }
  if (options.full_reconcile_interval_ms <= 0) {
    return absl::InvalidArgumentError(fmt::format(
        "inference plane: full_reconcile_interval_ms must be > 0, got {}", options.full_reconcile_interval_ms));
  }
  if (!(options.payload_sample_rate >= 0 && options.payload_sample_rate <= 1)) {
    return absl::InvalidArgumentError(
        fmt::format("inference plane: payload_sample_rate must be in [0, 1], got {}", options.payload_sample_rate));
  }
  if (!options.loader) options.loader = LoadModelFromDir;
  std::unique_ptr<InferencePlane> plane(new InferencePlane(source, std::move(options), env));
  if (!plane->options_.payload_log_dir.empty()) {
    ASSIGN_OR_RETURN(plane->payload_log_,
                     PayloadLog::Create({.dir = plane->options_.payload_log_dir,
                                         .sync_interval_ms = plane->options_.payload_sync_interval_ms},
                                        plane->metrics_.PayloadLogDropped()));
  }
  return plane;
}

InferencePlane::InferencePlane(ModelSource& source, PlaneOptions options, Env& env)
    : source_(source),
      options_(std::move(options)),
      env_(env),
      metrics_(registry_),
      id_prefix_(NewRandomHex(6)) {
  retirement_thread_ = std::thread([this] { RetirementLoop(); });
}

InferencePlane::~InferencePlane() { Stop(); }

absl::Status InferencePlane::Start() {
  {
    absl::MutexLock lock(&mu_);
    if (started_) return absl::FailedPreconditionError("inference plane already started");
    if (stopping_) return absl::FailedPreconditionError("inference plane is stopped");
    started_ = true;
  }
  if (absl::Status s = Reconcile(); !s.ok()) {
    spdlog::warn("inference plane: first reconcile failed (will retry): {}", s.message());
  }
  reconcile_thread_ = std::thread([this] { ReconcileLoop(); });
  return absl::OkStatus();
}

void InferencePlane::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (reconcile_thread_.joinable()) reconcile_thread_.join();
  {
    absl::MutexLock reconcile_lock(&reconcile_mu_);
    std::map<std::string, std::shared_ptr<Deployment>> removed;
    {
      absl::MutexLock lock(&mu_);
      removed.swap(deployments_);
    }
    for (auto& [name, deployment] : removed) {
      Retire(*deployment->Publish(std::make_shared<const Routing>()), nullptr);
    }
    for (auto& [name, gauges] : loaded_gauges_) {
      for (auto& g : gauges) g->Set(0);
    }
    loaded_gauges_.clear();
    load_failures_.clear();
  }
  {
    absl::MutexLock lock(&retire_mu_);
    retire_stop_ = true;
  }
  if (retirement_thread_.joinable()) retirement_thread_.join();
  registry_.Sweep();
}

// ---------------------------------------------------------------------------
// Reconciling

void InferencePlane::ReconcileLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(options_.poll_interval_ms));
      if (stopping_) return;
    }
    absl::MutexLock reconcile_lock(&reconcile_mu_);
    const bool due = env_.MonotonicMicros() - last_pass_us_ >= options_.full_reconcile_interval_ms * 1000;
    if (!due) {
      absl::StatusOr<int64_t> counter = source_.ChangeCounter();
      if (!counter.ok()) {
        spdlog::warn("inference plane: cannot read the model source's change counter: {}",
                     counter.status().message());
        continue;
      }
      if (last_counter_.has_value() && *counter == *last_counter_) continue;
    }
    if (absl::Status s = ReconcileLocked(); !s.ok()) {
      spdlog::warn("inference plane: reconcile failed (will retry): {}", s.message());
    }
  }
}

absl::Status InferencePlane::Reconcile() {
  absl::MutexLock reconcile_lock(&reconcile_mu_);
  return ReconcileLocked();
}

absl::Status InferencePlane::ReconcileLocked() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("inference plane is stopped");
  }
  last_pass_us_ = env_.MonotonicMicros();
  // Read the counter first: a change made during this pass moves it again,
  // so the next poll sees a difference and runs another pass.
  ASSIGN_OR_RETURN(int64_t counter, source_.ChangeCounter());
  ASSIGN_OR_RETURN(std::vector<DeploymentSpec> specs, source_.ListDeployments());
  last_counter_ = counter;

  std::set<std::string> wanted;
  for (const DeploymentSpec& spec : specs) {
    if (spec.name.empty() || !wanted.insert(spec.name).second) {
      spdlog::warn("inference plane: skipping deployment with an empty or repeated name '{}'", spec.name);
      continue;
    }
    std::shared_ptr<Deployment> deployment = FindDeployment(spec.name);
    if (deployment == nullptr) {
      deployment = std::make_shared<Deployment>(spec);
      absl::MutexLock lock(&mu_);
      deployments_[spec.name] = deployment;
    } else {
      deployment->set_spec(spec);
    }
    if (absl::Status s = CheckDeploymentSpec(spec); !s.ok()) {
      deployment->set_error(std::nullopt, std::string(s.message()));
      spdlog::error("inference plane: {}", s.message());
      continue;
    }
    ReconcileDeployment(*deployment, spec);
  }

  std::vector<std::shared_ptr<Deployment>> removed;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = deployments_.begin(); it != deployments_.end();) {
      if (wanted.count(it->first) == 0) {
        removed.push_back(it->second);
        it = deployments_.erase(it);
      } else {
        ++it;
      }
    }
    reconciled_once_ = true;
  }
  for (const auto& deployment : removed) {
    spdlog::info("inference plane: deployment '{}' removed; draining it", deployment->name());
    Retire(*deployment->Publish(std::make_shared<const Routing>()), nullptr);
    UpdateLoadedGauges(deployment->name(), Routing{});
    loaded_gauges_.erase(deployment->name());
    load_failures_.erase(deployment->name());
  }
  registry_.Sweep();
  return absl::OkStatus();
}

void InferencePlane::ReconcileDeployment(Deployment& deployment, const DeploymentSpec& spec) {
  const std::shared_ptr<const Routing> current = deployment.routing();
  absl::StatusOr<int64_t> resolved = source_.ResolveAlias(spec.model, spec.alias);
  if (!resolved.ok()) {
    std::string message = fmt::format("cannot resolve {}@{}: {}", spec.model, spec.alias, resolved.status().message());
    spdlog::error("inference plane: deployment '{}': {}", spec.name, message);
    deployment.set_resolved_version(std::nullopt);
    deployment.set_error(std::nullopt, std::move(message));
    return;
  }
  deployment.set_resolved_version(*resolved);

  // Each role gets its wanted version, or keeps what it has when that
  // version cannot be loaded (the old version goes on serving).
  std::optional<int64_t> failed_version;
  std::string failure;
  std::vector<int64_t> failed_versions;
  auto next = std::make_shared<Routing>();
  auto obtain = [&](std::optional<int64_t> version, const std::shared_ptr<ModelRunner>& keep,
                    std::string_view role)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(reconcile_mu_) -> std::shared_ptr<ModelRunner> {
    if (!version.has_value()) return nullptr;
    // A version that fills two roles (e.g. canary == primary) is loaded once.
    if (std::shared_ptr<ModelRunner> same = next->Find(*version)) return same;
    absl::StatusOr<std::shared_ptr<ModelRunner>> runner = ObtainRunner(spec, *version, *current);
    if (runner.ok()) return *std::move(runner);
    std::string message = fmt::format("cannot load {} version {} ({}): {}", spec.model, *version, role,
                                      runner.status().message());
    spdlog::error("inference plane: deployment '{}': {}", spec.name, message);
    failed_versions.push_back(*version);
    if (failure.empty()) {
      failed_version = *version;
      failure = std::move(message);
    }
    return keep;
  };
  next->primary = obtain(*resolved, current->primary, "primary");
  next->canary = obtain(spec.canary_version, current->canary, "canary");
  next->canary_percent = next->canary != nullptr ? spec.canary_percent : 0;
  next->shadow = obtain(spec.shadow_version, current->shadow, "shadow");

  for (int64_t version : failed_versions) {
    std::shared_ptr<Counter> counter = metrics_.LoadFailures({spec.name, spec.model, version});
    counter->Increment();
    std::vector<std::shared_ptr<Counter>>& held = load_failures_[spec.name];
    if (std::find(held.begin(), held.end(), counter) == held.end()) held.push_back(std::move(counter));
  }
  if (failure.empty()) {
    deployment.clear_error();
  } else {
    deployment.set_error(failed_version, std::move(failure));
  }
  if (next->primary == current->primary && next->canary == current->canary &&
      next->canary_percent == current->canary_percent && next->shadow == current->shadow) {
    return;  // nothing to switch
  }
  std::shared_ptr<const Routing> old = deployment.Publish(next);
  if (next->primary != current->primary && next->primary != nullptr) {
    spdlog::info("inference plane: deployment '{}' now serves {} version {}", spec.name, spec.model,
                 next->primary->labels().version);
  }
  Retire(*old, next.get());
  UpdateLoadedGauges(spec.name, *next);
}

absl::StatusOr<std::shared_ptr<ModelRunner>> InferencePlane::ObtainRunner(const DeploymentSpec& spec,
                                                                          int64_t version, const Routing& current) {
  if (std::shared_ptr<ModelRunner> runner = current.Find(version);
      runner != nullptr && runner->labels().model == spec.model && runner->options() == spec.runner) {
    return runner;
  }
  ASSIGN_OR_RETURN(std::string dir, source_.FetchVersion(spec.model, version, options_.cache_dir));
  ASSIGN_OR_RETURN(std::unique_ptr<ModelBackend> backend, options_.loader(dir, options_.backend));
  ASSIGN_OR_RETURN(std::unique_ptr<ModelRunner> runner,
                   ModelRunner::Create(std::move(backend), spec.runner, {spec.name, spec.model, version}, &metrics_));
  RETURN_IF_ERROR(runner->Warm());
  return std::shared_ptr<ModelRunner>(std::move(runner));
}

void InferencePlane::Retire(const Routing& old_routing, const Routing* next) {
  std::vector<std::shared_ptr<ModelRunner>> runners;
  for (const auto* r : {&old_routing.primary, &old_routing.canary, &old_routing.shadow}) {
    if (*r == nullptr) continue;
    bool kept = next != nullptr && (next->primary == *r || next->canary == *r || next->shadow == *r);
    if (!kept && std::find(runners.begin(), runners.end(), *r) == runners.end()) runners.push_back(*r);
  }
  if (runners.empty()) return;
  absl::MutexLock lock(&retire_mu_);
  for (auto& r : runners) retiring_.push_back(std::move(r));
}

void InferencePlane::RetirementLoop() {
  while (true) {
    std::shared_ptr<ModelRunner> runner;
    {
      absl::MutexLock lock(&retire_mu_);
      retire_mu_.Await(absl::Condition(
          +[](InferencePlane* p) ABSL_NO_THREAD_SAFETY_ANALYSIS { return !p->retiring_.empty() || p->retire_stop_; },
          this));
      if (retiring_.empty()) return;
      runner = std::move(retiring_.front());
      retiring_.pop_front();
      ++retiring_busy_;
    }
    // Drain finishes what the runner has queued; requests that arrive from
    // now on are refused and re-routed by Infer to the new routing.
    runner->Drain();
    runner.reset();  // requests still holding it release it when they return
    registry_.Sweep();
    absl::MutexLock lock(&retire_mu_);
    --retiring_busy_;
  }
}

void InferencePlane::WaitForRetirementsForTest() {
  absl::MutexLock lock(&retire_mu_);
  retire_mu_.Await(absl::Condition(
      +[](InferencePlane* p) ABSL_NO_THREAD_SAFETY_ANALYSIS { return p->retiring_.empty() && p->retiring_busy_ == 0; },
      this));
}

void InferencePlane::UpdateLoadedGauges(const std::string& deployment, const Routing& routing) {
  std::vector<std::shared_ptr<Gauge>> gauges;
  auto add = [&](const std::shared_ptr<ModelRunner>& runner, Role role) {
    if (runner == nullptr) return;
    std::shared_ptr<Gauge> g = metrics_.Loaded(runner->labels(), RoleName(role));
    g->Set(1);
    gauges.push_back(std::move(g));
  };
  add(routing.primary, Role::kPrimary);
  add(routing.canary, Role::kCanary);
  add(routing.shadow, Role::kShadow);
  std::vector<std::shared_ptr<Gauge>>& old = loaded_gauges_[deployment];
  for (const auto& g : old) {
    if (std::find(gauges.begin(), gauges.end(), g) == gauges.end()) g->Set(0);
  }
  old = std::move(gauges);
}

// ---------------------------------------------------------------------------
// Serving

std::shared_ptr<Deployment> InferencePlane::FindDeployment(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = deployments_.find(name);
  return it == deployments_.end() ? nullptr : it->second;
}

absl::Status InferencePlane::NotServing(const std::string& deployment) const {
  absl::MutexLock lock(&mu_);
  return stopping_ ? absl::UnavailableError("the inference plane is stopped") : NotDeployed(deployment);
}

std::string InferencePlane::NewPredictionId() {
  // A random prefix per plane plus a counter: unique across replicas and
  // restarts without a CSPRNG call per request.
  return fmt::format("{}-{:x}", id_prefix_, next_id_.fetch_add(1, std::memory_order_relaxed));
}

bool InferencePlane::Sampled() const {
  if (payload_log_ == nullptr || options_.payload_sample_rate <= 0) return false;
  if (options_.payload_sample_rate >= 1) return true;
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0, 1)(rng) < options_.payload_sample_rate;
}

void InferencePlane::LogPrediction(const ModelRunner& runner, Role role, const std::string& prediction_id,
                                   int64_t time_ms, int64_t latency_us, std::vector<Tensor> inputs,
                                   std::vector<Tensor> outputs, const absl::Status& status) {
  PredictionRecord record;
  record.prediction_id = prediction_id;
  record.deployment = runner.labels().deployment;
  record.model = runner.labels().model;
  record.version = runner.labels().version;
  record.role = std::string(RoleName(role));
  record.time_ms = time_ms;
  record.inputs = std::move(inputs);
  record.outputs = std::move(outputs);
  record.latency_us = latency_us;
  if (!status.ok()) record.error = status.ToString();
  payload_log_->Record(std::move(record));
}

InferencePlane::Call InferencePlane::StartCall(const std::string& request_id) {
  Call call;
  call.start_us = env_.MonotonicMicros();
  call.sampled = Sampled();
  call.time_ms = call.sampled ? env_.NowMicros() / 1000 : 0;
  call.prediction_id = request_id.empty() ? NewPredictionId() : request_id;
  return call;
}

absl::StatusOr<PlaneResult> InferencePlane::Conclude(Call& call, const ModelRunner& runner, Role role,
                                                     ModelRunner* shadow, std::optional<absl::Time> deadline,
                                                     absl::StatusOr<RunResult> result,
                                                     std::vector<Tensor>* refused_inputs) {
  const int64_t latency_us = env_.MonotonicMicros() - call.start_us;
  if (!result.ok()) {
    if (call.sampled) {
      LogPrediction(runner, role, call.prediction_id, call.time_ms, latency_us,
                    refused_inputs != nullptr ? std::move(*refused_inputs) : std::vector<Tensor>{}, {},
                    result.status());
    }
    return result.status();
  }
  PlaneResult answer;
  answer.model = runner.labels().model;
  answer.version = runner.labels().version;
  answer.role = role;
  answer.prediction_id = std::move(call.prediction_id);
  std::vector<Tensor>& served_inputs = result->inputs;
  if (shadow != nullptr) {
    // The shadow sees the same request once the caller's answer is ready;
    // Submit only queues, so the caller never waits for the shadow.
    std::vector<Tensor> shadow_inputs = call.sampled ? served_inputs : std::move(served_inputs);
    // A raw pointer: the callback runs on the shadow's own worker, or on
    // the event loop the worker posts it to, and the shadow's Drain waits
    // for both before it can be destroyed; a shared_ptr here could make
    // that thread destroy (and drain) the runner it is answering for.
    const int64_t shadow_start_us = env_.MonotonicMicros();
    shadow->Submit(std::move(shadow_inputs), deadline,
                   [this, sampled = call.sampled, shadow, id = answer.prediction_id, time_ms = call.time_ms,
                    shadow_start_us](absl::StatusOr<RunResult> shadow_result) {
                     if (!sampled) return;
                     const int64_t shadow_latency_us = env_.MonotonicMicros() - shadow_start_us;
                     if (shadow_result.ok()) {
                       LogPrediction(*shadow, Role::kShadow, id, time_ms, shadow_latency_us,
                                     std::move(shadow_result->inputs), std::move(shadow_result->outputs),
                                     absl::OkStatus());
                     } else {
                       LogPrediction(*shadow, Role::kShadow, id, time_ms, shadow_latency_us, {}, {},
                                     shadow_result.status());
                     }
                   });
  }
  if (call.sampled) {
    LogPrediction(runner, role, answer.prediction_id, call.time_ms, latency_us, std::move(served_inputs),
                  result->outputs, absl::OkStatus());
  }
  answer.outputs = std::move(result->outputs);
  return answer;
}

absl::StatusOr<PlaneResult> InferencePlane::Infer(const std::string& deployment_name, std::optional<int64_t> version,
                                                  std::vector<Tensor> inputs, const std::string& request_id,
                                                  std::optional<absl::Time> deadline) {
  Call call = StartCall(request_id);
  for (int attempt = 0;; ++attempt) {
    std::shared_ptr<Deployment> deployment = FindDeployment(deployment_name);
    if (deployment == nullptr) return NotServing(deployment_name);
    ASSIGN_OR_RETURN(Route route, deployment->Choose(version, call.prediction_id));
    absl::StatusOr<RunResult> result = route.runner->TryInfer(inputs, deadline);
    if (!result.ok() && result.status().code() == absl::StatusCode::kUnavailable && route.runner->draining() &&
        attempt + 1 < kMaxRouteAttempts) {
      // The runner began draining after we chose it (an alias moved): the
      // request was not queued, so send it where the routing points now.
      continue;
    }
    return Conclude(call, *route.runner, route.role, route.shadow.get(), deadline, std::move(result), &inputs);
  }
}

bool InferencePlane::InferAsync(const std::string& deployment_name, std::optional<int64_t> version,
                                std::vector<Tensor>& inputs, const std::string& request_id,
                                std::optional<absl::Time> deadline, InferCallback& done) {
  if (deadline) return false;
  Call call = StartCall(request_id);
  for (int attempt = 0;; ++attempt) {
    std::shared_ptr<Deployment> deployment = FindDeployment(deployment_name);
    if (deployment == nullptr) {
      done(NotServing(deployment_name));
      return true;
    }
    absl::StatusOr<Route> route = deployment->Choose(version, call.prediction_id);
    if (!route.ok()) {
      done(route.status());
      return true;
    }
    ModelRunner* runner = route->runner.get();
    if (runner->options().default_timeout_ms > 0) return false;
    // The callback runs on the runner's worker, or on this loop when the
    // worker posts the answer back, so it holds the runner by a raw pointer
    // (the runner's Drain waits for both before it is destroyed) and never
    // the routing, whose release could destroy that runner there. The
    // shadow, another runner, is held so that it outlives the mirroring.
    std::shared_ptr<ModelRunner> shadow = route->shadow.get() == runner ? nullptr : route->shadow;
    ModelRunner::Callback on_result = [this, call, runner, role = route->role, shadow,
                                       done](absl::StatusOr<RunResult> result) mutable {
      done(Conclude(call, *runner, role, shadow.get(), std::nullopt, std::move(result), nullptr));
    };
    absl::Status queued = runner->TrySubmit(inputs, on_result);
    if (queued.ok()) return true;
    if (queued.code() == absl::StatusCode::kUnavailable && runner->draining() && attempt + 1 < kMaxRouteAttempts) {
      continue;  // as in Infer
    }
    done(Conclude(call, *runner, route->role, nullptr, std::nullopt, queued, &inputs));
    return true;
  }
}

absl::StatusOr<ModelMetadata> InferencePlane::Metadata(const std::string& deployment_name,
                                                       std::optional<int64_t> version) const {
  std::shared_ptr<Deployment> deployment = FindDeployment(deployment_name);
  if (deployment == nullptr) return NotDeployed(deployment_name);
  std::shared_ptr<const Routing> routing = deployment->routing();
  std::shared_ptr<ModelRunner> runner = version.has_value() ? routing->Find(*version) : routing->primary;
  if (runner == nullptr) {
    if (version.has_value()) {
      return absl::NotFoundError(fmt::format("model '{}' version {} is not loaded", deployment_name, *version));
    }
    return absl::UnavailableError(fmt::format("model '{}' has no version loaded yet", deployment_name));
  }
  ModelMetadata metadata;
  metadata.name = deployment_name;
  metadata.model = runner->labels().model;
  metadata.versions = routing->Versions();
  metadata.platform = std::string(runner->platform());
  metadata.signature = runner->signature();
  return metadata;
}

bool InferencePlane::Ready(const std::string& deployment_name, std::optional<int64_t> version) const {
  std::shared_ptr<Deployment> deployment = FindDeployment(deployment_name);
  if (deployment == nullptr) return false;
  std::shared_ptr<const Routing> routing = deployment->routing();
  std::shared_ptr<ModelRunner> runner = version.has_value() ? routing->Find(*version) : routing->primary;
  return runner != nullptr && !runner->draining();
}

bool InferencePlane::Ready() const {
  absl::MutexLock lock(&mu_);
  if (!reconciled_once_ || stopping_) return false;
  for (const auto& [name, deployment] : deployments_) {
    if (deployment->routing()->primary == nullptr) return false;
  }
  return true;
}

std::vector<std::string> InferencePlane::DeploymentNames() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const auto& [name, deployment] : deployments_) names.push_back(name);
  return names;
}

Json InferencePlane::Deployments() const {
  std::vector<std::shared_ptr<Deployment>> deployments;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, deployment] : deployments_) deployments.push_back(deployment);
  }
  Json list = Json::array();
  for (const auto& d : deployments) list.push_back(d->StatusJson());
  return Json{{"deployments", std::move(list)}};
}

absl::StatusOr<Json> InferencePlane::Statistics(const std::string& deployment_name) const {
  std::shared_ptr<Deployment> deployment = FindDeployment(deployment_name);
  if (deployment == nullptr) return NotDeployed(deployment_name);
  std::shared_ptr<const Routing> routing = deployment->routing();
  Json versions = Json::array();
  for (int64_t v : routing->Versions()) {
    std::shared_ptr<ModelRunner> runner = routing->Find(v);
    Json stats = runner->Statistics();
    stats["role"] = std::string(RoleName(*routing->RoleOf(v)));
    versions.push_back(std::move(stats));
  }
  return Json{{"name", deployment_name}, {"versions", std::move(versions)}};
}

std::string InferencePlane::RenderMetrics() {
  registry_.Sweep();
  return registry_.Render();
}

absl::Status InferencePlane::FlushPayloadLogForTest() {
  return payload_log_ == nullptr ? absl::OkStatus() : payload_log_->Flush();
}

}  // namespace cairn::serving
