// ModelBackend: one loaded model version, able to run a batch of inputs.
// XGBoost (C API), TorchScript (libtorch, loaded as a shared library on
// demand) and Python (a pool of python3 worker processes) implement it, and
// all pass the shared suite in model_backend_suite.h.
//
// Batching convention: dimension 0 of every input and output is the batch.
// A signature declares it as -1 (any size); other dimensions may also be -1
// (variable). A backend whose signature has several 1-D inputs (an MLflow
// column-based signature: one tensor per column) stacks them as the columns
// of one matrix, in signature order.
//
// Thread-safety: ModelBackend::Infer may be called from several threads at
// once (one per model instance); signature() and platform() are immutable
// after load.
//
// Usage:
//   ASSIGN_OR_RETURN(ModelDescriptor d, ReadModelDescriptor("/cache/models/abc"));
//   ASSIGN_OR_RETURN(std::unique_ptr<ModelBackend> m, LoadModel(d, {.threads = 2}));
//   RETURN_IF_ERROR(ValidateInputs(m->signature(), inputs));
//   ASSIGN_OR_RETURN(std::vector<Tensor> outputs, m->Infer(inputs));
#ifndef CAIRN_SERVING_MODEL_BACKEND_H_
#define CAIRN_SERVING_MODEL_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "base/status.h"
#include "serving/tensor.h"

namespace cairn::serving {

struct TensorSpec {
  std::string name;
  DataType datatype = DataType::kFp32;
  std::vector<int64_t> shape;  // -1: any size; shape[0] is the batch (-1)
};

struct ModelSignature {
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
};

enum class Flavor {
  kXgboost,      // model_file: an XGBoost JSON (.json) or UBJ (.ubj) model
  kTorchScript,  // model_file: a torch.jit.save archive (.pt)
  kPython,       // model_file: a pickled estimator (.pkl) or a Python file defining predict()
};
std::string_view FlavorName(Flavor flavor);  // "xgboost", "torchscript", "python"

// What a model artifact folder holds, read from MLflow's `MLmodel` file or
// Cairn's own `cairn-model.yaml` (see docs/model-format.md).
struct ModelDescriptor {
  Flavor flavor = Flavor::kXgboost;
  std::string model_dir;   // absolute path of the artifact folder
  std::string model_file;  // relative to model_dir
  ModelSignature signature;  // from the descriptor; backends fill what it leaves out
  Json options = Json::object();  // flavor-specific settings from the descriptor
};

// Reads `dir`/MLmodel or `dir`/cairn-model.yaml (the latter wins when both
// exist). kNotFound when neither exists; kInvalidArgument naming the file and
// field for a malformed or unsupported descriptor.
absl::StatusOr<ModelDescriptor> ReadModelDescriptor(const std::string& dir);

struct BackendOptions {
  int threads = 1;          // intra-op threads per Infer call
  bool gpu = false;         // TorchScript: use CUDA when available
  std::string python = "/usr/bin/python3";  // Python flavor: the interpreter
  int python_workers = 1;   // Python flavor: worker processes
  int64_t python_timeout_ms = 30000;  // Python flavor: a worker slower than this is killed and replaced
  std::string torch_library;  // TorchScript: path of libcairn_torch.so; empty: next to the executable
};

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;
  // What the model takes and returns (complete after load: every input and
  // output named, typed and shaped).
  virtual const ModelSignature& signature() const = 0;
  // The OIP "platform" string: "xgboost_json", "pytorch_torchscript", "python".
  virtual std::string_view platform() const = 0;
  // Runs one batch. REQUIRES: ValidateInputs(signature(), inputs) is OK.
  // Returns one tensor per signature output, in signature order, with the
  // inputs' batch size as dim 0. Errors: kInvalidArgument for inputs the
  // model rejects, kUnavailable when the runtime failed (e.g. a Python
  // worker died; the backend recovers for the next call), kDeadlineExceeded
  // when the runtime took too long.
  virtual absl::StatusOr<std::vector<Tensor>> Infer(const std::vector<Tensor>& inputs) = 0;
  // Bytes of memory the loaded model holds, when known; 0 otherwise.
  virtual uint64_t memory_bytes() const { return 0; }
  // True when a call takes microseconds, not milliseconds, so that an idle
  // model may compute a request on the thread that received it even when
  // that thread serves other connections too (an HTTP event loop).
  virtual bool quick() const { return false; }
};

// Loads the model `descriptor` names with the backend for its flavor. The
// TorchScript backend is dlopen'd from libcairn_torch.so on first use.
absl::StatusOr<std::unique_ptr<ModelBackend>> LoadModel(const ModelDescriptor& descriptor,
                                                        const BackendOptions& options);

// Checks `inputs` against `signature`: every declared input present once and
// nothing else, datatypes equal, ranks equal, fixed dimensions equal, every
// input's dim 0 equal, data consistent with the shape. kInvalidArgument with
// a precise message, e.g. "input 'x': expected datatype FP32, got FP64" or
// "input 'x': expected shape [-1,30], got [4,29]".
absl::Status ValidateInputs(const ModelSignature& signature, const std::vector<Tensor>& inputs);

}  // namespace cairn::serving

#endif  // CAIRN_SERVING_MODEL_BACKEND_H_
