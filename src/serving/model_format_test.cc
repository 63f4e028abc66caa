#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/testing.h"
#include "serving/model_backend.h"

namespace cairn::serving {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::ScopedTempDir;
using ::cairn::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

bool SpecIs(const TensorSpec& spec, const std::string& name, DataType type, const std::vector<int64_t>& shape) {
  return spec.name == name && spec.datatype == type && spec.shape == shape;
}

class ModelFormatTest : public ::testing::Test {
 protected:
  std::string Cairn(const std::string& yaml) {
    WriteFile(dir_.path() + "/cairn-model.yaml", yaml);
    return dir_.path();
  }
  std::string Mlflow(const std::string& yaml) {
    WriteFile(dir_.path() + "/MLmodel", yaml);
    return dir_.path();
  }
  ScopedTempDir dir_;
};

// ---------------------------------------------------------------------------
// cairn-model.yaml

TEST_F(ModelFormatTest, ReadsCairnDescriptor) {
  ASSERT_OK_AND_ASSIGN(ModelDescriptor d, ReadModelDescriptor(Cairn(R"yaml(
flavor: xgboost
file: model.ubj
signature:
  inputs:  [{name: features, datatype: FP32, shape: [-1, 30]}]
  outputs: [{name: predict, datatype: FP32, shape: [-1]}]
options: {method: predict_proba, depth: 3, ratio: 0.5, on: true, label: "007"}
)yaml")));
  EXPECT_EQ(d.flavor, Flavor::kXgboost);
  EXPECT_EQ(d.model_dir, dir_.path());
  EXPECT_EQ(d.model_file, "model.ubj");
  ASSERT_EQ(d.signature.inputs.size(), 1u);
  EXPECT_TRUE(SpecIs(d.signature.inputs[0], "features", DataType::kFp32, {-1, 30}));
  ASSERT_EQ(d.signature.outputs.size(), 1u);
  EXPECT_TRUE(SpecIs(d.signature.outputs[0], "predict", DataType::kFp32, {-1}));
  EXPECT_EQ(d.options["method"], "predict_proba");
  EXPECT_EQ(d.options["depth"], 3);
  EXPECT_EQ(d.options["ratio"], 0.5);
  EXPECT_EQ(d.options["on"], true);
  EXPECT_EQ(d.options["label"], "007");  // quoted: stays a string
}

TEST_F(ModelFormatTest, SignatureAndOptionsAreOptional) {
  ASSERT_OK_AND_ASSIGN(ModelDescriptor d, ReadModelDescriptor(Cairn("flavor: python\nfile: ./code//predict.py\n")));
  EXPECT_EQ(d.flavor, Flavor::kPython);
  EXPECT_EQ(d.model_file, "code/predict.py");  // normalised
  EXPECT_TRUE(d.signature.inputs.empty());
  EXPECT_TRUE(d.signature.outputs.empty());
  EXPECT_TRUE(d.options.is_object());
  EXPECT_TRUE(d.options.empty());
}

TEST_F(ModelFormatTest, FlavorNames) {
  EXPECT_EQ(FlavorName(Flavor::kXgboost), "xgboost");
  EXPECT_EQ(FlavorName(Flavor::kTorchScript), "torchscript");
  EXPECT_EQ(FlavorName(Flavor::kPython), "python");
  ASSERT_OK_AND_ASSIGN(ModelDescriptor d, ReadModelDescriptor(Cairn("flavor: torchscript\nfile: m.pt\n")));
  EXPECT_EQ(d.flavor, Flavor::kTorchScript);
}

TEST_F(ModelFormatTest, CairnDescriptorWinsOverMlmodel) {
  Mlflow("flavors: {sklearn: {pickled_model: model.pkl}}\n");
  ASSERT_OK_AND_ASSIGN(ModelDescriptor d, ReadModelDescriptor(Cairn("flavor: xgboost\nfile: model.json\n")));
  EXPECT_EQ(d.flavor, Flavor::kXgboost);
  EXPECT_EQ(d.model_file, "model.json");
}

TEST_F(ModelFormatTest, NoDescriptorIsNotFound) {
  EXPECT_THAT(ReadModelDescriptor(dir_.path()),
              StatusIs(absl::StatusCode::kNotFound, AllOf(HasSubstr("MLmodel"), HasSubstr("cairn-model.yaml"))));
  EXPECT_THAT(ReadModelDescriptor(dir_.path() + "/absent"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(ReadModelDescriptor(""), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(ModelFormatTest, RelativeFolderBecomesAbsolute) {
  Cairn("flavor: xgboost\nfile: m.json\n");
  const std::filesystem::path before = std::filesystem::current_path();
  std::filesystem::current_path(std::filesystem::path(dir_.path()).parent_path());
  absl::StatusOr<ModelDescriptor> d = ReadModelDescriptor(std::filesystem::path(dir_.path()).filename().string() + "/");
  std::filesystem::current_path(before);
  ASSERT_THAT(d, IsOk());
  EXPECT_EQ(d->model_dir, dir_.path());
}

TEST_F(ModelFormatTest, ErrorsNameTheFileLineAndField) {
  const std::string file = dir_.path() + "/cairn-model.yaml";
  EXPECT_THAT(ReadModelDescriptor(Cairn("file: m.json\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr(file), HasSubstr("flavor: missing"))));
  EXPECT_THAT(ReadModelDescriptor(Cairn("flavor: onnx\nfile: m.onnx\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(file + ":1:9"), HasSubstr("unknown flavor 'onnx'"))));
  EXPECT_THAT(ReadModelDescriptor(Cairn("flavor: xgboost\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("file: missing")));
  EXPECT_THAT(ReadModelDescriptor(Cairn("flavor: xgboost\nfile: m.json\nflavour: x\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr(":3:1"), HasSubstr("flavour: unknown field"))));
  EXPECT_THAT(ReadModelDescriptor(Cairn("flavor: xgboost\nfile: m.json\nsignature:\n  inputs:\n"
                                        "    - {name: x, datatype: F32, shape: [-1, 2]}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(":5:"), HasSubstr("signature.inputs[0].datatype: unknown datatype 'F32'"))));
  EXPECT_THAT(ReadModelDescriptor(Cairn("flavor: xgboost\nfile: m.json\nsignature:\n  inputs:\n"
                                        "    - {name: x, datatype: FP32}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("signature.inputs[0].shape: missing")));
  EXPECT_THAT(ReadModelDescriptor(Cairn("flavor: xgboost\nfile: m.json\nsignature:\n  inputs:\n"
                                        "    - {name: x, datatype: FP32, shape: [-1, two]}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("signature.inputs[0].shape[1]: expected an integer")));
  EXPECT_THAT(ReadModelDescriptor(Cairn("flavor: xgboost\nfile: m.json\nsignature:\n  outputs:\n"
                                        "    - {name: y, datatype: FP32, shape: [4]}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the first dimension is the batch")));
  EXPECT_THAT(ReadModelDescriptor(Cairn("flavor: xgboost\nfile: m.json\nsignature:\n  inputs:\n"
                                        "    - {name: x, datatype: FP32, shape: [-1]}\n"
                                        "    - {name: x, datatype: FP64, shape: [-1]}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'x' appears twice")));
  EXPECT_THAT(ReadModelDescriptor(Cairn("flavor: xgboost\nfile: m.json\noptions: [1, 2]\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("options: expected a map")));
  EXPECT_THAT(ReadModelDescriptor(Cairn("flavor: [xgboost\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr(file), HasSubstr("invalid YAML"))));
  EXPECT_THAT(ReadModelDescriptor(Cairn("")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(ReadModelDescriptor(Cairn("- just\n- a list\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected a map")));
}

TEST_F(ModelFormatTest, ModelFileMustStayInsideTheFolder) {
  EXPECT_THAT(ReadModelDescriptor(Cairn("flavor: xgboost\nfile: ../other/model.json\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("file:"), HasSubstr("'..'"))));
  EXPECT_THAT(ReadModelDescriptor(Cairn("flavor: xgboost\nfile: a/../../model.json\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'..'")));
  EXPECT_THAT(ReadModelDescriptor(Cairn("flavor: xgboost\nfile: /etc/passwd\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not absolute")));
  EXPECT_THAT(ReadModelDescriptor(Cairn("flavor: xgboost\nfile: .\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("names no file")));
  // A symbolic link inside the folder that points out of it.
  ScopedTempDir outside;
  WriteFile(outside.path() + "/model.json", "{}");
  std::filesystem::create_symlink(outside.path() + "/model.json", dir_.path() + "/link.json");
  EXPECT_THAT(ReadModelDescriptor(Cairn("flavor: xgboost\nfile: link.json\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside the model folder")));
}

TEST_F(ModelFormatTest, DeeplyNestedOptionsAreRefused) {
  std::string nested = "flavor: python\nfile: p.py\noptions: ";
  for (int i = 0; i < 40; ++i) nested += "{a: ";
  nested += "1";
  for (int i = 0; i < 40; ++i) nested += "}";
  EXPECT_THAT(ReadModelDescriptor(Cairn(nested + "\n")), StatusIs(absl::StatusCode::kInvalidArgument));
}

// ---------------------------------------------------------------------------
// MLflow's MLmodel

TEST_F(ModelFormatTest, ReadsMlflowXgboostWithColumnSignature) {
  ASSERT_OK_AND_ASSIGN(ModelDescriptor d, ReadModelDescriptor(Mlflow(R"yaml(artifact_path: model
flavors:
  python_function:
    data: model.xgb
    loader_module: mlflow.xgboost
  xgboost:
    code: null
    data: model.xgb
    model_class: xgboost.sklearn.XGBClassifier
    model_format: xgb
    xgb_version: 2.0.3
mlflow_version: 2.10.0
signature:
  inputs: '[{"type": "double", "name": "sepal length (cm)", "required": true}, {"type": "long", "name": "n"},
    {"type": "boolean", "name": "flag"}, {"type": "string", "name": "s"}, {"type": "float", "name": "f"},
    {"type": "integer", "name": "i"}, {"type": "binary", "name": "b"}]'
  outputs: '[{"type": "long", "required": true}]'
  params: null
)yaml")));
  EXPECT_EQ(d.flavor, Flavor::kXgboost);
  EXPECT_EQ(d.model_file, "model.xgb");
  EXPECT_EQ(d.options["model_format"], "xgb");
  ASSERT_EQ(d.signature.inputs.size(), 7u);
  EXPECT_TRUE(SpecIs(d.signature.inputs[0], "sepal length (cm)", DataType::kFp64, {-1}));
  EXPECT_TRUE(SpecIs(d.signature.inputs[1], "n", DataType::kInt64, {-1}));
  EXPECT_TRUE(SpecIs(d.signature.inputs[2], "flag", DataType::kBool, {-1}));
  EXPECT_TRUE(SpecIs(d.signature.inputs[3], "s", DataType::kBytes, {-1}));
  EXPECT_TRUE(SpecIs(d.signature.inputs[4], "f", DataType::kFp32, {-1}));
  EXPECT_TRUE(SpecIs(d.signature.inputs[5], "i", DataType::kInt32, {-1}));
  EXPECT_TRUE(SpecIs(d.signature.inputs[6], "b", DataType::kBytes, {-1}));
  ASSERT_EQ(d.signature.outputs.size(), 1u);
  EXPECT_TRUE(SpecIs(d.signature.outputs[0], "predict", DataType::kInt64, {-1}));  // unnamed: "predict"
}

TEST_F(ModelFormatTest, ReadsMlflowTensorSignature) {
  ASSERT_OK_AND_ASSIGN(ModelDescriptor d, ReadModelDescriptor(Mlflow(R"yaml(flavors:
  pytorch:
    model_data: data
    pytorch_version: 2.1.0
signature:
  inputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 28, 28]}, "name": "image"}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 10]}},
    {"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
)yaml")));
  EXPECT_EQ(d.flavor, Flavor::kTorchScript);
  EXPECT_EQ(d.model_file, "data/model.pth");
  ASSERT_EQ(d.signature.inputs.size(), 1u);
  EXPECT_TRUE(SpecIs(d.signature.inputs[0], "image", DataType::kFp32, {-1, 28, 28}));
  ASSERT_EQ(d.signature.outputs.size(), 2u);
  EXPECT_TRUE(SpecIs(d.signature.outputs[0], "output_0", DataType::kFp64, {-1, 10}));
  EXPECT_TRUE(SpecIs(d.signature.outputs[1], "output_1", DataType::kInt64, {-1}));
}

TEST_F(ModelFormatTest, ReadsMlflowSklearn) {
  ASSERT_OK_AND_ASSIGN(ModelDescriptor d, ReadModelDescriptor(Mlflow(R"yaml(flavors:
  python_function:
    loader_module: mlflow.sklearn
    model_path: model.pkl
    predict_fn: predict_proba
  sklearn:
    pickled_model: model.pkl
    serialization_format: cloudpickle
    sklearn_version: 1.2.1
)yaml")));
  EXPECT_EQ(d.flavor, Flavor::kPython);
  EXPECT_EQ(d.model_file, "model.pkl");
  EXPECT_EQ(d.options["serialization_format"], "cloudpickle");
  EXPECT_EQ(d.options["method"], "predict_proba");
  EXPECT_TRUE(d.signature.inputs.empty());
}

TEST_F(ModelFormatTest, MlflowErrors) {
  const std::string file = dir_.path() + "/MLmodel";
  EXPECT_THAT(ReadModelDescriptor(Mlflow("artifact_path: model\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr(file), HasSubstr("flavors: missing"))));
  EXPECT_THAT(ReadModelDescriptor(Mlflow("flavors:\n  keras: {data: data}\n  python_function: {loader_module: "
                                         "mlflow.keras}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("no flavor Cairn can serve"), HasSubstr("keras"), HasSubstr("mlflow.keras"))));
  EXPECT_THAT(ReadModelDescriptor(Mlflow("flavors:\n  xgboost: {model_format: json}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("flavors.xgboost.data: missing")));
  EXPECT_THAT(ReadModelDescriptor(Mlflow("flavors:\n  xgboost: {data: m.bin, model_format: bst}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unsupported model_format 'bst'")));
  EXPECT_THAT(ReadModelDescriptor(Mlflow("flavors:\n  xgboost: {data: ../m.json}\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'..'")));
  EXPECT_THAT(ReadModelDescriptor(Mlflow("flavors:\n  xgboost: {data: m.json}\nsignature:\n  inputs: '[{\"type\"'\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(file + ":4:"), HasSubstr("signature.inputs: invalid JSON"))));
  EXPECT_THAT(ReadModelDescriptor(Mlflow("flavors:\n  xgboost: {data: m.json}\nsignature:\n"
                                         "  inputs: '[{\"type\": \"datetime\", \"name\": \"t\"}]'\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("signature.inputs[0].type: unsupported column type 'datetime'")));
  EXPECT_THAT(ReadModelDescriptor(Mlflow("flavors:\n  xgboost: {data: m.json}\nsignature:\n"
                                         "  inputs: '[{\"type\": \"tensor\", \"tensor-spec\": {\"dtype\": "
                                         "\"complex64\", \"shape\": [-1]}}]'\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unsupported dtype 'complex64'")));
  EXPECT_THAT(ReadModelDescriptor(Mlflow("flavors:\n  xgboost: {data: m.json}\nsignature:\n"
                                         "  inputs: '[{\"type\": \"double\", \"name\": \"a\"}, {\"type\": "
                                         "\"double\", \"name\": \"a\"}]'\n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'a' appears twice")));
}

// ---------------------------------------------------------------------------
// ValidateInputs

class ValidateInputsTest : public ::testing::Test {
 protected:
  ValidateInputsTest() {
    signature_.inputs = {{"x", DataType::kFp32, {-1, 3}}, {"ids", DataType::kInt64, {-1}}};
    signature_.outputs = {{"y", DataType::kFp32, {-1}}};
  }
  static Tensor X(int64_t rows, int64_t cols = 3) {
    std::vector<float> v(static_cast<size_t>(rows * cols), 1.0f);
    return Tensor::FromValues<float>("x", DataType::kFp32, {rows, cols}, v);
  }
  static Tensor Ids(int64_t rows) {
    std::vector<int64_t> v(static_cast<size_t>(rows), 7);
    return Tensor::FromValues<int64_t>("ids", DataType::kInt64, {rows}, v);
  }
  ModelSignature signature_;
};

TEST_F(ValidateInputsTest, AcceptsMatchingInputsInAnyOrder) {
  EXPECT_THAT(ValidateInputs(signature_, {X(4), Ids(4)}), IsOk());
  EXPECT_THAT(ValidateInputs(signature_, {Ids(2), X(2)}), IsOk());
  EXPECT_THAT(ValidateInputs(signature_, {X(0), Ids(0)}), IsOk());  // an empty batch is well-formed
}

TEST_F(ValidateInputsTest, WrongDatatype) {
  std::vector<double> v(6, 1.0);
  Tensor x64 = Tensor::FromValues<double>("x", DataType::kFp64, {2, 3}, v);
  EXPECT_THAT(ValidateInputs(signature_, {x64, Ids(2)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("input 'x': expected datatype FP32, got FP64")));
}

TEST_F(ValidateInputsTest, WrongDimensions) {
  EXPECT_THAT(ValidateInputs(signature_, {X(4, 2), Ids(4)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("input 'x': expected shape [-1,3], got [4,2]")));
}

TEST_F(ValidateInputsTest, WrongRank) {
  std::vector<float> v(12, 1.0f);
  Tensor flat = Tensor::FromValues<float>("x", DataType::kFp32, {12}, v);
  EXPECT_THAT(ValidateInputs(signature_, {flat, Ids(12)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("input 'x': expected shape [-1,3], got [12]")));
  Tensor cube = Tensor::FromValues<float>("x", DataType::kFp32, {2, 3, 2}, v);
  EXPECT_THAT(ValidateInputs(signature_, {cube, Ids(2)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got [2,3,2]")));
}

TEST_F(ValidateInputsTest, MissingInput) {
  EXPECT_THAT(ValidateInputs(signature_, {X(2)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("missing input 'ids' (INT64 [-1])")));
}

TEST_F(ValidateInputsTest, ExtraInput) {
  Tensor extra = Ids(2);
  extra.name = "extra";
  EXPECT_THAT(ValidateInputs(signature_, {X(2), Ids(2), extra}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("unexpected input 'extra'"), HasSubstr("'x', 'ids'"))));
}

TEST_F(ValidateInputsTest, DuplicateInput) {
  EXPECT_THAT(ValidateInputs(signature_, {X(2), Ids(2), X(2)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("input 'x' is given more than once")));
}

TEST_F(ValidateInputsTest, BatchSizesMustAgree) {
  EXPECT_THAT(ValidateInputs(signature_, {X(4), Ids(3)}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("inputs disagree on the batch size (dimension 0): 'x' has 4, 'ids' has 3")));
}

TEST_F(ValidateInputsTest, DataMustMatchShape) {
  Tensor short_x = X(2);
  short_x.data.resize(short_x.data.size() - 4);
  EXPECT_THAT(ValidateInputs(signature_, {short_x, Ids(2)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tensor 'x'")));
  Tensor negative = Ids(2);
  negative.shape = {-2};
  EXPECT_THAT(ValidateInputs(signature_, {X(2), negative}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(ValidateInputsTest, VariableInnerDimensions) {
  ModelSignature sig;
  sig.inputs = {{"tokens", DataType::kBytes, {-1, -1}}};
  const std::vector<std::string> words = {"a", "bb", "ccc", "d", "", "f"};
  EXPECT_THAT(ValidateInputs(sig, {Tensor::FromStrings("tokens", {2, 3}, words)}), IsOk());
  EXPECT_THAT(ValidateInputs(sig, {Tensor::FromStrings("tokens", {3, 2}, words)}), IsOk());
  EXPECT_THAT(ValidateInputs(sig, {Tensor::FromStrings("tokens", {6}, words)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected shape [-1,-1], got [6]")));
}

}  // namespace
}  // namespace cairn::serving
