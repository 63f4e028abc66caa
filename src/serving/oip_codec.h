// The Open Inference Protocol v2 (KServe "V2", Triton's HTTP/REST protocol)
// inference request and response bodies, with Triton's binary tensor data
// extension. Turns HTTP bodies into Tensors and back; knows nothing about
// models, HTTP or URLs.
//
// Body formats (see the KServe spec, docs/predict-api/v2/required_api.md,
// and Triton's docs/protocol/extension_binary_data.md):
//   - all JSON: `{"id"?, "parameters"?, "inputs": [...], "outputs"?: [...]}`;
//     a tensor is `{"name", "shape", "datatype", "parameters"?, "data"}` with
//     `data` flat or nested exactly as `shape` (row-major). Numbers for the
//     numeric types (FP16 converted to half precision; FP* also accept the
//     strings "NaN", "Infinity", "-Infinity"), true/false for BOOL, strings
//     for BYTES.
//   - binary: the Inference-Header-Content-Length HTTP header gives the
//     length of the JSON part; the tensors whose parameters hold
//     "binary_data_size" have no "data" and their bytes follow the JSON, in
//     the order the tensors appear, in Tensor's layout (BYTES elements each
//     with a 4-byte little-endian length).
//
// Decoding is strict: any malformed body is kInvalidArgument with a message
// naming the tensor and the problem (e.g. "input 'x': shape [2,3] needs 6
// elements, data has 5"), and no memory is reserved from a declared shape
// before the data proves to be that long. Decoding parses with simdjson; no
// DOM of nlohmann::json is built except for the (small) parameter objects.
//
// Thread-safety: functions are stateless and may be called from any thread.
//
// Usage (server side):
//   ASSIGN_OR_RETURN(InferRequest request, DecodeInferRequest(body, header_length));
//   ... run the model ...
//   EncodedBody reply = EncodeInferResponse(response, request);
//   // send reply.body with Content-Type reply.content_type and, when
//   // reply.json_header_length is set, Inference-Header-Content-Length.
// Usage (client side):
//   EncodedBody body = EncodeInferRequest(request, /*binary_inputs=*/true);
//   ASSIGN_OR_RETURN(InferResponse r, DecodeInferResponse(reply_body, reply_header_length));
#ifndef CAIRN_SERVING_OIP_CODEC_H_
#define CAIRN_SERVING_OIP_CODEC_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "base/status.h"
#include "serving/tensor.h"

namespace cairn::serving {

// One entry of a request's "outputs".
struct RequestedOutput {
  std::string name;
  // parameters.binary_data: true/false when the request says, nullopt when
  // it does not (then the request's binary_data_output decides).
  std::optional<bool> binary_data;
};

struct InferRequest {
  std::string id;                        // "id"; empty when absent
  std::vector<Tensor> inputs;            // in request order; names unique
  std::vector<RequestedOutput> outputs;  // empty: every output; names unique
  bool binary_data_output = false;       // parameters.binary_data_output
  // The request's "parameters" without binary_data_output.
  Json parameters = Json::object();

  // Whether output `name` is to be sent as binary data.
  bool WantsBinary(std::string_view name) const;
};

struct InferResponse {
  std::string model_name;
  std::string model_version;  // omitted from the body when empty
  std::string id;             // omitted from the body when empty
  std::vector<Tensor> outputs;
  Json parameters = Json::object();  // omitted from the body when empty or null
};

// An HTTP body ready to send.
struct EncodedBody {
  std::string body;
  // Set when binary tensor data follows the JSON: the value of the
  // Inference-Header-Content-Length header (the JSON part's length).
  std::optional<size_t> json_header_length;
  std::string content_type;  // "application/json", or "application/octet-stream" with binary data
};

// Decodes an inference request body. `json_length`: the value of the
// Inference-Header-Content-Length header when the request has one (the body
// is then that many bytes of JSON followed by the binary tensor data);
// nullopt when the body is all JSON. Raw binary requests (a header length of
// 0, which needs the model's metadata to interpret) are kInvalidArgument.
// Every input is consistent (Tensor::CheckConsistent) on success.
absl::StatusOr<InferRequest> DecodeInferRequest(std::string_view body, std::optional<size_t> json_length);

// Encodes `response` for a request `asked`: when asked.outputs is not empty
// only the outputs it names are written (in response order); an output goes
// as binary data when asked.WantsBinary(name). A BYTES output holding bytes
// that are not valid UTF-8 cannot travel in a JSON string and is always sent
// as binary data. REQUIRES: every output is consistent.
EncodedBody EncodeInferResponse(const InferResponse& response, const InferRequest& asked);

// Client side. Encodes `request`; every input as binary data when
// `binary_inputs` (and, as above, BYTES inputs that are not valid UTF-8).
// REQUIRES: every input is consistent.
EncodedBody EncodeInferRequest(const InferRequest& request, bool binary_inputs);

// Client side. Decodes an inference response body; `json_length` as for
// DecodeInferRequest. Every output is consistent on success.
absl::StatusOr<InferResponse> DecodeInferResponse(std::string_view body, std::optional<size_t> json_length);

}  // namespace cairn::serving

#endif  // CAIRN_SERVING_OIP_CODEC_H_
