// `cairn models ...` (the model registry), `cairn deploy` and
// `cairn deployments ...`: the command line of the registry REST API
// (docs/api-registry.md). Like every client command they go through a
// Transport, so they work embedded (in-process) and against a server (--url).
//
//   cairn models list | show NAME | versions NAME
//   cairn models register NAME --run RUN_ID [--path model]
//   cairn models lineage NAME@ALIAS|NAME@VERSION
//   cairn models alias set NAME ALIAS VERSION [--reason R]    (exit 1 when the gate refuses)
//   cairn models alias history NAME ALIAS [--at TIME]
//   cairn models policy set NAME FILE.yaml | policy show NAME
//   cairn models approve NAME VERSION --alias A [--comment C]
//   cairn deploy NAME@ALIAS [--name D] [--canary VERSION:PCT] [--shadow VERSION] ...
//   cairn deployments list | show NAME | delete NAME
//
// Thread-safety: the CLI runs one command at a time.
#ifndef CAIRN_CLI_MODEL_COMMANDS_H_
#define CAIRN_CLI_MODEL_COMMANDS_H_

#include <cstdint>
#include <string>

#include "base/status.h"
#include "cli/cli_common.h"

namespace CLI {
class App;
}  // namespace CLI

namespace cairn::cli {

class Transport;

// Registers the commands on `app`; a failing command sets `exit_code`.
// `g` and `exit_code` must outlive parsing.
void AddModelCommands(CLI::App& app, GlobalOptions& g, int& exit_code);

// A model version named as NAME@ALIAS or NAME@VERSION (the text after the
// last '@'; all digits means a version number).
struct ModelRef {
  std::string name;
  std::string alias;    // empty when a version was given
  int64_t version = 0;  // resolved through the registry for an alias
};
// Parses `text` and, for an alias, asks the registry which version it names.
// kInvalidArgument for text without '@', kNotFound for an unknown alias.
absl::StatusOr<ModelRef> ResolveModelRef(Transport& t, const std::string& text);

}  // namespace cairn::cli

#endif  // CAIRN_CLI_MODEL_COMMANDS_H_
