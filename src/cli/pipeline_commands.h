// `cairn run`, `cairn pipelines list|show|runs`, `cairn runs logs|cancel`:
// the command line of pipelines (docs/pipelines.md). Like every client
// command they go through the API, to a server (--url) or in-process; in
// embedded mode `cairn run` runs the scheduler in this process and the steps
// in local sandboxes.
#ifndef CAIRN_CLI_PIPELINE_COMMANDS_H_
#define CAIRN_CLI_PIPELINE_COMMANDS_H_

#include "cli/cli_common.h"

namespace CLI {
class App;
}  // namespace CLI

namespace cairn::cli {

// `runs` is the existing `cairn runs` group, which gets `logs` and `cancel`.
void AddPipelineCommands(CLI::App& app, CLI::App& runs, GlobalOptions& g, int& exit_code);

}  // namespace cairn::cli

#endif  // CAIRN_CLI_PIPELINE_COMMANDS_H_
