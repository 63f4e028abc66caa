// `cairn serve` (a stand-alone inference plane following a registry) and
// `cairn predict` (one inference request from the command line): the
// command line of model serving (docs/serving.md).
#ifndef CAIRN_CLI_SERVING_COMMANDS_H_
#define CAIRN_CLI_SERVING_COMMANDS_H_

#include "cli/cli_common.h"

namespace CLI {
class App;
}  // namespace CLI

namespace cairn::cli {

void AddServingCommands(CLI::App& app, GlobalOptions& g, int& exit_code);

}  // namespace cairn::cli

#endif  // CAIRN_CLI_SERVING_COMMANDS_H_
