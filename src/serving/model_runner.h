// ModelRunner: one loaded model version serving requests. It owns a bounded
// request queue and `instances` worker threads, each calling the backend's
// Infer; with dynamic batching, a worker gathers queued requests into one
// backend call.
//
// Dynamic batching (max_batch_size > 1): a free worker becomes the gatherer;
// it waits until the queue holds max_batch_size rows or until
// max_queue_delay_us have passed since the oldest queued request arrived,
// then takes the oldest request and every later one with the same inputs
// (names, datatypes and dimensions after dim 0) that still fits, stacks them
// (ConcatBatch), runs one Infer and hands each request its rows of the
// outputs (SliceBatch). A batch of one request is passed through as is. A
// request with more rows than max_batch_size runs alone.
//
// Failures: a request whose deadline passes while queued fails
// kDeadlineExceeded without running; a full queue refuses with
// kResourceExhausted ("queue of model M version V is full (N requests)", HTTP
// 429); a draining or stopped runner refuses with kUnavailable (HTTP 503). A
// backend error fails every request of its batch, except kInvalidArgument
// from a batch of several requests: those are re-run one by one so that one
// bad request does not fail the others. Inputs are checked against the
// signature (ValidateInputs) before queueing (kInvalidArgument).
//
// Timeouts: Infer answers kDeadlineExceeded at the deadline, whether the
// request is still queued (it is withdrawn and never runs) or its batch is
// computing. A backend call cannot be interrupted: it runs to completion
// (backends have their own limits, e.g. BackendOptions::python_timeout_ms),
// the other requests of its batch get their answers, and the timed-out
// request's answer is discarded. The exception is a request run directly on
// the caller's thread by an idle model (no batching delay configured): it is
// answered when its call ends. Submit's callbacks always get the answer;
// only a deadline passing in the queue fails them.
//
// Thread-safety: thread-safe. Infer blocks the calling thread; Submit and
// TrySubmit do not (an event loop uses them).
//
// Ownership: the runner shares the backend (std::shared_ptr) and keeps it
// until destroyed. The destructor drains (Drain()).
//
// Usage:
//   ASSIGN_OR_RETURN(std::unique_ptr<ModelRunner> runner,
//                    ModelRunner::Create(std::move(backend),
//                                        {.max_batch_size = 32, .max_queue_delay_us = 500, .instances = 2},
//                                        {"prod", "iris", 3}, &metrics));
//   RETURN_IF_ERROR(runner->Warm());
//   ASSIGN_OR_RETURN(RunResult r, runner->Infer(std::move(inputs)));
//   // r.outputs, r.batch_size, r.queue_us ...
//   runner->Drain();   // refuse new requests, finish queued ones, stop workers
#ifndef CAIRN_SERVING_MODEL_RUNNER_H_
#define CAIRN_SERVING_MODEL_RUNNER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/deferred.h"
#include "base/json.h"
#include "base/status.h"
#include "serving/metrics.h"
#include "serving/model_backend.h"
#include "serving/tensor.h"

namespace cairn::serving {

struct RunnerOptions {
  int max_batch_size = 1;          // rows per backend call; 1 = no batching
  int64_t max_queue_delay_us = 0;  // how long the oldest request may wait for others to join its batch
  int instances = 1;               // worker threads calling the backend concurrently
  int queue_capacity = 1024;       // queued requests (not rows) before refusing
  int64_t default_timeout_ms = 0;  // deadline for requests given none; 0 = none

  bool operator==(const RunnerOptions&) const = default;
};

// kInvalidArgument naming the field for a value out of range (sizes < 1,
// negative delays or timeouts).
absl::Status CheckRunnerOptions(const RunnerOptions& options);

struct RunResult {
  std::vector<Tensor> outputs;   // one per signature output, this request's rows only
  std::vector<Tensor> inputs;    // the request's inputs, handed back (e.g. for the payload log) without a copy
  int64_t queue_us = 0;          // arrival to the start of its backend call
  int64_t compute_us = 0;        // the backend call
  int batch_size = 0;            // rows in the backend call that answered it
};

class ModelRunner {
 public:
  using Callback = std::function<void(absl::StatusOr<RunResult>)>;

  // Starts the workers. `metrics` may be null (the runner then keeps its
  // series to itself; Statistics() still works); not owned, must outlive the
  // runner. kInvalidArgument for bad options.
  static absl::StatusOr<std::unique_ptr<ModelRunner>> Create(std::shared_ptr<ModelBackend> backend,
                                                             const RunnerOptions& options, ModelLabels labels,
                                                             InferenceMetrics* metrics);
  ~ModelRunner();
  ModelRunner(const ModelRunner&) = delete;
  ModelRunner& operator=(const ModelRunner&) = delete;

  // Runs one request of zeros (batch 1; BYTES elements empty; -1 dimensions
  // as 1) built from the signature through every instance at once, so that
  // lazy initialisation happens before traffic. Returns the first error.
  absl::Status Warm();

  // Queues one request and waits for its answer. `deadline` nullopt: now +
  // default_timeout_ms (none when that is 0).
  absl::StatusOr<RunResult> Infer(std::vector<Tensor> inputs, std::optional<absl::Time> deadline = std::nullopt);
  // Like Infer, but a request refused before it was queued (invalid inputs,
  // queue full, draining) leaves `inputs` with the caller (possibly
  // reordered to signature order), so that it can be sent elsewhere: the
  // inference plane re-routes a request that met a runner that had just
  // begun draining. Once queued, `inputs` is consumed (see RunResult::inputs).
  absl::StatusOr<RunResult> TryInfer(std::vector<Tensor>& inputs, std::optional<absl::Time> deadline);

  // Queues one request; `done` is called exactly once: on a worker thread,
  // or, for a request submitted on a thread with a TaskQueue (an event loop),
  // on that thread (posted there, so that the worker goes back to computing
  // while the loop encodes the answer), or on the calling thread when the
  // request is refused at once. It must not block for long: it holds up that
  // thread. A thread with a TaskQueue must not destroy or drain the runner
  // while it may have answers posted to it (the inference plane drains
  // runners on its own thread).
  void Submit(std::vector<Tensor> inputs, std::optional<absl::Time> deadline, Callback done);
  // Like Submit (with the default deadline), but a request refused before
  // it was queued returns the error, leaves `inputs` and `done` with the
  // caller and never calls `done` (see TryInfer). When the backend is
  // quick() and batching does not wait for company:
  //  - on a thread with DeferredTasks (an event loop), the request joins
  //    the thread's others for this runner, and all are computed when the
  //    thread runs its deferred tasks: on that thread, in batches, when an
  //    instance is free and nothing queued waits for one (or the runner is
  //    draining); else they are queued for the workers. Such a thread must
  //    not destroy the runner while it has requests pending for it.
  //  - elsewhere, when no instance is busy, the request is computed on the
  //    calling thread and `done` is called before TrySubmit returns.
  absl::Status TrySubmit(std::vector<Tensor>& inputs, Callback& done);

  // Refuses new requests (kUnavailable), lets the queued and running ones
  // finish, then stops the workers. Blocks until done; idempotent.
  void Drain();
  bool draining() const;

  const ModelSignature& signature() const { return backend_->signature(); }
  std::string_view platform() const { return backend_->platform(); }
  const ModelLabels& labels() const { return labels_; }
  const RunnerOptions& options() const { return options_; }
  uint64_t memory_bytes() const { return backend_->memory_bytes(); }
  int64_t queue_depth() const;
  // Requests queued or being computed.
  int64_t in_flight() const;
  // ModelSeries::Statistics() plus "deployment", "model", "version".
  Json Statistics() const;

 private:
  struct Request;
  struct Batch;
  struct PassBatch;

  ModelRunner(std::shared_ptr<ModelBackend> backend, const RunnerOptions& options, ModelLabels labels,
              std::unique_ptr<MetricRegistry> own_registry, std::unique_ptr<InferenceMetrics> own_metrics,
              std::unique_ptr<ModelSeries> series);

  // A request arriving now; its deadline is `deadline`, else default_timeout_ms.
  std::unique_ptr<Request> NewRequest(std::vector<Tensor> inputs, std::optional<absl::Time> deadline) const;
  // Submit and TrySubmit: queues a request (or, when `may_run_here`, runs it
  // on this thread; see TrySubmit). On refusal returns the error and hands
  // `inputs` and `done` back.
  absl::Status Queue(std::vector<Tensor>& inputs, std::optional<absl::Time> deadline, Callback& done,
                     bool may_run_here);
  // Validates `request`'s inputs and puts them in signature order.
  absl::Status Prepare(Request* request);
  // Queues a prepared `request` (taking ownership when queued); on refusal
  // returns the error and leaves `request` to the caller.
  absl::Status Enqueue(Request* request);
  absl::Status EnqueueLocked(Request* request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // TrySubmit on a thread with DeferredTasks: adds a prepared `request` to
  // the thread's pass batch for this runner (taking ownership), or returns
  // false (draining, or batching waits for company).
  bool AddToPass(Request* request, DeferredTasks& later);
  // The deferred task: computes or queues this thread's pass batch.
  void RunPassBatch();
  // Whether `r` can join a batch that `first` starts (same inputs, same
  // dimensions after the batch dimension).
  static bool Stackable(const Request& first, const Request& r);
  // When nothing is queued, no batch is being gathered, batching would not
  // wait for company and at most `max_busy` instances are busy, claims an
  // idle instance for the caller's own thread (no handoff to a worker: the
  // latency of a request on an idle model is the backend's plus
  // validation). Release with ReleaseInstance.
  bool ClaimIdleInstance(int max_busy);
  // Batching waits for other requests to join (max_queue_delay_us > 0), so
  // no request is computed at once on its caller's thread.
  bool WaitsForCompany() const;
  // Nothing queued or being gathered, and at most `max_busy` instances busy.
  bool InstanceFree(int max_busy) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void ReleaseInstance();
  void Complete(Request* request, absl::StatusOr<RunResult> result);
  void Refuse(const absl::Status& status);
  void WorkerLoop();
  // Takes the next batch off the queue; expired requests go to `expired`.
  void TakeBatch(std::vector<Request*>* batch, std::vector<Request*>* expired) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunBatch(std::vector<Request*>& batch);
  // Runs `request` alone; `start` is when its batch left the queue.
  void RunOne(Request* request, absl::Time start);
  absl::StatusOr<std::vector<Tensor>> CallBackend(const std::vector<Tensor>& inputs);
  bool GatherDone() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  bool WorkAvailable() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  bool NoneBusy() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return busy_instances_ == 0 && pass_requests_ == 0 && posted_answers_ == 0;
  }

  const std::shared_ptr<ModelBackend> backend_;
  const RunnerOptions options_;
  const ModelLabels labels_;
  std::unique_ptr<MetricRegistry> own_registry_;     // only when created without metrics
  std::unique_ptr<InferenceMetrics> own_metrics_;
  const std::unique_ptr<ModelSeries> series_;

  mutable absl::Mutex mu_;
  std::deque<Request*> queue_ ABSL_GUARDED_BY(mu_);
  int64_t queued_rows_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t running_ ABSL_GUARDED_BY(mu_) = 0;  // requests in backend calls
  int busy_instances_ ABSL_GUARDED_BY(mu_) = 0;  // workers in backend calls + callers running on their own thread
  int64_t pass_requests_ ABSL_GUARDED_BY(mu_) = 0;  // in pass batches, not yet queued or answered
  int64_t posted_answers_ ABSL_GUARDED_BY(mu_) = 0;  // posted to their requests' TaskQueues, not yet delivered
  bool gathering_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;  // joined by Drain
  static thread_local std::vector<PassBatch> pass_batches_;  // this thread's, for every runner
  absl::Mutex drain_mu_;              // serialises Drain callers
};

}  // namespace cairn::serving

#endif  // CAIRN_SERVING_MODEL_RUNNER_H_
