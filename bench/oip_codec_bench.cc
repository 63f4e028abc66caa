// Open Inference Protocol codec cost (serving/oip_codec.h), one core: decode
// a 30-feature FP32 request (as JSON and as binary tensor data) and encode a
// one-value response, the codec's share of the serving overhead target.
// Prints one JSON line per case.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "serving/oip_codec.h"

namespace {

using cairn::serving::DataType;
using cairn::serving::EncodedBody;
using cairn::serving::InferRequest;
using cairn::serving::InferResponse;
using cairn::serving::Tensor;

// Median over repetitions of the mean ns per call of `fn`.
template <typename Fn>
double NsPerCall(Fn&& fn) {
  constexpr int kCalls = 20000;
  std::vector<double> reps;
  for (int rep = 0; rep < 7; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kCalls; ++i) fn();
    reps.push_back(std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / kCalls);
  }
  std::sort(reps.begin(), reps.end());
  return reps[reps.size() / 2];
}

void Report(const char* name, size_t body_bytes, double ns) {
  std::printf("{\"bench\":\"oip_codec\",\"case\":\"%s\",\"body_bytes\":%zu,\"ns_per_op\":%.0f}\n", name, body_bytes,
              ns);
}

}  // namespace

int main() {
  std::vector<float> features(30);
  for (size_t i = 0; i < features.size(); ++i) features[i] = 0.1f * static_cast<float>(i) - 1.234567f;
  InferRequest request;
  request.id = "bench";
  request.inputs.push_back(Tensor::FromValues<float>("input__0", DataType::kFp32, {1, 30}, features));

  for (bool binary : {false, true}) {
    EncodedBody body = EncodeInferRequest(request, binary);
    double ns = NsPerCall([&] {
      auto decoded = cairn::serving::DecodeInferRequest(body.body, body.json_header_length);
      if (!decoded.ok()) std::abort();
    });
    Report(binary ? "decode_request_30xfp32_binary" : "decode_request_30xfp32_json", body.body.size(), ns);
  }

  InferResponse response;
  response.model_name = "model";
  response.model_version = "1";
  response.id = "bench";
  std::vector<float> score = {0.73125f};
  response.outputs.push_back(Tensor::FromValues<float>("predict", DataType::kFp32, {1, 1}, score));
  size_t size = 0;
  double ns = NsPerCall([&] { size = cairn::serving::EncodeInferResponse(response, request).body.size(); });
  Report("encode_response_1xfp32_json", size, ns);
  ns = NsPerCall([&] { size = cairn::serving::EncodeInferRequest(request, false).body.size(); });
  Report("encode_request_30xfp32_json", size, ns);
  return 0;
}
