#include "serving/xgboost_backend.h"

#include <xgboost/c_api.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <system_error>

#include <fmt/format.h>

namespace cairn::serving {
namespace {

namespace fs = std::filesystem;

// Normal prediction over all trees. "cache_id" is required by XGBoost 1.7's
// in-place prediction (without it: "Invalid cast, from Null to Integer");
// NaN marks a missing value, as in the Python package.
constexpr char kPredictConfig[] =
    R"({"type": 0, "training": false, "iteration_begin": 0, "iteration_end": 0, "strict_shape": false,)"
    R"( "cache_id": 0, "missing": NaN})";

// XGBoost's last error on this thread, first line only: the rest is a stack
// trace. The "[hh:mm:ss] " prefix is dropped too.
std::string LastXgboostError() {
  std::string error = XGBGetLastError();
  if (const size_t nl = error.find('\n'); nl != std::string::npos) error.resize(nl);
  if (!error.empty() && error[0] == '[') {
    if (const size_t close = error.find("] "); close != std::string::npos) error.erase(0, close + 2);
  }
  return error;
}

// The OIP platform name for the model's serialization, recognised from its
// first bytes: JSON text, UBJSON (also an object, '{', but followed by a
// typed length marker) or XGBoost's binary format ("binf" header, written by
// every XGBoost since 0.8); empty for anything else. XGBoost would read
// unknown bytes as a header-less binary model and may then try to allocate
// whatever size the bytes spell.
std::string_view PlatformOf(std::string_view bytes) {
  size_t i = 0;
  while (i < bytes.size() && (bytes[i] == ' ' || bytes[i] == '\n' || bytes[i] == '\r' || bytes[i] == '\t')) ++i;
  if (bytes.substr(0, 4) == "binf") return "xgboost_binary";
  if (i >= bytes.size() || bytes[i] != '{') return "";
  ++i;
  while (i < bytes.size() && (bytes[i] == ' ' || bytes[i] == '\n' || bytes[i] == '\r' || bytes[i] == '\t')) ++i;
  if (i < bytes.size() && (bytes[i] == '"' || bytes[i] == '}')) return "xgboost_json";
  return "xgboost_ubj";
}

// The element at `index` of a validated fixed-size tensor, as the float
// XGBoost predicts on.
float ElementAsFloat(const Tensor& t, int64_t index) {
  switch (t.datatype) {
    case DataType::kBool:
    case DataType::kUint8:
      return static_cast<float>(t.values<uint8_t>()[index]);
    case DataType::kUint16:
      return static_cast<float>(t.values<uint16_t>()[index]);
    case DataType::kUint32:
      return static_cast<float>(t.values<uint32_t>()[index]);
    case DataType::kUint64:
      return static_cast<float>(t.values<uint64_t>()[index]);
    case DataType::kInt8:
      return static_cast<float>(t.values<int8_t>()[index]);
    case DataType::kInt16:
      return static_cast<float>(t.values<int16_t>()[index]);
    case DataType::kInt32:
      return static_cast<float>(t.values<int32_t>()[index]);
    case DataType::kInt64:
      return static_cast<float>(t.values<int64_t>()[index]);
    case DataType::kFp32:
      return t.values<float>()[index];
    case DataType::kFp64:
      return static_cast<float>(t.values<double>()[index]);
    case DataType::kFp16:
    case DataType::kBytes:
      break;  // refused at load
  }
  return std::nanf("");
}

// A booster and the signature it answers to. Owns the booster handle.
class XgboostBackend final : public ModelBackend {
 public:
  static absl::StatusOr<std::unique_ptr<XgboostBackend>> Create(const ModelDescriptor& descriptor,
                                                                const BackendOptions& options);
  ~XgboostBackend() override {
    for (DMatrixHandle proxy : proxies_) XGDMatrixFree(proxy);
    if (booster_ != nullptr) XGBoosterFree(booster_);
  }
  XgboostBackend(const XgboostBackend&) = delete;
  XgboostBackend& operator=(const XgboostBackend&) = delete;

  const ModelSignature& signature() const override { return signature_; }
  std::string_view platform() const override { return platform_; }
  uint64_t memory_bytes() const override { return memory_bytes_; }
  // Tree ensembles predict a few rows in microseconds.
  bool quick() const override { return true; }
  absl::StatusOr<std::vector<Tensor>> Infer(const std::vector<Tensor>& inputs) override;

 private:
  XgboostBackend() = default;

  // Predicts on `rows` rows of `features` floats each at `values`; returns the
  // booster's output shape and values.
  absl::StatusOr<Tensor> Predict(const float* values, int64_t rows) const;
  // A proxy matrix for one in-place prediction, taken from the idle ones (or
  // made), and given back after. Without one XGBoost 1.7 makes its own per
  // call, and constructing it reads two cgroup files: 4 system calls, about
  // half of a 1-row prediction's time.
  absl::StatusOr<DMatrixHandle> TakeProxy() const;
  void GiveBackProxy(DMatrixHandle proxy) const;
  // The inputs' columns side by side as one row-major float matrix.
  std::vector<float> StackColumns(const std::vector<const Tensor*>& ordered, int64_t rows) const;

  BoosterHandle booster_ = nullptr;
  std::string file_;  // for messages
  std::string platform_;
  ModelSignature signature_;
  std::vector<int64_t> columns_;  // matrix columns each signature input fills
  int64_t features_ = 0;
  uint64_t memory_bytes_ = 0;
  mutable std::mutex proxies_mutex_;
  mutable std::vector<DMatrixHandle> proxies_;  // idle proxies; one per concurrent caller at most
};

absl::StatusOr<std::unique_ptr<XgboostBackend>> XgboostBackend::Create(const ModelDescriptor& descriptor,
                                                                       const BackendOptions& options) {
  const std::string file = fmt::format("{}/{}", descriptor.model_dir, descriptor.model_file);
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) {
    return absl::NotFoundError(fmt::format("XGBoost model file {} does not exist", file));
  }
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    if (!in) return absl::NotFoundError(fmt::format("XGBoost model file {} cannot be opened", file));
    std::stringstream buffer;
    buffer << in.rdbuf();
    bytes = std::move(buffer).str();
  }
  if (bytes.empty()) return absl::InvalidArgumentError(fmt::format("XGBoost model file {} is empty", file));

  const std::string_view platform = PlatformOf(bytes);
  if (platform.empty()) {
    return absl::InvalidArgumentError(fmt::format(
        "XGBoost model file {} is not an XGBoost model (neither JSON, UBJSON nor XGBoost's binary format)", file));
  }
  std::unique_ptr<XgboostBackend> backend(new XgboostBackend());
  backend->file_ = file;
  backend->platform_ = std::string(platform);
  backend->memory_bytes_ = bytes.size();
  if (XGBoosterCreate(nullptr, 0, &backend->booster_) != 0) {
    return absl::InternalError(fmt::format("XGBoost: creating a booster failed: {}", LastXgboostError()));
  }
  // From a buffer, XGBoost recognises the format by content; from a file it
  // would go by the extension, and MLflow's model.xgb may hold any of them.
  if (XGBoosterLoadModelFromBuffer(backend->booster_, bytes.data(), bytes.size()) != 0) {
    return absl::InvalidArgumentError(
        fmt::format("XGBoost cannot read the model file {}: {}", file, LastXgboostError()));
  }
  const std::string threads = std::to_string(std::max(options.threads, 1));
  if (XGBoosterSetParam(backend->booster_, "nthread", threads.c_str()) != 0) {
    return absl::InternalError(fmt::format("XGBoost: setting nthread failed: {}", LastXgboostError()));
  }
  bst_ulong features = 0;
  if (XGBoosterGetNumFeature(backend->booster_, &features) != 0 || features == 0) {
    return absl::InvalidArgumentError(fmt::format("XGBoost model file {}: the model has no features", file));
  }
  backend->features_ = static_cast<int64_t>(features);

  // Inputs: the declared ones must add up to the booster's features.
  ModelSignature& sig = backend->signature_;
  sig.inputs = descriptor.signature.inputs;
  if (sig.inputs.empty()) sig.inputs.push_back({"input", DataType::kFp32, {-1, backend->features_}});
  int64_t total = 0;
  for (const TensorSpec& spec : sig.inputs) {
    if (spec.datatype == DataType::kBytes || spec.datatype == DataType::kFp16) {
      return absl::InvalidArgumentError(fmt::format("XGBoost model {}: input '{}' is {}; XGBoost takes numbers", file,
                                                    spec.name, DataTypeName(spec.datatype)));
    }
    int64_t columns = 0;
    if (spec.shape.size() == 1) {
      columns = 1;
    } else if (spec.shape.size() == 2 && spec.shape[1] > 0) {
      columns = spec.shape[1];
    } else {
      return absl::InvalidArgumentError(
          fmt::format("XGBoost model {}: input '{}' has shape [{}]; XGBoost takes [-1] (one column) or [-1, k] with "
                      "a fixed k",
                      file, spec.name, fmt::join(spec.shape, ",")));
    }
    backend->columns_.push_back(columns);
    total += columns;
  }
  if (total != backend->features_) {
    return absl::InvalidArgumentError(fmt::format(
        "XGBoost model {}: the signature's inputs give {} feature columns, the model has {} features", file, total,
        backend->features_));
  }

  // The output's shape is whatever the booster answers for one row: [1] for
  // regression and binary classification, [1, K] for K classes or targets.
  // The same call configures the booster before concurrent use and warms it.
  const std::vector<float> zeros(static_cast<size_t>(backend->features_), 0.0f);
  ASSIGN_OR_RETURN(Tensor probe, backend->Predict(zeros.data(), 1));
  if (descriptor.signature.outputs.size() > 1) {
    return absl::InvalidArgumentError(fmt::format("XGBoost model {}: the signature declares {} outputs; XGBoost has one",
                                                  file, descriptor.signature.outputs.size()));
  }
  TensorSpec output{"predict", DataType::kFp32, probe.shape};
  if (!descriptor.signature.outputs.empty()) output.name = descriptor.signature.outputs[0].name;
  output.shape[0] = -1;
  sig.outputs = {std::move(output)};
  return backend;
}

absl::StatusOr<DMatrixHandle> XgboostBackend::TakeProxy() const {
  {
    std::lock_guard lock(proxies_mutex_);
    if (!proxies_.empty()) {
      DMatrixHandle proxy = proxies_.back();
      proxies_.pop_back();
      return proxy;
    }
  }
  DMatrixHandle proxy = nullptr;
  if (XGProxyDMatrixCreate(&proxy) != 0) {
    return absl::InternalError(fmt::format("XGBoost: creating a proxy matrix failed: {}", LastXgboostError()));
  }
  return proxy;
}

void XgboostBackend::GiveBackProxy(DMatrixHandle proxy) const {
  std::lock_guard lock(proxies_mutex_);
  proxies_.push_back(proxy);
}

absl::StatusOr<Tensor> XgboostBackend::Predict(const float* values, int64_t rows) const {
  const std::string array = fmt::format(
      R"({{"data": [{}, true], "shape": [{}, {}], "typestr": "<f4", "version": 3}})",
      reinterpret_cast<uintptr_t>(values), rows, features_);
  ASSIGN_OR_RETURN(DMatrixHandle proxy, TakeProxy());
  const bst_ulong* out_shape = nullptr;
  bst_ulong out_dim = 0;
  const float* out = nullptr;
  const int rc = XGBoosterPredictFromDense(booster_, array.c_str(), kPredictConfig, proxy, &out_shape, &out_dim, &out);
  GiveBackProxy(proxy);
  if (rc != 0) {
    return absl::InvalidArgumentError(fmt::format("XGBoost prediction failed: {}", LastXgboostError()));
  }
  if (out_dim < 1 || out_shape[0] != static_cast<bst_ulong>(rows)) {
    return absl::InternalError(fmt::format("XGBoost answered {} dimensions for {} rows", out_dim, rows));
  }
  Tensor result;
  result.datatype = DataType::kFp32;
  size_t count = 1;
  for (bst_ulong d = 0; d < out_dim; ++d) {
    result.shape.push_back(static_cast<int64_t>(out_shape[d]));
    count *= out_shape[d];
  }
  // `out` is XGBoost's per-thread buffer, reused by the next prediction.
  result.data.assign(reinterpret_cast<const char*>(out), count * sizeof(float));
  return result;
}

std::vector<float> XgboostBackend::StackColumns(const std::vector<const Tensor*>& ordered, int64_t rows) const {
  std::vector<float> matrix(static_cast<size_t>(rows * features_));
  int64_t offset = 0;
  for (size_t j = 0; j < ordered.size(); ++j) {
    const Tensor& t = *ordered[j];
    const int64_t width = columns_[j];
    for (int64_t r = 0; r < rows; ++r) {
      float* row = matrix.data() + r * features_ + offset;
      for (int64_t k = 0; k < width; ++k) row[k] = ElementAsFloat(t, r * width + k);
    }
    offset += width;
  }
  return matrix;
}

absl::StatusOr<std::vector<Tensor>> XgboostBackend::Infer(const std::vector<Tensor>& inputs) {
  // Inputs may come in any order; the matrix follows the signature's. The
  // size checks keep a caller that skipped ValidateInputs from reading past
  // a buffer.
  std::vector<const Tensor*> ordered;
  ordered.reserve(signature_.inputs.size());
  int64_t rows = -1;
  for (size_t j = 0; j < signature_.inputs.size(); ++j) {
    const TensorSpec& spec = signature_.inputs[j];
    const Tensor* found = nullptr;
    for (const Tensor& t : inputs) {
      if (t.name == spec.name) found = &t;
    }
    if (found == nullptr || found->datatype != spec.datatype || found->shape.size() != spec.shape.size() ||
        found->shape[0] < 0 || (rows >= 0 && found->shape[0] != rows) ||
        found->data.size() != static_cast<size_t>(found->shape[0] * columns_[j]) * ElementSize(spec.datatype)) {
      return absl::InvalidArgumentError(
          fmt::format("input '{}' does not match the model's signature (validate inputs first)", spec.name));
    }
    rows = found->shape[0];
    ordered.push_back(found);
  }

  TensorSpec out_spec = signature_.outputs[0];
  if (rows == 0) {
    // XGBoost has nothing to say about no rows; answer in the right shape.
    Tensor empty{out_spec.name, DataType::kFp32, out_spec.shape, {}};
    empty.shape[0] = 0;
    for (int64_t& dim : empty.shape) dim = std::max<int64_t>(dim, 0);
    return std::vector<Tensor>{std::move(empty)};
  }

  absl::StatusOr<Tensor> result;
  if (ordered.size() == 1 && ordered[0]->datatype == DataType::kFp32) {
    // The common case: one FP32 matrix XGBoost reads in place.
    result = Predict(ordered[0]->values<float>().data(), rows);
  } else {
    const std::vector<float> matrix = StackColumns(ordered, rows);
    result = Predict(matrix.data(), rows);
  }
  if (!result.ok()) return result.status();
  result->name = out_spec.name;
  return std::vector<Tensor>{*std::move(result)};
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelBackend>> LoadXgboostModel(const ModelDescriptor& descriptor,
                                                               const BackendOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<XgboostBackend> backend, XgboostBackend::Create(descriptor, options));
  return std::unique_ptr<ModelBackend>(std::move(backend));
}

}  // namespace cairn::serving
