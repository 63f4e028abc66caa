// Config: Cairn's settings as flat string key/values, layered by precedence
//   command-line flags > environment (CAIRN_<KEY>) > YAML config file > defaults.
//
// Keys are lower_snake_case ("tracking_uri"); the environment variable for a
// key is "CAIRN_" + the key upper-cased with '-' and '.' turned into '_'
// (EnvVarName). The config file is a flat YAML map of scalars:
//     port: 5000
//     data_dir: /srv/cairn
// When `defaults` is non-empty it is the list of known keys: an unknown key
// in the file or the flags is kInvalidArgument (catches typos), and only the
// known keys are looked up in the environment. With no defaults every key is
// accepted and every CAIRN_* variable becomes a key.
//
// The environment is passed in as a map (ProcessEnvironment() reads the real
// one), so tests never touch the process environment.
//
// Thread-safety: a loaded Config is immutable; const methods are thread-safe.
//
// Usage:
//   Config::Sources src;
//   src.defaults = {{"port", "5000"}, {"data_dir", "./cairn-data"}};
//   src.flags = {{"port", "8080"}};                    // only flags the user set
//   src.environment = Config::ProcessEnvironment();
//   src.file = "/etc/cairn.yaml";
//   ASSIGN_OR_RETURN(Config config, Config::Load(env, src));
//   ASSIGN_OR_RETURN(int64_t port, config.GetInt("port"));   // 8080, Source: "flag"
#ifndef CAIRN_BASE_CONFIG_H_
#define CAIRN_BASE_CONFIG_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/env.h"
#include "base/status.h"

namespace cairn {

class Config {
 public:
  struct Sources {
    std::map<std::string, std::string> defaults;
    std::map<std::string, std::string> flags;
    // The whole environment (NAME -> value); only CAIRN_* names are read.
    std::map<std::string, std::string> environment;
    // A YAML file; a missing or malformed file is kInvalidArgument naming it,
    // unless `file_optional` (then a missing file is skipped).
    std::optional<std::string> file;
    bool file_optional = false;
  };

  // Merges `sources`; reads the file through `env`.
  static absl::StatusOr<Config> Load(Env& env, const Sources& sources);

  // The process environment as a map (reads `environ`).
  static std::map<std::string, std::string> ProcessEnvironment();
  // "tracking_uri" -> "CAIRN_TRACKING_URI".
  static std::string EnvVarName(std::string_view key);

  Config() = default;

  bool Has(std::string_view key) const;
  // kNotFound if the key is set by no layer.
  absl::StatusOr<std::string> GetString(std::string_view key) const;
  // kInvalidArgument if the value is not a decimal integer, naming the key
  // and where the value came from.
  absl::StatusOr<int64_t> GetInt(std::string_view key) const;
  // true/false, yes/no, on/off, 1/0 (any case); kInvalidArgument otherwise.
  absl::StatusOr<bool> GetBool(std::string_view key) const;
  // "flag", "env", "file" or "default"; "" if unset.
  std::string_view Source(std::string_view key) const;
  // Every key that has a value, sorted.
  std::vector<std::string> Keys() const;

 private:
  struct Value {
    std::string value;
    std::string_view source;  // One of the string literals above.
    std::string origin;       // For messages: "--port", "CAIRN_PORT", "/etc/cairn.yaml"; "" for defaults.
  };
  static std::string Describe(const Value& v);
  const Value* Find(std::string_view key) const;

  std::map<std::string, Value, std::less<>> values_;
};

}  // namespace cairn

#endif  // CAIRN_BASE_CONFIG_H_
