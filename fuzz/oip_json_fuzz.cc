// libFuzzer target for Open Inference Protocol bodies that are all JSON (no
// Inference-Header-Content-Length): the bytes are decoded as an inference
// request and as an inference response (serving/oip_codec.h). Nothing may
// crash; every rejection must be kInvalidArgument; whatever decodes must be
// consistent and must survive encoding (as JSON and as binary tensors) and
// decoding again bit for bit. Values that came from JSON text are exact in
// both forms, NaNs included (the only NaN JSON can name is the canonical one).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "serving/oip_codec.h"

namespace {

using cairn::serving::DecodeInferRequest;
using cairn::serving::DecodeInferResponse;
using cairn::serving::EncodedBody;
using cairn::serving::InferRequest;
using cairn::serving::InferResponse;
using cairn::serving::Tensor;

void Check(bool condition) {
  if (!condition) std::abort();
}

void CheckSame(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  Check(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    Check(a[i].name == b[i].name && a[i].datatype == b[i].datatype && a[i].shape == b[i].shape);
    Check(a[i].data == b[i].data);
  }
}

void CheckRequestRoundTrip(const InferRequest& request) {
  for (const Tensor& t : request.inputs) Check(t.CheckConsistent().ok());
  for (bool binary : {false, true}) {
    EncodedBody body = EncodeInferRequest(request, binary);
    auto again = DecodeInferRequest(body.body, body.json_header_length);
    Check(again.ok());
    CheckSame(request.inputs, again->inputs);
    Check(again->id == request.id && again->binary_data_output == request.binary_data_output);
    Check(again->parameters == request.parameters);
    Check(again->outputs.size() == request.outputs.size());
    for (size_t i = 0; i < request.outputs.size(); ++i) {
      Check(again->outputs[i].name == request.outputs[i].name);
      Check(again->outputs[i].binary_data == request.outputs[i].binary_data);
    }
  }
  // The server's path: the inputs sent back as outputs, binary as asked.
  InferResponse response;
  response.model_name = "m";
  response.id = request.id;
  response.outputs = request.inputs;
  InferRequest asked = request;
  asked.outputs.clear();
  EncodedBody reply = EncodeInferResponse(response, asked);
  auto decoded = DecodeInferResponse(reply.body, reply.json_header_length);
  Check(decoded.ok());
  CheckSame(response.outputs, decoded->outputs);
  Check(decoded->id == response.id && decoded->model_name == "m");
}

void CheckResponseRoundTrip(const InferResponse& response) {
  for (const Tensor& t : response.outputs) Check(t.CheckConsistent().ok());
  for (bool binary : {false, true}) {
    InferRequest asked;
    asked.binary_data_output = binary;
    EncodedBody reply = EncodeInferResponse(response, asked);
    auto again = DecodeInferResponse(reply.body, reply.json_header_length);
    Check(again.ok());
    CheckSame(response.outputs, again->outputs);
    Check(again->model_name == response.model_name && again->model_version == response.model_version);
    Check(again->id == response.id);
    Check(again->parameters == response.parameters || (response.parameters.empty() && again->parameters.empty()));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto request = DecodeInferRequest(body, std::nullopt);
  Check(request.ok() || request.status().code() == absl::StatusCode::kInvalidArgument);
  if (request.ok()) CheckRequestRoundTrip(*request);
  auto response = DecodeInferResponse(body, std::nullopt);
  Check(response.ok() || response.status().code() == absl::StatusCode::kInvalidArgument);
  if (response.ok()) CheckResponseRoundTrip(*response);
  return 0;
}
