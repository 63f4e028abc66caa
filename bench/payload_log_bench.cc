// Payload log cost (serving/payload_log.h), one core: the writer thread's
// formatting of one prediction record as its JSON line. Cases: the serving
// benchmark's MLP record (256 FP32 inputs, 10 outputs) with normally
// distributed inputs and with the benchmark's own small multiples of 0.5,
// integer-valued inputs (pixels, counts), and the XGBoost record (30 inputs,
// 1 output). Prints one JSON line per case.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "serving/payload_log.h"

namespace {

using cairn::serving::DataType;
using cairn::serving::PredictionRecord;
using cairn::serving::Tensor;

Tensor Fp32(std::string name, int64_t cols, const std::vector<float>& values) {
  return Tensor::FromValues<float>(std::move(name), DataType::kFp32, {1, cols}, values);
}

PredictionRecord MakeRecord(const std::vector<float>& inputs, const std::vector<float>& outputs) {
  PredictionRecord r;
  r.prediction_id = "5f1c0a2e9b7d4c13-1a2b3c";
  r.deployment = "mlp";
  r.model = "mlp";
  r.version = 3;
  r.role = "primary";
  r.time_ms = 1795000000000;
  r.latency_us = 1234;
  r.inputs.push_back(Fp32("x", static_cast<int64_t>(inputs.size()), inputs));
  r.outputs.push_back(Fp32("logits", static_cast<int64_t>(outputs.size()), outputs));
  return r;
}

void Run(const char* name, const PredictionRecord& record) {
  constexpr int kRecords = 256;  // one writer batch
  std::string out;
  std::vector<double> reps;
  for (int rep = 0; rep < 15; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    for (int round = 0; round < 20; ++round) {
      out.clear();
      for (int i = 0; i < kRecords; ++i) cairn::serving::AppendPredictionRecordLine(out, record);
    }
    reps.push_back(std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() /
                   (20.0 * kRecords));
  }
  std::sort(reps.begin(), reps.end());
  const double ns = reps[reps.size() / 2];
  const size_t elements = record.inputs[0].data.size() / 4 + record.outputs[0].data.size() / 4;
  std::printf(
      "{\"bench\":\"payload_log_format\",\"case\":\"%s\",\"elements\":%zu,\"line_bytes\":%zu,\"ns_per_record\":%.0f,"
      "\"ns_per_element\":%.1f,\"records_per_s_per_core\":%.0f}\n",
      name, elements, out.size() / kRecords, ns, ns / static_cast<double>(elements), 1e9 / ns);
}

}  // namespace

int main() {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::vector<float> outputs(10), random(256), halves(256), pixels(256), xgb(30);
  for (float& v : outputs) v = normal(rng);
  for (float& v : random) v = normal(rng);
  for (size_t i = 0; i < halves.size(); ++i) halves[i] = static_cast<float>(i % 7) * 0.5f;
  for (float& v : pixels) v = static_cast<float>(rng() % 256);
  for (float& v : xgb) v = normal(rng);
  Run("mlp_256_normal", MakeRecord(random, outputs));
  Run("mlp_256_serving_bench_inputs", MakeRecord(halves, outputs));
  Run("mlp_256_integer_valued", MakeRecord(pixels, outputs));
  Run("xgb_30_normal", MakeRecord(xgb, {0.25f}));
  return 0;
}
