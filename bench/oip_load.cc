// oip_load: a closed-loop load generator for Open Inference Protocol v2
// servers (Cairn, or the Flask + gunicorn comparison). `--concurrency`
// threads, each with its own keep-alive connection, send the same request
// body back to back for `--seconds` (after `--warmup` seconds not counted)
// and one JSON line reports throughput, client latency percentiles, the
// server-side time Cairn reports (X-Cairn-Server-Time-Us) and the versions
// that answered. Failed requests are counted, never hidden.
//
// Usage: oip_load --url http://127.0.0.1:5000 --model xgb --body FILE
//                 [--concurrency 32] [--seconds 5] [--warmup 1] [--label NAME]
//                 [--json-length N]   (the body is binary: N bytes of JSON header, then tensor data)
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/json.h"
#include "http/http.h"
#include "percentile.h"

namespace {

using Clock = std::chrono::steady_clock;

using ::cairn::bench::Percentile;

int Main(int argc, char** argv) {
  std::string url, model, body_file, label = "oip_load";
  int concurrency = 1;
  double seconds = 5, warmup = 1;
  std::string json_length;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--url") url = v;
    else if (a == "--model") model = v;
    else if (a == "--body") body_file = v;
    else if (a == "--concurrency") concurrency = std::stoi(v);
    else if (a == "--seconds") seconds = std::stod(v);
    else if (a == "--warmup") warmup = std::stod(v);
    else if (a == "--label") label = v;
    else if (a == "--json-length") json_length = v;
    else {
      std::fprintf(stderr, "oip_load: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (url.empty() || model.empty() || body_file.empty()) {
    std::fprintf(stderr, "usage: oip_load --url URL --model NAME --body FILE [--concurrency N] [--seconds S]\n");
    return 2;
  }
  std::ifstream in(body_file, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string body = ss.str();
  const std::string target = "/v2/models/" + model + "/infer";
  std::vector<std::pair<std::string, std::string>> headers;
  if (!json_length.empty()) headers.emplace_back("Inference-Header-Content-Length", json_length);
  const std::string content_type = json_length.empty() ? "application/json" : "application/octet-stream";

  std::atomic<bool> measuring{false}, stop{false};
  std::mutex mu;
  std::vector<double> latencies_us, server_us;
  std::map<std::string, int64_t> versions, failures;
  std::vector<std::thread> threads;
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&] {
      std::vector<double> lat, srv;
      std::map<std::string, int64_t> ver, fail;
      auto client = cairn::http::Client::FromUrl(url);
      if (!client.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        failures[std::string(client.status().message())]++;
        return;
      }
      while (!stop.load(std::memory_order_relaxed)) {
        auto start = Clock::now();
        auto r = (*client)->Send(cairn::http::Method::kPost, target, body, content_type, headers);
        double us = std::chrono::duration<double, std::micro>(Clock::now() - start).count();
        if (!measuring.load(std::memory_order_relaxed)) continue;
        if (!r.ok()) {
          fail[std::string(r.status().message()).substr(0, 80)]++;
          continue;
        }
        if (r->status != 200) {
          fail[fmt::format("HTTP {}: {}", r->status, r->body.substr(0, 80))]++;
          continue;
        }
        lat.push_back(us);
        if (auto h = r->Header("x-cairn-server-time-us")) srv.push_back(std::stod(std::string(*h)));
        if (auto h = r->Header("x-cairn-model-version")) ver[std::string(*h)]++;
      }
      std::lock_guard<std::mutex> lock(mu);
      latencies_us.insert(latencies_us.end(), lat.begin(), lat.end());
      server_us.insert(server_us.end(), srv.begin(), srv.end());
      for (auto& [k, v] : ver) versions[k] += v;
      for (auto& [k, v] : fail) failures[k] += v;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(warmup));
  measuring = true;
  auto begin = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  measuring = false;
  double elapsed = std::chrono::duration<double>(Clock::now() - begin).count();
  stop = true;
  for (auto& t : threads) t.join();

  int64_t failed = 0;
  for (auto& [k, v] : failures) failed += v;
  cairn::Json out = {{"bench", label},
                     {"concurrency", concurrency},
                     {"requests", latencies_us.size()},
                     {"failed", failed},
                     {"throughput_rps", static_cast<double>(latencies_us.size()) / elapsed},
                     {"client_p50_us", Percentile(latencies_us, 0.50)},
                     {"client_p99_us", Percentile(latencies_us, 0.99)},
                     {"versions", versions}};
  if (!server_us.empty()) {
    out["server_p50_us"] = Percentile(server_us, 0.50);
    out["server_p99_us"] = Percentile(server_us, 0.99);
  }
  if (!failures.empty()) out["failures"] = failures;
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
