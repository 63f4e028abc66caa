// torch_inprocess: libtorch called directly, no Cairn in between: the
// ceiling the batching benchmark (bench/serving_bench.py, serving_batching)
// compares Cairn's TorchScript serving with. Loads a TorchScript model,
// configures libtorch the way libcairn_torch.so does (intra-op threads,
// profiling executor off, one warm-up forward), then calls forward on
// `--batch` rows of FP32 input from `--threads` threads for `--seconds` and
// prints one JSON line: rows/s, calls/s, p50/p99 of one call.
//
// Usage: torch_inprocess --model FILE.pt|DIR [--features N] [--batch 64]
//            [--threads 1] [--intra-threads 1] [--seconds 3] [--label NAME]
// A DIR means DIR/model.pt. --features defaults to the second dimension of
// the model's first 2-D parameter (an MLP's first Linear layer).
#include <ATen/Parallel.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "percentile.h"

namespace {

using Clock = std::chrono::steady_clock;

using ::cairn::bench::Percentile;

int Main(int argc, char** argv) {
  std::string model_path, label = "torch_inprocess";
  int64_t features = 0, batch = 64;
  int threads = 1, intra = 1;
  double seconds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--model") model_path = v;
    else if (a == "--features") features = std::stoll(v);
    else if (a == "--batch") batch = std::stoll(v);
    else if (a == "--threads") threads = std::stoi(v);
    else if (a == "--intra-threads") intra = std::stoi(v);
    else if (a == "--seconds") seconds = std::stod(v);
    else if (a == "--label") label = v;
    else {
      std::fprintf(stderr, "torch_inprocess: unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  if (model_path.empty() || batch < 1 || threads < 1 || intra < 1) {
    std::fprintf(stderr,
                 "usage: torch_inprocess --model FILE.pt|DIR [--features N] [--batch 64] [--threads 1] "
                 "[--intra-threads 1] [--seconds 3] [--label NAME]\n");
    return 2;
  }
  if (std::filesystem::is_directory(model_path)) model_path += "/model.pt";

  // As libcairn_torch.so does, so that the comparison measures serving, not settings.
  torch::jit::getProfilingMode() = false;
  at::set_num_threads(intra);
  torch::jit::Module module = torch::jit::load(model_path);
  module.eval();
  if (features == 0) {
    for (const at::Tensor& p : module.parameters()) {
      if (p.dim() == 2) {
        features = p.size(1);
        break;
      }
    }
  }
  if (features <= 0) {
    std::fprintf(stderr, "torch_inprocess: cannot tell the input width; pass --features\n");
    return 2;
  }
  // Zeros and ones, like model_call's inputs.
  at::Tensor input = (torch::arange(batch * features, torch::kFloat32).remainder(2)).reshape({batch, features});
  {
    c10::InferenceMode guard;
    module.forward({input});  // warm-up
  }

  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<double> latencies_us;
  int64_t calls = 0;
  auto worker = [&] {
    c10::InferenceMode guard;
    std::vector<double> mine;
    while (!stop.load(std::memory_order_relaxed)) {
      auto t0 = Clock::now();
      c10::IValue out = module.forward({input});
      mine.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    std::lock_guard<std::mutex> lock(mu);
    calls += static_cast<int64_t>(mine.size());
    latencies_us.insert(latencies_us.end(), mine.begin(), mine.end());
  };
  auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) pool.emplace_back(worker);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (std::thread& t : pool) t.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();

  std::printf(
      "{\"bench\":\"torch_inprocess\",\"label\":\"%s\",\"batch\":%lld,\"features\":%lld,\"threads\":%d,"
      "\"intra_threads\":%d,\"calls\":%lld,\"calls_per_s\":%.1f,\"rows_per_s\":%.1f,\"p50_us\":%.1f,"
      "\"p99_us\":%.1f}\n",
      label.c_str(), static_cast<long long>(batch), static_cast<long long>(features), threads, intra,
      static_cast<long long>(calls), static_cast<double>(calls) / elapsed,
      static_cast<double>(calls * batch) / elapsed, Percentile(latencies_us, 0.5), Percentile(latencies_us, 0.99));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "torch_inprocess: %s\n", e.what_without_backtrace());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "torch_inprocess: %s\n", e.what());
  }
  return 1;
}
