// libFuzzer target for Open Inference Protocol bodies with Triton's binary
// tensor data: the first two bytes (little-endian) give the
// Inference-Header-Content-Length, reduced modulo the rest's size + 1, and
// the rest is the body, decoded as an inference request and as a response
// (serving/oip_codec.h). Nothing may crash; every rejection must be
// kInvalidArgument; whatever decodes must be consistent, must survive binary
// encoding and decoding bit for bit, and JSON encoding up to NaN payloads
// (JSON can only name one NaN).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>

#include "serving/oip_codec.h"

namespace {

using cairn::serving::DataType;
using cairn::serving::DecodeInferRequest;
using cairn::serving::DecodeInferResponse;
using cairn::serving::EncodedBody;
using cairn::serving::InferRequest;
using cairn::serving::InferResponse;
using cairn::serving::Tensor;

void Check(bool condition) {
  if (!condition) std::abort();
}

template <typename Bits>
bool SameUpToNan(const Tensor& a, const Tensor& b, bool (*is_nan)(Bits)) {
  auto x = a.values<Bits>();
  auto y = b.values<Bits>();
  if (x.size() != y.size()) return false;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] != y[i] && !(is_nan(x[i]) && is_nan(y[i]))) return false;
  }
  return true;
}

bool HalfIsNan(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0; }
bool FloatIsNan(uint32_t f) { return (f & 0x7F800000u) == 0x7F800000u && (f & 0x7FFFFFu) != 0; }
bool DoubleIsNan(uint64_t d) {
  return (d & 0x7FF0000000000000ull) == 0x7FF0000000000000ull && (d & 0xFFFFFFFFFFFFFull) != 0;
}

void CheckSame(const std::vector<Tensor>& a, const std::vector<Tensor>& b, bool exact) {
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

void CheckRequestRoundTrip(const InferRequest& request) {
  for (const Tensor& t : request.inputs) Check(t.CheckConsistent().ok());
  for (bool binary : {true, false}) {
    EncodedBody body = EncodeInferRequest(request, binary);
    auto again = DecodeInferRequest(body.body, body.json_header_length);
    Check(again.ok());
    CheckSame(request.inputs, again->inputs, /*exact=*/binary);
    Check(again->id == request.id && again->binary_data_output == request.binary_data_output);
    Check(again->outputs.size() == request.outputs.size());
  }
  InferResponse response;
  response.model_name = "m";
  response.outputs = request.inputs;
  InferRequest asked;
  asked.binary_data_output = true;
  EncodedBody reply = EncodeInferResponse(response, asked);
  auto decoded = DecodeInferResponse(reply.body, reply.json_header_length);
  Check(decoded.ok());
  CheckSame(response.outputs, decoded->outputs, /*exact=*/true);
}

void CheckResponseRoundTrip(const InferResponse& response) {
  for (const Tensor& t : response.outputs) Check(t.CheckConsistent().ok());
  for (bool binary : {true, false}) {
    InferRequest asked;
    asked.binary_data_output = binary;
    EncodedBody reply = EncodeInferResponse(response, asked);
    auto again = DecodeInferResponse(reply.body, reply.json_header_length);
    Check(again.ok());
    CheckSame(response.outputs, again->outputs, /*exact=*/binary);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t declared = data[0] | (static_cast<size_t>(data[1]) << 8);
  std::string_view body(reinterpret_cast<const char*>(data) + 2, size - 2);
  const std::optional<size_t> json_length = declared % (body.size() + 1);
  auto request = DecodeInferRequest(body, json_length);
  Check(request.ok() || request.status().code() == absl::StatusCode::kInvalidArgument);
  if (request.ok()) CheckRequestRoundTrip(*request);
  auto response = DecodeInferResponse(body, json_length);
  Check(response.ok() || response.status().code() == absl::StatusCode::kInvalidArgument);
  if (response.ok()) CheckResponseRoundTrip(*response);
  return 0;
}
