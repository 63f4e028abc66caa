// model_call: a model backend called in-process, no server: the baseline the
// serving benchmarks compare with. Loads the model folder (cairn-model.yaml
// or MLmodel) as the server does, then calls Infer with `--batch` rows of
// zeros-and-ones for `--seconds` from `--threads` threads and prints one JSON
// line: calls/s, rows/s, latency p50/p99 of one call.
//
// Usage: model_call --model-dir DIR [--batch 1] [--threads 1] [--seconds 3] [--intra-threads 1]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/json.h"
#include "serving/inference_plane.h"
#include "serving/model_backend.h"
#include "percentile.h"

namespace {

using Clock = std::chrono::steady_clock;

using ::cairn::bench::Percentile;

int Main(int argc, char** argv) {
  std::string dir, label = "model_call";
  int batch = 1, threads = 1, intra = 1;
  double seconds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--model-dir") dir = v;
    else if (a == "--batch") batch = std::stoi(v);
    else if (a == "--threads") threads = std::stoi(v);
    else if (a == "--intra-threads") intra = std::stoi(v);
    else if (a == "--seconds") seconds = std::stod(v);
    else if (a == "--label") label = v;
  }
  cairn::serving::BackendOptions options;
  options.threads = intra;
  auto model = cairn::serving::LoadModelFromDir(dir, options);
  if (!model.ok()) {
    std::fprintf(stderr, "model_call: %s\n", std::string(model.status().message()).c_str());
    return 1;
  }
  std::vector<cairn::serving::Tensor> inputs;
  for (const auto& spec : (*model)->signature().inputs) {
    cairn::serving::Tensor t;
    t.name = spec.name;
    t.datatype = spec.datatype;
    t.shape = spec.shape;
    t.shape[0] = batch;
    int64_t n = 1;
    for (int64_t& d : t.shape) {
      if (d < 0) d = 1;
      n *= d;
    }
    t.data.assign(static_cast<size_t>(n) * cairn::serving::ElementSize(spec.datatype), '\0');
    if (spec.datatype == cairn::serving::DataType::kFp32) {
      auto v = t.mutable_values<float>();
      for (size_t k = 0; k < v.size(); ++k) v[k] = static_cast<float>(k % 7) * 0.5f;
    }
    inputs.push_back(std::move(t));
  }
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<double> all;
  int64_t errors = 0;
  auto begin = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      std::vector<double> lat;
      int64_t err = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        auto s = Clock::now();
        auto r = (*model)->Infer(inputs);
        lat.push_back(std::chrono::duration<double, std::micro>(Clock::now() - s).count());
        if (!r.ok()) ++err;
      }
      std::lock_guard<std::mutex> lock(mu);
      all.insert(all.end(), lat.begin(), lat.end());
      errors += err;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : pool) t.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - begin).count();
  cairn::Json out = {{"bench", label},
                     {"batch", batch},
                     {"threads", threads},
                     {"calls", all.size()},
                     {"errors", errors},
                     {"calls_per_s", static_cast<double>(all.size()) / elapsed},
                     {"rows_per_s", static_cast<double>(all.size()) * batch / elapsed},
                     {"p50_us", Percentile(all, 0.5)},
                     {"p99_us", Percentile(all, 0.99)},
                     {"memory_bytes", (*model)->memory_bytes()}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
