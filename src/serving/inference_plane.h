// InferencePlane: everything a Cairn server needs to serve deployments,
// below HTTP. It follows a ModelSource (the registry): a reconcile thread
// polls its change counter every poll_interval_ms (and reconciles anyway
// every full_reconcile_interval_ms); each pass resolves every deployment's
// alias, fetches, loads and warms any version it does not hold yet, then
// switches the deployment's routing atomically, and hands the runners no
// longer routed to a retirement thread that drains (finishes their queued
// and running requests) and releases them. No request fails because of a
// swap: a request that picked a runner just before it started draining is
// re-routed to the new one. A version that fails to load leaves the previous
// one serving; the failure is logged, counted
// (cairn_model_load_failures_total) and shown in Deployments(), and retried
// on later passes. Removed deployments drain and unload.
//
// Requests: Infer() validates the inputs against the signature, routes to
// the primary, the canary (canary_percent of requests; the same request id
// always goes the same way) or an explicitly requested version, and says
// which version answered. A routed request that succeeded is then queued
// (not awaited) on the shadow version, if any; the shadow's answer goes only
// to the payload log (role "shadow", same prediction id), never to the
// caller. With a payload log, a sample of requests (payload_sample_rate) is
// logged: inputs, outputs or error, version, role, latency.
//
// Thread-safety: thread-safe. Infer may be called from any number of threads.
//
// Ownership: the plane does not own the ModelSource or the Env; both must
// outlive it. The destructor stops the reconcile thread and drains every runner.
//
// Usage:
//   ASSIGN_OR_RETURN(auto plane, InferencePlane::Create(source, {.cache_dir = home + "/models"}, env));
//   RETURN_IF_ERROR(plane->Start());
//   ASSIGN_OR_RETURN(PlaneResult r, plane->Infer("fraud", std::nullopt, std::move(inputs), request_id));
//   // r.outputs, r.version, r.role ...
//   std::string text = plane->RenderMetrics();
#ifndef CAIRN_SERVING_INFERENCE_PLANE_H_
#define CAIRN_SERVING_INFERENCE_PLANE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/env.h"
#include "base/json.h"
#include "base/status.h"
#include "serving/deployment.h"
#include "serving/metrics.h"
#include "serving/model_backend.h"
#include "serving/model_runner.h"
#include "serving/payload_log.h"

namespace cairn::serving {

// Loads the model in a local artifact folder.
using ModelLoader =
    std::function<absl::StatusOr<std::unique_ptr<ModelBackend>>(const std::string& model_dir, const BackendOptions&)>;

// The default loader: ReadModelDescriptor(model_dir), then LoadModel.
absl::StatusOr<std::unique_ptr<ModelBackend>> LoadModelFromDir(const std::string& model_dir,
                                                               const BackendOptions& options);

struct PlaneOptions {
  std::string cache_dir;                       // where ModelSource::FetchVersion puts artifacts
  int64_t poll_interval_ms = 500;              // change-counter poll
  int64_t full_reconcile_interval_ms = 5000;   // reconcile even if the counter did not move
  BackendOptions backend;
  ModelLoader loader;                          // empty: LoadModelFromDir
  std::string payload_log_dir;                 // empty: no payload log
  double payload_sample_rate = 1.0;            // fraction of requests logged (0..1)
  int64_t payload_sync_interval_ms = 1000;
};

struct PlaneResult {
  std::vector<Tensor> outputs;
  std::string model;      // the registered model
  int64_t version = 0;    // the version that answered
  Role role = Role::kPrimary;
  std::string prediction_id;  // the request id when one was given, else a fresh unique id
};

struct ModelMetadata {
  std::string name;               // the deployment
  std::string model;              // the registered model
  std::vector<int64_t> versions;  // loaded, ascending
  std::string platform;
  ModelSignature signature;       // of the requested version, or the primary's
};

class InferencePlane {
 public:
  // kInvalidArgument for bad options; an error when the payload log folder
  // cannot be created. Nothing is loaded until Start() or Reconcile().
  static absl::StatusOr<std::unique_ptr<InferencePlane>> Create(ModelSource& source, PlaneOptions options,
                                                                Env& env);
  ~InferencePlane();
  InferencePlane(const InferencePlane&) = delete;
  InferencePlane& operator=(const InferencePlane&) = delete;

  // Runs one reconcile pass now (so a starting server serves its deployments
  // at once; its error is only logged) and starts the reconcile thread.
  // kFailedPrecondition if already started.
  absl::Status Start();
  // Stops the reconcile thread and drains and unloads every deployment.
  // Later Infer calls fail kUnavailable. Idempotent.
  void Stop();

  // One synchronous reconcile pass (see the top). Returns the source's error
  // if it could not be read; per-deployment load failures are reported in
  // Deployments() rather than returned.
  absl::Status Reconcile();

  // Runs one request. `version` nullopt: routed (primary/canary, + shadow);
  // given: that loaded version. `request_id` (may be empty) makes the canary
  // choice deterministic and becomes the prediction id. Errors: kNotFound
  // "model 'x' is not deployed" or "model 'x' version N is not loaded";
  // kInvalidArgument for inputs that do not match the signature;
  // kResourceExhausted (queue full); kUnavailable (nothing loaded yet, or
  // stopped); kDeadlineExceeded; backend errors.
  absl::StatusOr<PlaneResult> Infer(const std::string& deployment, std::optional<int64_t> version,
                                    std::vector<Tensor> inputs, const std::string& request_id,
                                    std::optional<absl::Time> deadline = std::nullopt);

  using InferCallback = std::function<void(absl::StatusOr<PlaneResult>)>;
  // Like Infer, but answers through `done` instead of blocking: exactly once,
  // on this thread (at once, or after computing on it when the model is
  // quick and idle; see ModelRunner::TrySubmit) or on a model worker; it
  // must not block for long. Returns false, taking neither `inputs` nor
  // `done`, when a deadline applies (`deadline`, or the version's timeout_ms):
  // only Infer answers at a deadline that passes while the model computes,
  // so the caller should use Infer then.
  bool InferAsync(const std::string& deployment, std::optional<int64_t> version, std::vector<Tensor>& inputs,
                  const std::string& request_id, std::optional<absl::Time> deadline, InferCallback& done);

  // kNotFound as for Infer.
  absl::StatusOr<ModelMetadata> Metadata(const std::string& deployment, std::optional<int64_t> version) const;
  // Whether the deployment (and version, when given) is loaded and serving.
  bool Ready(const std::string& deployment, std::optional<int64_t> version) const;
  // The process is up.
  bool Live() const { return true; }
  // The plane has completed a reconcile pass and every deployment has a primary.
  bool Ready() const;
  // Names of the deployments, sorted.
  std::vector<std::string> DeploymentNames() const;

  // {"deployments": [Deployment::StatusJson(), ...]}, sorted by name.
  Json Deployments() const;
  // Per-version statistics of one deployment: {"name", "versions": [ModelRunner::Statistics(), ...]};
  // kNotFound as for Infer.
  absl::StatusOr<Json> Statistics(const std::string& deployment) const;
  // Prometheus text (format 0.0.4) of every serving series. Sweeps first,
  // so that the series of runners released since the last pass are gone.
  std::string RenderMetrics();
  MetricRegistry& metrics() { return registry_; }

  // Waits until every runner handed to the retirement thread is drained and
  // released (tests: e.g. after an alias move).
  void WaitForRetirementsForTest();
  // Writes out the payload log (no-op without one).
  absl::Status FlushPayloadLogForTest();

 private:
  InferencePlane(ModelSource& source, PlaneOptions options, Env& env);

  absl::Status ReconcileLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(reconcile_mu_);
  void ReconcileDeployment(Deployment& deployment, const DeploymentSpec& spec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(reconcile_mu_);
  // The runner of `version` for `spec`: the current routing's when it has the
  // same model and runner options, else fetched, loaded and warmed.
  absl::StatusOr<std::shared_ptr<ModelRunner>> ObtainRunner(const DeploymentSpec& spec, int64_t version,
                                                            const Routing& current)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(reconcile_mu_);
  // Hands every runner of `old_routing` that `next` (may be null) does not
  // use to the retirement thread.
  void Retire(const Routing& old_routing, const Routing* next);
  void UpdateLoadedGauges(const std::string& deployment, const Routing& routing)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(reconcile_mu_);
  std::shared_ptr<Deployment> FindDeployment(const std::string& name) const;
  // Why a request for `deployment`, which FindDeployment did not find, fails:
  // kUnavailable once stopped, else kNotFound.
  absl::Status NotServing(const std::string& deployment) const;
  void ReconcileLoop();
  void RetirementLoop();
  std::string NewPredictionId();
  // What Infer and InferAsync know of a request before it runs.
  struct Call {
    int64_t start_us = 0;
    bool sampled = false;
    int64_t time_ms = 0;
    std::string prediction_id;
  };
  Call StartCall(const std::string& request_id);
  // After `runner` answered `result`: logs it, mirrors it to `shadow` (may
  // be null) and makes the caller's answer.
  absl::StatusOr<PlaneResult> Conclude(Call& call, const ModelRunner& runner, Role role, ModelRunner* shadow,
                                       std::optional<absl::Time> deadline, absl::StatusOr<RunResult> result,
                                       std::vector<Tensor>* refused_inputs);
  bool Sampled() const;
  void LogPrediction(const ModelRunner& runner, Role role, const std::string& prediction_id, int64_t time_ms,
                     int64_t latency_us, std::vector<Tensor> inputs, std::vector<Tensor> outputs,
                     const absl::Status& status);

  ModelSource& source_;
  const PlaneOptions options_;
  Env& env_;
  MetricRegistry registry_;
  InferenceMetrics metrics_;
  std::unique_ptr<PayloadLog> payload_log_;  // null: off
  const std::string id_prefix_;
  std::atomic<uint64_t> next_id_{0};

  // Serialises reconcile passes (the thread, Reconcile(), Stop()).
  absl::Mutex reconcile_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::optional<int64_t> last_counter_ ABSL_GUARDED_BY(reconcile_mu_);
  int64_t last_pass_us_ ABSL_GUARDED_BY(reconcile_mu_) = 0;  // monotonic
  // cairn_model_loaded series per deployment, held while the roles hold.
  std::map<std::string, std::vector<std::shared_ptr<Gauge>>> loaded_gauges_ ABSL_GUARDED_BY(reconcile_mu_);
  // cairn_model_load_failures_total series per deployment, held (so that
  // they stay in /metrics) until the deployment is removed.
  std::map<std::string, std::vector<std::shared_ptr<Counter>>> load_failures_ ABSL_GUARDED_BY(reconcile_mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Deployment>> deployments_ ABSL_GUARDED_BY(mu_);
  bool reconciled_once_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread reconcile_thread_;

  absl::Mutex retire_mu_;
  std::deque<std::shared_ptr<ModelRunner>> retiring_ ABSL_GUARDED_BY(retire_mu_);
  int64_t retiring_busy_ ABSL_GUARDED_BY(retire_mu_) = 0;
  bool retire_stop_ ABSL_GUARDED_BY(retire_mu_) = false;
  std::thread retirement_thread_;
};

}  // namespace cairn::serving

#endif  // CAIRN_SERVING_INFERENCE_PLANE_H_
