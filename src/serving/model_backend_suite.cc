#include "serving/model_backend_suite.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <gmock/gmock.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/json.h"
#include "base/shell.h"
#include "base/testing.h"

#ifndef CAIRN_MAKE_MODELS_PY
#error "CAIRN_MAKE_MODELS_PY (the path of testdata/make_models.py) must be defined: link cairn_serving_backend_suite"
#endif

namespace cairn::serving {
namespace {

namespace fs = std::filesystem;
using ::cairn::testing::IsOk;
using ::cairn::testing::StatusIs;

constexpr char kPython[] = "/usr/bin/python3";
constexpr double kTolerance = 1e-5;
constexpr int64_t kBatch = 17;  // rows in every expected.json

// Where the fixtures of this test binary live; removed at exit.
class FixtureRoot {
 public:
  const std::string& path() const { return dir_.path(); }
  absl::Mutex& mu() { return mu_; }

 private:
  ::cairn::testing::ScopedTempDir dir_;
  absl::Mutex mu_;
};

FixtureRoot& Fixtures() {
  static FixtureRoot root;  // destroyed (and the folder removed) at exit
  return root;
}

// The value of element `i` of a fixed-size tensor, as a double.
double ElementAsDouble(const Tensor& t, size_t i) {
  switch (t.datatype) {
    case DataType::kBool:
    case DataType::kUint8:
      return t.values<uint8_t>()[i];
    case DataType::kUint16:
      return t.values<uint16_t>()[i];
    case DataType::kUint32:
      return t.values<uint32_t>()[i];
    case DataType::kUint64:
      return static_cast<double>(t.values<uint64_t>()[i]);
    case DataType::kInt8:
      return t.values<int8_t>()[i];
    case DataType::kInt16:
      return t.values<int16_t>()[i];
    case DataType::kInt32:
      return t.values<int32_t>()[i];
    case DataType::kInt64:
      return static_cast<double>(t.values<int64_t>()[i]);
    case DataType::kFp32:
      return t.values<float>()[i];
    case DataType::kFp64:
      return t.values<double>()[i];
    case DataType::kFp16:
    case DataType::kBytes:
      break;
  }
  return std::nan("");
}

template <typename T>
void Append(std::string& data, T value) {
  data.append(reinterpret_cast<const char*>(&value), sizeof(value));
}

// One OIP-style tensor of expected.json: {"name", "datatype", "shape", "data": flat}.
absl::StatusOr<Tensor> TensorFromJson(const Json& j) {
  Tensor t;
  ASSIGN_OR_RETURN(t.name, GetString(j, "name"));
  ASSIGN_OR_RETURN(std::string datatype, GetString(j, "datatype"));
  std::optional<DataType> type = ParseDataType(datatype);
  if (!type) return absl::InvalidArgumentError(fmt::format("tensor '{}': unknown datatype {}", t.name, datatype));
  t.datatype = *type;
  ASSIGN_OR_RETURN(std::vector<Json> shape, GetOptionalArray(j, "shape"));
  for (const Json& dim : shape) t.shape.push_back(dim.get<int64_t>());
  ASSIGN_OR_RETURN(std::vector<Json> data, GetOptionalArray(j, "data"));
  for (const Json& v : data) {
    switch (t.datatype) {
      case DataType::kBool:
        Append<uint8_t>(t.data, v.get<bool>() ? 1 : 0);
        break;
      case DataType::kUint8:
        Append(t.data, v.get<uint8_t>());
        break;
      case DataType::kInt32:
        Append(t.data, v.get<int32_t>());
        break;
      case DataType::kInt64:
        Append(t.data, v.get<int64_t>());
        break;
      case DataType::kFp32:
        Append(t.data, static_cast<float>(v.get<double>()));
        break;
      case DataType::kFp64:
        Append(t.data, v.get<double>());
        break;
      default:
        return absl::InvalidArgumentError(fmt::format("tensor '{}': {} is not used by fixtures", t.name, datatype));
    }
  }
  RETURN_IF_ERROR(t.CheckConsistent());
  return t;
}

std::string FormatShape(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ",")); }

}  // namespace

std::string ModelBackendCaseName(const ::testing::TestParamInfo<ModelBackendCase>& info) { return info.param.name; }

void PrintTo(const ModelBackendCase& c, std::ostream* os) { *os << c.name << " (" << c.fixture << ")"; }

absl::StatusOr<std::string> ModelFixtureDir(const std::string& name) {
  FixtureRoot& root = Fixtures();
  const std::string dir = root.path() + "/" + name;
  absl::MutexLock lock(&root.mu());
  // expected.json is written last: its presence means the fixture is whole.
  if (fs::exists(dir + "/expected.json")) return dir;
  const std::string command = fmt::format("{} {} {} {} 2>&1", kPython, ShellQuote(CAIRN_MAKE_MODELS_PY),
                                          ShellQuote(root.path()), ShellQuote(name));
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return absl::InternalError(fmt::format("cannot run {}", command));
  std::string output;
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  const int rc = ::pclose(pipe);
  if (rc != 0 || !fs::exists(dir + "/expected.json")) {
    return absl::InternalError(fmt::format("{} failed (status {}): {}", command, rc, output));
  }
  return dir;
}

absl::StatusOr<ExpectedOutputs> ReadExpectedOutputs(const std::string& fixture_dir) {
  std::ifstream in(fixture_dir + "/expected.json");
  std::stringstream text;
  text << in.rdbuf();
  ASSIGN_OR_RETURN(Json j, ParseJson(text.str()));
  ExpectedOutputs out;
  try {
    ASSIGN_OR_RETURN(std::vector<Json> inputs, GetOptionalArray(j, "inputs"));
    for (const Json& t : inputs) {
      ASSIGN_OR_RETURN(Tensor tensor, TensorFromJson(t));
      out.inputs.push_back(std::move(tensor));
    }
    ASSIGN_OR_RETURN(std::vector<Json> outputs, GetOptionalArray(j, "outputs"));
    for (const Json& t : outputs) {
      ASSIGN_OR_RETURN(Tensor tensor, TensorFromJson(t));
      out.outputs.push_back(std::move(tensor));
    }
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(fmt::format("{}/expected.json: {}", fixture_dir, e.what()));
  }
  return out;
}

bool TensorsMatch(const Tensor& expected, const Tensor& actual, double tolerance, std::string* why) {
  if (actual.name != expected.name || actual.datatype != expected.datatype || actual.shape != expected.shape) {
    *why = fmt::format("expected '{}' {} {}, got '{}' {} {}", expected.name, DataTypeName(expected.datatype),
                       FormatShape(expected.shape), actual.name, DataTypeName(actual.datatype),
                       FormatShape(actual.shape));
    return false;
  }
  if (!actual.CheckConsistent().ok()) {
    *why = fmt::format("'{}': {}", actual.name, actual.CheckConsistent().message());
    return false;
  }
  const size_t count = static_cast<size_t>(expected.element_count());
  for (size_t i = 0; i < count; ++i) {
    const double e = ElementAsDouble(expected, i);
    const double a = ElementAsDouble(actual, i);
    if (!(std::fabs(a - e) <= tolerance * std::max(1.0, std::fabs(e)))) {
      *why = fmt::format("'{}' element {}: expected {}, got {}", expected.name, i, e, a);
      return false;
    }
  }
  return true;
}

void ModelBackendSuite::SetUp() {
  absl::StatusOr<std::string> dir = ModelFixtureDir(GetParam().fixture);
  ASSERT_THAT(dir, IsOk());
  fixture_dir_ = *dir;
  absl::StatusOr<ModelDescriptor> descriptor = ReadModelDescriptor(fixture_dir_);
  ASSERT_THAT(descriptor, IsOk());
  descriptor_ = *std::move(descriptor);
  absl::StatusOr<ExpectedOutputs> expected = ReadExpectedOutputs(fixture_dir_);
  ASSERT_THAT(expected, IsOk());
  expected_ = *std::move(expected);
  ASSERT_FALSE(expected_.inputs.empty());
  ASSERT_FALSE(expected_.outputs.empty());
  for (const Tensor& t : expected_.inputs) ASSERT_EQ(t.batch_size(), kBatch) << t.name;
}

void ModelBackendSuite::TearDown() {
  std::error_code ec;
  for (const std::string& dir : temp_dirs_) fs::remove_all(dir, ec);
}

namespace {

// Models loaded by SharedModel, by case name, until the suite ends.
struct SharedModels {
  absl::Mutex mu;
  std::map<std::string, std::shared_ptr<ModelBackend>> models ABSL_GUARDED_BY(mu);
};

SharedModels& Shared() {
  static SharedModels* shared = new SharedModels();  // emptied by TearDownTestSuite
  return *shared;
}

}  // namespace

void ModelBackendSuite::TearDownTestSuite() {
  std::map<std::string, std::shared_ptr<ModelBackend>> models;
  {
    absl::MutexLock lock(&Shared().mu);
    models.swap(Shared().models);
  }
  models.clear();  // outside the lock: a backend may take a while to stop
}

ModelBackend* ModelBackendSuite::SharedModel() {
  const std::string key = GetParam().name + "/" + GetParam().fixture;
  absl::MutexLock lock(&Shared().mu);
  std::shared_ptr<ModelBackend>& model = Shared().models[key];
  if (model == nullptr) {
    absl::StatusOr<std::unique_ptr<ModelBackend>> loaded = GetParam().load(descriptor_, GetParam().options);
    EXPECT_THAT(loaded, IsOk());
    if (!loaded.ok()) return nullptr;
    model = *std::move(loaded);
  }
  return model.get();
}

std::vector<Tensor> ModelBackendSuite::FirstRows(const std::vector<Tensor>& tensors, int64_t rows) {
  std::vector<Tensor> out;
  out.reserve(tensors.size());
  for (const Tensor& t : tensors) out.push_back(SliceBatch(t, 0, rows));
  return out;
}

std::string ModelBackendSuite::CopyOfFixture() {
  std::string tmpl = Fixtures().path() + "/copy-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
    return "";
  }
  temp_dirs_.push_back(tmpl);
  const std::string copy = tmpl + "/model";
  std::error_code ec;
  fs::copy(fixture_dir_, copy, fs::copy_options::recursive, ec);
  EXPECT_FALSE(ec) << ec.message();
  return copy;
}

namespace {

// Infers on the first `rows` expected rows and compares with Python's
// outputs; "" when everything matched, else what differed.
std::string CheckInfer(ModelBackend& model, const ExpectedOutputs& expected, int64_t rows, bool reverse_inputs) {
  std::vector<Tensor> inputs;
  for (const Tensor& t : expected.inputs) inputs.push_back(SliceBatch(t, 0, rows));
  if (reverse_inputs) std::reverse(inputs.begin(), inputs.end());
  absl::Status valid = ValidateInputs(model.signature(), inputs);
  if (!valid.ok()) return fmt::format("the fixture's inputs do not fit the signature: {}", valid.ToString());
  absl::StatusOr<std::vector<Tensor>> outputs = model.Infer(inputs);
  if (!outputs.ok()) return fmt::format("Infer failed: {}", outputs.status().ToString());
  const std::vector<TensorSpec>& specs = model.signature().outputs;
  if (outputs->size() != specs.size()) {
    return fmt::format("{} outputs for a signature of {}", outputs->size(), specs.size());
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    if ((*outputs)[i].name != specs[i].name) {
      return fmt::format("output {} is '{}', the signature says '{}'", i, (*outputs)[i].name, specs[i].name);
    }
  }
  for (const Tensor& want : expected.outputs) {
    const Tensor rows_wanted = SliceBatch(want, 0, rows);
    const auto got = std::find_if(outputs->begin(), outputs->end(), [&](const Tensor& t) { return t.name == want.name; });
    if (got == outputs->end()) return fmt::format("no output '{}'", want.name);
    std::string why;
    if (!TensorsMatch(rows_wanted, *got, kTolerance, &why)) return why;
  }
  return "";
}

}  // namespace

TEST_P(ModelBackendSuite, SignatureIsComplete) {
  ModelBackend* model = SharedModel();
  ASSERT_NE(model, nullptr);
  EXPECT_FALSE(model->platform().empty());
  const ModelSignature& sig = model->signature();
  ASSERT_FALSE(sig.inputs.empty());
  ASSERT_FALSE(sig.outputs.empty());
  for (const std::vector<TensorSpec>* specs : {&sig.inputs, &sig.outputs}) {
    std::set<std::string> names;
    for (const TensorSpec& spec : *specs) {
      EXPECT_FALSE(spec.name.empty());
      EXPECT_TRUE(names.insert(spec.name).second) << "'" << spec.name << "' appears twice";
      ASSERT_FALSE(spec.shape.empty()) << spec.name;
      EXPECT_EQ(spec.shape[0], -1) << spec.name << ": dimension 0 is the batch";
      for (int64_t dim : spec.shape) EXPECT_GE(dim, -1) << spec.name;
    }
  }
  // The fixture's inputs fit the declared inputs, and every output Python
  // computed is declared with its datatype and rank.
  EXPECT_THAT(ValidateInputs(sig, expected_.inputs), IsOk());
  for (const Tensor& want : expected_.outputs) {
    const auto spec = std::find_if(sig.outputs.begin(), sig.outputs.end(),
                                   [&](const TensorSpec& s) { return s.name == want.name; });
    ASSERT_NE(spec, sig.outputs.end()) << "no output '" << want.name << "' in the signature";
    EXPECT_EQ(spec->datatype, want.datatype) << want.name;
    ASSERT_EQ(spec->shape.size(), want.shape.size()) << want.name;
    for (size_t d = 1; d < want.shape.size(); ++d) {
      if (spec->shape[d] != -1) {
        EXPECT_EQ(spec->shape[d], want.shape[d]) << want.name << " dimension " << d;
      }
    }
  }
}

TEST_P(ModelBackendSuite, OneRowMatchesPython) {
  ModelBackend* model = SharedModel();
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(CheckInfer(*model, expected_, 1, /*reverse_inputs=*/false), "");
}

TEST_P(ModelBackendSuite, SeventeenRowsMatchPython) {
  ModelBackend* model = SharedModel();
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(CheckInfer(*model, expected_, kBatch, /*reverse_inputs=*/false), "");
}

TEST_P(ModelBackendSuite, InputOrderDoesNotMatter) {
  ModelBackend* model = SharedModel();
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(CheckInfer(*model, expected_, 5, /*reverse_inputs=*/true), "");
}

TEST_P(ModelBackendSuite, FourThreadsInferConcurrently) {
  ModelBackend* model = SharedModel();
  ASSERT_NE(model, nullptr);
  constexpr int kThreads = 4;
  constexpr int kCalls = 12;
  std::vector<std::string> failures(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int call = 0; call < kCalls && failures[i].empty(); ++call) {
        // Different batch sizes at once: per-thread buffers must not mix.
        const int64_t rows = 1 + (i * kCalls + call) % kBatch;
        failures[i] = CheckInfer(*model, expected_, rows, /*reverse_inputs=*/false);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i) EXPECT_EQ(failures[i], "") << "thread " << i;
}

TEST_P(ModelBackendSuite, EmptyBatchGivesEmptyOutputsOrAClearError) {
  ModelBackend* model = SharedModel();
  ASSERT_NE(model, nullptr);
  const std::vector<Tensor> inputs = FirstRows(expected_.inputs, 0);
  ASSERT_THAT(ValidateInputs(model->signature(), inputs), IsOk());
  absl::StatusOr<std::vector<Tensor>> outputs = model->Infer(inputs);
  if (outputs.ok()) {
    ASSERT_EQ(outputs->size(), model->signature().outputs.size());
    for (const Tensor& t : *outputs) {
      ASSERT_FALSE(t.shape.empty()) << t.name;
      EXPECT_EQ(t.shape[0], 0) << t.name;
      EXPECT_THAT(t.CheckConsistent(), IsOk());
    }
  } else {
    EXPECT_THAT(outputs, StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_FALSE(outputs.status().message().empty());
  }
  // The model still answers.
  EXPECT_EQ(CheckInfer(*model, expected_, 3, /*reverse_inputs=*/false), "");
}

TEST_P(ModelBackendSuite, TruncatedModelFileFailsToLoad) {
  const std::string copy = CopyOfFixture();
  ASSERT_FALSE(copy.empty());
  absl::StatusOr<ModelDescriptor> descriptor = ReadModelDescriptor(copy);
  ASSERT_THAT(descriptor, IsOk());
  const std::string file = copy + "/" + descriptor->model_file;
  std::error_code ec;
  const uintmax_t size = fs::file_size(file, ec);
  ASSERT_FALSE(ec) << ec.message();
  fs::resize_file(file, size / 2, ec);
  ASSERT_FALSE(ec) << ec.message();
  absl::StatusOr<std::unique_ptr<ModelBackend>> model = GetParam().load(*descriptor, GetParam().options);
  EXPECT_THAT(model, StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_P(ModelBackendSuite, GarbageModelFileFailsToLoad) {
  const std::string copy = CopyOfFixture();
  ASSERT_FALSE(copy.empty());
  absl::StatusOr<ModelDescriptor> descriptor = ReadModelDescriptor(copy);
  ASSERT_THAT(descriptor, IsOk());
  {
    std::ofstream out(copy + "/" + descriptor->model_file, std::ios::binary | std::ios::trunc);
    out << std::string("\x00\x01{[not a model]\xff\xfe", 18) << std::string(200, '\x07');
  }
  absl::StatusOr<std::unique_ptr<ModelBackend>> model = GetParam().load(*descriptor, GetParam().options);
  EXPECT_THAT(model, StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_P(ModelBackendSuite, MissingModelFileIsNotFound) {
  const std::string copy = CopyOfFixture();
  ASSERT_FALSE(copy.empty());
  absl::StatusOr<ModelDescriptor> descriptor = ReadModelDescriptor(copy);
  ASSERT_THAT(descriptor, IsOk());
  std::error_code ec;
  ASSERT_TRUE(fs::remove(copy + "/" + descriptor->model_file, ec)) << ec.message();
  absl::StatusOr<std::unique_ptr<ModelBackend>> model = GetParam().load(*descriptor, GetParam().options);
  EXPECT_THAT(model, StatusIs(absl::StatusCode::kNotFound));
}

// A suite instantiated by no test binary is not an error for this one.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ModelBackendSuite);

}  // namespace cairn::serving
