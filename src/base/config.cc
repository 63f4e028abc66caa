#include "base/config.h"

#include <charconv>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

extern char** environ;

namespace cairn {
namespace {

constexpr std::string_view kEnvPrefix = "CAIRN_";

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Parses the flat YAML map in `text` (read from `path`) into `out`.
absl::Status ParseConfigFile(const std::string& path, const std::string& text,
                             std::map<std::string, std::string>& out) {
  // yaml-cpp throws; nothing escapes this function.
  try {
    YAML::Node root = YAML::Load(text);
    if (root.IsNull()) return absl::OkStatus();  // Empty file.
    if (!root.IsMap()) {
      return absl::InvalidArgumentError(
          fmt::format("config file {}: expected a map of 'key: value' lines at the top level", path));
    }
    for (const auto& kv : root) {
      const int line = kv.first.Mark().line + 1;
      if (!kv.first.IsScalar()) {
        return absl::InvalidArgumentError(fmt::format("config file {} line {}: keys must be plain names", path, line));
      }
      const std::string key = kv.first.Scalar();
      if (kv.second.IsNull()) {
        out[key] = "";
      } else if (kv.second.IsScalar()) {
        out[key] = kv.second.Scalar();
      } else {
        return absl::InvalidArgumentError(fmt::format(
            "config file {} line {}: value of '{}' must be a single value, not a list or map", path, line, key));
      }
    }
    return absl::OkStatus();
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(fmt::format("config file {} line {} column {}: invalid YAML: {}", path,
                                                  e.mark.line + 1, e.mark.column + 1, e.msg));
  }
}

}  // namespace

std::string Config::EnvVarName(std::string_view key) {
  std::string out(kEnvPrefix);
  for (char c : key) {
    if (c >= 'a' && c <= 'z') {
      c = static_cast<char>(c - 'a' + 'A');
    } else if (c == '-' || c == '.') {
      c = '_';
    }
    out += c;
  }
  return out;
}

std::map<std::string, std::string> Config::ProcessEnvironment() {
  std::map<std::string, std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    size_t eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    out.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  return out;
}

absl::StatusOr<Config> Config::Load(Env& env, const Sources& sources) {
  const bool strict = !sources.defaults.empty();
  auto known = [&](const std::string& key) { return !strict || sources.defaults.contains(key); };
  Config config;

  for (const auto& [key, value] : sources.defaults) config.values_[key] = Value{value, "default", ""};

  if (sources.file) {
    const std::string& path = *sources.file;
    absl::StatusOr<std::string> text = env.ReadFileToString(path);
    if (!text.ok()) {
      if (!(sources.file_optional && absl::IsNotFound(text.status()))) {
        return absl::InvalidArgumentError(
            fmt::format("cannot read config file {}: {}", path, std::string(text.status().message())));
      }
    } else {
      std::map<std::string, std::string> file_values;
      RETURN_IF_ERROR(ParseConfigFile(path, *text, file_values));
      for (auto& [key, value] : file_values) {
        if (!known(key)) {
          return absl::InvalidArgumentError(fmt::format("config file {}: unknown setting '{}'", path, key));
        }
        config.values_[key] = Value{std::move(value), "file", path};
      }
    }
  }

  if (strict) {
    for (const auto& [key, unused] : sources.defaults) {
      auto it = sources.environment.find(EnvVarName(key));
      if (it != sources.environment.end()) config.values_[key] = Value{it->second, "env", it->first};
    }
  } else {
    for (const auto& [name, value] : sources.environment) {
      if (name.size() <= kEnvPrefix.size() || name.compare(0, kEnvPrefix.size(), kEnvPrefix) != 0) continue;
      config.values_[Lower(std::string_view(name).substr(kEnvPrefix.size()))] = Value{value, "env", name};
    }
  }

  for (const auto& [key, value] : sources.flags) {
    if (!known(key)) return absl::InvalidArgumentError(fmt::format("unknown setting '{}' given as a flag", key));
    config.values_[key] = Value{value, "flag", "--" + key};
  }
  return config;
}

std::string Config::Describe(const Value& v) {
  if (v.origin.empty()) return std::string(v.source);
  return fmt::format("{} {}", v.source, v.origin);
}

const Config::Value* Config::Find(std::string_view key) const {
  auto it = values_.find(key);
  return it == values_.end() ? nullptr : &it->second;
}

bool Config::Has(std::string_view key) const { return Find(key) != nullptr; }

absl::StatusOr<std::string> Config::GetString(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return absl::NotFoundError(fmt::format("setting '{}' is not set", key));
  return v->value;
}

absl::StatusOr<int64_t> Config::GetInt(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return absl::NotFoundError(fmt::format("setting '{}' is not set", key));
  const std::string& s = v->value;
  int64_t out = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) {
    return absl::InvalidArgumentError(fmt::format("setting '{}' must be an integer, got \"{}\" (from {})", key, s,
                                                  Describe(*v)));
  }
  return out;
}

absl::StatusOr<bool> Config::GetBool(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return absl::NotFoundError(fmt::format("setting '{}' is not set", key));
  const std::string s = Lower(v->value);
  if (s == "true" || s == "yes" || s == "on" || s == "1") return true;
  if (s == "false" || s == "no" || s == "off" || s == "0") return false;
  return absl::InvalidArgumentError(fmt::format("setting '{}' must be true or false, got \"{}\" (from {})", key,
                                                v->value, Describe(*v)));
}

std::string_view Config::Source(std::string_view key) const {
  const Value* v = Find(key);
  return v == nullptr ? std::string_view() : v->source;
}

std::vector<std::string> Config::Keys() const {
  std::vector<std::string> out;
  out.reserve(values_.size());
  for (const auto& [key, unused] : values_) out.push_back(key);
  return out;
}

}  // namespace cairn
