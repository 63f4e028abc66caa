#include "serving/python_backend.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/testing.h"
#include "serving/model_backend_suite.h"

namespace cairn::serving {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::ScopedTempDir;
using ::cairn::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

INSTANTIATE_TEST_SUITE_P(Python, ModelBackendSuite,
                         ::testing::Values(ModelBackendCase{"sklearn_pickle", "sklearn_pickle", LoadPythonModel},
                                           ModelBackendCase{"py_function", "py_function", LoadPythonModel,
                                                            BackendOptions{.python_workers = 2}}),
                         ModelBackendCaseName);

// A predict() whose first input value selects a misbehaviour; any other
// value gets the row sums and the answering worker's pid.
constexpr char kMoodyPredict[] = R"py(
import os
import sys
import time

import numpy as np


def predict(inputs):
    x = inputs["x"]
    first = float(x[0, 0])
    if first == 13:
        print("exiting on purpose", file=sys.stderr)
        os._exit(3)
    if first == 9:
        os.kill(os.getpid(), 9)
    if first == 7:
        time.sleep(60)
    if first == 5:
        raise ValueError("row 0 is five")
    if first == 1:
        print("a print() in a model must not reach the protocol")
    x[:, 1] *= 1  # models may change their inputs in place
    return {"y": x.sum(axis=1), "pid": np.full(len(x), os.getpid(), dtype=np.int64)}
)py";

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

ModelSignature MoodySignature() {
  return {{{"x", DataType::kFp32, {-1, 2}}}, {{"y", DataType::kFp32, {-1}}, {"pid", DataType::kInt64, {-1}}}};
}

ModelDescriptor PythonModel(const std::string& dir, const std::string& file, ModelSignature signature) {
  ModelDescriptor d;
  d.flavor = Flavor::kPython;
  d.model_dir = dir;
  d.model_file = file;
  d.signature = std::move(signature);
  return d;
}

std::vector<Tensor> Rows(float first, int64_t rows) {
  std::vector<float> values;
  for (int64_t i = 0; i < rows; ++i) {
    values.push_back(i == 0 ? first : static_cast<float>(i));
    values.push_back(0.5f);
  }
  return {Tensor::FromValues<float>("x", DataType::kFp32, {rows, 2}, values)};
}

// The pid of the worker that answered (the "pid" output).
int64_t AnsweringPid(const std::vector<Tensor>& outputs) { return outputs.at(1).values<int64_t>()[0]; }

// Our child processes, from /proc (the workers are our children).
std::set<pid_t> ChildPids() {
  std::set<pid_t> children;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream fields(stat.substr(paren + 1));
    char state;
    pid_t ppid;
    if (fields >> state >> ppid && ppid == ::getpid()) children.insert(std::stoi(name));
  }
  return children;
}

// Running means: /proc/PID exists and is not a zombie (an orphan re-parented
// to a container's PID 1 may stay a zombie there).
bool Running(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

class PythonBackendTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::unique_ptr<ModelBackend>> LoadMoody(BackendOptions options = {}) {
    WriteFile(dir_.path() + "/predict.py", kMoodyPredict);
    return LoadPythonModel(PythonModel(dir_.path(), "predict.py", MoodySignature()), options);
  }

  ScopedTempDir dir_;
};

TEST_F(PythonBackendTest, ExceptionFailsTheRequestWithItsMessageAndTheWorkerStays) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ModelBackend> model, LoadMoody());
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> before, model->Infer(Rows(1, 3)));
  EXPECT_THAT(model->Infer(Rows(5, 3)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ValueError: row 0 is five")));
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> after, model->Infer(Rows(2, 3)));
  EXPECT_EQ(AnsweringPid(after), AnsweringPid(before));
  EXPECT_THAT(after[0].values<float>(), ::testing::ElementsAre(2.5f, 1.5f, 2.5f));
}

TEST_F(PythonBackendTest, WorkerThatExitsFailsOnlyItsRequestAndIsReplaced) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ModelBackend> model, LoadMoody());
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> before, model->Infer(Rows(1, 2)));
  const pid_t first = static_cast<pid_t>(AnsweringPid(before));

  EXPECT_THAT(model->Infer(Rows(13, 2)),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("python worker exited with code 3"), HasSubstr("exiting on purpose"))));
  EXPECT_FALSE(ChildPids().contains(first)) << "the dead worker was not reaped";

  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> after, model->Infer(Rows(1, 2)));
  EXPECT_NE(AnsweringPid(after), first);
  EXPECT_THAT(after[0].values<float>(), ::testing::ElementsAre(1.5f, 1.5f));
}

TEST_F(PythonBackendTest, WorkerThatDiesWhileIdleFailsNoRequest) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ModelBackend> model, LoadMoody());
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> before, model->Infer(Rows(1, 1)));
  const pid_t victim = static_cast<pid_t>(AnsweringPid(before));
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  while (Running(victim)) std::this_thread::sleep_for(std::chrono::milliseconds(5));  // a zombie now

  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> after, model->Infer(Rows(1, 1)));
  EXPECT_NE(AnsweringPid(after), victim);
}

TEST_F(PythonBackendTest, RequestsFailFastWhileNoWorkerCanStartAndSucceedOnceOneCan) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ModelBackend> model, LoadMoody());
  // The running worker has the module loaded; its replacement will not load.
  WriteFile(dir_.path() + "/predict.py", "def predict(inputs:\n");
  EXPECT_THAT(model->Infer(Rows(13, 1)), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(model->Infer(Rows(1, 1)),
              StatusIs(absl::StatusCode::kUnavailable, AllOf(HasSubstr("no python worker"), HasSubstr("SyntaxError"))));

  WriteFile(dir_.path() + "/predict.py", kMoodyPredict);
  absl::StatusOr<std::vector<Tensor>> outputs = model->Infer(Rows(1, 1));
  for (int i = 0; i < 100 && !outputs.ok(); ++i) {  // the supervisor retries after a back-off
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    outputs = model->Infer(Rows(1, 1));
  }
  EXPECT_THAT(outputs, IsOk());
}

TEST_F(PythonBackendTest, WorkerKilledBySignalIsReported) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ModelBackend> model, LoadMoody());
  EXPECT_THAT(model->Infer(Rows(9, 1)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("python worker exited with signal 9")));
  EXPECT_THAT(model->Infer(Rows(1, 1)), IsOk());
}

TEST_F(PythonBackendTest, WorkerSlowerThanTheTimeoutIsKilledAndReplaced) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ModelBackend> model, LoadMoody({.python_timeout_ms = 300}));
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> before, model->Infer(Rows(1, 1)));
  const pid_t slow = static_cast<pid_t>(AnsweringPid(before));

  EXPECT_THAT(model->Infer(Rows(7, 1)), StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("killed")));
  EXPECT_FALSE(Running(slow));

  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> after, model->Infer(Rows(1, 1)));
  EXPECT_NE(AnsweringPid(after), slow);
}

TEST_F(PythonBackendTest, TwoWorkersServeEightThreads) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ModelBackend> model, LoadMoody({.python_workers = 2}));
  EXPECT_EQ(ChildPids().size(), 2u);
  constexpr int kThreads = 8;
  constexpr int kCalls = 10;
  std::vector<std::string> failures(kThreads);
  std::vector<std::set<int64_t>> pids(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int call = 0; call < kCalls; ++call) {
        const float first = static_cast<float>(100 + t * kCalls + call);
        absl::StatusOr<std::vector<Tensor>> outputs = model->Infer(Rows(first, 4));
        if (!outputs.ok()) {
          failures[t] = outputs.status().ToString();
          return;
        }
        if ((*outputs)[0].values<float>()[0] != first + 0.5f) {
          failures[t] = fmt::format("call {}: got {} for {}", call, (*outputs)[0].values<float>()[0], first);
          return;
        }
        pids[t].insert(AnsweringPid(*outputs));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::set<int64_t> all;
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(failures[t], "") << "thread " << t;
    all.insert(pids[t].begin(), pids[t].end());
  }
  EXPECT_LE(all.size(), 2u);
  const std::set<pid_t> children = ChildPids();
  for (int64_t pid : all) EXPECT_TRUE(children.contains(static_cast<pid_t>(pid))) << pid;
}

TEST_F(PythonBackendTest, DestructionLeavesNoProcesses) {
  // A model that starts a process of its own, deaf to SIGTERM, which must
  // go with the worker all the same.
  WriteFile(dir_.path() + "/predict.py", R"py(
import subprocess
import numpy as np

_sleeper = subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 60"])
with open("sleeper.pid", "w") as f:
    f.write(str(_sleeper.pid))


def predict(inputs):
    return {"y": inputs["x"].sum(axis=1), "pid": np.zeros(len(inputs["x"]), dtype=np.int64)}
)py");
  std::set<pid_t> workers;
  {
    ASSERT_OK_AND_ASSIGN(
        std::unique_ptr<ModelBackend> model,
        LoadPythonModel(PythonModel(dir_.path(), "predict.py", MoodySignature()), {.python_workers = 2}));
    workers = ChildPids();
    EXPECT_EQ(workers.size(), 2u);
    EXPECT_GT(model->memory_bytes(), 1u << 20);
  }
  EXPECT_THAT(ChildPids(), IsEmpty());
  for (pid_t pid : workers) EXPECT_FALSE(Running(pid)) << pid;
  std::ifstream in(dir_.path() + "/sleeper.pid");
  pid_t sleeper = 0;
  ASSERT_TRUE(in >> sleeper);
  // Killed with its group; dying takes the kernel a moment on a busy machine.
  for (int i = 0; i < 500 && Running(sleeper); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_FALSE(Running(sleeper)) << "the model's own child outlived the worker";
}

TEST_F(PythonBackendTest, ImportErrorFailsTheLoadWithItsMessageAndLeavesNoProcess) {
  WriteFile(dir_.path() + "/predict.py", "import cairn_no_such_module\n\ndef predict(inputs):\n    return {}\n");
  EXPECT_THAT(LoadPythonModel(PythonModel(dir_.path(), "predict.py", MoodySignature()), {.python_workers = 2}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("ModuleNotFoundError: No module named 'cairn_no_such_module'")));
  EXPECT_THAT(ChildPids(), IsEmpty());
}

TEST_F(PythonBackendTest, FileWithoutPredictFailsTheLoad) {
  WriteFile(dir_.path() + "/model.py", "def forecast(inputs):\n    return {}\n");
  EXPECT_THAT(LoadPythonModel(PythonModel(dir_.path(), "model.py", MoodySignature()), {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("defines no predict(inputs) function")));
}

TEST_F(PythonBackendTest, BadPickleFailsTheLoad) {
  WriteFile(dir_.path() + "/model.pkl", "this is not a pickle");
  EXPECT_THAT(LoadPythonModel(PythonModel(dir_.path(), "model.pkl", MoodySignature()), {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UnpicklingError")));
  EXPECT_THAT(ChildPids(), IsEmpty());
}

TEST_F(PythonBackendTest, BadDescriptorsAndOptionsAreRejected) {
  WriteFile(dir_.path() + "/predict.py", kMoodyPredict);
  WriteFile(dir_.path() + "/model.joblib", "");
  const ModelDescriptor good = PythonModel(dir_.path(), "predict.py", MoodySignature());
  EXPECT_THAT(LoadPythonModel(PythonModel(dir_.path(), "absent.py", MoodySignature()), {}),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(LoadPythonModel(PythonModel(dir_.path(), "model.joblib", MoodySignature()), {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(".pkl")));
  EXPECT_THAT(LoadPythonModel(good, {.python = dir_.path() + "/no-python"}),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no-python")));
  EXPECT_THAT(LoadPythonModel(good, {.python_workers = 0}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(LoadPythonModel(good, {.python_timeout_ms = 0}), StatusIs(absl::StatusCode::kInvalidArgument));
  ModelDescriptor bad_method = good;
  bad_method.options = Json{{"method", "decision_function"}};
  EXPECT_THAT(LoadPythonModel(bad_method, {}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("method")));
  EXPECT_THAT(ChildPids(), IsEmpty());
}

TEST_F(PythonBackendTest, OutputsMissingFromTheDescriptorAreLearntFromTheWarmUpCall) {
  WriteFile(dir_.path() + "/predict.py", R"py(
import numpy as np


def predict(inputs):
    n = len(inputs["x"])
    return {"scores": np.ones((n, 3), dtype=np.float32), "names": np.array(["a"] * n, dtype=object)}
)py");
  ModelSignature signature = MoodySignature();
  signature.outputs.clear();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ModelBackend> model,
                       LoadPythonModel(PythonModel(dir_.path(), "predict.py", signature), {}));
  const std::vector<TensorSpec>& outputs = model->signature().outputs;
  ASSERT_EQ(outputs.size(), 2u);
  EXPECT_EQ(outputs[0].name, "scores");
  EXPECT_EQ(outputs[0].datatype, DataType::kFp32);
  EXPECT_EQ(outputs[0].shape, (std::vector<int64_t>{-1, 3}));
  EXPECT_EQ(outputs[1].name, "names");
  EXPECT_EQ(outputs[1].datatype, DataType::kBytes);
  EXPECT_EQ(outputs[1].shape, (std::vector<int64_t>{-1}));
  EXPECT_EQ(model->platform(), "python");

  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> result, model->Infer(Rows(1, 2)));
  EXPECT_EQ(result[0].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_THAT(result[1].byte_elements(), ::testing::ElementsAre("a", "a"));
}

TEST_F(PythonBackendTest, BytesInputsArriveAsNumpyArraysOfBytes) {
  WriteFile(dir_.path() + "/predict.py", R"py(
import numpy as np


def predict(inputs):
    text = inputs["text"]
    assert text.dtype == object, text.dtype
    return np.array([len(v) if isinstance(v, bytes) else -1 for v in text], dtype=np.int64)
)py");
  ModelSignature signature = {{{"text", DataType::kBytes, {-1}}}, {{"predict", DataType::kInt64, {-1}}}};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ModelBackend> model,
                       LoadPythonModel(PythonModel(dir_.path(), "predict.py", signature), {}));
  const std::vector<std::string> texts = {"hello", "", std::string("a\0b", 3)};
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> result, model->Infer({Tensor::FromStrings("text", {3}, texts)}));
  EXPECT_THAT(result[0].values<int64_t>(), ::testing::ElementsAre(5, 0, 3));
}

TEST_F(PythonBackendTest, OutputThatLosesTheBatchIsAnInvalidArgument) {
  WriteFile(dir_.path() + "/predict.py", R"py(
import numpy as np


def predict(inputs):
    x = inputs["x"]
    return {"y": x.sum(axis=1)[:1], "pid": np.zeros(len(x), dtype=np.int64)}
)py");
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ModelBackend> model,
                       LoadPythonModel(PythonModel(dir_.path(), "predict.py", MoodySignature()), {}));
  EXPECT_THAT(model->Infer(Rows(1, 3)), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("output 'y'")));
}

// Pickled scikit-learn estimators, made here so that their shape is known:
// y = a + 2b (regression) and a classifier over the same two features.
class PythonPickleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new ScopedTempDir();
    const std::string script = fmt::format(R"py(
import pickle
import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression
x = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [2, 3]], dtype=np.float64)
with open("{0}/regression.pkl", "wb") as f:
    pickle.dump(LinearRegression().fit(x, x[:, 0] + 2 * x[:, 1]), f)
with open("{0}/classifier.pkl", "wb") as f:
    pickle.dump(LogisticRegression().fit(x, [0, 0, 1, 1, 1]), f)
)py",
                                           dir_->path());
    WriteFile(dir_->path() + "/make.py", script);
    made_ = std::system(fmt::format("/usr/bin/python3 {}/make.py", dir_->path()).c_str()) == 0;
  }
  static void TearDownTestSuite() { delete dir_; }
  void SetUp() override { ASSERT_TRUE(made_) << "could not pickle the estimators"; }

  static ScopedTempDir* dir_;
  static bool made_;
};
ScopedTempDir* PythonPickleTest::dir_ = nullptr;
bool PythonPickleTest::made_ = false;

TEST_F(PythonPickleTest, SeveralOneDimensionalInputsAreStackedAsColumns) {
  ModelSignature signature = {{{"b", DataType::kFp64, {-1}}, {"a", DataType::kFp64, {-1}}}, {}};
  // Columns in signature order: b first. y = first + 2 * second.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ModelBackend> model,
                       LoadPythonModel(PythonModel(dir_->path(), "regression.pkl", signature), {}));
  ASSERT_EQ(model->signature().outputs.size(), 1u);
  EXPECT_EQ(model->signature().outputs[0].name, "predict");
  EXPECT_EQ(model->signature().outputs[0].datatype, DataType::kFp64);
  std::vector<Tensor> inputs = {Tensor::FromValues<double>("a", DataType::kFp64, {2}, std::vector<double>{10, 20}),
                                Tensor::FromValues<double>("b", DataType::kFp64, {2}, std::vector<double>{1, 2})};
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> result, model->Infer(inputs));
  ASSERT_EQ(result[0].values<double>().size(), 2u);
  EXPECT_NEAR(result[0].values<double>()[0], 1 + 2 * 10, 1e-6);
  EXPECT_NEAR(result[0].values<double>()[1], 2 + 2 * 20, 1e-6);
}

TEST_F(PythonPickleTest, PredictProbaWithoutSignatureLearnsInputsFromTheEstimator) {
  ModelDescriptor d = PythonModel(dir_->path(), "classifier.pkl", {});
  d.options = Json{{"method", "predict_proba"}};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ModelBackend> model, LoadPythonModel(d, {}));
  ASSERT_EQ(model->signature().inputs.size(), 1u);
  EXPECT_EQ(model->signature().inputs[0].name, "input");
  EXPECT_EQ(model->signature().inputs[0].datatype, DataType::kFp64);
  EXPECT_EQ(model->signature().inputs[0].shape, (std::vector<int64_t>{-1, 2}));
  ASSERT_EQ(model->signature().outputs.size(), 1u);
  EXPECT_EQ(model->signature().outputs[0].name, "probabilities");
  EXPECT_EQ(model->signature().outputs[0].shape, (std::vector<int64_t>{-1, 2}));
  ASSERT_OK_AND_ASSIGN(
      std::vector<Tensor> result,
      model->Infer({Tensor::FromValues<double>("input", DataType::kFp64, {1, 2}, std::vector<double>{0, 3})}));
  std::span<const double> p = result[0].values<double>();
  ASSERT_EQ(p.size(), 2u);
  EXPECT_NEAR(p[0] + p[1], 1.0, 1e-9);
  EXPECT_GT(p[1], p[0]);
}

}  // namespace
}  // namespace cairn::serving
