// Metrics for the inference plane: a small Prometheus registry (counters,
// gauges and fixed-bucket histograms, each family with a fixed set of label
// names) rendered in the text exposition format 0.0.4, plus the series Cairn
// exports for every loaded model version (InferenceMetrics / ModelSeries).
//
// Why our own and not prometheus-cpp: it is not packaged in Debian 12, and the
// hot path needs only an atomic add on a series the caller already holds.
//
// Cost model: creating a series (Family::WithLabels) takes the family's mutex;
// updating one (Increment, Set, Observe) is a few relaxed atomic operations
// and never locks. Callers on a hot path look their series up once and keep
// the returned std::shared_ptr.
//
// Series lifetime: a family keeps every series it created, and each caller
// holding a series keeps a std::shared_ptr to it. MetricRegistry::Sweep()
// forgets the series nobody else holds any more, so that the series of an
// unloaded model version disappear from /metrics once its runner is gone,
// while a series that someone still updates is never dropped.
//
// Thread-safety: everything here is thread-safe.
//
// Usage:
//   MetricRegistry registry;
//   Family<Counter>& requests = registry.AddCounter("cairn_x_total", "Requests.", {"model"});
//   std::shared_ptr<Counter> c = requests.WithLabels({"iris"});
//   c->Increment();
//   std::string text = registry.Render();   // "# HELP cairn_x_total Requests.\n# TYPE ..."
//
//   InferenceMetrics metrics(registry);     // Cairn's serving families
//   std::unique_ptr<ModelSeries> s = metrics.ForModel({"prod", "iris", 3});
//   s->requests(absl::StatusCode::kOk).Increment();
//   s->request_duration().Observe(0.0012);  // seconds
#ifndef CAIRN_SERVING_METRICS_H_
#define CAIRN_SERVING_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "base/json.h"

namespace cairn::serving {

enum class MetricType { kCounter, kGauge, kHistogram };

// A monotonically increasing count.
class Counter {
 public:
  void Increment(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down. Integer-valued: every gauge Cairn exports
// counts something (requests, bytes, 0/1 flags).
class Gauge {
 public:
  void Set(int64_t v) { value_.store(v, std::memory_order_relaxed); }
  void Add(int64_t delta) { value_.fetch_add(delta, std::memory_order_relaxed); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// A distribution over fixed buckets (upper bounds, ascending; +Inf implied).
class Histogram {
 public:
  // REQUIRES: `bounds` is strictly ascending and finite.
  explicit Histogram(std::span<const double> bounds);

  void Observe(double value);

  struct Snapshot {
    std::vector<double> bounds;    // upper bounds, without +Inf
    std::vector<uint64_t> counts;  // per bucket (not cumulative); bounds.size() + 1 entries, the last for +Inf
    uint64_t count = 0;
    double sum = 0;

    // The q-quantile (0 <= q <= 1) estimated like Prometheus's
    // histogram_quantile: linear within the bucket holding it; a quantile in
    // the +Inf bucket gives the largest finite bound. 0 when empty.
    double Quantile(double q) const;
    double Mean() const { return count == 0 ? 0 : sum / static_cast<double>(count); }
  };
  // Not atomic across buckets: an observation racing with it may show in the
  // buckets but not yet in the sum; good enough for monitoring.
  Snapshot snapshot() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<double> sum_{0};
};

namespace internal {

// What MetricRegistry needs from a family, whatever its metric type.
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, MetricType type, std::vector<std::string> label_names)
      : name_(std::move(name)), help_(std::move(help)), type_(type), label_names_(std::move(label_names)) {}
  virtual ~FamilyBase() = default;
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  const std::string& name() const { return name_; }
  MetricType type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

  // Appends the # HELP / # TYPE lines and every series to `out`.
  virtual void Render(std::string* out) const = 0;
  // Forgets series that nobody but this family holds.
  virtual void Sweep() = 0;

 protected:
  // `{a="x",b="y"}` (label values escaped), or "" without labels; `extra`
  // (already formatted, e.g. `le="0.5"`) is appended inside the braces.
  std::string FormatLabels(const std::vector<std::string>& values, std::string_view extra = {}) const;
  void RenderHeader(std::string* out) const;

 private:
  const std::string name_;
  const std::string help_;
  const MetricType type_;
  const std::vector<std::string> label_names_;
};

}  // namespace internal

// All series of one metric name: one per combination of label values.
// T is Counter, Gauge or Histogram.
template <typename T>
class Family final : public internal::FamilyBase {
 public:
  Family(std::string name, std::string help, MetricType type, std::vector<std::string> label_names,
         std::vector<double> bounds = {})
      : FamilyBase(std::move(name), std::move(help), type, std::move(label_names)), bounds_(std::move(bounds)) {}

  // The series for `label_values` (one per label name, in order), created on
  // first use; the same object for the same values while anyone holds it.
  // REQUIRES: label_values.size() == label_names().size() (a programming
  // error otherwise: label sets are fixed in code, not taken from input).
  std::shared_ptr<T> WithLabels(std::vector<std::string> label_values);

  void Render(std::string* out) const override;
  void Sweep() override;

 private:
  const std::vector<double> bounds_;  // histograms only
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, std::shared_ptr<T>> series_ ABSL_GUARDED_BY(mu_);
};

// Defined and instantiated in metrics.cc for exactly these three types.
template <>
void Family<Counter>::Render(std::string* out) const;
template <>
void Family<Gauge>::Render(std::string* out) const;
template <>
void Family<Histogram>::Render(std::string* out) const;
extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

// Owns metric families and renders them. Families live as long as the registry.
class MetricRegistry {
 public:
  MetricRegistry() = default;
  MetricRegistry(const MetricRegistry&) = delete;
  MetricRegistry& operator=(const MetricRegistry&) = delete;

  // Registers a family, or returns the existing one of that name. Names and
  // label names are constants in code: asking again with another type or
  // other labels is a programming error (CHECK-fails).
  Family<Counter>& AddCounter(std::string name, std::string help, std::vector<std::string> label_names);
  Family<Gauge>& AddGauge(std::string name, std::string help, std::vector<std::string> label_names);
  Family<Histogram>& AddHistogram(std::string name, std::string help, std::vector<std::string> label_names,
                                  std::vector<double> bounds);

  // The text exposition format 0.0.4, families in name order.
  std::string Render() const;
  // Forgets every series that nobody but the registry holds (see the top).
  void Sweep();

 private:
  template <typename T>
  Family<T>& Add(std::string name, std::string help, MetricType type, std::vector<std::string> label_names,
                 std::vector<double> bounds);

  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<internal::FamilyBase>> families_ ABSL_GUARDED_BY(mu_);
};

// Which loaded model version a series, a runner or a log line is about.
struct ModelLabels {
  std::string deployment;
  std::string model;
  int64_t version = 0;
};

// Why a request failed, for cairn_inference_failures_total{reason}.
enum class FailureReason {
  kInvalidInput,  // "invalid_input": the request does not match the signature, or the model rejected it
  kQueueFull,     // "queue_full": the bounded queue was full (HTTP 429)
  kUnavailable,   // "unavailable": the runner is draining or stopped (HTTP 503)
  kDeadline,      // "deadline": the request's deadline passed
  kBackend,       // "backend": the backend failed for another reason
};
std::string_view FailureReasonName(FailureReason reason);

class InferenceMetrics;

// The series of one loaded model version (one ModelRunner). Updates are
// lock-free; the first use of a status code or failure reason creates its
// series (under a mutex, once).
class ModelSeries {
 public:
  ModelSeries(const ModelSeries&) = delete;
  ModelSeries& operator=(const ModelSeries&) = delete;

  const ModelLabels& labels() const { return labels_; }

  // cairn_inference_requests_total{..., code}; `code` rendered as the status
  // code's name in lower case ("ok", "invalid_argument", "resource_exhausted").
  Counter& requests(absl::StatusCode code);
  // cairn_inference_failures_total{..., reason}
  Counter& failures(FailureReason reason);
  Histogram& request_duration() { return *request_duration_; }  // seconds, arrival to answer
  Histogram& queue_duration() { return *queue_duration_; }      // seconds, arrival to batch start
  Histogram& compute_duration() { return *compute_duration_; }  // seconds per backend call
  Histogram& batch_size() { return *batch_size_; }              // rows per backend call
  Gauge& in_flight() { return *in_flight_; }                    // requests queued or running
  Gauge& queue_depth() { return *queue_depth_; }                // requests queued
  Gauge& memory_bytes() { return *memory_bytes_; }

  // Per-model statistics: {"requests": {"ok": n, ...}, "failures": {"queue_full": n, ...},
  // "request_latency_ms": {"count", "mean", "p50", "p99"}, "queue_latency_ms": {...},
  // "compute_latency_ms": {...}, "batch_size": {"count", "mean", "p50", "p99"},
  // "in_flight", "queue_depth", "memory_bytes"}. Quantiles come from the
  // histogram buckets (see Histogram::Snapshot::Quantile).
  Json Statistics() const;

 private:
  friend class InferenceMetrics;
  ModelSeries(InferenceMetrics& metrics, ModelLabels labels);

  static constexpr int kCodes = 17;  // absl::StatusCode values 0..16
  static constexpr int kReasons = 5;

  InferenceMetrics& metrics_;
  const ModelLabels labels_;
  const std::string version_label_;
  std::shared_ptr<Histogram> request_duration_, queue_duration_, compute_duration_, batch_size_;
  std::shared_ptr<Gauge> in_flight_, queue_depth_, memory_bytes_;
  // Lazily created per code / reason; the raw pointers are what the hot path
  // reads, the shared_ptrs keep the series alive.
  std::array<std::atomic<Counter*>, kCodes> by_code_{};
  std::array<std::atomic<Counter*>, kReasons> by_reason_{};
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<Counter>> held_ ABSL_GUARDED_BY(mu_);
};

// The families Cairn's inference plane exports, registered in `registry`:
//   cairn_inference_requests_total{deployment,model,version,code}          counter
//   cairn_inference_failures_total{deployment,model,version,reason}        counter
//   cairn_inference_request_duration_seconds{deployment,model,version}     histogram
//   cairn_inference_queue_duration_seconds{deployment,model,version}       histogram
//   cairn_inference_compute_duration_seconds{deployment,model,version}     histogram
//   cairn_inference_batch_size{deployment,model,version}                   histogram
//   cairn_inference_in_flight{deployment,model,version}                    gauge
//   cairn_inference_queue_depth{deployment,model,version}                  gauge
//   cairn_model_loaded{deployment,model,version,role}                      gauge (1 while loaded in that role)
//   cairn_model_memory_bytes{deployment,model,version}                     gauge
//   cairn_model_load_failures_total{deployment,model,version}              counter
//   cairn_payload_log_dropped_total                                        counter
// Several InferenceMetrics over one registry share the families.
class InferenceMetrics {
 public:
  explicit InferenceMetrics(MetricRegistry& registry);  // `registry` not owned; must outlive this
  InferenceMetrics(const InferenceMetrics&) = delete;
  InferenceMetrics& operator=(const InferenceMetrics&) = delete;

  MetricRegistry& registry() { return registry_; }

  // A model version's series; they leave /metrics at the next Sweep() after
  // the returned object (and any other holder) is destroyed.
  std::unique_ptr<ModelSeries> ForModel(const ModelLabels& labels);
  // cairn_model_loaded for `labels` in `role` ("primary", "canary", "shadow").
  std::shared_ptr<Gauge> Loaded(const ModelLabels& labels, std::string_view role);
  std::shared_ptr<Counter> LoadFailures(const ModelLabels& labels);
  std::shared_ptr<Counter> PayloadLogDropped();

 private:
  friend class ModelSeries;

  MetricRegistry& registry_;
  Family<Counter>& requests_;
  Family<Counter>& failures_;
  Family<Histogram>& request_duration_;
  Family<Histogram>& queue_duration_;
  Family<Histogram>& compute_duration_;
  Family<Histogram>& batch_size_;
  Family<Gauge>& in_flight_;
  Family<Gauge>& queue_depth_;
  Family<Gauge>& loaded_;
  Family<Gauge>& memory_bytes_;
  Family<Counter>& load_failures_;
  Family<Counter>& payload_log_dropped_;
};

}  // namespace cairn::serving

#endif  // CAIRN_SERVING_METRICS_H_
