// Reading a model artifact folder's descriptor: Cairn's cairn-model.yaml or
// MLflow's MLmodel. The format is specified in docs/model-format.md.

#include <charconv>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "serving/model_backend.h"

namespace cairn::serving {
namespace {

namespace fs = std::filesystem;

constexpr char kCairnDescriptor[] = "cairn-model.yaml";
constexpr char kMlflowDescriptor[] = "MLmodel";
// A descriptor is a few hundred bytes; a column-based signature of a wide
// table a few hundred kilobytes. Anything larger is not a descriptor.
constexpr size_t kMaxDescriptorBytes = 4 << 20;
// Deeper `options` than this are refused rather than recursed into.
constexpr int kMaxOptionsDepth = 32;

// yaml-cpp throws; every call into it below runs under the try in
// ParseDescriptorFile. Errors are built with the file's path and the line and
// column yaml-cpp recorded for the node.
std::string Locate(const std::string& file, const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.is_null() || mark.line < 0) return file;
  return fmt::format("{}:{}:{}", file, mark.line + 1, mark.column + 1);
}

absl::Status Invalid(const std::string& file, const YAML::Node& node, std::string_view field, std::string_view what) {
  return absl::InvalidArgumentError(fmt::format("{}: {}: {}", Locate(file, node), field, what));
}

// A required scalar string field of map `parent`.
absl::StatusOr<std::string> RequiredString(const std::string& file, const YAML::Node& parent, const std::string& key,
                                           std::string_view field) {
  const YAML::Node value = parent[key];
  if (!value || value.IsNull()) return Invalid(file, parent, field, "missing");
  if (!value.IsScalar() || value.Scalar().empty()) return Invalid(file, value, field, "expected a non-empty string");
  return value.Scalar();
}

// An optional scalar string field; "" when absent or null.
absl::StatusOr<std::string> OptionalString(const std::string& file, const YAML::Node& parent, const std::string& key,
                                           std::string_view field) {
  const YAML::Node value = parent[key];
  if (!value || value.IsNull()) return std::string();
  if (!value.IsScalar()) return Invalid(file, value, field, "expected a string");
  return value.Scalar();
}

template <typename T>
bool ParseNumber(const std::string& text, T& out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end;
}

// YAML (1.2 core schema, plain scalars only) to JSON for `options`: a quoted
// scalar stays a string, as in YAML itself.
absl::StatusOr<Json> ToJson(const std::string& file, const YAML::Node& node, const std::string& field, int depth) {
  if (depth > kMaxOptionsDepth) return Invalid(file, node, field, "nested too deeply");
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return Json(nullptr);
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      if (node.Tag() == "!") return Json(s);  // quoted
      if (s == "true" || s == "True" || s == "TRUE") return Json(true);
      if (s == "false" || s == "False" || s == "FALSE") return Json(false);
      if (s == "~" || s == "null" || s == "Null" || s == "NULL") return Json(nullptr);
      int64_t i = 0;
      if (ParseNumber(s, i)) return Json(i);
      double d = 0;
      if (!s.empty() && s.find_first_of("0123456789") != std::string::npos && ParseNumber(s, d)) return Json(d);
      return Json(s);
    }
    case YAML::NodeType::Sequence: {
      Json out = Json::array();
      for (size_t i = 0; i < node.size(); ++i) {
        ASSIGN_OR_RETURN(Json v, ToJson(file, node[i], fmt::format("{}[{}]", field, i), depth + 1));
        out.push_back(std::move(v));
      }
      return out;
    }
    case YAML::NodeType::Map: {
      Json out = Json::object();
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) return Invalid(file, kv.first, field, "keys must be plain names");
        const std::string key = kv.first.Scalar();
        ASSIGN_OR_RETURN(Json v, ToJson(file, kv.second, fmt::format("{}.{}", field, key), depth + 1));
        out[key] = std::move(v);
      }
      return out;
    }
  }
  return Json(nullptr);
}

// `path` (from a descriptor) as a path inside the artifact folder: relative,
// no "..", normalised. `dir` is the folder's absolute path.
absl::StatusOr<std::string> ModelFilePath(const std::string& file, const YAML::Node& node, std::string_view field,
                                          const std::string& dir, const std::string& path) {
  const fs::path p(path);
  if (p.is_absolute()) {
    return Invalid(file, node, field, fmt::format("'{}' must be a path inside the model folder, not absolute", path));
  }
  for (const fs::path& part : p) {
    if (part == "..") {
      return Invalid(file, node, field, fmt::format("'{}' must not leave the model folder ('..')", path));
    }
  }
  std::string normal = p.lexically_normal().string();
  while (!normal.empty() && normal.back() == '/') normal.pop_back();
  if (normal.empty() || normal == ".") return Invalid(file, node, field, fmt::format("'{}' names no file", path));
  // A symbolic link inside the folder may still point out of it.
  std::error_code target_error;
  std::error_code root_error;
  const fs::path target = fs::weakly_canonical(fs::path(dir) / normal, target_error);
  const fs::path root = fs::weakly_canonical(fs::path(dir), root_error);
  if (!target_error && !root_error) {
    const std::string t = target.string();
    const std::string r = root.string();
    if (t.size() <= r.size() || t.compare(0, r.size(), r) != 0 || t[r.size()] != '/') {
      return Invalid(file, node, field, fmt::format("'{}' resolves to {}, outside the model folder", path, t));
    }
  }
  return normal;
}

// Signature names must be unique among the inputs and among the outputs.
absl::Status CheckUniqueNames(const std::string& file, const YAML::Node& node, std::string_view field,
                              const std::vector<TensorSpec>& specs) {
  std::set<std::string> seen;
  for (const TensorSpec& spec : specs) {
    if (!seen.insert(spec.name).second) return Invalid(file, node, field, fmt::format("'{}' appears twice", spec.name));
  }
  return absl::OkStatus();
}

absl::Status CheckBatchShape(const std::string& file, const YAML::Node& node, const std::string& field,
                             const std::vector<int64_t>& shape) {
  if (shape.empty()) return Invalid(file, node, field, "needs at least one dimension (the batch, -1)");
  if (shape[0] != -1) {
    return Invalid(file, node, field,
                   fmt::format("[{}]: the first dimension is the batch and must be -1", fmt::join(shape, ",")));
  }
  for (int64_t dim : shape) {
    if (dim < -1) return Invalid(file, node, field, fmt::format("dimension {} is invalid (use -1 for any size)", dim));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// cairn-model.yaml

absl::StatusOr<std::vector<TensorSpec>> ParseCairnSpecs(const std::string& file, const YAML::Node& list,
                                                        const std::string& field) {
  std::vector<TensorSpec> specs;
  if (!list || list.IsNull()) return specs;
  if (!list.IsSequence()) return Invalid(file, list, field, "expected a list of {name, datatype, shape}");
  for (size_t i = 0; i < list.size(); ++i) {
    const YAML::Node item = list[i];
    const std::string where = fmt::format("{}[{}]", field, i);
    if (!item.IsMap()) return Invalid(file, item, where, "expected a map {name, datatype, shape}");
    for (const auto& kv : item) {
      const std::string key = kv.first.Scalar();
      if (key != "name" && key != "datatype" && key != "shape") {
        return Invalid(file, kv.first, where, fmt::format("unknown field '{}' (expected name, datatype, shape)", key));
      }
    }
    TensorSpec spec;
    ASSIGN_OR_RETURN(spec.name, RequiredString(file, item, "name", where + ".name"));
    ASSIGN_OR_RETURN(std::string datatype, RequiredString(file, item, "datatype", where + ".datatype"));
    std::optional<DataType> type = ParseDataType(datatype);
    if (!type) {
      return Invalid(file, item["datatype"], where + ".datatype",
                     fmt::format("unknown datatype '{}' (expected BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, "
                                 "FP64 or BYTES)",
                                 datatype));
    }
    spec.datatype = *type;
    const YAML::Node shape = item["shape"];
    if (!shape || shape.IsNull()) return Invalid(file, item, where + ".shape", "missing");
    if (!shape.IsSequence()) return Invalid(file, shape, where + ".shape", "expected a list of dimensions");
    for (size_t d = 0; d < shape.size(); ++d) {
      int64_t dim = 0;
      if (!shape[d].IsScalar() || !ParseNumber(shape[d].Scalar(), dim)) {
        return Invalid(file, shape[d], fmt::format("{}.shape[{}]", where, d), "expected an integer");
      }
      spec.shape.push_back(dim);
    }
    RETURN_IF_ERROR(CheckBatchShape(file, shape, where + ".shape", spec.shape));
    specs.push_back(std::move(spec));
  }
  RETURN_IF_ERROR(CheckUniqueNames(file, list, field, specs));
  return specs;
}

absl::StatusOr<ModelDescriptor> ParseCairnDescriptor(const std::string& file, const std::string& dir,
                                                     const YAML::Node& root) {
  if (!root.IsMap()) return Invalid(file, root, "(top level)", "expected a map with flavor, file, signature, options");
  for (const auto& kv : root) {
    const std::string key = kv.first.Scalar();
    if (key != "flavor" && key != "file" && key != "signature" && key != "options") {
      return Invalid(file, kv.first, key, "unknown field (expected flavor, file, signature, options)");
    }
  }
  ModelDescriptor d;
  d.model_dir = dir;
  ASSIGN_OR_RETURN(std::string flavor, RequiredString(file, root, "flavor", "flavor"));
  if (flavor == "xgboost") {
    d.flavor = Flavor::kXgboost;
  } else if (flavor == "torchscript") {
    d.flavor = Flavor::kTorchScript;
  } else if (flavor == "python") {
    d.flavor = Flavor::kPython;
  } else {
    return Invalid(file, root["flavor"], "flavor",
                   fmt::format("unknown flavor '{}' (expected xgboost, torchscript or python)", flavor));
  }
  ASSIGN_OR_RETURN(std::string model_file, RequiredString(file, root, "file", "file"));
  ASSIGN_OR_RETURN(d.model_file, ModelFilePath(file, root["file"], "file", dir, model_file));

  const YAML::Node signature = root["signature"];
  if (signature && !signature.IsNull()) {
    if (!signature.IsMap()) return Invalid(file, signature, "signature", "expected a map with inputs and outputs");
    for (const auto& kv : signature) {
      const std::string key = kv.first.Scalar();
      if (key != "inputs" && key != "outputs") {
        return Invalid(file, kv.first, "signature." + key, "unknown field (expected inputs, outputs)");
      }
    }
    ASSIGN_OR_RETURN(d.signature.inputs, ParseCairnSpecs(file, signature["inputs"], "signature.inputs"));
    ASSIGN_OR_RETURN(d.signature.outputs, ParseCairnSpecs(file, signature["outputs"], "signature.outputs"));
  }

  const YAML::Node options = root["options"];
  if (options && !options.IsNull()) {
    if (!options.IsMap()) return Invalid(file, options, "options", "expected a map");
    ASSIGN_OR_RETURN(d.options, ToJson(file, options, "options", 0));
  }
  return d;
}

// ---------------------------------------------------------------------------
// MLflow's MLmodel

// MLflow's column types (mlflow.types.DataType) as OIP datatypes.
std::optional<DataType> MlflowColumnType(std::string_view type) {
  if (type == "double") return DataType::kFp64;
  if (type == "float") return DataType::kFp32;
  if (type == "long") return DataType::kInt64;
  if (type == "integer") return DataType::kInt32;
  if (type == "boolean") return DataType::kBool;
  if (type == "string" || type == "binary") return DataType::kBytes;
  return std::nullopt;
}

// numpy dtype names (numpy.dtype.name), as a tensor-spec writes them.
std::optional<DataType> NumpyDataType(std::string_view dtype) {
  static constexpr std::pair<std::string_view, DataType> kTypes[] = {
      {"bool", DataType::kBool},       {"uint8", DataType::kUint8},     {"uint16", DataType::kUint16},
      {"uint32", DataType::kUint32},   {"uint64", DataType::kUint64},   {"int8", DataType::kInt8},
      {"int16", DataType::kInt16},     {"int32", DataType::kInt32},     {"int64", DataType::kInt64},
      {"float16", DataType::kFp16},    {"float32", DataType::kFp32},    {"float64", DataType::kFp64},
      {"object", DataType::kBytes},    {"str", DataType::kBytes},       {"bytes", DataType::kBytes},
  };
  for (const auto& [name, type] : kTypes) {
    if (name == dtype) return type;
  }
  return std::nullopt;
}

// The name of unnamed entry `index` of `count`: MLflow allows a schema
// without names; OIP tensors need one.
std::string DefaultName(bool outputs, size_t index, size_t count) {
  if (count == 1) return outputs ? "predict" : "input";
  return fmt::format("{}_{}", outputs ? "output" : "input", index);
}

// One of MLflow's signature lists: a JSON text (column-based or tensor-based
// entries) as the value of signature.inputs / signature.outputs.
absl::StatusOr<std::vector<TensorSpec>> ParseMlflowSpecs(const std::string& file, const YAML::Node& signature,
                                                         const std::string& key) {
  std::vector<TensorSpec> specs;
  const YAML::Node node = signature[key];
  const std::string field = "signature." + key;
  if (!node || node.IsNull()) return specs;
  if (!node.IsScalar()) return Invalid(file, node, field, "expected a JSON list in a string, as MLflow writes it");
  absl::StatusOr<Json> parsed = ParseJson(node.Scalar());
  if (!parsed.ok()) return Invalid(file, node, field, fmt::format("invalid JSON: {}", parsed.status().message()));
  if (!parsed->is_array()) return Invalid(file, node, field, "expected a JSON list");
  const Json& list = *parsed;
  for (size_t i = 0; i < list.size(); ++i) {
    const Json& entry = list[i];
    const std::string where = fmt::format("{}[{}]", field, i);
    if (!entry.is_object()) return Invalid(file, node, where, "expected a JSON object");
    absl::StatusOr<std::string> type = GetString(entry, "type");
    if (!type.ok()) return Invalid(file, node, where, std::string(type.status().message()));
    absl::StatusOr<std::optional<std::string>> name = GetOptionalString(entry, "name");
    if (!name.ok()) return Invalid(file, node, where, std::string(name.status().message()));
    TensorSpec spec;
    spec.name = name->value_or("");
    if (*type == "tensor") {
      const auto ts = entry.find("tensor-spec");
      if (ts == entry.end() || !ts->is_object()) return Invalid(file, node, where, "missing 'tensor-spec' object");
      absl::StatusOr<std::string> dtype = GetString(*ts, "dtype");
      if (!dtype.ok()) return Invalid(file, node, where + ".tensor-spec", std::string(dtype.status().message()));
      std::optional<DataType> t = NumpyDataType(*dtype);
      if (!t) return Invalid(file, node, where + ".tensor-spec.dtype", fmt::format("unsupported dtype '{}'", *dtype));
      spec.datatype = *t;
      const auto shape = ts->find("shape");
      if (shape == ts->end() || !shape->is_array()) {
        return Invalid(file, node, where + ".tensor-spec.shape", "expected a list of dimensions");
      }
      for (const Json& dim : *shape) {
        if (!dim.is_number_integer()) return Invalid(file, node, where + ".tensor-spec.shape", "expected integers");
        spec.shape.push_back(dim.get<int64_t>());
      }
      RETURN_IF_ERROR(CheckBatchShape(file, node, where + ".tensor-spec.shape", spec.shape));
    } else {
      std::optional<DataType> t = MlflowColumnType(*type);
      if (!t) {
        return Invalid(file, node, where + ".type",
                       fmt::format("unsupported column type '{}' (supported: double, float, long, integer, boolean, "
                                   "string, binary, tensor)",
                                   *type));
      }
      spec.datatype = *t;
      spec.shape = {-1};  // one value per row: backends stack the columns
    }
    specs.push_back(std::move(spec));
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].name.empty()) specs[i].name = DefaultName(key == "outputs", i, specs.size());
  }
  RETURN_IF_ERROR(CheckUniqueNames(file, node, field, specs));
  return specs;
}

absl::StatusOr<ModelDescriptor> ParseMlflowDescriptor(const std::string& file, const std::string& dir,
                                                      const YAML::Node& root) {
  if (!root.IsMap()) return Invalid(file, root, "(top level)", "expected a map with flavors");
  const YAML::Node flavors = root["flavors"];
  if (!flavors || flavors.IsNull()) return Invalid(file, root, "flavors", "missing");
  if (!flavors.IsMap()) return Invalid(file, flavors, "flavors", "expected a map of flavor names to settings");

  ModelDescriptor d;
  d.model_dir = dir;
  const YAML::Node pyfunc = flavors["python_function"];
  std::string loader_module;
  if (pyfunc && pyfunc.IsMap()) {
    ASSIGN_OR_RETURN(loader_module, OptionalString(file, pyfunc, "loader_module", "flavors.python_function.loader_module"));
  }
  // The native flavors say how the file was written; python_function alone
  // only names a Python loader, which Cairn can follow for MLflow's own ones.
  const YAML::Node xgboost = flavors["xgboost"];
  const YAML::Node pytorch = flavors["pytorch"];
  const YAML::Node sklearn = flavors["sklearn"];
  if (xgboost && xgboost.IsMap()) {
    d.flavor = Flavor::kXgboost;
    ASSIGN_OR_RETURN(std::string data, RequiredString(file, xgboost, "data", "flavors.xgboost.data"));
    ASSIGN_OR_RETURN(d.model_file, ModelFilePath(file, xgboost["data"], "flavors.xgboost.data", dir, data));
    ASSIGN_OR_RETURN(std::string format, OptionalString(file, xgboost, "model_format", "flavors.xgboost.model_format"));
    if (!format.empty()) {
      if (format != "xgb" && format != "json" && format != "ubj") {
        return Invalid(file, xgboost["model_format"], "flavors.xgboost.model_format",
                       fmt::format("unsupported model_format '{}' (expected xgb, json or ubj)", format));
      }
      d.options["model_format"] = format;
    }
  } else if (pytorch && pytorch.IsMap()) {
    // mlflow.pytorch writes <model_data>/model.pth: torch.jit.save for a
    // ScriptModule, a pickle otherwise (which only Python could load).
    d.flavor = Flavor::kTorchScript;
    ASSIGN_OR_RETURN(std::string data, RequiredString(file, pytorch, "model_data", "flavors.pytorch.model_data"));
    ASSIGN_OR_RETURN(d.model_file,
                     ModelFilePath(file, pytorch["model_data"], "flavors.pytorch.model_data", dir, data + "/model.pth"));
  } else if (sklearn && sklearn.IsMap()) {
    d.flavor = Flavor::kPython;
    ASSIGN_OR_RETURN(std::string data, RequiredString(file, sklearn, "pickled_model", "flavors.sklearn.pickled_model"));
    ASSIGN_OR_RETURN(d.model_file,
                     ModelFilePath(file, sklearn["pickled_model"], "flavors.sklearn.pickled_model", dir, data));
    ASSIGN_OR_RETURN(std::string format, OptionalString(file, sklearn, "serialization_format",
                                                        "flavors.sklearn.serialization_format"));
    if (!format.empty()) d.options["serialization_format"] = format;
    if (pyfunc && pyfunc.IsMap()) {
      // Newer MLflow lets a scikit-learn model answer with predict_proba.
      ASSIGN_OR_RETURN(std::string method,
                       OptionalString(file, pyfunc, "predict_fn", "flavors.python_function.predict_fn"));
      if (!method.empty()) d.options["method"] = method;
    }
  } else {
    std::vector<std::string> found;
    for (const auto& kv : flavors) found.push_back(kv.first.Scalar());
    return Invalid(file, flavors, "flavors",
                   fmt::format("no flavor Cairn can serve (found: {}{}); supported: xgboost, pytorch (TorchScript), "
                               "sklearn",
                               fmt::join(found, ", "),
                               loader_module.empty() ? "" : fmt::format("; python_function loader {}", loader_module)));
  }

  const YAML::Node signature = root["signature"];
  if (signature && !signature.IsNull()) {
    if (!signature.IsMap()) return Invalid(file, signature, "signature", "expected a map with inputs and outputs");
    ASSIGN_OR_RETURN(d.signature.inputs, ParseMlflowSpecs(file, signature, "inputs"));
    ASSIGN_OR_RETURN(d.signature.outputs, ParseMlflowSpecs(file, signature, "outputs"));
  }
  return d;
}

// ---------------------------------------------------------------------------

absl::StatusOr<std::string> ReadDescriptorFile(const std::string& path) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) return absl::NotFoundError(fmt::format("{}: {}", path, ec.message()));
  if (size > kMaxDescriptorBytes) {
    return absl::InvalidArgumentError(
        fmt::format("{}: {} bytes, more than a descriptor's limit of {} bytes", path, size, kMaxDescriptorBytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(fmt::format("{}: cannot open", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::StatusOr<ModelDescriptor> ParseDescriptorFile(const std::string& file, const std::string& dir, bool mlflow) {
  ASSIGN_OR_RETURN(std::string text, ReadDescriptorFile(file));
  // Nothing yaml-cpp throws leaves this function.
  try {
    const YAML::Node root = YAML::Load(text);
    if (root.IsNull()) return absl::InvalidArgumentError(fmt::format("{}: the file is empty", file));
    return mlflow ? ParseMlflowDescriptor(file, dir, root) : ParseCairnDescriptor(file, dir, root);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(fmt::format("{}:{}:{}: invalid YAML: {}", file, std::max(e.mark.line, 0) + 1,
                                                  std::max(e.mark.column, 0) + 1, e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(fmt::format("{}: reading the descriptor failed: {}", file, e.what()));
  }
}

}  // namespace

std::string_view FlavorName(Flavor flavor) {
  switch (flavor) {
    case Flavor::kXgboost:
      return "xgboost";
    case Flavor::kTorchScript:
      return "torchscript";
    case Flavor::kPython:
      return "python";
  }
  return "unknown";
}

absl::StatusOr<ModelDescriptor> ReadModelDescriptor(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("model folder: empty path");
  std::error_code ec;
  std::string root = fs::absolute(fs::path(dir), ec).lexically_normal().string();
  if (ec) return absl::InvalidArgumentError(fmt::format("model folder {}: {}", dir, ec.message()));
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (!fs::is_directory(root, ec)) return absl::NotFoundError(fmt::format("model folder {} does not exist", root));

  const std::string cairn = root + "/" + kCairnDescriptor;
  const std::string mlflow = root + "/" + kMlflowDescriptor;
  if (fs::exists(cairn, ec)) return ParseDescriptorFile(cairn, root, /*mlflow=*/false);
  if (fs::exists(mlflow, ec)) return ParseDescriptorFile(mlflow, root, /*mlflow=*/true);
  return absl::NotFoundError(
      fmt::format("model folder {} has no descriptor: expected {} or {}", root, kCairnDescriptor, kMlflowDescriptor));
}

}  // namespace cairn::serving
