#include "serving/xgboost_backend.h"

#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/testing.h"
#include "serving/model_backend_suite.h"

namespace cairn::serving {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::StatusIs;
using ::testing::HasSubstr;

INSTANTIATE_TEST_SUITE_P(Xgboost, ModelBackendSuite,
                         ::testing::Values(ModelBackendCase{"json", "xgb_json", LoadXgboostModel},
                                           ModelBackendCase{"ubj", "xgb_ubj", LoadXgboostModel},
                                           ModelBackendCase{"multiclass", "xgb_multiclass", LoadXgboostModel},
                                           ModelBackendCase{"mlflow_legacy_binary", "mlflow_xgb", LoadXgboostModel},
                                           ModelBackendCase{"two_threads", "xgb_json", LoadXgboostModel,
                                                            BackendOptions{.threads = 2}}),
                         ModelBackendCaseName);

class XgboostBackendTest : public ::testing::Test {
 protected:
  // The descriptor of a fixture.
  static ModelDescriptor Fixture(const std::string& name) {
    absl::StatusOr<std::string> dir = ModelFixtureDir(name);
    EXPECT_THAT(dir, IsOk());
    absl::StatusOr<ModelDescriptor> d = ReadModelDescriptor(dir.value_or(""));
    EXPECT_THAT(d, IsOk());
    return d.value_or(ModelDescriptor{});
  }
  static ExpectedOutputs Expected(const std::string& name) {
    absl::StatusOr<ExpectedOutputs> e = ReadExpectedOutputs(ModelFixtureDir(name).value_or(""));
    EXPECT_THAT(e, IsOk());
    return e.value_or(ExpectedOutputs{});
  }
};

TEST_F(XgboostBackendTest, PlatformFollowsTheSerialization) {
  ASSERT_OK_AND_ASSIGN(auto json, LoadXgboostModel(Fixture("xgb_json"), {}));
  EXPECT_EQ(json->platform(), "xgboost_json");
  ASSERT_OK_AND_ASSIGN(auto ubj, LoadXgboostModel(Fixture("xgb_ubj"), {}));
  EXPECT_EQ(ubj->platform(), "xgboost_ubj");
  ASSERT_OK_AND_ASSIGN(auto binary, LoadXgboostModel(Fixture("mlflow_xgb"), {}));
  EXPECT_EQ(binary->platform(), "xgboost_binary");
  // Roughly the size of the serialized model.
  const ModelDescriptor d = Fixture("xgb_json");
  EXPECT_EQ(json->memory_bytes(), std::filesystem::file_size(d.model_dir + "/" + d.model_file));
}

TEST_F(XgboostBackendTest, DefaultSignatureComesFromTheModel) {
  ASSERT_OK_AND_ASSIGN(auto model, LoadXgboostModel(Fixture("xgb_ubj"), {}));
  const ModelSignature& sig = model->signature();
  ASSERT_EQ(sig.inputs.size(), 1u);
  EXPECT_EQ(sig.inputs[0].name, "input");
  EXPECT_EQ(sig.inputs[0].datatype, DataType::kFp32);
  EXPECT_EQ(sig.inputs[0].shape, (std::vector<int64_t>{-1, 30}));
  ASSERT_EQ(sig.outputs.size(), 1u);
  EXPECT_EQ(sig.outputs[0].name, "predict");
  EXPECT_EQ(sig.outputs[0].datatype, DataType::kFp32);
  EXPECT_EQ(sig.outputs[0].shape, (std::vector<int64_t>{-1}));
}

TEST_F(XgboostBackendTest, MulticlassOutputHasOneColumnPerClass) {
  ASSERT_OK_AND_ASSIGN(auto model, LoadXgboostModel(Fixture("xgb_multiclass"), {}));
  ASSERT_EQ(model->signature().outputs.size(), 1u);
  EXPECT_EQ(model->signature().outputs[0].shape, (std::vector<int64_t>{-1, 3}));
}

TEST_F(XgboostBackendTest, MlflowColumnsAreStackedAndTheOutputIsFloat) {
  ASSERT_OK_AND_ASSIGN(auto model, LoadXgboostModel(Fixture("mlflow_xgb"), {}));
  const ModelSignature& sig = model->signature();
  ASSERT_EQ(sig.inputs.size(), 4u);
  EXPECT_EQ(sig.inputs[0].name, "sepal length (cm)");
  EXPECT_EQ(sig.inputs[0].datatype, DataType::kFp64);
  EXPECT_EQ(sig.inputs[0].shape, (std::vector<int64_t>{-1}));
  // MLflow's "long" output describes the scikit-learn wrapper's labels; the
  // booster answers probabilities.
  ASSERT_EQ(sig.outputs.size(), 1u);
  EXPECT_EQ(sig.outputs[0].name, "predict");
  EXPECT_EQ(sig.outputs[0].datatype, DataType::kFp32);
}

TEST_F(XgboostBackendTest, DeclaredOutputNameIsKept) {
  ModelDescriptor d = Fixture("xgb_json");
  d.signature.outputs = {{"probability", DataType::kFp64, {-1}}};
  ASSERT_OK_AND_ASSIGN(auto model, LoadXgboostModel(d, {}));
  ASSERT_EQ(model->signature().outputs.size(), 1u);
  EXPECT_EQ(model->signature().outputs[0].name, "probability");
  EXPECT_EQ(model->signature().outputs[0].datatype, DataType::kFp32);
  const ExpectedOutputs e = Expected("xgb_json");
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> out, model->Infer(e.inputs));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].name, "probability");
}

TEST_F(XgboostBackendTest, Fp64AndIntegerInputsAreConvertedToFloat) {
  ModelDescriptor d = Fixture("xgb_json");
  d.signature.inputs = {{"features", DataType::kFp64, {-1, 30}}};
  ASSERT_OK_AND_ASSIGN(auto model, LoadXgboostModel(d, {}));
  const ExpectedOutputs e = Expected("xgb_json");
  const std::span<const float> floats = e.inputs[0].values<float>();
  std::vector<double> doubles(floats.begin(), floats.end());
  Tensor input = Tensor::FromValues<double>("features", DataType::kFp64, e.inputs[0].shape, doubles);
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> out, model->Infer({input}));
  ASSERT_EQ(out.size(), 1u);
  std::string why;
  EXPECT_TRUE(TensorsMatch(e.outputs[0], out[0], 1e-5, &why)) << why;

  // Two inputs, INT32 [-1, 10] and FP32 [-1, 20], are columns 0-9 and 10-29.
  d.signature.inputs = {{"counts", DataType::kInt32, {-1, 10}}, {"rest", DataType::kFp32, {-1, 20}}};
  ASSERT_OK_AND_ASSIGN(auto split, LoadXgboostModel(d, {}));
  std::vector<int32_t> counts(20);
  std::vector<float> rest(40);
  std::vector<float> whole(60);
  for (int r = 0; r < 2; ++r) {
    for (int c = 0; c < 30; ++c) {
      const float v = static_cast<float>((r * 7 + c * 3) % 5 - 2);
      whole[r * 30 + c] = v;
      if (c < 10) {
        counts[r * 10 + c] = static_cast<int32_t>(v);
      } else {
        rest[r * 20 + c - 10] = v;
      }
    }
  }
  d.signature.inputs.clear();
  ASSERT_OK_AND_ASSIGN(auto plain, LoadXgboostModel(d, {}));
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> want,
                       plain->Infer({Tensor::FromValues<float>("input", DataType::kFp32, {2, 30}, whole)}));
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> got,
                       split->Infer({Tensor::FromValues<int32_t>("counts", DataType::kInt32, {2, 10}, counts),
                                     Tensor::FromValues<float>("rest", DataType::kFp32, {2, 20}, rest)}));
  EXPECT_TRUE(TensorsMatch(want[0], got[0], 0, &why)) << why;
}

TEST_F(XgboostBackendTest, SignatureMustFitTheModel) {
  ModelDescriptor d = Fixture("xgb_json");
  d.signature.inputs = {{"features", DataType::kFp32, {-1, 29}}};
  EXPECT_THAT(LoadXgboostModel(d, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("the signature's inputs give 29 feature columns, the model has 30 features")));
  d.signature.inputs = {{"text", DataType::kBytes, {-1, 30}}};
  EXPECT_THAT(LoadXgboostModel(d, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("input 'text' is BYTES")));
  d.signature.inputs = {{"features", DataType::kFp32, {-1, -1}}};
  EXPECT_THAT(LoadXgboostModel(d, {}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("fixed k")));
  d.signature.inputs = {{"features", DataType::kFp32, {-1, 5, 6}}};
  EXPECT_THAT(LoadXgboostModel(d, {}), StatusIs(absl::StatusCode::kInvalidArgument));
  d.signature.inputs.clear();
  d.signature.outputs = {{"a", DataType::kFp32, {-1}}, {"b", DataType::kFp32, {-1}}};
  EXPECT_THAT(LoadXgboostModel(d, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("declares 2 outputs")));
}

TEST_F(XgboostBackendTest, LoadErrorsNameTheFile) {
  const ModelDescriptor fixture = Fixture("xgb_json");
  ::cairn::testing::ScopedTempDir dir;
  ModelDescriptor d = fixture;
  d.model_dir = dir.path();
  EXPECT_THAT(LoadXgboostModel(d, {}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(dir.path() + "/model.json")));
  { std::ofstream(dir.path() + "/model.json").flush(); }
  EXPECT_THAT(LoadXgboostModel(d, {}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is empty")));
  { std::ofstream(dir.path() + "/model.json") << R"({"learner": 3})"; }
  EXPECT_THAT(LoadXgboostModel(d, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("XGBoost cannot read the model file")));
  { std::ofstream(dir.path() + "/model.json") << "binf\x01\x02"; }
  EXPECT_THAT(LoadXgboostModel(d, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("XGBoost cannot read the model file")));
  // Bytes of no known format never reach XGBoost, which would read them as a
  // header-less binary model and might allocate whatever size they spell.
  { std::ofstream(dir.path() + "/model.json") << "\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07"; }
  EXPECT_THAT(LoadXgboostModel(d, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is not an XGBoost model")));
}

TEST_F(XgboostBackendTest, InputsThatSkippedValidationAreRefusedNotRead) {
  ASSERT_OK_AND_ASSIGN(auto model, LoadXgboostModel(Fixture("xgb_json"), {}));
  std::vector<float> few(10, 0.0f);
  EXPECT_THAT(model->Infer({Tensor::FromValues<float>("features", DataType::kFp32, {2, 30}, few)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'features'")));
  EXPECT_THAT(model->Infer({}), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace cairn::serving
