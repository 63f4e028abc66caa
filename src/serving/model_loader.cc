// LoadModel: the one place that knows which backend serves which flavor.

#include <fmt/format.h>

#include "serving/model_backend.h"
#include "serving/python_backend.h"
#include "serving/torch_loader.h"
#include "serving/xgboost_backend.h"

namespace cairn::serving {

absl::StatusOr<std::unique_ptr<ModelBackend>> LoadModel(const ModelDescriptor& descriptor,
                                                        const BackendOptions& options) {
  switch (descriptor.flavor) {
    case Flavor::kXgboost:
      return LoadXgboostModel(descriptor, options);
    case Flavor::kTorchScript:
      return LoadTorchScriptModel(descriptor, options);
    case Flavor::kPython:
      return LoadPythonModel(descriptor, options);
  }
  // Only reachable through a cast of an out-of-range value.
  return absl::InvalidArgumentError(
      fmt::format("model {}: unknown flavor {}", descriptor.model_dir, static_cast<int>(descriptor.flavor)));
}

}  // namespace cairn::serving
