#include "serving/oip_codec.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "base/testing.h"

namespace cairn::serving {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

template <typename T>
Tensor Make(std::string name, DataType type, std::vector<int64_t> shape, std::vector<T> values) {
  return Tensor::FromValues<T>(std::move(name), type, std::move(shape), values);
}

uint16_t HalfBits(const Tensor& t, size_t i) { return t.values<uint16_t>()[i]; }

absl::StatusOr<InferRequest> DecodeJson(std::string_view json) { return DecodeInferRequest(json, std::nullopt); }

// A JSON header followed by binary parts, as a client would send it.
std::string WithBinary(std::string_view json, std::string_view binary) { return std::string(json) + std::string(binary); }

template <typename T>
std::string Bytes(std::vector<T> values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

void ExpectSameTensors(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].name, b[i].name);
    EXPECT_EQ(a[i].datatype, b[i].datatype) << a[i].name;
    EXPECT_EQ(a[i].shape, b[i].shape) << a[i].name;
    EXPECT_EQ(a[i].data, b[i].data) << a[i].name;
  }
}

// --- The spec's examples -----------------------------------------------------

TEST(DecodeInferRequestTest, KserveSpecExample) {
  ASSERT_OK_AND_ASSIGN(InferRequest r, DecodeJson(R"({
      "id" : "42",
      "inputs" : [
        {"name" : "input0", "shape" : [ 2, 2 ], "datatype" : "UINT32", "data" : [ 1, 2, 3, 4 ]},
        {"name" : "input1", "shape" : [ 3 ], "datatype" : "BOOL", "data" : [ true, false, true ]}
      ],
      "outputs" : [ {"name" : "output0"} ]
    })"));
  EXPECT_EQ(r.id, "42");
  ASSERT_EQ(r.inputs.size(), 2u);
  EXPECT_EQ(r.inputs[0].name, "input0");
  EXPECT_EQ(r.inputs[0].datatype, DataType::kUint32);
  EXPECT_EQ(r.inputs[0].shape, (std::vector<int64_t>{2, 2}));
  EXPECT_THAT(r.inputs[0].values<uint32_t>(), ElementsAre(1, 2, 3, 4));
  EXPECT_THAT(r.inputs[1].values<uint8_t>(), ElementsAre(1, 0, 1));
  ASSERT_EQ(r.outputs.size(), 1u);
  EXPECT_EQ(r.outputs[0].name, "output0");
  EXPECT_EQ(r.outputs[0].binary_data, std::nullopt);
  EXPECT_FALSE(r.binary_data_output);
}

TEST(DecodeInferRequestTest, TritonBinaryExample) {
  std::string json = R"({"model_name":"mymodel","inputs":[
      {"name":"input0","shape":[2,2],"datatype":"UINT32","parameters":{"binary_data_size":16}},
      {"name":"input1","shape":[3],"datatype":"BOOL","parameters":{"binary_data_size":3}}],
      "outputs":[{"name":"output0","parameters":{"binary_data":true}}]})";
  std::string body = WithBinary(json, Bytes<uint32_t>({1, 2, 3, 4}) + std::string("\1\0\1", 3));
  ASSERT_OK_AND_ASSIGN(InferRequest r, DecodeInferRequest(body, json.size()));
  ASSERT_EQ(r.inputs.size(), 2u);
  EXPECT_THAT(r.inputs[0].values<uint32_t>(), ElementsAre(1, 2, 3, 4));
  EXPECT_THAT(r.inputs[1].values<uint8_t>(), ElementsAre(1, 0, 1));
  EXPECT_EQ(r.outputs[0].binary_data, true);
  EXPECT_TRUE(r.WantsBinary("output0"));
}

TEST(DecodeInferRequestTest, NestedAndFlatDataAgree) {
  ASSERT_OK_AND_ASSIGN(InferRequest nested, DecodeJson(R"({"inputs":[{"name":"x","shape":[2,2,2],
      "datatype":"INT16","data":[[[1,2],[3,4]],[[5,6],[7,8]]]}]})"));
  ASSERT_OK_AND_ASSIGN(InferRequest flat, DecodeJson(R"({"inputs":[{"name":"x","shape":[2,2,2],
      "datatype":"INT16","data":[1,2,3,4,5,6,7,8]}]})"));
  ExpectSameTensors(nested.inputs, flat.inputs);
  EXPECT_THAT(flat.inputs[0].values<int16_t>(), ElementsAre(1, 2, 3, 4, 5, 6, 7, 8));
}

TEST(DecodeInferRequestTest, ScalarsAndEmptyTensors) {
  ASSERT_OK_AND_ASSIGN(InferRequest r, DecodeJson(R"({"inputs":[
      {"name":"s","shape":[],"datatype":"FP64","data":[2.5]},
      {"name":"e","shape":[0,3],"datatype":"FP32","data":[]},
      {"name":"n","shape":[2,0],"datatype":"INT8","data":[[],[]]}]})"));
  EXPECT_THAT(r.inputs[0].values<double>(), ElementsAre(2.5));
  EXPECT_TRUE(r.inputs[1].data.empty());
  EXPECT_TRUE(r.inputs[2].data.empty());
}

TEST(DecodeInferRequestTest, KeepsParametersAndTakesBinaryDataOutput) {
  ASSERT_OK_AND_ASSIGN(InferRequest r, DecodeJson(R"({"parameters":{"binary_data_output":true,"priority":3,
      "tag":"a"},"inputs":[],"outputs":[{"name":"a"},{"name":"b","parameters":{"binary_data":false}}]})"));
  EXPECT_TRUE(r.binary_data_output);
  EXPECT_EQ(r.parameters, (Json{{"priority", 3}, {"tag", "a"}}));
  EXPECT_TRUE(r.WantsBinary("a"));       // the request-wide setting
  EXPECT_FALSE(r.WantsBinary("b"));      // overridden per output
  EXPECT_TRUE(r.WantsBinary("other"));
}

// --- Element conversion ------------------------------------------------------

TEST(DecodeInferRequestTest, EveryNumericTypeAtItsLimits) {
  ASSERT_OK_AND_ASSIGN(InferRequest r, DecodeJson(R"({"inputs":[
      {"name":"u8","shape":[2],"datatype":"UINT8","data":[0,255]},
      {"name":"u16","shape":[2],"datatype":"UINT16","data":[0,65535]},
      {"name":"u32","shape":[2],"datatype":"UINT32","data":[0,4294967295]},
      {"name":"u64","shape":[2],"datatype":"UINT64","data":[0,18446744073709551615]},
      {"name":"i8","shape":[2],"datatype":"INT8","data":[-128,127]},
      {"name":"i16","shape":[2],"datatype":"INT16","data":[-32768,32767]},
      {"name":"i32","shape":[2],"datatype":"INT32","data":[-2147483648,2147483647]},
      {"name":"i64","shape":[2],"datatype":"INT64","data":[-9223372036854775808,9223372036854775807]},
      {"name":"f32","shape":[3],"datatype":"FP32","data":[1.5,-2,3.4028234663852886e38]},
      {"name":"f64","shape":[3],"datatype":"FP64","data":[1e300,"NaN","-Infinity"]}]})"));
  EXPECT_THAT(r.inputs[0].values<uint8_t>(), ElementsAre(0, 255));
  EXPECT_THAT(r.inputs[1].values<uint16_t>(), ElementsAre(0, 65535));
  EXPECT_THAT(r.inputs[2].values<uint32_t>(), ElementsAre(0, 4294967295u));
  EXPECT_THAT(r.inputs[3].values<uint64_t>(), ElementsAre(0, std::numeric_limits<uint64_t>::max()));
  EXPECT_THAT(r.inputs[4].values<int8_t>(), ElementsAre(-128, 127));
  EXPECT_THAT(r.inputs[5].values<int16_t>(), ElementsAre(-32768, 32767));
  EXPECT_THAT(r.inputs[6].values<int32_t>(), ElementsAre(std::numeric_limits<int32_t>::min(), 2147483647));
  EXPECT_THAT(r.inputs[7].values<int64_t>(),
              ElementsAre(std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()));
  EXPECT_THAT(r.inputs[8].values<float>(), ElementsAre(1.5f, -2.0f, std::numeric_limits<float>::max()));
  auto f64 = r.inputs[9].values<double>();
  EXPECT_EQ(f64[0], 1e300);
  EXPECT_TRUE(std::isnan(f64[1]));
  EXPECT_EQ(f64[2], -std::numeric_limits<double>::infinity());
}

TEST(DecodeInferRequestTest, RejectsOutOfRangeAndWrongKinds) {
  struct Case {
    std::string datatype, data, message;
  };
  const std::vector<Case> cases = {
      {"UINT8", "[1,300]", "input 'x': element 1: 300 is out of range for UINT8"},
      {"UINT16", "[1,-1]", "element 1: -1 is out of range for UINT16"},
      {"INT8", "[1,-129]", "-129 is out of range for INT8"},
      {"INT64", "[1,9223372036854775808]", "9223372036854775808 is out of range for INT64"},
      {"INT32", "[1,1.5]", "element 1: 1.5 is not an integer"},
      {"UINT32", "[1,\"2\"]", "expected an integer, got \"2\""},
      {"BOOL", "[true,1]", "element 1: expected true or false, got 1"},
      {"BYTES", "[\"a\",5]", "element 1: expected a string, got an integer"},
      {"FP32", "[1,1e39]", "element 1: 1e+39 is out of range for FP32"},
      {"FP16", "[1,65520]", "65520 is out of range for FP16"},
      {"FP64", "[1,null]", "expected a number, got null"},
      {"FP64", "[1,\"nan\"]", "expected a number, got \"nan\""},
      {"FP32", "[1,[2]]", "element 1: expected a number, got [2]"},
  };
  for (const Case& c : cases) {
    std::string body = fmt::format(R"({{"inputs":[{{"name":"x","shape":[2],"datatype":"{}","data":{}}}]}})",
                                   c.datatype, c.data);
    EXPECT_THAT(DecodeJson(body), StatusIs(kInvalid, HasSubstr(c.message))) << body;
  }
}

TEST(DecodeInferRequestTest, Fp16IsRoundedToNearestEven) {
  ASSERT_OK_AND_ASSIGN(InferRequest r, DecodeJson(R"({"inputs":[{"name":"h","shape":[8],"datatype":"FP16",
      "data":[1.5,-2,65504,0.1,5.960464477539063e-8,2e-8,"Infinity",-0.0]}]})"));
  const Tensor& h = r.inputs[0];
  EXPECT_EQ(HalfBits(h, 0), 0x3E00);
  EXPECT_EQ(HalfBits(h, 1), 0xC000);
  EXPECT_EQ(HalfBits(h, 2), 0x7BFF);  // the largest half
  EXPECT_EQ(HalfBits(h, 3), 0x2E66);  // 0.1 rounds to 0.0999755859375
  EXPECT_EQ(HalfBits(h, 4), 0x0001);  // the smallest subnormal
  EXPECT_EQ(HalfBits(h, 5), 0x0000);  // below half of it: zero
  EXPECT_EQ(HalfBits(h, 6), 0x7C00);
  EXPECT_EQ(HalfBits(h, 7), 0x8000);
}

TEST(EncodeTest, Fp16IsWrittenShortest) {
  InferRequest r;
  // 0.1, 65504, the smallest subnormal, 2049 (rounded to 2048 in half).
  r.inputs.push_back(Make<uint16_t>("h", DataType::kFp16, {4}, {0x2E66, 0x7BFF, 0x0001, 0x6800}));
  EncodedBody body = EncodeInferRequest(r, false);
  EXPECT_THAT(body.body, HasSubstr("\"data\":[0.1,65500,6e-08,2048]"));
  ASSERT_OK_AND_ASSIGN(InferRequest back, DecodeJson(body.body));
  ExpectSameTensors(back.inputs, r.inputs);
}

TEST(EncodeTest, FloatsAreShortestAndExact) {
  InferRequest r;
  r.inputs.push_back(Make<float>("f", DataType::kFp32, {4}, {0.1f, -0.0f, 1e20f, std::nanf("")}));
  r.inputs.push_back(Make<double>("d", DataType::kFp64, {2}, {0.1, -std::numeric_limits<double>::infinity()}));
  EncodedBody body = EncodeInferRequest(r, false);
  EXPECT_THAT(body.body, HasSubstr("\"data\":[0.1,-0.0,1e+20,\"NaN\"]"));
  EXPECT_THAT(body.body, HasSubstr("\"data\":[0.1,\"-Infinity\"]"));
  ASSERT_OK_AND_ASSIGN(InferRequest back, DecodeJson(body.body));
  ExpectSameTensors(back.inputs, r.inputs);  // bitwise, -0.0 and this NaN included
}

// --- Every datatype round-trips, JSON and binary ------------------------------

std::vector<Tensor> OneOfEachType() {
  std::vector<Tensor> t;
  t.push_back(Make<uint8_t>("bool", DataType::kBool, {3}, {1, 0, 1}));
  t.push_back(Make<uint8_t>("u8", DataType::kUint8, {2, 2}, {0, 1, 254, 255}));
  t.push_back(Make<uint16_t>("u16", DataType::kUint16, {2}, {7, 65535}));
  t.push_back(Make<uint32_t>("u32", DataType::kUint32, {2}, {7, 4294967295u}));
  t.push_back(Make<uint64_t>("u64", DataType::kUint64, {2}, {7, std::numeric_limits<uint64_t>::max()}));
  t.push_back(Make<int8_t>("i8", DataType::kInt8, {2}, {-128, 127}));
  t.push_back(Make<int16_t>("i16", DataType::kInt16, {2}, {-32768, 32767}));
  t.push_back(Make<int32_t>("i32", DataType::kInt32, {1, 2}, {std::numeric_limits<int32_t>::min(), 5}));
  t.push_back(Make<int64_t>("i64", DataType::kInt64, {2}, {std::numeric_limits<int64_t>::min(), -1}));
  t.push_back(Make<uint16_t>("f16", DataType::kFp16, {3}, {0x3C00, 0x8001, 0x7BFF}));
  t.push_back(Make<float>("f32", DataType::kFp32, {2, 1}, {3.14159274f, -1e-40f}));
  t.push_back(Make<double>("f64", DataType::kFp64, {2}, {1.0 / 3, 5e-324}));
  std::vector<std::string> strings = {"plain", "quote\" back\\slash\nnewline \x01 é 日本"};
  t.push_back(Tensor::FromStrings("bytes", {2}, strings));
  return t;
}

TEST(RoundTripTest, EveryDatatypeAsJson) {
  InferRequest r;
  r.id = "req-1";
  r.inputs = OneOfEachType();
  EncodedBody body = EncodeInferRequest(r, /*binary_inputs=*/false);
  EXPECT_EQ(body.json_header_length, std::nullopt);
  EXPECT_EQ(body.content_type, "application/json");
  ASSERT_OK_AND_ASSIGN(InferRequest back, DecodeInferRequest(body.body, body.json_header_length));
  EXPECT_EQ(back.id, "req-1");
  ExpectSameTensors(back.inputs, r.inputs);
}

TEST(RoundTripTest, EveryDatatypeAsBinary) {
  InferRequest r;
  r.inputs = OneOfEachType();
  EncodedBody body = EncodeInferRequest(r, /*binary_inputs=*/true);
  ASSERT_TRUE(body.json_header_length.has_value());
  EXPECT_EQ(body.content_type, "application/octet-stream");
  EXPECT_THAT(body.body.substr(0, *body.json_header_length), HasSubstr("\"binary_data_size\":3}"));
  ASSERT_OK_AND_ASSIGN(InferRequest back, DecodeInferRequest(body.body, body.json_header_length));
  ExpectSameTensors(back.inputs, r.inputs);
}

TEST(RoundTripTest, MixedBinaryAndJsonInputs) {
  std::string json = R"({"inputs":[
      {"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},
      {"name":"b","shape":[2],"datatype":"INT32","data":[5,6]},
      {"name":"c","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":11}}]})";
  std::string binary = Bytes<float>({1.5f, 2.5f}) + std::string("\2\0\0\0hi\1\0\0\0!", 11);
  ASSERT_OK_AND_ASSIGN(InferRequest r, DecodeInferRequest(WithBinary(json, binary), json.size()));
  EXPECT_THAT(r.inputs[0].values<float>(), ElementsAre(1.5f, 2.5f));
  EXPECT_THAT(r.inputs[1].values<int32_t>(), ElementsAre(5, 6));
  EXPECT_THAT(r.inputs[2].byte_elements(), ElementsAre("hi", "!"));
}

TEST(RoundTripTest, InvalidUtf8BytesTravelAsBinary) {
  InferRequest r;
  std::vector<std::string> strings = {"ok", std::string("\xff\xfe", 2)};
  r.inputs.push_back(Tensor::FromStrings("b", {2}, strings));
  r.inputs.push_back(Make<float>("f", DataType::kFp32, {1}, {1}));
  EncodedBody body = EncodeInferRequest(r, /*binary_inputs=*/false);
  ASSERT_TRUE(body.json_header_length.has_value());
  EXPECT_THAT(body.body.substr(0, *body.json_header_length), HasSubstr("\"data\":[1]"));
  ASSERT_OK_AND_ASSIGN(InferRequest back, DecodeInferRequest(body.body, body.json_header_length));
  ExpectSameTensors(back.inputs, r.inputs);
}

TEST(RoundTripTest, RequestedOutputsAndParameters) {
  InferRequest r;
  r.inputs.push_back(Make<float>("x", DataType::kFp32, {1}, {1}));
  r.outputs = {{"a", true}, {"b", false}, {"c", std::nullopt}};
  r.binary_data_output = true;
  r.parameters = Json{{"k", "v"}};
  EncodedBody body = EncodeInferRequest(r, false);
  ASSERT_OK_AND_ASSIGN(InferRequest back, DecodeInferRequest(body.body, body.json_header_length));
  ASSERT_EQ(back.outputs.size(), 3u);
  EXPECT_EQ(back.outputs[0].binary_data, true);
  EXPECT_EQ(back.outputs[1].binary_data, false);
  EXPECT_EQ(back.outputs[2].binary_data, std::nullopt);
  EXPECT_TRUE(back.binary_data_output);
  EXPECT_EQ(back.parameters, r.parameters);
}

// --- Errors: structure -------------------------------------------------------

TEST(DecodeErrorsTest, ShapeAndDataDisagree) {
  EXPECT_THAT(DecodeJson(R"({"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5]}]})"),
              StatusIs(kInvalid, HasSubstr("input 'x': shape [2,3] needs 6 elements, data has 5")));
  EXPECT_THAT(DecodeJson(R"({"inputs":[{"name":"x","shape":[2,3],"datatype":"FP32","data":[[1,2,3],[4,5]]}]})"),
              StatusIs(kInvalid, HasSubstr("input 'x': data nesting does not match shape [2,3]: dimension 1 has 2 "
                                           "elements, expected 3")));
  EXPECT_THAT(DecodeJson(R"({"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],3]}]})"),
              StatusIs(kInvalid, HasSubstr("expected an array at depth 1, got 3")));
  EXPECT_THAT(DecodeJson(R"({"inputs":[{"name":"x","shape":[3],"datatype":"BOOL","data":[true]}]})"),
              StatusIs(kInvalid, HasSubstr("shape [3] needs 3 elements, data has 1")));
  EXPECT_THAT(DecodeJson(R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":1}]})"),
              StatusIs(kInvalid, HasSubstr("input 'x': 'data' must be an array, got an integer")));
}

TEST(DecodeErrorsTest, BadShapes) {
  EXPECT_THAT(DecodeJson(R"({"inputs":[{"name":"x","shape":[2,-1],"datatype":"FP32","data":[]}]})"),
              StatusIs(kInvalid, HasSubstr("input 'x': negative dimension -1 in shape")));
  EXPECT_THAT(
      DecodeJson(R"({"inputs":[{"name":"x","shape":[4294967296,4294967296],"datatype":"FP32","data":[]}]})"),
      StatusIs(kInvalid, HasSubstr("input 'x': shape [4294967296,4294967296]: element count overflows int64")));
  EXPECT_THAT(DecodeJson(R"({"inputs":[{"name":"x","shape":[1.5],"datatype":"FP32","data":[]}]})"),
              StatusIs(kInvalid, HasSubstr("'shape' must be an array of integers")));
  EXPECT_THAT(DecodeJson(R"({"inputs":[{"name":"x","shape":[18446744073709551615],"datatype":"FP32","data":[]}]})"),
              StatusIs(kInvalid, HasSubstr("too large")));
}

TEST(DecodeErrorsTest, HugeDeclaredShapeIsRejectedWithoutAllocating) {
  // 2^60 elements declared, 3 given: must fail on the count, not on memory.
  EXPECT_THAT(DecodeJson(R"({"inputs":[{"name":"x","shape":[1152921504606846976],"datatype":"FP64",
      "data":[1,2,3]}]})"),
              StatusIs(kInvalid, HasSubstr("needs 1152921504606846976 elements, data has 3")));
  std::string json = R"({"inputs":[{"name":"x","shape":[1152921504606846976],"datatype":"BYTES",
      "parameters":{"binary_data_size":8}}]})";
  EXPECT_THAT(DecodeInferRequest(WithBinary(json, std::string(8, '\0')), json.size()),
              StatusIs(kInvalid, HasSubstr("needs 1152921504606846976 elements, binary data has 2")));
}

TEST(DecodeErrorsTest, MalformedJsonGivesTheByte) {
  EXPECT_THAT(DecodeJson(R"({"inputs": [}})"), StatusIs(kInvalid, HasSubstr("malformed JSON at byte 12")));
  EXPECT_THAT(DecodeJson(""), StatusIs(kInvalid, HasSubstr("malformed JSON")));
  EXPECT_THAT(DecodeJson(R"({"inputs":[]} trailing)"), StatusIs(kInvalid, HasSubstr("malformed JSON at byte 16")));
  EXPECT_THAT(DecodeJson("[1]"), StatusIs(kInvalid, HasSubstr("must be a JSON object, got an array")));
}

TEST(DecodeErrorsTest, FieldProblems) {
  EXPECT_THAT(DecodeJson(R"({"inputs":[{"name":"x","shape":[1],"datatype":"FLOAT","data":[1]}]})"),
              StatusIs(kInvalid, HasSubstr("input 'x': unknown datatype 'FLOAT'")));
  EXPECT_THAT(DecodeJson(R"({"id":"a"})"), StatusIs(kInvalid, HasSubstr("missing 'inputs'")));
  EXPECT_THAT(DecodeJson(R"({"inputs":{}})"), StatusIs(kInvalid, HasSubstr("'inputs' must be an array")));
  EXPECT_THAT(DecodeJson(R"({"inputs":[{"shape":[1],"datatype":"FP32","data":[1]}]})"),
              StatusIs(kInvalid, HasSubstr("input 0: missing 'name'")));
  EXPECT_THAT(DecodeJson(R"({"inputs":[{"name":"x","datatype":"FP32","data":[1]}]})"),
              StatusIs(kInvalid, HasSubstr("input 'x': missing 'shape'")));
  EXPECT_THAT(DecodeJson(R"({"inputs":[{"name":"x","shape":[1],"data":[1]}]})"),
              StatusIs(kInvalid, HasSubstr("input 'x': missing 'datatype'")));
  EXPECT_THAT(DecodeJson(R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]})"),
              StatusIs(kInvalid, HasSubstr("input 'x': missing 'data'")));
  EXPECT_THAT(DecodeJson(R"({"inputs":[{"name":7,"shape":[1],"datatype":"FP32","data":[1]}]})"),
              StatusIs(kInvalid, HasSubstr("'name' must be a string")));
  EXPECT_THAT(DecodeJson(R"({"id":5,"inputs":[]})"), StatusIs(kInvalid, HasSubstr("'id' must be a string")));
  EXPECT_THAT(DecodeJson(R"({"inputs":[],"parameters":{"binary_data_output":1}})"),
              StatusIs(kInvalid, HasSubstr("binary_data_output must be true or false")));
  EXPECT_THAT(DecodeJson(R"({"inputs":[],"outputs":[{"name":"y","parameters":{"binary_data":"yes"}}]})"),
              StatusIs(kInvalid, HasSubstr("requested output 'y': parameters.binary_data must be true or false")));
}

TEST(DecodeErrorsTest, Duplicates) {
  EXPECT_THAT(DecodeJson(R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]},
      {"name":"x","shape":[1],"datatype":"FP32","data":[2]}]})"),
              StatusIs(kInvalid, HasSubstr("duplicate input 'x'")));
  EXPECT_THAT(DecodeJson(R"({"inputs":[],"outputs":[{"name":"y"},{"name":"y"}]})"),
              StatusIs(kInvalid, HasSubstr("duplicate requested output 'y'")));
  EXPECT_THAT(DecodeJson(R"({"inputs":[],"inputs":[]})"),
              StatusIs(kInvalid, HasSubstr("duplicate field 'inputs'")));
  EXPECT_THAT(DecodeJson(R"({"inputs":[{"name":"x","shape":[1],"shape":[1],"datatype":"FP32","data":[1]}]})"),
              StatusIs(kInvalid, HasSubstr("input 0: duplicate field 'shape'")));
}

// --- Errors: binary data -----------------------------------------------------

std::string BinaryHeader(std::string_view datatype, std::string_view shape, uint64_t size) {
  return fmt::format(
      R"({{"inputs":[{{"name":"x","shape":{},"datatype":"{}","parameters":{{"binary_data_size":{}}}}}]}})", shape,
      datatype, size);
}

TEST(DecodeBinaryErrorsTest, Truncated) {
  std::string json = BinaryHeader("FP64", "[3]", 24);
  EXPECT_THAT(DecodeInferRequest(WithBinary(json, std::string(10, 'a')), json.size()),
              StatusIs(kInvalid, HasSubstr("truncated binary data: input 'x' needs 24 bytes, 10 left")));
}

TEST(DecodeBinaryErrorsTest, TrailingBytes) {
  std::string json = BinaryHeader("FP64", "[1]", 8);
  EXPECT_THAT(DecodeInferRequest(WithBinary(json, std::string(11, 'a')), json.size()),
              StatusIs(kInvalid, HasSubstr("3 trailing bytes")));
  std::string plain = R"({"inputs":[]})";
  EXPECT_THAT(DecodeInferRequest(plain + "xy", plain.size()), StatusIs(kInvalid, HasSubstr("2 trailing bytes")));
}

TEST(DecodeBinaryErrorsTest, SizeDoesNotMatchShape) {
  std::string json = BinaryHeader("FP32", "[2,3]", 20);
  EXPECT_THAT(DecodeInferRequest(WithBinary(json, std::string(20, 'a')), json.size()),
              StatusIs(kInvalid, HasSubstr("input 'x': binary_data_size 20 does not match shape [2,3] of FP32")));
}

TEST(DecodeBinaryErrorsTest, HeaderLengthProblems) {
  std::string json = BinaryHeader("FP32", "[1]", 4);
  EXPECT_THAT(DecodeInferRequest(json, std::nullopt),
              StatusIs(kInvalid, HasSubstr("no Inference-Header-Content-Length")));
  EXPECT_THAT(DecodeInferRequest(json, json.size() + 1), StatusIs(kInvalid, HasSubstr("exceeds the body size")));
  EXPECT_THAT(DecodeInferRequest(json, 0), StatusIs(kInvalid, HasSubstr("raw binary bodies")));
  // A header length cutting the JSON short is malformed JSON.
  EXPECT_THAT(DecodeInferRequest(WithBinary(json, "abcd"), json.size() - 1),
              StatusIs(kInvalid, HasSubstr("malformed JSON")));
}

TEST(DecodeBinaryErrorsTest, BadPayloads) {
  std::string both = R"({"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[1],
      "parameters":{"binary_data_size":1}}]})";
  EXPECT_THAT(DecodeInferRequest(both + "a", both.size()),
              StatusIs(kInvalid, HasSubstr("both 'data' and parameters.binary_data_size")));
  std::string negative = BinaryHeader("INT8", "[1]", 0);
  negative.replace(negative.find(":0}"), 3, ":-1}");
  EXPECT_THAT(DecodeInferRequest(negative + "a", negative.size()),
              StatusIs(kInvalid, HasSubstr("binary_data_size must be a non-negative integer")));
  std::string bools = BinaryHeader("BOOL", "[2]", 2);
  EXPECT_THAT(DecodeInferRequest(WithBinary(bools, std::string("\1\7", 2)), bools.size()),
              StatusIs(kInvalid, HasSubstr("BOOL element 1 is 7, expected 0 or 1")));
  std::string strings = BinaryHeader("BYTES", "[1]", 6);
  EXPECT_THAT(DecodeInferRequest(WithBinary(strings, std::string("\5\0\0\0ab", 6)), strings.size()),
              StatusIs(kInvalid, HasSubstr("BYTES element 0 needs 5 bytes, 2 left")));
  std::string prefix = BinaryHeader("BYTES", "[2]", 7);
  EXPECT_THAT(DecodeInferRequest(WithBinary(prefix, std::string("\1\0\0\0a\0\0", 7)), prefix.size()),
              StatusIs(kInvalid, HasSubstr("BYTES element 1 has a truncated length prefix")));
}

// --- Responses ---------------------------------------------------------------

InferResponse TwoOutputs() {
  InferResponse r;
  r.model_name = "m";
  r.model_version = "3";
  r.id = "42";
  r.outputs.push_back(Make<float>("a", DataType::kFp32, {3, 2}, {1, 1.1f, 2, 2.1f, 3, 3.1f}));
  r.outputs.push_back(Make<int64_t>("b", DataType::kInt64, {3}, {1, 2, 3}));
  return r;
}

TEST(EncodeInferResponseTest, AllJsonByDefault) {
  InferRequest asked;
  EncodedBody body = EncodeInferResponse(TwoOutputs(), asked);
  EXPECT_EQ(body.content_type, "application/json");
  EXPECT_EQ(body.json_header_length, std::nullopt);
  EXPECT_EQ(body.body,
            R"({"model_name":"m","model_version":"3","id":"42","outputs":[)"
            R"({"name":"a","datatype":"FP32","shape":[3,2],"data":[1,1.1,2,2.1,3,3.1]},)"
            R"({"name":"b","datatype":"INT64","shape":[3],"data":[1,2,3]}]})");
  ASSERT_OK_AND_ASSIGN(InferResponse back, DecodeInferResponse(body.body, body.json_header_length));
  EXPECT_EQ(back.model_name, "m");
  EXPECT_EQ(back.model_version, "3");
  EXPECT_EQ(back.id, "42");
  ExpectSameTensors(back.outputs, TwoOutputs().outputs);
}

TEST(EncodeInferResponseTest, BinaryPerRequestedOutput) {
  InferRequest asked;
  asked.outputs = {{"a", true}, {"b", std::nullopt}};
  EncodedBody body = EncodeInferResponse(TwoOutputs(), asked);
  ASSERT_TRUE(body.json_header_length.has_value());
  EXPECT_EQ(body.content_type, "application/octet-stream");
  const std::string json = body.body.substr(0, *body.json_header_length);
  EXPECT_THAT(json, HasSubstr(R"({"name":"a","datatype":"FP32","shape":[3,2],"parameters":{"binary_data_size":24}})"));
  EXPECT_THAT(json, HasSubstr(R"("data":[1,2,3])"));
  EXPECT_EQ(body.body.size(), json.size() + 24);
  ASSERT_OK_AND_ASSIGN(InferResponse back, DecodeInferResponse(body.body, body.json_header_length));
  ExpectSameTensors(back.outputs, TwoOutputs().outputs);
}

TEST(EncodeInferResponseTest, BinaryDataOutputWithOverride) {
  InferRequest asked;
  asked.binary_data_output = true;
  asked.outputs = {{"a", std::nullopt}, {"b", false}};
  EncodedBody body = EncodeInferResponse(TwoOutputs(), asked);
  ASSERT_TRUE(body.json_header_length.has_value());
  EXPECT_EQ(body.body.size(), *body.json_header_length + 24);  // only 'a' is binary
  ASSERT_OK_AND_ASSIGN(InferResponse back, DecodeInferResponse(body.body, body.json_header_length));
  ExpectSameTensors(back.outputs, TwoOutputs().outputs);

  InferRequest all_binary;
  all_binary.binary_data_output = true;
  EncodedBody everything = EncodeInferResponse(TwoOutputs(), all_binary);
  EXPECT_EQ(everything.body.size(), *everything.json_header_length + 24 + 24);
}

TEST(EncodeInferResponseTest, OnlyRequestedOutputsAreWritten) {
  InferRequest asked;
  asked.outputs = {{"b", std::nullopt}};
  EncodedBody body = EncodeInferResponse(TwoOutputs(), asked);
  ASSERT_OK_AND_ASSIGN(InferResponse back, DecodeInferResponse(body.body, body.json_header_length));
  ASSERT_EQ(back.outputs.size(), 1u);
  EXPECT_EQ(back.outputs[0].name, "b");
}

TEST(EncodeInferResponseTest, ParametersAndEscapedNames) {
  InferResponse r;
  r.model_name = "odd \"name\"\n";
  r.parameters = Json{{"sequence_id", 7}};
  r.outputs.push_back(Make<uint8_t>("flags", DataType::kBool, {2}, {1, 0}));
  EncodedBody body = EncodeInferResponse(r, InferRequest());
  EXPECT_THAT(body.body, HasSubstr(R"("model_name":"odd \"name\"\n")"));
  EXPECT_THAT(body.body, HasSubstr(R"("data":[true,false])"));
  ASSERT_OK_AND_ASSIGN(InferResponse back, DecodeInferResponse(body.body, std::nullopt));
  EXPECT_EQ(back.model_name, r.model_name);
  EXPECT_EQ(back.parameters, r.parameters);
  EXPECT_TRUE(back.model_version.empty());
}

TEST(DecodeInferResponseTest, Errors) {
  EXPECT_THAT(DecodeInferResponse(R"({"model_name":"m"})", std::nullopt),
              StatusIs(kInvalid, HasSubstr("missing 'outputs'")));
  EXPECT_THAT(DecodeInferResponse(R"({"outputs":[{"name":"y","shape":[2],"datatype":"FP32","data":[1]}]})",
                                  std::nullopt),
              StatusIs(kInvalid, HasSubstr("output 'y': shape [2] needs 2 elements, data has 1")));
  std::string json = R"({"outputs":[{"name":"y","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}]})";
  EXPECT_THAT(DecodeInferResponse(json + "1234", json.size()),
              StatusIs(kInvalid, HasSubstr("truncated binary data: output 'y' needs 8 bytes, 4 left")));
}

}  // namespace
}  // namespace cairn::serving
