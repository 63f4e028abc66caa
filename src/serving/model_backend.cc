#include "serving/model_backend.h"

#include <fmt/format.h>

namespace cairn::serving {
namespace {

std::string FormatShape(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ",")); }

bool ShapeMatches(const std::vector<int64_t>& declared, const std::vector<int64_t>& given) {
  if (declared.size() != given.size()) return false;
  for (size_t i = 0; i < declared.size(); ++i) {
    if (declared[i] != -1 && declared[i] != given[i]) return false;
  }
  return true;
}

std::string DeclaredNames(const std::vector<TensorSpec>& specs) {
  std::vector<std::string> names;
  names.reserve(specs.size());
  for (const TensorSpec& spec : specs) names.push_back(fmt::format("'{}'", spec.name));
  return names.empty() ? "none" : fmt::format("{}", fmt::join(names, ", "));
}

}  // namespace

absl::Status ValidateInputs(const ModelSignature& signature, const std::vector<Tensor>& inputs) {
  // Requests carry a handful of inputs: linear scans beat building a map.
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& input = inputs[i];
    bool declared = false;
    for (const TensorSpec& spec : signature.inputs) declared |= spec.name == input.name;
    if (!declared) {
      return absl::InvalidArgumentError(fmt::format("unexpected input '{}': the model takes {}", input.name,
                                                    DeclaredNames(signature.inputs)));
    }
    for (size_t j = 0; j < i; ++j) {
      if (inputs[j].name == input.name) {
        return absl::InvalidArgumentError(fmt::format("input '{}' is given more than once", input.name));
      }
    }
  }
  const Tensor* first = nullptr;  // the input whose batch size the others must match
  for (const TensorSpec& spec : signature.inputs) {
    const Tensor* input = nullptr;
    for (const Tensor& t : inputs) {
      if (t.name == spec.name) input = &t;
    }
    if (input == nullptr) {
      return absl::InvalidArgumentError(fmt::format("missing input '{}' ({} {})", spec.name,
                                                    DataTypeName(spec.datatype), FormatShape(spec.shape)));
    }
    if (input->datatype != spec.datatype) {
      return absl::InvalidArgumentError(fmt::format("input '{}': expected datatype {}, got {}", spec.name,
                                                    DataTypeName(spec.datatype), DataTypeName(input->datatype)));
    }
    if (!ShapeMatches(spec.shape, input->shape)) {
      return absl::InvalidArgumentError(fmt::format("input '{}': expected shape {}, got {}", spec.name,
                                                    FormatShape(spec.shape), FormatShape(input->shape)));
    }
    RETURN_IF_ERROR(input->CheckConsistent());
    if (input->shape.empty()) continue;  // a scalar input has no batch dimension
    if (first == nullptr) {
      first = input;
    } else if (input->shape[0] != first->shape[0]) {
      return absl::InvalidArgumentError(
          fmt::format("inputs disagree on the batch size (dimension 0): '{}' has {}, '{}' has {}", first->name,
                      first->shape[0], input->name, input->shape[0]));
    }
  }
  return absl::OkStatus();
}

}  // namespace cairn::serving
