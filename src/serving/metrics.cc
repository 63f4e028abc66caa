#include "serving/metrics.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include <fmt/format.h>

#include <spdlog/spdlog.h>

namespace cairn::serving {
namespace {

// Metric names, label names and bounds are constants in code, never input:
// getting them wrong is a bug, reported and fatal at start-up.
void CheckDefinition(bool ok, std::string_view what) {
  if (ok) return;
  spdlog::critical("metrics: {}", what);
  std::abort();
}

// Latency buckets (seconds): 50 us to 10 s, dense where a fast model lives.
constexpr double kLatencyBounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                     0.025,   0.05,   0.1,     0.25,   0.5,   1,      2.5,    5,   10};
constexpr double kBatchBounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

// Prometheus floats: shortest round-trip form; +Inf/-Inf/NaN spelled its way.
std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

void AppendEscaped(std::string* out, std::string_view s, bool quote) {
  for (char c : s) {
    if (c == '\\') {
      *out += "\\\\";
    } else if (c == '\n') {
      *out += "\\n";
    } else if (quote && c == '"') {
      *out += "\\\"";
    } else {
      *out += c;
    }
  }
}

std::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

std::string CodeLabel(absl::StatusCode code) {
  std::string s = absl::StatusCodeToString(code);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

Json LatencyJson(const Histogram::Snapshot& s) {
  return Json{{"count", s.count},
              {"mean", s.Mean() * 1000},
              {"p50", s.Quantile(0.5) * 1000},
              {"p99", s.Quantile(0.99) * 1000}};
}

}  // namespace

// ---------------------------------------------------------------------------
// Histogram

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds.begin(), bounds.end()), counts_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  // Bucket i holds bounds[i-1] < v <= bounds[i] ("le" semantics).
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  double sum = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(sum, sum + value, std::memory_order_relaxed)) {
  }
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.bounds = bounds_;
  s.counts.resize(bounds_.size() + 1);
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    s.counts[i] = counts_[i].load(std::memory_order_relaxed);
    s.count += s.counts[i];
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

double Histogram::Snapshot::Quantile(double q) const {
  if (count == 0 || bounds.empty()) return 0;
  q = std::clamp(q, 0.0, 1.0);
  double rank = q * static_cast<double>(count);
  uint64_t below = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (static_cast<double>(below + counts[i]) >= rank && counts[i] > 0) {
      if (i == bounds.size()) return bounds.back();
      double lower = i == 0 ? std::min(0.0, bounds[0]) : bounds[i - 1];
      double upper = bounds[i];
      double within = (rank - static_cast<double>(below)) / static_cast<double>(counts[i]);
      return lower + (upper - lower) * std::clamp(within, 0.0, 1.0);
    }
    below += counts[i];
  }
  return bounds.back();
}

// ---------------------------------------------------------------------------
// Families

namespace internal {

std::string FamilyBase::FormatLabels(const std::vector<std::string>& values, std::string_view extra) const {
  if (label_names_.empty() && extra.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < label_names_.size(); ++i) {
    if (i > 0) out += ',';
    out += label_names_[i];
    out += "=\"";
    AppendEscaped(&out, values[i], /*quote=*/true);
    out += '"';
  }
  if (!extra.empty()) {
    if (!label_names_.empty()) out += ',';
    out += extra;
  }
  out += '}';
  return out;
}

void FamilyBase::RenderHeader(std::string* out) const {
  *out += "# HELP ";
  *out += name_;
  *out += ' ';
  AppendEscaped(out, help_, /*quote=*/false);
  *out += "\n# TYPE ";
  *out += name_;
  *out += ' ';
  *out += TypeName(type_);
  *out += '\n';
}

}  // namespace internal

template <typename T>
std::shared_ptr<T> Family<T>::WithLabels(std::vector<std::string> label_values) {
  CheckDefinition(label_values.size() == label_names().size(), name() + ": wrong number of label values");
  absl::MutexLock lock(&mu_);
  auto it = series_.find(label_values);
  if (it != series_.end()) return it->second;
  std::shared_ptr<T> series;
  if constexpr (std::is_same_v<T, Histogram>) {
    series = std::make_shared<Histogram>(bounds_);
  } else {
    series = std::make_shared<T>();
  }
  series_.emplace(std::move(label_values), series);
  return series;
}

template <typename T>
void Family<T>::Sweep() {
  absl::MutexLock lock(&mu_);
  // use_count() == 1: only this map holds it. New references are made only
  // here (under mu_) or by copying an existing holder's, so a series at 1
  // cannot gain a holder while we look.
  for (auto it = series_.begin(); it != series_.end();) {
    it = it->second.use_count() == 1 ? series_.erase(it) : std::next(it);
  }
}

template <>
void Family<Counter>::Render(std::string* out) const {
  RenderHeader(out);
  absl::MutexLock lock(&mu_);
  for (const auto& [values, series] : series_) {
    *out += name();
    *out += FormatLabels(values);
    *out += ' ';
    *out += std::to_string(series->value());
    *out += '\n';
  }
}

template <>
void Family<Gauge>::Render(std::string* out) const {
  RenderHeader(out);
  absl::MutexLock lock(&mu_);
  for (const auto& [values, series] : series_) {
    *out += name();
    *out += FormatLabels(values);
    *out += ' ';
    *out += std::to_string(series->value());
    *out += '\n';
  }
}

template <>
void Family<Histogram>::Render(std::string* out) const {
  RenderHeader(out);
  absl::MutexLock lock(&mu_);
  for (const auto& [values, series] : series_) {
    Histogram::Snapshot s = series->snapshot();
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= s.bounds.size(); ++i) {
      cumulative += s.counts[i];
      std::string le = i < s.bounds.size() ? FormatValue(s.bounds[i]) : "+Inf";
      *out += name();
      *out += "_bucket";
      *out += FormatLabels(values, fmt::format("le=\"{}\"", le));
      *out += ' ';
      *out += std::to_string(cumulative);
      *out += '\n';
    }
    std::string labels = FormatLabels(values);
    *out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name(), labels, FormatValue(s.sum), name(), labels,
                        cumulative);
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ---------------------------------------------------------------------------
// MetricRegistry

template <typename T>
Family<T>& MetricRegistry::Add(std::string name, std::string help, MetricType type,
                               std::vector<std::string> label_names, std::vector<double> bounds) {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(name);
  if (it != families_.end()) {
    CheckDefinition(it->second->type() == type && it->second->label_names() == label_names,
                    name + " registered twice with different definitions");
    return static_cast<Family<T>&>(*it->second);
  }
  auto family = std::make_unique<Family<T>>(name, std::move(help), type, std::move(label_names), std::move(bounds));
  Family<T>& ref = *family;
  families_.emplace(std::move(name), std::move(family));
  return ref;
}

Family<Counter>& MetricRegistry::AddCounter(std::string name, std::string help,
                                            std::vector<std::string> label_names) {
  return Add<Counter>(std::move(name), std::move(help), MetricType::kCounter, std::move(label_names), {});
}

Family<Gauge>& MetricRegistry::AddGauge(std::string name, std::string help, std::vector<std::string> label_names) {
  return Add<Gauge>(std::move(name), std::move(help), MetricType::kGauge, std::move(label_names), {});
}

Family<Histogram>& MetricRegistry::AddHistogram(std::string name, std::string help,
                                                std::vector<std::string> label_names, std::vector<double> bounds) {
  CheckDefinition(!bounds.empty() && std::is_sorted(bounds.begin(), bounds.end()) &&
                      std::adjacent_find(bounds.begin(), bounds.end()) == bounds.end(),
                  name + ": histogram bounds must be strictly ascending");
  return Add<Histogram>(std::move(name), std::move(help), MetricType::kHistogram, std::move(label_names),
                        std::move(bounds));
}

std::string MetricRegistry::Render() const {
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, family] : families_) family->Render(&out);
  return out;
}

void MetricRegistry::Sweep() {
  absl::MutexLock lock(&mu_);
  for (auto& [name, family] : families_) family->Sweep();
}

// ---------------------------------------------------------------------------
// Cairn's serving series

std::string_view FailureReasonName(FailureReason reason) {
  switch (reason) {
    case FailureReason::kInvalidInput:
      return "invalid_input";
    case FailureReason::kQueueFull:
      return "queue_full";
    case FailureReason::kUnavailable:
      return "unavailable";
    case FailureReason::kDeadline:
      return "deadline";
    case FailureReason::kBackend:
      return "backend";
  }
  return "backend";
}

InferenceMetrics::InferenceMetrics(MetricRegistry& registry)
    : registry_(registry),
      requests_(registry.AddCounter("cairn_inference_requests_total",
                                    "Inference requests answered, by status code.",
                                    {"deployment", "model", "version", "code"})),
      failures_(registry.AddCounter("cairn_inference_failures_total", "Inference requests that failed, by reason.",
                                    {"deployment", "model", "version", "reason"})),
      request_duration_(registry.AddHistogram("cairn_inference_request_duration_seconds",
                                              "Time from a request's arrival at the model to its answer.",
                                              {"deployment", "model", "version"},
                                              {std::begin(kLatencyBounds), std::end(kLatencyBounds)})),
      queue_duration_(registry.AddHistogram("cairn_inference_queue_duration_seconds",
                                            "Time a request waited in the model's queue.",
                                            {"deployment", "model", "version"},
                                            {std::begin(kLatencyBounds), std::end(kLatencyBounds)})),
      compute_duration_(registry.AddHistogram("cairn_inference_compute_duration_seconds",
                                              "Time of one backend call (one batch).",
                                              {"deployment", "model", "version"},
                                              {std::begin(kLatencyBounds), std::end(kLatencyBounds)})),
      batch_size_(registry.AddHistogram("cairn_inference_batch_size", "Rows per backend call.",
                                        {"deployment", "model", "version"},
                                        {std::begin(kBatchBounds), std::end(kBatchBounds)})),
      in_flight_(registry.AddGauge("cairn_inference_in_flight", "Requests queued or being computed.",
                                   {"deployment", "model", "version"})),
      queue_depth_(registry.AddGauge("cairn_inference_queue_depth", "Requests waiting in the model's queue.",
                                     {"deployment", "model", "version"})),
      loaded_(registry.AddGauge("cairn_model_loaded", "1 while the model version is loaded in this role.",
                                {"deployment", "model", "version", "role"})),
      memory_bytes_(registry.AddGauge("cairn_model_memory_bytes", "Memory held by the loaded model, when known.",
                                      {"deployment", "model", "version"})),
      load_failures_(registry.AddCounter("cairn_model_load_failures_total",
                                         "Attempts to load a model version that failed.",
                                         {"deployment", "model", "version"})),
      payload_log_dropped_(registry.AddCounter("cairn_payload_log_dropped_total",
                                               "Prediction records dropped (queue full) or lost (write error).",
                                               {})) {}

std::unique_ptr<ModelSeries> InferenceMetrics::ForModel(const ModelLabels& labels) {
  return std::unique_ptr<ModelSeries>(new ModelSeries(*this, labels));
}

std::shared_ptr<Gauge> InferenceMetrics::Loaded(const ModelLabels& labels, std::string_view role) {
  return loaded_.WithLabels({labels.deployment, labels.model, std::to_string(labels.version), std::string(role)});
}

std::shared_ptr<Counter> InferenceMetrics::LoadFailures(const ModelLabels& labels) {
  return load_failures_.WithLabels({labels.deployment, labels.model, std::to_string(labels.version)});
}

std::shared_ptr<Counter> InferenceMetrics::PayloadLogDropped() { return payload_log_dropped_.WithLabels({}); }

ModelSeries::ModelSeries(InferenceMetrics& metrics, ModelLabels labels)
    : metrics_(metrics), labels_(std::move(labels)), version_label_(std::to_string(labels_.version)) {
  std::vector<std::string> values = {labels_.deployment, labels_.model, version_label_};
  request_duration_ = metrics.request_duration_.WithLabels(values);
  queue_duration_ = metrics.queue_duration_.WithLabels(values);
  compute_duration_ = metrics.compute_duration_.WithLabels(values);
  batch_size_ = metrics.batch_size_.WithLabels(values);
  in_flight_ = metrics.in_flight_.WithLabels(values);
  queue_depth_ = metrics.queue_depth_.WithLabels(values);
  memory_bytes_ = metrics.memory_bytes_.WithLabels(values);
  // "ok" exists from the start, so a model that answered nothing yet shows 0.
  requests(absl::StatusCode::kOk);
}

Counter& ModelSeries::requests(absl::StatusCode code) {
  int i = static_cast<int>(code);
  if (i < 0 || i >= kCodes) i = static_cast<int>(absl::StatusCode::kUnknown);
  Counter* c = by_code_[i].load(std::memory_order_acquire);
  if (c != nullptr) return *c;
  std::shared_ptr<Counter> series = metrics_.requests_.WithLabels(
      {labels_.deployment, labels_.model, version_label_, CodeLabel(static_cast<absl::StatusCode>(i))});
  absl::MutexLock lock(&mu_);
  held_.push_back(series);
  by_code_[i].store(series.get(), std::memory_order_release);
  return *series;
}

Counter& ModelSeries::failures(FailureReason reason) {
  int i = static_cast<int>(reason);
  Counter* c = by_reason_[i].load(std::memory_order_acquire);
  if (c != nullptr) return *c;
  std::shared_ptr<Counter> series = metrics_.failures_.WithLabels(
      {labels_.deployment, labels_.model, version_label_, std::string(FailureReasonName(reason))});
  absl::MutexLock lock(&mu_);
  held_.push_back(series);
  by_reason_[i].store(series.get(), std::memory_order_release);
  return *series;
}

Json ModelSeries::Statistics() const {
  Json requests = Json::object();
  Json failures = Json::object();
  for (int i = 0; i < kCodes; ++i) {
    if (const Counter* c = by_code_[i].load(std::memory_order_acquire)) {
      requests[CodeLabel(static_cast<absl::StatusCode>(i))] = c->value();
    }
  }
  for (int i = 0; i < kReasons; ++i) {
    if (const Counter* c = by_reason_[i].load(std::memory_order_acquire)) {
      failures[std::string(FailureReasonName(static_cast<FailureReason>(i)))] = c->value();
    }
  }
  Histogram::Snapshot batch = batch_size_->snapshot();
  return Json{{"requests", std::move(requests)},
              {"failures", std::move(failures)},
              {"request_latency_ms", LatencyJson(request_duration_->snapshot())},
              {"queue_latency_ms", LatencyJson(queue_duration_->snapshot())},
              {"compute_latency_ms", LatencyJson(compute_duration_->snapshot())},
              {"batch_size",
               {{"count", batch.count}, {"mean", batch.Mean()}, {"p50", batch.Quantile(0.5)},
                {"p99", batch.Quantile(0.99)}}},
              {"in_flight", in_flight_->value()},
              {"queue_depth", queue_depth_->value()},
              {"memory_bytes", memory_bytes_->value()}};
}

}  // namespace cairn::serving
