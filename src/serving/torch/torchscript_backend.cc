// The TorchScript backend: libcairn_torch.so, loaded on demand by
// serving/torch_loader.cc through the C entry point cairn_torch_backend_v1.
// This is the only file in Cairn that includes torch headers (one such
// translation unit takes ~40 s and ~1 GB to compile).
//
// The library must stay self-contained: it links libtorch, Abseil and fmt,
// and uses only the inline parts of Cairn's serving headers (the host does
// not export its symbols). It is linked with --no-undefined so that a call
// into Cairn's static libraries fails the build, not the dlopen.
//
// Every libtorch exception (c10::Error, std::exception) is caught in this
// file and becomes an absl::Status; nothing is thrown across the entry point.

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/csrc/jit/runtime/jit_exception.h>
#include <torch/script.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "base/status.h"
#include "serving/model_backend.h"
#include "serving/tensor.h"
#include "serving/torch_loader.h"

namespace cairn::serving {
namespace {

// The protocol name of a datatype, for messages. (DataTypeName lives in
// cairn_serving, which this library does not link.)
std::string_view TypeName(DataType type) {
  switch (type) {
    case DataType::kBool: return "BOOL";
    case DataType::kUint8: return "UINT8";
    case DataType::kUint16: return "UINT16";
    case DataType::kUint32: return "UINT32";
    case DataType::kUint64: return "UINT64";
    case DataType::kInt8: return "INT8";
    case DataType::kInt16: return "INT16";
    case DataType::kInt32: return "INT32";
    case DataType::kInt64: return "INT64";
    case DataType::kFp16: return "FP16";
    case DataType::kFp32: return "FP32";
    case DataType::kFp64: return "FP64";
    case DataType::kBytes: return "BYTES";
  }
  return "UNKNOWN";
}

// The torch element type with the same in-memory layout, so that request
// bytes can be wrapped without a copy. Torch (1.13) has no unsigned types
// wider than 8 bits and no strings.
std::optional<at::ScalarType> TorchType(DataType type) {
  switch (type) {
    case DataType::kBool: return at::kBool;
    case DataType::kUint8: return at::kByte;
    case DataType::kInt8: return at::kChar;
    case DataType::kInt16: return at::kShort;
    case DataType::kInt32: return at::kInt;
    case DataType::kInt64: return at::kLong;
    case DataType::kFp16: return at::kHalf;
    case DataType::kFp32: return at::kFloat;
    case DataType::kFp64: return at::kDouble;
    case DataType::kUint16:
    case DataType::kUint32:
    case DataType::kUint64:
    case DataType::kBytes: return std::nullopt;
  }
  return std::nullopt;
}

std::optional<DataType> FromTorchType(at::ScalarType type) {
  switch (type) {
    case at::kBool: return DataType::kBool;
    case at::kByte: return DataType::kUint8;
    case at::kChar: return DataType::kInt8;
    case at::kShort: return DataType::kInt16;
    case at::kInt: return DataType::kInt32;
    case at::kLong: return DataType::kInt64;
    case at::kHalf: return DataType::kFp16;
    case at::kFloat: return DataType::kFp32;
    case at::kDouble: return DataType::kFp64;
    default: return std::nullopt;
  }
}

std::string ShapeString(c10::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// libtorch's messages carry a C++ backtrace in what(); users need the first part.
std::string TorchMessage(const c10::Error& e) { return e.what_without_backtrace(); }

// An exception raised by TorchScript code: what() prefixes the message with
// two tracebacks of the script; "ValueError: message" is what users need.
std::string JitMessage(const torch::jit::JITException& e) {
  if (!e.getOriginalMsg()) return e.what();
  std::string name = e.getPythonClassName().value_or("Exception");
  if (name.rfind("builtins.", 0) == 0) name = name.substr(9);
  return fmt::format("{}: {}", name, *e.getOriginalMsg());
}

// Process-wide libtorch settings. They are global in libtorch itself, so the
// first model loaded decides them: intra-op threads (OpenMP/OpenBLAS), and
// the legacy executor instead of the profiling one, whose first forward
// calls take ~75 ms each while it records shapes (~7 ms without).
void ConfigureRuntimeOnce(int threads) {
  static std::once_flag once;
  std::call_once(once, [threads] {
    torch::jit::getProfilingMode() = false;
    if (threads > 0) {
      at::set_num_threads(threads);
      try {
        // Only allowed before any inter-op work ran in this process; it only
        // matters for torch.jit.fork, so a refusal is harmless.
        at::set_num_interop_threads(threads);
      } catch (const std::exception&) {
      }
    }
  });
}

bool IsFixedShape(const std::vector<TensorSpec>& specs) {
  for (const TensorSpec& spec : specs) {
    for (size_t i = 1; i < spec.shape.size(); ++i) {
      if (spec.shape[i] < 0) return false;
    }
  }
  return true;
}

// One loaded TorchScript module. Thread-safe: Infer may run on several
// threads at once (concurrent forward calls on one module are supported by
// libtorch; each call has its own stack).
class TorchScriptBackend final : public ModelBackend {
 public:
  static absl::StatusOr<std::unique_ptr<TorchScriptBackend>> Create(const ModelDescriptor& descriptor,
                                                                    const BackendOptions& options);

  const ModelSignature& signature() const override { return signature_; }
  std::string_view platform() const override { return "pytorch_torchscript"; }
  uint64_t memory_bytes() const override { return memory_bytes_; }

  absl::StatusOr<std::vector<Tensor>> Infer(const std::vector<Tensor>& inputs) override {
    try {
      return Run(inputs);
    } catch (const c10::Error& e) {
      // Raised by the model's own code or by an operator given tensors it
      // cannot take (e.g. a wrong inner dimension): the request's fault.
      return absl::InvalidArgumentError(fmt::format("TorchScript model rejected the inputs: {}", TorchMessage(e)));
    } catch (const torch::jit::JITException& e) {
      // The model's own `raise` (e.g. a ValueError on inputs it refuses).
      return absl::InvalidArgumentError(fmt::format("TorchScript model rejected the inputs: {}", JitMessage(e)));
    } catch (const std::bad_alloc&) {
      return absl::ResourceExhaustedError("TorchScript model: out of memory");
    } catch (const std::exception& e) {
      return absl::InternalError(fmt::format("TorchScript model failed: {}", e.what()));
    }
  }

 private:
  TorchScriptBackend(torch::jit::Module module, ModelSignature signature, c10::Device device, bool stack_columns)
      : module_(std::move(module)), signature_(std::move(signature)), device_(device), stack_columns_(stack_columns) {}

  // May throw c10::Error; Infer catches.
  absl::StatusOr<std::vector<Tensor>> Run(const std::vector<Tensor>& inputs);
  absl::StatusOr<Tensor> ToOutput(const at::Tensor& value, const TensorSpec& spec, int64_t batch) const;
  // Derives the output specs from the first (warm-up) result, for
  // descriptors that declare only inputs.
  absl::Status InferOutputSpecs(const c10::IValue& result, bool fixed_inner_dims);

  torch::jit::Module module_;
  ModelSignature signature_;  // complete and immutable once Create returns
  c10::Device device_;
  bool stack_columns_;  // several inputs become the columns of one matrix
  bool outputs_pending_ = false;  // only during Create: signature_.outputs to be derived
  uint64_t memory_bytes_ = 0;
};

absl::StatusOr<std::unique_ptr<TorchScriptBackend>> TorchScriptBackend::Create(const ModelDescriptor& descriptor,
                                                                               const BackendOptions& options) {
  std::string path = (std::filesystem::path(descriptor.model_dir) / descriptor.model_file).string();
  const ModelSignature& signature = descriptor.signature;
  if (signature.inputs.empty()) {
    return absl::InvalidArgumentError(
        fmt::format("TorchScript model {}: the descriptor declares no input signature (TorchScript archives "
                    "carry no datatypes, so the signature must name every input's datatype and shape)",
                    path));
  }
  for (const auto* specs : {&signature.inputs, &signature.outputs}) {
    for (const TensorSpec& spec : *specs) {
      const char* kind = specs == &signature.inputs ? "input" : "output";
      if (!TorchType(spec.datatype)) {
        return absl::InvalidArgumentError(fmt::format(
            "TorchScript model {}: {} '{}' has datatype {}, which TorchScript has no equivalent for "
            "(use BOOL, UINT8, INT8, INT16, INT32, INT64, FP16, FP32 or FP64)",
            path, kind, spec.name, TypeName(spec.datatype)));
      }
      if (spec.shape.empty()) {
        return absl::InvalidArgumentError(fmt::format(
            "TorchScript model {}: {} '{}' has no shape; dimension 0 must be the batch (-1)", path, kind, spec.name));
      }
    }
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(fmt::format("TorchScript model file {} does not exist", path));
  }

  ConfigureRuntimeOnce(options.threads);
  c10::Device device = options.gpu && torch::cuda::is_available() ? c10::Device(c10::kCUDA) : c10::Device(c10::kCPU);
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, device);
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(
        fmt::format("cannot load TorchScript model {}: {}", path, TorchMessage(e)));
  }
  module.eval();

  auto forward = module.find_method("forward");
  if (!forward) {
    return absl::InvalidArgumentError(fmt::format("TorchScript model {} has no forward method", path));
  }
  size_t arguments = forward->function().getSchema().arguments().size() - 1;  // without `self`
  // The batching convention of model_backend.h: a forward taking one matrix
  // behind a signature of several inputs (an MLflow column-based signature)
  // gets them side by side, a 1-D input as one column, a 2-D one as its columns.
  bool all_columns = signature.inputs.size() > 1 &&
                     std::all_of(signature.inputs.begin(), signature.inputs.end(), [&](const TensorSpec& s) {
                       return (s.shape.size() == 1 || s.shape.size() == 2) &&
                              s.datatype == signature.inputs[0].datatype;
                     });
  bool stack_columns = arguments == 1 && all_columns;
  if (!stack_columns && signature.inputs.size() > arguments) {
    return absl::InvalidArgumentError(
        fmt::format("TorchScript model {}: forward takes {} tensor(s) but the signature declares {} inputs", path,
                    arguments, signature.inputs.size()));
  }

  std::unique_ptr<TorchScriptBackend> backend(new TorchScriptBackend(std::move(module), signature, device, stack_columns));
  for (const at::Tensor& p : backend->module_.parameters()) backend->memory_bytes_ += p.nbytes();
  for (const at::Tensor& b : backend->module_.buffers()) backend->memory_bytes_ += b.nbytes();

  // Warm-up: the first forward after load compiles and optimises the graph;
  // doing it here keeps that cost off the first request, and checks that the
  // signature fits the model.
  std::vector<Tensor> zeros;
  for (const TensorSpec& spec : signature.inputs) {
    Tensor t{spec.name, spec.datatype, spec.shape, {}};
    int64_t count = 1;
    for (int64_t& d : t.shape) {
      if (d < 0) d = 1;
      count *= d;
    }
    t.data.assign(static_cast<size_t>(count) * c10::elementSize(*TorchType(spec.datatype)), '\0');
    zeros.push_back(std::move(t));
  }
  backend->outputs_pending_ = signature.outputs.empty();
  absl::StatusOr<std::vector<Tensor>> warm = backend->Infer(zeros);
  backend->outputs_pending_ = false;
  if (!warm.ok()) {
    absl::StatusCode code = warm.status().code() == absl::StatusCode::kResourceExhausted
                                ? absl::StatusCode::kResourceExhausted
                                : absl::StatusCode::kInvalidArgument;
    return absl::Status(code, fmt::format(
        "TorchScript model {}: warm-up forward on zeros shaped like the signature failed: {}", path,
        warm.status().message()));
  }
  return backend;
}

absl::StatusOr<std::vector<Tensor>> TorchScriptBackend::Run(const std::vector<Tensor>& inputs) {
  // Request tensors are wrapped, not copied: their bytes have torch's layout
  // for the same element type. torch only reads them (a model that writes
  // into its inputs in place is not supported). On a GPU, .to() copies.
  // InferenceMode: no autograd records or version counters for any tensor.
  c10::InferenceMode guard;
  std::vector<at::Tensor> tensors;
  tensors.reserve(signature_.inputs.size());
  int64_t batch = -1;
  for (const TensorSpec& spec : signature_.inputs) {
    auto it = std::find_if(inputs.begin(), inputs.end(), [&](const Tensor& t) { return t.name == spec.name; });
    if (it == inputs.end()) {
      return absl::InvalidArgumentError(fmt::format("missing input '{}'", spec.name));
    }
    if (it->datatype != spec.datatype) {
      return absl::InvalidArgumentError(fmt::format("input '{}': expected datatype {}, got {}", spec.name,
                                                    TypeName(spec.datatype), TypeName(it->datatype)));
    }
    if (it->shape.empty()) {
      return absl::InvalidArgumentError(fmt::format("input '{}': dimension 0 (the batch) is missing", spec.name));
    }
    int64_t count = 1;
    for (int64_t d : it->shape) count *= d;  // validated by the caller: no overflow, no negatives
    if (it->data.size() != static_cast<size_t>(count) * c10::elementSize(*TorchType(spec.datatype))) {
      return absl::InvalidArgumentError(fmt::format("input '{}': data does not match its shape", spec.name));
    }
    if (batch < 0) batch = it->shape[0];
    at::Tensor t = torch::from_blob(const_cast<char*>(it->data.data()), it->shape,
                                    at::TensorOptions().dtype(*TorchType(spec.datatype)));
    tensors.push_back(device_.is_cpu() ? t : t.to(device_));
  }

  std::vector<c10::IValue> arguments;
  if (stack_columns_) {
    for (at::Tensor& t : tensors) {
      if (t.dim() == 1) t = t.unsqueeze(1);
    }
    arguments.emplace_back(torch::cat(tensors, 1));
  } else {
    arguments.assign(tensors.begin(), tensors.end());
  }
  c10::IValue result = module_.forward(std::move(arguments));

  if (outputs_pending_) RETURN_IF_ERROR(InferOutputSpecs(result, IsFixedShape(signature_.inputs)));

  std::vector<Tensor> outputs;
  outputs.reserve(signature_.outputs.size());
  if (result.isGenericDict()) {
    c10::Dict<c10::IValue, c10::IValue> dict = result.toGenericDict();
    for (const TensorSpec& spec : signature_.outputs) {
      auto entry = dict.find(c10::IValue(spec.name));
      if (entry == dict.end() || !entry->value().isTensor()) {
        return absl::InternalError(
            fmt::format("TorchScript model returned a dict without a tensor named '{}'", spec.name));
      }
      ASSIGN_OR_RETURN(Tensor out, ToOutput(entry->value().toTensor(), spec, batch));
      outputs.push_back(std::move(out));
    }
    return outputs;
  }

  std::vector<at::Tensor> values;
  if (result.isTensor()) {
    values.push_back(result.toTensor());
  } else if (result.isTuple() || result.isList()) {
    std::vector<c10::IValue> elements =
        result.isTuple() ? result.toTupleRef().elements().vec() : result.toListRef().vec();
    for (const c10::IValue& e : elements) {
      if (!e.isTensor()) {
        return absl::InternalError(
            fmt::format("TorchScript model returned a {} holding a {}, expected tensors",
                        result.tagKind(), e.tagKind()));
      }
      values.push_back(e.toTensor());
    }
  } else {
    return absl::InternalError(fmt::format(
        "TorchScript model returned a {}, expected a tensor, a tuple or list of tensors, or a dict of tensors",
        result.tagKind()));
  }
  if (values.size() != signature_.outputs.size()) {
    return absl::InternalError(fmt::format("TorchScript model returned {} tensor(s), the signature declares {}",
                                           values.size(), signature_.outputs.size()));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    ASSIGN_OR_RETURN(Tensor out, ToOutput(values[i], signature_.outputs[i], batch));
    outputs.push_back(std::move(out));
  }
  return outputs;
}

absl::StatusOr<Tensor> TorchScriptBackend::ToOutput(const at::Tensor& value, const TensorSpec& spec,
                                                    int64_t batch) const {
  // The signature's datatype is the contract with clients: convert to it
  // (e.g. a model computing in FP64 behind an FP32 signature).
  at::Tensor t = value.to(c10::Device(c10::kCPU), *TorchType(spec.datatype)).contiguous();
  c10::IntArrayRef sizes = t.sizes();
  bool fits = sizes.size() == spec.shape.size() && !sizes.empty() && sizes[0] == batch;
  for (size_t i = 1; fits && i < sizes.size(); ++i) {
    fits = spec.shape[i] < 0 || spec.shape[i] == sizes[i];
  }
  if (!fits) {
    return absl::InternalError(fmt::format(
        "TorchScript model output '{}' has shape {} for a batch of {}, but the signature declares {}", spec.name,
        ShapeString(sizes), batch, ShapeString(spec.shape)));
  }
  Tensor out{spec.name, spec.datatype, std::vector<int64_t>(sizes.begin(), sizes.end()), {}};
  out.data.assign(static_cast<const char*>(t.data_ptr()), t.nbytes());
  return out;
}

absl::Status TorchScriptBackend::InferOutputSpecs(const c10::IValue& result, bool fixed_inner_dims) {
  std::vector<std::pair<std::string, at::Tensor>> named;
  if (result.isTensor()) {
    named.emplace_back("output0", result.toTensor());
  } else if (result.isTuple() || result.isList()) {
    std::vector<c10::IValue> elements =
        result.isTuple() ? result.toTupleRef().elements().vec() : result.toListRef().vec();
    for (size_t i = 0; i < elements.size(); ++i) {
      if (!elements[i].isTensor()) {
        return absl::InvalidArgumentError(fmt::format("output {} is a {}, expected a tensor", i, elements[i].tagKind()));
      }
      named.emplace_back(fmt::format("output{}", i), elements[i].toTensor());
    }
  } else if (result.isGenericDict()) {
    // Dicts keep insertion order, so the model decides the output order.
    for (const auto& entry : result.toGenericDict()) {
      if (!entry.key().isString() || !entry.value().isTensor()) {
        return absl::InvalidArgumentError("the model returns a dict that does not map names to tensors");
      }
      named.emplace_back(entry.key().toStringRef(), entry.value().toTensor());
    }
  } else {
    return absl::InvalidArgumentError(
        fmt::format("the model returns a {}, expected a tensor, a tuple or list of tensors, or a dict of tensors",
                    result.tagKind()));
  }
  for (auto& [name, tensor] : named) {
    std::optional<DataType> type = FromTorchType(tensor.scalar_type());
    if (!type) {
      return absl::InvalidArgumentError(
          fmt::format("output '{}' has torch type {}, which has no protocol datatype", name,
                      c10::toString(tensor.scalar_type())));
    }
    if (tensor.dim() == 0) {
      return absl::InvalidArgumentError(fmt::format("output '{}' is a scalar; dimension 0 must be the batch", name));
    }
    TensorSpec spec{name, *type, {-1}};
    for (int64_t i = 1; i < tensor.dim(); ++i) spec.shape.push_back(fixed_inner_dims ? tensor.size(i) : -1);
    signature_.outputs.push_back(std::move(spec));
  }
  return absl::OkStatus();
}

void CopyMessage(std::string_view message, char* error, size_t error_size) {
  if (error == nullptr || error_size == 0) return;
  size_t n = std::min(message.size(), error_size - 1);
  std::memcpy(error, message.data(), n);
  error[n] = '\0';
}

}  // namespace
}  // namespace cairn::serving

// The versioned plug-in boundary (see serving/torch_loader.h for its contract).
extern "C" __attribute__((visibility("default"))) int cairn_torch_backend_v1(
    const cairn::serving::ModelDescriptor* descriptor, const cairn::serving::BackendOptions* options,
    cairn::serving::ModelBackend** out, char* error, size_t error_size) noexcept {
  using cairn::serving::CopyMessage;
  if (out == nullptr || descriptor == nullptr || options == nullptr) {
    CopyMessage("cairn_torch_backend_v1: null argument", error, error_size);
    return static_cast<int>(absl::StatusCode::kInvalidArgument);
  }
  *out = nullptr;
  try {
    absl::StatusOr<std::unique_ptr<cairn::serving::TorchScriptBackend>> backend =
        cairn::serving::TorchScriptBackend::Create(*descriptor, *options);
    if (!backend.ok()) {
      CopyMessage(std::string_view(backend.status().message().data(), backend.status().message().size()), error,
                  error_size);
      return static_cast<int>(backend.status().code());
    }
    *out = backend->release();
    return 0;
  } catch (const c10::Error& e) {
    CopyMessage(cairn::serving::TorchMessage(e), error, error_size);
  } catch (const std::bad_alloc&) {
    CopyMessage("out of memory while loading a TorchScript model", error, error_size);
    return static_cast<int>(absl::StatusCode::kResourceExhausted);
  } catch (const std::exception& e) {
    CopyMessage(e.what(), error, error_size);
  } catch (...) {
    CopyMessage("unknown error while loading a TorchScript model", error, error_size);
  }
  return static_cast<int>(absl::StatusCode::kInternal);
}

static_assert(std::is_convertible_v<decltype(&cairn_torch_backend_v1), cairn::serving::TorchBackendEntryPoint>,
              "the entry point must match the loader's declaration");
