// The shared test suite every ModelBackend implementation passes (XGBoost,
// TorchScript, Python): a complete signature, outputs matching what Python
// computed for batches of 1 and 17 rows, concurrent Infer from 4 threads, an
// empty batch, and load errors (a corrupt or truncated model file, a missing
// one). Test-only: include from *_test.cc.
//
// The models are fixtures written by testdata/make_models.py (run with
// /usr/bin/python3 into a temporary folder, once per fixture group per test
// binary); each fixture folder holds a descriptor, the model file and
// expected.json (inputs and the outputs Python computed for them).
//
// An implementation instantiates it with one case per fixture:
//
//   #include "serving/model_backend_suite.h"
//   INSTANTIATE_TEST_SUITE_P(
//       Xgboost, ModelBackendSuite,
//       ::testing::Values(ModelBackendCase{"json", "xgb_json", LoadXgboostModel},
//                         ModelBackendCase{"ubj", "xgb_ubj", LoadXgboostModel}),
//       ModelBackendCaseName);
//
// and links the object library `cairn_serving_backend_suite` (it carries
// the suite's tests and the path of make_models.py):
//
//   cairn_test(serving_foo_test SOURCES foo_test.cc DEPS cairn::serving cairn_serving_backend_suite)
//
// Thread-safety: a fixture belongs to one test; ModelFixtureDir may be
// called from any thread.
#ifndef CAIRN_SERVING_MODEL_BACKEND_SUITE_H_
#define CAIRN_SERVING_MODEL_BACKEND_SUITE_H_

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/status.h"
#include "serving/model_backend.h"
#include "serving/tensor.h"

namespace cairn::serving {

using BackendLoader =
    std::function<absl::StatusOr<std::unique_ptr<ModelBackend>>(const ModelDescriptor&, const BackendOptions&)>;

struct ModelBackendCase {
  std::string name;     // the case's name in test names: [A-Za-z0-9_]
  std::string fixture;  // a fixture of testdata/make_models.py, e.g. "xgb_json"
  BackendLoader load;   // e.g. LoadXgboostModel
  BackendOptions options = {};
};

// For INSTANTIATE_TEST_SUITE_P's name generator.
std::string ModelBackendCaseName(const ::testing::TestParamInfo<ModelBackendCase>& info);
// So that gtest prints a case as its name.
void PrintTo(const ModelBackendCase& c, std::ostream* os);

// The folder of fixture `name`, written by make_models.py on first use (with
// the rest of its group) into a temporary folder removed at exit. Errors:
// kInternal with make_models.py's output when it fails.
absl::StatusOr<std::string> ModelFixtureDir(const std::string& name);

// A fixture's expected.json: inputs and the outputs Python computed.
struct ExpectedOutputs {
  std::vector<Tensor> inputs;
  std::vector<Tensor> outputs;
};
absl::StatusOr<ExpectedOutputs> ReadExpectedOutputs(const std::string& fixture_dir);

// Whether `actual` matches `expected` (name, datatype, shape, and values
// within `tolerance`, relative for magnitudes above 1); false with the first
// difference in `why`.
bool TensorsMatch(const Tensor& expected, const Tensor& actual, double tolerance, std::string* why);

class ModelBackendSuite : public ::testing::TestWithParam<ModelBackendCase> {
 protected:
  void SetUp() override;
  // Unloads the models the suite's tests shared (Python workers, ...).
  static void TearDownTestSuite();

  // The fixture's model, loaded once per case and shared by the tests that
  // only read it (loading a Python or TorchScript model takes a while);
  // null after a failed load (with a test failure recorded).
  ModelBackend* SharedModel();
  // Rows [0, rows) of every expected input / output.
  static std::vector<Tensor> FirstRows(const std::vector<Tensor>& tensors, int64_t rows);
  // A copy of the fixture folder under a temporary folder, for tests that
  // damage the model file.
  std::string CopyOfFixture();

  std::string fixture_dir_;
  ModelDescriptor descriptor_;
  ExpectedOutputs expected_;
  std::vector<std::string> temp_dirs_;

  void TearDown() override;
};

}  // namespace cairn::serving

#endif  // CAIRN_SERVING_MODEL_BACKEND_SUITE_H_
