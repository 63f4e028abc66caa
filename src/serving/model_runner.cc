#include "serving/model_runner.h"

#include <algorithm>
#include <exception>
#include <utility>

#include <fmt/format.h>

#include "absl/cleanup/cleanup.h"
#include "absl/synchronization/notification.h"
#include "base/deferred.h"
#include "base/task_queue.h"

namespace cairn::serving {
namespace {

FailureReason ReasonOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
      return FailureReason::kInvalidInput;
    case absl::StatusCode::kResourceExhausted:
      return FailureReason::kQueueFull;
    case absl::StatusCode::kUnavailable:
      return FailureReason::kUnavailable;
    case absl::StatusCode::kDeadlineExceeded:
      return FailureReason::kDeadline;
    default:
      return FailureReason::kBackend;
  }
}

double Seconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }

// Puts validated inputs in signature order, so that requests can be stacked
// input by input. ValidateInputs guarantees each declared input is there once.
void SortBySignature(const ModelSignature& signature, std::vector<Tensor>& inputs) {
  bool in_order = inputs.size() == signature.inputs.size();
  for (size_t i = 0; in_order && i < inputs.size(); ++i) in_order = inputs[i].name == signature.inputs[i].name;
  if (in_order) return;
  std::vector<Tensor> sorted;
  sorted.reserve(inputs.size());
  for (const TensorSpec& spec : signature.inputs) {
    auto it = std::find_if(inputs.begin(), inputs.end(), [&](const Tensor& t) { return t.name == spec.name; });
    if (it != inputs.end()) sorted.push_back(std::move(*it));
  }
  inputs = std::move(sorted);
}

// A zero-filled request of batch 1 for `signature` (warm-up).
std::vector<Tensor> ZeroInputs(const ModelSignature& signature) {
  std::vector<Tensor> inputs;
  for (const TensorSpec& spec : signature.inputs) {
    Tensor t;
    t.name = spec.name;
    t.datatype = spec.datatype;
    int64_t elements = 1;
    for (int64_t d : spec.shape) {
      t.shape.push_back(d < 0 ? 1 : d);
      elements *= t.shape.back();
    }
    // BYTES: each element a zero length prefix (an empty string); others: zero bytes.
    size_t element_size = spec.datatype == DataType::kBytes ? 4 : ElementSize(spec.datatype);
    t.data.assign(static_cast<size_t>(elements) * element_size, '\0');
    inputs.push_back(std::move(t));
  }
  return inputs;
}

}  // namespace

// The requests this thread (an event loop) handed each quick runner during
// its current pass over its connections; the runner computes them when the
// pass ends (RunPassBatch).
struct ModelRunner::PassBatch {
  ModelRunner* runner;
  std::vector<Request*> requests;
};
thread_local std::vector<ModelRunner::PassBatch> ModelRunner::pass_batches_;

struct ModelRunner::Request {
  std::vector<Tensor> inputs;
  int64_t rows = 1;
  bool batchable = false;  // every input has a batch dimension
  absl::Time arrival;
  absl::Time deadline = absl::InfiniteFuture();
  bool queued = false;  // guarded by the runner's mu_: still in the queue
  Callback callback;    // Submit: called with the result; Infer: empty
  TaskQueue* home = nullptr;  // Submit on a thread with a TaskQueue: the callback runs there
  absl::Notification done;
  absl::StatusOr<RunResult> result{absl::UnknownError("no result")};
  // Infer's requests: who owns the request once a worker took it. The waiter
  // gives it up at its deadline (kAbandoned: the worker deletes it when its
  // batch ends); the worker claims it to deliver the result (kAnswered: the
  // waiter deletes it). Whoever moves it away from kWaiting first wins.
  enum State { kWaiting, kAnswered, kAbandoned };
  std::atomic<int> state{kWaiting};
};

absl::Status CheckRunnerOptions(const RunnerOptions& options) {
  if (options.max_batch_size < 1) {
    return absl::InvalidArgumentError(fmt::format("max_batch_size must be at least 1, got {}", options.max_batch_size));
  }
  if (options.max_queue_delay_us < 0) {
    return absl::InvalidArgumentError(
        fmt::format("max_queue_delay_us must not be negative, got {}", options.max_queue_delay_us));
  }
  if (options.instances < 1 || options.instances > 256) {
    return absl::InvalidArgumentError(fmt::format("instances must be 1..256, got {}", options.instances));
  }
  if (options.queue_capacity < 1) {
    return absl::InvalidArgumentError(fmt::format("queue_capacity must be at least 1, got {}", options.queue_capacity));
  }
  if (options.default_timeout_ms < 0) {
    return absl::InvalidArgumentError(
        fmt::format("default_timeout_ms must not be negative, got {}", options.default_timeout_ms));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ModelRunner>> ModelRunner::Create(std::shared_ptr<ModelBackend> backend,
                                                                 const RunnerOptions& options, ModelLabels labels,
                                                                 InferenceMetrics* metrics) {
  if (backend == nullptr) return absl::InvalidArgumentError("model runner: no backend");
  RETURN_IF_ERROR(CheckRunnerOptions(options));
  std::unique_ptr<MetricRegistry> own_registry;
  std::unique_ptr<InferenceMetrics> own_metrics;
  if (metrics == nullptr) {
    own_registry = std::make_unique<MetricRegistry>();
    own_metrics = std::make_unique<InferenceMetrics>(*own_registry);
    metrics = own_metrics.get();
  }
  std::unique_ptr<ModelSeries> series = metrics->ForModel(labels);
  series->memory_bytes().Set(static_cast<int64_t>(backend->memory_bytes()));
  return std::unique_ptr<ModelRunner>(new ModelRunner(std::move(backend), options, std::move(labels),
                                                      std::move(own_registry), std::move(own_metrics),
                                                      std::move(series)));
}

ModelRunner::ModelRunner(std::shared_ptr<ModelBackend> backend, const RunnerOptions& options, ModelLabels labels,
                         std::unique_ptr<MetricRegistry> own_registry, std::unique_ptr<InferenceMetrics> own_metrics,
                         std::unique_ptr<ModelSeries> series)
    : backend_(std::move(backend)),
      options_(options),
      labels_(std::move(labels)),
      own_registry_(std::move(own_registry)),
      own_metrics_(std::move(own_metrics)),
      series_(std::move(series)) {
  workers_.reserve(options_.instances);
  for (int i = 0; i < options_.instances; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ModelRunner::~ModelRunner() { Drain(); }

void ModelRunner::Drain() {
  absl::MutexLock drain_lock(&drain_mu_);
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    // Workers finish the queue (without waiting to batch: GatherDone) and
    // then exit; joining them waits for running requests too.
    stopping_ = true;
  }
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
  // Callers running on their own thread finish too.
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(this, &ModelRunner::NoneBusy));
}

bool ModelRunner::draining() const {
  absl::MutexLock lock(&mu_);
  return draining_;
}

int64_t ModelRunner::queue_depth() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(queue_.size());
}

int64_t ModelRunner::in_flight() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(queue_.size()) + running_;
}

Json ModelRunner::Statistics() const {
  Json stats = series_->Statistics();
  stats["deployment"] = labels_.deployment;
  stats["model"] = labels_.model;
  stats["version"] = labels_.version;
  return stats;
}

// ---------------------------------------------------------------------------
// Requests in

std::unique_ptr<ModelRunner::Request> ModelRunner::NewRequest(std::vector<Tensor> inputs,
                                                              std::optional<absl::Time> deadline) const {
  auto request = std::make_unique<Request>();
  request->arrival = absl::Now();
  request->deadline = deadline.value_or(options_.default_timeout_ms > 0
                                            ? request->arrival + absl::Milliseconds(options_.default_timeout_ms)
                                            : absl::InfiniteFuture());
  request->inputs = std::move(inputs);
  return request;
}

absl::Status ModelRunner::Prepare(Request* request) {
  RETURN_IF_ERROR(ValidateInputs(backend_->signature(), request->inputs));
  SortBySignature(backend_->signature(), request->inputs);
  request->batchable = !request->inputs.empty();
  for (const Tensor& t : request->inputs) request->batchable = request->batchable && !t.shape.empty();
  request->rows = request->batchable ? request->inputs[0].shape[0] : 1;
  return absl::OkStatus();
}

bool ModelRunner::WaitsForCompany() const {
  return options_.max_batch_size > 1 && options_.max_queue_delay_us > 0;
}

bool ModelRunner::InstanceFree(int max_busy) const {
  return !gathering_ && queue_.empty() && busy_instances_ <= max_busy;
}

bool ModelRunner::ClaimIdleInstance(int max_busy) {
  if (WaitsForCompany()) return false;
  absl::MutexLock lock(&mu_);
  if (draining_ || !InstanceFree(max_busy)) return false;
  ++busy_instances_;
  ++running_;
  return true;
}

void ModelRunner::ReleaseInstance() {
  absl::MutexLock lock(&mu_);
  --busy_instances_;
  --running_;
}

absl::Status ModelRunner::Enqueue(Request* request) {
  absl::MutexLock lock(&mu_);
  return EnqueueLocked(request);
}

absl::Status ModelRunner::EnqueueLocked(Request* request) {
  if (draining_) {
    return absl::UnavailableError(
        fmt::format("model {} version {} is shutting down", labels_.model, labels_.version));
  }
  if (queue_.size() >= static_cast<size_t>(options_.queue_capacity)) {
    return absl::ResourceExhaustedError(fmt::format("queue of model {} version {} is full ({} requests)",
                                                    labels_.model, labels_.version, queue_.size()));
  }
  request->queued = true;
  queue_.push_back(request);
  queued_rows_ += request->rows;
  series_->in_flight().Add(1);
  series_->queue_depth().Add(1);
  return absl::OkStatus();
}

void ModelRunner::Refuse(const absl::Status& status) {
  series_->requests(status.code()).Increment();
  series_->failures(ReasonOf(status.code())).Increment();
}

void ModelRunner::Complete(Request* request, absl::StatusOr<RunResult> result) {
  if (request->home != nullptr && request->home != TaskQueue::Current()) {
    // Answered on the thread that read the request: encoding and sending the
    // answer is its work, and this thread (a worker) goes back to computing.
    // Drain waits for the posted answers (the callback may use the runner).
    {
      absl::MutexLock lock(&mu_);
      ++posted_answers_;
    }
    std::exchange(request->home, nullptr)->Post([this, request, result = std::move(result)]() mutable {
      absl::Cleanup delivered = [this] {
        absl::MutexLock lock(&mu_);
        --posted_answers_;
      };
      Complete(request, std::move(result));
    });
    return;
  }
  series_->in_flight().Add(-1);
  if (!request->callback) {
    int waiting = Request::kWaiting;
    if (!request->state.compare_exchange_strong(waiting, Request::kAnswered)) {
      // The caller gave up at its deadline and was answered (and counted)
      // then; the result has no one to go to.
      delete request;
      return;
    }
  }
  series_->requests(result.status().code()).Increment();
  if (!result.ok()) series_->failures(ReasonOf(result.status().code())).Increment();
  series_->request_duration().Observe(Seconds(absl::Now() - request->arrival));
  if (request->callback) {
    Callback callback = std::move(request->callback);
    delete request;  // Submit's requests belong to the runner once queued
    callback(std::move(result));
    return;
  }
  request->result = std::move(result);
  request->done.Notify();  // the waiter may free `request` from here on
}

absl::StatusOr<RunResult> ModelRunner::Infer(std::vector<Tensor> inputs, std::optional<absl::Time> deadline) {
  return TryInfer(inputs, deadline);
}

absl::StatusOr<RunResult> ModelRunner::TryInfer(std::vector<Tensor>& inputs, std::optional<absl::Time> deadline) {
  // On the heap: a request given up at its deadline stays with the worker
  // that is computing it.
  std::unique_ptr<Request> request = NewRequest(std::move(inputs), deadline);
  absl::Status prepared = Prepare(request.get());
  if (prepared.ok() && ClaimIdleInstance(options_.instances - 1)) {
    // An idle model computes on the caller's thread: no hand-off, and no
    // way to answer before the computation ends.
    series_->in_flight().Add(1);
    RunOne(request.get(), absl::Now());
    ReleaseInstance();
    return std::move(request->result);
  }
  if (absl::Status s = prepared.ok() ? Enqueue(request.get()) : prepared; !s.ok()) {
    Refuse(s);
    inputs = std::move(request->inputs);
    return s;
  }
  if (request->deadline == absl::InfiniteFuture()) {
    request->done.WaitForNotification();
    return std::move(request->result);
  }
  if (request->done.WaitForNotificationWithDeadline(request->deadline)) return std::move(request->result);

  // The deadline passed. Still queued: withdraw it. Taken by a worker: give
  // it up unless the worker is already delivering its answer.
  bool withdrawn = false;
  {
    absl::MutexLock lock(&mu_);
    if (request->queued) {
      queue_.erase(std::find(queue_.begin(), queue_.end(), request.get()));
      queued_rows_ -= request->rows;
      request->queued = false;
      series_->queue_depth().Add(-1);
      series_->in_flight().Add(-1);
      withdrawn = true;
    }
  }
  if (!withdrawn) {
    int waiting = Request::kWaiting;
    if (!request->state.compare_exchange_strong(waiting, Request::kAbandoned)) {
      request->done.WaitForNotification();  // answered just now
      return std::move(request->result);
    }
  }
  absl::Status s = absl::DeadlineExceededError(
      withdrawn ? fmt::format("request to model {} version {} timed out in the queue", labels_.model,
                              labels_.version)
                : fmt::format("request to model {} version {} timed out while its batch was computing; the "
                              "model's answer will be discarded",
                              labels_.model, labels_.version));
  series_->requests(s.code()).Increment();
  series_->failures(FailureReason::kDeadline).Increment();
  series_->request_duration().Observe(Seconds(absl::Now() - request->arrival));
  if (!withdrawn) request.release();  // the worker deletes it when its batch ends (Complete)
  return s;
}

void ModelRunner::Submit(std::vector<Tensor> inputs, std::optional<absl::Time> deadline, Callback done) {
  if (absl::Status s = Queue(inputs, deadline, done, /*may_run_here=*/false); !s.ok()) done(s);
}

absl::Status ModelRunner::TrySubmit(std::vector<Tensor>& inputs, Callback& done) {
  return Queue(inputs, std::nullopt, done, /*may_run_here=*/true);
}

absl::Status ModelRunner::Queue(std::vector<Tensor>& inputs, std::optional<absl::Time> deadline, Callback& done,
                                bool may_run_here) {
  std::unique_ptr<Request> request = NewRequest(std::move(inputs), deadline);
  request->callback = std::move(done);  // before Enqueue: a worker may answer at once
  request->home = TaskQueue::Current();
  absl::Status prepared = Prepare(request.get());
  if (prepared.ok() && may_run_here && backend_->quick()) {
    // An event loop's requests wait for the end of its pass over its
    // connections and are computed together, on the loop: under load a pass
    // brings several (XGBoost predicts 32 rows for the cost of about 7
    // single rows), with no hand-off to a worker; alone, a request waits
    // only for the rest of the pass.
    if (DeferredTasks* later = DeferredTasks::Current(); later != nullptr && AddToPass(request.get(), *later)) {
      request.release();  // the pass batch's now
      return absl::OkStatus();
    }
    // Only a model with no instance busy computes here: under load, requests
    // queue and the workers batch them while the caller reads on.
    if (ClaimIdleInstance(/*max_busy=*/0)) {
      series_->in_flight().Add(1);
      RunOne(request.release(), absl::Now());  // Complete calls the callback and frees the request
      ReleaseInstance();
      return absl::OkStatus();
    }
  }
  if (absl::Status s = prepared.ok() ? Enqueue(request.get()) : prepared; !s.ok()) {
    Refuse(s);
    inputs = std::move(request->inputs);
    done = std::move(request->callback);
    return s;
  }
  request.release();  // owned by the queue now; Complete deletes it
  return absl::OkStatus();
}

bool ModelRunner::AddToPass(Request* request, DeferredTasks& later) {
  if (WaitsForCompany()) return false;
  {
    absl::MutexLock lock(&mu_);
    if (draining_) return false;  // refused by Enqueue, so that the caller can send it elsewhere
    ++pass_requests_;  // Drain waits for them
  }
  series_->in_flight().Add(1);
  auto it = std::find_if(pass_batches_.begin(), pass_batches_.end(),
                         [this](const PassBatch& b) { return b.runner == this; });
  if (it == pass_batches_.end()) {
    pass_batches_.push_back(PassBatch{this, {}});
    it = pass_batches_.end() - 1;
    later.Add([this] { RunPassBatch(); });
  }
  it->requests.push_back(request);
  return true;
}

void ModelRunner::RunPassBatch() {
  auto it = std::find_if(pass_batches_.begin(), pass_batches_.end(),
                         [this](const PassBatch& b) { return b.runner == this; });
  std::vector<Request*> requests = std::move(it->requests);
  pass_batches_.erase(it);
  const auto n = static_cast<int64_t>(requests.size());
  bool here;
  std::vector<std::pair<Request*, absl::Status>> refused;  // the queue was full
  {
    absl::MutexLock lock(&mu_);
    // Computed here when an instance is free and nothing queued is waiting
    // for one, or when the runner is draining (its workers may be gone);
    // else queued for the workers, behind the requests already waiting.
    here = draining_ || InstanceFree(options_.instances - 1);
    if (here) {
      ++busy_instances_;
      running_ += n;
    } else {
      for (Request* r : requests) {
        if (absl::Status s = EnqueueLocked(r); s.ok()) {
          series_->in_flight().Add(-1);  // EnqueueLocked counted it again
        } else {
          refused.emplace_back(r, std::move(s));
        }
      }
      pass_requests_ -= n;
    }
  }
  for (auto& [r, status] : refused) Complete(r, std::move(status));
  if (!here) return;
  // In batches of up to max_batch_size rows of requests that stack.
  std::vector<Request*> batch;
  int64_t rows = 0;
  for (Request* r : requests) {
    if (!batch.empty() && (rows + r->rows > options_.max_batch_size || !Stackable(*batch[0], *r))) {
      RunBatch(batch);
      batch.clear();
      rows = 0;
    }
    batch.push_back(r);
    rows += r->rows;
  }
  if (!batch.empty()) RunBatch(batch);
  absl::MutexLock lock(&mu_);
  --busy_instances_;
  running_ -= n;
  pass_requests_ -= n;
}

// ---------------------------------------------------------------------------
// Workers

bool ModelRunner::WorkAvailable() const {
  return (!gathering_ && !queue_.empty() && busy_instances_ < options_.instances) || (stopping_ && queue_.empty());
}

bool ModelRunner::GatherDone() const {
  return queue_.empty() || stopping_ || queued_rows_ >= options_.max_batch_size;
}

void ModelRunner::WorkerLoop() {
  std::vector<Request*> batch;
  std::vector<Request*> expired;
  const bool batching = options_.max_batch_size > 1;
  const absl::Duration delay = absl::Microseconds(options_.max_queue_delay_us);
  mu_.Lock();
  while (true) {
    mu_.Await(absl::Condition(this, &ModelRunner::WorkAvailable));
    if (queue_.empty()) break;  // stopping, and nothing left
    if (batching && delay > absl::ZeroDuration()) {
      // This worker gathers; the others wait for it to take its batch (one
      // gatherer at a time keeps batches full instead of split across idle
      // workers).
      gathering_ = true;
      while (!GatherDone()) {
        absl::Time until = queue_.front()->arrival + delay;
        if (absl::Now() >= until) break;
        mu_.AwaitWithDeadline(absl::Condition(this, &ModelRunner::GatherDone), until);
      }
      gathering_ = false;
    }
    TakeBatch(&batch, &expired);
    running_ += static_cast<int64_t>(batch.size());
    if (!batch.empty()) ++busy_instances_;
    mu_.Unlock();

    for (Request* r : expired) {
      Complete(r, absl::DeadlineExceededError(fmt::format("request to model {} version {} timed out in the queue",
                                                          labels_.model, labels_.version)));
    }
    expired.clear();
    const int64_t ran = static_cast<int64_t>(batch.size());
    if (!batch.empty()) RunBatch(batch);
    batch.clear();

    mu_.Lock();
    running_ -= ran;
    if (ran > 0) --busy_instances_;
  }
  mu_.Unlock();
}

bool ModelRunner::Stackable(const Request& first, const Request& r) {
  if (!first.batchable || !r.batchable || r.inputs.size() != first.inputs.size()) return false;
  for (size_t i = 0; i < r.inputs.size(); ++i) {
    const Tensor& a = first.inputs[i];
    const Tensor& b = r.inputs[i];
    if (a.name != b.name || a.datatype != b.datatype || a.shape.size() != b.shape.size() ||
        !std::equal(a.shape.begin() + 1, a.shape.end(), b.shape.begin() + 1)) {
      return false;
    }
  }
  return true;
}

void ModelRunner::TakeBatch(std::vector<Request*>* batch, std::vector<Request*>* expired) {
  const absl::Time now = absl::Now();
  auto take = [&](std::deque<Request*>::iterator it, std::vector<Request*>* into) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Request* r = *it;
    r->queued = false;
    queued_rows_ -= r->rows;
    series_->queue_depth().Add(-1);
    into->push_back(r);
    return queue_.erase(it);
  };
  auto it = queue_.begin();
  while (it != queue_.end() && (*it)->deadline <= now) it = take(it, expired);
  if (it == queue_.end()) return;
  Request* first = *it;
  it = take(it, batch);
  int64_t rows = first->rows;
  if (options_.max_batch_size <= 1 || !first->batchable) return;

  while (it != queue_.end() && rows < options_.max_batch_size) {
    Request* r = *it;
    if (r->deadline <= now) {
      it = take(it, expired);
    } else if (rows + r->rows <= options_.max_batch_size && Stackable(*first, *r)) {
      rows += r->rows;
      it = take(it, batch);
    } else {
      ++it;
    }
  }
}

absl::StatusOr<std::vector<Tensor>> ModelRunner::CallBackend(const std::vector<Tensor>& inputs) {
  // Backends must not throw; if one does anyway (a library we call), the
  // request fails instead of the server.
  try {
    return backend_->Infer(inputs);
  } catch (const std::exception& e) {
    return absl::InternalError(fmt::format("model {} version {}: backend threw: {}", labels_.model,
                                           labels_.version, e.what()));
  } catch (...) {
    return absl::InternalError(
        fmt::format("model {} version {}: backend threw an exception", labels_.model, labels_.version));
  }
}

void ModelRunner::RunOne(Request* r, absl::Time start) {
  const absl::Time call_start = absl::Now();
  absl::StatusOr<std::vector<Tensor>> outputs = CallBackend(r->inputs);
  const absl::Time end = absl::Now();
  series_->compute_duration().Observe(Seconds(end - call_start));
  series_->batch_size().Observe(static_cast<double>(r->rows));
  if (!outputs.ok()) {
    Complete(r, std::move(outputs).status());
    return;
  }
  RunResult result;
  result.outputs = std::move(outputs).value();
  result.inputs = std::move(r->inputs);
  result.queue_us = absl::ToInt64Microseconds(start - r->arrival);
  result.compute_us = absl::ToInt64Microseconds(end - call_start);
  result.batch_size = static_cast<int>(r->rows);
  Complete(r, std::move(result));
}

void ModelRunner::RunBatch(std::vector<Request*>& batch) {
  const absl::Time start = absl::Now();
  int64_t rows = 0;
  for (Request* r : batch) {
    series_->queue_duration().Observe(Seconds(start - r->arrival));
    rows += r->rows;
  }
  if (batch.size() == 1) {
    RunOne(batch[0], start);  // passed through: no Concat/Slice copies
    return;
  }

  std::vector<Tensor> stacked;
  stacked.reserve(batch[0]->inputs.size());
  std::vector<const Tensor*> parts(batch.size());
  absl::Status concat_status;
  for (size_t i = 0; i < batch[0]->inputs.size() && concat_status.ok(); ++i) {
    for (size_t j = 0; j < batch.size(); ++j) parts[j] = &batch[j]->inputs[i];
    absl::StatusOr<Tensor> t = ConcatBatch(parts);
    if (t.ok()) {
      stacked.push_back(std::move(t).value());
    } else {
      concat_status = t.status();
    }
  }
  absl::StatusOr<std::vector<Tensor>> outputs =
      concat_status.ok() ? CallBackend(stacked) : absl::StatusOr<std::vector<Tensor>>(concat_status);
  const absl::Duration compute = absl::Now() - start;
  if (concat_status.ok()) {
    series_->compute_duration().Observe(Seconds(compute));
    series_->batch_size().Observe(static_cast<double>(rows));
  }
  if (!outputs.ok() && outputs.status().code() == absl::StatusCode::kInvalidArgument) {
    // One bad request must not fail the others: run each on its own.
    for (Request* r : batch) RunOne(r, start);
    return;
  }
  if (outputs.ok()) {
    for (const Tensor& t : *outputs) {
      if (t.shape.empty() || t.shape[0] != rows) {
        outputs = absl::InternalError(fmt::format(
            "model {} version {}: output '{}' has {} rows for a batch of {}", labels_.model, labels_.version,
            t.name, t.shape.empty() ? 0 : t.shape[0], rows));
        break;
      }
    }
  }
  if (!outputs.ok()) {
    for (Request* r : batch) Complete(r, outputs.status());
    return;
  }
  int64_t offset = 0;
  for (Request* r : batch) {
    RunResult result;
    result.outputs.reserve(outputs->size());
    for (const Tensor& t : *outputs) result.outputs.push_back(SliceBatch(t, offset, r->rows));
    offset += r->rows;
    result.inputs = std::move(r->inputs);
    result.queue_us = absl::ToInt64Microseconds(start - r->arrival);
    result.compute_us = absl::ToInt64Microseconds(compute);
    result.batch_size = static_cast<int>(rows);
    Complete(r, std::move(result));
  }
}

absl::Status ModelRunner::Warm() {
  const std::vector<Tensor> zeros = ZeroInputs(backend_->signature());
  RETURN_IF_ERROR(ValidateInputs(backend_->signature(), zeros));
  // One call per instance at the same time, so that every execution context
  // a backend keeps per concurrent caller gets initialised. Warm-up runs
  // once per load: a few short-lived threads are fine here.
  std::vector<absl::Status> results(options_.instances);
  std::vector<std::thread> threads;
  for (int i = 1; i < options_.instances; ++i) {
    threads.emplace_back([this, &zeros, &results, i] { results[i] = CallBackend(zeros).status(); });
  }
  results[0] = CallBackend(zeros).status();
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : results) {
    if (!s.ok()) {
      return Annotate(s, fmt::format("warming up model {} version {}", labels_.model, labels_.version));
    }
  }
  return absl::OkStatus();
}

}  // namespace cairn::serving
