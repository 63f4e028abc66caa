// Tests of the TorchScript backend through the dlopen path: this binary does
// not link libtorch; every model goes through LoadTorchScriptModel, which
// opens libcairn_torch.so (CAIRN_TORCH_LIBRARY, the build's copy).
//
// The shared backend suite runs on make_models.py's torch_mlp fixture.
// Torch-specific fixtures (tuple/dict outputs, several arguments, every
// datatype, failing models) are written once per run by a small python3
// script into a temporary folder.

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "base/testing.h"
#include "serving/model_backend.h"
#include "serving/model_backend_suite.h"
#include "serving/tensor.h"
#include "serving/torch_loader.h"

namespace cairn::serving {
namespace {

using ::cairn::testing::IsOk;
using ::cairn::testing::ScopedTempDir;
using ::cairn::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

BackendOptions TorchOptions() {
  BackendOptions options;
  options.torch_library = CAIRN_TORCH_LIBRARY;
  options.threads = 2;
  return options;
}

INSTANTIATE_TEST_SUITE_P(TorchScript, ModelBackendSuite,
                         ::testing::Values(ModelBackendCase{"mlp", "torch_mlp", LoadTorchScriptModel, TorchOptions()}),
                         ModelBackendCaseName);

// Writes one TorchScript archive per model into argv[1].
constexpr char kMakeFixtures[] = R"PY(
import sys
from typing import Dict, Tuple
import torch

out = sys.argv[1]
torch.manual_seed(0)

class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        self.register_buffer("scale", torch.ones(3))
    def forward(self, x):
        return self.net(x) * self.scale

class TwoArgs(torch.nn.Module):
    def forward(self, a, b):
        return a * 2 + b

class TupleOut(torch.nn.Module):
    def forward(self, x) -> Tuple[torch.Tensor, torch.Tensor]:
        return x.sum(1), x * 2

class DictOut(torch.nn.Module):
    def forward(self, x) -> Dict[str, torch.Tensor]:
        return {"twice": x * 2, "negated": -x}

class RowSum(torch.nn.Module):
    def forward(self, x):
        return x.sum(1)

class Identity(torch.nn.Module):
    def forward(self, x):
        return x.clone()

class Double(torch.nn.Module):
    def forward(self, x):
        return x.double() * 0.5

class Count(torch.nn.Module):
    def forward(self, x) -> int:
        return x.size(0)

class Picky(torch.nn.Module):
    def forward(self, x):
        if bool(x.sum() > 100):
            raise ValueError("sum over 100")
        return x

mlp = torch.jit.script(Mlp())
mlp.save(out + "/mlp.pt")
x = torch.tensor([[0.5, -1.0, 2.0, 0.25], [1.0, 2.0, 3.0, 4.0]])
with open(out + "/mlp_expected.txt", "w") as f:
    f.write(" ".join(repr(v) for v in mlp(x).flatten().tolist()))
for name, m in [("two_args", TwoArgs()), ("tuple_out", TupleOut()), ("dict_out", DictOut()),
                ("row_sum", RowSum()), ("identity", Identity()), ("double", Double()),
                ("count", Count()), ("picky", Picky())]:
    torch.jit.script(m).save(out + "/" + name + ".pt")
)PY";

class TorchScriptBackendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fixtures_ = new ScopedTempDir();
    std::string script = fixtures_->path() + "/make.py";
    std::ofstream(script) << kMakeFixtures;
    std::string command = "/usr/bin/python3 " + script + " " + fixtures_->path();
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }
  static void TearDownTestSuite() {
    delete fixtures_;
    fixtures_ = nullptr;
  }

  static BackendOptions Options() { return TorchOptions(); }

  static ModelDescriptor Descriptor(const std::string& file, std::vector<TensorSpec> inputs,
                                    std::vector<TensorSpec> outputs = {}) {
    ModelDescriptor d;
    d.flavor = Flavor::kTorchScript;
    d.model_dir = fixtures_->path();
    d.model_file = file;
    d.signature.inputs = std::move(inputs);
    d.signature.outputs = std::move(outputs);
    return d;
  }

  static std::vector<float> MlpExpected() {
    std::ifstream in(fixtures_->path() + "/mlp_expected.txt");
    std::vector<float> v;
    double x;
    while (in >> x) v.push_back(static_cast<float>(x));
    return v;
  }

  static ScopedTempDir* fixtures_;
};

ScopedTempDir* TorchScriptBackendTest::fixtures_ = nullptr;

Tensor MlpInput() {
  std::vector<float> v = {0.5f, -1.0f, 2.0f, 0.25f, 1.0f, 2.0f, 3.0f, 4.0f};
  return Tensor::FromValues<float>("x", DataType::kFp32, {2, 4}, v);
}

TEST_F(TorchScriptBackendTest, MlpMatchesPython) {
  ASSERT_OK_AND_ASSIGN(auto model,
                       LoadTorchScriptModel(Descriptor("mlp.pt", {{"x", DataType::kFp32, {-1, 4}}},
                                                       {{"y", DataType::kFp32, {-1, 3}}}),
                                            Options()));
  EXPECT_EQ(model->platform(), "pytorch_torchscript");
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> out, model->Infer({MlpInput()}));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].name, "y");
  EXPECT_EQ(out[0].datatype, DataType::kFp32);
  EXPECT_THAT(out[0].shape, ElementsAre(2, 3));
  std::vector<float> expected = MlpExpected();
  ASSERT_EQ(expected.size(), 6u);
  std::span<const float> got = out[0].values<float>();
  ASSERT_EQ(got.size(), 6u);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], 1e-5) << i;
}

TEST_F(TorchScriptBackendTest, MemoryCountsParametersAndBuffers) {
  ASSERT_OK_AND_ASSIGN(auto model,
                       LoadTorchScriptModel(Descriptor("mlp.pt", {{"x", DataType::kFp32, {-1, 4}}}), Options()));
  // Linear(4,8): 32 + 8, Linear(8,3): 24 + 3, buffer: 3; all float.
  EXPECT_EQ(model->memory_bytes(), (32u + 8u + 24u + 3u + 3u) * 4u);
}

TEST_F(TorchScriptBackendTest, OutputsMissingFromTheDescriptorAreDerivedAtLoad) {
  ASSERT_OK_AND_ASSIGN(auto model,
                       LoadTorchScriptModel(Descriptor("mlp.pt", {{"x", DataType::kFp32, {-1, 4}}}), Options()));
  ASSERT_EQ(model->signature().outputs.size(), 1u);
  EXPECT_EQ(model->signature().outputs[0].name, "output0");
  EXPECT_EQ(model->signature().outputs[0].datatype, DataType::kFp32);
  EXPECT_THAT(model->signature().outputs[0].shape, ElementsAre(-1, 3));
}

TEST_F(TorchScriptBackendTest, SeveralArgumentsInSignatureOrder) {
  ASSERT_OK_AND_ASSIGN(auto model, LoadTorchScriptModel(Descriptor("two_args.pt",
                                                                   {{"a", DataType::kInt64, {-1, 2}},
                                                                    {"b", DataType::kInt64, {-1, 2}}},
                                                                   {{"c", DataType::kInt64, {-1, 2}}}),
                                                        Options()));
  std::vector<int64_t> a = {1, 2, 3, 4}, b = {10, 20, 30, 40};
  // Given in the other order: the backend passes them in signature order.
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> out,
                       model->Infer({Tensor::FromValues<int64_t>("b", DataType::kInt64, {2, 2}, b),
                                     Tensor::FromValues<int64_t>("a", DataType::kInt64, {2, 2}, a)}));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_THAT(out[0].values<int64_t>(), ElementsAre(12, 24, 36, 48));
}

TEST_F(TorchScriptBackendTest, ColumnInputsAreStackedForASingleArgument) {
  ASSERT_OK_AND_ASSIGN(auto model, LoadTorchScriptModel(Descriptor("row_sum.pt",
                                                                   {{"c1", DataType::kFp32, {-1}},
                                                                    {"c2", DataType::kFp32, {-1, 2}},
                                                                    {"c3", DataType::kFp32, {-1}}},
                                                                   {{"sum", DataType::kFp32, {-1}}}),
                                                        Options()));
  std::vector<float> c1 = {1, 2}, c2 = {10, 20, 30, 40}, c3 = {100, 200};
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> out,
                       model->Infer({Tensor::FromValues<float>("c1", DataType::kFp32, {2}, c1),
                                     Tensor::FromValues<float>("c2", DataType::kFp32, {2, 2}, c2),
                                     Tensor::FromValues<float>("c3", DataType::kFp32, {2}, c3)}));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_THAT(out[0].values<float>(), ElementsAre(131.0f, 272.0f));
}

TEST_F(TorchScriptBackendTest, TupleOutputsMapInOrder) {
  ASSERT_OK_AND_ASSIGN(auto model, LoadTorchScriptModel(Descriptor("tuple_out.pt", {{"x", DataType::kFp32, {-1, 2}}},
                                                                   {{"sum", DataType::kFp32, {-1}},
                                                                    {"twice", DataType::kFp32, {-1, 2}}}),
                                                        Options()));
  std::vector<float> x = {1, 2, 3, 4};
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> out,
                       model->Infer({Tensor::FromValues<float>("x", DataType::kFp32, {2, 2}, x)}));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].name, "sum");
  EXPECT_THAT(out[0].values<float>(), ElementsAre(3.0f, 7.0f));
  EXPECT_EQ(out[1].name, "twice");
  EXPECT_THAT(out[1].shape, ElementsAre(2, 2));
  EXPECT_THAT(out[1].values<float>(), ElementsAre(2.0f, 4.0f, 6.0f, 8.0f));
}

TEST_F(TorchScriptBackendTest, DictOutputsMapByName) {
  // Declared in the opposite order to the model's dict.
  ASSERT_OK_AND_ASSIGN(auto model, LoadTorchScriptModel(Descriptor("dict_out.pt", {{"x", DataType::kFp32, {-1}}},
                                                                   {{"negated", DataType::kFp32, {-1}},
                                                                    {"twice", DataType::kFp32, {-1}}}),
                                                        Options()));
  std::vector<float> x = {1, -2};
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> out, model->Infer({Tensor::FromValues<float>("x", DataType::kFp32, {2}, x)}));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].name, "negated");
  EXPECT_THAT(out[0].values<float>(), ElementsAre(-1.0f, 2.0f));
  EXPECT_EQ(out[1].name, "twice");
  EXPECT_THAT(out[1].values<float>(), ElementsAre(2.0f, -4.0f));
}

TEST_F(TorchScriptBackendTest, DictOutputNamesAreDerivedFromKeys) {
  ASSERT_OK_AND_ASSIGN(auto model,
                       LoadTorchScriptModel(Descriptor("dict_out.pt", {{"x", DataType::kFp32, {-1}}}), Options()));
  ASSERT_EQ(model->signature().outputs.size(), 2u);
  EXPECT_EQ(model->signature().outputs[0].name, "twice");
  EXPECT_EQ(model->signature().outputs[1].name, "negated");
}

TEST_F(TorchScriptBackendTest, OutputIsConvertedToTheDeclaredDatatype) {
  ASSERT_OK_AND_ASSIGN(auto model, LoadTorchScriptModel(Descriptor("double.pt", {{"x", DataType::kFp32, {-1}}},
                                                                   {{"half", DataType::kFp32, {-1}}}),
                                                        Options()));
  std::vector<float> x = {3, 5};
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> out, model->Infer({Tensor::FromValues<float>("x", DataType::kFp32, {2}, x)}));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].datatype, DataType::kFp32);
  EXPECT_THAT(out[0].values<float>(), ElementsAre(1.5f, 2.5f));
}

// Every datatype torch has passes through an identity model unchanged.
TEST_F(TorchScriptBackendTest, EveryTorchDatatypeRoundTrips) {
  for (DataType type : {DataType::kBool, DataType::kUint8, DataType::kInt8, DataType::kInt16, DataType::kInt32,
                        DataType::kInt64, DataType::kFp16, DataType::kFp32, DataType::kFp64}) {
    SCOPED_TRACE(DataTypeName(type));
    ASSERT_OK_AND_ASSIGN(auto model, LoadTorchScriptModel(Descriptor("identity.pt", {{"x", type, {-1, 3}}},
                                                                     {{"y", type, {-1, 3}}}),
                                                          Options()));
    // Elements 0, 1, 0, 1, ... as raw bytes: the low byte of each element
    // set (bit patterns survive a clone whatever they mean for the type).
    size_t size = ElementSize(type);
    Tensor in{"x", type, {2, 3}, std::string(6 * size, '\0')};
    for (size_t i = 0; i < 6; ++i) in.data[i * size] = static_cast<char>(i % 2);
    ASSERT_OK_AND_ASSIGN(std::vector<Tensor> out, model->Infer({in}));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].datatype, type);
    EXPECT_THAT(out[0].shape, ElementsAre(2, 3));
    EXPECT_EQ(out[0].data, in.data);
  }
}

TEST_F(TorchScriptBackendTest, EmptyBatch) {
  ASSERT_OK_AND_ASSIGN(auto model,
                       LoadTorchScriptModel(Descriptor("mlp.pt", {{"x", DataType::kFp32, {-1, 4}}}), Options()));
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> out, model->Infer({Tensor{"x", DataType::kFp32, {0, 4}, {}}}));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_THAT(out[0].shape, ElementsAre(0, 3));
  EXPECT_TRUE(out[0].data.empty());
}

TEST_F(TorchScriptBackendTest, ConcurrentInferAgrees) {
  ASSERT_OK_AND_ASSIGN(auto model,
                       LoadTorchScriptModel(Descriptor("mlp.pt", {{"x", DataType::kFp32, {-1, 4}}}), Options()));
  ASSERT_OK_AND_ASSIGN(std::vector<Tensor> reference, model->Infer({MlpInput()}));
  std::vector<std::string> results(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      for (int round = 0; round < 20; ++round) {
        absl::StatusOr<std::vector<Tensor>> out = model->Infer({MlpInput()});
        results[i] = out.ok() && out->size() == 1 ? (*out)[0].data : "failed";
        if (results[i] != reference[0].data) return;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const std::string& r : results) EXPECT_EQ(r, reference[0].data);
}

// The first loads race to open the library (run alone, this test is the
// first user in its process).
TEST_F(TorchScriptBackendTest, ConcurrentLoads) {
  std::vector<absl::Status> results(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<std::unique_ptr<ModelBackend>> model =
          LoadTorchScriptModel(Descriptor("mlp.pt", {{"x", DataType::kFp32, {-1, 4}}}), Options());
      results[i] = model.status();
      if (model.ok()) results[i] = (*model)->Infer({MlpInput()}).status();
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& status : results) EXPECT_THAT(status, IsOk());
}

TEST_F(TorchScriptBackendTest, ModelRaisingIsInvalidArgumentWithItsMessage) {
  ASSERT_OK_AND_ASSIGN(auto model,
                       LoadTorchScriptModel(Descriptor("picky.pt", {{"x", DataType::kFp32, {-1}}}), Options()));
  std::vector<float> small = {1, 2}, big = {100, 200};
  EXPECT_THAT(model->Infer({Tensor::FromValues<float>("x", DataType::kFp32, {2}, small)}), IsOk());
  EXPECT_THAT(model->Infer({Tensor::FromValues<float>("x", DataType::kFp32, {2}, big)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sum over 100")));
}

TEST_F(TorchScriptBackendTest, WrongInnerDimensionIsInvalidArgument) {
  // A signature that does not fit the model fails its warm-up at load.
  EXPECT_THAT(LoadTorchScriptModel(Descriptor("mlp.pt", {{"x", DataType::kFp32, {-1, 5}}}), Options()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("warm-up")));
}

TEST_F(TorchScriptBackendTest, DeclaredOutputShapeThatDoesNotFitIsRefusedAtLoad) {
  EXPECT_THAT(LoadTorchScriptModel(Descriptor("mlp.pt", {{"x", DataType::kFp32, {-1, 4}}},
                                              {{"y", DataType::kFp32, {-1, 2}}}),
                                   Options()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("[-1,2]")));
}

TEST_F(TorchScriptBackendTest, NonTensorResultIsRefusedAtLoad) {
  EXPECT_THAT(LoadTorchScriptModel(Descriptor("count.pt", {{"x", DataType::kFp32, {-1}}}), Options()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected a tensor")));
}

TEST_F(TorchScriptBackendTest, MissingSignatureIsInvalidArgument) {
  EXPECT_THAT(LoadTorchScriptModel(Descriptor("mlp.pt", {}), Options()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("signature")));
}

TEST_F(TorchScriptBackendTest, DatatypeWithoutTorchEquivalentIsInvalidArgument) {
  EXPECT_THAT(LoadTorchScriptModel(Descriptor("identity.pt", {{"x", DataType::kUint32, {-1}}}), Options()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UINT32")));
  EXPECT_THAT(LoadTorchScriptModel(Descriptor("identity.pt", {{"x", DataType::kBytes, {-1}}}), Options()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("BYTES")));
}

TEST_F(TorchScriptBackendTest, MoreInputsThanArgumentsIsInvalidArgument) {
  EXPECT_THAT(LoadTorchScriptModel(Descriptor("two_args.pt", {{"a", DataType::kInt64, {-1, 2}},
                                                              {"b", DataType::kInt64, {-1, 2}},
                                                              {"c", DataType::kInt64, {-1, 2}}}),
                                   Options()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("forward takes 2")));
}

TEST_F(TorchScriptBackendTest, MissingModelFileIsNotFound) {
  EXPECT_THAT(LoadTorchScriptModel(Descriptor("absent.pt", {{"x", DataType::kFp32, {-1}}}), Options()),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(TorchScriptBackendTest, CorruptArchiveIsInvalidArgument) {
  ScopedTempDir dir;
  std::ofstream(dir.path() + "/model.pt") << "not a zip archive";
  ModelDescriptor d = Descriptor("model.pt", {{"x", DataType::kFp32, {-1}}});
  d.model_dir = dir.path();
  EXPECT_THAT(LoadTorchScriptModel(d, Options()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cannot load TorchScript model")));
}

TEST_F(TorchScriptBackendTest, WrongFlavorIsInvalidArgument) {
  ModelDescriptor d = Descriptor("mlp.pt", {{"x", DataType::kFp32, {-1, 4}}});
  d.flavor = Flavor::kXgboost;
  EXPECT_THAT(LoadTorchScriptModel(d, Options()), StatusIs(absl::StatusCode::kInvalidArgument));
}

// The loader, without a usable library.

TEST(TorchLoaderTest, AbsentLibraryIsFailedPreconditionNamingWhereItLooked) {
  BackendOptions options;
  options.torch_library = "/nonexistent/libcairn_torch.so";
  ModelDescriptor d;
  d.flavor = Flavor::kTorchScript;
  EXPECT_THAT(LoadTorchScriptModel(d, options),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("TorchScript support is not installed: libcairn_torch.so not found (looked in "
                                 "/nonexistent/libcairn_torch.so)")));
}

TEST(TorchLoaderTest, FileThatIsNotALibraryIsFailedPrecondition) {
  ScopedTempDir dir;
  std::string path = dir.path() + "/libcairn_torch.so";
  std::ofstream(path) << "not an ELF file";
  BackendOptions options;
  options.torch_library = path;
  ModelDescriptor d;
  d.flavor = Flavor::kTorchScript;
  EXPECT_THAT(LoadTorchScriptModel(d, options),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cannot load " + path)));
}

TEST(TorchLoaderTest, LibraryWithoutEntryPointIsFailedPrecondition) {
  Dl_info libc;  // a real shared library, but not a backend
  ASSERT_NE(::dladdr(reinterpret_cast<void*>(&std::abort), &libc), 0);
  BackendOptions options;
  options.torch_library = libc.dli_fname;
  ModelDescriptor d;
  d.flavor = Flavor::kTorchScript;
  EXPECT_THAT(LoadTorchScriptModel(d, options),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cairn_torch_backend_v1")));
}

TEST(TorchLoaderTest, CandidatesFollowOptionThenEnvironmentThenExecutable) {
  BackendOptions explicit_path;
  explicit_path.torch_library = "/opt/x/libcairn_torch.so";
  EXPECT_THAT(TorchLibraryCandidates(explicit_path), ElementsAre("/opt/x/libcairn_torch.so"));

  const char* saved = std::getenv("CAIRN_TORCH_BACKEND");
  std::string saved_value = saved != nullptr ? saved : "";
  ::setenv("CAIRN_TORCH_BACKEND", "/env/libcairn_torch.so", 1);
  EXPECT_THAT(TorchLibraryCandidates(BackendOptions{}), ElementsAre("/env/libcairn_torch.so"));
  EXPECT_THAT(TorchLibraryCandidates(explicit_path), ElementsAre("/opt/x/libcairn_torch.so"));
  ::unsetenv("CAIRN_TORCH_BACKEND");

  std::vector<std::string> defaults = TorchLibraryCandidates(BackendOptions{});
  if (saved != nullptr) ::setenv("CAIRN_TORCH_BACKEND", saved_value.c_str(), 1);
  ASSERT_EQ(defaults.size(), 2u);
  std::string exe_dir = std::filesystem::read_symlink("/proc/self/exe").parent_path().string();
  EXPECT_EQ(defaults[0], exe_dir + "/libcairn_torch.so");
  EXPECT_EQ(defaults[1],
            (std::filesystem::path(exe_dir).parent_path() / "lib/cairn/libcairn_torch.so").lexically_normal().string());
}

}  // namespace
}  // namespace cairn::serving
