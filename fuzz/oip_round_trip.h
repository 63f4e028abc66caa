// Checks shared by the Open Inference Protocol fuzz targets (oip_json_fuzz,
// oip_binary_fuzz): a body is decoded as an inference request and as an
// inference response (serving/oip_codec.h). Nothing may crash; every
// rejection must be kInvalidArgument; whatever decodes must be consistent and
// must survive encoding (as JSON and as binary tensors) and decoding again.
// Binary tensors come back bit for bit. Through JSON, values come back bit for
// bit when they were read from JSON text (`json_exact`); values read as
// binary may differ in NaN payloads, since JSON can name only one NaN.
#ifndef CAIRN_FUZZ_OIP_ROUND_TRIP_H_
#define CAIRN_FUZZ_OIP_ROUND_TRIP_H_

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>
#include <vector>

#include "serving/oip_codec.h"

namespace cairn::fuzz {

inline void Check(bool condition) {
  if (!condition) std::abort();
}

template <typename Bits>
bool SameUpToNan(const serving::Tensor& a, const serving::Tensor& b, bool (*is_nan)(Bits)) {
  auto x = a.values<Bits>();
  auto y = b.values<Bits>();
  if (x.size() != y.size()) return false;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] != y[i] && !(is_nan(x[i]) && is_nan(y[i]))) return false;
  }
  return true;
}

inline bool HalfIsNan(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0; }
inline bool FloatIsNan(uint32_t f) { return (f & 0x7F800000u) == 0x7F800000u && (f & 0x7FFFFFu) != 0; }
inline bool DoubleIsNan(uint64_t d) {
  return (d & 0x7FF0000000000000ull) == 0x7FF0000000000000ull && (d & 0xFFFFFFFFFFFFFull) != 0;
}

inline void CheckSame(const std::vector<serving::Tensor>& a, const std::vector<serving::Tensor>& b, bool exact) {
  using serving::DataType;
  Check(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    Check(a[i].name == b[i].name && a[i].datatype == b[i].datatype && a[i].shape == b[i].shape);
    if (exact || a[i].data == b[i].data) {
      Check(a[i].data == b[i].data);
    } else if (a[i].datatype == DataType::kFp16) {
      Check(SameUpToNan<uint16_t>(a[i], b[i], HalfIsNan));
    } else if (a[i].datatype == DataType::kFp32) {
      Check(SameUpToNan<uint32_t>(a[i], b[i], FloatIsNan));
    } else if (a[i].datatype == DataType::kFp64) {
      Check(SameUpToNan<uint64_t>(a[i], b[i], DoubleIsNan));
    } else {
      Check(false);
    }
  }
}

inline void CheckRequestRoundTrip(const serving::InferRequest& request, bool json_exact) {
  for (const serving::Tensor& t : request.inputs) Check(t.CheckConsistent().ok());
  for (bool binary : {false, true}) {
    serving::EncodedBody body = EncodeInferRequest(request, binary);
    auto again = serving::DecodeInferRequest(body.body, body.json_header_length);
    Check(again.ok());
    CheckSame(request.inputs, again->inputs, /*exact=*/binary || json_exact);
    Check(again->id == request.id && again->binary_data_output == request.binary_data_output);
    Check(again->parameters == request.parameters);
    Check(again->outputs.size() == request.outputs.size());
    for (size_t i = 0; i < request.outputs.size(); ++i) {
      Check(again->outputs[i].name == request.outputs[i].name);
      Check(again->outputs[i].binary_data == request.outputs[i].binary_data);
    }
  }
  // The server's path: the inputs sent back as outputs, binary as asked.
  serving::InferResponse response;
  response.model_name = "m";
  response.id = request.id;
  response.outputs = request.inputs;
  serving::InferRequest asked = request;
  asked.outputs.clear();
  serving::EncodedBody reply = EncodeInferResponse(response, asked);
  auto decoded = serving::DecodeInferResponse(reply.body, reply.json_header_length);
  Check(decoded.ok());
  CheckSame(response.outputs, decoded->outputs, /*exact=*/request.binary_data_output || json_exact);
  Check(decoded->id == response.id && decoded->model_name == "m");
}

inline void CheckResponseRoundTrip(const serving::InferResponse& response, bool json_exact) {
  for (const serving::Tensor& t : response.outputs) Check(t.CheckConsistent().ok());
  for (bool binary : {false, true}) {
    serving::InferRequest asked;
    asked.binary_data_output = binary;
    serving::EncodedBody reply = EncodeInferResponse(response, asked);
    auto again = serving::DecodeInferResponse(reply.body, reply.json_header_length);
    Check(again.ok());
    CheckSame(response.outputs, again->outputs, /*exact=*/binary || json_exact);
    Check(again->model_name == response.model_name && again->model_version == response.model_version);
    Check(again->id == response.id);
    Check(again->parameters == response.parameters || (response.parameters.empty() && again->parameters.empty()));
  }
}

// Decodes `body` both ways and checks whatever decodes.
inline void CheckBody(std::string_view body, std::optional<size_t> json_length, bool json_exact) {
  auto request = serving::DecodeInferRequest(body, json_length);
  Check(request.ok() || request.status().code() == absl::StatusCode::kInvalidArgument);
  if (request.ok()) CheckRequestRoundTrip(*request, json_exact);
  auto response = serving::DecodeInferResponse(body, json_length);
  Check(response.ok() || response.status().code() == absl::StatusCode::kInvalidArgument);
  if (response.ok()) CheckResponseRoundTrip(*response, json_exact);
}

}  // namespace cairn::fuzz

#endif  // CAIRN_FUZZ_OIP_ROUND_TRIP_H_
