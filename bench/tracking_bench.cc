// Tracking server benchmarks, against the real `cairn server` binary over
// loopback HTTP. Prints one JSON line per figure.
//
//   ingest   log-batch of 1000 metrics per request, 4 keep-alive clients,
//            durable (group commit, fsync): points/s, latency, server peak RSS
//   history  metrics/get-history of a 1,000,000-point metric
//   search   runs/search over 100,000 runs x 20 metrics x 20 params with a
//            metric + param filter and a metric order_by
//
// Usage: tracking_bench [ingest|history|search]... (default: all)
//        CAIRN_BIN=path/to/cairn (default: the build's binary)
#include <fmt/format.h>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/env.h"
#include "base/json.h"
#include "db/sqlite_database.h"
#include "http/http.h"
#include "tests/support/server_process.h"
#include "tracking/tracking_store.h"

namespace cairn {
namespace {

using Clock = std::chrono::steady_clock;
using testing::CairnBinary;
using testing::ServerProcess;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

void Emit(const Json& j) {
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

std::string TempDir() {
  char tmpl[] = "/tmp/cairn-bench.XXXXXX";
  return mkdtemp(tmpl);
}

// A log-batch body: `keys` metric keys x `steps` steps starting at `first_step`.
std::string BatchBody(const std::string& run_id, int keys, int steps, int64_t first_step) {
  std::string body = fmt::format(R"({{"run_id":"{}","metrics":[)", run_id);
  bool first = true;
  for (int s = 0; s < steps; ++s) {
    for (int k = 0; k < keys; ++k) {
      if (!first) body += ',';
      first = false;
      fmt::format_to(std::back_inserter(body), R"({{"key":"metric_{}","value":{},"timestamp":{},"step":{}}})", k,
                     0.5 + 1e-3 * static_cast<double>((first_step + s) % 1000), 1763750000000 + first_step + s,
                     first_step + s);
    }
  }
  return body + "]}";
}

std::string CreateRun(http::Client& client) {
  auto r = client.PostJson("/api/2.0/mlflow/runs/create", Json{{"experiment_id", "0"}});
  if (!r.ok()) {
    std::fprintf(stderr, "runs/create failed: %s\n", std::string(r.status().message()).c_str());
    std::exit(1);
  }
  return (*r)["run"]["info"]["run_id"];
}

void Ingest() {
  constexpr int kClients = 4;
  constexpr double kSeconds = 10;
  std::string dir = TempDir();
  auto server = ServerProcess::Start(CairnBinary(), dir + "/data");
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", std::string(server.status().message()).c_str());
    std::exit(1);
  }
  int port = (*server)->port();
  std::atomic<int64_t> requests{0}, failures{0};
  std::vector<std::vector<double>> latencies(kClients);
  std::vector<std::thread> threads;
  auto start = Clock::now();
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      auto client = http::Client::Create("127.0.0.1", port);
      std::string run = CreateRun(**client);
      // Bodies are prepared up front so that the client's JSON writing does
      // not compete with the server for the two cores.
      std::vector<std::string> bodies;
      for (int b = 0; b < 64; ++b) bodies.push_back(BatchBody(run, 10, 100, b * 100));
      for (int64_t i = 0; Seconds(Clock::now() - start) < kSeconds; ++i) {
        auto t0 = Clock::now();
        auto r = (*client)->Send(http::Method::kPost, "/api/2.0/mlflow/runs/log-batch", bodies[i % bodies.size()]);
        latencies[c].push_back(Seconds(Clock::now() - t0) * 1e3);
        if (!r.ok() || r->status != 200) {
          ++failures;
        } else {
          ++requests;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  double elapsed = Seconds(Clock::now() - start);
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  Emit({{"bench", "ingest_log_batch"},
        {"clients", kClients},
        {"metrics_per_request", 1000},
        {"durable", true},
        {"requests", requests.load()},
        {"failures", failures.load()},
        {"seconds", elapsed},
        {"points_per_s", static_cast<double>(requests.load()) * 1000 / elapsed},
        {"requests_per_s", static_cast<double>(requests.load()) / elapsed},
        {"latency_ms_p50", Percentile(all, 0.5)},
        {"latency_ms_p99", Percentile(all, 0.99)},
        {"server_peak_rss_mb", static_cast<double>((*server)->PeakRssBytes()) / (1 << 20)},
        {"target_points_per_s", 1000000},
        {"target_rss_mb", 300}});
  (*server)->Kill(SIGTERM);
  std::filesystem::remove_all(dir);
}

void History() {
  std::string dir = TempDir();
  auto server = ServerProcess::Start(CairnBinary(), dir + "/data");
  if (!server.ok()) std::exit(1);
  auto client = http::Client::Create("127.0.0.1", (*server)->port());
  std::string run = CreateRun(**client);
  for (int b = 0; b < 1000; ++b) {
    auto r = (*client)->Send(http::Method::kPost, "/api/2.0/mlflow/runs/log-batch", [&] {
      std::string body = fmt::format(R"({{"run_id":"{}","metrics":[)", run);
      for (int i = 0; i < 1000; ++i) {
        int64_t step = static_cast<int64_t>(b) * 1000 + i;
        fmt::format_to(std::back_inserter(body), R"({}{{"key":"loss","value":{},"timestamp":{},"step":{}}})",
                       i ? "," : "", 1.0 / static_cast<double>(step + 1), 1763750000000 + step, step);
      }
      return body + "]}";
    }());
    if (!r.ok() || r->status != 200) std::exit(1);
  }
  std::vector<double> ms;
  size_t bytes = 0, points = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = Clock::now();
    auto r = (*client)->Send(http::Method::kGet,
                             "/api/2.0/mlflow/metrics/get-history?run_id=" + run + "&metric_key=loss");
    ms.push_back(Seconds(Clock::now() - t0) * 1e3);
    if (!r.ok() || r->status != 200) std::exit(1);
    bytes = r->body.size();
    if (rep == 0) points = ParseJson(r->body)->at("metrics").size();
  }
  Emit({{"bench", "get_history_1m_points"},
        {"points", points},
        {"response_mb", static_cast<double>(bytes) / (1 << 20)},
        {"ms_p50", Percentile(ms, 0.5)},
        {"ms_min", Percentile(ms, 0)},
        {"target_ms", 200}});
  (*server)->Kill(SIGTERM);
  std::filesystem::remove_all(dir);
}

void Search() {
  constexpr int kRuns = 100000, kMetrics = 20, kParams = 20, kThreads = 8;
  std::string dir = TempDir();
  std::string data = dir + "/data";
  {
    // Populate through the tracking store itself, without fsync per commit,
    // so that set-up takes a minute rather than an hour.
    auto env = NewPosixEnv();
    (void)env->CreateDirs(data);
    auto db = db::OpenSqliteDatabase({.path = data + "/cairn.db", .durable = false});
    auto store = tracking::TrackingStore::Create(**db, *env);
    if (!store.ok()) std::exit(1);
    auto t0 = Clock::now();
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937_64 rng(t);
        std::uniform_real_distribution<double> unit(0, 1);
        for (int i = t; i < kRuns; i += kThreads) {
          auto run = (*store)->CreateRun({.experiment_id = "0", .user_id = "bench", .start_time = 1763750000000 + i});
          if (!run.ok()) std::exit(1);
          std::vector<tracking::Metric> metrics;
          std::vector<tracking::Param> params;
          for (int m = 0; m < kMetrics; ++m) metrics.push_back({fmt::format("m{}", m), unit(rng), 1, 0});
          for (int p = 0; p < kParams; ++p) params.push_back({fmt::format("p{}", p), fmt::format("v{}", rng() % 10)});
          if (!(*store)->LogBatch(run->info.run_id, metrics, params, {}).ok()) std::exit(1);
        }
      });
    }
    for (auto& t : threads) t.join();
    std::fprintf(stderr, "populated %d runs in %.1f s\n", kRuns, Seconds(Clock::now() - t0));
  }
  auto server = ServerProcess::Start(CairnBinary(), data);
  if (!server.ok()) std::exit(1);
  auto client = http::Client::Create("127.0.0.1", (*server)->port());
  for (int max_results : {100, 1000}) {
    Json body = {{"experiment_ids", {"0"}},
                 {"filter", "metrics.m1 > 0.5 and params.p1 = 'v3'"},
                 {"order_by", {"metrics.m2 DESC"}},
                 {"max_results", max_results}};
    std::string text = body.dump();
    std::vector<double> ms;
    size_t found = 0;
    for (int rep = 0; rep < 21; ++rep) {
      auto t0 = Clock::now();
      auto r = (*client)->Send(http::Method::kPost, "/api/2.0/mlflow/runs/search", text);
      ms.push_back(Seconds(Clock::now() - t0) * 1e3);
      if (!r.ok() || r->status != 200) std::exit(1);
      if (rep == 0) found = ParseJson(r->body)->value("runs", Json::array()).size();
    }
    Emit({{"bench", "search_runs"},
          {"runs", kRuns},
          {"metrics_per_run", kMetrics},
          {"params_per_run", kParams},
          {"filter", body["filter"]},
          {"order_by", body["order_by"]},
          {"max_results", max_results},
          {"returned", found},
          {"ms_p50", Percentile(ms, 0.5)},
          {"ms_p99", Percentile(ms, 0.99)},
          {"target_ms_p50", 20}});
  }
  (*server)->Kill(SIGTERM);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace cairn

int main(int argc, char** argv) {
  std::vector<std::string> which(argv + 1, argv + argc);
  auto wants = [&](const std::string& name) {
    return which.empty() || std::find(which.begin(), which.end(), name) != which.end();
  };
  if (wants("ingest")) cairn::Ingest();
  if (wants("history")) cairn::History();
  if (wants("search")) cairn::Search();
  return 0;
}
