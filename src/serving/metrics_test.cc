#include "serving/metrics.h"

#include <regex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "base/testing.h"

namespace cairn::serving {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Checks `text` against the text exposition format 0.0.4 as Prometheus
// parses it: every sample line is `name{labels} value`, every sample's
// family was introduced by # HELP and # TYPE, histogram buckets are
// cumulative and end with le="+Inf" equal to _count. Returns the families.
std::set<std::string> CheckExposition(const std::string& text) {
  static const std::regex kHelp(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*)");
  static const std::regex kType(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram))");
  static const std::regex kSample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN))");
  std::set<std::string> helped, typed;
  std::istringstream in(text);
  std::string line;
  std::smatch m;
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  while (std::getline(in, line)) {
    if (std::regex_match(line, m, kHelp)) {
      helped.insert(m[1]);
    } else if (std::regex_match(line, m, kType)) {
      EXPECT_TRUE(helped.count(m[1])) << "TYPE before HELP: " << line;
      typed.insert(m[1]);
    } else if (std::regex_match(line, m, kSample)) {
      std::string name = m[1];
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        std::string s = suffix;
        if (!typed.count(name) && name.size() > s.size() && name.ends_with(s)) name.resize(name.size() - s.size());
      }
      EXPECT_TRUE(typed.count(name)) << "sample without # TYPE: " << line;
    } else {
      ADD_FAILURE() << "not in the exposition format: '" << line << "'";
    }
  }
  return typed;
}

TEST(MetricRegistryTest, RendersCountersAndGauges) {
  MetricRegistry registry;
  Family<Counter>& requests = registry.AddCounter("cairn_test_total", "Test requests.", {"model", "code"});
  requests.WithLabels({"iris", "ok"})->Increment(3);
  requests.WithLabels({"iris", "ok"})->Increment();  // the same series
  Family<Gauge>& depth = registry.AddGauge("cairn_test_depth", "Queue depth.", {});
  depth.WithLabels({})->Set(-2);
  EXPECT_EQ(registry.Render(),
            "# HELP cairn_test_depth Queue depth.\n"
            "# TYPE cairn_test_depth gauge\n"
            "cairn_test_depth -2\n"
            "# HELP cairn_test_total Test requests.\n"
            "# TYPE cairn_test_total counter\n"
            "cairn_test_total{model=\"iris\",code=\"ok\"} 4\n");
}

TEST(MetricRegistryTest, EscapesLabelValuesAndHelp) {
  MetricRegistry registry;
  registry.AddCounter("cairn_esc_total", "Back\\slash and\nnewline.", {"v"})
      .WithLabels({"a\"b\\c\nd"})
      ->Increment();
  std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("# HELP cairn_esc_total Back\\\\slash and\\nnewline.\n"));
  EXPECT_THAT(text, HasSubstr("cairn_esc_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"));
  CheckExposition(text);
}

TEST(MetricRegistryTest, RendersHistogramsCumulatively) {
  MetricRegistry registry;
  Family<Histogram>& h = registry.AddHistogram("cairn_test_seconds", "Latency.", {"m"}, {0.125, 1});
  auto series = h.WithLabels({"x"});
  series->Observe(0.0625);
  series->Observe(0.125);  // le is inclusive
  series->Observe(0.5);
  series->Observe(7);
  EXPECT_EQ(registry.Render(),
            "# HELP cairn_test_seconds Latency.\n"
            "# TYPE cairn_test_seconds histogram\n"
            "cairn_test_seconds_bucket{m=\"x\",le=\"0.125\"} 2\n"
            "cairn_test_seconds_bucket{m=\"x\",le=\"1\"} 3\n"
            "cairn_test_seconds_bucket{m=\"x\",le=\"+Inf\"} 4\n"
            "cairn_test_seconds_sum{m=\"x\"} 7.6875\n"
            "cairn_test_seconds_count{m=\"x\"} 4\n");
}

TEST(MetricRegistryTest, RegisteringTwiceReturnsTheSameFamily) {
  MetricRegistry registry;
  Family<Counter>& a = registry.AddCounter("cairn_same_total", "Same.", {"x"});
  Family<Counter>& b = registry.AddCounter("cairn_same_total", "Same.", {"x"});
  EXPECT_EQ(&a, &b);
}

TEST(MetricRegistryTest, SweepForgetsSeriesNobodyHolds) {
  MetricRegistry registry;
  Family<Counter>& family = registry.AddCounter("cairn_sweep_total", "Sweep.", {"v"});
  std::shared_ptr<Counter> kept = family.WithLabels({"kept"});
  family.WithLabels({"dropped"})->Increment();
  registry.Sweep();
  std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("v=\"kept\""));
  EXPECT_THAT(text, Not(HasSubstr("v=\"dropped\"")));
}

TEST(HistogramTest, QuantilesInterpolateWithinBuckets) {
  const double bounds[] = {1, 2, 4};
  Histogram h(bounds);
  EXPECT_EQ(h.snapshot().Quantile(0.5), 0);  // empty
  for (int i = 0; i < 50; ++i) h.Observe(0.5);
  for (int i = 0; i < 50; ++i) h.Observe(3);
  Histogram::Snapshot s = h.snapshot();
  EXPECT_EQ(s.count, 100u);
  EXPECT_DOUBLE_EQ(s.Mean(), 1.75);
  EXPECT_DOUBLE_EQ(s.Quantile(0.5), 1.0);   // the top of the first bucket
  EXPECT_DOUBLE_EQ(s.Quantile(0.25), 0.5);  // halfway through [0, 1]
  EXPECT_DOUBLE_EQ(s.Quantile(0.75), 3.0);  // halfway through (2, 4]
  h.Observe(100);                           // +Inf bucket
  EXPECT_DOUBLE_EQ(h.snapshot().Quantile(1.0), 4.0);
}

TEST(MetricRegistryTest, ConcurrentUpdatesAreNotLost) {
  MetricRegistry registry;
  Family<Counter>& family = registry.AddCounter("cairn_conc_total", "Concurrent.", {"t"});
  Family<Histogram>& hist = registry.AddHistogram("cairn_conc_seconds", "Concurrent.", {}, {1});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      std::shared_ptr<Counter> c = family.WithLabels({"all"});
      std::shared_ptr<Histogram> h = hist.WithLabels({});
      for (int i = 0; i < 10000; ++i) {
        c->Increment();
        h->Observe(0.5);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(family.WithLabels({"all"})->value(), 40000u);
  Histogram::Snapshot s = hist.WithLabels({})->snapshot();
  EXPECT_EQ(s.count, 40000u);
  EXPECT_DOUBLE_EQ(s.sum, 20000);
}

TEST(InferenceMetricsTest, ExportsCairnFamiliesInTheExpositionFormat) {
  MetricRegistry registry;
  InferenceMetrics metrics(registry);
  std::unique_ptr<ModelSeries> series = metrics.ForModel({"prod", "iris", 3});
  series->requests(absl::StatusCode::kOk).Increment();
  series->requests(absl::StatusCode::kResourceExhausted).Increment();
  series->failures(FailureReason::kQueueFull).Increment();
  series->request_duration().Observe(0.002);
  series->queue_duration().Observe(0.0001);
  series->batch_size().Observe(4);
  series->in_flight().Add(1);
  std::shared_ptr<Gauge> loaded = metrics.Loaded({"prod", "iris", 3}, "primary");
  loaded->Set(1);
  metrics.PayloadLogDropped()->Increment(2);

  std::string text = registry.Render();
  std::set<std::string> families = CheckExposition(text);
  for (const char* name :
       {"cairn_inference_requests_total", "cairn_inference_failures_total", "cairn_inference_request_duration_seconds",
        "cairn_inference_queue_duration_seconds", "cairn_inference_batch_size", "cairn_inference_in_flight",
        "cairn_inference_queue_depth", "cairn_model_loaded", "cairn_model_memory_bytes",
        "cairn_payload_log_dropped_total"}) {
    EXPECT_TRUE(families.count(name)) << name;
  }
  EXPECT_THAT(text, HasSubstr("cairn_inference_requests_total{deployment=\"prod\",model=\"iris\",version=\"3\","
                              "code=\"resource_exhausted\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("cairn_inference_failures_total{deployment=\"prod\",model=\"iris\",version=\"3\","
                              "reason=\"queue_full\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("cairn_model_loaded{deployment=\"prod\",model=\"iris\",version=\"3\",role=\"primary\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("cairn_payload_log_dropped_total 2\n"));

  Json stats = series->Statistics();
  EXPECT_EQ(stats["requests"]["ok"], 1);
  EXPECT_EQ(stats["requests"]["resource_exhausted"], 1);
  EXPECT_EQ(stats["failures"]["queue_full"], 1);
  EXPECT_EQ(stats["request_latency_ms"]["count"], 1);
  EXPECT_GT(stats["request_latency_ms"]["p50"].get<double>(), 1.0);  // 2 ms falls in (1, 2.5] ms
  EXPECT_LE(stats["request_latency_ms"]["p50"].get<double>(), 2.5);
  EXPECT_EQ(stats["in_flight"], 1);

  // Once the model's series are released they leave /metrics.
  series.reset();
  loaded.reset();
  registry.Sweep();
  EXPECT_THAT(registry.Render(), Not(HasSubstr("model=\"iris\"")));
}

}  // namespace
}  // namespace cairn::serving
